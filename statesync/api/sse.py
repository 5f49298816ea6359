"""GraphQL over Server-Sent Events: graphql-sse's distinct connections mode, for clients
that cannot keep a websocket (proxies that drop upgrades, edge runtimes, ``curl -N``).

A request to ``/graphql`` with ``Accept: text/event-stream`` is answered with an event
stream: each result is a ``next`` event, then one ``complete``; a subscription streams
until the client closes the connection. As the protocol requires, an operation refused
before it runs (parse, validation, limits, permissions, variables) is answered on the
stream too, as one ``next`` carrying the coded errors, then ``complete``. A comment line
every :data:`KEEP_ALIVE` seconds keeps idle proxies from closing a quiet stream, and a
token's ``exp`` ends the stream with an ``UNAUTHENTICATED`` error, as it closes a
websocket: clients resubscribe with a fresh token and ``since``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import orjson
from graphql import ExecutionResult
from starlette.responses import StreamingResponse

from statesync.api.errors import coded
from statesync.api.execution import error_result, failure
from statesync.errors import Unauthenticated

EVENT_STREAM = "text/event-stream"
KEEP_ALIVE = 15.0  # seconds between comment lines on a quiet stream
COMPLETE = b"event: complete\ndata: \n\n"
_COMMENT = b":\n\n"
# Written after each event: it writes no bytes, but waits for the client to have read
# what it was sent, for at most ws_send_timeout (statesync.serving.GuardedHttpTools), so a
# client that stops reading is cut off now rather than at the next event.
_READ_BACK = b""
# A stream is not a cacheable answer, and a buffering proxy (nginx) would hold its events.
_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def wants_event_stream(accept: str) -> bool:
    return any(part.split(";")[0].strip().lower() == EVENT_STREAM for part in accept.split(","))


def next_event(result: ExecutionResult) -> bytes:
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [coded(e).formatted for e in result.errors]
    if result.data is not None or not result.errors:
        body["data"] = result.data
    return b"event: next\ndata: " + orjson.dumps(body) + b"\n\n"


def answer(result: ExecutionResult) -> StreamingResponse:
    """A whole answer (a query's result, or a refusal) as a stream of one result."""

    async def once() -> AsyncIterator[bytes]:
        yield next_event(result) + COMPLETE

    return StreamingResponse(once(), 200, _HEADERS, media_type=EVENT_STREAM)


Stream = AsyncIterator[ExecutionResult]


def subscription(open_stream: Callable[[], Awaitable[Stream | ExecutionResult]],
                 quota: Callable[[], AbstractContextManager[None]],
                 expires_at: datetime | None, leeway: float,
                 keep_alive: float = KEEP_ALIVE) -> StreamingResponse:
    """A subscription's results as events, from ``open_stream`` (called once the response
    has started), holding ``quota`` while it runs."""

    async def events() -> AsyncIterator[bytes]:
        try:
            with quota():
                stream = await open_stream()
                if isinstance(stream, ExecutionResult):  # refused at its source
                    yield next_event(stream)
                else:
                    async with contextlib.aclosing(stream):  # type: ignore[type-var]
                        async for chunk in _events(stream, expires_at, leeway, keep_alive):
                            yield chunk
        except Exception as exc:  # a coded client error, or a bug (logged, masked)
            yield next_event(ExecutionResult(None, failure(exc)))
        yield COMPLETE

    return StreamingResponse(events(), 200, _HEADERS, media_type=EVENT_STREAM)


async def _events(stream: Stream, expires_at: datetime | None, leeway: float,
                  keep_alive: float) -> AsyncIterator[bytes]:
    """Each result, with a comment between results that are ``keep_alive`` apart. The next
    result is awaited in a task that outlives a keep-alive, never cancelled by one: a
    stream's step cancelled half-way would end the stream."""
    results = stream.__aiter__()
    pending: asyncio.Future[ExecutionResult] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(results.__anext__())
            wait = keep_alive
            if expires_at is not None:
                remaining = (expires_at - datetime.now(UTC)).total_seconds() + leeway
                if remaining <= 0:
                    yield next_event(error_result(Unauthenticated("the token has expired")))
                    return
                wait = min(wait, remaining)
            done, _ = await asyncio.wait({pending}, timeout=wait)
            if not done:
                yield _COMMENT
                continue
            step, pending = pending, None
            try:
                result = step.result()
            except StopAsyncIteration:
                return
            yield next_event(result)
            yield _READ_BACK
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending
