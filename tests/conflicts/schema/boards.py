"""Models for the conflict-strategy suite: one per strategy the server offers."""

from __future__ import annotations

from typing import Any

import statesync as ss


@ss.value
class Address:
    city: str
    zip: str


@ss.model(conflicts=ss.Merge(lists={"tags": "set", "log": "append"}))
class Ticket:
    title: str
    priority: int = 0
    tags: list[str] = ss.field(default_factory=list)
    log: list[str] = ss.field(default_factory=list)
    address: Address | None = None


@ss.model(conflicts=ss.Merge(prefer="client"))
class Draft:
    title: str
    body: str = ""


def add_the_difference(base: dict[str, Any], server: dict[str, Any], client: dict[str, Any]
                       ) -> dict[str, Any] | ss.Reject:
    """A counter: every client's increment counts, however stale its view (three-way: the
    client's change is its value minus the base's)."""
    if "value" not in client:
        return dict(client)
    if client["value"] < base["value"]:
        return ss.Reject("a counter only goes up")
    return {**client, "value": server["value"] + client["value"] - base["value"]}


@ss.model(conflicts=add_the_difference)
class Counter:
    label: str
    value: int = 0
