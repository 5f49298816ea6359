"""GraphQL over HTTP (POST and GET), as the graphql-over-http draft describes it.

Every answer is JSON with coded errors, whatever the request: a body that is not JSON,
not an object, nested too deep, not UTF-8, or has no query is ``BAD_REQUEST`` (400);
nothing reaches a resolver before the whole operation passed
:mod:`statesync.api.operations`. ``application/json`` answers well-formed requests with
200, as the draft requires for it; a client that asks for
``application/graphql-response+json`` gets 400 for a request that could not run. A client
that asks for ``text/event-stream`` gets every operation, subscriptions included, as
server-sent events (:mod:`statesync.api.sse`); one that asks for Apollo's
``multipart/mixed;subscriptionSpec=1.0`` gets its subscriptions as multipart parts
(:mod:`statesync.api.multipart`) and everything else as JSON.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from graphql import ExecutionResult, OperationType
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from statesync.api import http_streams, multipart, sse, wire
from statesync.api.errors import refusal
from statesync.api.execution import check_variables, error_result, execute, subscribe
from statesync.api.gateway import Gateway
from statesync.api.operations import Rejected
from statesync.errors import BadRequest, Forbidden, StatesyncError, Unauthenticated
from statesync.graphiql import offline_page
from statesync.logs import OPERATION

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"


class GraphQLHTTP:
    def __init__(self, gateway: Gateway, *, graphiql: bool) -> None:
        self.gateway = gateway
        self.graphiql = offline_page() if graphiql else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.respond(request)
        await response(scope, receive, send)

    async def respond(self, request: Request) -> Response:
        gateway = self.gateway
        media = _media_type(request.headers.get("accept", ""))
        if request.method not in ("GET", "POST"):
            refused = BadRequest("GraphQL is served over GET and POST")
            return _answer(error_result(refused), media, 405, {"allow": "GET, POST"})
        if request.method == "GET" and "query" not in request.query_params \
                and "extensions" not in request.query_params \
                and _wants_html(request.headers.get("accept", "")):
            if self.graphiql is None:
                return _answer(error_result(BadRequest("not found")), JSON, 404)
            return HTMLResponse(self.graphiql)
        try:
            params = await _params(request)
        except StatesyncError as exc:
            return _answer(error_result(exc), media, 400)
        try:
            identity = await gateway.authenticator.identify(
                request.headers, request.client.host if request.client else None)
        except Unauthenticated as exc:
            return _answer(error_result(exc), media, 401, {"www-authenticate": "Bearer"})
        except Forbidden as exc:  # a role the identity does not have
            return _answer(error_result(exc), media, 403)
        runtime = gateway.runtime()
        limits = gateway.operations.limits
        accept = request.headers.get("accept", "")
        event_stream = sse.EventStream() if sse.wants_event_stream(accept) else None
        framing: http_streams.Framing | None = event_stream
        if framing is None and multipart.wants_multipart_subscription(accept):
            framing = multipart.MultipartSubscription()

        def refuse(result: ExecutionResult, status: int) -> Response:
            # Over SSE, the protocol answers what could not run on the stream itself.
            if event_stream is not None:
                return http_streams.answer(result, event_stream)
            return _answer(result, media, status)

        try:
            query, digest = gateway.persisted.query(params.get("query"), params.get("extensions"))
            prepared = await gateway.operations.prepared(query, params.get("operationName"),
                                                         runtime.pacer, identity.key)
            if digest is not None:
                gateway.persisted.keep(digest, query)  # only what prepared cleanly
            variables = check_variables(params.get("variables"), limits.max_input_depth,
                                        limits.max_input_values)
        except Rejected as rejected:
            # application/json answers a well-formed request that cannot run (it does not
            # parse or validate) with 200, as the spec asks; a malformed one (no query,
            # variables that are not an object) with 400, as graphql-response+json does both.
            malformed = (rejected.errors[0].extensions or {}).get("code") == BadRequest.code
            return refuse(ExecutionResult(None, rejected.errors),
                          400 if media == GRAPHQL_RESPONSE or malformed else 200)
        except StatesyncError as exc:
            return refuse(error_result(exc),
                          400 if media == GRAPHQL_RESPONSE or isinstance(exc, BadRequest) else 200)
        OPERATION.set(prepared.name)  # this request's task: its later log lines name it
        if prepared.kind is OperationType.SUBSCRIPTION and framing is None:
            refused = BadRequest("subscriptions run over a websocket (graphql-transport-ws), "
                                 "as server-sent events (Accept: text/event-stream) or as "
                                 "multipart parts (Accept: multipart/mixed;subscriptionSpec=1.0)")
            return _answer(error_result(refused), media, 400)
        if prepared.kind is OperationType.MUTATION and request.method == "GET":
            refused = BadRequest("mutations are not allowed over GET; use POST")
            return _answer(error_result(refused), media, 405, {"allow": "POST"})
        context = gateway.context(request, identity)
        forbidden = gateway.permissions.errors(prepared, context.access)
        if forbidden:
            return refuse(ExecutionResult(None, forbidden),
                          403 if media == GRAPHQL_RESPONSE else 200)
        if prepared.kind is OperationType.SUBSCRIPTION and framing is not None:
            return http_streams.subscription(
                lambda: subscribe(gateway.schema, prepared, variables, context,
                                  hide_suggestions=gateway.hide_suggestions),
                lambda: context.quotas.subscription(identity), identity.expires_at,
                runtime.settings.jwt_leeway, framing)
        with runtime.pacer.request():
            result = await execute(gateway.schema, prepared, variables, context,
                                   hide_suggestions=gateway.hide_suggestions)
        if event_stream is not None:
            return http_streams.answer(result, event_stream)
        status = 200
        if media == GRAPHQL_RESPONSE and result.data is None and result.errors:
            status = 400  # variables that do not coerce: the request never ran
        return _answer(result, media, status)


async def _params(request: Request) -> dict[str, Any]:
    if request.method == "GET":
        params: dict[str, Any] = dict(request.query_params)
        for name in ("variables", "extensions"):  # JSON in a query parameter
            if params.get(name):
                params[name] = _json(params[name].encode(), name)
        return params
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != JSON:
        raise BadRequest(f"the body must be {JSON}, not {content_type or 'unlabelled'}")
    body = _json(await request.body(), "the body")
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with a `query`")
    return body


def _json(raw: bytes, what: str) -> Any:
    try:
        return wire.decode(raw)
    except wire.Undecodable as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None


def _media_type(accept: str) -> str:
    """graphql-response+json when the client lists it before plain JSON (or alone)."""
    listed = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if GRAPHQL_RESPONSE in listed and (JSON not in listed
                                       or listed.index(GRAPHQL_RESPONSE) < listed.index(JSON)):
        return GRAPHQL_RESPONSE
    return JSON


def _wants_html(accept: str) -> bool:
    return "text/html" in accept or "*/*" in accept


def _answer(result: ExecutionResult, media: str, status: int,
            headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(http_streams.response_body(result)), status, headers,
                    media_type=media)


class RequestGuard:
    """Bodies over ``limit`` bytes are refused (413) before any of it is parsed, and a
    body must arrive whole within ``timeout`` seconds (408): a client trickling bytes
    keeps no request open for long."""

    def __init__(self, app: ASGIApp, limit: int, timeout: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send, 413)
            return
        received = 0
        deadline = asyncio.get_running_loop().time() + self.timeout
        done = False

        async def guarded_receive() -> Message:
            nonlocal received, done
            if done:  # the body is in: what follows is a disconnect, waited for by Starlette
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _Refused(408) from None
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _Refused(413)
            done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        try:
            await self.app(scope, guarded_receive, send)
        except _Refused as refused:
            await self._refuse(scope, send, refused.status)

    async def _refuse(self, scope: Scope, send: Send, status: int) -> None:
        if status == 413:
            error = refusal(f"request body over {self.limit} bytes", "PAYLOAD_TOO_LARGE",
                            limit=self.limit)
        else:
            error = refusal(f"the request body did not arrive within {self.timeout}s",
                            "REQUEST_TIMEOUT")
        response = Response(orjson.dumps({"errors": [error]}), status,
                            {"connection": "close"}, media_type=JSON)

        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, nothing, send)


class _Refused(Exception):
    def __init__(self, status: int) -> None:
        self.status = status
