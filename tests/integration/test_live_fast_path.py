"""Live changes sent straight from the hub's loop (api/ws/live.py): every subscriber still
gets every change once, in cursor order, rendered for its own query and variables, in
its own protocol's frame."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import websockets
from prometheus_client import REGISTRY

from tests.conftest import RunningServer
from tests.integration.test_fanout import create, update
from tests.support import WAIT, GraphQLClient, Subscriptions

# A variable the selection uses (not the root field's): it changes how a frame renders.
WATCH = """subscription($where: OrderWhere, $withNote: Boolean!) {
  orders(where: $where) { op cursor id version
    document { id version note @include(if: $withNote) } } }"""
ANN = {"customer": {"eq": "ann"}}
CHANGES = 25
CREATE_FOR_BOB = 'mutation { createOrder(id: "bob-1", input: {customer: "bob", items: []}) { id } }'


def sent_directly() -> float:
    """Frames the fast path wrote, as /metrics counts them (this process's registry)."""
    return REGISTRY.get_sample_value("statesync_frames_sent_total", {"path": "direct"}) or 0.0


async def next_changes(subs: Subscriptions, op: str, count: int) -> list[dict[str, Any]]:
    return [await subs.next(op) for _ in range(count)]


async def test_every_subscriber_gets_every_change_once_in_order_rendered_its_own_way(
        server: RunningServer, client: GraphQLClient) -> None:
    await create(client, "o1")
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(Subscriptions.connect(server.ws_url))
                   for _ in range(4)]
        # Per socket: two alike (with notes), one without notes, one for another customer.
        ops = []
        for subs in sockets:
            alike = [await subs.subscribe(WATCH, {"where": ANN, "withNote": True}) for _ in range(2)]
            plain = await subs.subscribe(WATCH, {"where": ANN, "withNote": False})
            other = await subs.subscribe(WATCH, {"where": {"customer": {"eq": "bob"}},
                                                 "withNote": True})
            for op in (*alike, plain, other):
                assert (await subs.next(op))["op"] == "SNAPSHOT"
            ops.append((subs, alike, plain, other))
        sent_before = sent_directly()

        for n in range(CHANGES):
            await update(client, "o1", note=f"n{n}")

        cursors: set[tuple[str, ...]] = set()
        for subs, alike, plain, _other in ops:
            for op in alike:
                got = await next_changes(subs, op, CHANGES)
                assert [m["version"] for m in got] == list(range(2, 2 + CHANGES))
                assert [m["document"]["note"] for m in got] == [f"n{n}" for n in range(CHANGES)]
                cursors.add(tuple(m["cursor"] for m in got))
            got = await next_changes(subs, plain, CHANGES)
            assert [m["version"] for m in got] == list(range(2, 2 + CHANGES))
            assert all("note" not in m["document"] for m in got), got[0]
            cursors.add(tuple(m["cursor"] for m in got))
        assert len(cursors) == 1  # one feed: the same cursors, in the same order, everywhere
        (seen,) = cursors
        assert [int(c) for c in seen] == sorted(int(c) for c in seen)

        # Nothing more, and nothing at all for the other customer until its own change:
        # it comes after all of those, so once it is in, any repeat would be too.
        await client.data(CREATE_FOR_BOB)
        for subs, alike, plain, other in ops:
            assert (await subs.next(other))["id"] == "bob-1"
            for op in (*alike, plain, other):
                assert subs.pending(op) == 0
        # Most of those deliveries went the fast way (a busy loop may send some the other).
        assert sent_directly() - sent_before >= CHANGES * len(sockets)


async def test_the_legacy_protocol_gets_its_own_frames_from_the_fast_path(
        server: RunningServer, client: GraphQLClient) -> None:
    await create(client, "o1")
    async with websockets.connect(server.ws_url, subprotocols=["graphql-ws"],  # type: ignore[list-item]
                                  compression=None) as ws, \
               Subscriptions.connect(server.ws_url) as modern:
        await ws.send(orjson.dumps({"type": "connection_init"}).decode())
        assert orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] == "connection_ack"
        variables = {"where": ANN, "withNote": True}
        await ws.send(orjson.dumps({"id": "legacy-1", "type": "start", "payload": {
            "query": WATCH, "variables": variables}}).decode())
        op = await modern.subscribe(WATCH, variables)  # same rendering, other protocol
        assert (await modern.next(op))["op"] == "SNAPSHOT"

        async def legacy_next() -> dict[str, Any]:
            while True:
                frame = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
                if frame["type"] != "ka":
                    return frame

        first = await legacy_next()
        assert (first["id"], first["type"]) == ("legacy-1", "data")
        assert first["payload"]["data"]["orders"]["op"] == "SNAPSHOT"
        for n in range(3):
            await update(client, "o1", note=f"n{n}")
        for n in range(3):
            frame = await legacy_next()
            assert (frame["id"], frame["type"]) == ("legacy-1", "data"), frame
            assert frame["payload"]["data"]["orders"]["document"]["note"] == f"n{n}"
            assert (await modern.next(op))["document"]["note"] == f"n{n}"
