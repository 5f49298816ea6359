"""The legacy graphql-ws protocol (subscriptions-transport-ws), server side: what older
Apollo clients and ``gql``'s default websocket transport speak. Queries and mutations run
over it too.

It has no close codes of its own; statesync closes like graphql-transport-ws does:
4400 for a message that is not the protocol's, 4401 for ``start`` before
``connection_init``, 4408 when ``connection_init`` does not come within
``ws_init_timeout``. Errors of an operation are ``error`` messages carrying the first
coded error; ``ka`` keeps idle connections alive every ``KEEP_ALIVE`` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson
from graphql import ExecutionResult, GraphQLError

from statesync.api.ws.live import SENT_BY_STREAM, result_payload
from statesync.api.ws.session import Session, operation_id

PROTOCOL = "graphql-ws"
KEEP_ALIVE = 15.0


class LegacyWS(Session):
    MESSAGES: ClassVar[Mapping[str, str]] = {
        "connection_init": "handle_connection_init",
        "start": "handle_start",
        "stop": "handle_stop",
        "connection_terminate": "handle_connection_terminate",
    }

    async def handle_connection_init(self, message: dict[str, Any]) -> None:
        if await self.initialise(message):
            self.side_task(self._keep_alive_loop(), "ws-keep-alive")

    async def refuse_init(self, reason: str) -> None:
        await self.socket.send({"type": "connection_error", "payload": {"message": reason}})
        await super().refuse_init(reason)

    async def _keep_alive_loop(self) -> None:
        while not self.socket.closed:
            await self.socket.send({"type": "ka"})
            await asyncio.sleep(KEEP_ALIVE)

    async def handle_start(self, message: dict[str, Any]) -> None:
        op_id = operation_id(message)
        if not self.acknowledged:
            await self.socket.close(4401, "Unauthorized")
            return
        await self.stop_and_wait(op_id)  # a start with a running id replaces that operation
        await self.begin(op_id, message.get("payload"))

    async def handle_stop(self, message: dict[str, Any]) -> None:
        self.stop(operation_id(message))

    async def handle_connection_terminate(self, message: dict[str, Any]) -> None:
        await self.socket.close(1000)

    def live_prefix(self, op_id: str) -> bytes:
        return b'{"id":' + orjson.dumps(op_id) + b',"type":"data","payload":'

    async def send_result(self, op_id: str, result: ExecutionResult) -> None:
        SENT_BY_STREAM.inc()
        await self.socket.send({"id": op_id, "type": "data", "payload": result_payload(result)})

    async def send_error(self, op_id: str, errors: list[GraphQLError]) -> None:
        await self.socket.send({"id": op_id, "type": "error", "payload": errors[0].formatted})

    async def send_complete(self, op_id: str) -> None:
        await self.socket.send({"id": op_id, "type": "complete"})

    async def stopped(self, op_id: str) -> None:
        await self.send_complete(op_id)  # subscriptions-transport-ws acknowledges a stop
