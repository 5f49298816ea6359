"""What access control costs: the same work as the admin (no rules) and as customers (the
demo's rules: a row filter on the customer, presets, field checks), side by side.

Starts one `statesync serve` with an admin secret and a JWT secret (embedded PostgreSQL
and Redis unless STATESYNC_DATABASE_URL / STATESYNC_REDIS_URL are set), then:

1. commits: CLIENTS concurrent `updateOrder` commits on their own order for SECONDS, as
   the admin, then as CLIENTS customers each owning their order;
2. fan-out: SUBSCRIBERS websocket subscriptions to a collection of orders that all belong
   to one customer, as the admin, then as that customer (every change passes the rule for
   every subscriber), while one writer commits as fast as it can for SECONDS; deliveries/s.

It prints each pair and the cost of the rules (target: at most 10%).

Run: .venv/bin/python bench/access.py [--clients 16] [--subscribers 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from harness import api_process, percentile, services  # bench/harness.py, beside this file

from statesync.auth.dev import mint
from statesync.client import Client
from statesync.config import Settings

ADMIN_SECRET = "bench-admin-secret"
JWT_SECRET = "bench-jwt-secret-long-enough-for-hs256-signatures"
ITEMS = [{"sku": "tea", "qty": 1}]


def customer_token(user: str) -> str:
    settings = Settings(jwt_secret=JWT_SECRET, _env_file=None)  # type: ignore[call-arg]
    return mint(settings, user, "customer")


async def commits(base: str, clients: list[Client], ids: list[str], seconds: float
                  ) -> tuple[float, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(client: Client, doc_id: str) -> None:
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            started = time.perf_counter()
            await client.update("Order", doc_id, {"note": str(n)})
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c, i) for c, i in zip(clients, ids, strict=True)))
    return len(latencies) / (time.perf_counter() - started), percentile(latencies, 0.99) * 1e3


async def commit_figures(base: str, count: int, seconds: float, round_: str) -> dict[str, float]:
    async with Client(base, admin_secret=ADMIN_SECRET) as admin:
        for n in range(count):
            for who in ("admin", "customer"):
                await admin.create("Order", {"customer": f"{who}-{round_}-{n}", "items": ITEMS},
                                   id=f"{who}-{round_}-{n}")
    figures: dict[str, float] = {}
    async with contextlib.AsyncExitStack() as stack:
        admins = [await stack.enter_async_context(Client(base, admin_secret=ADMIN_SECRET))
                  for _ in range(count)]
        customers = [await stack.enter_async_context(Client(
            base, token=customer_token(f"customer-{round_}-{n}"))) for n in range(count)]
        figures["admin"], figures["admin_p99"] = await commits(
            base, admins, [f"admin-{round_}-{n}" for n in range(count)], seconds)
        figures["rules"], figures["rules_p99"] = await commits(
            base, customers, [f"customer-{round_}-{n}" for n in range(count)], seconds)
    return figures


async def fan_out(base: str, subscribers: int, seconds: float, *, as_customer: bool, tag: str
                  ) -> float:
    owner = f"fan-{tag}"
    async with Client(base, admin_secret=ADMIN_SECRET) as admin:
        for n in range(10):
            await admin.create("Order", {"customer": owner, "items": ITEMS}, id=f"{tag}-{n}")
        credentials = {"token": customer_token(owner)} if as_customer else {"admin_secret": ADMIN_SECRET}
        received = 0
        ready = 0
        all_ready = asyncio.Event()
        stop = asyncio.Event()

        async def subscriber() -> None:
            nonlocal received, ready
            async with Client(base, **credentials) as client:  # type: ignore[arg-type]
                # a filter of its own: for the customer, the rule is ANDed to it
                stream = client.watch("Order", where={"status": {"in": ["NEW", "PRICED"]}}, fields="note")
                async with contextlib.aclosing(stream):
                    async for change in stream:
                        if change.op == "SNAPSHOT":
                            ready += 1
                            if ready == subscribers:
                                all_ready.set()
                        else:
                            received += 1
                        if stop.is_set():
                            return

        readers = [asyncio.create_task(subscriber()) for _ in range(subscribers)]
        await asyncio.wait_for(all_ready.wait(), 120)
        deadline = time.perf_counter() + seconds
        n = 0
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            n += 1
            await admin.update("Order", f"{tag}-{n % 10}", {"note": str(n)})
        elapsed = time.perf_counter() - started
        stop.set()
        await admin.update("Order", f"{tag}-0", {"note": "last"})  # wakes every reader to stop
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 30)
        for reader in readers:
            reader.cancel()
    return received / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with services() as (database_url, redis_url), api_process(
            database_url, redis_url, open_access="false", admin_secret=ADMIN_SECRET,
            jwt_secret=JWT_SECRET, commit_rate_per_identity="100000",
            commit_burst_per_identity="100000", max_subscriptions_per_identity="100000",
            max_websockets_per_identity="100000") as api:
        c = asyncio.run(commit_figures(api.base, args.clients, args.seconds, "c"))
        off = asyncio.run(fan_out(api.base, args.subscribers, args.seconds, as_customer=False, tag="a"))
        on = asyncio.run(fan_out(api.base, args.subscribers, args.seconds, as_customer=True, tag="b"))
    print("access control, same work as the admin (no rules) and as customers (the demo's rules):")
    print(f"  commits/s, {args.clients} clients:     admin {c['admin']:8,.0f} (p99 {c['admin_p99']:.1f} ms)"
          f"   customers {c['rules']:8,.0f} (p99 {c['rules_p99']:.1f} ms)"
          f"   rules cost {1 - c['rules'] / c['admin']:+.1%}")
    print(f"  deliveries/s, {args.subscribers} subscribers: admin {off:8,.0f}"
          f"   customer {on:8,.0f}   rules cost {1 - on / off:+.1%}   (target: at most 10%)")


if __name__ == "__main__":
    main()
