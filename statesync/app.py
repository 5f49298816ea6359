"""The ASGI app: GraphQL over HTTP and websockets, with the feed running beside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis.asyncio as aioredis
from cross_web import HTTPException
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from statesync.api.errors import coded
from statesync.api.schema import build_schema
from statesync.config import Settings, asyncpg_url
from statesync.demo.seed import seed_when_listening
from statesync.feed.bus import listen
from statesync.feed.channels import Channels
from statesync.feed.hub import Hub
from statesync.feed.sequencer import Sequencer
from statesync.loader import load_models
from statesync.models import ModelSpec
from statesync.runtime import Runtime
from statesync.store.commits import Model
from statesync.validation import Validator
from statesync.web import demo_fits, static_routes

log = logging.getLogger(__name__)

HUB_START_TIMEOUT = 15.0


class StatesyncGraphQL(GraphQL[dict[str, Any], None]):
    def __init__(self, runtime_ref: dict[str, Runtime], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._runtime_ref = runtime_ref

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:  # no query, a body that is not JSON, a wrong method
            body = {"errors": [{"message": exc.reason, "extensions": {"code": "BAD_REQUEST"}}]}
            response = JSONResponse(body, status_code=exc.status_code)
        await response(scope, receive, send)

    def encode_json(self, data: object) -> str:
        # Every websocket frame and HTTP answer passes here: orjson is ~10x json.dumps.
        return orjson.dumps(data).decode()

    async def process_result(self, request: Request, result: Any) -> Any:
        # Parse failures never reach the schema's extensions; code them here too.
        if result.errors:
            result.errors = [coded(e) for e in result.errors]
        return await super().process_result(request, result)

    async def get_context(self, request: Request | WebSocket, response: Any = None
                          ) -> dict[str, Any]:
        return {"request": request, "response": response, "runtime": self._runtime_ref["runtime"]}


class BodyLimit:
    """Refuse request bodies over the limit before any of it is parsed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = {"errors": [{"message": f"request body over {self.limit} bytes",
                            "extensions": {"code": "PAYLOAD_TOO_LARGE", "limit": self.limit}}]}
        await JSONResponse(body, status_code=413)(scope, receive, send)


class _TooLarge(Exception):
    pass


def model_table(specs: list[ModelSpec]) -> dict[str, Model]:
    return {spec.name: Model(spec, Validator(spec.cls)) for spec in specs}


@contextlib.asynccontextmanager
async def running(settings: Settings, specs: list[ModelSpec], *, with_relay: bool = False
                  ) -> AsyncIterator[Runtime]:
    """Engine, Redis, hub, sequencer and bus listener, watched: if one dies, we stop loudly."""
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("STATESYNC_DATABASE_URL and STATESYNC_REDIS_URL must be set "
                           "(or run `statesync dev`, which embeds both)")
    engine = create_async_engine(asyncpg_url(settings.database_url),
                                 pool_size=settings.db_pool_size, max_overflow=0)
    redis = aioredis.Redis.from_url(settings.redis_url, health_check_interval=10)
    channels = Channels(settings.channel_prefix)
    hub = Hub(engine)
    sequencer = Sequencer(engine, redis, channels, settings.feed_poll_interval)
    runtime = Runtime(settings, engine, redis, channels, hub, sequencer, model_table(specs))
    tasks = [
        asyncio.create_task(sequencer.run(), name="sequencer"),
        asyncio.create_task(listen(redis, channels, hub, sequencer, runtime.delivery_changes,
                                   settings.feed_poll_interval),
                            name="feed-listener"),
    ]
    if with_relay:
        from statesync.relay import build_relay

        tasks.append(asyncio.create_task(build_relay(settings, engine).run(), name="relay"))
    for task in tasks:
        task.add_done_callback(_crash_if_failed)
    try:
        async with asyncio.timeout(HUB_START_TIMEOUT):
            await hub.ready.wait()
        yield runtime
    finally:
        for task in tasks:
            task.remove_done_callback(_crash_if_failed)
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await redis.aclose()
        await engine.dispose()


def _crash_if_failed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("background task %s died; stopping", task.get_name(),
                     exc_info=task.exception())
        raise SystemExit(f"statesync: {task.get_name()} died")


def create_app(settings: Settings | None = None, specs: list[ModelSpec] | None = None, *,
               with_relay: bool = False, seed_demo: bool = False) -> Starlette:
    """The API. ``seed_demo``: once listening, commit the demo catalog through the Python
    client (`statesync dev` does, when the demo page is on and the schema fits it)."""
    settings = settings or Settings()
    specs = specs if specs is not None else load_models(settings.schema_path)
    schema = build_schema(specs)
    runtime_ref: dict[str, Runtime] = {}
    graphql = StatesyncGraphQL(
        runtime_ref, schema=schema, graphql_ide="graphiql" if settings.graphiql else None,
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL],
        keep_alive=True, keep_alive_interval=15,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(settings, specs, with_relay=with_relay) as runtime:
            runtime_ref["runtime"] = app.state.runtime = runtime
            seeding = (asyncio.create_task(seed_when_listening(settings), name="demo-seed")
                       if seed_demo and settings.demo and demo_fits(specs) else None)
            yield
            if seeding is not None:
                seeding.cancel()

    async def healthz(request: Request) -> Response:
        runtime = runtime_ref.get("runtime")
        ready = runtime is not None and runtime.hub.ready.is_set()
        body = {"ok": ready, "sequencer": bool(runtime and runtime.sequencer.active),
                "subscriptions": runtime.hub.subscriber_count if runtime else 0}
        return Response(orjson.dumps(body), 200 if ready else 503, media_type="application/json")

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            *static_routes(specs, demo=settings.demo),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    app.state.schema = schema
    return app
