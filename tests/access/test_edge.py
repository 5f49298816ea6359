"""The hardened edge: hosts, origins, per-identity limits, and a server that will not start
without credentials."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from statesync.config import Settings, environment
from statesync.models import ModelSpec
from tests.access.conftest import ADMIN_SECRET, Tokens
from tests.conftest import ROOT, RunningServer, serve
from tests.support import WAIT, Subscriptions

PROTOCOL = [Subprotocol("graphql-transport-ws")]
STORM_WAIT = 60  # 400 snapshots of 200 documents, one at a time, on a loaded CI machine


async def test_hosts_outside_the_allow_list_are_refused(api: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=WAIT) as http:
        ok = await http.post("/graphql", json={"query": "{ __typename }"})
        assert ok.status_code == 200
        rebound = await http.post("/graphql", json={"query": "{ __typename }"},
                                  headers={"host": "evil.example:8000"})
        assert rebound.status_code == 400
        assert rebound.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    # a websocket upgrade carrying the rebinding page's Host
    reader, writer = await asyncio.open_connection(*api.base_url.removeprefix("http://").split(":"))
    writer.write(b"GET /graphql HTTP/1.1\r\nHost: evil.example\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), WAIT)
    writer.close()
    assert status.startswith(b"HTTP/1.1 403"), status


async def test_websockets_from_other_origins_are_refused(settings: Settings,
                                                         access_models: list[ModelSpec]) -> None:
    allowed = settings.model_copy(update={"cors_origins": "https://app.example"})
    async with serve(allowed, access_models) as api:
        for origin, opens in (("https://app.example", True), ("https://evil.example", False),
                              (api.base_url, True)):
            try:
                async with websockets.connect(api.ws_url, subprotocols=PROTOCOL, origin=origin):  # type: ignore[arg-type]
                    opened = True
            except websockets.InvalidStatus as refused:
                assert refused.response.status_code == 403
                opened = False
            assert opened is opens, origin
        async with httpx.AsyncClient(base_url=api.base_url, timeout=WAIT) as http:
            preflight = await http.options("/graphql", headers={
                "origin": "https://app.example", "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type"})
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == "https://app.example"
            other = await http.options("/graphql", headers={
                "origin": "https://evil.example", "access-control-request-method": "POST"})
            assert "access-control-allow-origin" not in other.headers


async def test_per_identity_limits(secured: Settings, access_models: list[ModelSpec],
                                   token: Tokens) -> None:
    tight = secured.model_copy(update={"max_websockets_per_identity": 2,
                                       "max_subscriptions_per_identity": 3})
    async with serve(tight, access_models) as api:
        ada = {"headers": {"authorization": f"Bearer {token('ada', 'author')}"}}
        async with contextlib.AsyncExitStack() as stack:
            first = await stack.enter_async_context(Subscriptions.connect(api.ws_url, ada))
            second = await stack.enter_async_context(Subscriptions.connect(api.ws_url, ada))
            async with websockets.connect(api.ws_url, subprotocols=PROTOCOL) as third:
                await third.send('{"type": "connection_init", "payload": '
                                 + __import__("json").dumps(ada) + "}")
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(third.recv(), WAIT)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            # another identity is not counted with ada
            async with Subscriptions.connect(api.ws_url, {"headers": {
                    "authorization": f"Bearer {token('bob', 'author')}"}}):
                pass
            ops = [await sock.subscribe("subscription { notes { op } }")
                   for sock in (first, second, first)]
            for sock, op in zip((first, second, first), ops, strict=True):
                assert (await sock.next(op))["op"] == "SNAPSHOT"
            over = await second.subscribe("subscription { notes { op } }")
            message = await second.message(over)
            assert message["type"] == "error"
            assert message["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
            await first.complete(ops[0])  # one fewer: room again, once the server has let go
            again = await second.subscribe("subscription { notes { op } }")
            retried = await second.message(again)
            while retried["type"] == "error":  # the complete may not have landed yet
                again = await second.subscribe("subscription { notes { op } }")
                retried = await second.message(again)
            assert retried["type"] == "next"


def test_serve_refuses_to_start_without_credentials(settings: Settings) -> None:
    bare = settings.model_copy(update={"open_access": False})
    env = {k: v for k, v in environment(bare, os.environ).items()
           if k not in ("STATESYNC_ADMIN_SECRET", "STATESYNC_JWT_SECRET", "STATESYNC_JWT_JWKS_URL")}
    done = subprocess.run([sys.executable, "-m", "statesync", "serve"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "needs credentials" in done.stderr


async def test_one_identitys_snapshot_storm_does_not_queue_another_behind_it(
        secured: Settings, access_models: list[ModelSpec], token: Tokens) -> None:
    # One snapshot at a time in the process: who gets the place next is what is tested.
    tight = secured.model_copy(update={"max_concurrent_snapshots": 1})
    async with serve(tight, access_models) as api, contextlib.AsyncExitStack() as stack:
        ada = f"Bearer {token('ada', 'author')}"
        async with httpx.AsyncClient(base_url=api.base_url, timeout=WAIT,
                                     headers={"x-statesync-admin-secret": ADMIN_SECRET}) as http:
            for n in range(200):  # ada's notes, written by the admin (whose rate is not limited)
                created = await http.post("/graphql", json={"query": 'mutation($id: ID) { createNote('
                                                       'id: $id, input: {owner: "ada", text: "x"}) '
                                                       "{ id } }", "variables": {"id": f"n{n}"}})
                assert "errors" not in created.json(), created.json()
        storm = [await stack.enter_async_context(
                     Subscriptions.connect(api.ws_url, {"headers": {"authorization": ada}}))
                 for _ in range(20)]
        bob = await stack.enter_async_context(Subscriptions.connect(
            api.ws_url, {"headers": {"authorization": f"Bearer {token('bob', 'author')}"}}))
        ops = [(socket, await socket.subscribe("subscription { notes { op documents { id } } }"))
               for _ in range(20) for socket in storm]

        def storm_snapshots() -> int:
            return sum(socket.pending(op) > 0 for socket, op in ops)

        # Each of ada's sockets has a snapshot queued for the one place: first come first
        # served, bob's would wait for all twenty; in turn, for about one.
        before = storm_snapshots()
        assert before < len(ops) - 40, "the storm was nearly over before bob asked: nothing tested"
        mine = await bob.subscribe("subscription { notes { op documents { id } } }")
        snapshot = await bob.next(mine, timeout=STORM_WAIT)
        assert (snapshot["op"], snapshot["documents"]) == ("SNAPSHOT", [])  # none of ada's notes
        ahead = storm_snapshots() - before
        assert ahead <= 5, f"{ahead} of ada's snapshots went before bob's"
        for socket, op in ops:  # and the storm is served in full after all
            assert (await socket.next(op, timeout=STORM_WAIT))["op"] == "SNAPSHOT"


async def test_dev_tokens_only_where_enabled(api: RunningServer, settings: Settings,
                                             access_models: list[ModelSpec]) -> None:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=WAIT) as http:
        assert (await http.post("/dev/token", json={"user": "ann"})).status_code in (404, 405)
    dev = settings.model_copy(update={"dev_tokens": True, "jwt_secret": "x" * 40, "open_access": False})
    async with serve(dev, access_models) as devapi, httpx.AsyncClient(
            base_url=devapi.base_url, timeout=WAIT) as http:
        minted = (await http.post("/dev/token", json={"user": "ann", "role": "customer"})).json()
        me = await http.post("/graphql", json={"query": "{ orders { nodes { id } } }"},
                             headers={"authorization": f"Bearer {minted['token']}"})
        assert me.json() == {"data": {"orders": {"nodes": []}}}
        assert (await http.post("/dev/token", json={"nope": 1})).status_code == 400
