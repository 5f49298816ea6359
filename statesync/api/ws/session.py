"""What both websocket protocols share: one connection, its identity, its operations.

The identity is fixed at ``connection_init`` (its payload's credentials, else the upgrade
request's); credentials that do not verify close the socket with 4403, and a token's
``exp`` closes it with 4403 too, when it comes: clients reconnect with a fresh token and
resume with ``since``. Each operation runs in its own task inside the connection's ``TaskGroup``: a client's
``complete`` (or ``stop``) cancels it, its stream is closed in scope (``aclosing``) so the
subscription leaves the hub at once, and when the connection ends every task is
cancelled and awaited. An operation never raises into the group: whatever ends it is
answered on the wire (a coded error, or ``complete``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from graphql import ExecutionResult, GraphQLError, OperationType
from starlette.websockets import WebSocket

from statesync.api.context import Context
from statesync.api.execution import check_variables, error_result, execute, failure, subscribe
from statesync.api.gateway import Gateway
from statesync.api.operations import Prepared, Rejected
from statesync.api.quotas import TooManyWebsockets
from statesync.api.ws.live import LiveFrames
from statesync.api.ws.socket import ProtocolViolation, Socket
from statesync.errors import Forbidden, StatesyncError, TooManySubscriptions, Unauthenticated
from statesync.identity import Identity
from statesync.logs import OPERATION

log = logging.getLogger(__name__)


class Session(ABC):
    """One websocket speaking one protocol. Subclasses name the messages."""

    def __init__(self, socket: Socket, gateway: Gateway, websocket: WebSocket) -> None:
        self.socket = socket
        self.gateway = gateway
        self.operations = gateway.operations
        self.websocket = websocket
        settings = gateway.runtime().settings
        self.init_timeout = settings.ws_init_timeout
        self.leeway = settings.jwt_leeway
        self.max_operations = settings.max_subscriptions_per_connection
        self.initialised = False
        self.acknowledged = False
        self._context: Context | None = None
        self.running: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._side_tasks: list[asyncio.Task[None]] = []
        self._held = contextlib.ExitStack()  # the identity's websocket quota, while open

    @property
    def context(self) -> Context:
        assert self._context is not None, "no operation runs before connection_init"
        return self._context

    async def serve(self) -> None:
        with self._held:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self.side_task(self._init_timeout(), "ws-init-timeout")
                try:
                    await self._read()
                finally:
                    for task in [*self._side_tasks, *self.running.values()]:
                        task.cancel()
                    self.running.clear()
        await self.socket.close(1000)

    def side_task(self, work: Any, name: str) -> None:
        """A task of the connection's (a timer, keep-alives), cancelled when it ends."""
        assert self._group is not None
        self._side_tasks.append(self._group.create_task(work, name=name))

    async def _read(self) -> None:
        try:
            while (message := await self.socket.receive()) is not None:
                await self.handle(message)
                if self.socket.closed:
                    return
        except ProtocolViolation as violation:
            await self.socket.close(4400, violation.reason)

    async def _init_timeout(self) -> None:
        await asyncio.sleep(self.init_timeout)
        if not self.initialised:
            await self.socket.close(4408, "Connection initialisation timeout")

    # The protocol's client messages, by type: the name of the method handling each.
    MESSAGES: ClassVar[Mapping[str, str]] = {}

    async def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        name = self.MESSAGES.get(kind) if isinstance(kind, str) else None
        if name is None:
            raise ProtocolViolation(f"Unknown message type: {str(kind)[:64]}")
        await getattr(self, name)(message)

    async def initialise(self, message: dict[str, Any]) -> bool:
        """``connection_init``: acknowledged, or the socket closed (and False)."""
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            await self.refuse_init("Invalid connection init payload")
            return False
        if self.initialised:
            await self.socket.close(4429, "Too many initialisation requests")
            return False
        self.initialised = True
        client = self.websocket.client.host if self.websocket.client else None
        try:
            identity = await self.gateway.authenticator.identify_socket(
                payload, self.websocket.headers, client)
            self._held.enter_context(self.gateway.quotas.websocket(identity))
        except (Unauthenticated, Forbidden) as refused:
            await self.socket.close(4403, f"Forbidden: {refused.message}")
            return False
        except TooManyWebsockets as refused:
            await self.socket.close(1013, str(refused))
            return False
        self._context = self.gateway.context(self.websocket, identity)
        if identity.expires_at is not None:
            self.side_task(self._expire(identity), "ws-token-expiry")
        await self.socket.send({"type": "connection_ack"})
        self.acknowledged = True
        return True

    async def _expire(self, identity: Identity) -> None:
        """At the token's ``exp`` (and its leeway), the connection's identity lapses."""
        assert identity.expires_at is not None
        remaining = (identity.expires_at - datetime.now(UTC)).total_seconds() + self.leeway
        await asyncio.sleep(max(remaining, 0))
        await self.socket.close(4403, "Forbidden: the token has expired")

    async def refuse_init(self, reason: str) -> None:
        await self.socket.close(4400, reason)

    # ---- operations ---------------------------------------------------------------------

    async def prepare(self, payload: object) -> Prepared:
        """The operation a start/subscribe payload asks for, or :class:`Rejected`."""
        if not isinstance(payload, Mapping):
            raise ProtocolViolation("the payload must be a JSON object")
        return await self.operations.prepared(payload.get("query"), payload.get("operationName"),
                                              self.context.runtime.pacer, self.context.owner)

    async def begin(self, op_id: str, payload: object) -> None:
        """Prepare and start the operation a start/subscribe message asks for; what may not
        start is answered with an error message (a protocol mistake as the protocol says:
        :meth:`malformed`)."""
        try:
            prepared = await self.prepare(payload)
        except Rejected as rejected:
            if rejected.protocol_error:
                await self.malformed(op_id, rejected)
            else:
                await self.send_error(op_id, rejected.errors)
            return
        assert isinstance(payload, Mapping)  # prepare() refused anything else
        forbidden = self.forbidden(prepared)
        if forbidden:
            await self.send_error(op_id, forbidden)
            return
        self.start(op_id, prepared, payload.get("variables"))

    async def malformed(self, op_id: str, rejected: Rejected) -> None:
        """A start whose payload is not the protocol's (graphql-ws answers with an error)."""
        await self.send_error(op_id, rejected.errors)

    def forbidden(self, prepared: Prepared) -> list[GraphQLError]:
        """What this connection's identity may not select in ``prepared``."""
        return self.gateway.permissions.errors(prepared, self.context.access)

    def start(self, op_id: str, prepared: Prepared, variables: object) -> None:
        if len(self.running) >= self.max_operations:
            limit = TooManySubscriptions(
                f"this connection already runs {self.max_operations} operations",
                limit=self.max_operations)
            self._spawn(op_id, self._refuse(op_id, limit))
            return
        self._spawn(op_id, self._run(op_id, prepared, variables))

    def _spawn(self, op_id: str, work: Any) -> None:
        assert self._group is not None
        self.running[op_id] = self._group.create_task(work, name=f"ws-operation-{op_id}")

    def stop(self, op_id: str) -> asyncio.Task[None] | None:
        task = self.running.pop(op_id, None)
        if task is not None:
            task.cancel()
        return task

    async def stop_and_wait(self, op_id: str) -> None:
        """Stop an operation and let it finish saying so, before its id is used again."""
        task = self.stop(op_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _refuse(self, op_id: str, error: StatesyncError) -> None:
        try:
            await self.send_error(op_id, error_result(error).errors or [])
        finally:
            self._forget(op_id)

    async def _run(self, op_id: str, prepared: Prepared, raw_variables: object) -> None:
        OPERATION.set(prepared.name)  # this operation's own task
        try:
            variables = check_variables(raw_variables, self.operations.limits.max_input_depth,
                                        self.operations.limits.max_input_values)
            if prepared.kind is OperationType.SUBSCRIPTION:
                with self.context.quotas.subscription(self.context.identity):
                    await self._stream(op_id, prepared, variables)
            else:
                with self.context.runtime.pacer.request():
                    result = await execute(self.gateway.schema, prepared, variables, self.context,
                                           hide_suggestions=self.gateway.hide_suggestions)
                await self.send_result(op_id, result)
                await self.send_complete(op_id)
        except asyncio.CancelledError:
            await self.stopped(op_id)
            raise
        except Exception as exc:  # a coded client error, or a bug (logged, masked)
            await self.send_error(op_id, failure(exc))
        finally:
            self._forget(op_id)

    async def _stream(self, op_id: str, prepared: Prepared, variables: dict[str, Any] | None) -> None:
        task = asyncio.current_task()
        frames = LiveFrames(self.socket, self.live_prefix(op_id),
                            lambda: self.running.get(op_id) is task, self.context)
        stream = await subscribe(self.gateway.schema, prepared, variables, self.context,
                                 hide_suggestions=self.gateway.hide_suggestions, root_value=frames)
        if isinstance(stream, ExecutionResult):
            await self.send_error(op_id, stream.errors or [])
            return
        frames.executor = stream.executor
        async with contextlib.aclosing(stream):
            async for result in stream:
                await self.send_result(op_id, result)
        await self.send_complete(op_id)

    def _forget(self, op_id: str) -> None:
        task = self.running.get(op_id)
        if task is asyncio.current_task():
            del self.running[op_id]

    # ---- what each protocol says ----------------------------------------------------------

    @abstractmethod
    def live_prefix(self, op_id: str) -> bytes:
        """The encoded start of this protocol's result message, up to its payload."""

    @abstractmethod
    async def send_result(self, op_id: str, result: ExecutionResult) -> None: ...

    @abstractmethod
    async def send_error(self, op_id: str, errors: list[GraphQLError]) -> None: ...

    @abstractmethod
    async def send_complete(self, op_id: str) -> None: ...

    @abstractmethod
    async def stopped(self, op_id: str) -> None:
        """The client stopped the operation (or left)."""


def operation_id(message: Mapping[str, Any]) -> str:
    op_id = message.get("id")
    if not isinstance(op_id, str) or not op_id:
        raise ProtocolViolation("the message needs an `id` that is a non-empty string")
    if len(op_id) > 256:
        raise ProtocolViolation("the message's `id` is longer than 256 characters")
    return op_id
