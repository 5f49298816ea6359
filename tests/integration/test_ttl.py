"""TTL: an expired document disappears from reads at once; the sweep (the Celery task, and the
function) turns it into an EXPIRED change that subscribers and handlers receive. Real
PostgreSQL, Redis and Celery worker; waits poll for the expected state with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import sqlalchemy as sa

from statesync.config import Settings, psycopg_url
from statesync.eventing.celery_app import create_celery
from statesync.eventing.sweep import sweep_expired
from statesync.eventing.tasks import SWEEP
from statesync.models import ModelSpec
from statesync.store.commits import model_table
from tests.conftest import ROOT, CeleryWorker, serve
from tests.support import GraphQLClient, Subscriptions, eventually

HANDLERS = ROOT / "tests" / "handlers"

ORDER = "id version customer status expiresAt"
WATCH_ONE = f"""subscription($id: ID!) {{ order(id: $id) {{
  op cursor id version document {{ {ORDER} }} }} }}"""
WATCH_MANY = f"""subscription($where: OrderWhere) {{ orders(where: $where) {{
  op cursor id version document {{ {ORDER} }} documents {{ {ORDER} }} }} }}"""
EXPIRE_AT = """mutation($id: ID!, $at: DateTime!) {
  updateOrder(id: $id, patch: {expiresAt: $at}) { version } }"""
CREATE = """mutation($id: ID!, $customer: String!, $expiresAt: DateTime) {
  createOrder(id: $id, input: {customer: $customer, items: [], expiresAt: $expiresAt}) {
    version document { expiresAt } } }"""
ONE = f"query($id: ID!) {{ order(id: $id) {{ {ORDER} }} }}"
MANY = f"query($where: OrderWhere) {{ orders(where: $where) {{ nodes {{ {ORDER} }} }} }}"
TINA = {"customer": {"eq": "tina"}}


async def test_expired_documents_vanish_at_once_and_the_sweep_tells_subscribers_and_handlers(
        settings: Settings, demo_models: list[ModelSpec],
        start_worker: Callable[..., Awaitable[CeleryWorker]]) -> None:
    ttl_settings = settings.model_copy(update={"workers_path": HANDLERS / "expiry.py",
                                               "handler_timeout": 3.0})
    db = await asyncpg.connect(settings.database_url)
    async with serve(ttl_settings, demo_models, with_relay=True) as server:
        await start_worker(ttl_settings)
        client = GraphQLClient(server.base_url)
        soon = datetime.now(UTC) + timedelta(seconds=1.5)
        past = datetime.now(UTC) - timedelta(seconds=1)
        created = (await client.data(CREATE, {"id": "t1", "customer": "tina",
                                              "expiresAt": soon.isoformat()}))["createOrder"]
        assert datetime.fromisoformat(created["document"]["expiresAt"]) == soon
        await client.data(CREATE, {"id": "t2", "customer": "tina"})  # the model's 7-day ttl
        # Expired by an update: unreadable from that commit on, before any sweep.
        await client.data(CREATE, {"id": "t3", "customer": "otto"})
        await client.data(EXPIRE_AT, {"id": "t3", "at": past.isoformat()})
        assert (await client.data(ONE, {"id": "t3"}))["order"] is None

        async with Subscriptions.connect(server.ws_url) as subs:
            one = await subs.subscribe(WATCH_ONE, {"id": "t1"})
            many = await subs.subscribe(WATCH_MANY, {"where": TINA})
            snapshot = await subs.next(one)
            assert (snapshot["op"], snapshot["document"]["id"]) == ("SNAPSHOT", "t1")
            snapshot = await subs.next(many)
            assert snapshot["op"] == "SNAPSHOT"
            assert sorted(d["id"] for d in snapshot["documents"]) == ["t1", "t2"]

            # Once its time has passed, t1 is gone from every read, before any sweep ran.
            async def t1_gone() -> bool:
                return (await client.data(ONE, {"id": "t1"}))["order"] is None

            await eventually(t1_gone, what="t1 to expire")
            nodes = (await client.data(MANY, {"where": TINA}))["orders"]["nodes"]
            assert [n["id"] for n in nodes] == ["t2"]
            assert await db.fetchval("SELECT count(*) FROM statesync_documents WHERE deleted") == 0
            assert await db.fetchval("SELECT count(*) FROM statesync_changes WHERE op = 'EXPIRED'") == 0
            assert (subs.pending(one), subs.pending(many)) == (0, 0)

            # The sweep, as Celery beat runs it: a task for a running worker.
            celery = create_celery(ttl_settings)
            try:
                await asyncio.to_thread(celery.send_task, SWEEP)
            finally:
                celery.close()
            expired = await subs.next(one)
            assert (expired["op"], expired["id"], expired["version"], expired["document"]) == (
                "EXPIRED", "t1", 2, None)
            removed = await subs.next(many)
            assert (removed["op"], removed["id"], removed["version"]) == ("EXPIRED", "t1", 2)
            assert removed["cursor"] == expired["cursor"]

        async def handled() -> Any:
            return await db.fetchrow(
                "SELECT o.type, o.key, d.status FROM statesync_deliveries d "
                "JOIN statesync_outbox o ON o.id = d.event_id "
                "WHERE d.handler = 'on_expired' AND d.status = 'succeeded' AND o.key = 't1'")

        await eventually(handled, what="the Order.expired delivery to succeed")
        # The handler saw the expired document's last state.
        effect = (await client.data(
            'query { product(id: "expired-t1") { name } }'))["product"]
        assert effect == {"name": "tina v2"}
        await client.aclose()

    expired_ops = await db.fetch("SELECT doc_id, version FROM statesync_changes WHERE op = 'EXPIRED' "
                                 "ORDER BY doc_id")
    # t3: created (v1), expiresAt moved into the past (v2), expired by the sweep (v3).
    assert [(r["doc_id"], r["version"]) for r in expired_ops] == [("t1", 2), ("t3", 3)]
    events = await db.fetch("SELECT key FROM statesync_outbox WHERE type = 'Order.expired' ORDER BY key")
    assert [r["key"] for r in events] == ["t1", "t3"]
    assert await db.fetchval("SELECT count(*) FROM statesync_deliveries d JOIN statesync_outbox o "
                             "ON o.id = d.event_id WHERE o.type = 'Order.expired'") == 2
    assert await db.fetchval("SELECT count(*) FROM statesync_documents "
                             "WHERE model = 'Order' AND NOT deleted") == 1  # t2
    await db.close()

    # The sweep as a function: nothing is left to expire, so a second sweep changes nothing.
    engine = sa.create_engine(psycopg_url(settings.database_url or ""))
    try:
        assert sweep_expired(engine, model_table(demo_models), settings.max_document_bytes) == 0
    finally:
        engine.dispose()


async def test_the_sweep_function_expires_only_what_is_due(
        settings: Settings, demo_models: list[ModelSpec]) -> None:
    async with serve(settings, demo_models) as server:
        client = GraphQLClient(server.base_url)
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        await client.data(CREATE, {"id": "gone", "customer": "x"})
        await client.data(EXPIRE_AT, {"id": "gone", "at": past})
        await client.data(CREATE, {"id": "stays", "customer": "x", "expiresAt": future})
        await client.data(CREATE, {"id": "forever", "customer": "x", "expiresAt": None})
        engine = sa.create_engine(psycopg_url(settings.database_url or ""))
        try:
            models = model_table(demo_models)
            assert await asyncio.to_thread(sweep_expired, engine, models,
                                           settings.max_document_bytes) == 1
            assert await asyncio.to_thread(sweep_expired, engine, models,
                                           settings.max_document_bytes) == 0
        finally:
            engine.dispose()
        nodes = (await client.data(MANY, {"where": {"customer": {"eq": "x"}}}))["orders"]["nodes"]
        assert sorted(n["id"] for n in nodes) == ["forever", "stays"]
        await client.aclose()
