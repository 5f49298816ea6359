"""Live changes from the hub straight to the socket, rendered once for all who render alike.

A subscription's stream yields its snapshot (or replay) through graphql-core, one event
at a time, like any GraphQL server. Its live changes need not: while the stream waits
for one, it leaves the hub a sink (``feed.subscriber``) built here, and the hub's one
loop over its subscribers hands each change to each sink. A sink renders the change's
payload once per *rendering* (the query, its operation, the variables its selection
uses and the reader's role: ``SharedEventExecutor.rendering``), keeps the encoded bytes
for the next subscription that renders alike, and splices them into this operation's
frame (its id, its protocol's message type) for a send that never waits
(``Socket.send_now``). Whatever it cannot do that way (an execution that would have to
wait, errors to code, a client that is behind) it refuses, and the change goes the
ordinary way, in order, through the stream.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import orjson
from graphql import ExecutionResult, execute_subscription_event

from statesync import metrics
from statesync.api.context import Context
from statesync.api.shared_execution import SharedEventExecutor, shared_payloads
from statesync.api.ws.socket import Socket
from statesync.feed.subscriber import Delivery, Sink
from statesync.identity import ADMIN_ROLE

SENT_DIRECTLY = metrics.FRAMES.labels("direct")
SENT_BY_STREAM = metrics.FRAMES.labels("stream")


def result_payload(result: ExecutionResult) -> dict[str, Any]:
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [e.formatted for e in result.errors]
    return payload


class LiveFrames:
    """The live fast path of one operation on one socket. It is the operation's GraphQL
    root value, which is how its subscription resolver finds it (``sink``)."""

    def __init__(self, socket: Socket, prefix: bytes, running: Callable[[], bool],
                 context: Context) -> None:
        self.socket = socket
        self.prefix = prefix  # the frame up to its payload: '{"id":"1","type":"next","payload":'
        self.running = running
        self.context = context
        # Set once the operation's executor is built; the resolver asks for a sink later,
        # when its stream first runs. Until then (or without one): no fast path.
        self.executor: SharedEventExecutor | None = None

    def sink(self, to_root: Callable[[Delivery], Any]) -> Sink | None:
        """A sink for the hub; ``to_root`` turns a delivery into the GraphQL root value the
        selection is executed against."""
        executor = self.executor
        if executor is None:
            return None
        access = self.context.access
        rendering = executor.rendering(access.role if access is not None else ADMIN_ROLE)
        if rendering is None:
            return None
        payloads = shared_payloads(self.context.runtime)
        prefix, send_now, running = self.prefix, self.socket.send_now, self.running

        def deliver(delivery: Delivery) -> bool:
            if not running():
                return False  # stopped: the operation's own task finishes it
            key = (delivery.op, delivery.change.cursor, delivery.change.doc_id, *rendering)
            payload = payloads.get(key)
            if payload is None:
                payload = _render(executor, to_root(delivery))
                if payload is None:
                    return False
                payloads.put(key, payload)
            sent = send_now(prefix + payload + b"}")
            if sent:
                SENT_DIRECTLY.inc()
            return sent

        return deliver


def _render(executor: SharedEventExecutor, root: Any) -> bytes | None:
    """The encoded payload of one event, or None if it cannot be had at once and clean."""
    result = execute_subscription_event(executor.build_per_event_executor(root))
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # never awaited: the ordinary path executes it again
        return None
    if not isinstance(result, ExecutionResult) or result.errors:
        return None
    return orjson.dumps(result_payload(result))
