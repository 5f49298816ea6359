"""uvicorn as statesync runs it, with the connection timeouts uvicorn lacks.

uvicorn bounds idle keep-alive connections, but not a connection that never finishes
sending its request headers (one byte every few seconds keeps it open forever), and a
websocket whose client stops reading blocks every send to it, for ever, while the
server keeps what it meant to send. The two protocol classes here close both:

- :class:`GuardedHttpTools`: a connection has ``http_header_timeout`` seconds, from when it
  opens or its last response was sent, to deliver the next request's headers, and a
  response (a server-sent event stream, say) that cannot be written within
  ``ws_send_timeout`` (the client stopped reading) aborts the connection;
- :class:`GuardedWebSocket`: a frame that cannot be written within ``ws_send_timeout``
  (the client has not read the ones before it) aborts the connection.

:class:`GuardedWebSocket` also offers the application a send that never waits, as the
ASGI scope extension ``SEND_NOW`` (a callable taking a text frame's UTF-8 bytes and
returning whether it was written): the fan-out writes one change to a thousand sockets
in one loop with it, and a socket whose client is behind says no instead of stalling
the rest.

This is the one module that subclasses uvicorn's internals; ``tests/hostile/
test_slow_clients.py`` drives each hook against a real server, so an upgrade that moves
them fails there.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from statesync.api.ws.socket import SEND_NOW
from statesync.config import Settings

KEEP_ALIVE_TIMEOUT = 5  # uvicorn's default: idle connections between requests


class _HeaderDeadline:
    """The header timeout, shared by both HTTP protocols: armed when a connection opens and
    when an answer has gone out, disarmed when a request's headers are in."""

    header_timeout: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _headers_too_slow(self) -> None:
        self._head_timer = None
        # Upgraded to a websocket meanwhile: that protocol owns the transport now.
        if self.transport.get_protocol() is cast(object, self) and not self.transport.is_closing():
            self.transport.close()


class _BoundedFlow(FlowControl):
    """uvicorn waits for a paused transport to drain for ever; this waits ``timeout``."""

    def __init__(self, transport: asyncio.Transport, timeout: float) -> None:
        super().__init__(transport)
        self.timeout = timeout

    async def drain(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await super().drain()
        except TimeoutError:
            # The client stopped reading: what it has not read is dropped with it.
            self._transport.abort()
            await asyncio.sleep(0)  # connection_lost marks the response disconnected


class GuardedHttpTools(_HeaderDeadline, HttpToolsProtocol):
    """httptools (a C parser, several times h11's speed): what statesync runs on."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout = getattr(config, HEADER_TIMEOUT, self.header_timeout)
        self.send_timeout: float = getattr(config, SEND_TIMEOUT, 10.0)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _BoundedFlow(transport, self.send_timeout)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self._arm()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class GuardedWebSocket(WebSocketsSansIOProtocol):
    send_timeout: float = 10.0

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.send_timeout = getattr(config, SEND_TIMEOUT, self.send_timeout)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # (the handshake was not refused)
            scope["extensions"][SEND_NOW] = self.send_now

    def send_now(self, text: bytes) -> bool:
        """Write a text frame (UTF-8 ``text``) at once, or return False and write nothing: the
        socket is not open, or its write buffer is over the high-water mark (the client
        has not read what it was sent: the waiting ``send`` and its timeout deal with it)."""
        if (self.disconnected or self.close_sent or not self.handshake_complete
                or not self.writable.is_set() or self.transport.is_closing()):
            return False
        self.conn.send_text(text)
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    async def send(self, message: Any) -> None:
        if not self.writable.is_set() and not self.disconnected:
            try:
                async with asyncio.timeout(self.send_timeout):
                    await self.writable.wait()
            except TimeoutError:
                # The client stopped reading: what it has not read is dropped with it.
                self.transport.abort()
                raise ClientDisconnected from None
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # A denial response (503 when full, say) is a whole answer. uvicorn's sans-io
            # protocol only counts an accept as one, and would log "ASGI callable returned
            # without completing handshake" as an error for every refused socket.
            self.handshake_complete = True


# The timeouts ride on uvicorn's Config, which worker processes receive pickled.
HEADER_TIMEOUT = "statesync_header_timeout"
SEND_TIMEOUT = "statesync_send_timeout"
APP_FACTORY = "statesync.app:app_from_environment"


def config(app: ASGIApp | str, settings: Settings, *, host: str | None = None,
           port: int | None = None, **options: Any) -> uvicorn.Config:
    """``app`` may be an import string (of a factory, with ``factory=True``), which
    ``workers`` > 1 needs: each worker process builds its own app."""
    made = uvicorn.Config(
        app, host=settings.host if host is None else host,
        port=settings.port if port is None else port,
        http=GuardedHttpTools, ws=GuardedWebSocket,
        # permessage-deflate costs more CPU and memory per connection than it saves on
        # small JSON frames; off unless measured otherwise.
        ws_per_message_deflate=False,
        ws_max_size=settings.max_message_bytes,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's loggers propagate to statesync's one handler (logs.py)
        **options,
    )
    setattr(made, HEADER_TIMEOUT, settings.http_header_timeout)
    setattr(made, SEND_TIMEOUT, settings.ws_send_timeout)
    return made
