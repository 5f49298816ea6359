"""The README's first command, as a user runs it: `statesync dev` with nothing but Python."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
CREATE = ('mutation { createProduct(id: "tea", input: {sku: "tea", name: "Tea", priceCents: 450}) '
          "{ version } }")
READ = '{ product(id: "tea") { name priceCents version } }'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def statesync_dev(data_dir: Path) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATESYNC_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "statesync", "dev", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "statesync dev did not become healthy"
            time.sleep(0.1)  # readiness of another process: there is no event to wait on
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
        assert process.returncode == 0, output


ORDER = ('mutation { createOrder(id: "o1", input: {customer: "ann", items: [{sku: "tea", qty: 2}]}) '
         "{ version } }")
READ_ORDER = '{ order(id: "o1") { status totalCents } }'
PRICED_TIMEOUT = 60.0


def _wait_for_price(base: str) -> dict[str, object]:
    """The worker started by `statesync dev` prices the order; wait for it, with a deadline."""
    deadline = time.monotonic() + PRICED_TIMEOUT
    while True:
        order = httpx.post(f"{base}/graphql", json={"query": READ_ORDER}).json()["data"]["order"]
        if order["status"] != "NEW" or time.monotonic() > deadline:
            return dict(order)
        time.sleep(0.1)  # another process's progress: there is no event to wait on here


def test_dev_embeds_everything_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with statesync_dev(data_dir) as base:
        created = httpx.post(f"{base}/graphql", json={"query": CREATE}).json()
        assert created == {"data": {"createProduct": {"version": 1}}}
        assert httpx.get(f"{base}/graphql", headers={"accept": "text/html"}).status_code == 200
        assert httpx.post(f"{base}/graphql", json={"query": ORDER}).json() == {
            "data": {"createOrder": {"version": 1}}}
        assert _wait_for_price(base) == {"status": "PRICED", "totalCents": 900}
    assert (data_dir / "postgres" / "PG_VERSION").exists()
    with statesync_dev(data_dir) as base:
        read = httpx.post(f"{base}/graphql", json={"query": READ}).json()
        assert read == {"data": {"product": {"name": "Tea", "priceCents": 450, "version": 1}}}


CATALOG = '{ products(orderBy: [{field: SKU}]) { nodes { sku } } }'
SEEDED = ["bagel", "croissant", "espresso", "juice", "matcha"]


def _wait_for_catalog(base: str) -> list[str]:
    """`statesync dev` seeds the demo catalog just after it starts listening."""
    deadline = time.monotonic() + PRICED_TIMEOUT
    while True:
        nodes = httpx.post(f"{base}/graphql", json={"query": CATALOG}).json()["data"]["products"]["nodes"]
        if len(nodes) >= len(SEEDED) or time.monotonic() > deadline:
            return [node["sku"] for node in nodes]
        time.sleep(0.1)  # another process's progress: there is no event to wait on here


def test_dev_serves_the_demo_board_the_js_client_and_a_seeded_catalog(tmp_path: Path) -> None:
    with statesync_dev(tmp_path / "data") as base:
        board = httpx.get(f"{base}/")
        assert board.status_code == 200 and "<title>statesync · order board</title>" in board.text
        module = httpx.get(f"{base}/client/statesync.js")
        assert module.status_code == 200
        assert module.headers["content-type"].startswith("text/javascript")
        assert "export function createStatesync" in module.text
        assert httpx.get(f"{base}/client/vendor/graphql-ws/client.js").status_code == 200
        assert _wait_for_catalog(base) == SEEDED
    with statesync_dev(tmp_path / "data") as base:  # seeding again is a replay: nothing doubles
        assert _wait_for_catalog(base) == SEEDED


def test_dev_hands_out_customer_tokens_whose_rules_apply(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with statesync_dev(data_dir) as base:
        # the board's way: the dev server mints a token for any customer
        ann = httpx.post(f"{base}/dev/token", json={"user": "ann", "role": "customer"}).json()["token"]
        as_ann = {"authorization": f"Bearer {ann}"}
        mine = httpx.post(f"{base}/graphql", headers=as_ann, json={
            "query": 'mutation { createOrder(input: {items: [{sku: "tea", qty: 1}]}) '
                     "{ document { customer } } }"}).json()
        assert mine == {"data": {"createOrder": {"document": {"customer": "ann"}}}}
        # the command line's way, with the same data folder's secret
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATESYNC_")}
        env["STATESYNC_DATA_DIR"] = str(data_dir)
        minted = subprocess.run([sys.executable, "-m", "statesync", "token", "--user", "bob",
                                 "--role", "customer"], env=env, cwd=ROOT, capture_output=True,
                                text=True, timeout=60, check=True).stdout.strip()
        as_bob = {"authorization": f"Bearer {minted}"}
        theirs = httpx.post(f"{base}/graphql", headers=as_bob,
                            json={"query": "{ orders { nodes { customer } } }"}).json()
        assert theirs == {"data": {"orders": {"nodes": []}}}  # ann's order is not bob's


def _tour_requests() -> list[dict[str, object]]:
    """The JSON bodies the README's tour sends with curl (`-d '...'`), in its order."""
    readme = (ROOT / "README.md").read_text()
    tour = readme[readme.index("## A short tour"):readme.index("Resume after a disconnect")]
    return [json.loads(body) for body in re.findall(r"-d '(\{.*?\})'", tour, re.S)]


def _lines(process: subprocess.Popen[str], count: int) -> list[dict[str, object]]:
    """The next ``count`` JSON lines `statesync watch` prints (a watch that hangs is cut off
    by pytest's timeout)."""
    assert process.stdout is not None
    got: list[dict[str, object]] = []
    deadline = time.monotonic() + PRICED_TIMEOUT
    while len(got) < count:
        assert time.monotonic() < deadline, got
        line = process.stdout.readline()  # blocks until a line: the watch's own pace
        assert line, f"statesync watch ended: {process.communicate()}"
        got.append(json.loads(line))
    return got


def test_the_readme_tour_in_order_shows_the_worker_s_update_arrive(tmp_path: Path) -> None:
    sse, create, update = _tour_requests()
    with statesync_dev(tmp_path / "data") as base:
        _wait_for_catalog(base)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATESYNC_")}
        watch = subprocess.Popen([sys.executable, "-m", "statesync", "watch", "Order", "o1",
                                  "--url", base], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            with httpx.stream("POST", f"{base}/graphql", json=sse, timeout=PRICED_TIMEOUT,
                              headers={"accept": "text/event-stream"}) as stream:
                events = (json.loads(line[5:]) for line in stream.iter_lines()
                          if line.startswith("data:") and line[5:].strip())
                assert next(events)["data"]["order"]["op"] == "SNAPSHOT"
                [snapshot] = _lines(watch, 1)
                assert snapshot["op"] == "SNAPSHOT" and "document" not in snapshot
                answer = httpx.post(f"{base}/graphql", json=create).json()["data"]["createOrder"]
                assert (answer["op"], answer["version"]) == ("CREATED", 1)
                created, priced = _lines(watch, 2)
                assert (created["op"], created["version"]) == ("CREATED", 1)
                assert (priced["op"], priced["version"]) == ("UPDATED", 2)
                assert isinstance(priced["document"], dict)
                assert (priced["document"]["status"], priced["document"]["totalCents"]) == (
                    "PRICED", 700)
                again = httpx.post(f"{base}/graphql", json=create).json()["data"]["createOrder"]
                assert again == answer  # the same mutationId: the same answer, nothing new
                noted = httpx.post(f"{base}/graphql", json=update).json()["data"]["updateOrder"]
                assert noted == {"version": 3, "changedFields": ["note"]}
                [changed] = _lines(watch, 1)
                assert (changed["op"], changed["version"], changed["changedFields"]) == (
                    "UPDATED", 3, ["note"])
                seen = [next(events)["data"]["order"] for _ in range(3)]
                assert [(s["op"], s["version"]) for s in seen] == [
                    ("CREATED", 1), ("UPDATED", 2), ("UPDATED", 3)]
        finally:
            watch.terminate()
            watch.wait(10)
