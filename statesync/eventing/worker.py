"""Running one delivery (event x handler) in a Celery worker, at least once, effect once.

Three short transactions (the claim, and the success of a handler that wrote and emitted
nothing and frees no ordering key, are single statements, run without BEGIN and COMMIT
when the worker has an autocommitting pool: one round trip each):
1. claim: the delivery must be ``dispatched`` (or ``running`` with an expired
   lease); it becomes ``running``, one more attempt, with a fresh lease;
2. the handler runs, outside any transaction, staging its writes in ``tx``;
3. finish: under the row lock, and only if this attempt still owns the
   delivery, the staged writes commit through the one commit path together with
   ``succeeded`` — or, on failure, the delivery becomes ``retrying`` (with
   backoff) or ``dead``.
A duplicate or late task finds the delivery finished or owned by another
attempt and does nothing, so an effect is never applied twice. A bundle (a task of
several deliveries) shares one success statement among all those that end plainly.

The API processes hear of an attempt once, as it ends, in one Redis round trip
(:class:`Notice`): its delivery changed, and documents were committed. A handler
still running after ``RUNNING_NOTICE_AFTER`` is announced as it runs too, so a
watcher sees a long attempt start without every short one paying for it.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from statesync import documents as docs
from statesync.change import ChangeEventPayload
from statesync.eventing import metrics
from statesync.eventing import statements as ev
from statesync.eventing.broker import Pair
from statesync.eventing.handlers import Event, Handler, Handlers
from statesync.eventing.leases import LeaseKeeper
from statesync.eventing.lifecycle import Status, after_failure
from statesync.logs import REQUEST_ID
from statesync.store import statements as q
from statesync.store.commits import Model, commit_steps, emit_steps, execute_sync, run_sync

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4000
RUNNING_NOTICE_AFTER = 0.05  # seconds
# How long one task may go on with its key's next deliveries before it hands the rest to
# the broker (where the other tasks queued behind it are).
FOLLOW_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Notice:
    """What the API processes are told: deliveries whose status moved (their ``event(id)``
    watchers read them again) and whether documents were committed (the sequencer wakes)."""

    deliveries: tuple[str, ...] = ()
    committed: bool = False


@dataclass
class StagedTx:
    """The ``tx`` a handler receives: reads see committed state; writes wait for success."""

    engine: sa.Engine
    writes: list[docs.Write] = field(default_factory=list)
    events: list[tuple[str, str | None, Mapping[str, Any]]] = field(default_factory=list)

    def get(self, model: str, id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(q.read_document(model, id)).first()
        return None if row is None else q.document_of(row)

    def create(self, model: str, fields: Mapping[str, Any], id: str | None = None) -> None:
        self.writes.append(docs.Create(model, dict(fields), id=id))

    def update(self, model: str, id: str, patch: Mapping[str, Any],
               expected_version: int | None = None) -> None:
        self.writes.append(docs.Update(model, id, dict(patch), expected_version))

    def delete(self, model: str, id: str, expected_version: int | None = None) -> None:
        self.writes.append(docs.Delete(model, id, expected_version))

    def emit(self, type: str, key: str | None, payload: Mapping[str, Any]) -> None:
        self.events.append((type, key, dict(payload)))


def _once_more_if_dropped(statement: Callable[[], Any]) -> Any:
    """Run a one-statement transaction, again once if its pooled connection was one that
    PostgreSQL had dropped (a restart): the pool renews itself on seeing one, so the second
    try gets a live connection, where pinging each checkout cost a round trip per attempt.
    Sent twice, it is harmless: a claim that had committed is then found taken (the attempt
    is recovered once its lease runs out), a success found ended ("superseded")."""
    try:
        return statement()
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return statement()


def event_from_row(row: Any, attempt: int) -> Event:
    payload = dict(row.payload)
    change = ChangeEventPayload.read(payload) if row.model is not None else None
    return Event(
        id=str(row.id), type=row.type, model=row.model, document_id=row.key or row.doc_id,
        version=row.version,
        document=change.document if change else None,
        previous=change.previous if change else None,
        changed_fields=change.changed_fields if change else (),
        payload=payload, created_at=row.created_at, attempt=attempt,
        resolution=change.resolution if change else None, request_id=row.request_id,
    )


def _about(event: Event) -> dict[str, Any]:
    """A log line's fields for one event (statesync.logs)."""
    return {"event_id": event.id, "model": event.model, "document_id": event.document_id}


_Attempt = tuple[str, str, int]  # (event id, handler, attempt): whose lease to keep


@dataclass(frozen=True, slots=True)
class _Run:
    """One claimed attempt: its number in the current round (``Event.attempt``, what the
    delivery row counts), its row in the attempt history (unique across redeliveries), and
    its ordering key (an ordered handler's: its end may let the key's next delivery go)."""

    attempt: int
    record: int
    ordering_key: str | None


# The status of a plain success whose end is left to its bundle (DeliveryWorker.deliver_all).
PENDING = "pending"


@dataclass(frozen=True, slots=True)
class _Claimed:
    """A claimed attempt of one delivery, ready to run (or, ``PENDING``, run and a plain
    success: it wrote and emitted nothing and frees no key, and is not yet recorded)."""

    event: Event
    handler: str
    run: _Run

    def claim(self) -> ev.Claim:
        return ev.Claim(self.event.id, self.handler, self.run.attempt, self.run.record)

    def attempt(self) -> _Attempt:
        """Its key in the lease keeper."""
        return (self.event.id, self.handler, self.run.attempt)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How an attempt ended: its status, whether it committed documents, the deliveries
    its end handed to this worker (an ordered key's next, already dispatched), and, when
    ``PENDING``, the success left to record."""

    status: str
    committed: bool = False
    handed: list[Pair] = field(default_factory=list)
    pending: _Claimed | None = None


@dataclass
class DeliveryWorker:
    engine: sa.Engine
    handlers: Handlers
    models: Mapping[str, Model]
    max_document_bytes: int
    handler_timeout: float
    max_id_length: int = 256
    notify: Callable[[Notice], None] = lambda notice: None
    # Sends deliveries to the broker. With one, an ordered delivery's end hands its key's
    # next delivery to the broker itself, a relay round sooner; without, the relay does.
    send: Callable[[Sequence[Pair]], None] | None = None
    dispatch_timeout: float = 10.0
    # For transactions of one statement: an engine whose connections autocommit (no BEGIN
    # and COMMIT round trips). Its own pool: switching a pooled connection's mode on each
    # checkout cost more round trips than it saved. None: ``engine``, with BEGIN and COMMIT.
    single_statements: sa.Engine | None = None
    follow_seconds: float = FOLLOW_SECONDS
    _leases: LeaseKeeper[_Attempt] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._leases = LeaseKeeper(every=self.handler_timeout / 3,
                                   notice_after=RUNNING_NOTICE_AFTER,
                                   renew=self._renew, announce=self._announce_running)

    @contextlib.contextmanager
    def _single(self) -> Iterator[sa.Connection]:
        if self.single_statements is None:
            with self.engine.begin() as connection:
                yield connection
        else:
            with self.single_statements.connect() as connection:
                yield connection

    def deliver(self, event_id: str, handler_name: str) -> str:
        """Run one attempt; returns the delivery's status afterwards (or why it was skipped).
        An ordered delivery's end that lets its key's next one go runs that one here too,
        and so on for up to ``follow_seconds``: no broker hop and no task between two events
        of a key. What is left then is sent to the broker."""
        outcome = self._deliver_one(event_id, handler_name)
        self._follow(outcome.handed, time.monotonic() + self.follow_seconds)
        return outcome.status

    def deliver_all(self, pairs: Sequence[Pair]) -> list[str]:
        """:meth:`deliver` for each of a bundle, one after the other, for up to
        ``follow_seconds`` (after the first): the rest then goes back to the broker, one
        task each ("handed back"), so that no member waits out its dispatch lease behind
        slow ones. One that cannot run (PostgreSQL gone, an unknown handler) is logged and
        ``"not run"``, and the others still run; the relay sends it again once its lease
        (dispatch, or running if its claim went through) runs out. The plain successes
        are recorded together once all have run: one statement, one commit (and its wait
        for the disk) for the bundle instead of one each; their leases are kept until
        then, however long the members after them take. Each member is claimed as it
        starts: a worker that dies in a bundle has used the attempts of those it started,
        never of those still waiting."""
        until = time.monotonic() + self.follow_seconds
        statuses: list[str] = []
        handed: list[Pair] = []
        pending: dict[int, _Claimed] = {}
        with contextlib.ExitStack() as leases:
            for n, (event_id, handler_name) in enumerate(pairs):
                if n and time.monotonic() >= until:
                    rest = list(pairs[n:])
                    self._hand(rest)
                    statuses.extend("handed back" for _ in rest)
                    break
                try:
                    outcome = self._deliver_one(event_id, handler_name, leave_plain=True)
                except Exception as exc:
                    log.warning("delivery %s/%s could not run (%s: %s)", event_id, handler_name,
                                type(exc).__name__, exc)
                    outcome = _Outcome("not run")
                if outcome.pending is not None:
                    pending[n] = outcome.pending
                    leases.enter_context(self._leases.holding(outcome.pending.attempt()))
                statuses.append(outcome.status)
                handed.extend(outcome.handed)
            for n, status in zip(pending, self._end_pending(list(pending.values())),
                                 strict=True):
                statuses[n] = status
        self._follow(handed, until)
        return statuses

    def _follow(self, handed: list[Pair], until: float) -> None:
        """Run what ends handed this worker while time is left; the broker gets the rest.
        Their outcomes are in their delivery rows: the task reports its own delivery's."""
        try:
            while handed and time.monotonic() < until:
                more = self._deliver_one(*handed[0]).handed
                handed.pop(0)
                handed.extend(more)
        except Exception as exc:  # it goes to the broker with the rest, to be tried again
            log.warning("delivery %s/%s could not run (%s: %s); sent to the broker", *handed[0],
                        type(exc).__name__, exc)
        self._hand(handed)

    def _deliver_one(self, event_id: str, handler_name: str,
                     leave_plain: bool = False) -> _Outcome:
        if handler_name not in self.handlers.by_name:
            raise LookupError(f"no handler named {handler_name!r} in this worker")
        claimed = self._claim([(event_id, handler_name)]).get((event_id, handler_name))
        if claimed is None:
            # finished, owned by another attempt, or not due: a duplicate or late task
            metrics.ATTEMPTS.labels(handler_name, "skipped").inc()
            return _Outcome("skipped")
        return self._run(claimed, leave_plain)

    def _run(self, claimed: _Claimed, leave_plain: bool = False) -> _Outcome:
        """Run a claimed attempt. ``leave_plain``: a plain success is not recorded but
        returned ``PENDING``, for :meth:`_end_pending` (which counts and announces it)."""
        event, handler_name, run = claimed.event, claimed.handler, claimed.run
        # What the handler logs, and what it writes, carry the request that caused the event.
        token = REQUEST_ID.set(event.request_id)
        outcome = _Outcome("not run")
        try:
            with metrics.HANDLER_SECONDS.labels(handler_name).time():
                outcome = self._attempt(self.handlers[handler_name], claimed, leave_plain)
            if outcome.status != PENDING:
                self._ended(outcome.status, event, handler_name, run)
            return outcome
        finally:
            REQUEST_ID.reset(token)
            if outcome.status != PENDING:
                self.notify(Notice((event.id,), outcome.committed))

    @staticmethod
    def _ended(status: str, event: Event, handler_name: str, run: _Run) -> None:
        metrics.ATTEMPTS.labels(handler_name, status).inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("handler %s on event %s (attempt %d): %s", handler_name, event.id,
                      run.attempt, status, extra=_about(event))

    def _attempt(self, handler: Handler, claimed: _Claimed, leave_plain: bool) -> _Outcome:
        event, handler_name, run = claimed.event, claimed.handler, claimed.run
        tx = StagedTx(self.engine)
        try:
            # Its lease is renewed every third of handler_timeout while it runs.
            with self._leases.holding(claimed.attempt()):
                handler.fn(event, tx)
        except Exception as exc:  # a handler's failure is data: recorded, retried, dead-lettered
            return self._fail(event, handler_name, run, exc)
        if not tx.writes and not tx.events and run.ordering_key is None:
            if leave_plain:
                return _Outcome(PENDING, pending=claimed)
            try:
                return _Outcome(self._end_plainly([claimed])[0])
            except Exception as exc:  # as a failed write would be: the attempt failed
                return self._fail(event, handler_name, run, exc)
        try:
            status, handed = self._succeed(event, handler_name, run, tx)
        except Exception as exc:  # its writes were rejected (conflict, bad input): also a failure
            return self._fail(event, handler_name, run, exc)
        return _Outcome(status, status == "succeeded" and bool(tx.writes), handed)

    def _end_plainly(self, pending: list[_Claimed]) -> list[str]:
        """Record plain successes in one statement, which nothing else commits with; each
        one's status, in order ("superseded": its lease ran out and another attempt took
        over)."""
        def end_together() -> set[tuple[str, str]]:
            with self._single() as connection:
                return {(row.event_id, row.handler) for row in execute_sync(connection, ev.succeed(
                    [p.claim() for p in pending], datetime.now(UTC)))}

        ended = _once_more_if_dropped(end_together)
        return ["succeeded" if (p.event.id, p.handler) in ended else "superseded" for p in pending]

    def _end_pending(self, pending: list[_Claimed]) -> list[str]:
        """A bundle's plain successes, recorded together (:meth:`_end_plainly`), counted and
        announced in one notice. If recording fails, each is recorded as failed instead,
        through the transactional pool, whose checkouts are pinged ("not run" if that fails
        too: the relay recovers it once its lease runs out)."""
        if not pending:
            return []
        try:
            statuses = self._end_plainly(pending)
        except Exception as exc:  # as a failed write would be: the attempts failed
            statuses = [self._fail_or_not_run(p, exc) for p in pending]
        for p, status in zip(pending, statuses, strict=True):
            self._ended(status, p.event, p.handler, p.run)
        self.notify(Notice(tuple(p.event.id for p in pending)))
        return statuses

    def _fail_or_not_run(self, pending: _Claimed, exc: Exception) -> str:
        try:
            return self._fail(pending.event, pending.handler, pending.run, exc).status
        except Exception as again:
            log.warning("delivery %s/%s could not be recorded (%s: %s)", pending.event.id,
                        pending.handler, type(again).__name__, again)
            return "not run"

    def _renew(self, attempt: _Attempt) -> None:
        event_id, handler_name, number = attempt
        with self._single() as connection:
            connection.execute(ev.renew_lease(
                event_id, handler_name, number,
                datetime.now(UTC) + timedelta(seconds=self.handler_timeout)))

    def _announce_running(self, attempt: _Attempt) -> None:
        self.notify(Notice((attempt[0],)))

    def _claim(self, pairs: Sequence[Pair]) -> dict[Pair, _Claimed]:
        """Claim each of ``pairs`` that may start, in one statement; one missing is
        finished, owned by another attempt, or not due (a duplicate task)."""
        now = datetime.now(UTC)

        def claim_rows() -> list[Any]:
            with self._single() as connection:  # one statement: its own transaction
                return list(execute_sync(connection, ev.claim(
                    pairs, now, now + timedelta(seconds=self.handler_timeout))))

        return {(str(row.id), row.handler): _Claimed(
                    event_from_row(row, row.attempt), row.handler,
                    _Run(row.attempt, row.record, row.ordering_key))
                for row in _once_more_if_dropped(claim_rows)}

    def _owned(self, connection: sa.Connection, event_id: str, handler_name: str,
               attempt: int) -> bool:
        delivery = connection.execute(ev.lock_delivery(event_id, handler_name)).first()
        return (delivery is not None and delivery.status == Status.RUNNING
                and delivery.attempts == attempt)

    @staticmethod
    def _lock_key(connection: sa.Connection, run: _Run, finishing: bool) -> None:
        """Before any row lock, as the relay does: the key's lock, if this end frees it."""
        if finishing and run.ordering_key is not None:
            connection.execute(ev.lock_keys([run.ordering_key]))

    def _free_key(self, connection: sa.Connection, run: _Run, finishing: bool,
                  now: datetime) -> list[Pair]:
        """Let the key's next delivery go; returns it when it is this worker's to send."""
        if not finishing or run.ordering_key is None:
            return []
        if self.send is None:
            connection.execute(ev.promote_heads([run.ordering_key], now))
            return []
        lease = now + timedelta(seconds=self.dispatch_timeout)
        rows = connection.execute(ev.hand_over([run.ordering_key], now, lease)).all()
        return [(str(row.event_id), row.handler) for row in rows]

    def _hand(self, pairs: list[Pair]) -> None:
        """After the commit that made them dispatched: a send lost here is sent again by the
        relay once their dispatch lease runs out, so it costs time, never the delivery."""
        if not pairs or self.send is None:
            return
        try:
            self.send(pairs)
        except Exception as exc:
            log.warning("could not hand %d ordered deliveries to the broker (%s); the relay "
                        "sends them once their dispatch lease runs out", len(pairs), exc)

    def _succeed(self, event: Event, handler_name: str, run: _Run,
                 tx: StagedTx) -> tuple[str, list[Pair]]:
        event_id = event.id
        with self.engine.begin() as connection:
            self._lock_key(connection, run, finishing=True)
            now = datetime.now(UTC)
            claim = _Claimed(event, handler_name, run).claim()
            ended = execute_sync(connection, ev.succeed([claim], now)).first()
            if ended is None:
                return "superseded", []  # the lease expired and another attempt took over
            # The handler's writes commit with the success, or neither does: a write that
            # is refused raises here and rolls the success back with it.
            for write in tx.writes:
                run_sync(connection, commit_steps(
                    self.models, write, caused_by=event_id, request_id=event.request_id,
                    max_document_bytes=self.max_document_bytes, max_id_length=self.max_id_length))
            for type_name, key, payload in tx.events:
                run_sync(connection, emit_steps(type_name, key, payload, caused_by=event_id,
                                                request_id=event.request_id,
                                                max_id_length=self.max_id_length,
                                                models=self.models))
            handed = self._free_key(connection, run, True, now)
            if run.ordering_key is not None and self.send is None:
                connection.execute(ev.notify_relay())  # an ordered successor may be due now
        return "succeeded", handed

    def _fail(self, event: Event, handler_name: str, run: _Run, exc: Exception) -> _Outcome:
        event_id = event.id
        handler = self.handlers[handler_name]
        attempt = run.attempt
        error = "".join(traceback.format_exception_only(exc)).strip()[-MAX_ERROR_CHARS:]
        log.warning("handler %s failed on event %s (attempt %d): %s", handler_name, event_id,
                    attempt, error, extra=_about(event))
        now = datetime.now(UTC)
        status = after_failure(attempt, handler.max_attempts)
        dead = status is Status.DEAD
        with self.engine.begin() as connection:
            self._lock_key(connection, run, finishing=dead)
            if not self._owned(connection, event_id, handler_name, attempt):
                return _Outcome("superseded")
            connection.execute(ev.set_delivery(
                event_id, handler_name, status=status, last_error=error, updated_at=now,
                lease_expires_at=None, finished_at=now if dead else None,
                next_attempt_at=now + handler.retry_delay(attempt)))
            connection.execute(ev.finish_attempt(event_id, handler_name, run.record, now, status,
                                                error))
            handed = self._free_key(connection, run, dead, now)  # a dead one blocks nothing
            connection.execute(ev.notify_relay())
        return _Outcome(status, handed=handed)

