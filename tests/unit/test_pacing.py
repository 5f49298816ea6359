"""Bulk work yields its share of the loop while requests are answered, and owners take turns."""

from __future__ import annotations

import asyncio

from statesync.pacing import Pacer


async def test_while_requests_are_answered_a_piece_sleeps_off_its_share() -> None:
    pacer = Pacer(0.5)
    loop = asyncio.get_running_loop()
    with pacer.request():
        started = loop.time()
        async with pacer.bulk("ann"):
            while loop.time() - started < 0.02:  # CPU work with nothing to await
                pass
        # a share of one half: the turn is held as long again before it is handed on
        assert loop.time() - started >= 0.04


async def test_with_no_request_being_answered_pieces_run_back_to_back() -> None:
    pacer = Pacer(0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with pacer.bulk("ann"):
        while loop.time() - started < 0.02:
            pass
    # a share of a tenth, were a request being answered, would hold the turn 0.18 s more
    assert loop.time() - started < 0.15


async def test_owners_take_turns_at_bulk_work() -> None:
    pacer = Pacer(1)
    ran: list[str] = []
    gate = asyncio.Event()

    async def first() -> None:
        async with pacer.bulk("storm"):
            await gate.wait()

    async def piece(owner: str) -> None:
        async with pacer.bulk(owner):
            ran.append(owner)

    async with asyncio.timeout(5), asyncio.TaskGroup() as group:
        group.create_task(first())
        await asyncio.sleep(0)
        for owner in ("storm", "storm", "storm", "ann"):
            group.create_task(piece(owner))
        await asyncio.sleep(0)
        gate.set()
    assert ran == ["storm", "ann", "storm", "storm"]
