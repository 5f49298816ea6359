"""The running service's shared state, built in an entry point, never at import time."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from statesync import documents as docs
from statesync import metrics
from statesync.access import ModelAccess
from statesync.config import Settings
from statesync.errors import ServiceUnavailable
from statesync.eventing.statements import notify_relay, redeliver
from statesync.fair import FairSlots
from statesync.feed.bus import wake_sequencer
from statesync.feed.channels import Channels
from statesync.feed.delivery_changes import DeliveryChanges
from statesync.feed.hub import Hub
from statesync.feed.sequencer import Sequencer
from statesync.logs import REQUEST_ID
from statesync.pacing import Pacer
from statesync.store.commits import (
    CommitResult,
    Emitted,
    Model,
    Readers,
    commit_steps,
    emit_steps,
    run_async,
    run_asyncpg,
)

COMMIT_ATTEMPTS = 3

# One line per commit at DEBUG, with its model, document, mutation and event ids.
commit_log = logging.getLogger("statesync.commits")


@dataclass(frozen=True, slots=True)
class Runtime:
    """``engine`` serves clients; ``feed_engine`` serves the sequencer and the hub, so the
    feed never waits behind client work for a connection."""

    settings: Settings
    engine: AsyncEngine
    feed_engine: AsyncEngine
    redis: aioredis.Redis
    channels: Channels
    hub: Hub
    sequencer: Sequencer
    models: Mapping[str, Model]
    pacer: Pacer
    delivery_changes: DeliveryChanges = field(default_factory=DeliveryChanges)
    # Places for snapshots and replay pages, taken in turn by identity (statesync.fair).
    snapshot_slots: FairSlots = field(default_factory=lambda: FairSlots(1))

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A client connection. A pool that frees none in ``db_pool_timeout``, or a database
        that cannot be reached, is SERVICE_UNAVAILABLE: nothing was done, and a retry (with
        the same mutationId) is safe."""
        connection = self.engine.connect()
        try:
            await connection.start()
        except sa.exc.TimeoutError:
            raise ServiceUnavailable(
                f"no database connection freed up within {self.settings.db_pool_timeout}s; retry",
                retryable=True) from None
        except (sa.exc.DBAPIError, OSError) as exc:
            raise ServiceUnavailable("the database cannot be reached; retry", retryable=True) from exc
        try:
            yield connection
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            raise ServiceUnavailable("the database connection was lost; retry (with the same "
                                     "mutationId, a commit applies once)", retryable=True) from exc
        finally:
            await connection.close()

    @contextlib.asynccontextmanager
    async def driver_transaction(self) -> AsyncIterator[Any]:
        """A transaction on the pool's bare asyncpg connection, for the commit path: the pool,
        its timeout and its error handling stay SQLAlchemy's (``connect``), the statements go
        straight to the driver."""
        async with self.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            assert raw is not None
            try:
                async with raw.transaction():
                    yield raw
            except (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, OSError) as exc:
                await connection.invalidate()
                raise ServiceUnavailable("the database connection was lost; retry (with the same "
                                         "mutationId, a commit applies once)", retryable=True) from exc

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self.connect() as connection, connection.begin():
            yield connection

    async def commit(self, write: docs.Write, *, mutation_id: str | None = None,
                     guard: ModelAccess | None = None, owner: str | None = None,
                     readers: Readers | None = None) -> CommitResult:
        """Commit one write in its own transaction, then wake the sequencer. ``guard``: the
        writer's rules (None: the admin); ``owner``: who writes; ``readers``: how it may read
        the models its references name (see ``commit_steps``)."""
        with metrics.COMMIT_SECONDS.labels(write.model).time():
            for attempt in range(1, COMMIT_ATTEMPTS + 1):
                try:
                    async with self.driver_transaction() as connection:
                        result = await run_asyncpg(connection, commit_steps(
                            self.models, write, mutation_id=mutation_id,
                            max_document_bytes=self.settings.max_document_bytes,
                            max_id_length=self.settings.max_id_length, guard=guard,
                            owner=owner, readers=readers, request_id=REQUEST_ID.get(),
                        ))
                    break
                except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                    # Delete rules lock documents along references, so two deletes of
                    # documents that refer to each other can deadlock; PostgreSQL rolled one
                    # back whole, and running it again is safe.
                    if attempt == COMMIT_ATTEMPTS:
                        raise ServiceUnavailable("the commit kept deadlocking with concurrent "
                                                 "commits; retry", retryable=True) from None
        metrics.COMMITS.labels(write.model, "REPLAYED" if result.replayed else result.op).inc()
        if commit_log.isEnabledFor(logging.DEBUG):  # the commit path: no line, no work
            commit_log.debug("%s %s %s v%d%s", result.op, write.model, result.id,
                             result.version, " (replayed)" if result.replayed else "", extra={
                                 "model": write.model, "document_id": result.id,
                                 "mutation_id": mutation_id,
                                 "event_id": result.event_ids[0] if result.event_ids else None})
        if not result.replayed:
            await self.wake_sequencer()
        return result

    async def emit(self, event_type: str, key: str | None, payload: Mapping[str, Any], *,
                   mutation_id: str | None = None, owner: str | None = None) -> Emitted:
        """A custom event from a backend service, delivered to handlers like any change event."""
        async with self.begin() as connection:
            emitted = await run_async(connection, emit_steps(
                event_type, key, payload, mutation_id=mutation_id, models=self.models,
                max_id_length=self.settings.max_id_length, owner=owner,
                request_id=REQUEST_ID.get()))
            if not emitted.replayed:
                await connection.execute(notify_relay())
        return emitted

    async def redeliver(self, event_id: str, handler: str | None = None) -> list[str]:
        """Send a dead (or finished) event to its handler(s) again; returns the handlers."""
        async with self.begin() as connection:
            handlers = list((await connection.execute(
                redeliver(event_id, handler, datetime.now(UTC)))).scalars())
            if handlers:
                await connection.execute(notify_relay())
        if handlers:
            self.delivery_changes.notify(event_id)  # our own watchers; the relay takes it on
        return handlers

    async def wake_sequencer(self) -> None:
        if self.sequencer.active:
            self.sequencer.wake()  # it is ours: no network hop
        else:
            await wake_sequencer(self.redis, self.channels)
