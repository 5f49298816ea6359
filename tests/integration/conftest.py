"""What the eventing suites share: a connection to the test's database, real
`statesync relay` processes, a relay to pump by hand, and events committed straight
through the commit path."""

from __future__ import annotations

import base64
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import create_async_engine

from statesync.config import Settings, asyncpg_url, environment
from statesync.eventing.broker import Pair
from statesync.eventing.entry import build_relay
from statesync.eventing.relay import Relay
from statesync.eventing.tasks import DELIVER, DELIVER_MANY
from statesync.store.commits import emit_steps, run_async
from tests.conftest import ROOT
from tests.support import ProcessUnderTest


class RelayProcess(ProcessUnderTest):
    """A real `statesync relay` process (the production entry point), killable with -9."""

    ready_when = "relay active"

    def __init__(self, settings: Settings) -> None:
        super().__init__([sys.executable, "-m", "statesync", "relay"],
                         environment(settings, os.environ), ROOT)

    @property
    def active(self) -> bool:
        """It logged taking the role (it never logs giving it up: it dies or loses PostgreSQL)."""
        return self.is_ready


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(settings.database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def start_relay() -> Iterator[Callable[[Settings], RelayProcess]]:
    started: list[RelayProcess] = []

    def start(settings: Settings) -> RelayProcess:
        started.append(RelayProcess(settings))
        return started[-1]

    try:
        yield start
    finally:
        for relay in started:
            relay.stop()


@contextlib.asynccontextmanager
async def pumped_relay(settings: Settings) -> AsyncIterator[Relay]:
    """A relay in this process, for a test to run its rounds itself (``pump``)."""
    engine = create_async_engine(asyncpg_url(settings.database_url or ""), pool_size=2)
    relay = build_relay(settings, engine)
    try:
        yield relay
    finally:
        relay.broker.close()  # type: ignore[attr-defined]
        await engine.dispose()


def decode_tasks(messages: list[bytes]) -> list[tuple[str, list[Pair]]]:
    """Delivery tasks as the broker holds them: each one's name and its deliveries."""
    found = []
    for message in messages:
        decoded = orjson.loads(message)
        args = orjson.loads(base64.b64decode(decoded["body"]))[0]
        name = decoded["headers"]["task"]
        assert name in (DELIVER, DELIVER_MANY), decoded["headers"]
        found.append((name, [(args[0], args[1])] if name == DELIVER
                      else [(event_id, handler) for event_id, handler in args[0]]))
    return found


async def queued_tasks(settings: Settings) -> list[tuple[str, list[Pair]]]:
    """The delivery tasks in the test's queue, oldest first; the queue is emptied."""
    broker = aioredis.Redis.from_url(settings.redis_url or "")
    try:
        raw = await broker.lrange(settings.queue, 0, -1)
        await broker.delete(settings.queue)
    finally:
        await broker.aclose()
    return decode_tasks(list(reversed(raw)))  # kombu pushes on the left: the oldest is last


async def emit_events(settings: Settings, keys: list[str], event_type: str = "Load.tick") -> None:
    """One custom event per key, committed in one transaction."""
    engine = create_async_engine(asyncpg_url(settings.database_url or ""))
    try:
        async with engine.begin() as connection:
            for key in keys:
                await run_async(connection, emit_steps(event_type, key, {"key": key}))
    finally:
        await engine.dispose()
