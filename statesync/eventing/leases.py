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
import functools
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

Attempt = TypeVar("Attempt", bound=Hashable)


@dataclass(slots=True)
class _Held:
    announce_at: float | None  # None once announced
    renew_at: float


def _forget_in_child(keeper: weakref.ref[LeaseKeeper[Any]]) -> None:
    # Weakly held: the fork hook lives for ever, a keeper (and its worker's pools) need not.
    alive = keeper()
    if alive is not None:
        alive._forget()


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
        # When the thread next looks by itself (inf: it waits for a hold): a hold due later
        # need not wake it, so a short attempt costs the thread nothing.
        self._looks_at = 0.0
        os.register_at_fork(after_in_child=functools.partial(_forget_in_child, weakref.ref(self)))

    def _forget(self) -> None:
        """In a forked child: the parent's attempts are not its own to renew (their ends
        run in the parent), and its lock may have been copied held."""
        self._held = {}
        self._changed = threading.Condition()
        self._thread = None
        self._looks_at = 0.0

    @contextlib.contextmanager
    def holding(self, attempt: Attempt) -> Iterator[None]:
        """Keep ``attempt``'s lease (renewed by ``renew(attempt)``) while the block runs."""
        now = time.monotonic()
        held = _Held(now + self._notice_after, now + self._every)
        with self._changed:
            self._held[attempt] = held
            if self._thread is None or not self._thread.is_alive():
                self._looks_at = 0.0  # a new thread looks at once
                self._thread = threading.Thread(target=self._keep, name="leases", daemon=True)
                self._thread.start()
            elif now + self._notice_after < self._looks_at:
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
                    self._looks_at = min(moments, default=math.inf)
                    self._changed.wait(self._looks_at - now if moments else None)
                    continue
                self._looks_at = 0.0  # acting: it looks again right after
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
