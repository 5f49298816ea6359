"""Handlers: functions that react to events in Celery workers.

    from statesync.workers import handler

    @handler("Order.created", "Order.updated", ordered=True, max_attempts=5)
    def price_order(event, tx): ...

A handler runs at least once per matching event, until it succeeds or its last
attempt fails (then the event is dead for it, and can be redelivered). What it
writes through ``tx`` commits atomically with its success, so a redelivered
event never applies its effect twice. Without ``ordered=True`` handlers must
tolerate events in any order; with it, events of one document reach the handler
one at a time, in version order.
"""

from __future__ import annotations

import fnmatch
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from statesync.conflicts import Resolution
from statesync.loader import import_folder

_MARK = "__statesync_handler__"
_PATTERN = re.compile(r"^[A-Za-z0-9_*]+\.[A-Za-z0-9_*]+$")


@dataclass(frozen=True, slots=True)
class Event:
    """What a handler receives: one committed change (or a custom event)."""

    id: str
    type: str  # "Order.created", "Order.updated", "Order.deleted", "Order.expired", or custom
    model: str | None
    document_id: str | None  # the document's id, or a custom event's key
    version: int | None
    document: dict[str, Any] | None  # after the change; None when deleted
    previous: dict[str, Any] | None  # old values of the changed fields
    changed_fields: tuple[str, ...]
    payload: dict[str, Any]  # a custom event's payload; the change as JSON otherwise
    created_at: datetime
    attempt: int  # 1 on the first attempt
    # A change that merged an update based on an older version: what was applied, what kept.
    resolution: Resolution | None = None
    # The request that set this off (X-Request-Id), through every handler's writes since.
    request_id: str | None = None

    @property
    def key(self) -> str | None:
        return self.document_id


class Tx(Protocol):
    """What a handler may do: read current documents, and stage writes and events that
    commit together with the handler's success."""

    def get(self, model: str, id: str) -> dict[str, Any] | None: ...
    def create(self, model: str, fields: Mapping[str, Any], id: str | None = None) -> None: ...
    def update(self, model: str, id: str, patch: Mapping[str, Any],
               expected_version: int | None = None) -> None: ...
    def delete(self, model: str, id: str, expected_version: int | None = None) -> None: ...
    def emit(self, type: str, key: str | None, payload: Mapping[str, Any]) -> None: ...


HandlerFn = Callable[[Event, Tx], None]


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    fn: HandlerFn
    patterns: tuple[str, ...]
    ordered: bool = False
    max_attempts: int = 5
    backoff_base: float = 1.0  # seconds before the second attempt; doubles each time
    backoff_max: float = 300.0

    def wants(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, p) for p in self.patterns)

    def retry_delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """Exponential backoff with full jitter in its upper half: after attempt n,
        wait base*2^(n-1) scaled by [0.5, 1], capped at backoff_max."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** max(attempts - 1, 0))
        jitter = (rng or random).uniform(0.5, 1.0)
        return timedelta(seconds=ceiling * jitter)


def handler(*event_types: str, ordered: bool = False, max_attempts: int = 5,
            backoff: float = 1.0, backoff_max: float = 300.0,
            name: str | None = None) -> Callable[[HandlerFn], HandlerFn]:
    """Register ``fn`` for event types (``Order.created``, ``Order.*``, ``*.deleted``, custom)."""
    if not event_types:
        raise TypeError("@handler needs at least one event type")
    for pattern in event_types:
        if not _PATTERN.match(pattern):
            raise TypeError(f"not an event type pattern: {pattern!r} (want Model.action)")
    if max_attempts < 1:
        raise TypeError("max_attempts must be at least 1")

    def mark(fn: HandlerFn) -> HandlerFn:
        spec = Handler(name=name or fn.__name__, fn=fn, patterns=event_types, ordered=ordered,
                       max_attempts=max_attempts, backoff_base=backoff, backoff_max=backoff_max)
        setattr(fn, _MARK, spec)
        return fn

    return mark


def handler_of(obj: object) -> Handler | None:
    spec = getattr(obj, _MARK, None)
    return spec if isinstance(spec, Handler) else None


@dataclass(frozen=True)
class Handlers:
    """The registry of a deployment's handlers, by name."""

    by_name: Mapping[str, Handler] = field(default_factory=dict)

    @classmethod
    def of(cls, handlers: Iterable[Handler]) -> Handlers:
        by_name: dict[str, Handler] = {}
        for h in handlers:
            if h.name in by_name:
                raise TypeError(f"two handlers are named {h.name!r}; pass name= to one")
            by_name[h.name] = h
        return cls(by_name)

    def matching(self, event_type: str) -> list[Handler]:
        return [h for h in self.by_name.values() if h.wants(event_type)]

    def __getitem__(self, name: str) -> Handler:
        return self.by_name[name]

    def __len__(self) -> int:
        return len(self.by_name)


def load_handlers(path: Path) -> list[Handler]:
    """Every ``@handler`` function in the ``.py`` files at ``path``; none if it does not exist."""
    if not path.exists():
        return []
    found = []
    for module in import_folder(path, "workers", "STATESYNC_WORKERS_PATH"):
        for obj in vars(module).values():
            spec = handler_of(obj)
            if spec is not None and getattr(obj, "__module__", None) == module.__name__:
                found.append(spec)
    return sorted(found, key=lambda h: h.name)
