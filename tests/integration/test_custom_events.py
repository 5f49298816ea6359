"""A backend service's custom event reaches its handler like a change event does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import CeleryWorker, serve
from tests.support import GraphQLClient, Subscriptions

AUDIT = Path(__file__).resolve().parents[1] / "handlers" / "audit.py"
EMIT = """mutation { emitEvent(type: "Shop.audit", key: "k1", payload: {who: "ann"},
  mutationId: "audit-k1") { eventId replayed } }"""
WATCH = 'subscription { product(id: "audit-k1") { op version document { name tags } } }'


async def test_a_custom_event_runs_its_handler_whose_event_runs_the_next(
        settings: Settings, demo_models: list[ModelSpec],
        start_worker: Callable[..., Awaitable[CeleryWorker]]) -> None:
    audit = settings.model_copy(update={"workers_path": AUDIT})
    async with serve(audit, demo_models, with_relay=True) as server:
        await start_worker(audit)
        client = GraphQLClient(server.base_url)
        async with Subscriptions.connect(server.ws_url) as subs:
            op = await subs.subscribe(WATCH)
            assert (await subs.next(op))["document"] is None  # nothing yet
            emitted = (await client.data(EMIT))["emitEvent"]
            assert (await client.data(EMIT))["emitEvent"] == {**emitted, "replayed": True}
            created = await subs.next(op)
            assert created["op"] == "CREATED"
            assert created["document"] == {"name": "audited by ann", "tags": []}
            tagged = await subs.next(op)
            assert (tagged["op"], tagged["version"]) == ("UPDATED", 2)
            assert tagged["document"]["tags"] == ["seen", emitted["eventId"]]
        chain = await client.data('{ events(key: "k1") { type causedBy } }')
        assert [e["type"] for e in chain["events"]] == ["Shop.audited", "Shop.audit"]
        assert chain["events"][0]["causedBy"] == emitted["eventId"]
        await client.aclose()
