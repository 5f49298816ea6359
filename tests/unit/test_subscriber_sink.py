"""A subscriber's sink takes live changes while its reader waits, and hands back, in order,
the moment it refuses one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from statesync.change import Change
from statesync.feed.subscriber import Delivery, Overflowed, Subscriber

WAIT = 5.0


def change(cursor: int, doc_id: str = "a") -> Change:
    return Change(cursor=cursor, seq=cursor, model="Order", doc_id=doc_id, op="UPDATED",
                  version=cursor + 1, document={"id": doc_id, "version": cursor + 1},
                  previous={}, changed_fields=("note",), mutation_id=None,
                  committed_at=datetime.now(UTC))


def subscriber(maxsize: int = 10) -> Subscriber:
    return Subscriber("Order", "a", None, {}, maxsize)


class Sink:
    """Takes deliveries until told to refuse; records what it was offered."""

    def __init__(self, refuse_from: int | None = None, fail: bool = False) -> None:
        self.refuse_from = refuse_from
        self.fail = fail
        self.offered: list[int] = []

    def __call__(self, delivery: Delivery) -> bool:
        self.offered.append(delivery.change.cursor)
        if self.fail:
            raise RuntimeError("the sink broke")
        return self.refuse_from is None or delivery.change.cursor < self.refuse_from


async def waiting(sub: Subscriber, sink: Sink, passed: int = 0) -> asyncio.Task[Delivery]:
    reader = asyncio.create_task(sub.get(sink, passed))
    await asyncio.sleep(0)  # let the reader reach its wait (one step, not a timing guess)
    return reader


async def test_a_waiting_readers_sink_takes_changes_without_waking_it() -> None:
    sub, sink = subscriber(), Sink()
    reader = await waiting(sub, sink)
    assert [sub.offer(change(c)) for c in (1, 2, 3)] == [True, True, True]
    assert sink.offered == [1, 2, 3]
    assert not reader.done()
    assert sub.passed == 3
    reader.cancel()


async def test_the_first_refused_change_and_all_after_it_go_to_the_reader_in_order() -> None:
    sub, sink = subscriber(), Sink(refuse_from=2)
    reader = await waiting(sub, sink)
    assert [sub.offer(change(c)) for c in (1, 2, 3)] == [True, False, False]
    assert sink.offered == [1, 2]  # detached after refusing: 3 never reaches it
    first = await asyncio.wait_for(reader, WAIT)
    assert first.change.cursor == 2
    assert sub.passed == 1
    assert (await asyncio.wait_for(sub.get(), WAIT)).change.cursor == 3


async def test_a_sink_that_raises_hands_over_to_the_reader(caplog: pytest.LogCaptureFixture) -> None:
    sub, sink = subscriber(), Sink(fail=True)
    reader = await waiting(sub, sink)
    assert sub.offer(change(1)) is False
    assert (await asyncio.wait_for(reader, WAIT)).change.cursor == 1
    assert "fast path failed" in caplog.text


async def test_a_sink_is_never_given_what_the_reader_has() -> None:
    sub, sink = subscriber(), Sink()
    reader = await waiting(sub, sink, passed=5)
    assert sub.offer(change(4)) is True  # already had: dropped, not offered
    assert sub.offer(change(6)) is True
    assert sink.offered == [6]
    reader.cancel()


async def test_no_sink_while_the_reader_is_busy() -> None:
    sub, sink = subscriber(), Sink()
    reader = await waiting(sub, sink)
    sub.offer(change(1))
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert sub.offer(change(2)) is False  # the reader left: no one to send it
    assert sink.offered == [1]
    assert (await asyncio.wait_for(sub.get(), WAIT)).change.cursor == 2


async def test_a_refusal_past_a_full_queue_overflows() -> None:
    sub = subscriber(maxsize=2)
    reader = await waiting(sub, Sink(refuse_from=1))
    for cursor in (1, 2, 3):
        sub.offer(change(cursor))
    with pytest.raises(Overflowed):  # the reader, woken by the refusal, finds it behind
        await asyncio.wait_for(reader, WAIT)
