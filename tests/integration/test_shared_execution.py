"""Subscribers asking the same thing share one execution per change; their answers differ
exactly where their selections do."""

from __future__ import annotations

from statesync.api.shared_execution import shared_results
from tests.conftest import RunningServer
from tests.support import GraphQLClient, Subscriptions

WATCH = """subscription($where: ProductWhere, $withName: Boolean!) {
  products(where: $where) { op cursor document { id priceCents name @include(if: $withName) } } }"""
CREATE = 'mutation { createProduct(id: "p1", input: {sku: "p1", name: "Tea", priceCents: 450}) { version } }'


async def test_one_execution_per_change_and_rendering(server: RunningServer, client: GraphQLClient) -> None:
    everything = {"where": None, "withName": True}
    by_sku = {"where": {"sku": {"eq": "p1"}}, "withName": True}  # another stream, same rendering
    priced_only = {"where": None, "withName": False}
    async with Subscriptions.connect(server.ws_url) as subs:
        ops = [await subs.subscribe(WATCH, variables) for variables in (everything, by_sku, priced_only)]
        for op_id in ops:
            assert (await subs.next(op_id))["op"] == "SNAPSHOT"
        await client.data(CREATE)
        received = [await subs.next(op_id) for op_id in ops]

    cursor = received[0]["cursor"]
    with_name = {"op": "CREATED", "cursor": cursor,
                 "document": {"id": "p1", "priceCents": 450, "name": "Tea"}}
    assert received == [with_name, with_name, {"op": "CREATED", "cursor": cursor,
                                               "document": {"id": "p1", "priceCents": 450}}]
    # Two renderings of the change were executed: `where` chose the streams, not the message.
    assert len(shared_results(server.runtime).keys_at(int(cursor))) == 2
