"""GraphQL for operating the eventing: events, their deliveries, emit, redeliver, watch."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from statesync.api.context import Context
from statesync.change import document_from_json
from statesync.errors import BadInput, NotFound
from statesync.eventing import reads
from statesync.eventing.lifecycle import FINISHED, Status

MAX_EVENTS_PAGE = 500


# The lifecycle's statuses are the GraphQL enum (strawberry marks the class it registers).
strawberry.enum(Status, name="DeliveryStatus", description="Where an event stands with one handler.")


@strawberry.type(description="One event x handler: attempts, status, last error.")
class Delivery:
    event_id: strawberry.ID
    handler: str
    status: Status
    attempts: int
    max_attempts: int
    last_error: str | None
    next_attempt_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@strawberry.type(description="A committed change's event, or a custom event, and its deliveries.")
class Event:
    id: strawberry.ID
    type: str
    model: str | None
    key: strawberry.ID | None = strawberry.field(
        description="The document id (or a custom event's key).")
    version: int | None
    payload: JSON
    created_at: datetime
    caused_by: strawberry.ID | None = strawberry.field(
        description="The event whose handler emitted or committed this one.")
    relayed: bool = strawberry.field(description="Handed to the matching handlers.")
    deliveries: list[Delivery]
    request_id: str | None = strawberry.field(default=None, description=(
        "The X-Request-Id of the request that set this off, inherited by what its handlers "
        "write (the admin only): the id to find its log lines by."))

    @strawberry.field(description="True once every matching handler succeeded or gave up.")
    def settled(self) -> bool:
        return self.relayed and all(d.status in FINISHED for d in self.deliveries)


@strawberry.type
class EmitResult:
    event_id: strawberry.ID
    replayed: bool


def _delivery(row: Any, *, admin: bool) -> Delivery:
    return Delivery(event_id=strawberry.ID(str(row.event_id)), handler=row.handler,
                    status=Status(row.status), attempts=row.attempts,
                    max_attempts=row.max_attempts, last_error=row.last_error if admin else None,
                    next_attempt_at=row.next_attempt_at, updated_at=row.updated_at,
                    finished_at=row.finished_at)


async def _events(ctx: Context, rows: list[Any]) -> list[Event]:
    ids = [str(r.id) for r in rows]
    by_event: dict[str, list[Delivery]] = {i: [] for i in ids}
    if ids:
        async with ctx.connect() as connection:
            for d in await reads.deliveries_of(connection, ids):
                by_event[str(d.event_id)].append(_delivery(d, admin=ctx.access is None))
    return [Event(id=strawberry.ID(str(r.id)), type=r.type, model=r.model,
                  key=None if r.key is None else strawberry.ID(r.key), version=r.version,
                  payload=_payload(ctx, r), created_at=r.created_at,
                  caused_by=None if r.caused_by is None else strawberry.ID(str(r.caused_by)),
                  relayed=r.relayed_at is not None, deliveries=by_event[str(r.id)],
                  request_id=r.request_id if ctx.access is None else None)
            for r in rows]


def _visible(ctx: Context, row: Any) -> bool:
    """The admin sees every event; a role, the change events of documents it can read (as
    the document was then: the event's own copy)."""
    if ctx.access is None:
        return True
    if row.model is None:
        return False
    payload = row.payload or {}
    document = document_from_json(payload.get("document") or payload.get("previous"))
    return ctx.access.model(row.model).sees(document)


def _payload(ctx: Context, row: Any) -> Any:
    if ctx.access is None or row.model is None:
        return row.payload
    access = ctx.access.model(row.model)
    payload = dict(row.payload)
    for part in ("document", "previous"):
        if isinstance(payload.get(part), dict):
            payload[part] = access.redact(payload[part])
    if isinstance(payload.get("changedFields"), list):
        payload["changedFields"] = list(access.readable_of(payload["changedFields"]))
    return payload


def _event_id(id: str) -> str:
    try:
        return str(uuid.UUID(id))
    except ValueError:
        raise NotFound(f"no event {id!r}", id=id) from None


async def _one(ctx: Context, id: str) -> Event | None:
    async with ctx.connect() as connection:
        row = await reads.event(connection, _event_id(id))
    if row is None or not _visible(ctx, row):
        return None
    return (await _events(ctx, [row]))[0]


def _context(info: strawberry.Info) -> Context:
    context: Context = info.context
    return context


@strawberry.type
class EventQueries:
    @strawberry.field(description="One event with its deliveries.")
    async def event(self, info: strawberry.Info, id: strawberry.ID) -> Event | None:
        return await _one(_context(info), id)

    @strawberry.field(description="Events, newest first, filtered by type, document id (key) "
                                  "or the status of any of their deliveries.")
    async def events(self, info: strawberry.Info, type: str | None = None,
                     key: strawberry.ID | None = None, status: Status | None = None,
                     first: int = 50, before_seq: int | None = None) -> list[Event]:
        if not 0 <= first <= MAX_EVENTS_PAGE:
            raise BadInput(f"first must be between 0 and {MAX_EVENTS_PAGE}", field="first")
        ctx = _context(info)
        ctx.require_admin("events")
        async with ctx.connect() as connection:
            rows = await reads.events(connection, event_type=type, key=key,
                                      status=status.value if status else None,
                                      before_seq=before_seq, limit=first)
        return await _events(ctx, rows)

    @strawberry.field(description="Deliveries, most recently changed first.")
    async def deliveries(self, info: strawberry.Info, status: Status | None = None,
                         handler: str | None = None, first: int = 50) -> list[Delivery]:
        if not 0 <= first <= MAX_EVENTS_PAGE:
            raise BadInput(f"first must be between 0 and {MAX_EVENTS_PAGE}", field="first")
        ctx = _context(info)
        ctx.require_admin("deliveries")
        async with ctx.connect() as connection:
            rows = await reads.deliveries(connection, status=status.value if status else None,
                                          handler=handler, limit=first)
        return [_delivery(r, admin=True) for r in rows]


@strawberry.type
class EventMutations:
    @strawberry.mutation(description="Emit a custom event (not a state change) to the handlers; "
                                     "idempotent on mutationId.")
    async def emit_event(self, info: strawberry.Info, type: str, key: strawberry.ID | None = None,
                         payload: JSON | None = None,
                         mutation_id: strawberry.ID | None = None) -> EmitResult:
        if payload is not None and not isinstance(payload, dict):
            raise BadInput("payload must be a JSON object", field="payload")
        ctx = _context(info)
        ctx.require_admin("emitEvent")
        ctx.quotas.commit(ctx.identity)
        async with ctx.share():
            emitted = await ctx.runtime.emit(type, key, payload or {}, mutation_id=mutation_id,
                                             owner=ctx.owner)
        return EmitResult(event_id=strawberry.ID(emitted.event_id), replayed=emitted.replayed)

    @strawberry.mutation(description="Send a dead (or finished) event to its handler(s) again.")
    async def redeliver_event(self, info: strawberry.Info, id: strawberry.ID,
                              handler: str | None = None) -> Event:
        ctx = _context(info)
        ctx.require_admin("redeliverEvent")
        async with ctx.share():
            handlers = await ctx.runtime.redeliver(_event_id(id), handler)
        if not handlers:
            raise NotFound(f"event {id} has no finished delivery"
                           + (f" for handler {handler!r}" if handler else ""), id=id)
        event = await _one(ctx, id)
        assert event is not None
        return event


@strawberry.type
class EventSubscriptions:
    @strawberry.subscription(description="An event's state now, then each time a delivery "
                                         "changes; completes once the event is settled.")
    async def event(self, info: strawberry.Info, id: strawberry.ID) -> AsyncGenerator[Event, None]:
        ctx = _context(info)
        runtime = ctx.runtime
        last: Any = None
        with runtime.delivery_changes.watch(str(id)) as changed:
            while True:
                changed.clear()  # before reading: a change from now on wakes the next read
                event = await _one(ctx, id)
                if event is None:
                    raise NotFound(f"no event {id!r}", id=id)
                state = (event.relayed,
                         [(d.handler, d.status, d.attempts) for d in event.deliveries])
                if state != last:
                    last = state
                    yield event
                if event.settled():
                    return
                # Workers announce delivery changes; the relay's (relayed, dispatched) and a
                # lost announcement are caught by this re-read.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(runtime.settings.event_poll_interval):
                        await changed.wait()
