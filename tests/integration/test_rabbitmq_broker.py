"""RabbitMQ works as the broker too (Redis is the default).

Needs a RabbitMQ server: STATESYNC_TEST_AMQP_URL, or guest@127.0.0.1:5672 when one
listens there; skipped, saying so, where none can be reached.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable

import pytest

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import CeleryWorker, serve
from tests.support import GraphQLClient, Subscriptions

AMQP_URL = os.environ.get("STATESYNC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _reachable(url: str) -> bool:
    host_port = url.split("@")[-1].split("/")[0]
    host, _, port = host_port.partition(":")
    try:
        socket.create_connection((host, int(port or 5672)), 1).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _reachable(AMQP_URL), reason=f"no RabbitMQ reachable at {AMQP_URL}")
async def test_the_loop_runs_over_rabbitmq(
        settings: Settings, demo_models: list[ModelSpec],
        start_worker: Callable[..., Awaitable[CeleryWorker]]) -> None:
    amqp = settings.model_copy(update={"broker_url": AMQP_URL})
    async with serve(amqp, demo_models, with_relay=True) as server:
        await start_worker(amqp)
        client = GraphQLClient(server.base_url)
        await client.data('mutation { createProduct(id: "tea", input: {sku: "tea", name: "Tea", '
                          "priceCents: 300}) { version } }")
        async with Subscriptions.connect(server.ws_url) as subs:
            op = await subs.subscribe('subscription { order(id: "o1") { op version '
                                      "document { status totalCents } } }")
            assert (await subs.next(op))["op"] == "SNAPSHOT"
            await client.data('mutation { createOrder(id: "o1", input: {customer: "ann", '
                              'items: [{sku: "tea", qty: 3}]}) { version } }')
            assert (await subs.next(op))["op"] == "CREATED"
            priced = await subs.next(op)
            assert priced["document"] == {"status": "PRICED", "totalCents": 900}
        await client.aclose()
