"""Subscriptions over Apollo's multipart HTTP protocol, read byte by byte: the parts, the
heartbeats, the end, and what is answered as plain JSON instead. Apollo Client itself runs
against it in tests/compat/test_node_clients.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from tests.conftest import RunningServer
from tests.support import WAIT, GraphQLClient, eventually

MULTIPART = {"accept": 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'}
ORDER = 'subscription { order(id: "o1") { op version document { note } } }'
CREATE = ('mutation { createOrder(id: "o1", input: {customer: "ann", items: [], note: "a"}) '
          '{ version } }')
DELIMITER = b"\r\n--graphql"


async def parts(response: httpx.Response) -> AsyncIterator[Any]:
    """Each part's JSON body, in order, then ``"END"`` for the closing delimiter; every part
    must say it is JSON."""
    buffer = b""
    async for chunk in response.aiter_bytes():
        buffer += chunk
        if not buffer.startswith(b"--graphql"):
            raise AssertionError(f"a multipart body starts with its boundary: {buffer[:40]!r}")
        while (end := buffer.find(DELIMITER, 1)) != -1:
            part, buffer = buffer[len(b"--graphql"):end], buffer[end + 2:]
            headers, _, body = part.partition(b"\r\n\r\n")
            assert b"content-type: application/json" in headers.lower(), headers
            yield orjson.loads(body)
        if buffer == b"--graphql--\r\n":
            yield "END"
            return


async def test_a_subscription_streams_payload_parts_and_ends_cleanly(server: RunningServer) -> None:
    client = GraphQLClient(server.base_url)
    await client.data(CREATE)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=WAIT) as http, \
            http.stream("POST", "/graphql", json={"query": ORDER}, headers=MULTIPART) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith('multipart/mixed; boundary="graphql"')
        stream = parts(response)
        assert await asyncio.wait_for(anext(stream), WAIT) == {}  # at once: the stream is open
        snapshot = await asyncio.wait_for(anext(stream), WAIT)
        assert snapshot["payload"]["data"]["order"]["op"] == "SNAPSHOT"
        await client.data('mutation { updateOrder(id: "o1", patch: {note: "b"}) { version } }')
        change = await asyncio.wait_for(anext(stream), WAIT)
        assert change == {"payload": {"data": {"order": {
            "op": "UPDATED", "version": 2, "document": {"note": "b"}}}}}
    await eventually(lambda: _is(server.runtime.hub.subscriber_count == 0), what="unsubscribed")
    await client.aclose()


async def _is(value: bool) -> bool:
    return value


async def test_what_cannot_run_is_plain_json_and_queries_are_not_streamed(
        server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=WAIT) as http:
        refused = await http.post("/graphql", headers=MULTIPART,
                                  json={"query": 'subscription { order(id: "o1") { nope } }'})
        query = await http.post("/graphql", headers=MULTIPART,
                                json={"query": '{ order(id: "o1") { note } }'})
        no_spec = await http.post("/graphql", headers={"accept": "multipart/mixed"},
                                  json={"query": ORDER})
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert (query.headers["content-type"], query.json()) == ("application/json",
                                                             {"data": {"order": None}})
    # multipart/mixed without subscriptionSpec is @defer's protocol, which is not served.
    assert no_spec.status_code == 400
    assert no_spec.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_quiet_stream_gets_a_heartbeat_part(server: RunningServer) -> None:
    from statesync.api.multipart import HEARTBEAT

    async with httpx.AsyncClient(base_url=server.base_url, timeout=WAIT) as http, \
            http.stream("POST", "/graphql", json={"query": ORDER}, headers=MULTIPART) as response:
        stream = parts(response)
        opened, snapshot = [await asyncio.wait_for(anext(stream), WAIT) for _ in range(2)]
        assert (opened, snapshot["payload"]["data"]["order"]["op"]) == ({}, "SNAPSHOT")
        assert await asyncio.wait_for(anext(stream), HEARTBEAT + WAIT) == {}


async def test_an_error_at_the_source_is_a_null_payload_with_errors_then_the_end(
        server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=WAIT) as http, \
            http.stream("POST", "/graphql", headers=MULTIPART, json={
                "query": 'subscription { order(id: "o1", since: "not-a-cursor") { op } }'}) as response:
        answered = [part async for part in parts(response)]
    assert answered[0] == {}
    assert answered[1]["payload"] is None
    assert answered[1]["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"
    assert answered[2:] == ["END"]
