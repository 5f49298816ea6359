"""Server-sent events and multipart subscriptions under access control: the stream's
identity is the request's, its rules are the websocket's, and a token's exp ends it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx

from tests.access.conftest import Clients, Tokens
from tests.conftest import RunningServer
from tests.integration.test_sse import collect, events
from tests.support import WAIT


async def test_a_stream_ends_with_unauthenticated_when_its_token_expires(
        api: RunningServer, as_: Clients, token: Tokens) -> None:
    await as_("ada", "author").data('mutation { createNote(id: "n1", input: {text: "v1"}) { id } }')
    headers = {"accept": "text/event-stream",
               "authorization": f"Bearer {token('ada', 'author', lifetime=timedelta(seconds=2))}"}
    async with httpx.AsyncClient(base_url=api.base_url, timeout=WAIT) as http, \
            http.stream("POST", "/graphql", headers=headers,
                        json={"query": 'subscription { note(id: "n1") { op } }'}) as response:
        answered = await asyncio.wait_for(collect(response), WAIT)
    assert [name for name, _ in answered] == ["next", "next", "complete"], answered
    assert answered[0][1]["data"]["note"]["op"] == "SNAPSHOT"
    assert answered[1][1]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert api.runtime.hub.subscriber_count == 0


async def test_a_role_streams_only_what_it_may_read(api: RunningServer, as_: Clients,
                                                   token: Tokens) -> None:
    headers = {"accept": "text/event-stream", "authorization": f"Bearer {token('rita', 'reader')}"}
    hidden = 'subscription { note(id: "n1") { document { secret } } }'
    async with httpx.AsyncClient(base_url=api.base_url, timeout=WAIT) as http, \
            http.stream("POST", "/graphql", headers=headers, json={"query": hidden}) as response:
        answered = [event async for event in events(response)]
    assert [name for name, _ in answered] == ["next", "complete"]
    assert answered[0][1]["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_multipart_subscription_ends_with_unauthenticated_when_its_token_expires(
        api: RunningServer, as_: Clients, token: Tokens) -> None:
    from tests.integration.test_multipart import MULTIPART, parts

    await as_("ada", "author").data('mutation { createNote(id: "n1", input: {text: "v1"}) { id } }')
    headers = {**MULTIPART,
               "authorization": f"Bearer {token('ada', 'author', lifetime=timedelta(seconds=2))}"}
    async with httpx.AsyncClient(base_url=api.base_url, timeout=WAIT) as http, \
            http.stream("POST", "/graphql", headers=headers,
                        json={"query": 'subscription { note(id: "n1") { op } }'}) as response:
        answered = await asyncio.wait_for(_all(parts(response)), WAIT)
    assert answered[:2] == [{}, {"payload": {"data": {"note": {"op": "SNAPSHOT"}}}}]
    assert answered[2]["payload"] is None
    assert answered[2]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert answered[3:] == ["END"]  # no heartbeat between: the expiry ends it
    assert api.runtime.hub.subscriber_count == 0


async def _all(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]
