"""statesync.client against a real server: commits, typed errors, exactly-once retries over a
faulty connection, and watches that resume across a server restart without loss or repeat."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import orjson
import pytest

from statesync.client import Change, Client, StatesyncClientError
from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import RunningServer, serve
from tests.support import WAIT, eventually, row_counts

TEA = {"sku": "tea", "name": "Tea", "priceCents": 450}


def order(customer: str, **fields: Any) -> dict[str, Any]:
    return {"customer": customer, "items": [{"sku": "tea", "qty": 1}], **fields}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def api(server: RunningServer) -> AsyncIterator[Client]:
    async with Client(server.base_url) as client:
        yield client


class Watcher:
    """Drives a watch in its own task, as an application would, so it reconnects on its own
    while the test does other things; the test awaits each change with a deadline."""

    def __init__(self, changes: AsyncGenerator[Change, None]) -> None:
        self.changes = changes
        self.queue: asyncio.Queue[Change | BaseException] = asyncio.Queue()
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for change in self.changes:
                await self.queue.put(change)
        except Exception as exc:
            await self.queue.put(exc)

    async def next(self, timeout: float = WAIT) -> Change:
        item = await asyncio.wait_for(self.queue.get(), timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.changes.aclose()


# ---- commits and queries -------------------------------------------------------------------------


async def test_query_create_update_delete_round_trip(api: Client) -> None:
    created = await api.create("Product", TEA, id="tea", fields="sku name priceCents")
    assert (created.op, created.id, created.version, created.replayed) == ("CREATED", "tea", 1, False)
    assert created.document == {"id": "tea", "version": 1, **TEA}
    assert len(created.event_ids) == 1 and created.mutation_id
    name = "query($id: ID!) { product(id: $id) { name priceCents } }"
    assert await api.query(name, {"id": "tea"}) == {"product": {"name": "Tea", "priceCents": 450}}

    updated = await api.update("Product", "tea", {"priceCents": 500}, expected_version=1,
                               fields="priceCents")
    assert (updated.op, updated.version, updated.changed_fields) == ("UPDATED", 2, ["priceCents"])
    assert updated.document == {"id": "tea", "version": 2, "priceCents": 500}
    assert updated.mutation_id != created.mutation_id  # a new one for every commit

    deleted = await api.delete("Product", "tea", expected_version=2)
    assert (deleted.op, deleted.id, deleted.version) == ("DELETED", "tea", 3)
    assert await api.query(name, {"id": "tea"}) == {"product": None}

    generated = await api.create("Order", order("ann"), fields="customer status")
    assert generated.document == {"id": generated.id, "version": 1, "customer": "ann",
                                  "status": "NEW"}
    assert re.fullmatch(r"[0-9a-f-]{36}", generated.id)


async def test_errors_are_typed_and_write_nothing(api: Client, server: RunningServer,
                                                  database_url: str) -> None:
    await api.create("Order", order("ann"), id="o1")
    await api.update("Order", "o1", {"note": "two"}, expected_version=1)
    before = await row_counts(database_url)

    with pytest.raises(StatesyncClientError) as conflict:
        await api.update("Order", "o1", {"note": "stale"}, expected_version=1)
    assert conflict.value.code == "CONFLICT"
    assert conflict.value.current is not None
    assert (conflict.value.current["version"], conflict.value.current["note"]) == (2, "two")

    failures: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("NOT_FOUND", lambda: api.update("Order", "nope", {"note": "x"})),
        ("NOT_FOUND", lambda: api.delete("Order", "nope")),
        ("ALREADY_EXISTS", lambda: api.create("Order", order("bob"), id="o1")),
        ("BAD_USER_INPUT", lambda: api.update("Order", "o1", {"customer": None})),
        ("GRAPHQL_VALIDATION_FAILED", lambda: api.update("Order", "o1", {"totalCents": 5})),
        ("GRAPHQL_VALIDATION_FAILED", lambda: api.create("Order", order("ann"), fields="nonsense")),
        ("GRAPHQL_PARSE_FAILED", lambda: api.query("{ order(id: ")),
    ]
    for code, attempt in failures:
        with pytest.raises(StatesyncClientError) as failed:
            await attempt()
        assert failed.value.code == code, failed.value
        assert failed.value.extensions["code"] == code
    assert failed.value.current is None

    assert await row_counts(database_url) == before
    assert await api.query('{ order(id: "o1") { version note } }') == {
        "order": {"version": 2, "note": "two"}}

    # Answers that are not GraphQL at all carry a transport code.
    async with Client(server.base_url + "/nowhere") as lost:
        with pytest.raises(StatesyncClientError) as not_graphql:
            await lost.query("{ __typename }")
    assert (not_graphql.value.code, not_graphql.value.extensions["status"]) == ("HTTP_ERROR", 404)
    async with Client(f"http://127.0.0.1:{free_port()}") as down:
        with pytest.raises(StatesyncClientError) as refused:
            await down.query("{ __typename }")
    assert refused.value.code == "TRANSPORT_ERROR"


async def test_emit_returns_an_event_and_is_idempotent(api: Client, database_url: str) -> None:
    before = await row_counts(database_url)
    first = await api.emit("Shop.audit", key="o1", payload={"a": 1}, mutation_id="emit-1")
    assert first.event_id and not first.replayed
    again = await api.emit("Shop.audit", key="o1", payload={"a": 1}, mutation_id="emit-1")
    assert (again.event_id, again.replayed) == (first.event_id, True)
    other = await api.emit("Shop.audit", key="o1", payload={"a": 1})
    assert other.event_id != first.event_id and not other.replayed
    with pytest.raises(StatesyncClientError) as reused:
        await api.emit("Shop.audit", key="o1", payload={"a": 2}, mutation_id="emit-1")
    assert reused.value.code == "MUTATION_ID_REUSED"
    after = await row_counts(database_url)
    assert after["statesync_outbox"] == before["statesync_outbox"] + 2
    events = await api.query('{ events(key: "o1") { id payload } }')
    assert sorted(e["id"] for e in events["events"]) == sorted([first.event_id, other.event_id])


# ---- retries over a faulty connection ----------------------------------------------------------


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One HTTP/1.1 request (head and body), or None at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    body = await reader.readexactly(int(length.group(1))) if length else b""
    return head + body, body


class FaultyProxy:
    """A TCP proxy in front of the server that breaks connections on purpose.

    ``faults[i]`` decides the i-th connection's fate: ``drop_response`` forwards its request
    and, once the server has answered (so it committed), closes the client's connection
    without relaying the answer; ``503`` answers 503 itself; ``reset`` closes it unanswered.
    Every other connection passes through. ``requests`` holds every request body seen."""

    def __init__(self, upstream: str, faults: Sequence[str] = ()) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.faults = list(faults)
        self.requests: list[dict[str, Any]] = []
        self.dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        try:
            yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        fault = self.faults.pop(0) if self.faults else "pass"
        try:
            if fault == "pass":
                await self._pass(reader, writer)
                return
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(orjson.loads(request[1]))
            if fault == "503":
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n"
                             b"connection: close\r\n\r\n")
                await writer.drain()
            elif fault == "drop_response":
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
                up_writer.write(request[0])
                await up_writer.drain()
                assert await up_reader.read(1), "the server closed without answering"
                self.dropped += 1
                up_writer.close()
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _pass(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def relay_back() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()

        back = asyncio.create_task(relay_back())
        try:
            while (request := await _read_request(reader)) is not None:
                self.requests.append(orjson.loads(request[1]))
                up_writer.write(request[0])
                await up_writer.drain()
        finally:
            up_writer.close()
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await back

    def mutation_ids(self) -> list[str]:
        return [r["variables"]["mutationId"] for r in self.requests]


async def test_a_commit_whose_answer_is_lost_is_retried_and_replayed(
        api: Client, server: RunningServer, database_url: str) -> None:
    await api.create("Order", order("ann"), id="o1")
    before = await row_counts(database_url)
    proxy = FaultyProxy(server.base_url, ["drop_response"])
    async with proxy.running() as url, Client(url) as flaky:
        result = await flaky.update("Order", "o1", {"note": "once"}, expected_version=1,
                                    fields="note")
    assert proxy.dropped == 1  # the first attempt committed; its answer never arrived
    # The retry carried the same mutationId (else expectedVersion 1 would be a CONFLICT now)
    # and got the first attempt's result back.
    assert proxy.mutation_ids() == [result.mutation_id] * 2
    assert (result.op, result.version, result.replayed) == ("UPDATED", 2, True)
    assert result.document == {"id": "o1", "version": 2, "note": "once"}
    after = await row_counts(database_url)
    assert after["statesync_changes"] == before["statesync_changes"] + 1
    assert after["statesync_outbox"] == before["statesync_outbox"] + 1
    assert after["statesync_mutations"] == before["statesync_mutations"] + 1
    assert await api.query('{ order(id: "o1") { version note } }') == {
        "order": {"version": 2, "note": "once"}}


async def test_a_commit_answered_503_is_retried_until_it_goes_through(
        server: RunningServer, database_url: str) -> None:
    proxy = FaultyProxy(server.base_url, ["503", "503"])
    async with proxy.running() as url, Client(url) as flaky:
        result = await flaky.create("Product", TEA, id="tea")
    assert proxy.mutation_ids() == [result.mutation_id] * 3
    assert (result.version, result.replayed) == (1, False)  # the 503s never reached the server
    assert (await row_counts(database_url))["statesync_changes"] == 1


async def test_commit_retries_stop_at_commit_timeout(server: RunningServer, database_url: str
                                                     ) -> None:
    before = await row_counts(database_url)
    proxy = FaultyProxy(server.base_url, ["reset"] * 1000)
    async with proxy.running() as url, Client(url, commit_timeout=1.0) as flaky:
        with pytest.raises(StatesyncClientError) as failed:
            await flaky.create("Product", TEA, id="tea", mutation_id="mine")
    assert failed.value.code == "TRANSPORT_ERROR"
    assert len(proxy.requests) >= 2 and set(proxy.mutation_ids()) == {"mine"}
    assert await row_counts(database_url) == before


async def test_graphql_errors_and_queries_are_never_retried(api: Client, server: RunningServer
                                                            ) -> None:
    await api.create("Order", order("ann"), id="o1")
    await api.update("Order", "o1", {"note": "two"})
    proxy = FaultyProxy(server.base_url)
    async with proxy.running() as url, Client(url) as through:
        with pytest.raises(StatesyncClientError) as conflict:
            await through.update("Order", "o1", {"note": "x"}, expected_version=1)
    assert conflict.value.code == "CONFLICT" and len(proxy.requests) == 1

    # A query may be a mutation without a mutationId: a failed one is not sent again.
    proxy = FaultyProxy(server.base_url, ["503"])
    async with proxy.running() as url, Client(url) as through:
        with pytest.raises(StatesyncClientError) as unavailable:
            await through.query('mutation { updateOrder(id: "o1", patch: {note: "y"}) { version } }')
    assert unavailable.value.extensions["status"] == 503 and len(proxy.requests) == 1


# ---- watching ------------------------------------------------------------------------------------


async def test_watch_one_document_then_close_it(api: Client, server: RunningServer) -> None:
    await api.create("Order", order("ann"), id="o1")
    hub = server.runtime.hub
    changes = api.watch("Order", id="o1", fields="note status")
    snapshot = await asyncio.wait_for(anext(changes), WAIT)
    assert (snapshot.op, snapshot.id, snapshot.version) == ("SNAPSHOT", "o1", 1)
    assert snapshot.document == {"id": "o1", "version": 1, "note": None, "status": "NEW"}
    assert snapshot.documents is None and snapshot.mutation_id is None
    committed = await api.update("Order", "o1", {"note": "hi"})
    change = await asyncio.wait_for(anext(changes), WAIT)
    assert (change.op, change.version, change.changed_fields) == ("UPDATED", 2, ["note"])
    assert change.mutation_id == committed.mutation_id  # the commit's own echo
    assert change.document == {"id": "o1", "version": 2, "note": "hi", "status": "NEW"}
    assert int(change.cursor) > int(snapshot.cursor)
    assert hub.subscriber_count == 1
    await changes.aclose()
    await no_subscribers(server)

    # Leaving an `async for` drops the iterator, which closes its socket too.
    async for change in api.watch("Order", id="o1"):
        assert change.op == "SNAPSHOT" and hub.subscriber_count == 1
        break
    await no_subscribers(server)


async def no_subscribers(server: RunningServer) -> None:
    async def none_left() -> bool:
        return bool(server.runtime.hub.subscriber_count == 0)

    await eventually(none_left, WAIT, "the server to drop the subscription")


async def test_watch_a_collection(api: Client) -> None:
    await api.create("Order", order("ann"), id="b")
    await api.create("Order", order("ann"), id="a")
    await api.create("Order", order("bob"), id="c")
    watcher = Watcher(api.watch("Order", where={"customer": {"eq": "ann"}}, fields="customer"))
    try:
        snapshot = await watcher.next()
        assert (snapshot.op, snapshot.has_more) == ("SNAPSHOT", False)
        assert snapshot.documents == [{"id": "a", "version": 1, "customer": "ann"},
                                      {"id": "b", "version": 1, "customer": "ann"}]
        await api.create("Order", order("bob"), id="d")  # not in the collection
        await api.update("Order", "a", {"customer": "bob"})
        await api.create("Order", order("ann"), id="e")
        seen = [(c.op, c.id, c.version) for c in [await watcher.next(), await watcher.next()]]
        assert seen == [("REMOVED", "a", 2), ("CREATED", "e", 1)]
    finally:
        await watcher.close()

    everything = Watcher(api.watch("Order"))  # no filter: every order
    try:
        assert [d["id"] for d in (await everything.next()).documents or []] == list("abcde")
    finally:
        await everything.close()


async def test_watch_from_a_cursor_the_feed_never_issued_resyncs(api: Client) -> None:
    await api.create("Order", order("ann"), id="o1")
    watcher = Watcher(api.watch("Order", id="o1", since="999999"))
    try:
        resync = await watcher.next()
        assert (resync.op, resync.cursor) == ("RESYNC", "999999")
        snapshot = await watcher.next()
        assert (snapshot.op, snapshot.version) == ("SNAPSHOT", 1)
        await api.update("Order", "o1", {"note": "x"})
        assert (await watcher.next()).version == 2
    finally:
        await watcher.close()


async def test_a_bad_watch_raises_instead_of_reconnecting(api: Client) -> None:
    for fields, code in (("nonsense", "GRAPHQL_VALIDATION_FAILED"), ("{", "GRAPHQL_PARSE_FAILED")):
        with pytest.raises(StatesyncClientError) as failed:
            await asyncio.wait_for(anext(api.watch("Order", id="o1", fields=fields)), WAIT)
        assert failed.value.code == code
    with pytest.raises(StatesyncClientError) as bad_filter:
        await asyncio.wait_for(anext(api.watch("Order", where={"nope": {"eq": 1}})), WAIT)
    assert bad_filter.value.code == "GRAPHQL_VALIDATION_FAILED"


async def test_closing_the_client_ends_its_watches(server: RunningServer) -> None:
    client = Client(server.base_url)
    watcher = Watcher(client.watch("Order", id="o1"))
    assert (await watcher.next()).op == "SNAPSHOT"
    await client.aclose()
    await asyncio.wait_for(watcher.task, WAIT)  # the iteration ended, without reconnecting
    assert watcher.queue.empty()
    await no_subscribers(server)


async def test_a_watch_resumes_after_a_server_restart_missing_and_repeating_nothing(
        settings: Settings, demo_models: list[ModelSpec]) -> None:
    port = free_port()
    async with Client(f"http://127.0.0.1:{port}", reconnect_max_delay=0.5) as watching:
        watcher = Watcher(watching.watch("Order", where={"customer": {"eq": "ann"}}, fields="note"))
        try:
            async with serve(settings, demo_models, port=port) as first, \
                       Client(first.base_url) as via_first:
                await via_first.create("Order", order("ann"), id="o1")
                snapshot = await watcher.next()
                assert snapshot.op == "SNAPSHOT"
                if not snapshot.documents:  # the create landed after the snapshot's cursor
                    assert (await watcher.next()).op == "CREATED"
                live = await via_first.update("Order", "o1", {"note": "live"})
                assert (await watcher.next()).mutation_id == live.mutation_id
            # The server is gone, and the watch with it. Meanwhile, through another server:
            async with serve(settings, demo_models) as second, Client(second.base_url) as other:
                missed = [
                    await other.update("Order", "o1", {"note": "missed"}),
                    await other.create("Order", order("ann"), id="o2"),
                    await other.create("Order", order("bob"), id="b1"),  # not watched
                    await other.update("Order", "o2", {"customer": "bob"}),  # leaves the filter
                    await other.delete("Order", "o1"),
                ]
                async with serve(settings, demo_models, port=port) as again, \
                           Client(again.base_url) as via_again:
                    expected = [("UPDATED", "o1", 3), ("CREATED", "o2", 1), ("REMOVED", "o2", 2),
                                ("DELETED", "o1", 4)]
                    resumed = [await watcher.next() for _ in expected]
                    assert [(c.op, c.id, c.version) for c in resumed] == expected
                    assert [c.mutation_id for c in resumed] == [
                        m.mutation_id for m in missed if m.id != "b1"]
                    assert resumed[0].document == {"id": "o1", "version": 3, "note": "missed"}
                    # Then live changes, and nothing replayed twice in between.
                    for doc_id in ("o3", "o4"):
                        created = await via_again.create("Order", order("ann"), id=doc_id)
                        change = await watcher.next()
                        assert (change.op, change.id, change.mutation_id) == (
                            "CREATED", doc_id, created.mutation_id)
                    assert watcher.queue.empty()
        finally:
            await watcher.close()
