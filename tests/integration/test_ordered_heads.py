"""An ordered handler's deliveries wait behind their key's head: only heads are due, the
next one becomes due in the transaction that ends its head (run by that worker itself
when it has a broker, and sent to the broker once its time for the key is up), and the
relay's due query
stays a range of the due index however long the line behind the heads is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest
from sqlalchemy.dialects import postgresql

from statesync.config import Settings
from statesync.eventing.broker import CeleryBroker
from statesync.eventing.celery_app import build_worker, create_celery
from statesync.eventing.relay import Relay
from statesync.eventing.statements import due_deliveries, hand_over, promote_heads
from tests.integration.conftest import emit_events, pumped_relay, queued_tasks
from tests.integration.test_relay import HANDLERS

HANDLER = "ordered_sink"


@pytest.fixture
def ordered_settings(settings: Settings) -> Settings:
    # No worker consumes this queue: the test runs deliveries itself, one at a time.
    return settings.model_copy(update={"workers_path": HANDLERS / "ordered_sink.py",
                                       "queue": "ordered-heads", "dispatch_timeout": 120.0})


@pytest.fixture
async def relay(ordered_settings: Settings) -> AsyncIterator[Relay]:
    async with pumped_relay(ordered_settings) as pumped:
        yield pumped


async def drain(relay: Relay) -> None:
    while await relay.pump():
        pass


async def by_status(db: asyncpg.Connection) -> dict[str, list[tuple[str, int]]]:
    rows = await db.fetch("SELECT d.status, o.key, o.seq FROM statesync_deliveries d "
                          "JOIN statesync_outbox o ON o.id = d.event_id ORDER BY o.seq")
    out: dict[str, list[tuple[str, int]]] = {}
    for r in rows:
        out.setdefault(r["status"], []).append((r["key"], r["seq"]))
    return out


async def sent(settings: Settings) -> list[str]:
    """The event ids of the deliveries in the queue, oldest first (the queue is emptied)."""
    return [event_id for _, pairs in await queued_tasks(settings) for event_id, _ in pairs]


async def test_only_each_keys_head_is_sent_and_its_end_lets_the_next_go(
        ordered_settings: Settings, relay: Relay, db: asyncpg.Connection) -> None:
    await emit_events(ordered_settings, ["a", "b", "a", "a", "b"])
    await drain(relay)
    statuses = await by_status(db)
    heads = statuses["dispatched"]
    assert [key for key, _ in heads] == ["a", "b"]
    assert [key for key, _ in statuses["waiting"]] == ["a", "a", "b"]
    assert len(await sent(ordered_settings)) == 2

    worker = build_worker(ordered_settings)
    first_a = await db.fetchval("SELECT d.event_id::text FROM statesync_deliveries d JOIN "
                                "statesync_outbox o ON o.id = d.event_id WHERE o.seq = $1",
                                heads[0][1])
    assert await asyncio.to_thread(worker.deliver, first_a, HANDLER) == "succeeded"
    # In the same transaction as that success, the next "a" became due; "b" is untouched.
    statuses = await by_status(db)
    assert [key for key, _ in statuses["pending"]] == ["a"]
    assert statuses["pending"][0][1] > heads[0][1]
    assert [key for key, _ in statuses["dispatched"]] == ["b"]
    await drain(relay)
    assert sorted(key for key, _ in (await by_status(db))["dispatched"]) == ["a", "b"]
    queued = await sent(ordered_settings)  # only the new head was sent: "b" was already
    assert len(queued) == 1 and queued[0] != first_a

    # Events keep arriving behind a running head: they wait too.
    await emit_events(ordered_settings, ["b"])
    await drain(relay)
    assert [key for key, _ in (await by_status(db))["waiting"]] == ["a", "b", "b"]
    worker.engine.dispose()


async def test_the_due_query_scans_no_waiting_row(
        ordered_settings: Settings, relay: Relay, db: asyncpg.Connection) -> None:
    # 100k deliveries of one key: one head dispatched, the rest waiting, as a backlog
    # behind one slow document leaves them.
    await emit_events(ordered_settings, ["hot"])
    await drain(relay)
    event_id = await db.fetchval("SELECT event_id FROM statesync_deliveries")
    # (one event, 100k handler names: the rows only have to be there, in the index's way)
    await db.execute("""
        INSERT INTO statesync_deliveries (event_id, handler, status, attempts, max_attempts,
            ordering_key, event_seq, next_attempt_at, created_at, updated_at)
        SELECT $1, 'h' || n, 'waiting', 0, 5, 'ordered_sink||hot', n, now(), now(), now()
        FROM generate_series(1000, 101000) AS n""", event_id)
    await db.execute("ANALYZE statesync_deliveries")
    statement = due_deliveries(datetime.now(UTC), 200).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    plan: Any = orjson.loads(await db.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}"))
    nodes = list(_walk(plan[0]["Plan"]))
    assert not any("Subplan Name" in n for n in nodes), "a subplan per row is back"
    scans = [n for n in nodes if "Scan" in n["Node Type"]]
    assert [n.get("Index Name") for n in scans] == ["statesync_deliveries_due"], scans
    assert sum(n["Actual Rows"] for n in scans) <= 200  # none of the 100k waiting rows

    # Letting the key's next one go reads the key's first row, not its line.
    now = datetime.now(UTC)
    values = {"keys": ["ordered_sink||hot"], "now": now, "lease": now}
    for letting_go in (promote_heads(["ordered_sink||hot"], now),
                       hand_over(["ordered_sink||hot"], now, now)):
        sql, args = str(letting_go), []
        for name, value in values.items():  # :name as asyncpg's $n
            if f":{name}" in sql:
                args.append(value)
                sql = sql.replace(f":{name}", f"${len(args)}")
        undone = db.transaction()  # EXPLAIN ANALYZE runs the UPDATE: keep nothing of it
        await undone.start()
        try:
            plan = orjson.loads(await db.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args))
        finally:
            await undone.rollback()
        scans = [n for n in _walk(plan[0]["Plan"]) if "Scan" in n["Node Type"]]
        assert "Seq Scan" not in {n["Node Type"] for n in scans}, scans
        assert sum(n.get("Actual Rows", 0) for n in scans) <= 3, scans


def _walk(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", ()):
        yield from _walk(child)


async def test_a_worker_that_ends_a_head_runs_the_keys_next_ones_itself(
        ordered_settings: Settings, relay: Relay, db: asyncpg.Connection) -> None:
    await sent(ordered_settings)  # what earlier tests left in the queue
    await emit_events(ordered_settings, ["a", "b", "a", "a"])
    await drain(relay)
    heads = await sent(ordered_settings)
    first_a = await db.fetchval("SELECT d.event_id::text FROM statesync_deliveries d JOIN "
                                "statesync_outbox o ON o.id = d.event_id WHERE o.key = 'a' "
                                "ORDER BY o.seq LIMIT 1")
    assert first_a in heads and len(heads) == 2
    broker = CeleryBroker(create_celery(ordered_settings))
    worker = build_worker(ordered_settings, send=broker.send)
    try:
        assert await asyncio.to_thread(worker.deliver, first_a, HANDLER) == "succeeded"
        # One task ran the whole of key "a", in order, and sent nothing to the broker.
        statuses = await by_status(db)
        assert [key for key, _ in statuses["succeeded"]] == ["a", "a", "a"]
        assert [key for key, _ in statuses["dispatched"]] == ["b"]  # another key: untouched
        assert await sent(ordered_settings) == []
        started = await db.fetch("SELECT o.seq FROM statesync_attempts a JOIN statesync_outbox o "
                                 "ON o.id = a.event_id WHERE o.key = 'a' ORDER BY a.started_at")
        assert [r["seq"] for r in started] == sorted(r["seq"] for r in started)
    finally:
        broker.close()
        worker.engine.dispose()


async def test_a_worker_out_of_time_for_a_key_sends_its_next_one_to_the_broker(
        ordered_settings: Settings, relay: Relay, db: asyncpg.Connection) -> None:
    await sent(ordered_settings)  # what earlier tests left in the queue
    await emit_events(ordered_settings, ["a", "a", "a"])
    await drain(relay)
    [first] = await sent(ordered_settings)
    broker = CeleryBroker(create_celery(ordered_settings))
    worker = build_worker(ordered_settings, send=broker.send)
    worker.follow_seconds = 0.0  # every task's time is up at once: each hands on to the broker
    try:
        assert await asyncio.to_thread(worker.deliver, first, HANDLER) == "succeeded"
        # No relay round since: the worker made the next "a" dispatched and sent it.
        statuses = await by_status(db)
        assert [key for key, _ in statuses["dispatched"]] == ["a"]
        assert [key for key, _ in statuses["waiting"]] == ["a"]
        assert "pending" not in statuses
        [second] = await sent(ordered_settings)
        lease = await db.fetchval("SELECT lease_expires_at FROM statesync_deliveries "
                                  "WHERE event_id = $1", second)
        assert lease is not None and lease > datetime.now(UTC)  # the relay resends it if lost
        assert second != first
        assert await asyncio.to_thread(worker.deliver, second, HANDLER) == "succeeded"
        [third] = await sent(ordered_settings)
        assert await asyncio.to_thread(worker.deliver, third, HANDLER) == "succeeded"
        assert (await by_status(db)).keys() == {"succeeded"}
        assert await sent(ordered_settings) == []  # the key's end hands nothing on
    finally:
        broker.close()
        worker.engine.dispose()
