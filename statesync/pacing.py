"""Bulk CPU work yields to requests, and takes turns by who asked for it.

Some work is milliseconds of CPU with nothing to await: rendering a snapshot chunk of
hundreds of documents, parsing and validating a document the cache has not seen. On one
event loop, a thousand such pieces queued at once would put every commit behind all of
them. So bulk work runs one piece at a time and, while any request (a query or a
mutation, over HTTP or a websocket) is being answered, takes at most ``share`` of the
time: after a piece that took *t*, the next waits ``t * (1 - share) / share``. With
nothing else to do, bulk work runs back to back.

Pieces take turns by owner (an identity's key, statesync.fair): an owner that queued
many pieces delays another owner's first by one of its pieces, not by all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from statesync.fair import FairSlots


class Pacer:
    def __init__(self, share: float) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.share = share
        self.requests = 0  # answered right now
        self._turn = FairSlots(1)  # held while a piece runs and sleeps off its share

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        self.requests += 1
        try:
            yield
        finally:
            self.requests -= 1

    @contextlib.asynccontextmanager
    async def bulk(self, owner: str) -> AsyncIterator[None]:
        async with self._turn.place(owner):
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                yield
            finally:
                spent = loop.time() - started
                if self.requests and spent > 0:
                    await asyncio.sleep(spent * (1 - self.share) / self.share)
