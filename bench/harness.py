"""What every benchmark shares: the servers (embedded unless STATESYNC_DATABASE_URL /
STATESYNC_REDIS_URL are set), `statesync serve` on a free port, the Node load generator,
percentiles and a process's resident memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

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


NODE_DIR = Path(__file__).resolve().parent / "node"


def _ensure_node() -> None:
    if shutil.which("node") is None:
        raise SystemExit("these benchmarks drive the server from Node.js 18+: install node and npm")
    if not (NODE_DIR / "node_modules").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)


def node(script: str, *args: object, timeout: float = 600) -> dict[str, Any]:
    """Run a load generator in ``bench/node/`` (installed with ``npm ci`` on first use) and
    return the JSON it prints: the load comes from another process than the server's."""
    _ensure_node()
    done = subprocess.run(["node", script, *map(str, args)], cwd=NODE_DIR, check=True,
                          capture_output=True, text=True, timeout=timeout)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def node_holding(script: str, *args: object) -> Iterator[dict[str, Any]]:
    """A load generator that opens its sockets, prints what it opened and holds them until
    its stdin closes (memory figures)."""
    _ensure_node()
    process = subprocess.Popen(["node", script, *map(str, args)], cwd=NODE_DIR, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stdin is not None
        yield json.loads(process.stdout.readline())
        process.stdin.close()
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError("VmRSS")


def allow_many_sockets() -> None:
    """Children inherit the limit: thousands of sockets need thousands of descriptors."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _role(cmdline: list[str]) -> str | None:
    """What one process is, for a CPU breakdown, from its command line."""
    if not cmdline:
        return None
    text = " ".join(cmdline)
    if "postgres" in cmdline[0] or text.startswith("postgres:"):
        return "postgres"
    if "redis-server" in text:
        return "redis"
    if "raw_celery" in text:
        return "raw celery"
    for command in ("serve", "relay", "worker"):
        if "statesync" in text and f" {command}" in text:
            return command
    return None


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far by each role's processes on this machine,
    live ones only: take two and subtract (CpuMeter)."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended between the listing and the read
        role = _role([part for part in cmdline if part])
        if role is not None:
            used[role] = used.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return used


class CpuMeter:
    """CPU each role spent between ``start()`` and ``per(n)``, in ms per unit of work.
    A process that exits in between is not counted (its time leaves /proc with it)."""

    def __init__(self) -> None:
        self.before: dict[str, float] = {}

    def start(self) -> None:
        self.before = cpu_seconds()

    def per(self, units: int) -> dict[str, float]:
        after = cpu_seconds()
        return {role: (after[role] - self.before.get(role, 0.0)) * 1e3 / max(units, 1)
                for role in sorted(after)}


def cpu_line(per_unit: dict[str, float], unit: str) -> str:
    parts = ", ".join(f"{role} {ms:.2f}" for role, ms in per_unit.items() if ms >= 0.005)
    return f"CPU ms per {unit}: {parts} (total {sum(per_unit.values()):.2f})"
