"""Test clients: GraphQL over HTTP, and graphql-transport-ws over a real websocket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import orjson
import websockets

STATESYNC_TABLES = ("statesync_documents", "statesync_changes", "statesync_outbox",
                    "statesync_mutations")
T = TypeVar("T")
WAIT = 10.0  # seconds any single expected event may take before the test fails


class GraphQLClient:
    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=base_url, timeout=WAIT, headers=headers)

    async def raw(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post("/graphql", json={"query": query, "variables": variables or {}})
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``data`` of a response that must have no errors."""
        body = await self.raw(query, variables)
        assert "errors" not in body, body
        result: dict[str, Any] = body["data"]
        return result

    async def error(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The single error of a response that must fail."""
        body = await self.raw(query, variables)
        assert body.get("errors"), body
        assert len(body["errors"]) == 1, body
        error: dict[str, Any] = body["errors"][0]
        return error

    async def aclose(self) -> None:
        await self.http.aclose()


class Subscriptions:
    """One graphql-transport-ws connection carrying any number of subscriptions."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = defaultdict(asyncio.Queue)
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, ws_url: str, payload: dict[str, Any] | None = None
                      ) -> AsyncIterator[Subscriptions]:
        async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                                      compression=None, max_size=None) as ws:
            init: dict[str, Any] = {"type": "connection_init"}
            if payload is not None:
                init["payload"] = payload
            await ws.send(orjson.dumps(init).decode())
            ack = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert ack["type"] == "connection_ack", ack
            client = cls(ws)
            client._reader = asyncio.create_task(client._read())
            try:
                yield client
            finally:
                client._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await client._reader

    async def _read(self) -> None:
        async for raw in self.ws:
            message = orjson.loads(raw)
            if message["type"] == "ping":
                await self.ws.send(orjson.dumps({"type": "pong"}).decode())
            elif "id" in message:
                await self._queues[message["id"]].put(message)

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        op_id = str(next(self._ids))
        await self.ws.send(orjson.dumps({"id": op_id, "type": "subscribe", "payload": {
            "query": query, "variables": variables or {}}}).decode())
        return op_id

    async def message(self, op_id: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next protocol message for ``op_id`` (next, error or complete)."""
        return await asyncio.wait_for(self._queues[op_id].get(), timeout)

    async def next(self, op_id: str, timeout: float = WAIT) -> dict[str, Any]:
        """The data of the next ``next`` message, which must carry no errors."""
        message = await self.message(op_id, timeout)
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        data: dict[str, Any] = next(iter(message["payload"]["data"].values()))
        return data

    def pending(self, op_id: str) -> int:
        return self._queues[op_id].qsize()

    async def complete(self, op_id: str) -> None:
        await self.ws.send(orjson.dumps({"id": op_id, "type": "complete"}).decode())


async def row_counts(database_url: str) -> dict[str, int]:
    """Rows in each of statesync's tables: a write that must change nothing keeps these."""
    connection = await asyncpg.connect(database_url)
    try:
        return {t: await connection.fetchval(f"SELECT count(*) FROM {t}") for t in STATESYNC_TABLES}
    finally:
        await connection.close()


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 20, what: str = "") -> T:
    """Re-check every ~50 ms until ``check`` returns something truthy; fail at the deadline.

    For state that changes in another process (a worker, a relay), where there is no
    event to await: this waits for the state with a deadline, it does not sleep blindly."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}; "
                                 f"last result: {result!r}")
        await asyncio.sleep(0.05)


class ProcessUnderTest:
    """A real statesync or Celery process in its own process group: its output collected,
    ``ready_when`` (a substring of a line) awaited, and stopped or killed with -9 whole."""

    ready_when = ""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            list(args), env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if self.ready_when and self.ready_when in line:
                self._ready.set()

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    async def ready(self, timeout: float = 60.0) -> None:
        ok = await asyncio.to_thread(self._ready.wait, timeout)
        assert ok, f"{self.ready_when!r} never came:\n" + "".join(self.lines[-40:])

    def kill(self) -> None:
        """kill -9 the whole process group (a Celery worker's pool included)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(5)
