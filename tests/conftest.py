"""Real services for every test: PostgreSQL, Redis, the API on a real socket.

By default PostgreSQL and Redis are embedded (the same wheels `statesync dev`
uses). Set STATESYNC_TEST_DATABASE_URL (a database the tests may CREATE
DATABASE from) and STATESYNC_TEST_REDIS_URL to use running servers instead.
Each test gets its own database, cloned from a migrated template, and its own
Redis channel prefix, so tests cannot see each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import uvicorn

from statesync import serving
from statesync.app import create_app
from statesync.config import Settings, environment, libpq_url
from statesync.loader import load_models
from statesync.migrate import upgrade
from statesync.models import ModelSpec
from tests.support import GraphQLClient, ProcessUnderTest

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = ROOT / ".statesync-test"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(libpq_url(url))
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def admin_database_url() -> Iterator[str]:
    url = os.environ.get("STATESYNC_TEST_DATABASE_URL")
    if url:
        yield libpq_url(url)
        return
    from statesync.embedded import start_postgres

    yield start_postgres(TEST_DATA)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("STATESYNC_TEST_REDIS_URL")
    if url:
        yield url
        return
    from statesync.embedded import redis_server

    with redis_server(tmp_path_factory.mktemp("redis"), persistent=False) as embedded_url:
        yield embedded_url


async def _admin(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def template_database(admin_database_url: str) -> str:
    name = f"statesync_template_{os.getpid()}"
    asyncio.run(_admin(admin_database_url, f"DROP DATABASE IF EXISTS {name}",
                       f"CREATE DATABASE {name}"))
    upgrade(_with_database(admin_database_url, name))
    return name


@pytest.fixture
async def database_url(admin_database_url: str, template_database: str) -> AsyncIterator[str]:
    name = f"statesync_test_{uuid.uuid4().hex[:12]}"
    await _admin(admin_database_url, f"CREATE DATABASE {name} TEMPLATE {template_database}")
    try:
        yield _with_database(admin_database_url, name)
    finally:
        await _admin(admin_database_url, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def demo_models() -> list[ModelSpec]:
    return load_models(ROOT / "schema")


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=database_url, redis_url=redis_url, schema_path=ROOT / "schema",
        channel_prefix=f"test-{uuid.uuid4().hex[:12]}", feed_poll_interval=0.2,
        queue=f"test-{uuid.uuid4().hex[:12]}", relay_poll_interval=0.2,
        workers_path=ROOT / "workers", db_pool_size=10,
        # Most suites test what the API does, as the admin; tests/access tests who may.
        open_access=True, introspection="all",
        _env_file=None,  # type: ignore[call-arg]
    )


@dataclass
class RunningServer:
    base_url: str
    ws_url: str
    settings: Settings
    server: uvicorn.Server

    @property
    def runtime(self):  # type: ignore[no-untyped-def]
        return self.server.config.app.state.runtime  # set by the test app below


@contextlib.asynccontextmanager
async def serve(settings: Settings, specs: list[ModelSpec], *, with_relay: bool = False,
                port: int = 0) -> AsyncIterator[RunningServer]:
    from statesync.eventing.entry import relay_beside

    app = create_app(settings, specs, companions={"relay": relay_beside} if with_relay else None)
    config = serving.config(app, settings, host="127.0.0.1", port=port, lifespan="on")
    config.log_level = "warning"
    server = uvicorn.Server(config)
    # Server.serve() would also install signal handlers; drive startup/shutdown directly.
    config.load()
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    assert server.started, "uvicorn did not start (see the log above)"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/graphql",
                            settings, server)
    finally:
        server.should_exit = True
        await server.shutdown()


@pytest.fixture
async def server(settings: Settings, demo_models: list[ModelSpec]) -> AsyncIterator[RunningServer]:
    async with serve(settings, demo_models) as running:
        yield running


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[GraphQLClient]:
    graphql = GraphQLClient(server.base_url)
    try:
        yield graphql
    finally:
        await graphql.aclose()


@pytest.fixture
async def eventing_server(settings: Settings, demo_models: list[ModelSpec]
                          ) -> AsyncIterator[RunningServer]:
    """The API with the outbox relay running in it (as `statesync dev` does)."""
    async with serve(settings, demo_models, with_relay=True) as running:
        yield running


class CeleryWorker(ProcessUnderTest):
    """A real `celery worker` process running statesync's handlers."""

    ready_when = " ready."

    def __init__(self, settings: Settings, *, concurrency: int = 2) -> None:
        super().__init__(
            [sys.executable, "-m", "celery", "-A", "statesync.celery_app", "worker",
             "--queues", settings.queue, "--concurrency", str(concurrency), "--loglevel", "INFO",
             "--without-mingle", "--without-gossip", "--pool", "prefork"],
            environment(settings, os.environ), ROOT)

    def children(self) -> list[int]:
        """The pool processes that run tasks."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]


@pytest.fixture
async def start_worker() -> AsyncIterator[Callable[..., Awaitable[CeleryWorker]]]:
    """Start real Celery workers for a test's settings; all are stopped at the end."""
    started: list[CeleryWorker] = []

    async def start(settings: Settings, *, concurrency: int = 2) -> CeleryWorker:
        worker = CeleryWorker(settings, concurrency=concurrency)
        started.append(worker)
        await worker.ready()
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
