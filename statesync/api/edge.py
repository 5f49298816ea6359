"""The edge: which hosts, origins and browsers may reach the API, and dev tokens.

- **Host**: a request whose ``Host`` header is not in ``allowed_hosts`` is refused (400),
  websockets included. That is what stops DNS rebinding: a page on ``evil.example`` that
  resolves its name to 127.0.0.1 still sends ``Host: evil.example``.
- **Origin**: browsers may call the API from the origins in ``cors_origins`` (CORS for
  HTTP, and the same list for websockets, which CORS does not cover); a websocket from
  another origin is refused (403). Non-browser clients send no ``Origin`` and pass.
- **Dev tokens**: with ``dev_tokens`` (`statesync dev`), ``POST /dev/token`` mints a token
  for any user and role, for the demo board and local testing.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import orjson
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from statesync.api.errors import refusal
from statesync.auth.dev import mint
from statesync.config import Settings, listed
from statesync.errors import BadInput
from statesync.logs import REQUEST_ID
from statesync.values import check_id

CLIENT_HEADERS = ["authorization", "content-type", "x-statesync-role", "x-statesync-admin-secret",
                  "x-hasura-role", "x-hasura-admin-secret", "x-request-id"]


def host_of(header: str) -> str:
    """``example.com:8000`` → ``example.com``; ``[::1]:8000`` → ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(host: str, allowed: list[str]) -> bool:
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == "*" or pattern == host or (
                pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return False


class HostGuard:
    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if host_allowed(host_of(header), self.allowed):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await WebSocket(scope, receive, send).close(1008)  # before accept: a 403
            return
        body = {"errors": [refusal("this Host is not served here (allowed_hosts)", "BAD_REQUEST")]}
        await Response(orjson.dumps(body), 400, media_type="application/json")(scope, receive, send)


class OriginGuard:
    """Websockets from a browser on another origin than the API's, and not in ``cors_origins``,
    are refused before the upgrade."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.origins = [o.rstrip("/").lower() for o in listed(settings.cors_origins)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        origin = headers.get(b"origin", b"").decode("latin-1").rstrip("/").lower()
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if not origin or "*" in self.origins or origin in self.origins \
                or urlsplit(origin).netloc == host:
            await self.app(scope, receive, send)
            return
        await WebSocket(scope, receive, send).close(1008)


REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class RequestIds:
    """Every request and websocket gets an id: the client's ``X-Request-Id`` when it is a
    sane one, else a new one. It is in every log line logged while serving it
    (``statesync.logs``), and an HTTP answer carries it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = given.decode() if _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (REQUEST_ID_HEADER, request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
        finally:
            REQUEST_ID.reset(token)


def edge_middleware(settings: Settings) -> list[Middleware]:
    middleware = [Middleware(RequestIds), Middleware(HostGuard, allowed=listed(settings.allowed_hosts))]
    origins = listed(settings.cors_origins)
    if origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                                     allow_headers=CLIENT_HEADERS, max_age=600))
    return middleware


def dev_token_route(settings: Settings) -> Route:
    async def dev_token(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
            user = check_id(str(body["user"]), "user", settings.max_id_length)
            role = check_id(str(body.get("role", "user")), "role", settings.max_id_length)
        except (orjson.JSONDecodeError, KeyError, TypeError, BadInput) as exc:
            return Response(orjson.dumps({"errors": [refusal(f"want {{user, role}}: {exc}",
                                                             "BAD_REQUEST")]}),
                            400, media_type="application/json")
        return Response(orjson.dumps({"token": mint(settings, user, role)}),
                        media_type="application/json")

    return Route("/dev/token", dev_token, methods=["POST"])
