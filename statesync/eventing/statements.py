"""The eventing's SQL: the relay's and the worker's statements on the outbox, deliveries
and attempts, the sweep's and retention's, and the event reads of the API. Statuses come
from the lifecycle (``statesync.eventing.lifecycle``), never as bare strings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from statesync.eventing.lifecycle import DUE, FINISHED, Status
from statesync.store.sql import Query, Sql
from statesync.store.statements import OUTBOX_CHANNEL
from statesync.store.tables import attempts, deliveries, documents, outbox

# Lazy commits (synchronous_commit off) need not wait for the disk. They are for
# bookkeeping whose loss in a PostgreSQL crash only repeats work the delivery rows make
# harmless (a fan-out done again, a task sent again, a claim taken again), never for a
# handler's success. A later durable commit flushes them too, so what depends on one is
# never durable without it. The relay's connections commit lazily
# (statesync.eventing.entry.relay_engine); the worker's claim does so within its own
# statement (:func:`claim`).
LAZY_COMMITS = {"synchronous_commit": "off"}


def durable_commit() -> sa.Executable:
    """This transaction's commit waits for the disk, on a connection that commits lazily."""
    return sa.text("SET LOCAL synchronous_commit TO ON")


def notify_relay() -> sa.Executable:
    return sa.select(sa.func.pg_notify(OUTBOX_CHANNEL, ""))


def unrelayed_events(limit: int) -> sa.Select[Any]:
    return (
        sa.select(outbox.c.id)
        .where(outbox.c.relayed_at.is_(None))
        .order_by(outbox.c.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def relay_events(now: datetime, limit: int) -> sa.Executable:
    """Mark up to ``limit`` unrelayed events (the oldest no other relay holds) relayed, and
    return them: one round trip, rolled back with the transaction that fans them out.
    RETURNING keeps no order: sort by ``seq``."""
    pending = unrelayed_events(limit).cte("pending")
    return (sa.update(outbox).where(outbox.c.id == pending.c.id).values(relayed_at=now)
            .returning(outbox.c.id, outbox.c.type, outbox.c.seq, outbox.c.model, outbox.c.key))


def unrelayed_count() -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(outbox).where(outbox.c.relayed_at.is_(None))


def deliveries_by_status() -> sa.Select[Any]:
    return (sa.select(deliveries.c.status, sa.func.count().label("n"))
            .group_by(deliveries.c.status))


def insert_deliveries() -> sa.Executable:
    """Executed with the rows as parameters: one statement compiled once, whatever their
    number (VALUES of n rows was a new statement to compile for every n)."""
    return pg.insert(deliveries).on_conflict_do_nothing()


def due_deliveries(now: datetime, limit: int) -> sa.Select[Any]:
    """Deliveries ready to send: a range of the due index. An ordered handler's deliveries
    behind their key's head are ``waiting``, so they are not in it (:func:`promote_heads`)."""
    return (
        sa.select(deliveries.c.event_id, deliveries.c.handler, deliveries.c.attempts)
        .where(deliveries.c.status.in_(sorted(DUE)), deliveries.c.next_attempt_at <= now)
        .order_by(deliveries.c.next_attempt_at, deliveries.c.event_seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


# Two-key advisory locks in this namespace serialize, per ordering key, what decides its
# head: the relay adding deliveries of the key, and the end of its current head.
ORDERING_LOCKS = 0x5157_0E1B


_LOCK_KEYS = sa.text(
    "SELECT count(pg_advisory_xact_lock(:namespace, hashtext(key))) "
    "FROM (SELECT unnest(CAST(:keys AS text[])) AS key ORDER BY 1) AS ordered")


def lock_keys(keys: Sequence[str]) -> sa.Executable:
    """Take the ordering locks of ``keys`` for the transaction, in one order for everyone."""
    return _LOCK_KEYS.bindparams(namespace=ORDERING_LOCKS, keys=sorted(set(keys)))


# Each key's head (its first unfinished delivery), read as the first row of the key in the
# ordering index: a LIMIT 1 per key, however long the line behind it (min() per key, or
# DISTINCT ON, read every waiting row of the key: 7 ms on a 10k line, growing with it).
_HEAD_OF_EACH_KEY = f"""
FROM unnest(CAST(:keys AS text[])) AS k(key)
CROSS JOIN LATERAL (
    SELECT event_id, handler, status FROM statesync_deliveries
    WHERE ordering_key = k.key AND status NOT IN ('{Status.SUCCEEDED}', '{Status.DEAD}')
    ORDER BY event_seq LIMIT 1
) head
WHERE d.event_id = head.event_id AND d.handler = head.handler AND head.status = '{Status.WAITING}'
"""
_PROMOTE_HEADS = sa.text(
    f"UPDATE statesync_deliveries d SET status = '{Status.PENDING}', next_attempt_at = :now,"
    f" updated_at = :now {_HEAD_OF_EACH_KEY}")
_HAND_OVER = sa.text(
    f"UPDATE statesync_deliveries d SET status = '{Status.DISPATCHED}', next_attempt_at = :now,"
    f" updated_at = :now, lease_expires_at = :lease {_HEAD_OF_EACH_KEY}"
    " RETURNING d.event_id, d.handler")


def _moments(**values: datetime) -> list[sa.BindParameter[Any]]:
    return [sa.bindparam(name, value, type_=sa.DateTime(timezone=True))
            for name, value in values.items()]


def promote_heads(keys: Sequence[str], now: datetime) -> sa.Executable:
    """For each of ``keys``, its first unfinished delivery becomes due if it was waiting.
    Run under :func:`lock_keys` after anything that may have changed a key's head."""
    return _PROMOTE_HEADS.bindparams(*_moments(now=now), keys=sorted(set(keys)))


def hand_over(keys: Sequence[str], now: datetime, lease_until: datetime) -> sa.Executable:
    """:func:`promote_heads`, but straight to ``dispatched`` with a dispatch lease, for the
    worker that freed the key to send itself (no relay round in between); returns the
    ``(event_id, handler)`` of each. A send that never arrives is what the lease is for:
    the relay sends it again once it runs out, as it does any unstarted dispatch."""
    return _HAND_OVER.bindparams(*_moments(now=now, lease=lease_until), keys=sorted(set(keys)))


def dispatch_due(now: datetime, limit: int, lease_until: datetime) -> sa.Executable:
    """Mark up to ``limit`` of :func:`due_deliveries` dispatched, with a dispatch lease, and
    return them (oldest first once sorted by ``next_attempt_at, event_seq``). Sent to the
    broker before the transaction commits, while their row locks make a fast worker's
    claim wait for the commit."""
    due = due_deliveries(now, limit).cte("due")
    return (sa.update(deliveries)
            .where(deliveries.c.event_id == due.c.event_id, deliveries.c.handler == due.c.handler)
            .values(status=Status.DISPATCHED, lease_expires_at=lease_until, updated_at=now)
            .returning(deliveries.c.event_id, deliveries.c.handler, deliveries.c.next_attempt_at,
                       deliveries.c.event_seq, deliveries.c.ordering_key))


def expired_leases(now: datetime, limit: int, status: str) -> sa.Select[Any]:
    """Deliveries of ``status`` (dispatched or running) whose lease ran out."""
    return (
        sa.select(deliveries.c.event_id, deliveries.c.handler, deliveries.c.status,
                  deliveries.c.attempts, deliveries.c.max_attempts, deliveries.c.ordering_key)
        .where(deliveries.c.status == status, deliveries.c.lease_expires_at < now)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


# Deliveries named by the caller, sorted (:func:`_sorted`), each row locked by its key in
# that order: two statements on overlapping sets cannot deadlock, and the lock is an index
# lookup per row whatever the planner thinks of the array (a subquery with FOR UPDATE is
# never flattened into a join).
_NAMED = """
    SELECT l.*, n.attempt AS claimed_attempt, n.record
    FROM unnest(CAST(:event_ids AS uuid[]), CAST(:handlers AS text[]), CAST(:attempts AS int[]),
                CAST(:records AS int[])) AS n(event_id, handler, attempt, record)
    CROSS JOIN LATERAL (
        SELECT event_id, handler, status, attempts, lease_expires_at FROM statesync_deliveries d
        WHERE d.event_id = n.event_id AND d.handler = n.handler
        FOR UPDATE
    ) l
"""

_CLAIM = Sql.of(f"""
WITH locked AS (
    -- The row lock first, then the test: the relay may not have committed the dispatch yet,
    -- and a status test in the UPDATE would read the row as it was before (and skip it).
    {_NAMED}
), claimed AS (
    UPDATE statesync_deliveries d
    SET status = '{Status.RUNNING}', attempts = d.attempts + 1, updated_at = :now,
        lease_expires_at = :lease
    FROM locked l
    WHERE d.event_id = l.event_id AND d.handler = l.handler
      AND (l.status = '{Status.DISPATCHED}'
           OR (l.status = '{Status.RUNNING}'
               AND (l.lease_expires_at IS NULL OR l.lease_expires_at < :now)))
    RETURNING d.event_id, d.handler, d.attempts, d.ordering_key
), recorded AS (
    INSERT INTO statesync_attempts (event_id, handler, attempt, started_at)
    SELECT c.event_id, c.handler,
           (SELECT coalesce(max(a.attempt), 0) + 1 FROM statesync_attempts a
            WHERE a.event_id = c.event_id AND a.handler = c.handler),
           :now
    FROM claimed c
    RETURNING event_id, handler, attempt
), lazy AS (
    -- A lazy commit (LAZY_COMMITS) in the same round trip: a claim lost in a crash is only
    -- taken again.
    SELECT set_config('synchronous_commit', 'off', true) AS commit_mode
)
SELECT c.handler, c.attempts AS attempt, c.ordering_key, r.attempt AS record, o.*
FROM claimed c JOIN recorded r ON r.event_id = c.event_id AND r.handler = c.handler
CROSS JOIN lazy JOIN statesync_outbox o ON o.id = c.event_id
""")


@dataclass(frozen=True, slots=True)
class Claim:
    """A claimed attempt: its delivery, its attempt number (what the delivery row counts)
    and its history row (``record``). A claim's own statement knows neither yet (0)."""

    event_id: str
    handler: str
    attempt: int = 0
    record: int = 0


def _named(deliveries: Sequence[Claim]) -> dict[str, list[Any]]:
    ordered = sorted(deliveries, key=lambda e: (e.event_id, e.handler))
    return {"event_ids": [e.event_id for e in ordered], "handlers": [e.handler for e in ordered],
            "attempts": [e.attempt for e in ordered], "records": [e.record for e in ordered]}


def claim(pairs: Sequence[tuple[str, str]], now: datetime, lease_until: datetime) -> Query:
    """Start an attempt of each ``(event_id, handler)`` that may start, in one statement:
    the delivery becomes running (one more attempt, a fresh lease), its history row is
    added, and its event is returned with ``handler``, ``attempt``, ``ordering_key`` and
    ``record`` (the history row's number). One not returned may not start
    (``lifecycle.may_start``, of which the WHERE is the SQL form; a test holds them equal).
    Its row lock makes duplicates of one task wait, then find it running. Driver SQL
    (statesync.store.sql), as :func:`succeed`: the two statements of every attempt are not
    built and compiled per call (a fifth of a no-op attempt's time, in-process)."""
    return _CLAIM(now=now, lease=lease_until, **_named([Claim(e, h) for e, h in pairs]))


def lock_delivery(event_id: str, handler: str) -> sa.Select[Any]:
    return sa.select(deliveries).where(
        deliveries.c.event_id == event_id, deliveries.c.handler == handler).with_for_update()


def set_delivery(event_id: str, handler: str, **values: Any) -> sa.Executable:
    return sa.update(deliveries).where(
        deliveries.c.event_id == event_id, deliveries.c.handler == handler).values(**values)


def renew_lease(event_id: str, handler: str, attempt: int, until: datetime) -> sa.Executable:
    """Extend a running attempt's lease; does nothing once another attempt owns the delivery."""
    return sa.update(deliveries).where(
        deliveries.c.event_id == event_id, deliveries.c.handler == handler,
        deliveries.c.status == Status.RUNNING, deliveries.c.attempts == attempt,
    ).values(lease_expires_at=until)


def read_event(event_id: str) -> sa.Select[Any]:
    return sa.select(outbox).where(outbox.c.id == event_id)


def expired_documents(now: datetime, limit: int) -> sa.Select[Any]:
    return (
        sa.select(documents.c.model, documents.c.id)
        .where(documents.c.deleted.is_(False), documents.c.expires_at <= now)
        .order_by(documents.c.expires_at)
        .limit(limit)
    )


_SUCCEED = Sql.of(f"""
WITH owned AS (
    -- The row lock first, then the test, as in the claim: only the attempt that still owns
    -- the delivery (running, this attempt number) may end it.
    SELECT * FROM ({_NAMED}) named
    WHERE status = '{Status.RUNNING}' AND attempts = claimed_attempt
), done AS (
    UPDATE statesync_deliveries d
    SET status = '{Status.SUCCEEDED}', updated_at = :now, finished_at = :now,
        lease_expires_at = NULL, last_error = NULL
    FROM owned o WHERE d.event_id = o.event_id AND d.handler = o.handler
    RETURNING d.event_id, d.handler, o.record
), recorded AS (
    UPDATE statesync_attempts a SET finished_at = :now, outcome = '{Status.SUCCEEDED}'
    FROM done
    WHERE a.event_id = done.event_id AND a.handler = done.handler AND a.attempt = done.record
)
SELECT CAST(event_id AS text) AS event_id, handler FROM done
""")


def succeed(claims: Sequence[Claim], now: datetime) -> Query:
    """End running attempts as succeeded, with their history rows, in one statement (one
    commit for a bundle's plain successes); returns the ``(event_id, handler)`` of each that
    ended. One missing no longer owns its delivery (its lease ran out and another attempt
    took over), and whatever it wrote must then be rolled back."""
    return _SUCCEED(now=now, **_named(claims))


def finish_attempt(event_id: str, handler: str, attempt: int, now: datetime, outcome: str,
                   error: str | None = None) -> sa.Executable:
    return sa.update(attempts).where(
        attempts.c.event_id == event_id, attempts.c.handler == handler,
        attempts.c.attempt == attempt,
    ).values(finished_at=now, outcome=outcome, error=error)


def abandon_attempt(event_id: str, handler: str, now: datetime, outcome: str,
                    error: str) -> sa.Executable:
    """Close the open history row of a delivery whose worker went silent (killed or lost)."""
    return sa.update(attempts).where(
        attempts.c.event_id == event_id, attempts.c.handler == handler,
        attempts.c.finished_at.is_(None),
    ).values(finished_at=now, outcome=outcome, error=error)


def redeliver(event_id: str, handler: str | None, now: datetime) -> sa.Executable:
    """Dead (or finished) deliveries start over: attempts reset, due now."""
    stmt = sa.update(deliveries).where(deliveries.c.event_id == event_id,
                                       deliveries.c.status.in_(sorted(FINISHED)))
    if handler is not None:
        stmt = stmt.where(deliveries.c.handler == handler)
    return stmt.values(status=Status.PENDING, attempts=0, next_attempt_at=now, updated_at=now,
                       finished_at=None, lease_expires_at=None).returning(deliveries.c.handler)


def list_events(*, event_type: str | None, key: str | None, status: str | None,
                after_seq: int | None, limit: int) -> sa.Select[Any]:
    stmt = sa.select(outbox).order_by(outbox.c.seq.desc()).limit(limit)
    if event_type is not None:
        stmt = stmt.where(outbox.c.type == event_type)
    if key is not None:
        stmt = stmt.where(outbox.c.key == key)
    if after_seq is not None:
        stmt = stmt.where(outbox.c.seq < after_seq)
    if status is not None:
        stmt = stmt.where(sa.exists().where(deliveries.c.event_id == outbox.c.id,
                                            deliveries.c.status == status))
    return stmt


def deliveries_of(event_ids: Sequence[str]) -> sa.Select[Any]:
    return (sa.select(deliveries).where(deliveries.c.event_id.in_(list(event_ids)))
            .order_by(deliveries.c.handler))


def list_deliveries(*, status: str | None, handler: str | None, limit: int) -> sa.Select[Any]:
    stmt = (sa.select(deliveries, outbox.c.type, outbox.c.key)
            .join(outbox, outbox.c.id == deliveries.c.event_id)
            .order_by(deliveries.c.updated_at.desc()).limit(limit))
    if status is not None:
        stmt = stmt.where(deliveries.c.status == status)
    if handler is not None:
        stmt = stmt.where(deliveries.c.handler == handler)
    return stmt


# ---- retention: settled events go, dead letters stay -----------------------------------------

def settled_events(before: datetime, limit: int) -> sa.Select[Any]:
    """Relayed events older than ``before`` whose every delivery succeeded (or that had none).
    Dead letters stay: someone may still redeliver them."""
    unfinished = sa.select(deliveries.c.event_id).where(
        deliveries.c.event_id == outbox.c.id, deliveries.c.status != Status.SUCCEEDED)
    return (sa.select(outbox.c.id)
            .where(outbox.c.relayed_at.is_not(None), outbox.c.created_at < before,
                   ~sa.exists(unfinished))
            .order_by(outbox.c.seq).limit(limit))


def prune_events(event_ids: Sequence[str]) -> list[sa.Executable]:
    """History, deliveries, then the events themselves (foreign keys point that way)."""
    ids = list(event_ids)
    return [sa.delete(attempts).where(attempts.c.event_id.in_(ids)),
            sa.delete(deliveries).where(deliveries.c.event_id.in_(ids)),
            sa.delete(outbox).where(outbox.c.id.in_(ids))]
