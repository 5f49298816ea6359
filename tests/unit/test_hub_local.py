"""The hub takes a batch from its own process's sequencer without waiting for Redis, but
only what it can deliver at once and in order; anything else it leaves to ``on_batch``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from statesync.change import Change
from statesync.feed.hub import Hub
from statesync.feed.subscriber import Subscriber


def change(cursor: int, model: str = "Order", op: str = "UPDATED") -> Change:
    return Change(cursor=cursor, seq=cursor, model=model, doc_id=f"d{cursor}", op=op,
                  version=2, document={"id": f"d{cursor}", "version": 2}, previous={},
                  changed_fields=("note",), mutation_id=None, committed_at=datetime.now(UTC))


@contextlib.asynccontextmanager
async def hub_at(last: int, **follows: None) -> AsyncIterator[tuple[Hub, Subscriber]]:
    # Never connects: the way it is tested here reads nothing.
    engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    hub = Hub(engine)
    hub.last = last
    try:
        async with hub.subscribe("Order", None, None, {}, maxsize=10, follows=follows) as sub:
            yield hub, sub
    finally:
        await engine.dispose()


def cursors(subscriber: Subscriber) -> list[int]:
    return [delivery.change.cursor for delivery in subscriber.pending()]


async def test_the_next_batch_is_delivered_at_once() -> None:
    async with hub_at(10) as (hub, subscriber):
        hub.offer_sequenced([change(11), change(12)])
        assert cursors(subscriber) == [11, 12]
        assert hub.last == 12


@pytest.mark.parametrize(("last", "batch"), [(12, [11]), (12, [12]), (12, [14, 15])],
                         ids=["old", "delivered", "gap"])
async def test_a_batch_out_of_line_is_left_to_redis(last: int, batch: list[int]) -> None:
    async with hub_at(last) as (hub, subscriber):
        hub.offer_sequenced([change(c) for c in batch])
        assert cursors(subscriber) == []
        assert hub.last == last


async def test_nothing_is_taken_while_the_hub_is_busy() -> None:
    async with hub_at(10) as (hub, subscriber):
        async with hub._lock:  # on_batch or a refill is delivering
            hub.offer_sequenced([change(11)])
        assert cursors(subscriber) == []
        assert hub.last == 10


async def test_a_change_that_must_read_its_referrers_stops_the_batch_there() -> None:
    async with hub_at(10, Customer=None) as (hub, subscriber):
        hub.offer_sequenced([change(11), change(12, model="Customer"), change(13)])
        assert cursors(subscriber) == [11]
        assert hub.last == 11  # 12 and 13 come through on_batch, which reads


async def test_a_hub_not_started_takes_nothing() -> None:
    async with hub_at(10) as (hub, subscriber):
        hub.last = None
        hub.offer_sequenced([change(1)])
        assert cursors(subscriber) == []
