"""The outbox relay under failure and contention: kill -9 of the active relay loses no event;
two relays pumping at once never send the same delivery twice. Real PostgreSQL, Redis, Celery
and `statesync relay` processes; waits poll for the expected state with a deadline."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Awaitable, Callable

import asyncpg
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import create_async_engine

from statesync.config import Settings, asyncpg_url
from statesync.eventing.entry import build_relay
from statesync.eventing.relay import Relay
from statesync.eventing.tasks import BUNDLE
from statesync.models import ModelSpec
from statesync.store import locks
from statesync.store.commits import emit_steps, run_async
from tests.conftest import ROOT, CeleryWorker, serve
from tests.integration.conftest import RelayProcess, decode_tasks
from tests.support import GraphQLClient, eventually

HANDLERS = ROOT / "tests" / "handlers"


async def logged_active(relay: RelayProcess) -> bool:
    return relay.active


async def lock_holder(db: asyncpg.Connection) -> int | None:
    """The PostgreSQL backend holding the relay's advisory lock (the active relay's session)."""
    pid: int | None = await db.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid = 0 AND objid = $1 AND objsubid = 1", locks.RELAY)
    return pid


async def standby_backend(db: asyncpg.Connection, holder: int) -> int | None:
    """A backend other than the holder that has asked for the lock (a standby relay)."""
    pid: int | None = await db.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> $1 "
        "AND pid <> pg_backend_pid() AND query LIKE 'SELECT pg_try_advisory_lock%'", holder)
    return pid


# ---- 5. kill -9 of the active relay: the standby takes over, nothing is lost ----------------

CREATE_ORDER = """mutation($id: ID!) { createOrder(id: $id, input: {customer: "ann",
  items: [{sku: "tea", qty: 2}]}) { version } }"""


async def test_killing_the_active_relay_loses_no_event(
        settings: Settings, demo_models: list[ModelSpec], db: asyncpg.Connection,
        start_worker: Callable[..., Awaitable[CeleryWorker]],
        start_relay: Callable[[Settings], RelayProcess]) -> None:
    async with serve(settings, demo_models) as server:  # the API alone: no relay in it
        client = GraphQLClient(server.base_url)
        await start_worker(settings)
        first = start_relay(settings)
        holder = await eventually(lambda: lock_holder(db), what="a relay to take the lock")
        await eventually(lambda: logged_active(first), what="the first relay to log it")
        second = start_relay(settings)
        standby = await eventually(lambda: standby_backend(db, holder),
                                   what="the second relay to wait for the lock")
        assert not second.active and await lock_holder(db) == holder

        await client.data('mutation { createProduct(id: "tea", input: {sku: "tea", name: "Tea", '
                          "priceCents: 450}) { version } }")
        before = [f"a{n}" for n in range(5)]
        for order_id in before:
            await client.data(CREATE_ORDER, {"id": order_id})

        async def priced(ids: list[str]) -> bool:
            statuses = await db.fetch(
                "SELECT data->>'status' AS status FROM statesync_documents "
                "WHERE model = 'Order' AND id = ANY($1::text[])", ids)
            return len(statuses) == len(ids) and all(r["status"] == "PRICED" for r in statuses)

        await eventually(lambda: priced(before), what="the first orders to be priced")
        assert await db.fetchval("SELECT count(*) FROM statesync_deliveries") > 0

        first.kill()
        # Events committed while no relay is active (the standby polls for the lock).
        after = [f"b{n}" for n in range(5)]
        for order_id in after:
            await client.data(CREATE_ORDER, {"id": order_id})

        async def standby_took_over() -> bool:
            return await lock_holder(db) == standby

        await eventually(standby_took_over, what="the standby to take the lock")
        await eventually(lambda: logged_active(second), what="the standby to log it")
        await eventually(lambda: priced(before + after), what="every order to be priced")

        async def all_delivered() -> bool:
            left = await db.fetchval(
                "SELECT (SELECT count(*) FROM statesync_outbox WHERE relayed_at IS NULL) + "
                "(SELECT count(*) FROM statesync_deliveries WHERE status <> 'succeeded')")
            return bool(left == 0)

        await eventually(all_delivered, what="every event to be relayed and delivered")
        await client.aclose()

    # Every event has exactly its one delivery (price_order wants every Order event), and
    # no attempt went dead on the way.
    events = await db.fetchval("SELECT count(*) FROM statesync_outbox")
    assert events == 1 + 2 * len(before + after)  # product + created/priced per order
    per_event = await db.fetch(
        "SELECT o.type, count(d.event_id) AS n FROM statesync_outbox o "
        "LEFT JOIN statesync_deliveries d ON d.event_id = o.id GROUP BY o.id, o.type")
    assert sorted({(r["type"], r["n"]) for r in per_event}) == [
        ("Order.created", 1), ("Order.updated", 1), ("Product.created", 0)]
    assert await db.fetchval("SELECT count(*) FROM statesync_attempts WHERE outcome <> 'succeeded' "
                             "OR outcome IS NULL") == 0


# ---- 6. two relays pumping at once never send the same delivery -----------------------------

EVENTS = 600


async def test_two_relays_pumping_at_once_send_each_delivery_once(
        settings: Settings, db: asyncpg.Connection) -> None:
    # No worker consumes settings.queue in this test: every sent task stays in the broker.
    relay_settings = settings.model_copy(update={"workers_path": HANDLERS / "sink.py",
                                                 "dispatch_timeout": 120.0})
    engines = [create_async_engine(asyncpg_url(settings.database_url or ""), pool_size=4)
               for _ in range(2)]
    broker = aioredis.Redis.from_url(settings.redis_url or "")
    relays: list[Relay] = [build_relay(relay_settings, engine) for engine in engines]
    try:
        async with engines[0].begin() as connection:
            for n in range(EVENTS):
                await run_async(connection, emit_steps("Load.tick", f"k{n}", {"n": n}))

        async def drain(relay: Relay) -> int:
            rounds = 0
            while await relay.pump():
                rounds += 1
            return rounds

        await asyncio.gather(*(drain(relay) for relay in relays))
        # Nothing is left to do for either of them.
        assert [await relay.pump() for relay in relays] == [0, 0]

        queued = await broker.lrange(settings.queue, 0, -1)
    finally:
        await broker.aclose()
        for relay in relays:
            relay.broker.close()  # type: ignore[attr-defined]
        for engine in engines:
            await engine.dispose()

    assert await db.fetchval("SELECT count(*) FROM statesync_outbox WHERE relayed_at IS NULL") == 0
    statuses = await db.fetch("SELECT status, count(*) AS n FROM statesync_deliveries GROUP BY status")
    assert {r["status"]: r["n"] for r in statuses} == {"dispatched": EVENTS}
    # Both relays did part of the work, and together each delivery was sent exactly once.
    assert all(relay.sent > 0 for relay in relays), [relay.sent for relay in relays]
    assert sum(relay.sent for relay in relays) == EVENTS
    decoded = decode_tasks(queued)
    assert all(len(pairs) <= BUNDLE for _, pairs in decoded)
    sent = Counter(pair for _, pairs in decoded for pair in pairs)
    assert sum(sent.values()) == EVENTS and max(sent.values()) == 1, sent.most_common(3)
    assert len(queued) < EVENTS / 2  # sent in bundles: a task carries several deliveries
    deliveries = {(r["event_id"], r["handler"]) for r in await db.fetch(
        "SELECT event_id::text AS event_id, handler FROM statesync_deliveries")}
    assert set(sent) == deliveries


# ---- SIGTERM (docker stop, Kubernetes): the relay gives up its role and exits 0 -------------

async def test_sigterm_stops_the_relay_cleanly_and_frees_its_role(
        settings: Settings, db: asyncpg.Connection,
        start_relay: Callable[[Settings], RelayProcess]) -> None:
    relay = start_relay(settings)
    await eventually(lambda: logged_active(relay), what="the relay to take its role")
    assert await lock_holder(db) is not None
    relay.process.send_signal(signal.SIGTERM)
    returncode = await asyncio.to_thread(relay.process.wait, 15)
    assert returncode == 0, "".join(relay.lines[-30:])
    assert await lock_holder(db) is None
    assert any("relay stopped" in line for line in relay.lines)
