"""The 3factor loop once: a mutation's event reaches a real Celery worker, whose result
reaches the subscriber through the same commit path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.conftest import CeleryWorker, RunningServer
from tests.support import GraphQLClient, Subscriptions

WATCH = """subscription { order(id: "o1") { op version changedFields
  document { status totalCents rejectReason } } }"""


async def test_an_order_is_priced_by_the_worker(
        eventing_server: RunningServer, start_worker: Callable[..., Awaitable[CeleryWorker]]) -> None:
    client = GraphQLClient(eventing_server.base_url)
    await start_worker(eventing_server.settings)
    await client.data('mutation { createProduct(id: "tea", input: {sku: "tea", name: "Tea", '
                      "priceCents: 450}) { version } }")
    async with Subscriptions.connect(eventing_server.ws_url) as subs:
        op = await subs.subscribe(WATCH)
        assert (await subs.next(op))["op"] == "SNAPSHOT"
        await client.data('mutation { createOrder(id: "o1", input: {customer: "ann", '
                          'items: [{sku: "tea", qty: 2}]}) { version } }')
        created = await subs.next(op)
        assert (created["op"], created["version"]) == ("CREATED", 1)
        priced = await subs.next(op)
        assert (priced["op"], priced["version"]) == ("UPDATED", 2)
        assert priced["document"] == {"status": "PRICED", "totalCents": 900, "rejectReason": None}
        assert set(priced["changedFields"]) == {"status", "totalCents"}
    await client.aclose()
