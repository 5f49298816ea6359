"""Faults under load, with a history checker: orders are created at a steady rate through
the Python client and priced by the demo's handler in real Celery workers, while a
subscriber follows every order; the broker, the active relay, a worker and PostgreSQL are
killed in turn, and nothing restarts them but the test itself (the broker and PostgreSQL,
which are the machine's, come back; killed statesync processes stay dead, their peers
carry on). Then: no other statesync process exited, every acknowledged commit is in the
changelog, every order was priced exactly once, within the recovery target of each fault,
and the subscriber's history has no gap.

Run on its own with `pytest -m faults`."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from statesync.client import Client
from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import CeleryWorker, serve
from tests.integration.conftest import RelayProcess
from tests.integration.test_relay_outages import (
    RECOVERY,
    RestartableRedis,
    broker,  # noqa: F401 - the fixture
    restart_embedded_postgres,
)
from tests.support import eventually

pytestmark = pytest.mark.faults
PACE = 0.05  # seconds between two orders: a bounded load, about 20 orders/s
ORDER_CHANGES = "SELECT cursor FROM statesync_changes WHERE model = 'Order' AND cursor IS NOT NULL"


class Load:
    """Orders created one after another until stopped; ``acked``: those the API confirmed."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.acked: list[str] = []
        self.running = True

    async def run(self) -> None:
        n = 0
        while self.running:
            n += 1
            order_id = f"o{n}"
            # The client retries a commit with its mutationId through outages, up to its
            # commit_timeout: acknowledged means the server answered it once.
            with contextlib.suppress(Exception):
                await self.client.create("Order", {"customer": "ann", "items": [
                    {"sku": "espresso", "qty": 1 + n % 3}]}, id=order_id)
                self.acked.append(order_id)
            await asyncio.sleep(PACE)  # the load's pace, not a wait for anything


class History:
    """Every message the subscriber received: (op, cursor)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: list[tuple[str, int]] = []

    async def run(self) -> None:
        async for change in self.client.watch("Order", fields="status"):
            self.seen.append((change.op, int(change.cursor)))


async def priced(db: asyncpg.Connection, ids: list[str]) -> bool:
    left = await db.fetchval(
        "SELECT count(*) FROM statesync_documents WHERE model = 'Order' AND id = ANY($1::text[])"
        " AND data->>'status' <> 'PRICED'", ids)
    present = await db.fetchval(
        "SELECT count(*) FROM statesync_documents WHERE model = 'Order' AND id = ANY($1::text[])",
        ids)
    return bool(present == len(ids) and left == 0)


async def all_priced_within(db: asyncpg.Connection, load: Load, what: str) -> float:
    """Every order acknowledged so far priced; how long it took, from now. A timeout says
    which deliveries were left and where."""
    start = asyncio.get_running_loop().time()
    ids = list(load.acked)
    try:
        await eventually(lambda: priced(db, ids), timeout=RECOVERY + 20, what=what)
    except AssertionError as timed_out:
        left = await db.fetch(
            "SELECT o.key, d.status, d.attempts, d.last_error, d.lease_expires_at"
            " FROM statesync_deliveries d JOIN statesync_outbox o ON o.id = d.event_id"
            " WHERE d.status <> 'succeeded' ORDER BY o.seq LIMIT 10")
        raise AssertionError(f"{timed_out}; unfinished: {[dict(r) for r in left]}") from None
    return asyncio.get_running_loop().time() - start


@contextlib.asynccontextmanager
async def running(*work: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(w()) for w in work]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@pytest.mark.skipif(bool(os.environ.get("STATESYNC_TEST_DATABASE_URL")),
                    reason="restarts the suite's embedded PostgreSQL, not a server it was given")
async def test_faults_in_turn_lose_nothing_and_apply_each_effect_once(
        settings: Settings, demo_models: list[ModelSpec], broker: RestartableRedis,  # noqa: F811
        start_worker: Callable[..., Awaitable[CeleryWorker]]) -> None:
    faulty = settings.model_copy(update={"broker_url": broker.url, "dispatch_timeout": 2.0,
                                         "handler_timeout": 3.0})
    relays = [RelayProcess(faulty), RelayProcess(faulty)]
    try:
        async with serve(faulty, demo_models) as api, \
                Client(api.base_url, commit_timeout=60) as writer, \
                Client(api.base_url) as reader:
            await eventually(lambda: _is(any(r.active for r in relays)), what="a relay active")
            workers = [await start_worker(faulty), await start_worker(faulty)]
            await writer.create("Product", {"sku": "espresso", "name": "Espresso",
                                            "priceCents": 350}, id="espresso")
            load, history = Load(writer), History(reader)
            db = await asyncpg.connect(faulty.database_url)
            took: dict[str, float] = {}
            try:
                async with running(history.run, load.run):
                    await eventually(lambda: _is(len(load.acked) >= 20), what="the load to start")
                    took["none"] = await all_priced_within(db, load, "the first orders")

                    broker.kill()
                    await _more_orders(load, 10)
                    broker.start()
                    took["broker"] = await all_priced_within(db, load, "orders after the broker")

                    active = next(r for r in relays if r.active)
                    standby = next(r for r in relays if r is not active)
                    active.kill()
                    await _more_orders(load, 10)
                    took["relay"] = await all_priced_within(db, load, "orders after the relay")
                    assert standby.active

                    workers[0].kill()
                    await _more_orders(load, 10)
                    took["worker"] = await all_priced_within(db, load, "orders after the worker")

                    await asyncio.to_thread(restart_embedded_postgres)
                    await db.close()
                    db = await asyncpg.connect(faulty.database_url)
                    await _more_orders(load, 10)
                    took["postgres"] = await all_priced_within(db, load, "orders after PostgreSQL")

                    load.running = False
                    await asyncio.sleep(PACE * 4)  # the last create in flight finishes its pace
                    took["end"] = await all_priced_within(db, load, "the last orders")
                    last = await db.fetchval(f"SELECT max(cursor) FROM ({ORDER_CHANGES}) c")
                    await eventually(lambda: _is(bool(history.seen) and history.seen[-1][1] >= last),
                                     what="the subscriber to catch up")
                slow = {fault: t for fault, t in took.items() if t > RECOVERY}
                assert not slow, f"not every event handled within {RECOVERY}s: {took}"

                # Nothing but what the test killed exited.
                assert standby.process.poll() is None, "".join(standby.lines[-30:])
                assert workers[1].process.poll() is None, "".join(workers[1].lines[-30:])

                # Every acknowledged commit is in the changelog, and priced once.
                created = {r["doc_id"] for r in await db.fetch(
                    "SELECT doc_id FROM statesync_changes WHERE model = 'Order' AND op = 'CREATED'")}
                assert set(load.acked) <= created
                effects = {r["doc_id"]: r["n"] for r in await db.fetch(
                    "SELECT doc_id, count(*) AS n FROM statesync_changes WHERE model = 'Order'"
                    " AND caused_by IS NOT NULL GROUP BY doc_id")}
                assert {order: effects.get(order, 0) for order in load.acked} == {
                    order: 1 for order in load.acked}

                # The subscriber's history: after each snapshot, every change of the model
                # the changelog holds, once, in cursor order, up to where it caught up.
                changelog = [r["cursor"] for r in await db.fetch(ORDER_CHANGES + " ORDER BY cursor")]
                for start, received in _segments(history.seen):
                    end = received[-1] if received else start
                    expected = [c for c in changelog if start < c <= end]
                    assert received == expected, (start, received[:5], expected[:5])
            finally:
                await db.close()
    finally:
        for relay in relays:
            relay.stop()


def _segments(seen: list[tuple[str, int]]) -> list[tuple[int, list[int]]]:
    """The changes after each SNAPSHOT, until the next RESYNC or SNAPSHOT."""
    segments: list[tuple[int, list[int]]] = []
    for op, cursor in seen:
        if op == "SNAPSHOT":
            segments.append((cursor, []))
        elif op != "RESYNC" and segments:
            segments[-1][1].append(cursor)
    assert segments, "the subscriber never got its snapshot"
    return segments


async def _more_orders(load: Load, count: int) -> None:
    target = len(load.acked) + count
    await eventually(lambda: _is(len(load.acked) >= target), timeout=60,
                     what=f"{count} more orders acknowledged")


async def _is(value: Any) -> bool:
    return bool(value)
