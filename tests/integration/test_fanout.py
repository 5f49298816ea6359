"""Fan-out: several API processes deliver the same feed; a slow subscriber is cut off with
RESYNC without slowing the others."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import ROOT, RunningServer, serve
from tests.support import WAIT, GraphQLClient, Subscriptions

ORDER = "id version customer note"
WATCH_ONE = f"""subscription($id: ID!, $since: String) {{ order(id: $id, since: $since) {{
  op cursor id version document {{ {ORDER} }} }} }}"""
WATCH_MANY = f"""subscription($where: OrderWhere) {{ orders(where: $where) {{
  op cursor id version document {{ {ORDER} }} documents {{ {ORDER} }} }} }}"""
CREATE = "mutation($input: OrderInput!, $id: ID) { createOrder(input: $input, id: $id) { id version } }"
UPDATE = "mutation($id: ID!, $patch: OrderPatch!) { updateOrder(id: $id, patch: $patch) { id version } }"
STARTUP_DEADLINE = 30.0


async def create(client: GraphQLClient, id: str) -> dict[str, Any]:
    result: dict[str, Any] = (await client.data(
        CREATE, {"input": {"customer": "ann", "items": []}, "id": id}))["createOrder"]
    return result


async def update(client: GraphQLClient, id: str, **patch: Any) -> dict[str, Any]:
    result: dict[str, Any] = (await client.data(UPDATE, {"id": id, "patch": patch}))["updateOrder"]
    return result


@contextlib.asynccontextmanager
async def graphql(base_url: str) -> AsyncIterator[GraphQLClient]:
    client = GraphQLClient(base_url)
    try:
        yield client
    finally:
        await client.aclose()


async def health(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=WAIT) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def both_receive(nodes: list[tuple[Subscriptions, str, str]], doc_id: str,
                       version: int, note: str) -> list[str]:
    """Every (connection, one-doc op, collection op) gets the change next; returns cursors."""
    cursors = []
    for subs, one, many in nodes:
        for op in (one, many):
            message = await subs.next(op)
            assert (message["op"], message["id"], message["version"]) == ("UPDATED", doc_id, version)
            assert message["document"]["note"] == note
            cursors.append(message["cursor"])
    assert len(set(cursors)) == 1, cursors  # one feed: the same cursor everywhere
    return cursors


async def watch(ws_url: str, stack: contextlib.AsyncExitStack, doc_id: str
                ) -> tuple[Subscriptions, str, str]:
    subs = await stack.enter_async_context(Subscriptions.connect(ws_url))
    one = await subs.subscribe(WATCH_ONE, {"id": doc_id})
    many = await subs.subscribe(WATCH_MANY, {"where": {"customer": {"eq": "ann"}}})
    assert (await subs.next(one))["op"] == "SNAPSHOT"
    assert (await subs.next(many))["op"] == "SNAPSHOT"
    return subs, one, many


async def fan_out_through_both(a: tuple[str, str], b: tuple[str, str]) -> list[bool]:
    """``a`` and ``b`` are (base_url, ws_url) of two API processes on one database and Redis.
    Returns which of them is the active sequencer."""
    async with graphql(a[0]) as client_a, graphql(b[0]) as client_b, \
               contextlib.AsyncExitStack() as stack:
        await create(client_a, "shared")
        nodes = [await watch(a[1], stack, "shared"), await watch(b[1], stack, "shared")]
        await update(client_a, "shared", note="through a")
        first = await both_receive(nodes, "shared", 2, "through a")
        await update(client_b, "shared", note="through b")
        second = await both_receive(nodes, "shared", 3, "through b")
        assert int(second[0]) > int(first[0])
        for subs, one, many in nodes:
            assert subs.pending(one) == subs.pending(many) == 0
        # A change is sequenced only by an active sequencer, and the lock admits one.
        flags = [(await health(url))["sequencer"] for url in (a[0], b[0])]
        assert sorted(flags) == [False, True], flags
        return flags


# ---- 6. two API processes ----------------------------------------------------------------------


async def test_two_in_process_servers_fan_out_the_same_change(
        server: RunningServer, demo_models: list[ModelSpec]) -> None:
    async with serve(server.settings, demo_models) as second:
        await fan_out_through_both((server.base_url, server.ws_url),
                                   (second.base_url, second.ws_url))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _wait_healthy(base_url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    """Poll /healthz until 200, failing fast if the process dies (a deadline, not a sleep)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as http, \
               asyncio.timeout(STARTUP_DEADLINE):
        while True:
            if process.returncode is not None:
                output = await asyncio.to_thread(log.read_text)
                raise AssertionError(f"statesync serve exited ({process.returncode}):\n{output}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    return
            with contextlib.suppress(TimeoutError):  # the poll interval, or the process exit
                await asyncio.wait_for(process.wait(), 0.1)


async def test_two_statesync_serve_processes_fan_out_the_same_change(
        settings: Settings, tmp_path: Path) -> None:
    processes: list[asyncio.subprocess.Process] = []
    urls: list[tuple[str, str]] = []
    logs: list[Path] = []
    try:
        for n in range(2):
            port = _free_port()
            env = {**os.environ,
                   "STATESYNC_DATABASE_URL": settings.database_url or "",
                   "STATESYNC_REDIS_URL": settings.redis_url or "",
                   "STATESYNC_PORT": str(port),
                   "STATESYNC_HOST": "127.0.0.1",
                   "STATESYNC_CHANNEL_PREFIX": settings.channel_prefix,
                   "STATESYNC_SCHEMA_PATH": str(ROOT / "schema"),
                   "STATESYNC_FEED_POLL_INTERVAL": "0.2",
                   "STATESYNC_LOG_LEVEL": "WARNING", "STATESYNC_OPEN_ACCESS": "true"}
            log = tmp_path / f"serve-{n}.log"
            with log.open("wb") as out:
                processes.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "statesync", "serve", env=env, cwd=tmp_path,
                    stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT))
            urls.append((f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/graphql"))
            logs.append(log)
        for (base_url, _), process, log in zip(urls, processes, logs, strict=True):
            await _wait_healthy(base_url, process, log)
        flags = await fan_out_through_both(urls[0], urls[1])

        # The active sequencer's process dies: the standby takes the role over, and what is
        # committed through it still reaches its subscribers.
        active = flags.index(True)
        survivor = urls[1 - active]
        async with graphql(survivor[0]) as client, Subscriptions.connect(survivor[1]) as subs:
            op = await subs.subscribe(WATCH_ONE, {"id": "shared"})
            assert (await subs.next(op))["version"] == 3
            processes[active].kill()
            await processes[active].wait()
            await update(client, "shared", note="after failover")
            message = await subs.next(op)
            assert (message["op"], message["version"]) == ("UPDATED", 4)
            assert message["document"]["note"] == "after failover"
            assert (await health(survivor[0]))["sequencer"] is True
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


# ---- 7. a slow subscriber overflows; the others do not notice ---------------------------------


@contextlib.asynccontextmanager
async def unread_websocket(ws_url: str) -> AsyncIterator[websockets.ClientConnection]:
    """A graphql-transport-ws connection with tiny receive buffers, so a client that stops
    reading pushes back on the server quickly."""
    host, port = ws_url.removeprefix("ws://").split("/")[0].split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: sets the window
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    except BaseException:
        sock.close()
        raise
    async with websockets.connect(ws_url, sock=sock, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                                  compression=None, max_size=None, max_queue=1) as ws:
        await ws.send(orjson.dumps({"type": "connection_init"}).decode())
        assert orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] == "connection_ack"
        yield ws


async def test_slow_subscriber_gets_resync_and_healthy_one_gets_everything(
        settings: Settings, demo_models: list[ModelSpec]) -> None:
    queue_size = 5
    small = settings.model_copy(update={"subscriber_queue_size": queue_size})
    max_changes = 200
    # Large changes, so a few MB pile up quickly in the socket buffers between server and
    # client (the server's send buffer autotunes up to tcp_wmem's maximum, 4 MB by default).
    padding = "x" * 150_000
    async with serve(small, demo_models) as server, graphql(server.base_url) as client:
        await create(client, "hot")
        async with unread_websocket(server.ws_url) as slow, \
                   Subscriptions.connect(server.ws_url) as healthy:
            await slow.send(orjson.dumps({"id": "slow", "type": "subscribe", "payload": {
                "query": WATCH_ONE, "variables": {"id": "hot"}}}).decode())
            snapshot = orjson.loads(await asyncio.wait_for(slow.recv(), WAIT))
            assert snapshot["payload"]["data"]["order"]["op"] == "SNAPSHOT"
            op = await healthy.subscribe(WATCH_ONE, {"id": "hot"})
            assert (await healthy.next(op))["op"] == "SNAPSHOT"
            hub = server.runtime.hub
            assert hub.subscriber_count == 2
            mailboxes = list(hub._by_document[("Order", "hot")])  # the two subscriptions' queues

            # The slow client reads nothing while changes are committed, until its mailbox
            # overflows (the hub offered it every change the healthy one got), then a few more.
            changes, after_overflow = 0, 3
            while after_overflow:
                assert changes < max_changes, "the slow subscriber never fell behind"
                await update(client, "hot", note=f"{changes}:{padding}")
                message = await healthy.next(op)  # the healthy one keeps up, change by change
                assert (message["op"], message["version"]) == ("UPDATED", changes + 2)
                assert message["document"]["note"].startswith(f"{changes}:")
                changes += 1
                overflowed = [m.overflowed for m in mailboxes]
                assert overflowed.count(True) <= 1
                after_overflow -= any(overflowed)

            # Now the slow client reads: what it was sent before falling behind, then RESYNC
            # carrying the cursor of the last change it got, then the end of the subscription.
            received: list[dict[str, Any]] = []
            while not received or received[-1]["type"] != "complete":
                raw = orjson.loads(await asyncio.wait_for(slow.recv(), WAIT))
                if raw["type"] == "ping":
                    await slow.send(orjson.dumps({"type": "pong"}).decode())
                    continue
                assert raw["id"] == "slow", raw
                received.append(raw)
            data = [m["payload"]["data"]["order"] for m in received[:-1]]
            assert all(m["type"] == "next" and "errors" not in m["payload"] for m in received[:-1])
            assert data and data[-1]["op"] == "RESYNC", [d["op"] for d in data]
            updates = data[:-1]
            assert all(d["op"] == "UPDATED" for d in updates)
            assert [d["version"] for d in updates] == list(range(2, 2 + len(updates)))
            assert len(updates) < changes - queue_size
            last_cursor = updates[-1]["cursor"] if updates else \
                snapshot["payload"]["data"]["order"]["cursor"]
            assert data[-1]["cursor"] == last_cursor
            assert server.runtime.hub.subscriber_count == 1  # the overflowed one is gone

            # Resuming from the RESYNC cursor gives exactly the rest.
            resumed = await healthy.subscribe(WATCH_ONE, {"id": "hot", "since": data[-1]["cursor"]})
            rest = [await healthy.next(resumed) for _ in range(changes - len(updates))]
            assert [m["version"] for m in rest] == list(range(2 + len(updates), 2 + changes))
            marker = await update(client, "hot", note="marker")
            for subscription in (op, resumed):
                assert (await healthy.next(subscription))["version"] == marker["version"]


async def test_a_slow_client_replaying_since_does_not_stall_the_server(
        settings: Settings, demo_models: list[ModelSpec]) -> None:
    # One database connection is the sequencer's for good; the API has one more to share.
    tight = settings.model_copy(update={"db_pool_size": 2, "max_document_bytes": 2_000_000,
                                        "max_request_bytes": 2_500_000})
    big, updates = "y" * 900_000, 9  # ~8 MB of replay: more than the socket buffers hold
    async with serve(tight, demo_models) as server, graphql(server.base_url) as client:
        await create(client, "big")
        for i in range(updates):
            await update(client, "big", note=f"{i}:{big}")
        async with unread_websocket(server.ws_url) as slow, \
                   Subscriptions.connect(server.ws_url) as healthy:
            await slow.send(orjson.dumps({"id": "slow", "type": "subscribe", "payload": {
                "query": WATCH_ONE, "variables": {"id": "big", "since": "0"}}}).decode())
            first = orjson.loads(await asyncio.wait_for(slow.recv(), WAIT))
            assert first["payload"]["data"]["order"]["version"] == 1  # the replay is under way
            # ... and the slow client stops reading. Everyone else carries on.
            op = await healthy.subscribe(WATCH_ONE, {"id": "big"})
            assert (await healthy.next(op))["version"] == 1 + updates
            done = await update(client, "big", note="small")
            assert (await healthy.next(op))["version"] == done["version"] == 2 + updates
            # When the slow client reads again it gets the whole replay, then live, in order.
            versions = [1]
            while versions[-1] < done["version"]:
                message = orjson.loads(await asyncio.wait_for(slow.recv(), WAIT))
                if message["type"] == "ping":
                    await slow.send(orjson.dumps({"type": "pong"}).decode())
                    continue
                assert message["type"] == "next", message
                versions.append(message["payload"]["data"]["order"]["version"])
            assert versions == list(range(1, done["version"] + 1))


async def test_serve_with_two_workers_serves_one_port(settings: Settings, tmp_path: Path) -> None:
    """`statesync serve --workers 2`: two processes on one port, one feed; both stop on SIGTERM."""
    port = _free_port()
    env = {**os.environ, "STATESYNC_DATABASE_URL": settings.database_url or "",
           "STATESYNC_REDIS_URL": settings.redis_url or "", "STATESYNC_HOST": "127.0.0.1",
           "STATESYNC_CHANNEL_PREFIX": settings.channel_prefix,
           "STATESYNC_SCHEMA_PATH": str(ROOT / "schema"), "STATESYNC_FEED_POLL_INTERVAL": "0.2",
           "STATESYNC_LOG_LEVEL": "WARNING", "STATESYNC_OPEN_ACCESS": "true"}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "statesync", "serve", "--workers", "2", "--port", str(port),
            env=env, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL, stdout=out,
            stderr=asyncio.subprocess.STDOUT)
    base, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/graphql"
    try:
        await _wait_healthy(base, process, log)
        async with graphql(base) as client, Subscriptions.connect(ws) as subs:
            await create(client, "w1")
            op = await subs.subscribe(WATCH_ONE, {"id": "w1"})
            assert (await subs.next(op))["version"] == 1
            for n in range(2, 6):  # several requests: whichever worker takes them, one feed
                await update(client, "w1", note=str(n))
                assert (await subs.next(op))["version"] == n
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
    assert process.returncode == 0, log.read_text()
