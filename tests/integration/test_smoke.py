"""The whole path once: commit over HTTP, see it on a websocket subscription."""

from __future__ import annotations

from tests.conftest import RunningServer
from tests.support import GraphQLClient, Subscriptions

CREATE = """mutation($input: OrderInput!) { createOrder(input: $input) { id version op } }"""
UPDATE = """mutation($id: ID!) { updateOrder(id: $id, patch: {customer: "bob"}) { version } }"""
WATCH = """subscription($id: ID!) { order(id: $id) { op cursor version document { customer } } }"""


async def test_a_commit_reaches_a_subscriber(server: RunningServer, client: GraphQLClient) -> None:
    created = (await client.data(CREATE, {"input": {"customer": "ann", "items": []}}))["createOrder"]
    async with Subscriptions.connect(server.ws_url) as subs:
        op = await subs.subscribe(WATCH, {"id": created["id"]})
        snapshot = await subs.next(op)
        assert snapshot["op"] == "SNAPSHOT" and snapshot["version"] == 1
        await client.data(UPDATE, {"id": created["id"]})
        change = await subs.next(op)
        assert change["op"] == "UPDATED"
        assert change["version"] == 2 and change["document"] == {"customer": "bob"}
        assert int(change["cursor"]) > int(snapshot["cursor"])
