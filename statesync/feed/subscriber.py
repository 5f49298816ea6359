"""One subscription's mailbox: a bounded queue with an overflow policy.

A slow subscriber must never stall the others: the hub only ever ``offer``s,
which never blocks. When the queue is full the subscriber is marked overflowed,
its backlog dropped, and its reader is told to resync.

A reader waiting on an empty queue may leave a *sink* (:meth:`Subscriber.get`): a
function that takes a delivery the moment the hub offers it and says whether it took it
(sent it to the client at once). It is the fan-out's fast path: the hub's one loop over
its subscribers writes the change to each socket, with no task woken per subscriber.
The first delivery a sink refuses (the client is behind, say) goes to the queue and
wakes the reader, which takes over, in order, until its queue is empty again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from statesync.change import Change
from statesync.filters import FieldKind, Filter, Matcher, matcher

log = logging.getLogger(__name__)


class Overflowed(Exception):
    """The subscriber fell more than its queue size behind."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A change as one subscription sees it. ``op`` may differ from the change's:
    a document that stops matching a collection's filter is ``REMOVED`` for it."""

    op: str
    change: Change


def classify(change: Change, where: Filter | None, kinds: Mapping[str, FieldKind]) -> str | None:
    """What ``change`` means to a collection filtered by ``where`` (None: nothing)."""
    return classify_by(change, matcher(where, kinds))


def classify_by(change: Change, match: Matcher) -> str | None:
    """:func:`classify` with the filter compiled (``filters.matcher``) once, for many changes."""
    after = change.document
    before = change.before()
    now_in = after is not None and match(after)
    was_in = before is not None and match(before)
    if now_in:
        return change.op
    if was_in:
        return change.op if change.op in ("DELETED", "EXPIRED") else "REMOVED"
    return None


Sink = Callable[["Delivery"], bool]
# Whether the reader may see a document of a model it follows through references: the
# changes of one it may not never reach it, not even as a re-render of what refers to it.
Sees = Callable[[Mapping[str, Any]], bool]


def sees_followed(follows: Mapping[str, Sees | None], change: Change) -> bool:
    """Whether a reader following ``change.model`` may see the document ``change`` is of,
    before or after it (one that leaves its sight changes what it was shown)."""
    sees = follows.get(change.model)
    if sees is None:
        return True
    return any(doc is not None and sees(doc) for doc in (change.document, change.before()))


class Subscriber:
    def __init__(self, model: str, doc_id: str | None, where: Filter | None,
                 kinds: Mapping[str, FieldKind], maxsize: int,
                 follows: Mapping[str, Sees | None] | None = None) -> None:
        self.model = model
        self.follows: Mapping[str, Sees | None] = follows or {}
        self.doc_id = doc_id
        self.where = where
        self.kinds = kinds
        self._match = matcher(where, kinds)
        self._maxsize = maxsize
        self._queue: deque[Delivery] = deque()
        self._ready = asyncio.Event()
        self._roomy = asyncio.Event()  # at most half full: a refill page fits
        self._roomy.set()
        self.overflowed = False
        self._sink: Sink | None = None
        # The cursor its reader is past: what a sink took, or what the reader said it had.
        self.passed = 0

    @property
    def room(self) -> int:
        """How much a refill may send at once without risking an overflow."""
        return max(1, self._maxsize // 2)

    async def drained(self) -> None:
        """Until the queue is at most half full (or the subscriber overflowed)."""
        await self._roomy.wait()

    def offer(self, change: Change) -> bool:
        """Take a change the hub delivers; True if a sink took it (sent it already)."""
        if self.overflowed:
            return False
        # A document subscription follows its document; with a rule (``where``), in and out of it.
        op = change.op if self.doc_id is not None and self.where is None else classify_by(
            change, self._match)
        if op is None:
            return False
        if self._sink is not None and self._sunk(Delivery(op, change)):
            return True
        if len(self._queue) >= self._maxsize:
            self.resync()
            return False
        self._queue.append(Delivery(op, change))
        if len(self._queue) > self.room:
            self._roomy.clear()
        self._ready.set()
        return False

    def resync(self) -> None:
        """Make the reader start over (RESYNC): it fell too far behind, or the hub could not
        follow what it shows."""
        self.overflowed = True
        self._queue.clear()
        self._roomy.set()  # nothing to wait for any more
        self._ready.set()

    def _sunk(self, delivery: Delivery) -> bool:
        sink, self._sink = self._sink, None  # refused or raised: the reader takes over
        assert sink is not None
        if delivery.change.cursor < self.passed or (
                delivery.change.cursor == self.passed and delivery.change.via is None):
            self._sink = sink
            return True  # the reader has it already (a replay ran past the live feed)
        try:
            taken = sink(delivery)
        except Exception:  # never into the hub's loop, which serves every subscriber
            log.exception("a subscription's fast path failed; its reader takes over")
            return False
        if taken:
            self._sink = sink
            self.passed = delivery.change.cursor
        return taken

    async def get(self, sink: Sink | None = None, passed: int = 0) -> Delivery:
        """The next delivery. ``sink``: what takes deliveries while the queue is empty (see
        the module's docstring); ``passed``: the cursor the reader has already, which the
        sink must not be given again. On return, :attr:`passed` is the last cursor the
        sink took (or ``passed``)."""
        self.passed = max(self.passed, passed)
        try:
            while not self._queue:
                if self.overflowed:
                    raise Overflowed
                self._ready.clear()
                self._sink = sink
                await self._ready.wait()
        finally:
            self._sink = None
        delivery = self._queue.popleft()
        if len(self._queue) <= self.room:
            self._roomy.set()
        return delivery

    def requeue(self, deliveries: list[Delivery]) -> None:
        """Put back, in front, what :meth:`pending` took but the reader does not want yet."""
        self._queue.extendleft(reversed(deliveries))
        if self._queue:
            self._ready.set()
        if len(self._queue) > self.room:
            self._roomy.clear()

    def pending(self) -> list[Delivery]:
        """Take what is queued now without waiting."""
        if self.overflowed:
            raise Overflowed
        items = list(self._queue)
        self._queue.clear()
        self._roomy.set()
        return items
