"""/metrics counts what the API did, in the Prometheus text format, for the admin only."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import RunningServer, serve
from tests.integration.test_fanout import WATCH_ONE, create, update
from tests.support import WAIT, GraphQLClient, Subscriptions

SECRET = "metrics-admin-secret"


async def scrape(base_url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(base_url=base_url, timeout=WAIT) as http:
        response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def value(figures: dict[Any, float], name: str, **labels: str) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_follow_commits_errors_and_subscriptions(
        server: RunningServer, client: GraphQLClient) -> None:
    before = await scrape(server.base_url)
    await create(client, "m1")
    await update(client, "m1", note="one")
    await update(client, "m1", note="two")
    bad = await client.error('mutation { updateOrder(id: "m1", patch: {note: "x"}, '
                             'expectedVersion: 1) { version } }')
    assert bad["extensions"]["code"] == "CONFLICT"

    async with Subscriptions.connect(server.ws_url) as subs:
        op = await subs.subscribe(WATCH_ONE, {"id": "m1"})
        assert (await subs.next(op))["op"] == "SNAPSHOT"
        during = await scrape(server.base_url)
        await update(client, "m1", note="three")
        assert (await subs.next(op))["document"]["note"] == "three"
        after_frame = await scrape(server.base_url)
    after = await scrape(server.base_url)

    def grew(name: str, figures: dict[Any, float] = after, **labels: str) -> float:
        return value(figures, name, **labels) - value(before, name, **labels)

    assert grew("statesync_commits_total", model="Order", op="CREATED") == 1
    assert grew("statesync_commits_total", model="Order", op="UPDATED") == 3
    assert grew("statesync_commit_seconds_count", model="Order") == 5  # the conflict too
    assert grew("statesync_errors_total", code="CONFLICT") == 1
    assert value(during, "statesync_subscriptions") == 1
    assert value(during, "statesync_websockets") == 1
    assert value(after, "statesync_subscriptions") == 0
    sent = (grew("statesync_frames_sent_total", after_frame, path="direct")
            + grew("statesync_frames_sent_total", after_frame, path="stream"))
    assert sent == 2  # the snapshot and one change
    # Read from the database at scrape time: the head covers all four changes.
    assert value(after, "statesync_feed_head_cursor") >= 4
    assert value(after, "statesync_sequencer_active") == 1


async def test_metrics_are_the_admins(settings: Settings, demo_models: list[ModelSpec]) -> None:
    closed = settings.model_copy(update={"open_access": False, "admin_secret": SECRET})
    async with serve(closed, demo_models) as server, \
               httpx.AsyncClient(base_url=server.base_url, timeout=WAIT) as http:
        assert (await http.get("/metrics")).status_code == 403  # anonymous
        wrong = await http.get("/metrics", headers={"x-statesync-admin-secret": "nope"})
        assert wrong.status_code == 401
        figures = await scrape(server.base_url, **{"x-statesync-admin-secret": SECRET})
        assert ("statesync_outbox_backlog", ()) in figures
        assert ("statesync_deliveries", (("status", "dead"),)) in figures


async def test_errors_answered_outside_graphql_and_refused_sockets_are_counted(
        server: RunningServer) -> None:
    before = await scrape(server.base_url)
    too_big = b'{"query": "' + b"x" * (server.settings.max_request_bytes + 1) + b'"}'
    async with httpx.AsyncClient(base_url=server.base_url, timeout=WAIT) as http:
        refused = await http.post("/graphql", content=too_big,
                                  headers={"content-type": "application/json"})
    assert refused.status_code == 413
    async with websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send("[1, 2]")  # not a message of the protocol
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), WAIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    after = await scrape(server.base_url)
    assert (value(after, "statesync_errors_total", code="PAYLOAD_TOO_LARGE")
            - value(before, "statesync_errors_total", code="PAYLOAD_TOO_LARGE")) == 1
    assert (value(after, "statesync_websocket_refusals_total", code="4400")
            - value(before, "statesync_websocket_refusals_total", code="4400")) == 1
