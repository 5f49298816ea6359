"""Places are taken in turn by owner, round robin, and a cancelled waiter never loses one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from statesync.fair import FairSlots


class Queued:
    """One place, held by a first task until :meth:`release`; pieces queued behind it
    note the order they ran in."""

    def __init__(self, on_release: Callable[[Queued], None] = lambda _: None) -> None:
        self.slots = FairSlots(1)
        self.ran: list[str] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}  # by label
        self._gate = asyncio.Event()
        self._on_release = on_release

    async def hold(self) -> None:
        async with self.slots.taken("holder"):
            await self._gate.wait()
        self._on_release(self)  # the place has just been handed on; its new holder not yet resumed

    async def piece(self, owner: str, label: str | None = None) -> None:
        async with self.slots.taken(owner):
            self.ran.append(label or owner)

    def release(self) -> None:
        self._gate.set()


async def run_behind_a_holder(queued: Queued, *pieces: tuple[str, str]) -> None:
    """Queue each (owner, label) piece behind the holder, in order, then release it."""
    async with asyncio.timeout(5), asyncio.TaskGroup() as group:
        group.create_task(queued.hold())
        await asyncio.sleep(0)  # the holder takes the place before the others queue
        for owner, label in pieces:
            queued.tasks[label] = group.create_task(queued.piece(owner, label))
        await asyncio.sleep(0)
        queued.release()


async def test_an_owner_with_many_pieces_does_not_delay_another_owners_first() -> None:
    queued = Queued()
    await run_behind_a_holder(queued, *[("storm", f"s{n}") for n in range(5)],
                              ("ann", "a0"), ("bob", "b0"), ("ann", "a1"))
    # storm queued first, then ann, then bob: one piece each per round, each in its order.
    assert queued.ran == ["s0", "a0", "b0", "s1", "a1", "s2", "s3", "s4"]


async def test_a_cancelled_waiter_leaves_the_queue_and_the_others_still_run() -> None:
    queued = Queued()
    async with asyncio.timeout(5), asyncio.TaskGroup() as group:
        group.create_task(queued.hold())
        await asyncio.sleep(0)
        doomed = group.create_task(queued.piece("doomed"))
        group.create_task(queued.piece("ann"))
        await asyncio.sleep(0)
        doomed.cancel()  # while it waits
        await asyncio.sleep(0)
        queued.release()
    assert queued.ran == ["ann"]
    assert doomed.cancelled()


async def test_a_piece_cancelled_as_it_is_handed_the_place_hands_it_on() -> None:
    queued = Queued(on_release=lambda q: q.tasks["doomed"].cancel())
    await run_behind_a_holder(queued, ("doomed", "doomed"), ("ann", "ann"))
    assert queued.ran == ["ann"]
    assert queued.tasks["doomed"].cancelled()


async def test_after_the_queue_empties_the_next_piece_runs_at_once() -> None:
    queued = Queued()
    await run_behind_a_holder(queued, ("ann", "a"), ("bob", "b"))
    async with asyncio.timeout(1):
        async with queued.slots.taken("carol"):
            pass


async def test_as_many_hold_at_once_as_there_are_places() -> None:
    slots = FairSlots(2)
    holding = 0
    most = 0
    release = asyncio.Event()

    async def hold() -> None:
        nonlocal holding, most
        async with slots.taken("ann"):
            holding += 1
            most = max(most, holding)
            await release.wait()
            holding -= 1

    async with asyncio.timeout(5), asyncio.TaskGroup() as group:
        for _ in range(5):
            group.create_task(hold())
        await asyncio.sleep(0)
        assert (holding, most) == (2, 2)
        release.set()
    assert most == 2
