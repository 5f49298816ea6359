"""The supervisor restarts what fails, with a growing delay, and ends with its TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from statesync.supervision import Supervisor, raise_if_cancelled


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


async def driver_call(started: asyncio.Event) -> None:
    """What asyncpg under SQLAlchemy can do when cancelled mid-query: raise an error of
    its own ("connection is closed") instead of the CancelledError."""
    started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        raise ConnectionError("connection is closed") from None


async def test_a_cancellation_a_driver_turned_into_an_error_still_stops_the_task() -> None:
    started = asyncio.Event()
    runs = 0

    async def query_forever() -> None:
        nonlocal runs
        runs += 1
        await driver_call(started)

    supervisor = Supervisor(first_delay=0.01)
    async with asyncio.timeout(5), asyncio.TaskGroup() as group:
        supervised = supervisor.start(group, "query", query_forever)
        await started.wait()
        supervisor.cancel()
    assert supervised.task is not None and supervised.task.cancelled()
    assert (runs, supervised.restarts) == (1, 0)  # not restarted: it was told to stop


async def test_a_loop_that_retries_connection_errors_ends_when_cancelled() -> None:
    started = asyncio.Event()
    retries = 0

    async def reconnect_forever() -> None:  # the shape of the sequencer's and the feed's loops
        nonlocal retries
        while True:
            try:
                await driver_call(started)
            except ConnectionError:
                raise_if_cancelled()
                retries += 1
                await asyncio.sleep(0.01)

    task = asyncio.create_task(reconnect_forever())
    await started.wait()
    task.cancel()
    async with asyncio.timeout(5):
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled() and retries == 0
