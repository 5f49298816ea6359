"""A semaphore whose waiters take turns by owner.

``asyncio.Semaphore`` serves waiters first come first served, so an owner (an identity)
that queues a thousand waiters at once puts everyone else behind all of them. Here each
owner has its own queue and a freed place goes to the owners in turn, round robin: a
newcomer waits for one of the others' pieces each, not for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator


class FairSlots:
    """``places`` places, taken with ``async with slots.place(owner)``."""

    def __init__(self, places: int) -> None:
        if places < 1:
            raise ValueError("places must be at least 1")
        self._free = places
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def free(self) -> int:
        return self._free

    @property
    def queued(self) -> int:
        """Waiters queued, of every owner."""
        return sum(len(queue) for queue in self._waiting.values())

    @contextlib.asynccontextmanager
    async def place(self, owner: str) -> AsyncIterator[None]:
        """Hold one place, queueing in ``owner``'s turn while none is free."""
        await self._take(owner)
        try:
            yield
        finally:
            self._give_back()

    async def _take(self, owner: str) -> None:
        if self._free and not self._waiting:
            self._free -= 1
            return
        place = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(owner, deque()).append(place)
        try:
            await place
        except asyncio.CancelledError:
            if place.done() and not place.cancelled():
                self._give_back()  # handed a place as it was cancelled: hand it on
            else:
                # Still queued, unless a give-back already dropped it as done (a cancelled
                # future is done at once; its task only gets here on a later turn).
                queue = self._waiting.get(owner)
                if queue is not None and place in queue:
                    queue.remove(place)
                    if not queue:
                        del self._waiting[owner]
            raise

    def _give_back(self) -> None:
        while self._waiting:
            owner, queue = next(iter(self._waiting.items()))
            place = queue.popleft()
            if not queue:
                del self._waiting[owner]
            if place.done():
                continue  # cancelled while it waited: its owner keeps its turn
            if queue:
                self._waiting.move_to_end(owner)  # its next waiter after everyone else's
            place.set_result(None)  # the place passes straight to it
            return
        self._free += 1
