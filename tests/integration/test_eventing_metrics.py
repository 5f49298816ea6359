"""The relay and the workers serve their own figures on STATESYNC_METRICS_PORT: scraped
after a real order went through the pricing handler (two attempts: its creation, then the
handler's own update, which it skips)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from statesync.config import Settings, environment
from tests.conftest import ROOT, RunningServer
from tests.integration.test_metrics import value
from tests.integration.test_python_client import free_port
from tests.support import WAIT, GraphQLClient, ProcessUnderTest, eventually


class StatesyncWorker(ProcessUnderTest):
    """`statesync worker`, the production entry (it sets up the pool's metrics folder)."""

    ready_when = " ready."

    def __init__(self, settings: Settings) -> None:
        super().__init__([sys.executable, "-m", "statesync", "worker", "--concurrency", "2",
                          "--without-mingle", "--without-gossip"],
                         {k: v for k, v in environment(settings, os.environ).items()
                          if k != "PROMETHEUS_MULTIPROC_DIR"}, ROOT)


class StatesyncRelay(ProcessUnderTest):
    ready_when = "relay active"

    def __init__(self, settings: Settings) -> None:
        super().__init__([sys.executable, "-m", "statesync", "relay"],
                         environment(settings, os.environ), ROOT)


@pytest.fixture
def processes() -> Iterator[list[ProcessUnderTest]]:
    started: list[ProcessUnderTest] = []
    try:
        yield started
    finally:
        for process in started:
            process.stop()


async def scrape(port: int) -> dict[Any, float] | None:
    try:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
    except httpx.TransportError:
        return None  # not listening yet
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


async def test_the_worker_and_the_relay_count_what_they_did(
        server: RunningServer, processes: list[ProcessUnderTest]) -> None:
    worker_port, relay_port = free_port(), free_port()
    worker = StatesyncWorker(server.settings.model_copy(update={"metrics_port": worker_port}))
    relay = StatesyncRelay(server.settings.model_copy(update={"metrics_port": relay_port}))
    processes += [worker, relay]
    await worker.ready()
    await relay.ready()
    client = GraphQLClient(server.base_url)
    await client.data('mutation { createProduct(id: "tea", input: {sku: "tea", name: "Tea", '
                      "priceCents: 450}) { version } }")
    await client.data('mutation { createOrder(id: "o1", input: {customer: "ann", '
                      'items: [{sku: "tea", qty: 1}]}) { version } }')

    async def both_attempts() -> dict[Any, float] | None:
        figures = await scrape(worker_port)
        done = figures and value(figures, "statesync_handler_attempts_total",
                                 handler="price_order", outcome="succeeded") >= 2
        return figures if done else None

    # Summed over the pool's processes, whichever ran each attempt.
    figures = await eventually(both_attempts, what="two attempts counted")
    assert value(figures, "statesync_handler_attempts_total",
                 handler="price_order", outcome="succeeded") == 2
    assert value(figures, "statesync_handler_seconds_count", handler="price_order") == 2
    assert value(figures, "statesync_handler_attempts_total",
                 handler="price_order", outcome="retrying") == 0
    relayed = await scrape(relay_port)
    assert relayed is not None
    assert value(relayed, "statesync_relay_active") == 1
    # Product.created has no handler; the order's two events have one each.
    assert value(relayed, "statesync_relay_dispatched_total") == 2
    await client.aclose()
