"""Places are taken in turn by owner, round robin, and a cancelled waiter never loses one."""

from __future__ import annotations

import asyncio

from statesync.fair import FairSlots


async def run_pieces(slots: FairSlots, pieces: list[str], gate: asyncio.Event) -> list[str]:
    """Queue ``pieces`` (each an owner's name) behind a piece that waits for ``gate``;
    the order they ran in."""
    ran: list[str] = []

    async def piece(owner: str) -> None:
        async with slots.taken(owner):
            ran.append(owner)

    async def first() -> None:
        async with slots.taken("first"):
            await gate.wait()

    async with asyncio.TaskGroup() as group:
        group.create_task(first())
        await asyncio.sleep(0)  # the first piece holds the turn before the others queue
        for owner in pieces:
            group.create_task(piece(owner))
        await asyncio.sleep(0)
        gate.set()
    return ran


async def test_an_owner_with_many_pieces_does_not_delay_another_owners_first() -> None:
    ran = await run_pieces(FairSlots(1), ["storm"] * 5 + ["ann", "bob", "ann"], asyncio.Event())
    # storm queued first, then ann, then bob: one piece each per round.
    assert ran == ["storm", "ann", "bob", "storm", "ann", "storm", "storm", "storm"]


async def test_one_owner_runs_its_pieces_in_the_order_they_came() -> None:
    slots = FairSlots(1)
    ran: list[int] = []
    gate = asyncio.Event()

    async def piece(n: int) -> None:
        async with slots.taken("ann"):
            ran.append(n)

    async def holder() -> None:
        async with slots.taken("bob"):
            await gate.wait()

    async with asyncio.TaskGroup() as group:
        group.create_task(holder())
        await asyncio.sleep(0)
        for n in range(4):
            group.create_task(piece(n))
        await asyncio.sleep(0)
        gate.set()
    assert ran == [0, 1, 2, 3]


async def test_a_cancelled_waiter_leaves_the_queue_and_the_others_still_run() -> None:
    slots = FairSlots(1)
    ran: list[str] = []
    gate = asyncio.Event()

    async def piece(owner: str) -> None:
        async with slots.taken(owner):
            ran.append(owner)

    async def holder() -> None:
        async with slots.taken("holder"):
            await gate.wait()

    async with asyncio.timeout(5), asyncio.TaskGroup() as group:
        group.create_task(holder())
        await asyncio.sleep(0)
        doomed = group.create_task(piece("doomed"))
        group.create_task(piece("ann"))
        await asyncio.sleep(0)
        doomed.cancel()
        await asyncio.sleep(0)
        gate.set()
    assert ran == ["ann"]
    assert doomed.cancelled()


async def test_a_piece_cancelled_as_it_is_handed_the_turn_hands_it_on() -> None:
    slots = FairSlots(1)
    ran: list[str] = []
    gate = asyncio.Event()
    doomed: asyncio.Task[None] | None = None

    async def piece(owner: str) -> None:
        async with slots.taken(owner):
            ran.append(owner)

    async def holder() -> None:
        async with slots.taken("holder"):
            await gate.wait()
        # the turn went to "doomed", which has not resumed yet: cancel it now
        assert doomed is not None
        doomed.cancel()

    async with asyncio.timeout(5), asyncio.TaskGroup() as group:
        group.create_task(holder())
        await asyncio.sleep(0)
        doomed = group.create_task(piece("doomed"))
        group.create_task(piece("ann"))
        await asyncio.sleep(0)
        gate.set()
    assert ran == ["ann"]
    assert doomed.cancelled()


async def test_after_the_queue_empties_the_next_piece_runs_at_once() -> None:
    slots = FairSlots(1)
    await run_pieces(slots, ["ann", "bob"], asyncio.Event())
    async with asyncio.timeout(1):
        async with slots.taken("carol"):
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
