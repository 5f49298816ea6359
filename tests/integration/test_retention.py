"""Retention: old changelog rows, mutation ids, settled events and tombstones go; what is
still needed stays; a `since` from before the horizon gets RESYNC, not a silent gap."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from statesync.config import Settings, psycopg_url
from statesync.eventing.celery_app import create_celery
from statesync.eventing.retention import Pruned, prune
from statesync.eventing.tasks import PRUNE
from statesync.models import ModelSpec
from tests.conftest import CeleryWorker, RunningServer, serve
from tests.support import GraphQLClient, Subscriptions, eventually, row_counts

WATCH = """subscription($since: String) { products(since: $since) {
  op cursor id version document { id name } } }"""
PRODUCT = 'mutation { createProduct(id: "%s", input: {sku: "%s", name: "n", priceCents: 1}) { version } }'
ORDER = 'mutation { createOrder(id: "o1", input: {customer: "ann", items: []}) { version } }'


def _prune_all(database_url: str) -> Pruned:
    """Everything up to now counts as old: a retention of zero, an hour from now."""
    engine = sa.create_engine(psycopg_url(database_url))
    try:
        return prune(engine, timedelta(0), now=datetime.now(UTC) + timedelta(hours=1), batch=2)
    finally:
        engine.dispose()


async def _relayed(client: GraphQLClient) -> bool:
    events = (await client.data("{ events { relayed } }"))["events"]
    return len(events) == 5 and all(e["relayed"] for e in events)


async def test_prune_keeps_what_is_needed_and_a_stale_since_gets_resync(
        eventing_server: RunningServer) -> None:
    client = GraphQLClient(eventing_server.base_url)
    for sku in ("p1", "p2", "p3"):
        await client.data(PRODUCT % (sku, sku))
    await client.data('mutation { deleteProduct(id: "p2", mutationId: "m-del") { version } }')
    await client.data(ORDER)  # its pricing delivery waits: no worker runs in this test
    await eventually(lambda: _relayed(client), what="the relay to hand every event over")
    url = eventing_server.settings.database_url or ""

    pruned = await asyncio.to_thread(_prune_all, url)

    assert pruned == Pruned(changes=5, mutations=1, events=4, tombstones=1)
    counts = await row_counts(url)
    assert counts["statesync_documents"] == 3  # p1, p3, o1: live documents are never pruned
    assert counts["statesync_outbox"] == 1  # Order.created: its delivery has not succeeded
    assert counts["statesync_changes"] == 0 and counts["statesync_mutations"] == 0
    async with Subscriptions.connect(eventing_server.ws_url) as subs:
        stale = await subs.subscribe(WATCH, {"since": "1"})
        assert (await subs.next(stale))["op"] == "RESYNC"
        assert (await subs.message(stale))["type"] == "complete"
        current = await subs.subscribe(WATCH, {"since": "5"})  # the head: nothing was missed
        await client.data(PRODUCT % ("p4", "p4"))
        change = await subs.next(current)
        assert (change["op"], change["cursor"], change["id"]) == ("CREATED", "6", "p4")
    # The deleted id is free again, from version 1.
    assert (await client.data(PRODUCT % ("p2", "p2")))["createProduct"]["version"] == 1
    await client.aclose()


async def test_celery_beats_prune_task_runs_in_a_worker(
        settings: Settings, demo_models: list[ModelSpec],
        start_worker: Callable[..., Awaitable[CeleryWorker]]) -> None:
    """The task beat schedules every prune_interval, sent to a real worker."""
    keep_nothing = settings.model_copy(update={"retention": 0.0})
    async with serve(keep_nothing, demo_models) as running:
        client = GraphQLClient(running.base_url)
        await client.data(PRODUCT % ("p1", "p1"))
        await start_worker(keep_nothing)
        celery = create_celery(keep_nothing)
        try:
            await asyncio.to_thread(celery.send_task, PRUNE)
        finally:
            celery.close()

        async def changelog_empty() -> bool:
            return (await row_counts(keep_nothing.database_url or ""))["statesync_changes"] == 0

        await eventually(changelog_empty, what="the worker to prune the changelog")
        assert (await client.data('{ product(id: "p1") { version } }'))["product"] == {"version": 1}
        await client.aclose()
