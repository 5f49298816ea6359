"""The claim statement starts exactly the deliveries the lifecycle says may start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, create_engine

from statesync.config import Settings, psycopg_url
from statesync.eventing import statements as ev
from statesync.eventing.celery_app import build_worker
from statesync.eventing.entry import relay_engine
from statesync.eventing.lifecycle import Status, may_start
from statesync.store.commits import emit_steps, execute_sync, run_sync

NOW = datetime.now(UTC)
LEASES = {"none": None, "past": NOW - timedelta(seconds=5), "future": NOW + timedelta(seconds=5)}


def delivery(connection: Connection, status: str, attempts: int,
             lease: datetime | None) -> str:
    """An event and its one delivery, to handler "h", as the relay would have left it."""
    event_id: str = run_sync(connection, emit_steps("Load.tick", "k", {})).event_id
    connection.exec_driver_sql(
        "INSERT INTO statesync_deliveries (event_id, handler, status, attempts, max_attempts, "
        "event_seq, next_attempt_at, lease_expires_at, created_at, updated_at) "
        "VALUES (%s, 'h', %s, %s, 5, 1, now(), %s, now(), now())",
        (event_id, status, attempts, lease))
    return event_id


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("lease", list(LEASES))
def test_the_claim_agrees_with_may_start(settings: Settings, status: Status, lease: str) -> None:
    engine = create_engine(psycopg_url(settings.database_url or ""))
    try:
        with engine.begin() as connection:
            event_id = delivery(connection, str(status), 1, LEASES[lease])
            claimed = execute_sync(connection, ev.claim(
                [(event_id, "h")], NOW, NOW + timedelta(seconds=10))).first()
            after = connection.exec_driver_sql(
                "SELECT status, attempts FROM statesync_deliveries WHERE event_id = %s",
                (event_id,)).one()
        expected = may_start(status, LEASES[lease], NOW)
        assert (claimed is not None) is expected
        if expected:
            assert claimed is not None
            assert (claimed.attempt, claimed.record, str(claimed.id)) == (2, 1, event_id)
            assert tuple(after) == ("running", 2)
        else:
            assert tuple(after) == (str(status), 1)  # untouched
    finally:
        engine.dispose()


def test_a_claim_waits_for_the_relays_dispatch_to_commit(settings: Settings) -> None:
    """A worker may get the task before the relay's transaction that marks it dispatched
    has committed: the claim must wait for it, not read the row as it was and skip."""
    import threading

    engine = create_engine(psycopg_url(settings.database_url or ""))
    try:
        with engine.begin() as connection:
            event_id = delivery(connection, "pending", 0, None)
        claimed: list[object] = []
        relay = engine.connect()
        relay.begin()
        relay.exec_driver_sql("UPDATE statesync_deliveries SET status = 'dispatched' "
                              "WHERE event_id = %s", (event_id,))

        def worker() -> None:
            with engine.begin() as connection:
                claimed.append(execute_sync(connection, ev.claim(
                    [(event_id, "h")], datetime.now(UTC),
                    datetime.now(UTC) + timedelta(seconds=10))).first())

        thread = threading.Thread(target=worker)
        thread.start()
        waiting = engine.connect()  # the claim is waiting for the relay's row lock
        try:
            for _ in range(200):
                if waiting.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()").scalar():
                    break
                thread.join(0.05)  # a bounded wait for the other session to block
            else:
                raise AssertionError("the claim never waited for the row lock")
        finally:
            waiting.close()
        relay.commit()
        relay.close()
        thread.join(10)
        assert len(claimed) == 1 and claimed[0] is not None
    finally:
        engine.dispose()


def test_a_claim_commits_without_waiting_for_the_disk_and_a_success_waits(
        settings: Settings) -> None:
    """The claim is bookkeeping a crash only repeats (lazy, within the claim itself);
    the transaction of a success, which carries the handler's writes, is durable."""
    engine = create_engine(psycopg_url(settings.database_url or ""))
    try:
        with engine.begin() as connection:
            event_id = delivery(connection, str(Status.DISPATCHED), 0, None)
        with engine.begin() as connection:
            claimed = execute_sync(connection, ev.claim(
                [(event_id, "h")], NOW, NOW + timedelta(seconds=10))).first()
            assert claimed is not None
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
        with engine.begin() as connection:
            claim = ev.Claim(event_id, "h", claimed.attempt, claimed.record)
            ended = execute_sync(connection, ev.succeed([claim], NOW)).all()
            assert [tuple(row) for row in ended] == [(event_id, "h")]
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
            history = connection.exec_driver_sql(
                "SELECT outcome FROM statesync_attempts WHERE event_id = %s", (event_id,)).scalar()
        assert history == "succeeded"
        with engine.begin() as connection:  # a second end of the same attempt owns nothing
            assert execute_sync(connection, ev.succeed([claim], NOW)).all() == []
    finally:
        engine.dispose()


async def test_the_relay_commits_lazily_but_where_a_lost_commit_would_strand_a_key(
        settings: Settings) -> None:
    engine = relay_engine(settings, pool_size=1)
    try:
        async with engine.begin() as connection:
            mode = (await connection.exec_driver_sql("SHOW synchronous_commit")).scalar()
            assert mode == "off"
        async with engine.begin() as connection:  # the dead head's successor let go
            await connection.execute(ev.durable_commit())
            mode = (await connection.exec_driver_sql("SHOW synchronous_commit")).scalar()
            assert mode == "on"
        async with engine.begin() as connection:  # for that transaction only
            mode = (await connection.exec_driver_sql("SHOW synchronous_commit")).scalar()
            assert mode == "off"
    finally:
        await engine.dispose()


def test_the_workers_connections_plan_the_attempts_statements_once(settings: Settings) -> None:
    """Their array parameters would otherwise have PostgreSQL plan every execution anew
    (statesync.eventing.celery_app._planning_generically)."""
    worker = build_worker(settings)
    try:
        for engine in (worker.engine, worker.single_statements):
            assert engine is not None
            with engine.connect() as connection:
                mode = connection.exec_driver_sql("SHOW plan_cache_mode").scalar()
            assert mode == "force_generic_plan"
    finally:
        worker.engine.dispose()
        if worker.single_statements is not None:
            worker.single_statements.dispose()
