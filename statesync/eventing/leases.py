"""Keeping the leases of the attempts a worker process runs.

One thread per process, started on first use, renews the lease of every attempt held
in it each ``every`` seconds, so a long handler is not taken for a dead one and run
again beside itself; a process that dies stops renewing, and the relay sends its
deliveries again once their leases run out. An attempt still held after
``notice_after`` is also announced once as running, so a watcher sees a long attempt
start without every short one paying for it. Holding an attempt costs a dict entry
and a notify, not a thread started and joined per attempt. Both callbacks run on the
keeper's thread, so they must be quick or time out quickly (a renewal waits for them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Attempt = TypeVar("Attempt", bound=Hashable)


@dataclass(slots=True)
class _Held:
    announce_at: float | None  # None once announced
    renew_at: float


class LeaseKeeper(Generic[Attempt]):
    def __init__(self, *, every: float, notice_after: float,
                 renew: Callable[[Attempt], None], announce: Callable[[Attempt], None]) -> None:
        self._every = every
        self._notice_after = min(notice_after, every)
        self._renew = renew
        self._announce = announce
        self._held: dict[Attempt, _Held] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        """In a forked child: the parent's attempts are not its own to renew (their ends
        run in the parent), and its lock may have been copied held."""
        self._held = {}
        self._changed = threading.Condition()
        self._thread = None

    @contextlib.contextmanager
    def holding(self, attempt: Attempt) -> Iterator[None]:
        """Keep ``attempt``'s lease (renewed by ``renew(attempt)``) while the block runs."""
        now = time.monotonic()
        with self._changed:
            self._held[attempt] = _Held(now + self._notice_after, now + self._every)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._keep, name="leases", daemon=True)
                self._thread.start()
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                del self._held[attempt]

    def _keep(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [(attempt, held) for attempt, held in self._held.items()
                       if held.renew_at <= now or (held.announce_at is not None
                                                   and held.announce_at <= now)]
                if not due:
                    moments = [moment for held in self._held.values()
                               for moment in (held.announce_at, held.renew_at)
                               if moment is not None]
                    self._changed.wait(min(moments) - now if moments else None)
                    continue
            for attempt, held in due:  # outside the lock: a round trip each
                self._act(attempt, held, now)

    def _act(self, attempt: Attempt, held: _Held, now: float) -> None:
        # The renewal first: a slow announcement (Redis) must not cost a lease.
        if held.renew_at <= now:
            held.renew_at = now + self._every
            try:
                self._renew(attempt)
            except Exception:
                log.warning("could not renew the lease of %s", attempt, exc_info=True)
        if held.announce_at is not None and held.announce_at <= now:
            held.announce_at = None
            try:
                self._announce(attempt)
            except Exception:
                log.warning("could not announce %s as running", attempt, exc_info=True)
