"""Soak benchmark: a normal client's commits beside a hostile mix, against its own figures
on an idle server.

Starts one `statesync serve` (embedded PostgreSQL and Redis unless STATESYNC_DATABASE_URL
/ STATESYNC_REDIS_URL are set), seeds a catalog and a collection worth snapshotting, then:

1. idle: CLIENTS concurrent `updateProduct` commits through statesync.client for SECONDS;
2. hostile: the same, while another process (its own core share, as an attacker's would
   be) runs, for the same time:
   - the cheapest expensive requests the robustness issue measured: 90k tokens, 5k
     identical aliases, 50k directives, 35k point-lookup aliases, 100 aliases of
     `orders(first: 500)`, JSON nested 1,000 deep, a 9.7 MB websocket frame with a
     1M-element `in` list;
   - sockets that subscribe to a large collection and never read;
   - 1,000 collection subscriptions opened at once on 5 sockets, again and again;
   - connections that send their headers a byte at a time.

It prints the normal client's commits/s and p99 in both phases and their ratio (target
>= 0.5), what the hostile side got back (by error code; anything else is a failure),
and the server's resident memory: idle, peak, and 5 s after the attack stopped.

Run: .venv/bin/python bench/soak.py [--clients 4] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import struct
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
from harness import api_process, measure_commits, services  # bench/harness.py, beside this file
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from statesync.client import Client
from statesync.config import Settings

MAX_REQUEST_BYTES = Settings.model_fields["max_request_bytes"].default
COLLECTION = ('subscription { orders(where: {customer: {eq: "soak"}}) '
              "{ op documents { id note items { sku } } } }")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


# ---- the normal client -----------------------------------------------------------------

async def commits(base: str, clients: int, seconds: float) -> tuple[float, float]:
    rate, _, p99 = await measure_commits(base, clients, seconds)
    return rate, p99 * 1e3


async def seed(base: str) -> None:
    async with Client(base, timeout=30) as api:
        for n in range(500):
            await api.create("Order", {"customer": "soak", "note": "x" * 200,
                                       "items": [{"sku": "soak", "qty": 1}] * 5}, id=f"order-{n}")


# ---- the hostile side (its own process) --------------------------------------------------

def expensive_bodies() -> list[bytes]:
    queries = [
        "{ " + " ".join("__typename" for _ in range(90_000)) + " }",
        "{ " + " ".join('a: order(id: "x") { id }' for _ in range(5_000)) + " }",
        '{ order(id: "x") { id ' + " ".join("@include(if: true)" for _ in range(50_000)) + " } }",
        "{ " + " ".join(f'a{i}: order(id: "{i}") {{ id }}' for i in range(35_000)) + " }",
        "{ " + " ".join(f"a{i}: orders(first: 500) {{ nodes {{ id customer }} }}" for i in range(100)) + " }",
    ]
    bodies = [orjson.dumps({"query": q}) for q in queries]
    bodies.append(b'{"query": "{ __typename }", "variables": ' + b"[" * 1000 + b"]" * 1000 + b"}")
    return bodies


async def expensive_requests(base: str, until: float, tally: Counter[str]) -> None:
    bodies = expensive_bodies()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        n = 0
        while time.monotonic() < until:
            n += 1
            body = bodies[n % len(bodies)]
            try:
                response = await http.post("/graphql", content=body,
                                           headers={"content-type": "application/json"})
                errors = response.json().get("errors") or [{"extensions": {"code": "ANSWERED"}}]
                tally[errors[0]["extensions"]["code"]] += 1
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
                # The server answers 413 and closes as soon as the length is known; a client
                # still sending the rest of a body over the limit may see the close first.
                over = len(body) > MAX_REQUEST_BYTES
                tally["PAYLOAD_TOO_LARGE (closed mid-body)" if over
                      else f"failure: {type(exc).__name__}"] += 1
            except (httpx.HTTPError, ValueError) as exc:
                tally[f"failure: {type(exc).__name__}"] += 1


async def huge_frame(ws_url: str, until: float, tally: Counter[str]) -> None:
    frame = orjson.dumps({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription($ids: [ID!]) { orders(where: {id: {in: $ids}}) { op } }",
        "variables": {"ids": [str(n) for n in range(1_000_000)]}}}).decode()
    while time.monotonic() < until:
        try:
            async with connect(ws_url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                               compression=None, max_size=None) as ws:
                await ws.send('{"type": "connection_init"}')
                await ws.recv()
                await ws.send(frame)
                await ws.recv()
        except ConnectionClosed as closed:
            tally[f"ws close {closed.rcvd.code if closed.rcvd else 'none'}"] += 1
        except (OSError, InvalidStatus) as exc:
            tally[f"failure: {type(exc).__name__}"] += 1


def _masked(text: str) -> bytes:
    payload, mask = text.encode(), os.urandom(4)
    length = len(payload)
    header = (struct.pack("!BB", 0x81, 0x80 | length) if length < 126
              else struct.pack("!BBH", 0x81, 0x80 | 126, length))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def non_reader(host: str, port: int, until: float, tally: Counter[str]) -> None:
    loop = asyncio.get_running_loop()
    while time.monotonic() < until:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (host, port))
            await loop.sock_sendall(sock, (
                f"GET /graphql HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: c29hay1zb2FrLXNvYWsxMg==\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n").encode())
            await loop.sock_recv(sock, 1024)
            await loop.sock_sendall(sock, _masked('{"type": "connection_init"}'))
            for n in range(20):
                await loop.sock_sendall(sock, _masked(orjson.dumps({
                    "id": str(n), "type": "subscribe", "payload": {"query": COLLECTION}}).decode()))
            while time.monotonic() < until:  # never read; wait to be cut off
                await asyncio.sleep(0.5)
                try:
                    sock.send(b"")
                    await loop.sock_sendall(sock, _masked('{"type": "ping"}'))
                except OSError:
                    tally["non-reader cut off"] += 1
                    break
        except OSError:
            tally["non-reader cut off"] += 1
        finally:
            sock.close()


async def subscription_storm(ws_url: str, until: float, tally: Counter[str]) -> None:
    async def one_socket() -> None:
        async with connect(ws_url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                           compression=None, max_size=None) as ws:
            await ws.send('{"type": "connection_init"}')
            await ws.recv()
            for n in range(200):
                await ws.send(orjson.dumps({"id": str(n), "type": "subscribe",
                                            "payload": {"query": COLLECTION}}).decode())
            snapshots = 0
            while snapshots < 200 and time.monotonic() < until:
                message = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
                if message.get("type") == "next":
                    snapshots += 1
            tally["storm snapshots"] += snapshots

    while time.monotonic() < until:
        try:
            await asyncio.gather(*(one_socket() for _ in range(5)))
        except (OSError, ConnectionClosed, TimeoutError, InvalidStatus) as exc:
            tally[f"storm failure: {type(exc).__name__}"] += 1


async def slowloris(host: str, port: int, until: float, tally: Counter[str]) -> None:
    loop = asyncio.get_running_loop()

    async def drip() -> None:
        while time.monotonic() < until:
            sock = socket.socket()
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (host, port))
                await loop.sock_sendall(sock, b"POST /graphql HTTP/1.1\r\nhost: x\r\nx-slow: ")
                while time.monotonic() < until:
                    await asyncio.sleep(2)
                    await loop.sock_sendall(sock, b"a")
                    if await asyncio.wait_for(loop.sock_recv(sock, 1), 0.01) == b"":
                        break
            except TimeoutError:
                continue
            except OSError:
                tally["slowloris cut off"] += 1
            finally:
                sock.close()

    await asyncio.gather(*(drip() for _ in range(100)))


ATTACKS = ("requests", "frame", "non-readers", "storm", "slowloris")


def hostile(base: str, seconds: float, attacks: tuple[str, ...],
            results: multiprocessing.Queue[dict[str, int]]) -> None:
    host, port = base.removeprefix("http://").split(":")
    ws_url = f"ws://{host}:{port}/graphql"

    async def attack() -> Counter[str]:
        until = time.monotonic() + seconds
        tally: Counter[str] = Counter()
        runs = {
            "requests": lambda: [expensive_requests(base, until, tally) for _ in range(8)],
            "frame": lambda: [huge_frame(ws_url, until, tally)],
            "non-readers": lambda: [non_reader(host, int(port), until, tally) for _ in range(5)],
            "storm": lambda: [subscription_storm(ws_url, until, tally)],
            "slowloris": lambda: [slowloris(host, int(port), until, tally)],
        }
        await asyncio.gather(*(work for name in attacks for work in runs[name]()))
        return tally

    results.put(dict(asyncio.run(attack())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--only", choices=ATTACKS, action="append",
                        help="run only this part of the hostile mix (repeatable)")
    args = parser.parse_args()
    attacks = tuple(args.only or ATTACKS)
    with services() as (database_url, redis_url), api_process(database_url, redis_url) as api:
        asyncio.run(seed(api.base))
        idle_rate, idle_p99 = asyncio.run(commits(api.base, args.clients, args.seconds))
        idle_rss = rss_mib(api.process.pid)
        spawn = multiprocessing.get_context("spawn")
        results: multiprocessing.Queue[dict[str, int]] = spawn.Queue()
        attacker = spawn.Process(target=hostile, args=(api.base, args.seconds, attacks, results))
        attacker.start()
        rate, p99 = asyncio.run(commits(api.base, args.clients, args.seconds))
        tally = results.get(timeout=args.seconds + 120)
        attacker.join(30)
        peak = rss_mib(api.process.pid, "VmHWM")
        time.sleep(5)  # memory after the attack: what the server kept
        final = rss_mib(api.process.pid)
        alive = api.process.poll() is None and httpx.get(f"{api.base}/healthz").status_code == 200
    print(f"soak: a hostile mix ({', '.join(attacks)}) for {args.seconds:.0f} s beside a normal "
          f"client ({args.clients} concurrent commits)")
    print(f"  normal client, idle server:   {idle_rate:8,.0f} commits/s, p99 {idle_p99:6.1f} ms")
    print(f"  normal client, under attack:  {rate:8,.0f} commits/s, p99 {p99:6.1f} ms   "
          f"ratio {rate / idle_rate:.2f} (target >= 0.5)")
    print("  the attacker got: " + ", ".join(f"{code} {count:,}" for code, count in sorted(tally.items())))
    print(f"  server RSS: idle {idle_rss:.0f} MiB, peak {peak:.0f} MiB, 5 s after {final:.0f} MiB; "
          f"{'still serving' if alive else 'NOT SERVING'}")


if __name__ == "__main__":
    main()
