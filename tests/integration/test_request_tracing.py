"""One change followed end to end by its request id: the client's ``X-Request-Id`` is kept
with the commit's event, handed to the worker, carried by the handler's log lines (JSON,
parsed here) and inherited by the event of what the handler wrote."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from statesync.logs import JsonFormatter, RequestIdFilter
from tests.conftest import CeleryWorker, RunningServer
from tests.support import GraphQLClient, eventually

EVENTS = '{ events(first: 10) { id type key causedBy requestId } }'


async def test_a_request_id_follows_the_commit_through_the_worker(
        eventing_server: RunningServer,
        start_worker: Callable[..., Awaitable[CeleryWorker]]) -> None:
    settings = eventing_server.settings.model_copy(update={"log_format": "json",
                                                           "log_level": "DEBUG"})
    worker = await start_worker(settings)
    client = GraphQLClient(eventing_server.base_url)
    traced = GraphQLClient(eventing_server.base_url, headers={"x-request-id": "trace-42"})
    await client.data('mutation { createProduct(id: "tea", input: {sku: "tea", name: "Tea", '
                      "priceCents: 450}) { version } }")
    await traced.data('mutation { createOrder(id: "o1", input: {customer: "ann", '
                      'items: [{sku: "tea", qty: 1}]}) { version } }')

    async def priced() -> list[dict[str, Any]] | None:
        nodes = (await client.data(EVENTS))["events"]
        return nodes if any(n["type"] == "Order.updated" for n in nodes) else None

    events = {(n["type"], n["key"]): n for n in await eventually(priced, what="the order priced")}
    created, updated = events["Order.created", "o1"], events["Order.updated", "o1"]
    assert created["requestId"] == "trace-42"
    # The handler's write is caused by the created event and inherits its request.
    assert updated["requestId"] == "trace-42" and updated["causedBy"] is not None
    assert events["Product.created", "tea"]["requestId"] not in (None, "trace-42")

    def handled() -> list[dict[str, Any]]:
        lines = [orjson.loads(line) for line in worker.lines if line.startswith("{")]
        return [line for line in lines if line.get("request_id") == "trace-42"
                and line.get("logger") == "statesync.eventing.worker"]

    # Both attempts: the created event's (which priced it), and the updated event's (the
    # handler's own write, skipped), whose request is inherited.
    both = {(created["id"], "Order", "o1"), (updated["id"], "Order", "o1")}

    async def logged() -> set[tuple[str, str, str]] | None:
        seen = {(line["event_id"], line["model"], line["document_id"]) for line in handled()}
        return seen if seen >= both else None

    assert await eventually(logged, what="the worker's traced lines") == both
    assert updated["causedBy"] == created["id"]
    await client.aclose()
    await traced.aclose()



class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RequestIdFilter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(JsonFormatter().format(record)))


async def test_a_commit_s_log_lines_name_its_request_operation_document_and_cursor(
        server: RunningServer) -> None:
    kept = Kept()
    loggers = [logging.getLogger(name) for name in ("statesync.commits", "statesync.feed.sequencer")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(kept)
        logger.setLevel(logging.DEBUG)
    try:
        client = GraphQLClient(server.base_url, headers={"x-request-id": "trace-7"})
        await client.data('mutation Open { createOrder(id: "o9", input: {customer: "ann", '
                          'items: []}, mutationId: "m-9") { version } }')
        await client.aclose()

        async def sequenced() -> dict[str, Any] | None:
            return next((line for line in kept.lines if line["logger"] == "statesync.feed.sequencer"
                         and line.get("mutation_id") == "m-9"), None)

        cursor_line = await eventually(sequenced, what="the sequencer's line")
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(kept)
            logger.setLevel(level)
    [commit_line] = [line for line in kept.lines if line["logger"] == "statesync.commits"]
    assert {k: commit_line.get(k) for k in ("request_id", "operation", "model", "document_id",
                                            "mutation_id")} == {
        "request_id": "trace-7", "operation": "Open", "model": "Order", "document_id": "o9",
        "mutation_id": "m-9"}
    assert commit_line["event_id"]
    assert (cursor_line["model"], cursor_line["document_id"]) == ("Order", "o9")
    assert int(cursor_line["cursor"]) >= 1
