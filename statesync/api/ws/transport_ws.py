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

from typing import Any

from graphql import ExecutionResult, GraphQLError

from statesync.api.operations import Rejected
from statesync.api.ws.session import Session, operation_id
from statesync.api.ws.socket import ProtocolViolation

PROTOCOL = "graphql-transport-ws"


class TransportWS(Session):
    async def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        handler = {
            "connection_init": self.handle_connection_init,
            "ping": self.handle_ping,
            "pong": self.handle_pong,
            "subscribe": self.handle_subscribe,
            "complete": self.handle_complete,
        }.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise ProtocolViolation(f"Unknown message type: {str(kind)[:64]}")
        await handler(message)

    async def handle_connection_init(self, message: dict[str, Any]) -> None:
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            await self.socket.close(4400, "Invalid connection init payload")
            return
        if self.initialised:
            await self.socket.close(4429, "Too many initialisation requests")
            return
        self.initialised = True
        await self.socket.send({"type": "connection_ack"})
        self.acknowledged = True

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
        payload = message.get("payload")
        try:
            prepared = await self.prepare(payload)
        except Rejected as rejected:
            if rejected.protocol_error:
                await self.socket.close(4400, rejected.errors[0].message)
            else:
                await self.send_error(op_id, rejected.errors)
            return
        assert isinstance(payload, dict)
        self.start(op_id, prepared, payload.get("variables"))

    async def handle_complete(self, message: dict[str, Any]) -> None:
        self.stop(operation_id(message))

    async def send_result(self, op_id: str, result: ExecutionResult) -> None:
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
        await self.socket.send({"id": op_id, "type": "next", "payload": payload})

    async def send_error(self, op_id: str, errors: list[GraphQLError]) -> None:
        await self.socket.send({"id": op_id, "type": "error",
                                "payload": [e.formatted for e in errors]})

    async def send_complete(self, op_id: str) -> None:
        await self.socket.send({"id": op_id, "type": "complete"})

    async def stopped(self, op_id: str) -> None:
        pass  # the client's own `complete` ended it: nothing to answer
