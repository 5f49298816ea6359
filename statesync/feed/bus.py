"""The Redis side of the feed: one pub/sub connection per process, watched and reconnected."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
import sqlalchemy as sa

from statesync.change import decode_batch
from statesync.feed.channels import Channels
from statesync.feed.delivery_changes import DeliveryChanges
from statesync.feed.hub import Hub
from statesync.feed.sequencer import Sequencer
from statesync.supervision import raise_if_cancelled

log = logging.getLogger(__name__)

RECONNECT_DELAY = 0.5


async def listen(redis: aioredis.Redis, channels: Channels, hub: Hub, sequencer: Sequencer,
                 deliveries: DeliveryChanges, poll_interval: float) -> None:
    """Feed batches to the hub, wake-ups to the sequencer, delivery changes to their
    watchers, forever."""
    while True:
        try:
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(channels.feed, channels.wake, channels.deliveries)
                await hub.catch_up()  # after subscribing: whatever we missed is in the changelog
                await _pump(pubsub, channels, hub, sequencer, deliveries, poll_interval)
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
            raise_if_cancelled()
            log.warning("lost Redis pub/sub (%s); reconnecting and refilling", exc)
            await asyncio.sleep(RECONNECT_DELAY)  # back off before reconnecting
        except sa.exc.DBAPIError as exc:
            raise_if_cancelled()
            if not _transient(exc):
                raise
            log.warning("lost PostgreSQL while following the feed (%s); retrying", exc)
            await asyncio.sleep(RECONNECT_DELAY)


def _transient(exc: sa.exc.DBAPIError) -> bool:
    """A dropped or refused connection is worth retrying; a bug in our SQL is not."""
    return exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)


async def _pump(pubsub: aioredis.client.PubSub, channels: Channels, hub: Hub,
                sequencer: Sequencer, deliveries: DeliveryChanges, poll_interval: float) -> None:
    feed, wake = channels.feed.encode(), channels.wake.encode()
    delivery = channels.deliveries.encode()
    while True:
        message = await pubsub.get_message(timeout=poll_interval)
        if message is None:
            await hub.catch_up()  # a quiet feed may hide a lost message: check the head
            continue
        channel = message["channel"]
        if channel == feed:
            await hub.on_batch(decode_batch(message["data"]))
        elif channel == wake:
            sequencer.wake()
        elif channel == delivery:
            deliveries.notify(message["data"].decode())


async def wake_sequencer(redis: aioredis.Redis, channels: Channels) -> None:
    with contextlib.suppress(aioredis.RedisError):
        # Losing a wake-up only costs latency: the sequencer also polls.
        await redis.publish(channels.wake, b"")
