"""GraphQL over Server-Sent Events: graphql-sse's distinct connections mode, for clients
that cannot keep a websocket (proxies that drop upgrades, edge runtimes, ``curl -N``).

A request to ``/graphql`` with ``Accept: text/event-stream`` is answered with an event
stream: each result is a ``next`` event, then one ``complete``; a subscription streams
until the client closes the connection. As the protocol requires, an operation refused
before it runs (parse, validation, limits, permissions, variables) is answered on the
stream too, as one ``next`` carrying the coded errors, then ``complete``. A comment line
every :data:`KEEP_ALIVE` seconds keeps idle proxies from closing a quiet stream. The
stream itself is run by :mod:`statesync.api.http_streams`.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from graphql import ExecutionResult

from statesync.api.http_streams import response_body

MEDIA_TYPE = "text/event-stream"
KEEP_ALIVE = 15.0  # seconds between comment lines on a quiet stream
COMPLETE = b"event: complete\ndata: \n\n"


def wants_event_stream(accept: str) -> bool:
    return any(part.split(";")[0].strip().lower() == MEDIA_TYPE for part in accept.split(","))


def next_event(result: ExecutionResult) -> bytes:
    return b"event: next\ndata: " + orjson.dumps(response_body(result)) + b"\n\n"


@dataclass(frozen=True)
class EventStream:
    keep_alive: float = KEEP_ALIVE
    content_type: str = MEDIA_TYPE

    def opening(self) -> bytes:
        return b""

    def result(self, result: ExecutionResult) -> bytes:
        return next_event(result)

    def fatal(self, result: ExecutionResult) -> bytes:
        return next_event(result)  # graphql-sse has no error event: errors are a result

    def keep_alive_bytes(self) -> bytes:
        return b":\n\n"

    def closing(self) -> bytes:
        return COMPLETE
