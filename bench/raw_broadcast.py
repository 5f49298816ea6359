"""The raw tool for fan-out: a bare ASGI app on uvicorn that broadcasts each POST /broadcast
body to every websocket at /ws, encoded once. What statesync's fan-out is measured against.

Run: python bench/raw_broadcast.py <port>
"""

from __future__ import annotations

import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

sockets: set[WebSocket] = set()


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    sockets.add(websocket)
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        sockets.discard(websocket)


async def broadcast(request: Request) -> Response:
    # Stamped at the start of the broadcast: the raw latency is broadcast start -> receipt.
    body = (await request.body()).decode()
    text = body[:-1] + f',"t":{time.time() * 1000:.3f}}}'

    for websocket in list(sockets):
        try:
            await websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            sockets.discard(websocket)
    return Response(b'{"ok":true}', media_type="application/json")


app = Starlette(routes=[Route("/broadcast", broadcast, methods=["POST"]), WebSocketRoute("/ws", ws)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                ws_per_message_deflate=False)
