"""Eventing end to end: outbox -> relay -> real Celery workers -> handler results committed
through the one write path. Real PostgreSQL, Redis and `celery worker` processes; nothing is
mocked, and nothing sleeps to synchronise: every wait polls the database for the state the
test expects, with a deadline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import ROOT, CeleryWorker, RunningServer, serve
from tests.support import GraphQLClient, Subscriptions, eventually

HANDLERS = ROOT / "tests" / "handlers"

Start = Callable[..., Awaitable[CeleryWorker]]


def with_handlers(settings: Settings, module: str, **overrides: Any) -> Settings:
    """``settings`` whose workers (and relay) know only the handlers in tests/handlers/<module>.py."""
    return settings.model_copy(update={"workers_path": HANDLERS / f"{module}.py",
                                       "handler_timeout": 3.0, **overrides})


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(settings.database_url)
    await connection.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                                    schema="pg_catalog")
    try:
        yield connection
    finally:
        await connection.close()


async def delivery(db: asyncpg.Connection, event_id: str, handler: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM statesync_deliveries WHERE event_id = $1 AND handler = $2", event_id, handler)
    return row


async def delivery_in(db: asyncpg.Connection, event_id: str, handler: str, *status: str
                      ) -> asyncpg.Record | None:
    row = await delivery(db, event_id, handler)
    return row if row is not None and row["status"] in status else None


async def attempts(db: asyncpg.Connection, event_id: str, handler: str) -> list[asyncpg.Record]:
    return list(await db.fetch(
        "SELECT * FROM statesync_attempts WHERE event_id = $1 AND handler = $2 ORDER BY started_at",
        event_id, handler))


async def changes_of(db: asyncpg.Connection, model: str, doc_id: str) -> list[asyncpg.Record]:
    return list(await db.fetch(
        "SELECT op, version, caused_by::text AS caused_by, document FROM statesync_changes "
        "WHERE model = $1 AND doc_id = $2 ORDER BY seq", model, doc_id))


# ---- 1. the demo handler: priced or rejected, and the result is caused by the event ------------

WATCH = """subscription($id: ID!) { order(id: $id) { op version changedFields
  document { status totalCents rejectReason } } }"""
CREATE_ORDER = """mutation($id: ID!, $sku: String!) { createOrder(id: $id, input: {customer: "ann",
  items: [{sku: $sku, qty: 3}]}) { version eventIds } }"""


async def test_an_order_is_priced_or_rejected_and_the_result_is_caused_by_its_event(
        eventing_server: RunningServer, start_worker: Start, db: asyncpg.Connection) -> None:
    client = GraphQLClient(eventing_server.base_url)
    await start_worker(eventing_server.settings)
    await client.data('mutation { createProduct(id: "tea", input: {sku: "tea", name: "Tea", '
                      "priceCents: 450}) { version } }")
    async with Subscriptions.connect(eventing_server.ws_url) as subs:
        priced_op = await subs.subscribe(WATCH, {"id": "o1"})
        rejected_op = await subs.subscribe(WATCH, {"id": "o2"})
        assert (await subs.next(priced_op))["op"] == "SNAPSHOT"
        assert (await subs.next(rejected_op))["op"] == "SNAPSHOT"
        created = (await client.data(CREATE_ORDER, {"id": "o1", "sku": "tea"}))["createOrder"]
        rejected_created = (await client.data(CREATE_ORDER, {"id": "o2", "sku": "nope"}))["createOrder"]

        first = await subs.next(priced_op)
        assert (first["op"], first["version"]) == ("CREATED", 1)
        assert first["document"] == {"status": "NEW", "totalCents": None, "rejectReason": None}
        priced = await subs.next(priced_op)
        assert (priced["op"], priced["version"]) == ("UPDATED", 2)
        assert priced["document"] == {"status": "PRICED", "totalCents": 1350, "rejectReason": None}

        first = await subs.next(rejected_op)
        assert (first["op"], first["version"]) == ("CREATED", 1)
        rejected = await subs.next(rejected_op)
        assert (rejected["op"], rejected["version"]) == ("UPDATED", 2)
        assert rejected["document"] == {"status": "REJECTED", "totalCents": None,
                                        "rejectReason": "unknown product nope"}
        assert "rejectReason" in rejected["changedFields"]

    # The handler's change is attributed to the event that caused it; the client's is not.
    [event_id] = created["eventIds"]
    [rejected_event_id] = rejected_created["eventIds"]
    assert [(c["op"], c["version"], c["caused_by"]) for c in await changes_of(db, "Order", "o1")] == [
        ("CREATED", 1, None), ("UPDATED", 2, event_id)]
    assert [(c["op"], c["caused_by"]) for c in await changes_of(db, "Order", "o2")] == [
        ("CREATED", None), ("UPDATED", rejected_event_id)]
    # ... and so is the event the handler's write emitted, which the relay also delivers.
    follow_up = await db.fetchrow("SELECT type, version FROM statesync_outbox WHERE caused_by = $1",
                                  event_id)
    assert follow_up is not None and (follow_up["type"], follow_up["version"]) == ("Order.updated", 2)
    assert (await delivery(db, event_id, "price_order") or {}).get("status") == "succeeded"
    await client.aclose()


# ---- 2. retries with growing backoff, one effect --------------------------------------------

async def test_a_flaky_handler_is_retried_with_growing_backoff_and_its_effect_applies_once(
        settings: Settings, demo_models: list[ModelSpec], start_worker: Start,
        db: asyncpg.Connection) -> None:
    from tests.handlers.flaky import BACKOFF

    # A fast relay poll keeps the dispatch latency (added to each backoff delay) small.
    handler_settings = with_handlers(settings, "flaky", relay_poll_interval=0.05)
    async with serve(handler_settings, demo_models, with_relay=True) as server:
        await start_worker(handler_settings)
        event_id = (await server.runtime.emit("Flaky.run", "f1", {})).event_id
        done = await eventually(lambda: delivery_in(db, event_id, "flaky", "succeeded", "dead"),
                                what="the flaky delivery to finish")

    assert (done["status"], done["attempts"], done["last_error"]) == ("succeeded", 3, None)
    rows = await attempts(db, event_id, "flaky")
    assert [(r["attempt"], r["outcome"]) for r in rows] == [
        (1, "retrying"), (2, "retrying"), (3, "succeeded")]
    assert all("flaky failure on attempt" in r["error"] for r in rows[:2]) and rows[2]["error"] is None
    assert all(r["finished_at"] >= r["started_at"] for r in rows)
    # The wait between an attempt's end and the next one's start is the backoff (plus the
    # relay's dispatch latency): after attempt n it is in [b/2 * 2^(n-1), b * 2^(n-1)].
    waits = [(rows[n + 1]["started_at"] - rows[n]["finished_at"]).total_seconds() for n in range(2)]
    slack = 0.5
    assert BACKOFF / 2 <= waits[0] <= BACKOFF + slack, waits
    assert BACKOFF <= waits[1] <= 2 * BACKOFF + slack, waits
    starts = [r["started_at"] for r in rows]
    assert starts[2] - starts[1] > starts[1] - starts[0], starts

    # Exactly one effect, committed by the successful attempt, caused by the event.
    effect = await changes_of(db, "Product", "effect-f1")
    assert [(c["op"], c["version"], c["caused_by"]) for c in effect] == [("CREATED", 1, event_id)]
    assert effect[0]["document"]["price_cents"] == 3  # written by attempt 3


# ---- 2b. a handler longer than its lease keeps it: run once, not beside itself -------------

async def test_a_handler_running_longer_than_its_lease_is_not_run_again(
        settings: Settings, demo_models: list[ModelSpec], start_worker: Start,
        db: asyncpg.Connection) -> None:
    from tests.handlers.slow import RUN_SECONDS

    handler_settings = with_handlers(settings, "slow", handler_timeout=1.0,
                                      relay_poll_interval=0.05)
    assert 2 * handler_settings.handler_timeout < RUN_SECONDS
    async with serve(handler_settings, demo_models, with_relay=True) as server:
        await start_worker(handler_settings)
        event_id = (await server.runtime.emit("Slow.run", "s1", {})).event_id
        done = await eventually(lambda: delivery_in(db, event_id, "slow", "succeeded", "dead"),
                                what="the slow delivery to finish")

    assert (done["status"], done["attempts"]) == ("succeeded", 1)
    assert [(r["attempt"], r["outcome"]) for r in await attempts(db, event_id, "slow")] == [
        (1, "succeeded")]
    effect = await changes_of(db, "Product", "slow-s1")
    assert [(c["op"], c["version"]) for c in effect] == [("CREATED", 1)]


# ---- 3. dead-lettered after max_attempts, then redelivered -----------------------------------

async def test_a_failing_handler_goes_dead_and_redelivery_runs_it_again(
        settings: Settings, demo_models: list[ModelSpec], start_worker: Start,
        db: asyncpg.Connection) -> None:
    from tests.handlers.doomed import MAX_ATTEMPTS

    handler_settings = with_handlers(settings, "doomed")
    async with serve(handler_settings, demo_models, with_relay=True) as server:
        worker = await start_worker(handler_settings)
        client = GraphQLClient(server.base_url)
        event_id = (await server.runtime.emit("Doomed.run", "d1", {})).event_id
        dead = await eventually(lambda: delivery_in(db, event_id, "doomed", "dead"),
                                what="the delivery to be dead")
        assert dead["attempts"] == MAX_ATTEMPTS and dead["finished_at"] is not None
        # Celery itself saw each failed attempt fail (what Flower and `celery events` show).

        async def failures_logged() -> int:
            return sum(f"HandlerFailed: handler doomed failed on event {event_id}" in line
                       for line in worker.lines)

        assert await eventually(failures_logged, what="Celery to log the failed tasks") >= 1
        assert await failures_logged() <= MAX_ATTEMPTS
        assert "RuntimeError: no permit for d1 (attempt 3)" in dead["last_error"]
        first_round = await attempts(db, event_id, "doomed")
        assert [r["outcome"] for r in first_round] == ["retrying", "retrying", "dead"]
        assert await changes_of(db, "Product", "effect-d1") == []
        # Redelivery names handlers: one the event never had matches nothing.
        assert await server.runtime.redeliver(event_id, "no_such_handler") == []

        # Fix the cause, then redeliver: the handler runs again, from attempt 1.
        await client.data('mutation { createProduct(id: "permit-d1", input: {sku: "permit-d1", '
                          'name: "permit", priceCents: 0}) { version } }')
        assert (await delivery(db, event_id, "doomed") or {}).get("status") == "dead"
        assert await server.runtime.redeliver(event_id) == ["doomed"]
        done = await eventually(lambda: delivery_in(db, event_id, "doomed", "succeeded", "dead"),
                                what="the redelivered delivery to finish")
        await client.aclose()

    assert (done["status"], done["attempts"], done["last_error"]) == ("succeeded", 1, None)
    effect = await changes_of(db, "Product", "effect-d1")
    assert [(c["op"], c["caused_by"]) for c in effect] == [("CREATED", event_id)]
    assert effect[0]["document"]["price_cents"] == 1  # attempt 1 of the second round
    # The history keeps every attempt of both rounds, in order.
    history = await attempts(db, event_id, "doomed")
    assert [r["outcome"] for r in history] == ["retrying", "retrying", "dead", "succeeded"]
    assert [r["started_at"] for r in history[:3]] == [r["started_at"] for r in first_round]
    assert len({r["attempt"] for r in history}) == 4


# ---- 4. kill -9 of a worker mid-task ---------------------------------------------------------

async def test_a_worker_killed_mid_task_is_recovered_and_the_effect_applies_once(
        settings: Settings, demo_models: list[ModelSpec], start_worker: Start,
        db: asyncpg.Connection) -> None:
    handler_settings = with_handlers(settings, "blocking")
    async with serve(handler_settings, demo_models, with_relay=True) as server:
        doomed_worker = await start_worker(handler_settings, concurrency=1)
        event_id = (await server.runtime.emit("Blocking.run", "k1", {})).event_id

        async def running() -> bool:
            row = await delivery(db, event_id, "blocking")
            history = await attempts(db, event_id, "blocking")
            return (row is not None and row["status"] == "running" and len(history) == 1
                    and history[0]["finished_at"] is None)

        await eventually(running, what="attempt 1 to be running")
        doomed_worker.kill()
        assert doomed_worker.process.returncode == -9
        await start_worker(handler_settings, concurrency=1)
        done = await eventually(lambda: delivery_in(db, event_id, "blocking", "succeeded", "dead"),
                                what="the delivery to be recovered and finish")

    assert done["status"] == "succeeded" and done["attempts"] >= 2
    history = await attempts(db, event_id, "blocking")
    assert len(history) >= 2
    assert history[0]["outcome"] != "succeeded"  # the killed attempt never claims success
    assert history[0]["finished_at"] is not None, "the killed attempt is closed by the recovery"
    assert "stopped renewing the lease" in history[0]["error"]
    assert [r["outcome"] for r in history].count("succeeded") == 1
    effect = await changes_of(db, "Product", "effect-k1")
    assert [(c["op"], c["caused_by"]) for c in effect] == [("CREATED", event_id)]
    assert effect[0]["document"]["price_cents"] == done["attempts"]


# ---- 7. ordered handlers see each document's versions in order ------------------------------

DOCS = 4
UPDATES = 6


async def test_an_ordered_handler_sees_each_documents_versions_in_order(
        settings: Settings, demo_models: list[ModelSpec], start_worker: Start,
        db: asyncpg.Connection) -> None:
    await db.execute("CREATE TABLE test_seen (id bigserial PRIMARY KEY, doc_id text NOT NULL, "
                     "version int NOT NULL, event_id uuid NOT NULL, pid int NOT NULL, "
                     "at timestamptz NOT NULL DEFAULT clock_timestamp())")
    handler_settings = with_handlers(settings, "ordered")
    async with serve(handler_settings, demo_models, with_relay=True) as server:
        await start_worker(handler_settings, concurrency=3)
        client = GraphQLClient(server.base_url)
        create = ("mutation($id: ID!, $sku: String!) { createProduct(id: $id, input: {sku: $sku, "
                  "name: \"p\", priceCents: 0}) { version } }")
        update = ("mutation($id: ID!, $price: Int!) { updateProduct(id: $id, "
                  "patch: {priceCents: $price}) { version } }")

        async def write(doc_id: str) -> None:
            await client.data(create, {"id": doc_id, "sku": doc_id})
            for round_ in range(UPDATES // 2):  # two concurrent updates of the document at a time
                await asyncio.gather(*(client.data(update, {"id": doc_id, "price": 2 * round_ + k})
                                       for k in (1, 2)))

        ids = [f"p{n}" for n in range(DOCS)]
        await asyncio.gather(*(write(doc_id) for doc_id in ids))
        events = DOCS * (1 + UPDATES)
        assert await db.fetchval("SELECT count(*) FROM statesync_outbox") == events

        async def all_done() -> bool:
            finished = await db.fetchval("SELECT count(*) FROM statesync_deliveries "
                                         "WHERE status IN ('succeeded', 'dead')")
            return bool(finished == events)

        await eventually(all_done, what="every delivery to finish")
        await client.aclose()

    assert await db.fetchval("SELECT count(*) FROM statesync_deliveries WHERE status = 'succeeded' "
                             "AND attempts = 1") == events
    seen = await db.fetch("SELECT doc_id, version, event_id::text AS event_id, pid FROM test_seen "
                          "ORDER BY id")
    for doc_id in ids:
        versions = [r["version"] for r in seen if r["doc_id"] == doc_id]
        assert versions == list(range(1, UPDATES + 2)), (doc_id, versions)
    # One run per event, and every event ran.
    outbox_ids = {r["id"] for r in await db.fetch("SELECT id::text AS id FROM statesync_outbox")}
    assert sorted(r["event_id"] for r in seen) == sorted(outbox_ids)
    # More than one worker process ran the handler (otherwise order would be trivial).
    assert len({r["pid"] for r in seen}) >= 2, seen


@pytest.mark.parametrize("attempt,expected", [(1, (0.5, 1.0)), (2, (1.0, 2.0)), (3, (2.0, 4.0))])
def test_retry_delays_double_within_their_jitter(attempt: int, expected: tuple[float, float]) -> None:
    """The ranges the backoff test relies on (pure; no services)."""
    import random

    from statesync.eventing.handlers import Handler

    spec = Handler(name="h", fn=lambda e, t: None, patterns=("A.b",), backoff_base=1.0)
    rng = random.Random(7)
    delays = [spec.retry_delay(attempt, rng) for _ in range(200)]
    low, high = expected
    assert all(timedelta(seconds=low) <= d <= timedelta(seconds=high) for d in delays)
    assert max(delays) - min(delays) > timedelta(seconds=(high - low) * 0.8)  # jitter is real
