"""The ASGI app: GraphQL over HTTP and websockets, with the feed running beside it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from statesync import logs, metrics
from statesync.api.edge import OriginGuard, dev_token_route, edge_middleware
from statesync.api.gateway import Gateway
from statesync.api.http import GraphQLHTTP, RequestGuard
from statesync.api.limits import QueryLimits
from statesync.api.operations import OperationCache
from statesync.api.permissions import PermissionCheck
from statesync.api.persisted import PersistedQueries
from statesync.api.quotas import Quotas
from statesync.api.schema import build_schema
from statesync.api.ws.endpoint import GraphQLWebSocket
from statesync.auth.credentials import Authenticator
from statesync.config import Settings
from statesync.demo.seed import seed_when_listening
from statesync.errors import StatesyncError
from statesync.eventing import reads as eventing_reads
from statesync.eventing.lifecycle import Status
from statesync.fair import FairSlots
from statesync.feed.bus import listen
from statesync.feed.channels import Channels
from statesync.feed.hub import Hub
from statesync.feed.sequencer import Sequencer
from statesync.loader import load_models
from statesync.models import ModelSpec
from statesync.pacing import Pacer
from statesync.relations import Relations
from statesync.runtime import Runtime
from statesync.store import reads
from statesync.store.commits import model_table
from statesync.store.engines import async_engine
from statesync.supervision import Supervisor
from statesync.web import demo_fits, static_routes

log = logging.getLogger(__name__)

HUB_START_TIMEOUT = 15.0
# The feed's own connections: the sequencer's (it holds the role's advisory lock) and the
# hub's catch-ups and refills, with room for one reconnect overlapping the old one.
FEED_POOL_SIZE = 3

# A task to run beside the API, supervised with its own (the relay, in `statesync dev`):
# given the settings, it opens what it needs and yields the coroutine function to run.
Companion = Callable[[Settings], AbstractAsyncContextManager[Callable[[], Awaitable[None]]]]


def query_limits(settings: Settings) -> QueryLimits:
    return QueryLimits(
        max_tokens=settings.max_query_tokens, max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases, max_directives=settings.max_directives,
        max_root_fields=settings.max_root_fields, max_field_repeats=settings.max_field_repeats,
        max_cost=settings.max_query_cost, max_input_depth=settings.max_input_depth,
        max_input_values=settings.max_input_values,
        default_page_size=settings.default_page_size, max_page_size=settings.max_page_size,
    )


@contextlib.asynccontextmanager
async def running(settings: Settings, specs: list[ModelSpec], *,
                  companions: Mapping[str, Companion] | None = None,
                  supervisor: Supervisor | None = None) -> AsyncIterator[Runtime]:
    """Engines, Redis, hub, sequencer and bus listener, and any ``companions``; the
    background tasks supervised (restarted, never fatal) in one TaskGroup that ends with
    the app."""
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("STATESYNC_DATABASE_URL and STATESYNC_REDIS_URL must be set "
                           "(or run `statesync dev`, which embeds both)")
    supervisor = supervisor or Supervisor()
    engine = async_engine(settings.database_url, pool_size=settings.db_pool_size, max_overflow=0,
                          pool_timeout=settings.db_pool_timeout)
    feed_engine = async_engine(settings.database_url, pool_size=FEED_POOL_SIZE, max_overflow=0)
    redis = aioredis.Redis.from_url(settings.redis_url, health_check_interval=10)
    channels = Channels(settings.channel_prefix)
    hub = Hub(feed_engine, Relations.of(specs))
    sequencer = Sequencer(feed_engine, redis, channels, settings.feed_poll_interval,
                          on_sequenced=hub.offer_sequenced)
    runtime = Runtime(settings, engine, feed_engine, redis, channels, hub, sequencer,
                      model_table(specs), Pacer(settings.bulk_work_share),
                      snapshot_slots=FairSlots(settings.max_concurrent_snapshots))
    try:
        async with contextlib.AsyncExitStack() as companions_running, asyncio.TaskGroup() as group:
            supervisor.start(group, "sequencer", sequencer.run)
            supervisor.start(group, "feed-listener", lambda: listen(
                redis, channels, hub, sequencer, runtime.delivery_changes,
                settings.feed_poll_interval))
            for name, companion in (companions or {}).items():
                supervisor.start(group, name,
                                 await companions_running.enter_async_context(companion(settings)))
            try:
                async with asyncio.timeout(HUB_START_TIMEOUT):
                    await hub.ready.wait()
                # What startup built (modules, the schema, the ORM's metadata) lives as long
                # as the process: frozen (about 150k objects), it is no longer walked by
                # every full collection; under the soak mix the longest pause went from 314
                # to about 200 ms.
                gc.collect()
                gc.freeze()
                yield runtime
            finally:
                supervisor.cancel()
    finally:
        await redis.aclose()
        await engine.dispose()
        await feed_engine.dispose()


async def scrape_state(runtime: Runtime) -> None:
    """The figures ``/metrics`` reads from PostgreSQL and the feed when it is scraped."""
    async with runtime.connect() as connection:
        head, _ = await reads.feed_bounds(connection)
        unrelayed, by_status = await eventing_reads.backlog(connection)
    metrics.FEED_HEAD.set(head)
    metrics.FEED_LAG.set(max(0, head - (runtime.hub.last or 0)))
    metrics.OUTBOX_BACKLOG.set(unrelayed)
    for status in Status:
        metrics.DELIVERIES.labels(str(status)).set(by_status.get(status, 0))


def create_app(settings: Settings | None = None, specs: list[ModelSpec] | None = None, *,
               companions: Mapping[str, Companion] | None = None,
               seed_demo: bool = False) -> Starlette:
    """The API. ``seed_demo``: once listening, commit the demo catalog through the Python
    client (`statesync dev` does, when the demo page is on and the schema fits it)."""
    settings = settings or Settings()
    specs = specs if specs is not None else load_models(settings.schema_path)
    schema = build_schema(specs)
    graphql_schema = schema._schema
    authenticator = Authenticator(settings)
    if settings.open_access:
        log.warning("OPEN ACCESS: requests without credentials act as the admin "
                    "(STATESYNC_OPEN_ACCESS); never expose this API to untrusted clients")
    elif not authenticator.configured:
        log.warning("no credentials are configured (STATESYNC_ADMIN_SECRET, STATESYNC_JWT_*): "
                    "every request is anonymous")
    runtime_ref: dict[str, Runtime] = {}
    supervisor = Supervisor()

    def runtime() -> Runtime:
        return runtime_ref["runtime"]

    gateway = Gateway(
        schema=graphql_schema,
        operations=OperationCache(graphql_schema, query_limits(settings),
                                  settings.operation_cache_bytes,
                                  hide_suggestions=not settings.suggestions),
        permissions=PermissionCheck(graphql_schema, specs,
                                    introspection_for_all=settings.introspection == "all"),
        authenticator=authenticator, rules={spec.name: spec.rules() for spec in specs},
        quotas=Quotas(settings), runtime=runtime, hide_suggestions=not settings.suggestions,
        persisted=PersistedQueries(settings.operation_cache_bytes),
    )
    http = GraphQLHTTP(gateway, graphiql=settings.graphiql)
    websockets = GraphQLWebSocket(gateway)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(settings, specs, companions=companions, supervisor=supervisor) as ready:
            runtime_ref["runtime"] = app.state.runtime = ready
            seeding = (asyncio.create_task(seed_when_listening(settings), name="demo-seed")
                       if seed_demo and settings.demo and demo_fits(specs) else None)
            yield
            if seeding is not None:
                seeding.cancel()

    async def healthz(request: Request) -> Response:
        current = runtime_ref.get("runtime")
        ready = current is not None and current.hub.ready.is_set()
        body: dict[str, Any] = {
            "ok": ready, "sequencer": bool(current and current.sequencer.active),
            "subscriptions": current.hub.subscriber_count if current else 0,
            "websockets": websockets.open,
            "restarts": {name: s.restarts for name, s in supervisor.tasks.items() if s.restarts},
        }
        return Response(orjson.dumps(body), 200 if ready else 503, media_type="application/json")

    async def metrics_page(request: Request) -> Response:
        """Prometheus text; the admin's only (the admin secret, or an admin JWT as Bearer),
        since it names models and counts everyone's traffic."""
        try:
            identity = await authenticator.identify(request.headers, None)
        except StatesyncError as exc:
            return Response(exc.message, 401, headers={"www-authenticate": "Bearer"})
        if not identity.is_admin:
            return Response("/metrics is the admin's", 403)
        current = runtime_ref.get("runtime")
        if current is not None:
            await scrape_state(current)
        body, content_type = metrics.exposition()
        return Response(body, 200, media_type=content_type)

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics_page),
            Route("/graphql", http),
            WebSocketRoute("/graphql", OriginGuard(websockets, settings)),
            *([dev_token_route(settings)] if settings.dev_tokens else []),
            *static_routes(specs, demo=settings.demo, graphiql=settings.graphiql,
                           console=settings.console),
        ],
        lifespan=lifespan,
        middleware=edge_middleware(settings),
    )
    app.add_middleware(RequestGuard, limit=settings.max_request_bytes, timeout=settings.http_body_timeout)
    app.state.schema = schema
    app.state.operations = gateway.operations
    app.state.gateway = gateway
    app.state.supervisor = supervisor
    return app


def app_from_environment() -> Starlette:
    """The API of ``statesync serve --workers N``: each worker process builds its own, from
    the STATESYNC_* variables the command set."""
    settings = Settings()
    logs.configure(settings)  # a fresh interpreter
    return create_app(settings)
