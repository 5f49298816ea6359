"""A websocket as the GraphQL protocols see it: JSON objects in, JSON objects out.

The transport's own limits live below this (see :mod:`statesync.serving`): messages over
``max_message_bytes`` are closed with 1009 by the websocket layer, and a client that
leaves frames unread for ``ws_send_timeout`` is cut off there. Here, what is not a text
frame holding a JSON object is a :class:`ProtocolViolation`, which both protocols
answer by closing with 4400 and the reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from statesync import metrics
from statesync.api import wire

# The ASGI scope extension of a websocket's send that never waits (statesync.serving).
SEND_NOW = "statesync.send_now"


class ProtocolViolation(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Socket:
    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.closed = False
        self._send_now: Callable[[bytes], bool] | None = websocket.scope.get(
            "extensions", {}).get(SEND_NOW)

    def send_now(self, frame: bytes) -> bool:
        """Write an encoded message without waiting, or return False having written nothing
        (the client is behind, the socket is closing, or the server offers no such send):
        the caller then sends it the waiting way, in order."""
        return not self.closed and self._send_now is not None and self._send_now(frame)

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or None once the client is gone."""
        if self.closed:
            return None
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            self.closed = True
            return None
        text = message.get("text")
        if text is None:
            raise ProtocolViolation("WebSocket message type must be text")
        try:
            decoded = wire.decode(text.encode())
        except wire.Undecodable:
            raise ProtocolViolation("WebSocket message must be valid JSON") from None
        if not isinstance(decoded, dict):
            raise ProtocolViolation("WebSocket message must be a JSON object")
        return decoded

    async def send(self, message: dict[str, Any]) -> None:
        """Send, or do nothing if the client is gone (its operations are being stopped)."""
        if self.closed:
            return
        try:
            await self.websocket.send_text(orjson.dumps(message).decode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.closed = True

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        if code >= 4000:  # the protocols' own refusals; 1000-range closes are not errors
            metrics.WEBSOCKET_REFUSALS.labels(str(code)).inc()
        # A reason longer than a control frame allows (123 bytes) would fail the close itself.
        reason = reason.encode()[:123].decode(errors="ignore")
        if self.websocket.application_state is not WebSocketState.DISCONNECTED:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.websocket.close(code, reason)
