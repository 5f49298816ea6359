"""The outbox relay: turns committed events into Celery tasks, reliably.

Exactly one relay is active: it holds a Postgres advisory lock on its own
connection (checked alive every loop; lose it and the role is gone). Standbys
poll for the lock and take over when the active one dies. Each round:

1. fan out: events not yet relayed become one delivery per matching handler;
2. recover (once per poll interval): deliveries whose lease expired (a worker
   was killed, lost or stuck) go back to ``retrying``, or to ``dead`` when out
   of attempts;
3. dispatch: due deliveries (for ordered handlers, only the oldest unfinished
   one per document) are locked (FOR UPDATE SKIP LOCKED) and marked
   ``dispatched`` in one statement, then sent to the broker before that
   transaction commits, so two relays never send the same row at once, and a
   relay dying mid-send only causes a resend, which the delivery row makes
   harmless. An ordered key's head goes in a task of its own; unordered
   deliveries go in bundles when there are many, or when many tasks already
   wait in the broker's queue (``tasks.bundle_size``). A dispatched delivery that
   no worker has started within ``dispatch_timeout`` (the broker lost it, or
   the worker that had prefetched it died) is sent again: a few seconds, where
   a running handler keeps the lease its worker renews.

Nothing the relay depends on may kill it. A failed round (the broker is down,
PostgreSQL restarted) is logged in one line and tried again with a growing,
jittered delay; the role is kept through a broker outage, and given up only with
the connection that holds its lock.

LISTEN/NOTIFY wakes it (the sequencer notifies once per batch; workers after
a failure, and after an ordered success when they have no broker to hand the key's
next delivery to); it also polls, because a notification can be lost. A wake-up runs
fan-out and dispatch, and again only while a batch comes back full; recovery,
which only acts on leases that ran out, runs once per poll interval. Broker calls
run in a thread: they never block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import kombu.exceptions
import redis
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from statesync.config import libpq_url
from statesync.eventing import metrics
from statesync.eventing import statements as ev
from statesync.eventing.broker import Broker, Pair
from statesync.eventing.handlers import Handlers
from statesync.eventing.lifecycle import Status, after_lost_lease, lost_lease_error
from statesync.eventing.tasks import bundle_size
from statesync.store import locks
from statesync.store import statements as q
from statesync.supervision import being_cancelled

log = logging.getLogger(__name__)

BATCH = 200
QUEUE_LENGTH_KEEPS = 1.0  # seconds a broker's queue length is taken as still true
RETRY_DELAY = 1.0  # a standby's poll for the role
# After a failure: random delays growing from BACKOFF_START up to BACKOFF_MAX seconds, so
# that a fleet of relays and workers does not reconnect in step.
BACKOFF_START = 0.2
BACKOFF_MAX = 3.0
# What a server going away raises: one log line, not a traceback.
OUTAGES: tuple[type[BaseException], ...] = (
    OSError, asyncpg.PostgresError, asyncpg.InterfaceError, sqlalchemy.exc.DBAPIError,
    sqlalchemy.exc.TimeoutError, kombu.exceptions.OperationalError, redis.RedisError,
)


class Relay:
    def __init__(self, engine: AsyncEngine, database_url: str, broker: Broker, handlers: Handlers,
                 *, poll_interval: float, dispatch_timeout: float) -> None:
        self._engine = engine
        self._database_url = libpq_url(database_url)
        self.broker = broker
        self._handlers = handlers
        self._poll_interval = poll_interval
        self._dispatch_timeout = timedelta(seconds=dispatch_timeout)
        self._wake = asyncio.Event()
        self._next_recovery = 0.0  # time.monotonic() from which a round also recovers
        # Tasks the broker's queue held after the last send, and when (time.monotonic()):
        # a dispatch queued behind a backlog goes in bundles (tasks.bundle_size).
        self._waiting: tuple[int, float] = (0, -math.inf)
        self.active = False
        self.sent = 0  # deliveries dispatched by this process, for /healthz and benchmarks

    async def run(self) -> None:
        """Relay until cancelled; never returns and never raises anything else (holding the
        role never ends but by an error, which is retried for ever)."""
        holding = AsyncRetrying(retry=retry_if_exception(_any_failure), before_sleep=self._failed,
                                wait=wait_random_exponential(BACKOFF_START, BACKOFF_MAX))
        await holding(self._hold_role)

    async def _hold_role(self) -> None:
        lock = await asyncpg.connect(self._database_url)
        try:
            await self._acquire(lock)
            await lock.add_listener(q.OUTBOX_CHANNEL, self._on_notify)
            self.active = True
            metrics.RELAY_ACTIVE.set(1)
            log.info("relay active")
            await self._relay_forever(lock)
        finally:
            self.active = False
            metrics.RELAY_ACTIVE.set(0)
            with contextlib.suppress(Exception):
                await lock.close()

    def _failed(self, state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        delay = state.upcoming_sleep
        metrics.RELAY_FAILED_ROUNDS.inc()
        if isinstance(error, OUTAGES):
            log.warning("relay round failed (%s: %s); again in %.1fs",
                        type(error).__name__, error, delay)
        else:  # not a server going away: a bug, worth its traceback
            log.error("relay round failed; again in %.1fs", delay, exc_info=error)

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _acquire(self, lock: asyncpg.Connection) -> None:
        while True:
            if await lock.fetchval("SELECT pg_try_advisory_lock($1)", locks.RELAY):
                return
            # A standby: Postgres has no "wait for this lock with a timeout", so poll.
            await asyncio.sleep(RETRY_DELAY)

    async def _relay_forever(self, lock: asyncpg.Connection) -> None:
        # A round that fails while the lock's connection lives (the broker is down, a pool
        # connection broke) is tried again holding the role; once that connection is gone,
        # so is the role, and ``run`` starts over.
        rounds = AsyncRetrying(
            retry=retry_if_exception(lambda error: _any_failure(error) and not lock.is_closed()),
            wait=wait_random_exponential(BACKOFF_START, BACKOFF_MAX), before_sleep=self._failed,
            reraise=True)
        while True:
            self._wake.clear()
            await rounds(self._pump_until_idle)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            await lock.fetchval("SELECT 1")  # still holding the role? (raises when the link died)

    async def _pump_until_idle(self) -> None:
        # Another round at once only when one came back full: what else became due since
        # (a notification, a retry's backoff ending) wakes or polls the loop.
        while await self._round() >= BATCH:
            pass

    async def pump(self) -> int:
        """One round of work, recovery included; returns how much was done (0: nothing to
        do now)."""
        self._next_recovery = 0.0
        return await self._round()

    async def _round(self) -> int:
        """Fan-out, recovery when its interval has passed, dispatch; returns the largest
        amount any of them did (``BATCH``: there is likely more)."""
        fanned = await self._fan_out()
        recovered = 0
        if time.monotonic() >= self._next_recovery:
            recovered = await self._recover()
            self._next_recovery = time.monotonic() + self._poll_interval
        return max(fanned, recovered, await self._dispatch())

    async def _fan_out(self) -> int:
        now = datetime.now(UTC)
        async with self._engine.begin() as connection:
            events = sorted((await connection.execute(ev.relay_events(now, BATCH))).all(),
                            key=lambda event: event.seq)
            if not events:
                return 0
            rows = [self._delivery(e, h.name, h.max_attempts, h.ordered, now)
                    for e in events for h in self._handlers.matching(e.type)]
            # An ordered delivery starts out waiting; each key's first unfinished one is
            # then made due, under the key's lock (a head finishing meanwhile waits for it).
            keys = sorted({r["ordering_key"] for r in rows if r["ordering_key"] is not None})
            if keys:
                await connection.execute(ev.lock_keys(keys))
            if rows:
                await connection.execute(ev.insert_deliveries(), rows)
            if keys:
                await connection.execute(ev.promote_heads(keys, now))
        return len(events)

    @staticmethod
    def _delivery(event: Any, handler: str, max_attempts: int, ordered: bool,
                  now: datetime) -> dict[str, Any]:
        key = f"{handler}|{event.model or ''}|{event.key or ''}" if ordered else None
        return {"event_id": event.id, "handler": handler,
                "status": Status.WAITING if ordered else Status.PENDING, "attempts": 0,
                "max_attempts": max_attempts, "ordering_key": key, "event_seq": event.seq,
                "next_attempt_at": now, "created_at": now, "updated_at": now}

    async def _recover(self) -> int:
        """Send again what lost its worker: a running delivery whose lease ran out, and a
        dispatched one that no worker started in time, provided nothing waits in the
        broker's queue (else it is likely still there, behind a backlog: sending it again
        would only grow the queue)."""
        now = datetime.now(UTC)
        async with self._engine.begin() as connection:
            stale = (await connection.execute(
                ev.expired_leases(now, BATCH, Status.RUNNING))).all()
            unstarted = (await connection.execute(
                ev.expired_leases(now, BATCH, Status.DISPATCHED))).all()
            if unstarted and not await self._queue_empty():
                unstarted = []
            freed: set[str] = set()  # keys whose dead head lets the next delivery go
            for row in (*stale, *unstarted):
                status = after_lost_lease(row.status, row.attempts, row.max_attempts)
                error = lost_lease_error(row.status)
                await connection.execute(ev.set_delivery(
                    row.event_id, row.handler, updated_at=now, lease_expires_at=None,
                    status=status, next_attempt_at=now,
                    finished_at=now if status is Status.DEAD else None, last_error=error))
                if status is Status.DEAD and row.ordering_key is not None:
                    freed.add(row.ordering_key)
                if row.status == Status.RUNNING:  # its attempt will never report: close it here
                    await connection.execute(ev.abandon_attempt(row.event_id, row.handler, now,
                                                               status, error))
        # In a transaction of its own: the key locks are taken before any row lock, as
        # everywhere else.
        if freed:
            async with self._engine.begin() as connection:
                await connection.execute(ev.durable_commit())  # a lost one strands the key
                await connection.execute(ev.lock_keys(sorted(freed)))
                await connection.execute(ev.promote_heads(sorted(freed), now))
        return len(stale) + len(unstarted)

    async def _dispatch(self) -> int:
        now = datetime.now(UTC)
        async with self._engine.begin() as connection:
            due = sorted((await connection.execute(
                ev.dispatch_due(now, BATCH, now + self._dispatch_timeout))).all(),
                key=lambda d: (d.next_attempt_at, d.event_seq))
            if not due:
                return 0
            pairs = [(str(d.event_id), d.handler) for d in due]
            # An ordered key's head goes alone, so that keys run side by side; the others
            # go in bundles when there are many (statesync.eventing.tasks.bundle_size).
            keyed = [pair for pair, d in zip(pairs, due, strict=True) if d.ordering_key]
            loose = [pair for pair, d in zip(pairs, due, strict=True) if not d.ordering_key]
            # A send that fails rolls the dispatch back: they stay due.
            await asyncio.to_thread(self._send, keyed, loose)
        if loose:
            await asyncio.to_thread(self._note_queue)
        self.sent += len(pairs)
        metrics.RELAY_DISPATCHED.inc(len(pairs))
        return len(pairs)

    def _send(self, keyed: list[Pair], loose: list[Pair]) -> None:
        if keyed:
            self.broker.send(keyed)
        if loose:
            self.broker.send(loose, bundle_size(len(loose), self._queued_before()))

    async def _queue_empty(self) -> bool:
        """Whether nothing waits in the broker's queue; a broker that cannot say is taken
        as not empty (nothing sent again), and the round goes on to its dispatch, whose
        send then fails and is logged, once."""
        try:
            return await asyncio.to_thread(self.broker.queued) == 0
        except Exception as exc:
            log.debug("could not ask the broker its queue's length (%s)", exc)
            return False

    def _note_queue(self) -> None:
        """Ask the queue's length after a dispatch has committed, not before its send: the
        round trip is then on no delivery's way (a worker's claim waits for the dispatch's
        commit). What it says is the next round's to use: a backlog in the broker lasts."""
        try:
            self._waiting = (self.broker.queued(), time.monotonic())
        except Exception as exc:  # only bundling is lost: the tasks went
            log.debug("could not ask the broker its queue's length (%s)", exc)

    def _queued_before(self) -> int:
        """The queue's length after the last send, if that was recent: an idle spell since
        may have drained it, and a few deliveries would then wait in one bundle for
        nothing."""
        count, at = self._waiting
        return count if time.monotonic() - at <= QUEUE_LENGTH_KEEPS else 0


def _any_failure(error: BaseException) -> bool:
    # not cancellation, not KeyboardInterrupt, nor an error standing in for a cancellation
    return isinstance(error, Exception) and not being_cancelled()
