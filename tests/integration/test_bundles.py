"""A backlog's deliveries travel in bundles: the relay cuts a big dispatch into tasks of
several deliveries, a worker runs a bundle's members one after the other, records their
plain successes in one statement, and gives back to the broker, one task each, what it
has not started once its time for the bundle is up."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from statesync.config import Settings
from statesync.eventing.broker import CeleryBroker, Pair
from statesync.eventing.celery_app import build_worker, bundle_of, create_celery
from statesync.eventing.handlers import Event, Handlers, Tx
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


async def history(db: asyncpg.Connection, pairs: list[Pair]) -> list[asyncpg.Record]:
    """The attempt history rows of ``pairs``, in their order (absent: none)."""
    rows = {(r["event_id"], r["handler"]): r for r in await db.fetch(
        "SELECT event_id::text AS event_id, handler, started_at, finished_at, outcome"
        " FROM statesync_attempts")}
    return [rows[pair] for pair in pairs if pair in rows]


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
        # Each claimed as it started; one statement ending the bundle's plain successes.
        recorded = await history(db, whole)
        assert [row["outcome"] for row in recorded] == ["succeeded"] * len(whole)
        assert len({row["started_at"] for row in recorded}) == len(whole)
        assert len({row["finished_at"] for row in recorded}) == 1

        worker.follow_seconds = 0.0  # its time for the bundle is up after the first member
        assert await asyncio.to_thread(worker.deliver_all, cut) == (
            ["succeeded"] + ["handed back"] * (len(cut) - 1))
        assert await statuses(db, cut) == ["succeeded"] + ["dispatched"] * (len(cut) - 1)
        # Never claimed: no attempt counted, no history.
        given_back = [pair[0] for pair in cut[1:]]
        assert await db.fetchval(
            "SELECT count(*) FROM statesync_deliveries WHERE event_id = ANY($1::uuid[])"
            " AND attempts = 0 AND lease_expires_at > now()", given_back) == len(cut) - 1
        assert await history(db, cut[1:]) == []
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


async def test_a_dispatch_queued_behind_a_backlog_goes_in_bundles_however_small(
        sink_settings: Settings, relay: Relay) -> None:
    """A backlog that forms in the broker (workers slower than commits) arrives a few due
    deliveries at a time: the queue's length, not the dispatch's, says it is one."""
    await emit_events(sink_settings, [f"first{n}" for n in range(40)])
    assert await relay.pump() == 40
    await emit_events(sink_settings, [f"then{n}" for n in range(40)])
    assert await relay.pump() == 40
    sent = [(name, len(pairs)) for name, pairs in await queued_tasks(sink_settings)]
    # 40 due on an idle broker: one each; 40 due behind those 40: (40 + 40) // 32 = 2 each.
    assert sent == [(DELIVER, 1)] * 40 + [(DELIVER_MANY, 2)] * 20


async def test_a_member_whose_attempt_another_took_over_is_superseded_alone(
        sink_settings: Settings, relay: Relay, db: asyncpg.Connection) -> None:
    await emit_events(sink_settings, [f"k{n}" for n in range(100)])
    assert await relay.pump() == 100
    [(_, bundle), *_] = await queued_tasks(sink_settings)
    usurped, second, *rest = bundle
    worker = build_worker(sink_settings)
    sink = worker.handlers["sink"]

    def usurping(event: Event, tx: Tx) -> None:
        if event.id == second[0]:  # meanwhile, another attempt takes the first member over
            with worker.engine.begin() as connection:
                connection.exec_driver_sql(
                    "UPDATE statesync_deliveries SET attempts = attempts + 1"
                    " WHERE event_id = %s", (usurped[0],))

    worker.handlers = Handlers.of([dataclasses.replace(sink, fn=usurping)])
    try:
        assert await asyncio.to_thread(worker.deliver_all, bundle) == (
            ["superseded", "succeeded"] + ["succeeded"] * len(rest))
        # The superseded attempt recorded nothing: its row is the other attempt's to end.
        assert await statuses(db, bundle) == ["running", "succeeded"] + ["succeeded"] * len(rest)
        [outcome] = [row["outcome"] for row in await history(db, [usurped])]
        assert outcome is None
    finally:
        worker.engine.dispose()


async def test_a_forged_bundle_runs_what_it_can_and_each_member_at_most_once(
        sink_settings: Settings, relay: Relay, db: asyncpg.Connection) -> None:
    await emit_events(sink_settings, ["a", "b"])
    assert await relay.pump() == 2
    [(_, [real]), (_, [other])] = await queued_tasks(sink_settings)
    worker = build_worker(sink_settings)
    forged = [real, real, ("not-a-uuid", "sink"), (str(uuid.uuid4()), "sink"),
              (other[0], "no-such-handler"), other]
    try:
        assert await asyncio.to_thread(worker.deliver_all, forged) == [
            "succeeded", "skipped", "not run", "skipped", "not run", "succeeded"]
        assert await statuses(db, [real, other]) == ["succeeded", "succeeded"]
        assert [row["outcome"] for row in await history(db, [real, other])] == ["succeeded"] * 2
    finally:
        worker.engine.dispose()


@pytest.mark.parametrize("message", [
    None, "x", {"a": "b"}, [["id"]], [["id", "h", "extra"]], [[1, "h"]], [["id", ["h"]]], [None]])
def test_a_bundle_message_that_is_not_one_is_refused_whole(message: object) -> None:
    with pytest.raises(ValueError, match="not a bundle of deliveries"):
        bundle_of(message)
    assert bundle_of([["e", "h"], ("f", "g")]) == [("e", "h"), ("f", "g")]


async def test_a_plain_success_keeps_its_lease_while_the_rest_of_its_bundle_runs(
        sink_settings: Settings, relay: Relay, db: asyncpg.Connection) -> None:
    """Its success is recorded with the bundle's; a long member after it must not let its
    lease run out meanwhile (the relay would take it for a dead worker's)."""
    await emit_events(sink_settings, [f"k{n}" for n in range(100)])
    assert await relay.pump() == 100
    [(_, bundle), *_] = await queued_tasks(sink_settings)
    first, slow, *_ = bundle
    worker = build_worker(sink_settings.model_copy(update={"handler_timeout": 0.6}))
    sink = worker.handlers["sink"]
    seen: list[bool] = []

    def long_second(event: Event, tx: Tx) -> None:
        if event.id == slow[0]:
            time.sleep(1.0)  # the handler's own work, longer than a lease
            with worker.engine.connect() as connection:
                seen.append(bool(connection.exec_driver_sql(
                    "SELECT lease_expires_at > now() FROM statesync_deliveries"
                    " WHERE event_id = %s AND status = 'running'", (first[0],)).scalar()))

    worker.handlers = Handlers.of([dataclasses.replace(sink, fn=long_second)])
    try:
        statuses = await asyncio.to_thread(worker.deliver_all, [first, slow])
        assert statuses == ["succeeded", "succeeded"]
        assert seen == [True]  # still running, its lease renewed past the second's sleep
    finally:
        worker.engine.dispose()
