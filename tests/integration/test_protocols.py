"""Protocol edges: the legacy graphql-ws protocol works too; bad subscriptions get clear answers."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import websockets
from websockets.typing import Subprotocol

from tests.conftest import RunningServer
from tests.support import WAIT, GraphQLClient, Subscriptions

WATCH = 'subscription { product(id: "p1") { op version document { priceCents } } }'


async def test_legacy_graphql_ws_protocol(server: RunningServer, client: GraphQLClient) -> None:
    await client.data('mutation { createProduct(id: "p1", input: {sku: "a", name: "A", priceCents: 1}) '
                      "{ version } }")
    async with websockets.connect(server.ws_url, subprotocols=["graphql-ws"],  # type: ignore[list-item]
                                  compression=None) as ws:
        assert ws.subprotocol == "graphql-ws"
        await ws.send(orjson.dumps({"type": "connection_init", "payload": {}}).decode())

        async def receive() -> dict[str, object]:
            while True:
                message = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
                if message["type"] != "ka":  # keep-alives interleave freely
                    return dict(message)

        assert (await receive())["type"] == "connection_ack"
        await ws.send(orjson.dumps({"id": "1", "type": "start", "payload": {"query": WATCH}}).decode())
        snapshot = await receive()
        assert snapshot["type"] == "data"
        assert snapshot["payload"] == {"data": {"product": {"op": "SNAPSHOT", "version": 1,
                                                            "document": {"priceCents": 1}}}}
        await client.data('mutation { updateProduct(id: "p1", patch: {priceCents: 2}) { version } }')
        update = await receive()
        assert update["payload"] == {"data": {"product": {"op": "UPDATED", "version": 2,
                                                          "document": {"priceCents": 2}}}}
        await ws.send(orjson.dumps({"id": "1", "type": "stop"}).decode())
        assert (await receive()) == {"id": "1", "type": "complete"}


async def test_a_subscription_that_fails_validation_gets_a_coded_error_message(
        server: RunningServer) -> None:
    async with Subscriptions.connect(server.ws_url) as subs:
        op_id = await subs.subscribe("subscription { nope { op } }")
        message = await subs.message(op_id)
    assert message["type"] == "error"
    assert [e["extensions"]["code"] for e in message["payload"]] == ["GRAPHQL_VALIDATION_FAILED"]


async def test_a_subscription_that_does_not_parse_closes_the_socket_with_the_syntax_error(
        server: RunningServer) -> None:
    async with websockets.connect(server.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]
                                  ) as ws:
        await ws.send(orjson.dumps({"type": "connection_init"}).decode())
        assert orjson.loads(await ws.recv()) == {"type": "connection_ack"}
        await ws.send(orjson.dumps({"id": "1", "type": "subscribe",
                                    "payload": {"query": "subscription { products( { op } }"}}).decode())
        with pytest.raises(websockets.ConnectionClosedError) as closed:
            await asyncio.wait_for(ws.recv(), WAIT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400
    assert closed.value.rcvd.reason.startswith("Syntax Error: Expected Name")
