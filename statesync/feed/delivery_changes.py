"""Wake-ups for the `event(id)` subscription: a delivery of that event changed.

Deliveries change in Celery workers, outside the change feed. A worker publishes the
event id on the ``deliveries`` channel after each commit that changes one; every API
process sets the waiters of that id. A wake-up is only a hint: waiters re-read the
database, and still do so every ``event_poll_interval`` in case one was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator


class DeliveryChanges:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    @contextlib.contextmanager
    def watch(self, event_id: str) -> Iterator[asyncio.Event]:
        """An asyncio.Event set whenever ``event_id``'s deliveries may have changed."""
        changed = asyncio.Event()
        self._waiters[event_id].add(changed)
        try:
            yield changed
        finally:
            waiters = self._waiters[event_id]
            waiters.discard(changed)
            if not waiters:
                del self._waiters[event_id]

    def notify(self, event_id: str) -> None:
        for changed in self._waiters.get(event_id, ()):
            changed.set()
