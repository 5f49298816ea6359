"""A test-only model with every kind of value a client can send: floats, free JSON,
datetimes, lists. The hostile suites write it with whatever an attacker would."""

from __future__ import annotations

from datetime import datetime

import statesync as ss


@ss.value
class Reading:
    at: datetime
    value: float


@ss.model
class Gauge:
    name: str
    level: int = 0
    reading: float | None = None
    meta: dict | None = None  # type: ignore[type-arg]
    seen_at: datetime | None = None
    tags: list[str] = ss.field(default_factory=list)
    history: list[Reading] = ss.field(default_factory=list)
