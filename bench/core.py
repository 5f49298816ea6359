"""Core benchmark: committed mutations/s over HTTP, and change -> subscriber latency.

Starts one `statesync serve` process (on embedded PostgreSQL and Redis unless
STATESYNC_DATABASE_URL / STATESYNC_REDIS_URL are set), then, through statesync.client
(so every mutation carries a mutationId, as the client's commits always do):

1. throughput: CLIENTS concurrent HTTP clients run `updateProduct` mutations for
   SECONDS; prints commits/s and request latency percentiles;
2. latency: SUBSCRIBERS websocket subscriptions watch one document while
   CHANGES updates are committed one at a time; prints the time from sending a
   mutation to each subscriber receiving its change (p50/p99 over all pairs).

Run: .venv/bin/python bench/core.py [--clients 16] [--seconds 10] [--subscribers 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx

from statesync.client import Client, StatesyncClientError

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATA = ROOT / ".statesync-bench"
PRODUCT = {"sku": "bench", "name": "bench", "priceCents": 1}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def services() -> Iterator[tuple[str, str]]:
    database_url = os.environ.get("STATESYNC_DATABASE_URL")
    redis_url = os.environ.get("STATESYNC_REDIS_URL")
    with contextlib.ExitStack() as stack:
        from statesync.embedded import redis_server, start_postgres

        if not database_url:
            database_url = start_postgres(BENCH_DATA)
            reset_database(database_url)
        if not redis_url:
            redis_url = stack.enter_context(redis_server(BENCH_DATA, persistent=False))
        yield database_url, redis_url


def reset_database(url: str) -> None:
    """Each run starts from empty tables, so figures do not drift with leftovers."""
    import asyncpg

    async def reset() -> None:
        connection = await asyncpg.connect(url)
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        await connection.close()

    asyncio.run(reset())


class Api(NamedTuple):
    base: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def api_process(database_url: str, redis_url: str, **settings: str) -> Iterator[Api]:
    """`statesync serve` on a free port; ``settings`` are more STATESYNC_* variables."""
    port = free_port()
    env = {**os.environ, "STATESYNC_DATABASE_URL": database_url, "STATESYNC_REDIS_URL": redis_url,
           "STATESYNC_PORT": str(port), "STATESYNC_SCHEMA_PATH": str(ROOT / "schema"),
           "STATESYNC_LOG_LEVEL": "WARNING", "STATESYNC_CHANNEL_PREFIX": f"bench-{port}",
           "STATESYNC_OPEN_ACCESS": "true",  # the benchmark's clients act as the admin
           **{f"STATESYNC_{name.upper()}": value for name, value in settings.items()}}
    process = subprocess.Popen([sys.executable, "-m", "statesync", "serve"], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None:
                raise SystemExit("statesync serve exited during startup")
            time.sleep(0.1)  # waiting on another process's readiness; no event to await
        else:
            raise SystemExit("statesync serve did not become healthy in 30 s")
        yield Api(base, process)
    finally:
        process.terminate()
        process.wait(10)


async def measure_commits(base: str, clients: int, seconds: float) -> tuple[float, float, float]:
    """``clients`` concurrent `updateProduct` commits for ``seconds``: commits/s, p50, p99 (s)."""
    async with Client(base, timeout=30) as api:
        ids = [f"tp-{i}" for i in range(clients)]
        for doc_id in ids:
            with contextlib.suppress(StatesyncClientError):  # there from an earlier round
                await api.create("Product", PRODUCT, id=doc_id)
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def worker(doc_id: str) -> None:
            n = 0
            while time.perf_counter() < deadline:
                n += 1
                started = time.perf_counter()
                await api.update("Product", doc_id, {"priceCents": n})
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in ids))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99)


async def throughput(base: str, clients: int, seconds: float) -> None:
    rate, p50, p99 = await measure_commits(base, clients, seconds)
    print(f"mutations over HTTP, {clients} clients, {seconds:.0f} s: {rate:,.0f} commits/s; "
          f"latency p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms")


async def subscriber(api: Client, doc_id: str, ready: asyncio.Event, count: list[int],
                     received: dict[int, list[float]], everyone: dict[int, asyncio.Event],
                     changes: int) -> None:
    seen = 0
    async with contextlib.aclosing(api.watch("Product", id=doc_id, fields="priceCents")) as stream:
        async for change in stream:
            if change.op == "SNAPSHOT":
                count[0] += 1
                if count[0] == count[1]:
                    ready.set()
                continue
            assert change.document is not None, change
            price = change.document["priceCents"]
            arrivals = received.setdefault(price, [])
            arrivals.append(time.perf_counter())
            if len(arrivals) == count[1]:
                everyone.setdefault(price, asyncio.Event()).set()
            seen += 1
            if seen == changes:
                return


async def latency(base: str, subscribers: int, changes: int) -> None:
    doc_id = "latency"
    async with Client(base, timeout=30) as api:
        await api.create("Product", PRODUCT, id=doc_id)
        ready = asyncio.Event()
        count = [0, subscribers]
        received: dict[int, list[float]] = {}
        everyone: dict[int, asyncio.Event] = {}
        readers = [asyncio.create_task(
            subscriber(api, doc_id, ready, count, received, everyone, changes))
            for _ in range(subscribers)]
        await asyncio.wait_for(ready.wait(), 60)
        sent: dict[int, float] = {}
        for n in range(1000, 1000 + changes):
            sent[n] = time.perf_counter()
            await api.update("Product", doc_id, {"priceCents": n})
            # Light load: every subscriber has this change before the next one is sent.
            await asyncio.wait_for(everyone.setdefault(n, asyncio.Event()).wait(), 30)
        await asyncio.gather(*readers)
    delays = [(t - sent[n]) * 1e3 for n, times in received.items() for t in times]
    print(f"change -> subscriber, {subscribers} subscribers, {changes} changes: "
          f"p50 {statistics.median(delays):.1f} ms, p99 {percentile(delays, 0.99):.1f} ms "
          f"(from sending the mutation to each subscriber's receipt)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    with services() as (database_url, redis_url), api_process(database_url, redis_url) as api:
        asyncio.run(throughput(api.base, args.clients, args.seconds))
        asyncio.run(latency(api.base, args.subscribers, args.changes))


if __name__ == "__main__":
    main()
