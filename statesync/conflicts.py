"""What a model does with an update based on an old version: its conflict strategy, decided
without I/O.

An update that carries an ``expectedVersion`` older than the document was made by a
client that had not seen the changes since (an offline edit replayed later, two screens
editing at once). Three documents decide what happens to it, all as stored (JSON values,
keyed by Python field names):

- *base*: the document at the client's ``expectedVersion``, from the changelog;
- *server*: the document now;
- *client*: the fields the update sends.

Strategies:

``"reject"``
    The default: the update fails with ``CONFLICT`` and the current document.
:class:`Merge` (``"merge"``)
    A three-way merge, path by path. A field the client did not change (its value equals
    the base's) keeps the server's value. A field only the client changed takes the
    client's. Where both changed it: objects (embedded values and ``dict`` fields) merge
    key by key with these same rules; a list declared ``"set"`` gets the client's
    additions and removals applied to the server's list; a list declared ``"append"`` gets
    the items the client added appended to the server's list (removals are not merged);
    anything else is a scalar and keeps the server's value (``prefer="client"``: the
    client's).
:class:`Custom` (any callable)
    ``resolve(base, server, client)`` returns the patch to apply to the server document,
    or :class:`Reject`. It runs inside the commit's transaction, so it must not do I/O.

Every resolution says which paths (``items``, ``address.city``) took the client's value
(``applied``) and which kept the server's over a change the client made (``kept``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

ListRule = Literal["set", "append"]
Prefer = Literal["server", "client"]
Document = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Reject:
    """A custom resolver's answer: this update must not apply (CONFLICT, with ``reason``)."""

    reason: str = "the conflict resolver rejected the update"


@dataclass(frozen=True, slots=True)
class Merge:
    """``lists``: how a list both sides changed merges, by path (``"tags"``,
    ``"address.lines"``); an undeclared list is one value, like a scalar."""

    prefer: Prefer = "server"
    lists: Mapping[str, ListRule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.prefer not in ("server", "client"):
            raise ValueError(f"prefer must be 'server' or 'client', got {self.prefer!r}")
        for path, rule in self.lists.items():
            if rule not in ("set", "append"):
                raise ValueError(f"list rule of {path!r} must be 'set' or 'append', got {rule!r}")


Resolver = Callable[[Document, Document, Document], "Mapping[str, Any] | Reject"]


@dataclass(frozen=True, slots=True)
class Custom:
    resolve: Resolver


Strategy = Literal["reject"] | Merge | Custom
Declared = Literal["reject", "merge"] | Merge | Custom | Resolver


def strategy_of(declared: Declared) -> Strategy:
    """The strategy a model's ``conflicts=`` option names."""
    if declared == "reject":
        return "reject"
    if declared == "merge":
        return Merge()
    if isinstance(declared, Merge | Custom):
        return declared
    if callable(declared):
        return Custom(declared)
    raise TypeError(f"conflicts must be 'reject', 'merge', statesync.merge(...) or a resolver "
                    f"function, got {declared!r}")


def name_of(strategy: Strategy) -> str:
    if isinstance(strategy, Merge):
        return "merge"
    if isinstance(strategy, Custom):
        return "custom"
    return "reject"


@dataclass(frozen=True, slots=True)
class Resolution:
    """How an update based on ``based_on`` was applied to a newer document."""

    strategy: str
    based_on: int
    applied: tuple[str, ...]
    kept: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "basedOn": self.based_on, "applied": list(self.applied),
                "kept": list(self.kept)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> Resolution | None:
        if value is None:
            return None
        return cls(strategy=value["strategy"], based_on=value["basedOn"],
                   applied=tuple(value["applied"]), kept=tuple(value["kept"]))


class Rejected(Exception):
    """The strategy refused the update; the commit path turns this into CONFLICT."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()  # a key a document does not have (not the same as null)


def same(a: Any, b: Any) -> bool:
    """JSON equality: ``1``, ``1.0`` and ``true`` are three different values."""
    if a is ABSENT or b is ABSENT:
        return a is b
    return _key(a) == _key(b)


def _key(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)


class _Outcome:
    __slots__ = ("applied", "kept")

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.kept: list[str] = []


def merge(strategy: Merge, base: Document, server: Document, client: Document
          ) -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]:
    """The patch to apply to ``server``, and the applied and kept paths."""
    outcome = _Outcome()
    patch: dict[str, Any] = {}
    for name, mine in client.items():
        merged = _merge(strategy, name, base.get(name, ABSENT), server.get(name, ABSENT), mine,
                        outcome)
        if merged is not ABSENT:
            patch[name] = merged
    return patch, tuple(outcome.applied), tuple(outcome.kept)


def _merge(strategy: Merge, path: str, base: Any, server: Any, client: Any, outcome: _Outcome
           ) -> Any:
    if same(client, base):
        return server
    if same(server, base) or same(server, client):
        outcome.applied.append(path)
        return client
    if isinstance(server, dict) and isinstance(client, dict):
        return _merge_object(strategy, path, base if isinstance(base, dict) else {}, server,
                             client, outcome)
    rule = strategy.lists.get(path)
    if rule is not None and isinstance(server, list) and isinstance(client, list):
        earlier = base if isinstance(base, list) else []
        if rule == "set":
            return _merge_set(path, earlier, server, client, outcome)
        return _merge_append(path, earlier, server, client, outcome)
    if strategy.prefer == "client":
        outcome.applied.append(path)
        return client
    outcome.kept.append(path)
    return server


def _merge_object(strategy: Merge, path: str, base: dict[str, Any], server: dict[str, Any],
                  client: dict[str, Any], outcome: _Outcome) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key in [*server, *(k for k in client if k not in server)]:
        value = _merge(strategy, f"{path}.{key}", base.get(key, ABSENT), server.get(key, ABSENT),
                       client.get(key, ABSENT), outcome)
        if value is not ABSENT:
            merged[key] = value
    return merged


def _merge_set(path: str, base: list[Any], server: list[Any], client: list[Any],
               outcome: _Outcome) -> list[Any]:
    before = {_key(item) for item in base}
    mine = {_key(item) for item in client}
    removed = before - mine
    merged: list[Any] = []
    seen: set[bytes] = set()
    for item in [*server, *(item for item in client if _key(item) not in before)]:
        key = _key(item)
        if key not in removed and key not in seen:
            seen.add(key)
            merged.append(item)
    outcome.applied.append(path)
    return merged


def _merge_append(path: str, base: list[Any], server: list[Any], client: list[Any],
                  outcome: _Outcome) -> list[Any]:
    remaining: dict[bytes, int] = {}
    for item in base:
        remaining[_key(item)] = remaining.get(_key(item), 0) + 1
    added = []
    for item in client:
        key = _key(item)
        if remaining.get(key, 0) > 0:
            remaining[key] -= 1
        else:
            added.append(item)
    if added:
        outcome.applied.append(path)
    if any(remaining.values()):  # the client removed items: an append-only merge keeps them
        outcome.kept.append(path)
    return [*server, *added]


def custom(strategy: Custom, base: Document, server: Document, client: Document
           ) -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]:
    """The resolver's patch; a client field counts as applied when it ends up holding the
    client's value, and as kept when the client changed it and it does not."""
    answer = strategy.resolve(base, server, client)
    if isinstance(answer, Reject):
        raise Rejected(answer.reason)
    if not isinstance(answer, Mapping):
        raise TypeError(f"a conflict resolver returns a patch (a dict) or statesync.Reject, "
                        f"got {type(answer).__name__}")
    patch = dict(answer)
    applied: list[str] = []
    kept: list[str] = []
    for name, mine in client.items():
        if same(mine, base.get(name, ABSENT)):
            continue
        final = patch.get(name, server.get(name, ABSENT))
        (applied if same(final, mine) else kept).append(name)
    return patch, tuple(applied), tuple(kept)


def resolve(strategy: Merge | Custom, based_on: int, base: Document, server: Document,
            client: Document) -> tuple[dict[str, Any], Resolution]:
    """The patch that applies ``client`` (made against ``base``) to ``server``."""
    if isinstance(strategy, Merge):
        patch, applied, kept = merge(strategy, base, server, client)
    else:
        patch, applied, kept = custom(strategy, base, server, client)
    return patch, Resolution(name_of(strategy), based_on, applied, kept)
