"""The sequencer: gives every committed change its cursor, in commit order, then publishes it.

Commit order is not insertion order (``seq``), so cursors are not assigned at
insert. Exactly one sequencer is active (a Postgres advisory lock held on its own
connection, through which it also writes, so losing the connection loses the
role); every API process runs one, and the others wait as hot standbys. It takes
the committed rows that have no cursor yet, in ``seq`` order, and numbers them
densely after the head. Anything that commits later is numbered later, so a
reader that tails ``cursor > last`` can never skip a row, and a gap in the
numbers means a missed message, never a missing change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from statesync import metrics
from statesync.change import Change, encode_batch
from statesync.feed.channels import Channels
from statesync.store import locks
from statesync.store import statements as q
from statesync.supervision import raise_if_cancelled

log = logging.getLogger(__name__)

BATCH_SIZE = 500
PUBLISH_CHUNK = 100
RETRY_DELAY = 1.0


class Sequencer:
    def __init__(self, engine: AsyncEngine, redis: aioredis.Redis, channels: Channels,
                 poll_interval: float,
                 on_sequenced: Callable[[list[Change]], None] = lambda batch: None) -> None:
        """``on_sequenced``: this process's own hub, handed each batch as it is published
        (``Hub.offer_sequenced``): it must not block, and need not take it."""
        self._engine = engine
        self._redis = redis
        self._channels = channels
        self._poll_interval = poll_interval
        self.on_sequenced = on_sequenced
        self._wake = asyncio.Event()
        self.active = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Contend for the role forever; errors release it and we contend again."""
        while True:
            try:
                async with self._engine.connect() as connection:
                    try:
                        await self._acquire(connection)
                        self.active = True
                        metrics.SEQUENCER.set(1)
                        log.info("sequencer active")
                        await self._sequence_forever(connection)
                    finally:
                        self.active = False
                        metrics.SEQUENCER.set(0)
                        # The advisory lock belongs to the session, not to this checkout: back
                        # in the pool, the connection would hold it forever and no sequencer
                        # (ours included) could take the role again. Close it instead.
                        await connection.invalidate()
            except (sa.exc.DBAPIError, sa.exc.InterfaceError, asyncpg.PostgresError,
                    asyncpg.InterfaceError, OSError, aioredis.RedisError) as exc:
                raise_if_cancelled()
                log.warning("sequencer lost its connection (%s); retrying", exc)
                await asyncio.sleep(RETRY_DELAY)  # back off before reconnecting to a sick server

    async def _acquire(self, connection: AsyncConnection) -> None:
        while True:
            async with connection.begin():
                acquired = (await connection.execute(
                    sa.select(sa.func.pg_try_advisory_lock(locks.SEQUENCER))
                )).scalar_one()
            if acquired:
                return
            # A standby: poll for the lock; Postgres has no "wait for this lock with timeout".
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RETRY_DELAY)
            self._wake.clear()

    async def _sequence_forever(self, connection: AsyncConnection) -> None:
        while True:
            while await self.sequence_batch(connection) == BATCH_SIZE:
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            self._wake.clear()

    async def sequence_batch(self, connection: AsyncConnection) -> int:
        # One statement, sent bare: its own transaction, without BEGIN and COMMIT round trips.
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        sql, args = q.sequence_batch(BATCH_SIZE).for_asyncpg()
        rows = await raw.fetch(sql, *args)
        if rows:
            # after commit: never announce what could still roll back
            batch = [Change.from_row(row) for row in rows]
            if log.isEnabledFor(logging.DEBUG):
                for change in batch:
                    log.debug("cursor %s: %s %s v%d", change.cursor, change.model, change.doc_id,
                              change.version, extra={
                                  "cursor": str(change.cursor), "model": change.model,
                                  "document_id": change.doc_id, "mutation_id": change.mutation_id})
            publishing = asyncio.ensure_future(self._publish(batch))
            try:
                # Let the publish write its command first: the other processes need not wait
                # for this one's fan-out, nor this one's subscribers for Redis's echo.
                await asyncio.sleep(0)
                try:
                    self.on_sequenced(batch)
                except Exception:  # the hub hears of it from Redis too
                    log.exception("the local hub failed to take a batch")
                await publishing
            finally:
                publishing.cancel()  # done already, unless we are being cancelled
        return len(rows)

    async def _publish(self, batch: list[Change]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(batch), PUBLISH_CHUNK):
                pipe.publish(self._channels.feed, encode_batch(batch[start : start + PUBLISH_CHUNK]))
            await pipe.execute()
