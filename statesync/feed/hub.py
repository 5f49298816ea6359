"""The per-process fan-out: one feed in, every local subscription out, in cursor order.

Redis pub/sub is fire-and-forget, so the hub trusts nothing it is sent: cursors
are dense, and any gap (a lost message, a Redis reconnect, a sequencer that died
between commit and publish) is refilled from the changelog before delivery. A
periodic check of the feed head catches a gap that no later message reveals.

A subscription whose selection reaches through a reference (an order's
``items { product { priceCents } }``) *follows* the referenced model: when a product
changes, the hub finds the documents that refer to it and hands each following
subscriber an ``UPDATED`` of each one it sees (``Change.through``), before the next change
of the feed, so every screen showing the order shows the new price.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from statesync.change import Change
from statesync.feed.subscriber import Sees, Subscriber, sees_followed
from statesync.filters import FieldKind, Filter
from statesync.relations import Relations
from statesync.store import reads
from statesync.store import statements as q

log = logging.getLogger(__name__)

REFILL_PAGE = 1000
# A refill waits this long per page for subscribers to make room; one still full after it
# is slow, not merely behind, and overflows (RESYNC) like any slow subscriber.
REFILL_PATIENCE = 2.0
# Documents one change of a referenced document may re-render for following subscribers;
# past it, they start over (RESYNC) instead of the hub reading without end.
MAX_REFERRING = 1000
FOLLOWED_OPS = frozenset({"UPDATED", "DELETED", "EXPIRED"})


class SeqWatch:
    """Waits for a set of changes (by ``seq``) to be delivered, recording their cursors."""

    def __init__(self, seqs: set[int]) -> None:
        self.remaining = seqs
        self.cursors: dict[int, int] = {}
        self.done = asyncio.Event()
        if not seqs:
            self.done.set()

    def mark(self, seq: int, cursor: int) -> None:
        if seq in self.remaining:
            self.remaining.discard(seq)
            self.cursors[seq] = cursor
            if not self.remaining:
                self.done.set()


class Hub:
    def __init__(self, engine: AsyncEngine, relations: Relations | None = None) -> None:
        self._engine = engine
        self._relations = relations or Relations({}, {})
        # Subscribers that follow a referenced model, by that model.
        self._following: dict[str, set[Subscriber]] = defaultdict(set)
        self._lock = asyncio.Lock()
        self._by_document: dict[tuple[str, str], set[Subscriber]] = defaultdict(set)
        self._by_model: dict[str, set[Subscriber]] = defaultdict(set)
        self.last: int | None = None  # the last cursor delivered; None until started
        self.ready = asyncio.Event()
        self._watches: set[SeqWatch] = set()

    @property
    def relations(self) -> Relations:
        return self._relations

    @property
    def subscriber_count(self) -> int:
        return sum(map(len, self._by_document.values())) + sum(map(len, self._by_model.values()))

    def subscriptions_by_model(self) -> dict[str, int]:
        """Open subscriptions of this process, by the model they watch (documents and
        collections alike)."""
        counts: dict[str, int] = defaultdict(int)
        for (model, _), subscribers in self._by_document.items():
            counts[model] += len(subscribers)
        for model, subscribers in self._by_model.items():
            counts[model] += len(subscribers)
        return {model: n for model, n in sorted(counts.items()) if n}

    @contextlib.asynccontextmanager
    async def subscribe(self, model: str, doc_id: str | None, where: Filter | None,
                        kinds: Mapping[str, FieldKind], maxsize: int,
                        follows: Mapping[str, Sees | None] | None = None
                        ) -> AsyncIterator[Subscriber]:
        """``follows``: the referenced models the subscription's selection shows, with what
        of each the reader may see (None: all)."""
        follows = follows or {}
        subscriber = Subscriber(model, doc_id, where, kinds, maxsize, follows)
        indexes: dict[Any, set[Subscriber]] = self._by_document if doc_id is not None else self._by_model
        key = (model, doc_id) if doc_id is not None else model
        entries = [(indexes, key), *((self._following, target) for target in follows)]
        for index, at in entries:
            index[at].add(subscriber)
        try:
            yield subscriber
        finally:
            for index, at in entries:
                remaining = index[at]
                remaining.discard(subscriber)
                if not remaining:
                    del index[at]  # or every document ever watched keeps an entry

    async def catch_up(self) -> None:
        """Deliver everything up to the feed head; starts the hub on first call."""
        async with self._engine.connect() as connection:
            head = (await connection.execute(q.feed_head_cursor())).scalar_one()
        async with self._lock:
            if self.last is None:
                self.last = head  # subscribed before reading the head, so nothing falls between
                self.ready.set()
            elif head > self.last:
                await self._refill(head)

    def offer_sequenced(self, batch: list[Change]) -> None:
        """A batch from this process's own sequencer, as it publishes it: delivered now, with
        no Redis round trip, as far as it can be without waiting (the hub idle, the batch
        next in line, no change that must read its referrers). The rest, and any batch it
        does not take, comes from Redis like everyone else's (``on_batch``)."""
        if self.last is None or self._lock.locked():
            return
        for change in batch:
            if change.cursor != self.last + 1:
                return  # a gap, or old: on_batch refills or skips it
            if self._following.get(change.model) and change.op in FOLLOWED_OPS:
                return  # it must read its referrers
            self._dispatch(change)

    async def on_batch(self, batch: list[Change]) -> None:
        async with self._lock:
            if self.last is None:
                return  # not started: catch_up will read a head that covers these
            for change in batch:
                if change.cursor <= self.last:
                    continue
                if change.cursor > self.last + 1:
                    await self._refill(change.cursor - 1)
                await self._deliver(change)

    async def _refill(self, upto: int) -> None:
        assert self.last is not None
        log.info("refilling feed %d..%d from the changelog", self.last + 1, upto)
        async with self._engine.connect() as connection:
            while self.last < upto:
                # Pages no larger than what fits in half a queue, sent once the queues have
                # drained to half: a healthy subscriber keeps up with any backlog this way,
                # where a backlog poured in at once would overflow it.
                subscribers = self._all_subscribers()
                page = min([REFILL_PAGE, *(s.room for s in subscribers)])
                await self._until_drained(subscribers)
                rows = (await connection.execute(
                    q.changes_between(self.last, upto, limit=page))).all()
                if not rows:
                    raise RuntimeError(f"changelog has no cursor after {self.last} up to {upto}")
                for row in rows:
                    await self._deliver(Change.from_row(row))

    def _all_subscribers(self) -> list[Subscriber]:
        return [s for group in (*self._by_document.values(), *self._by_model.values())
                for s in group]

    @staticmethod
    async def _until_drained(subscribers: list[Subscriber]) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REFILL_PATIENCE):
                await asyncio.gather(*(s.drained() for s in subscribers))

    @contextlib.contextmanager
    def watch(self, seqs: set[int]) -> Iterator[SeqWatch]:
        """Learn the cursors of the changes ``seqs`` as the hub delivers them."""
        watch = SeqWatch(set(seqs))
        self._watches.add(watch)
        try:
            yield watch
        finally:
            self._watches.discard(watch)

    async def _deliver(self, change: Change) -> None:
        self._dispatch(change)
        followers = self._following.get(change.model)
        if followers and change.op in FOLLOWED_OPS:
            await self._through_references(change, followers)

    async def _through_references(self, change: Change, followers: set[Subscriber]) -> None:
        seeing = [s for s in followers if sees_followed(s.follows, change)]
        paths = [p for p in self._relations.referring_to(change.model)
                 if any(s.model == p.model for s in seeing)]
        if not paths:
            return
        # A collection must hear of every referring document it may show, a document
        # subscription only of its own: read no more than they can use.
        collections = [s for s in seeing if s.doc_id is None]
        documents_followed = {s.doc_id for s in seeing if s.doc_id is not None}
        found: list[tuple[str, dict[str, Any], tuple[str, ...]]] = []
        async with self._engine.connect() as connection:
            if collections:
                # Only documents some following collection may show: one that matches
                # nothing costs no read of its referrers.
                shown_by: dict[str, list[tuple[Filter | None, Mapping[str, FieldKind]]]] = {}
                for subscriber in collections:
                    shown_by.setdefault(subscriber.model, []).append(
                        (subscriber.where, subscriber.kinds))
                found = await reads.referring(connection, paths, change.doc_id,
                                              MAX_REFERRING + 1, shown_by=shown_by)
                if len(found) > MAX_REFERRING:
                    log.warning("%s %s is referred to by more than %d documents: the collections "
                                "following it resync", change.model, change.doc_id, MAX_REFERRING)
                    for subscriber in collections:
                        subscriber.resync()
                    collections, found = [], []
            if documents_followed and not collections:
                found = await reads.referring(connection, paths, change.doc_id,
                                              len(documents_followed),
                                              among=sorted(documents_followed))
        for model, document, fields in found:
            seen = change.through(model, document, fields)
            for subscriber in seeing:
                if subscriber.model == model and subscriber.doc_id in (None, seen.doc_id):
                    subscriber.offer(seen)

    def _dispatch(self, change: Change) -> None:
        for watch in self._watches:
            watch.mark(change.seq, change.cursor)
        for subscriber in self._by_document.get((change.model, change.doc_id), ()):
            subscriber.offer(change)
        for subscriber in self._by_model.get(change.model, ()):
            subscriber.offer(change)
        self.last = change.cursor
