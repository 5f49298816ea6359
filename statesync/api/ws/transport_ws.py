"""The graphql-transport-ws protocol (graphql-ws's PROTOCOL.md), server side.

Close codes, as the reference server and strawberry use them:

=====  ===============================================================================
4400   a message that is not one of the protocol's, or a document that does not parse
       or names no operation to run (the reason says which)
4401   ``subscribe`` before the connection was acknowledged
4408   no ``connection_init`` within ``ws_init_timeout``
4409   ``subscribe`` with the id of an operation still running
4429   a second ``connection_init``
=====  ===============================================================================

Validation failures and errors of a running operation are ``error`` messages with
coded errors; the connection stays open.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson
from graphql import ExecutionResult, GraphQLError

from statesync.api.operations import Rejected
from statesync.api.ws.live import SENT_BY_STREAM, result_payload
from statesync.api.ws.session import Session, operation_id

PROTOCOL = "graphql-transport-ws"


class TransportWS(Session):
    MESSAGES: ClassVar[Mapping[str, str]] = {
        "connection_init": "handle_connection_init",
        "ping": "handle_ping",
        "pong": "handle_pong",
        "subscribe": "handle_subscribe",
        "complete": "handle_complete",
    }

    async def handle_connection_init(self, message: dict[str, Any]) -> None:
        await self.initialise(message)

    async def handle_ping(self, message: dict[str, Any]) -> None:
        pong: dict[str, Any] = {"type": "pong"}
        if isinstance(message.get("payload"), dict):
            pong["payload"] = message["payload"]
        await self.socket.send(pong)

    async def handle_pong(self, message: dict[str, Any]) -> None:
        pass

    async def handle_subscribe(self, message: dict[str, Any]) -> None:
        op_id = operation_id(message)
        if not self.acknowledged:
            await self.socket.close(4401, "Unauthorized")
            return
        if op_id in self.running:
            await self.socket.close(4409, f"Subscriber for {op_id} already exists")
            return
        await self.begin(op_id, message.get("payload"))

    async def malformed(self, op_id: str, rejected: Rejected) -> None:
        await self.socket.close(4400, rejected.errors[0].message)  # the reference server's code

    async def handle_complete(self, message: dict[str, Any]) -> None:
        self.stop(operation_id(message))

    def live_prefix(self, op_id: str) -> bytes:
        return b'{"id":' + orjson.dumps(op_id) + b',"type":"next","payload":'

    async def send_result(self, op_id: str, result: ExecutionResult) -> None:
        SENT_BY_STREAM.inc()
        await self.socket.send({"id": op_id, "type": "next", "payload": result_payload(result)})

    async def send_error(self, op_id: str, errors: list[GraphQLError]) -> None:
        await self.socket.send({"id": op_id, "type": "error",
                                "payload": [e.formatted for e in errors]})

    async def send_complete(self, op_id: str) -> None:
        await self.socket.send({"id": op_id, "type": "complete"})

    async def stopped(self, op_id: str) -> None:
        pass  # the client's own `complete` ended it: nothing to answer
