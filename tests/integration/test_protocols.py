"""The legacy graphql-ws protocol (subscriptions-transport-ws) works too."""

from __future__ import annotations

import asyncio

import orjson
import websockets

from tests.conftest import RunningServer
from tests.support import WAIT, GraphQLClient

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
