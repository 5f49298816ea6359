"""Results streamed over one HTTP response: what server-sent events (:mod:`.sse`) and
Apollo's multipart subscriptions (:mod:`.multipart`) share. A :class:`Framing` says how
one protocol writes a result, a keep-alive and the end; this module runs the stream: the
subscription's quota held while it runs, a keep-alive after ``keep_alive`` quiet seconds,
the token's ``exp`` ending it with ``UNAUTHENTICATED`` (clients resubscribe with a fresh
token and ``since``), and a failure answered in the protocol's own terms.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from graphql import ExecutionResult
from starlette.responses import StreamingResponse

from statesync.api.errors import coded
from statesync.api.execution import error_result, failure
from statesync.errors import Unauthenticated

# Written after each result: it writes no bytes, but waits for the client to have read
# what it was sent, for at most ws_send_timeout (statesync.serving.GuardedHttpTools), so a
# client that stops reading is cut off now rather than at the next result.
_READ_BACK = b""
# A stream is not a cacheable answer, and a buffering proxy (nginx) would hold its results.
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}

Stream = AsyncIterator[ExecutionResult]


class Framing(Protocol):
    @property
    def content_type(self) -> str: ...
    @property
    def keep_alive(self) -> float:
        """Seconds of quiet before a keep-alive is written."""
        ...

    def opening(self) -> bytes: ...
    def result(self, result: ExecutionResult) -> bytes: ...
    def fatal(self, result: ExecutionResult) -> bytes:
        """An error that ends the stream (a refusal at the source, an expired token)."""
        ...
    def keep_alive_bytes(self) -> bytes: ...
    def closing(self) -> bytes: ...


def response_body(result: ExecutionResult) -> dict[str, Any]:
    """A result as an HTTP response body: coded errors, and ``data`` unless it never ran."""
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [coded(e).formatted for e in result.errors]
    if result.data is not None or not result.errors:
        body["data"] = result.data
    return body


def answer(result: ExecutionResult, framing: Framing) -> StreamingResponse:
    """A whole answer (a query's result, or a refusal) as a stream of one result."""

    async def once() -> AsyncIterator[bytes]:
        yield framing.opening() + framing.result(result) + framing.closing()

    return StreamingResponse(once(), 200, HEADERS, media_type=framing.content_type)


def subscription(open_stream: Callable[[], Awaitable[Stream | ExecutionResult]],
                 quota: Callable[[], AbstractContextManager[None]],
                 expires_at: datetime | None, leeway: float,
                 framing: Framing) -> StreamingResponse:
    """A subscription's results, from ``open_stream`` (called once the response has
    started), holding ``quota`` while it runs."""

    async def chunks() -> AsyncIterator[bytes]:
        yield framing.opening()
        try:
            with quota():
                stream = await open_stream()
                if isinstance(stream, ExecutionResult):  # refused at its source
                    yield framing.fatal(stream)
                else:
                    async with contextlib.aclosing(stream):  # type: ignore[type-var]
                        async for chunk in _results(stream, expires_at, leeway, framing):
                            yield chunk
        except Exception as exc:  # a coded client error, or a bug (logged, masked)
            yield framing.fatal(ExecutionResult(None, failure(exc)))
        yield framing.closing()

    return StreamingResponse(chunks(), 200, HEADERS, media_type=framing.content_type)


async def _results(stream: Stream, expires_at: datetime | None, leeway: float,
                   framing: Framing) -> AsyncIterator[bytes]:
    """Each result, with a keep-alive between results that are ``keep_alive`` apart. The
    next result is awaited in a task that outlives a keep-alive, never cancelled by one: a
    stream's step cancelled half-way would end the stream."""
    results = stream.__aiter__()
    pending: asyncio.Future[ExecutionResult] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(results.__anext__())
            wait, expiring = framing.keep_alive, False
            if expires_at is not None:
                remaining = (expires_at - datetime.now(UTC)).total_seconds() + leeway
                if remaining <= 0:
                    yield framing.fatal(error_result(Unauthenticated("the token has expired")))
                    return
                wait, expiring = min(wait, remaining), remaining < wait
            done, _ = await asyncio.wait({pending}, timeout=wait)
            if not done:
                if not expiring:  # quiet for keep_alive seconds; else the token ends it now
                    yield framing.keep_alive_bytes()
                continue
            step, pending = pending, None
            try:
                result = step.result()
            except StopAsyncIteration:
                return
            yield framing.result(result)
            yield _READ_BACK
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending
