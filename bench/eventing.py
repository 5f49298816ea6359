"""Eventing benchmark: outbox -> relay -> Celery worker -> commit -> subscriber.

Starts `statesync serve`, `statesync relay` and `statesync worker --concurrency 2`
as separate processes (as compose.yaml runs them), on embedded PostgreSQL and
Redis unless STATESYNC_DATABASE_URL / STATESYNC_REDIS_URL are set. The handler
is bench/handlers/echo.py: on a price change it commits `name = "seen <price>"`
to the same product. Then:

1. relay alone: EVENTS mutations are committed while no relay runs; a relay is
   started and drains the outbox into the broker (no worker yet). Prints its
   fan-out and dispatch rates, from the rows' timestamps.
2. worker backlog: a worker is started on that full queue. Prints deliveries/s
   from the first attempt's start to the last one's end (each price event's
   handler commits a write-back, whose event is delivered too: 2 x EVENTS).
3. latency: a subscriber watches one product while CHANGES price updates are sent
   one at a time; prints p50/p99 from sending the mutation to receiving (a) its own
   UPDATED message and (b) the handler's resulting UPDATED message.
4. end to end: EVENTS mutations from CLIENTS concurrent HTTP clients, everything
   running; prints events/s from the first send until every delivery is
   `succeeded` (polled in the database).
5. no-op backlog: with the worker stopped, 2 x EVENTS `Bench.noop` events (each on its
   own key) for bench/handlers/noop.py, which does nothing; once the relay has sent them
   all, a worker starts on the full queue: deliveries/s, as 2, but with nothing committed
   back, the figure to set beside a bare Celery no-op task.
6. ordered backlog: with the relay and the worker stopped, ORDERED `Bench.tick` events
   on one key (bench/handlers/ordered.py, `ordered=True`: one at a time, in order);
   then both start, and it prints deliveries/s from the first attempt's start to the
   last one's end (the issue's target: 10k on one key at >= 200/s).

Beside 2, 3 and 5 (each backlog also prints the CPU ms each process spent per delivery,
leaving out the worker's start), in the same run and on the same Redis, the raw figures of a bare Celery
app configured as statesync's (bench/raw_celery.py, `-c 2`): no-op tasks/s from a
backlog of as many tasks, and a task's round trip from send to a Redis PUBLISH that a
subscriber receives. Each line prints statesync's figure, the raw one and the ratio.

Every wait is bounded (--timeout); all traffic goes to 127.0.0.1; all GraphQL goes
through statesync.client (so every mutation carries a mutationId).

Run: .venv/bin/python bench/eventing.py [--events 2000] [--changes 100] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis
import redis.asyncio as aioredis
from celery import Celery
from harness import CpuMeter, cpu_line, free_port, percentile, services  # bench/harness.py

from statesync.client import Change, Client

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
HANDLERS = BENCH / "handlers"
PRODUCT = {"sku": "bench", "name": "bench", "priceCents": 0}
STATUS = "SELECT status, count(*) AS n FROM statesync_deliveries GROUP BY status"


class Stack:
    """The statesync processes of one benchmark run, sharing one environment."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        self.port = free_port()
        self.redis_url = redis_url
        self.env = {**os.environ, "STATESYNC_DATABASE_URL": database_url,
                    "STATESYNC_REDIS_URL": redis_url, "STATESYNC_PORT": str(self.port),
                    "STATESYNC_HOST": "127.0.0.1",
                    "STATESYNC_SCHEMA_PATH": str(ROOT / "schema"),
                    "STATESYNC_WORKERS_PATH": str(HANDLERS),
                    "STATESYNC_LOG_LEVEL": "WARNING",
                    "STATESYNC_CHANNEL_PREFIX": f"bench-{self.port}",
                    "STATESYNC_QUEUE": f"bench-{self.port}",
                    "STATESYNC_OPEN_ACCESS": "true"}  # the benchmark's clients act as the admin
        self.base = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "statesync", *args], env=self.env, cwd=ROOT,
            start_new_session=True)  # its own group: a worker's pool is stopped with it

    def stop_one(self, name: str) -> None:
        process = self.processes.pop(name)
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def check(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise SystemExit(f"statesync {name} exited with {process.returncode}")

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            self.check()
            time.sleep(0.1)  # waiting on another process's readiness; no event to await
        raise SystemExit(f"statesync serve did not become healthy in {timeout:.0f} s")

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # the group we created for it
                process.wait(5)


@contextlib.contextmanager
def stack(database_url: str, redis_url: str) -> Iterator[Stack]:
    running = Stack(database_url, redis_url)
    try:
        yield running
    finally:
        running.stop()


async def statuses(db: asyncpg.Connection) -> dict[str, int]:
    return {row["status"]: row["n"] for row in await db.fetch(STATUS)}


async def wait_for(db: asyncpg.Connection, procs: Stack, what: str, within: float,
                   done: Any) -> float:
    """Poll the delivery statuses until ``done(statuses)``; returns when (perf_counter)."""
    deadline = time.perf_counter() + within
    while True:
        counts = await statuses(db)
        if done(counts):
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise SystemExit(f"timed out after {within:.0f} s waiting for {what}: {counts}")
        procs.check()
        await asyncio.sleep(0.01)  # polling the database is the measurement


async def commit_prices(api: Client, ids: list[str], events: int, first: int) -> None:
    """``events`` price updates spread over ``ids``, one concurrent client per id."""
    per_doc = [events // len(ids) + (1 if i < events % len(ids) else 0) for i in range(len(ids))]

    async def client(doc_id: str, count: int) -> None:
        for n in range(first, first + count):
            await api.update("Product", doc_id, {"priceCents": n})

    await asyncio.gather(*(client(d, c) for d, c in zip(ids, per_doc, strict=True)))


def total(counts: dict[str, int]) -> int:
    return sum(counts.values())


async def relay_alone(procs: Stack, api: Client, db: asyncpg.Connection,
                      ids: list[str], events: int, within: float) -> None:
    await commit_prices(api, ids, events, 1)
    procs.start("relay", "relay")
    await wait_for(db, procs, "the relay to dispatch the backlog", within,
                   lambda c: c.get("dispatched", 0) == events and total(c) == events)
    row = await db.fetchrow("""
        SELECT min(o.relayed_at) AS fan_first, max(o.relayed_at) AS fan_last,
               min(d.created_at) AS first, max(d.updated_at) AS last
        FROM statesync_deliveries d JOIN statesync_outbox o ON o.id = d.event_id""")
    assert row is not None
    spread = (row["last"] - row["first"]).total_seconds()
    fan = (row["fan_last"] - row["fan_first"]).total_seconds()
    print(f"relay alone, {events} queued events: dispatched to the broker at "
          f"{events / max(spread, 1e-3):,.0f} deliveries/s ({spread * 1e3:.0f} ms from the first "
          f"fan-out to the last dispatch; fan-out batches spanned {fan * 1e3:.0f} ms)")


async def worker_backlog(procs: Stack, db: asyncpg.Connection, events: int,
                         within: float) -> float:
    procs.start("worker", "worker", "--concurrency", "2")
    # The CPU breakdown leaves out the worker's start (imports, forks): from a tenth done.
    await wait_for(db, procs, "the worker to start", within,
                   lambda c: c.get("succeeded", 0) >= events // 5)
    meter = CpuMeter()
    meter.start()
    warm = (await statuses(db)).get("succeeded", 0)
    # Each price event's handler commits a write-back, whose own event is delivered too.
    await wait_for(db, procs, "the worker to drain the backlog", within,
                   lambda c: c.get("succeeded", 0) == 2 * events and total(c) == 2 * events)
    cpu = meter.per(2 * events - warm)
    row = await db.fetchrow("SELECT count(*) AS n, min(started_at) AS first, max(finished_at) AS last, "
                            "avg(finished_at - started_at) AS inside FROM statesync_attempts")
    assert row is not None
    spread = (row["last"] - row["first"]).total_seconds()
    failed = await db.fetchval("SELECT count(*) FROM statesync_attempts WHERE outcome <> 'succeeded'")
    print(f"worker backlog (concurrency 2), {events} price events + {events} write-back events: "
          f"{2 * events / max(spread, 1e-3):,.0f} deliveries/s "
          f"({row['n']} attempts, {failed} not succeeded, {spread:.2f} s first start to last end; "
          f"an attempt spends {row['inside'].total_seconds() * 1e3:.1f} ms on average from its claim "
          "to its success, the rest of each slot's time is Celery and the broker)")
    print(f"  {cpu_line(cpu, 'delivery')}")
    return 2 * events / max(float(spread), 1e-3)


async def latency(procs: Stack, api: Client, changes: int) -> list[float]:
    doc_id = "latency"
    await api.create("Product", PRODUCT, id=doc_id)
    own: list[float] = []
    echoed: list[float] = []
    async with contextlib.aclosing(api.watch("Product", id=doc_id, fields="priceCents name")
                                   ) as stream:

        async def change() -> Change:
            try:
                return await asyncio.wait_for(anext(stream), 30)
            except (StopAsyncIteration, TimeoutError) as exc:
                raise SystemExit(f"subscription ended: {exc!r}") from exc

        assert (await change()).op == "SNAPSHOT"
        for n in range(1, changes + 1):
            sent = time.perf_counter()
            await api.update("Product", doc_id, {"priceCents": n})
            got_own = False
            while True:
                data = await change()
                document = data.document or {}
                if document["priceCents"] == n and "priceCents" in (data.changed_fields or []):
                    own.append(time.perf_counter() - sent)
                    got_own = True
                elif document["name"] == f"seen {n}":
                    echoed.append(time.perf_counter() - sent)
                    assert got_own, "the handler's change arrived before the change that caused it"
                    break
            procs.check()
    print(f"latency, {changes} sequential price changes, 1 subscriber: mutation -> its UPDATED "
          f"p50 {statistics.median(own) * 1e3:.1f} ms, p99 {percentile(own, 0.99) * 1e3:.1f} ms; "
          f"mutation -> outbox -> relay -> worker -> handler's UPDATED "
          f"p50 {statistics.median(echoed) * 1e3:.1f} ms, p99 {percentile(echoed, 0.99) * 1e3:.1f} ms")
    return echoed


async def end_to_end(procs: Stack, api: Client, db: asyncpg.Connection,
                     ids: list[str], events: int, within: float, before: int) -> None:
    """``before``: the deliveries the earlier parts made (the last of them may not exist
    yet: the latency part ends on a change whose own event is still being relayed)."""
    started = time.perf_counter()
    await commit_prices(api, ids, events, 1_000_000)
    committed = time.perf_counter()
    expected = before + 2 * events
    done = await wait_for(db, procs, "every delivery to succeed", within,
                          lambda c: c.get("succeeded", 0) == expected and total(c) == expected)
    elapsed = done - started
    print(f"end to end, {events} mutations from {len(ids)} clients: committed in "
          f"{committed - started:.2f} s ({events / (committed - started):,.0f} commits/s); "
          f"all {2 * events} deliveries succeeded {elapsed:.2f} s after the first send, "
          f"{done - committed:.2f} s after the last commit: {events / elapsed:,.0f} price events/s "
          f"handled, {2 * events / elapsed:,.0f} deliveries/s")


# ---- the raw figures: a bare Celery app on the same broker -----------------------------------


class RawCelery:
    """bench/raw_celery.py's worker (`-c 2`, prefork) and a client of its app."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.queue = f"raw-{free_port()}"
        self.env = {**os.environ, "RAW_BROKER_URL": redis_url, "RAW_QUEUE": self.queue}
        self.app = Celery("raw", broker=redis_url, set_as_current=False)
        self.app.conf.update(task_default_queue=self.queue, task_serializer="json")
        self.worker: subprocess.Popen[bytes] | None = None

    def start_worker(self) -> None:
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "raw_celery", "worker", "-c", "2",
             "--pool", "prefork", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
            env=self.env, cwd=BENCH, start_new_session=True)

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait(5)
        self.app.close()

    def backlog(self, tasks: int, within: float) -> tuple[float, dict[str, float]]:
        """No-op tasks/s, first start to last end, from a queue holding ``tasks``, and the
        CPU ms each role spent per task."""
        key = f"{self.queue}:count"
        with self.app.producer_or_acquire() as producer:
            for _ in range(tasks):
                self.app.send_task("raw.count", args=[key], producer=producer)
        meter = CpuMeter()
        meter.start()
        self.start_worker()
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + within
        while int(client.get(key) or 0) < tasks:
            if time.monotonic() > deadline:
                raise SystemExit(f"the raw Celery worker did not run {tasks} tasks in {within} s")
            time.sleep(0.01)  # polling the counter is the measurement
        first, last = float(client.get(f"{key}:first") or 0), float(client.get(f"{key}:last") or 0)
        client.close()
        return tasks / max(last - first, 1e-3), meter.per(tasks)

    async def round_trips(self, count: int) -> list[float]:
        """Seconds from sending a task to receiving what it publishes, one at a time."""
        channel = f"{self.queue}:echo"
        subscriber = aioredis.Redis.from_url(self.redis_url)
        pubsub = subscriber.pubsub()
        await pubsub.subscribe(channel)
        assert (await pubsub.get_message(timeout=5)) is not None  # the subscribe confirmation
        times: list[float] = []
        try:
            for _ in range(count):
                sent = time.perf_counter()
                await asyncio.to_thread(self.app.send_task, "raw.echo", args=[channel])
                while await pubsub.get_message(ignore_subscribe_messages=True, timeout=30) is None:
                    pass
                times.append(time.perf_counter() - sent)
        finally:
            await pubsub.aclose()
            await subscriber.aclose()
        return times


async def emit_events(api: Client, event_type: str, events: int, key: Any) -> None:
    """``events`` custom events (``key(n)`` each), 16 requests at a time."""
    sem = asyncio.Semaphore(16)

    async def emit(n: int) -> None:
        async with sem:
            await api.emit(event_type, key=key(n), payload={"n": n})

    await asyncio.gather(*(emit(n) for n in range(events)))


async def wait_deliveries(db: asyncpg.Connection, procs: Stack, handler: str, status: str,
                          at_least: int, within: float, what: str) -> int:
    """Poll until ``at_least`` of ``handler``'s deliveries have ``status``; returns how many."""
    deadline = time.perf_counter() + within
    while (count := await db.fetchval(
            "SELECT count(*) FROM statesync_deliveries WHERE handler = $1 AND status = $2",
            handler, status)) < at_least:
        if time.perf_counter() > deadline:
            raise SystemExit(f"timed out after {within:.0f} s waiting for {what}: "
                             f"{count} of {at_least}")
        procs.check()
        await asyncio.sleep(0.01)  # polling the database is the measurement
    return int(count)


async def noop_backlog(procs: Stack, api: Client, db: asyncpg.Connection, events: int,
                       within: float) -> tuple[float, dict[str, float]]:
    """A no-op handler's backlog (bench/handlers/noop.py): what a delivery costs beside a
    bare Celery no-op task, with nothing committed back."""
    procs.stop_one("worker")
    await emit_events(api, "Bench.noop", events, lambda n: f"k{n}")

    async def until(status: str, at_least: int, what: str) -> int:
        return await wait_deliveries(db, procs, "noop", status, at_least, within, what)

    await until("dispatched", events, "the relay to dispatch the no-op backlog")
    procs.start("worker", "worker", "--concurrency", "2")
    await until("succeeded", events // 5, "the worker to start")  # leave its start out
    meter = CpuMeter()
    meter.start()
    warm = await until("succeeded", 0, "")
    await until("succeeded", events, "the worker to drain the no-op backlog")
    cpu = meter.per(events - warm)
    row = await db.fetchrow("SELECT min(started_at) AS first, max(finished_at) AS last "
                            "FROM statesync_attempts WHERE handler = 'noop'")
    assert row is not None
    rate = events / max((row["last"] - row["first"]).total_seconds(), 1e-3)
    print(f"no-op handler backlog (concurrency 2), {events} events: {rate:,.0f} deliveries/s")
    print(f"  {cpu_line(cpu, 'delivery')}")
    return rate, cpu


async def ordered_backlog(procs: Stack, api: Client, db: asyncpg.Connection, events: int,
                          within: float) -> float:
    procs.stop_one("worker")
    procs.stop_one("relay")
    await emit_events(api, "Bench.tick", events, lambda n: "one")
    procs.start("relay", "relay")
    procs.start("worker", "worker", "--concurrency", "2")
    await wait_deliveries(db, procs, "ordered_tick", "succeeded", events, within,
                          "the ordered backlog to drain")
    row = await db.fetchrow("SELECT min(started_at) AS first, max(finished_at) AS last "
                            "FROM statesync_attempts WHERE handler = 'ordered_tick'")
    assert row is not None
    spread: float = (row["last"] - row["first"]).total_seconds()
    rate = events / max(spread, 1e-3)
    print(f"ordered backlog, {events} events on one key: {rate:,.0f} deliveries/s "
          f"({spread:.2f} s first start to last end)")
    return rate


async def run(procs: Stack, database_url: str, args: argparse.Namespace) -> None:
    db = await asyncpg.connect(database_url)
    try:
        async with Client(procs.base, timeout=30) as api:
            ids = [f"ev-{i}" for i in range(args.clients)]
            for doc_id in ids:
                await api.create("Product", PRODUCT, id=doc_id)
            raw = RawCelery(procs.redis_url)
            try:
                raw_rate, raw_cpu = await asyncio.to_thread(raw.backlog, 2 * args.events,
                                                            args.timeout)
                raw_trips = await raw.round_trips(args.changes)
            finally:
                raw.stop()
            print(f"raw Celery (no-op tasks, -c 2): {raw_rate:,.0f} tasks/s from a backlog of "
                  f"{2 * args.events}; send -> task -> PUBLISH -> subscriber "
                  f"p50 {statistics.median(raw_trips) * 1e3:.1f} ms, "
                  f"p99 {percentile(raw_trips, 0.99) * 1e3:.1f} ms")
            print(f"  {cpu_line(raw_cpu, 'task')}")
            await relay_alone(procs, api, db, ids, args.events, args.timeout)
            rate = await worker_backlog(procs, db, args.events, args.timeout)
            echoed = await latency(procs, api, args.changes)
            await end_to_end(procs, api, db, ids, args.events, args.timeout,
                             before=2 * args.events + 2 * args.changes)
            noop, _ = await noop_backlog(procs, api, db, 2 * args.events, args.timeout)
            ordered = await ordered_backlog(procs, api, db, args.ordered, args.timeout)
    finally:
        await db.close()
    print()
    print("| figure | raw Celery | statesync | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| deliveries/s from a backlog, worker -c 2 | {raw_rate:,.0f} no-op tasks/s | "
          f"{rate:,.0f} | {rate / raw_rate:.3f}x |")
    print(f"| deliveries/s from a backlog, no-op handler, -c 2 | {raw_rate:,.0f} no-op tasks/s | "
          f"{noop:,.0f} | {noop / raw_rate:.3f}x |")
    print(f"| round trip p50 / p99, ms | send -> task -> subscriber "
          f"{statistics.median(raw_trips) * 1e3:.1f} / {percentile(raw_trips, 0.99) * 1e3:.1f} | "
          f"mutation -> handler's change at a subscriber {statistics.median(echoed) * 1e3:.1f} / "
          f"{percentile(echoed, 0.99) * 1e3:.1f} | p99 "
          f"{percentile(echoed, 0.99) / percentile(raw_trips, 0.99):.1f}x raw |")
    print(f"| ordered backlog on one key, deliveries/s | {raw_rate:,.0f} no-op tasks/s | "
          f"{ordered:,.0f} | {ordered / raw_rate:.3f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--ordered", type=int, default=10_000, help="events on one ordered key")
    parser.add_argument("--timeout", type=float, default=180, help="seconds any one wait may take")
    args = parser.parse_args()
    with services() as (database_url, redis_url), stack(database_url, redis_url) as procs:
        procs.start("serve", "serve")
        procs.wait_healthy(60)
        asyncio.run(run(procs, database_url, args))


if __name__ == "__main__":
    main()
