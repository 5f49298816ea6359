"""The supervisor restarts what fails, with a growing delay, and ends with its TaskGroup."""

from __future__ import annotations

import asyncio
import logging

import pytest

from statesync.supervision import Supervisor


async def test_a_failing_task_is_restarted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    third = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) == 3:
            third.set()
            await asyncio.Event().wait()  # the third run is healthy: it runs until cancelled
        raise RuntimeError(f"run {len(runs)} failed")

    supervisor = Supervisor(first_delay=0.01, max_delay=0.05)
    with caplog.at_level(logging.ERROR, logger="statesync.supervision"):
        async with asyncio.TaskGroup() as group:
            supervised = supervisor.start(group, "flaky", flaky)
            await asyncio.wait_for(third.wait(), 5)
            supervisor.cancel()
    assert runs == [0, 1, 2]
    assert supervised.restarts == 2 and supervised.last_error == "RuntimeError: run 2 failed"
    failures = [r for r in caplog.records if "flaky failed; restarting" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info for r in failures)


async def test_a_task_that_returns_is_started_again() -> None:
    runs = 0
    twice = asyncio.Event()

    async def quits() -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            twice.set()

    supervisor = Supervisor(first_delay=0.01)
    async with asyncio.TaskGroup() as group:
        supervisor.start(group, "quits", quits)
        await asyncio.wait_for(twice.wait(), 5)
        supervisor.cancel()
    assert supervisor.tasks["quits"].restarts >= 1
