"""Places are taken in turn by owner, round robin; a waiter cancelled at any point leaves
the places as they were and the others' turns in order."""

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
        async with self.slots.place("holder"):
            await self._gate.wait()
        self._on_release(self)  # the place has just been handed on; its new holder not yet resumed

    async def piece(self, owner: str, label: str | None = None) -> None:
        async with self.slots.place(owner):
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
    assert (queued.slots.free, queued.slots.queued) == (1, 0)


async def test_a_piece_cancelled_as_it_is_handed_the_place_hands_it_on() -> None:
    queued = Queued(on_release=lambda q: q.tasks["doomed"].cancel())
    await run_behind_a_holder(queued, ("doomed", "doomed"), ("ann", "ann"))
    assert queued.ran == ["ann"]
    assert queued.tasks["doomed"].cancelled()
    assert (queued.slots.free, queued.slots.queued) == (1, 0)


async def test_a_waiter_cancelled_just_before_the_place_is_given_back_is_skipped() -> None:
    # Its future is cancelled at once, its task runs its except clause only later: the
    # give-back in between must skip it, and its owner keep its turn.
    slots = FairSlots(1)
    ran: list[str] = []
    tasks: dict[str, asyncio.Task[None]] = {}
    gate = asyncio.Event()

    async def holder() -> None:
        async with slots.place("holder"):
            await gate.wait()
            tasks["a0"].cancel()

    async def piece(owner: str, label: str) -> None:
        async with slots.place(owner):
            ran.append(label)

    async with asyncio.timeout(5), asyncio.TaskGroup() as group:
        group.create_task(holder())
        await asyncio.sleep(0)
        for owner, label in (("ann", "a0"), ("ann", "a1"), ("bob", "b0"), ("ann", "a2")):
            tasks[label] = group.create_task(piece(owner, label))
        await asyncio.sleep(0)
        gate.set()
    assert ran == ["a1", "b0", "a2"]
    assert tasks["a0"].cancelled()
    assert (slots.free, slots.queued) == (1, 0)


async def test_after_the_queue_empties_the_next_piece_runs_at_once() -> None:
    queued = Queued()
    await run_behind_a_holder(queued, ("ann", "a"), ("bob", "b"))
    assert (queued.slots.free, queued.slots.queued) == (1, 0)
    async with asyncio.timeout(1):
        async with queued.slots.place("carol"):
            pass


async def test_as_many_hold_at_once_as_there_are_places() -> None:
    slots = FairSlots(2)
    holding = 0
    most = 0
    release = asyncio.Event()

    async def hold() -> None:
        nonlocal holding, most
        async with slots.place("ann"):
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
