"""The websocket endpoint: picks the protocol, enforces the connection limit, runs a session."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from statesync import metrics
from statesync.api.gateway import Gateway
from statesync.api.ws import legacy_ws, transport_ws
from statesync.api.ws.session import Session
from statesync.api.ws.socket import Socket

PROTOCOLS: dict[str, type[Session]] = {
    transport_ws.PROTOCOL: transport_ws.TransportWS,
    legacy_ws.PROTOCOL: legacy_ws.LegacyWS,
}


class GraphQLWebSocket:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.open = 0  # websockets this process serves now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        runtime = self.gateway.runtime()
        if self.open >= runtime.settings.max_connections:
            await websocket.send_denial_response(Response(
                b"too many connections", 503, {"retry-after": "1"}, media_type="text/plain"))
            return
        offered = scope.get("subprotocols", [])
        chosen = next((p for p in PROTOCOLS if p in offered), None)
        await websocket.accept(subprotocol=chosen)
        socket = Socket(websocket)
        if chosen is None:
            await socket.close(4406, "Subprotocol not acceptable")
            return
        self.open += 1
        metrics.WEBSOCKETS.inc()
        try:
            await PROTOCOLS[chosen](socket, self.gateway, websocket).serve()
        finally:
            self.open -= 1
            metrics.WEBSOCKETS.dec()
