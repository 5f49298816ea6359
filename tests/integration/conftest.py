"""What the eventing suites share: a connection to the test's database, real
`statesync relay` processes, and events committed straight through the commit path."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from statesync.config import Settings, asyncpg_url, environment
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


async def emit_events(settings: Settings, keys: list[str], event_type: str = "Load.tick") -> None:
    """One custom event per key, committed in one transaction."""
    engine = create_async_engine(asyncpg_url(settings.database_url or ""))
    try:
        async with engine.begin() as connection:
            for key in keys:
                await run_async(connection, emit_steps(event_type, key, {"key": key}))
    finally:
        await engine.dispose()
