"""Clients that use up their share of the database cannot starve the feed or each other,
and a background task that fails is restarted, not fatal. In-process, on a small pool, so
the test can see the hub and the supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import RunningServer, serve
from tests.support import WAIT, GraphQLClient, Subscriptions, eventually

HEAVY = "{ " + " ".join(f"o{i}: orders(first: 100) {{ nodes {{ id customer }} }}" for i in range(20)) + " }"
UPDATE = 'mutation($n: String) { updateOrder(id: "o1", patch: {note: $n}) { version } }'


@pytest.fixture
async def small(settings: Settings, demo_models: list[ModelSpec]) -> AsyncIterator[RunningServer]:
    tight = settings.model_copy(update={
        "db_pool_size": 4, "db_connections_per_client": 2, "max_concurrent_snapshots": 2,
        "max_subscriptions_per_connection": 200, "db_pool_timeout": 30.0})
    async with serve(tight, demo_models) as running:
        yield running


async def seed(client: GraphQLClient, orders: int) -> None:
    for n in range(orders):
        await client.data('mutation($id: ID) { createOrder(id: $id, input: {customer: "c", '
                          "items: []}) { id } }", {"id": f"o{n + 1}"})


async def test_heavy_readers_do_not_stop_commits_or_the_feed(small: RunningServer) -> None:
    client = GraphQLClient(small.base_url)
    try:
        await seed(client, 50)
        async with Subscriptions.connect(small.ws_url) as subs:
            op = await subs.subscribe('subscription { order(id: "o1") { op version } }')
            assert (await subs.next(op))["op"] == "SNAPSHOT"
            readers = [asyncio.create_task(client.raw(HEAVY)) for _ in range(20)]
            for n in range(20):  # a normal client commits while 400 reads queue for 4 connections
                version = (await client.data(UPDATE, {"n": str(n)}))["updateOrder"]["version"]
                change = await subs.next(op)  # the feed keeps going: its connections are its own
                assert (change["op"], change["version"]) == ("UPDATED", version)
            answers = await asyncio.gather(*readers)
        assert all("errors" not in a for a in answers), [a for a in answers if "errors" in a][:1]
    finally:
        await client.aclose()


async def test_a_thousand_subscriptions_at_once_leave_room_for_commits(small: RunningServer) -> None:
    client = GraphQLClient(small.base_url)
    try:
        await seed(client, 20)
        async with contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(Subscriptions.connect(small.ws_url))
                       for _ in range(5)]
            ops = [(subs, await subs.subscribe('subscription { orders(where: {customer: {eq: "c"}}) '
                                               "{ op version } }"))
                   for subs in sockets for _ in range(200)]
            # While a thousand snapshots queue for their two places, commits go through.
            versions = [(await client.data(UPDATE, {"n": f"busy {n}"}))["updateOrder"]["version"]
                        for n in range(10)]
            assert versions == list(range(versions[0], versions[0] + 10))
            for subs, op in ops:
                assert (await subs.next(op, timeout=60))["op"] == "SNAPSHOT"
            last = (await client.data(UPDATE, {"n": "after"}))["updateOrder"]["version"]
            for subs, op in ops:  # every one of them is live, and got every change after its snapshot
                while (change := await subs.next(op))["version"] != last:
                    assert change["op"] == "UPDATED"
    finally:
        await client.aclose()


async def test_a_background_task_that_fails_is_restarted(server: RunningServer, client: GraphQLClient,
                                                         database_url: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    supervisor = server.server.config.app.state.supervisor  # type: ignore[union-attr]
    admin = await asyncpg.connect(database_url)
    try:
        async with Subscriptions.connect(server.ws_url) as subs:
            op = await subs.subscribe('subscription { products { op id } }')
            assert (await subs.next(op))["op"] == "SNAPSHOT"
            with caplog.at_level(logging.ERROR, logger="statesync.supervision"):
                # Not a lost connection (which the tasks handle themselves): a fault they
                # cannot, the feed's table gone. The listener fails on its next poll.
                await admin.execute("ALTER TABLE statesync_feed_head RENAME TO feed_head_away")
                await eventually(lambda: _restarted(supervisor, "feed-listener"), WAIT,
                                 "the feed listener to fail and be restarted")
                await admin.execute("ALTER TABLE feed_head_away RENAME TO statesync_feed_head")
            assert any("feed-listener failed; restarting" in r.getMessage() for r in caplog.records)
            assert (await client.http.get("/healthz")).json()["restarts"]["feed-listener"] >= 1
            await client.data('mutation { createProduct(id: "p1", input: {sku: "p1", name: "P", '
                              "priceCents: 1}) { id } }")
            assert (await subs.next(op)) == {"op": "CREATED", "id": "p1"}
    finally:
        with contextlib.suppress(asyncpg.PostgresError):
            await admin.execute("ALTER TABLE feed_head_away RENAME TO statesync_feed_head")
        await admin.close()


async def _restarted(supervisor: object, name: str) -> bool:
    return bool(supervisor.tasks[name].restarts)  # type: ignore[attr-defined]
