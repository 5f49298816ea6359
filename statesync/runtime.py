"""The running service's shared state, built in an entry point, never at import time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from statesync import documents as docs
from statesync.config import Settings
from statesync.feed.bus import wake_sequencer
from statesync.feed.channels import Channels
from statesync.feed.delivery_changes import DeliveryChanges
from statesync.feed.hub import Hub
from statesync.feed.sequencer import Sequencer
from statesync.store.commits import CommitResult, Emitted, Model, commit_steps, emit_steps, run_async
from statesync.store.statements import notify_relay, redeliver


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    redis: aioredis.Redis
    channels: Channels
    hub: Hub
    sequencer: Sequencer
    models: Mapping[str, Model]
    delivery_changes: DeliveryChanges = field(default_factory=DeliveryChanges)

    async def commit(self, write: docs.Write, *, mutation_id: str | None = None) -> CommitResult:
        """Commit one write in its own transaction, then wake the sequencer."""
        async with self.engine.begin() as connection:
            result = await run_async(connection, commit_steps(
                self.models, write, mutation_id=mutation_id,
                max_document_bytes=self.settings.max_document_bytes,
            ))
        if not result.replayed:
            await self.wake_sequencer()
        return result

    async def emit(self, event_type: str, key: str | None, payload: Mapping[str, Any], *,
                   mutation_id: str | None = None) -> Emitted:
        """A custom event from a backend service, delivered to handlers like any change event."""
        async with self.engine.begin() as connection:
            emitted = await run_async(connection, emit_steps(event_type, key, payload,
                                                             mutation_id=mutation_id))
            if not emitted.replayed:
                await connection.execute(notify_relay())
        return emitted

    async def redeliver(self, event_id: str, handler: str | None = None) -> list[str]:
        """Send a dead (or finished) event to its handler(s) again; returns the handlers."""
        async with self.engine.begin() as connection:
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
