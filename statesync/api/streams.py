"""Subscription streams: snapshot or replay first, then live changes, with no gap and no repeat.

Subscribe first, then read. The stream registers with the hub before it reads
the snapshot (or the changelog), so a change committed meanwhile is in the live
queue; everything the read already covered is dropped by cursor and version.

A snapshot is exact at a cursor: it is read in one REPEATABLE READ transaction
together with the feed head and the changes committed but not yet sequenced.
Those few are awaited on the live queue and folded in, so the SNAPSHOT message
carries a cursor P such that the snapshot equals the state after every change
up to P; resuming with ``since: P`` then misses and repeats nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from statesync import metrics
from statesync.access import ModelAccess
from statesync.api.context import Context
from statesync.change import Change
from statesync.errors import BadInput, Forbidden, InvalidCursor
from statesync.feed.hub import MAX_REFERRING
from statesync.feed.subscriber import (
    Delivery,
    Overflowed,
    Sees,
    Sink,
    Subscriber,
    classify_by,
    sees_followed,
)
from statesync.filters import AllOf, FieldKind, Filter, Matcher, matcher
from statesync.store import reads

SNAPSHOT_ALIGN_TIMEOUT = 10.0
REPLAY_PAGE = 1000


@runtime_checkable
class LiveSinks(Protocol):
    """What gives a stream its fast path for live changes (``api.ws.live.LiveFrames``):
    the GraphQL root value of an operation served over a websocket."""

    def sink(self, to_root: Callable[[Delivery], Any]) -> Sink | None: ...


class PrunedSince(Exception):
    """Retention deleted changes a resuming subscriber needs."""


@dataclass(frozen=True, slots=True)
class Message:
    """What the GraphQL layer turns into one ``<Model>Change``."""

    op: str
    cursor: int
    change: Change | None = None
    document: dict[str, Any] | None = None
    documents: list[dict[str, Any]] | None = None
    has_more: bool | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """What a subscription follows: one document or a filtered collection, as its reader's
    rules let it see them (``where`` already includes the rule's filter). A document that
    leaves what the reader may see is REMOVED for it; one that enters arrives with its op."""

    model: str
    doc_id: str | None
    where: Filter | None
    kinds: Mapping[str, FieldKind]
    access: ModelAccess | None = None
    # The referenced models its selection shows, with what of each the reader may see.
    follows: Mapping[str, Sees | None] = field(default_factory=dict, compare=False)
    match: Matcher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "match", matcher(self.where, self.kinds))

    @classmethod
    def of(cls, model: str, doc_id: str | None, where: Filter | None,
           kinds: Mapping[str, FieldKind], access: ModelAccess | None,
           follows: Mapping[str, Sees | None] | None = None) -> Target:
        if access is not None:
            if not access.can_read:
                raise Forbidden(f"this role may not read {model} documents", model=model)
            if access.visible is not None and where != access.visible:  # (the same: once)
                where = access.visible if where is None else AllOf((where, access.visible))
        return cls(model, doc_id, where, kinds, access, follows or {})

    def wants(self, change: Change) -> str | None:
        if change.model != self.model:
            return None
        if self.doc_id is not None and change.doc_id != self.doc_id:
            return None
        if self.doc_id is not None and self.where is None:
            return change.op
        return classify_by(change, self.match)


MAX_CURSOR_DIGITS = 19  # cursors are bigints


def parse_cursor(since: str) -> int:
    # Exactly what the server issues: 0-9 only, and no longer than a bigint.
    if not (since.isascii() and since.isdigit() and len(since) <= MAX_CURSOR_DIGITS):
        raise InvalidCursor(f"not a cursor: {since[:40]!r}", cursor=since[:40])
    return int(since)


class Shown:
    """What a stream has sent, to send nothing twice: every change up to a cursor, and, at
    that cursor, the documents shown through a reference (a change of a referenced document
    is sent as each document referring to it, all at its cursor, and may arrive both from
    the replay and from the live feed)."""

    def __init__(self) -> None:
        self.cursor = 0
        self.through: set[str] | None = set()  # None: every document (a snapshot's cursor)

    def new(self, message: Message, last: int) -> bool:
        change = message.change
        if message.cursor > last:
            return True
        if change is None or change.via is None or message.cursor < last:
            return False
        if message.cursor > self.cursor:
            return True
        return self.through is not None and change.doc_id not in self.through

    def mark(self, message: Message) -> int:
        if message.op == "SNAPSHOT":  # it shows everything as of its cursor, references too
            self.cursor, self.through = message.cursor, None
            return message.cursor
        if message.cursor != self.cursor:
            self.cursor, self.through = message.cursor, set()
        if message.change is not None and message.change.via is not None and (
                self.through is not None):
            self.through.add(message.change.doc_id)
        return message.cursor


async def stream(ctx: Context, target: Target, since: str | None, live: Sink | None = None
                 ) -> AsyncGenerator[Message, None]:
    """``live``: what may send live changes straight from the hub while this stream is
    waiting for one (``Subscriber.get``); what it sends, the stream does not yield."""
    runtime = ctx.runtime
    settings = runtime.settings
    async with runtime.hub.subscribe(target.model, target.doc_id, target.where, target.kinds,
                                     settings.subscriber_queue_size,
                                     target.follows) as subscriber:
        metrics.SUBSCRIPTIONS.inc()
        shown = Shown()
        try:
            if since is not None:
                last = parse_cursor(since)
                async for message in _replay(ctx, target, last):
                    last = shown.mark(message)
                    yield message
            else:
                last = 0
                async for message in _snapshot(ctx, target, subscriber):
                    last = shown.mark(message)
                    yield message
            while True:
                delivery = await subscriber.get(live, last)
                last = max(last, subscriber.passed)
                message = live_message(delivery)
                if shown.new(message, last):
                    last = shown.mark(message)
                    yield message
        except (Overflowed, PrunedSince):
            metrics.RESYNCS.inc()
            yield Message(op="RESYNC", cursor=max(last, subscriber.passed))
        finally:
            metrics.SUBSCRIPTIONS.dec()


def _message(op: str, change: Change) -> Message:
    # A document that left the subscription is named, not shown: it may have left the
    # reader's rule, and what it is now is none of the reader's business.
    return Message(op=op, cursor=change.cursor, change=change,
                   document=None if op == "REMOVED" else change.document)


def live_message(delivery: Delivery) -> Message:
    return _message(delivery.op, delivery.change)


async def _replay(ctx: Context, target: Target, since: int) -> AsyncIterator[Message]:
    # Never yield while holding a connection: a client that reads slowly would keep it
    # (and its open transaction) for as long as it likes, and a few such clients drain the pool.
    async with ctx.streaming_read() as connection:
        head, oldest = await reads.feed_bounds(connection)
    if since > head:
        raise InvalidCursor(f"cursor {since} is ahead of the feed ({head})", cursor=str(since))
    if since < head and (oldest is None or oldest > since + 1):
        raise PrunedSince  # what came after `since` is no longer kept: start over
    after = since
    related = sorted(target.follows)
    while True:
        async with ctx.streaming_read() as connection:
            page = await reads.changes(connection, target.model, target.doc_id, after, REPLAY_PAGE,
                                       related)
        # A referenced document's change is replayed as the hub delivers it live (the
        # referring documents, as they are now), once per document per page: its last.
        last_of = {(c.model, c.doc_id): c.cursor for c in page if c.model != target.model}
        for change in page:
            if change.model != target.model:
                if last_of[(change.model, change.doc_id)] == change.cursor:
                    async for message in _through_references(ctx, target, change):
                        yield message
                continue
            op = target.wants(change)
            if op is not None:
                yield _message(op, change)
        if len(page) < REPLAY_PAGE:
            return
        after = page[-1].cursor


async def _through_references(ctx: Context, target: Target, change: Change
                              ) -> AsyncIterator[Message]:
    if not sees_followed(target.follows, change):
        return
    paths = [p for p in ctx.runtime.hub.relations.referring_to(change.model)
             if p.model == target.model]
    among = None if target.doc_id is None else [target.doc_id]
    async with ctx.streaming_read() as connection:
        found = await reads.referring(connection, paths, change.doc_id, MAX_REFERRING + 1,
                                      among=among)
    if len(found) > MAX_REFERRING:
        raise PrunedSince  # as live: too many to re-render one by one, so start over
    for model, document, fields in found:
        seen = change.through(model, document, fields)
        op = target.wants(seen)
        if op is not None:
            yield _message(op, seen)


async def _snapshot(ctx: Context, target: Target, subscriber: Subscriber
                    ) -> AsyncIterator[Message]:
    if target.doc_id is not None:  # one document: too small to queue for a turn
        head, pending, snapshot = await _read(ctx, target)
        cursor = await _align(ctx, subscriber, target, pending, snapshot, head) if pending else head
        yield Message(op="SNAPSHOT", cursor=cursor, document=snapshot.get(target.doc_id))
        return
    async with ctx.snapshot_turn():
        head, pending, snapshot = await _read(ctx, target)
        cursor = await _align(ctx, subscriber, target, pending, snapshot, head) if pending else head
        docs = sorted(snapshot.values(), key=lambda d: d["id"])
        del snapshot
        chunk = ctx.runtime.settings.snapshot_chunk_size
        for start in range(0, max(len(docs), 1), chunk):
            yield Message(op="SNAPSHOT", cursor=cursor, documents=docs[start : start + chunk],
                          has_more=start + chunk < len(docs))


async def _read(ctx: Context, target: Target) -> tuple[int, set[int], dict[str, dict[str, Any]]]:
    limit = ctx.runtime.settings.max_snapshot_documents
    async with ctx.connect() as connection:
        read = await reads.snapshot(connection, target.model, target.doc_id, target.where, limit,
                                    target.access, target.kinds)
    if read is None:
        raise BadInput(f"the collection has more than {limit} documents to snapshot; "
                       "narrow it with `where`", field="where", limit=limit)
    return read


async def _align(ctx: Context, subscriber: Subscriber, target: Target, pending: set[int],
                 snapshot: dict[str, dict[str, Any]], head: int) -> int:
    """Wait until the hub has passed every pending change, fold the queued ones up to the
    last of them into the snapshot, and return that change's cursor."""
    hub = ctx.runtime.hub
    with hub.watch(pending) as watch:
        async with ctx.connect() as connection:
            done = await reads.sequenced(connection, pending)
        for seq, cursor in done:
            if hub.last is not None and cursor <= hub.last:
                watch.mark(seq, cursor)
        async with asyncio.timeout(SNAPSHOT_ALIGN_TIMEOUT):
            await watch.done.wait()
        aligned = max(watch.cursors.values())
    queued = subscriber.pending()
    for delivery in queued:
        change = delivery.change
        if not head < change.cursor <= aligned:
            continue
        current = snapshot.get(change.doc_id)
        if current is not None and current["version"] >= change.version:
            continue
        if delivery.op in ("CREATED", "UPDATED"):
            snapshot[change.doc_id] = change.document or {}
        else:
            snapshot.pop(change.doc_id, None)
    subscriber.requeue([d for d in queued if d.change.cursor > aligned])
    return aligned


