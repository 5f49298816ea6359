"""GraphQL over server-sent events (graphql-sse's distinct connections mode) on a real
server: subscriptions stream their messages, anything else is one result, refusals are
answered on the stream, and a client that goes away leaves no subscription behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from tests.conftest import RunningServer
from tests.support import WAIT, GraphQLClient, eventually, row_counts

ORDER = 'subscription { order(id: "o1") { op version document { note } } }'
CREATE = ('mutation { createOrder(id: "o1", input: {customer: "ann", items: [], note: "a"}) '
          '{ version } }')
SSE_HEADERS = {"accept": "text/event-stream"}


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """Each event of an event stream as (name, decoded data), comments skipped."""
    name, data = None, []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and name is not None:
            text = "\n".join(data)
            yield name, orjson.loads(text) if text else None
            name, data = None, []


async def collect(response: httpx.Response) -> list[tuple[str, Any]]:
    return [event async for event in events(response)]


async def test_a_subscription_streams_its_snapshot_and_changes(server: RunningServer) -> None:
    client = GraphQLClient(server.base_url)
    await client.data(CREATE)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=WAIT) as http, \
            http.stream("POST", "/graphql", json={"query": ORDER}, headers=SSE_HEADERS) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response)
        name, snapshot = await asyncio.wait_for(anext(stream), WAIT)
        assert (name, snapshot["data"]["order"]["op"]) == ("next", "SNAPSHOT")
        await client.data('mutation { updateOrder(id: "o1", patch: {note: "b"}) { version } }')
        name, change = await asyncio.wait_for(anext(stream), WAIT)
        assert name == "next"
        assert change["data"]["order"] == {"op": "UPDATED", "version": 2, "document": {"note": "b"}}
        assert server.runtime.hub.subscriber_count == 1
    # The client closed the stream: its subscription leaves the hub.
    await eventually(lambda: _is(server.runtime.hub.subscriber_count == 0), what="unsubscribed")
    await client.aclose()


async def _is(value: bool) -> bool:
    return value


async def test_a_query_and_a_mutation_are_one_result_then_complete(server: RunningServer,
                                                                   database_url: str) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=WAIT) as http:
        async with http.stream("POST", "/graphql", json={"query": CREATE},
                               headers=SSE_HEADERS) as response:
            created = await collect(response)
        async with http.stream("POST", "/graphql", json={"query": '{ order(id: "o1") { note } }'},
                               headers=SSE_HEADERS) as response:
            read = await collect(response)
    assert created == [("next", {"data": {"createOrder": {"version": 1}}}), ("complete", None)]
    assert read == [("next", {"data": {"order": {"note": "a"}}}), ("complete", None)]
    assert (await row_counts(database_url))["statesync_documents"] == 1


async def test_a_refused_operation_is_answered_on_the_stream_and_writes_nothing(
        server: RunningServer, database_url: str) -> None:
    before = await row_counts(database_url)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=WAIT) as http:
        for query, code in [("subscription { order(id: 1) { nope } }", "GRAPHQL_VALIDATION_FAILED"),
                            ("subscription {", "GRAPHQL_PARSE_FAILED"),
                            ('subscription { orders(since: "999999") { op } }', "INVALID_CURSOR")]:
            async with http.stream("POST", "/graphql", json={"query": query},
                                   headers=SSE_HEADERS) as response:
                answered = await collect(response)
            assert response.status_code == 200
            assert [name for name, _ in answered] == ["next", "complete"], answered
            assert answered[0][1]["errors"][0]["extensions"]["code"] == code, answered
    assert await row_counts(database_url) == before
    assert server.runtime.hub.subscriber_count == 0


async def test_without_event_stream_a_subscription_over_http_is_a_bad_request(
        server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=WAIT) as http:
        response = await http.post("/graphql", json={"query": ORDER})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "text/event-stream" in response.json()["errors"][0]["message"]
