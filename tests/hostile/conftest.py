"""A real `statesync serve` process for the hostile suites, with the demo models and a
test-only ``Gauge`` that takes every kind of value.

It runs as a subprocess so that what a client does to it is what it would do to a
deployment: the suites check that it answers, that it writes nothing for a refused
request, and, at the end, that nothing a client sent made it log an error or a
traceback (client mistakes are answers, not server errors).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from statesync.config import Settings, environment
from tests.conftest import ROOT, _admin, _with_database
from tests.support import STATESYNC_TABLES, WAIT, ProcessUnderTest

HERE = Path(__file__).resolve().parent


class ApiProcess(ProcessUnderTest):
    ready_when = "Application startup complete"

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self._ready.wait(timeout), "".join(self.lines[-40:])

    def problems(self) -> list[str]:
        """Lines a client's mistake must never cause: errors and tracebacks."""
        return [line for line in self.lines
                if "Traceback" in line or " ERROR " in line or "CRITICAL" in line]


@dataclass
class Api:
    base_url: str
    ws_url: str
    database_url: str
    process: ApiProcess
    settings: Settings
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=WAIT)

    def post(self, body: bytes | dict[str, Any], **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return self.http.post("/graphql", content=content,
                              headers={"content-type": "application/json", **headers})

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = self.post({"query": query, "variables": variables or {}}).json()
        return body

    def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = self.graphql(query, variables)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    def state(self) -> dict[str, int]:
        """Rows of every statesync table and the feed head: what a refused request keeps.
        Read once the sequencer has numbered every committed change, so that an earlier
        accepted commit is not mistaken for this request's."""
        deadline = time.monotonic() + WAIT
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            while connection.execute(  # another process's progress: polled, with a deadline
                    "SELECT count(*) FROM statesync_changes WHERE cursor IS NULL").fetchone() != (0,):
                assert time.monotonic() < deadline, "the sequencer did not catch up"
                time.sleep(0.02)
            counts = {t: connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                      for t in STATESYNC_TABLES}
            head = connection.execute("SELECT cursor FROM statesync_feed_head").fetchone()
        return {**counts, "feed_head": head[0] if head else 0}

    def healthy(self) -> bool:
        return self.process.process.poll() is None and self.http.get("/healthz").status_code == 200


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def hostile_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-schema")
    shutil.copy(ROOT / "schema" / "shop.py", folder / "shop.py")
    shutil.copy(HERE / "schema" / "gauge.py", folder / "gauge.py")
    return folder


@pytest.fixture(scope="module")
def module_database(admin_database_url: str, template_database: str) -> Iterator[str]:
    name = f"statesync_hostile_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(admin_database_url, f"CREATE DATABASE {name} TEMPLATE {template_database}"))
    try:
        yield _with_database(admin_database_url, name)
    finally:
        asyncio.run(_admin(admin_database_url, f"DROP DATABASE {name} WITH (FORCE)"))


def start_api(database_url: str, redis_url: str, schema: Path, **overrides: Any) -> Api:
    port = _free_port()
    settings = Settings(
        database_url=database_url, redis_url=redis_url, schema_path=schema, port=port,
        channel_prefix=f"hostile-{uuid.uuid4().hex[:12]}", feed_poll_interval=0.2,
        workers_path=ROOT / "workers", graphiql=False, db_pool_size=8, log_level="INFO",
        open_access=True, introspection="all",
        _env_file=None,  # type: ignore[call-arg]
        **overrides,
    )
    process = ApiProcess([sys.executable, "-m", "statesync", "serve"],
                         environment(settings, os.environ), ROOT)
    process.wait_ready()
    return Api(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/graphql", database_url,
               process, settings)


def stop_api(api: Api) -> None:
    healthy = api.healthy()
    api.http.close()
    api.process.stop()
    assert healthy, "the API stopped serving:\n" + "".join(api.process.lines[-60:])
    problems = api.process.problems()
    assert not problems, "client input made the server log errors:\n" + "".join(
        api.process.lines[-200:])


@pytest.fixture(scope="module")
def api(module_database: str, redis_url: str, hostile_schema: Path) -> Iterator[Api]:
    started = start_api(module_database, redis_url, hostile_schema)
    yield started
    stop_api(started)
