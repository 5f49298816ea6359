"""A backlog's deliveries travel in bundles: the relay cuts a big dispatch into tasks of
several deliveries, a worker runs a bundle's members one after the other, and gives back
to the broker, one task each, what it has not started once its time for the bundle is up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from statesync.config import Settings
from statesync.eventing.broker import CeleryBroker, Pair
from statesync.eventing.celery_app import build_worker, create_celery
from statesync.eventing.relay import Relay
from statesync.eventing.tasks import DELIVER, DELIVER_MANY
from tests.integration.conftest import emit_events, pumped_relay, queued_tasks
from tests.integration.test_relay import HANDLERS


@pytest.fixture
def sink_settings(settings: Settings) -> Settings:
    # No worker consumes this queue: the test reads the tasks and runs them itself.
    return settings.model_copy(update={"workers_path": HANDLERS / "sink.py",
                                       "dispatch_timeout": 120.0})


@pytest.fixture
async def relay(sink_settings: Settings) -> AsyncIterator[Relay]:
    async with pumped_relay(sink_settings) as pumped:
        yield pumped


async def statuses(db: asyncpg.Connection, pairs: list[Pair]) -> list[str]:
    rows = {(r["event_id"], r["handler"]): r["status"] for r in await db.fetch(
        "SELECT event_id::text AS event_id, handler, status FROM statesync_deliveries")}
    return [rows[pair] for pair in pairs]


async def test_a_big_dispatch_goes_in_even_bundles_that_a_worker_runs_whole(
        sink_settings: Settings, relay: Relay, db: asyncpg.Connection) -> None:
    await emit_events(sink_settings, [f"k{n}" for n in range(100)])
    assert await relay.pump() == 100
    sent = await queued_tasks(sink_settings)
    sizes = [len(pairs) for _, pairs in sent]
    # 100 due: 3 to a task (100 // 32), as even as can be, each delivery in one of them.
    assert {name for name, _ in sent} == {DELIVER_MANY}
    assert max(sizes) == 3 and min(sizes) >= 2 and sum(sizes) == 100
    everything = [pair for _, pairs in sent for pair in pairs]
    assert len(set(everything)) == 100

    broker = CeleryBroker(create_celery(sink_settings))
    worker = build_worker(sink_settings, send=broker.send)
    try:
        [(_, whole), (_, cut), *_] = sent
        assert await asyncio.to_thread(worker.deliver_all, whole) == ["succeeded"] * len(whole)
        assert await statuses(db, whole) == ["succeeded"] * len(whole)
        assert await queued_tasks(sink_settings) == []  # nothing handed on

        worker.follow_seconds = 0.0  # its time for the bundle is up after the first member
        assert await asyncio.to_thread(worker.deliver_all, cut) == (
            ["succeeded"] + ["handed back"] * (len(cut) - 1))
        assert await statuses(db, cut) == ["succeeded"] + ["dispatched"] * (len(cut) - 1)
        # The rest is in the broker again, one task each, for any worker to start now.
        assert await queued_tasks(sink_settings) == [(DELIVER, [pair]) for pair in cut[1:]]
    finally:
        broker.close()
        worker.engine.dispose()


async def test_a_few_due_deliveries_go_one_per_task(
        sink_settings: Settings, relay: Relay) -> None:
    await emit_events(sink_settings, [f"k{n}" for n in range(20)])
    assert await relay.pump() == 20
    sent = await queued_tasks(sink_settings)
    assert [name for name, _ in sent] == [DELIVER] * 20  # side by side on every worker slot
