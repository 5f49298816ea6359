"""Subscriptions end to end: snapshot then changes, filters, chunking, the subscribe/snapshot
race and ``since`` resume, over real websockets against real Postgres and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import RunningServer, serve
from tests.support import GraphQLClient, Subscriptions

ORDER = "id version customer status note"
WATCH_ONE = f"""subscription($id: ID!, $since: String) {{ order(id: $id, since: $since) {{
  op cursor id version changedFields document {{ {ORDER} }} }} }}"""
WATCH_MANY = f"""subscription($where: OrderWhere, $since: String) {{
  orders(where: $where, since: $since) {{
    op cursor id version changedFields hasMore
    document {{ {ORDER} }} documents {{ {ORDER} }} }} }}"""
CREATE = "mutation($input: OrderInput!, $id: ID) { createOrder(input: $input, id: $id) { id version } }"
UPDATE = "mutation($id: ID!, $patch: OrderPatch!) { updateOrder(id: $id, patch: $patch) { id version } }"
DELETE = "mutation($id: ID!) { deleteOrder(id: $id) { id version } }"
ONE = f"query($id: ID!) {{ order(id: $id) {{ {ORDER} }} }}"
MANY = f"query($where: OrderWhere) {{ orders(where: $where, first: 500) {{ nodes {{ {ORDER} }} }} }}"
ANN = {"customer": {"eq": "ann"}}


async def create(client: GraphQLClient, customer: str, id: str | None = None, **fields: Any
                 ) -> dict[str, Any]:
    variables = {"input": {"customer": customer, "items": [], **fields}, "id": id}
    result: dict[str, Any] = (await client.data(CREATE, variables))["createOrder"]
    return result


async def update(client: GraphQLClient, id: str, **patch: Any) -> dict[str, Any]:
    result: dict[str, Any] = (await client.data(UPDATE, {"id": id, "patch": patch}))["updateOrder"]
    return result


async def delete(client: GraphQLClient, id: str) -> dict[str, Any]:
    result: dict[str, Any] = (await client.data(DELETE, {"id": id}))["deleteOrder"]
    return result


async def query_many(client: GraphQLClient, where: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    nodes = (await client.data(MANY, {"where": where}))["orders"]["nodes"]
    return {n["id"]: n for n in nodes}


class Replica:
    """Rebuilds a subscription's state from its messages, checking the contract as it goes:
    one SNAPSHOT first (possibly chunked), then cursors strictly increasing, and per document
    versions increasing by exactly one."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}
        self.cursor: int | None = None
        self.snapshot_cursor: int | None = None
        self.snapshot_versions: dict[str, int] = {}
        self.snapshotting = True
        self.messages: list[dict[str, Any]] = []

    def apply(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        cursor = int(message["cursor"])
        if message["op"] == "SNAPSHOT":
            assert self.snapshotting, f"SNAPSHOT after the snapshot ended: {message}"
            assert self.snapshot_cursor in (None, cursor), "chunks of one snapshot share a cursor"
            self.snapshot_cursor = self.cursor = cursor
            docs = message["documents"] if message.get("documents") is not None else (
                [message["document"]] if message["document"] is not None else [])
            for doc in docs:
                assert doc["id"] not in self.docs, f"{doc['id']} in two snapshot chunks"
                self.docs[doc["id"]] = doc
                self.versions[doc["id"]] = self.snapshot_versions[doc["id"]] = doc["version"]
            self.snapshotting = bool(message.get("hasMore"))
            return
        assert not self.snapshotting, f"change before the snapshot ended: {message}"
        assert self.cursor is not None and cursor > self.cursor, (self.cursor, message)
        self.cursor = cursor
        doc_id, version = message["id"], message["version"]
        expected = self.versions.get(doc_id, 0) + 1
        assert version == expected, f"{doc_id}: version {version} after {expected - 1}: {message}"
        self.versions[doc_id] = version
        if message["op"] in ("CREATED", "UPDATED"):
            assert message["document"]["id"] == doc_id and message["document"]["version"] == version
            self.docs[doc_id] = message["document"]
        else:
            assert message["op"] in ("DELETED", "REMOVED"), message
            self.docs.pop(doc_id, None)


async def read_until(subs: Subscriptions, op: str, replica: Replica,
                     versions: dict[str, int]) -> None:
    """Apply messages until the replica has seen ``versions`` (each message within WAIT)."""
    while any(replica.versions.get(i, 0) < v for i, v in versions.items()):
        replica.apply(await subs.next(op))


# ---- 1. snapshot, then changes ---------------------------------------------------------------


async def test_document_subscription_snapshot_then_changes(server: RunningServer,
                                                           client: GraphQLClient) -> None:
    doc = await create(client, "ann", note="first")
    async with Subscriptions.connect(server.ws_url) as subs:
        op = await subs.subscribe(WATCH_ONE, {"id": doc["id"]})
        snapshot = await subs.next(op)
        assert snapshot["op"] == "SNAPSHOT"
        assert snapshot["id"] == doc["id"] and snapshot["version"] == 1
        assert snapshot["document"] == {"id": doc["id"], "version": 1, "customer": "ann",
                                        "status": "NEW", "note": "first"}
        assert snapshot["changedFields"] is None

        await update(client, doc["id"], note="second")
        updated = await subs.next(op)
        assert updated["op"] == "UPDATED" and updated["id"] == doc["id"]
        assert updated["version"] == 2 and updated["changedFields"] == ["note"]
        assert updated["document"] == {**snapshot["document"], "version": 2, "note": "second"}
        assert int(updated["cursor"]) > int(snapshot["cursor"])

        await update(client, doc["id"], status="SHIPPED", customer="amy")
        updated = await subs.next(op)
        assert updated["version"] == 3
        assert sorted(updated["changedFields"]) == ["customer", "status"]
        assert updated["document"]["status"] == "SHIPPED" and updated["document"]["customer"] == "amy"

        await delete(client, doc["id"])
        deleted = await subs.next(op)
        assert deleted["op"] == "DELETED" and deleted["version"] == 4
        assert deleted["id"] == doc["id"] and deleted["document"] is None
        assert int(deleted["cursor"]) > int(updated["cursor"])
        assert subs.pending(op) == 0


async def test_document_subscription_to_a_missing_document(server: RunningServer,
                                                           client: GraphQLClient) -> None:
    async with Subscriptions.connect(server.ws_url) as subs:
        op = await subs.subscribe(WATCH_ONE, {"id": "not-yet"})
        snapshot = await subs.next(op)
        assert snapshot["op"] == "SNAPSHOT" and snapshot["document"] is None
        assert snapshot["id"] is None and snapshot["version"] is None
        other = await create(client, "bob")  # another document: must not arrive
        await create(client, "ann", id="not-yet", note="hello")
        created = await subs.next(op)
        assert created["op"] == "CREATED" and created["id"] == "not-yet" and created["version"] == 1
        assert created["document"] == {"id": "not-yet", "version": 1, "customer": "ann",
                                       "status": "NEW", "note": "hello"}
        assert "customer" in created["changedFields"] and "note" in created["changedFields"]
        assert other["id"] != "not-yet"
        # The other document's change had the smaller cursor; had it arrived it would be first.
        assert int(created["cursor"]) > int(snapshot["cursor"]) + 1


async def test_collection_subscription_with_a_filter(server: RunningServer,
                                                     client: GraphQLClient) -> None:
    a1 = (await create(client, "ann", id="a1"))["id"]
    a2 = (await create(client, "ann", id="a2", note="n"))["id"]
    b1 = (await create(client, "bob", id="b1"))["id"]
    await create(client, "bob", id="b2")
    async with Subscriptions.connect(server.ws_url) as subs:
        op = await subs.subscribe(WATCH_MANY, {"where": ANN})
        snapshot = await subs.next(op)
        assert snapshot["op"] == "SNAPSHOT" and snapshot["hasMore"] is False
        assert snapshot["document"] is None
        assert sorted((d["id"], d["version"], d["customer"]) for d in snapshot["documents"]) == [
            ("a1", 1, "ann"), ("a2", 1, "ann")]

        await create(client, "ann", id="a3")                   # CREATED, matching
        await update(client, a1, note="x")                     # UPDATED, matching
        await update(client, b1, note="y")                     # not matching: nothing
        await update(client, a2, customer="bob")               # stops matching: REMOVED
        await update(client, a2, note="gone")                  # no longer matching: nothing
        await create(client, "bob", id="b3")                   # not matching: nothing
        await update(client, b1, customer="ann", note="z")     # starts matching: arrives
        await delete(client, "a3")                             # DELETED, matching
        await delete(client, "b2")                             # not matching: nothing
        await update(client, a1, note="marker")                # the marker: the last to arrive

        got: list[dict[str, Any]] = []
        while not got or got[-1]["document"] is None or got[-1]["document"]["note"] != "marker":
            got.append(await subs.next(op))
        assert [(m["op"], m["id"], m["version"]) for m in got] == [
            ("CREATED", "a3", 1), ("UPDATED", a1, 2), ("REMOVED", a2, 2),
            ("UPDATED", b1, 3), ("DELETED", "a3", 2), ("UPDATED", a1, 3)]
        cursors = [int(m["cursor"]) for m in got]
        assert cursors == sorted(set(cursors)) and cursors[0] > int(snapshot["cursor"])
        created, upd, removed, joined, deleted, _ = got
        assert created["document"] == {"id": "a3", "version": 1, "customer": "ann",
                                       "status": "NEW", "note": None}
        assert upd["changedFields"] == ["note"] and upd["document"]["note"] == "x"
        assert removed["changedFields"] == ["customer"]
        assert removed["document"] is None or removed["document"]["customer"] == "bob"
        assert sorted(joined["changedFields"]) == ["customer", "note"]
        assert joined["document"] == {"id": b1, "version": 3, "customer": "ann", "status": "NEW",
                                      "note": "z"}
        assert deleted["document"] is None
        assert subs.pending(op) == 0

        # The messages rebuild exactly what a query returns now.
        replica = Replica()
        for message in [snapshot, *got]:
            if message["op"] == "UPDATED" and message["id"] == b1:
                replica.versions[b1] = 2  # it joined the collection at version 3
            replica.apply(message)
        assert replica.docs == await query_many(client, ANN)


async def test_empty_collection_snapshot(server: RunningServer, client: GraphQLClient) -> None:
    async with Subscriptions.connect(server.ws_url) as subs:
        op = await subs.subscribe(WATCH_MANY, {"where": {"customer": {"eq": "nobody"}}})
        snapshot = await subs.next(op)
        assert snapshot["op"] == "SNAPSHOT" and snapshot["documents"] == []
        assert snapshot["hasMore"] is False
        await create(client, "nobody", id="n1")
        created = await subs.next(op)
        assert (created["op"], created["id"], created["version"]) == ("CREATED", "n1", 1)


async def test_chunked_collection_snapshot(settings: Settings, demo_models: list[ModelSpec]) -> None:
    small = settings.model_copy(update={"snapshot_chunk_size": 3})
    async with serve(small, demo_models) as server, _client(server) as client:
        matching = {(await create(client, "ann", id=f"a{i:02}"))["id"] for i in range(8)}
        for i in range(4):
            await create(client, "bob", id=f"b{i:02}")
        async with Subscriptions.connect(server.ws_url) as subs:
            op = await subs.subscribe(WATCH_MANY, {"where": ANN})
            chunks = [await subs.next(op)]
            while chunks[-1]["hasMore"]:
                chunks.append(await subs.next(op))
            assert [c["op"] for c in chunks] == ["SNAPSHOT"] * 3
            assert [len(c["documents"]) for c in chunks] == [3, 3, 2]
            assert [c["hasMore"] for c in chunks] == [True, True, False]
            assert len({c["cursor"] for c in chunks}) == 1
            ids = [d["id"] for c in chunks for d in c["documents"]]
            assert len(ids) == len(set(ids)) and set(ids) == matching
            assert all(d["customer"] == "ann" for c in chunks for d in c["documents"])
            # Then live changes, after the last chunk.
            await update(client, "a03", note="live")
            change = await subs.next(op)
            assert (change["op"], change["id"], change["version"]) == ("UPDATED", "a03", 2)
            assert int(change["cursor"]) > int(chunks[0]["cursor"])


async def test_a_document_leaving_an_updated_at_filter_is_removed(
        server: RunningServer, client: GraphQLClient) -> None:
    await create(client, "ann", id="old")
    result = await client.data("""mutation { createOrder(id: "old2", input: {customer: "ann",
        items: []}) { document { updatedAt } } }""")
    cutoff = result["createOrder"]["document"]["updatedAt"]
    async with Subscriptions.connect(server.ws_url) as subs:
        op = await subs.subscribe(WATCH_MANY, {"where": {"updatedAt": {"le": cutoff}}})
        snapshot = await subs.next(op)
        assert sorted(d["id"] for d in snapshot["documents"]) == ["old", "old2"]
        await update(client, "old", note="touched")  # updatedAt moves past the cutoff
        await delete(client, "old2")                  # the marker
        first = await subs.next(op)
        assert (first["op"], first["id"], first["version"]) == ("REMOVED", "old", 2), first
        second = await subs.next(op)
        assert (second["op"], second["id"], second["version"]) == ("DELETED", "old2", 2)


@contextlib.asynccontextmanager
async def _client(server: RunningServer) -> AsyncIterator[GraphQLClient]:
    client = GraphQLClient(server.base_url)
    try:
        yield client
    finally:
        await client.aclose()


# ---- 2. subscribe-before-snapshot race --------------------------------------------------------


@contextlib.asynccontextmanager
async def writers_running(count: int, write: Any, until: asyncio.Event, minimum: int
                          ) -> AsyncIterator[list[int]]:
    """``count`` concurrent writers calling ``write(writer, n)`` until ``until`` is set and each
    made at least ``minimum`` writes. Yields the per-writer counts (final after the block)."""
    done = [0] * count

    async def writer(w: int) -> None:
        while not until.is_set() or done[w] < minimum:
            await write(w, done[w])
            done[w] += 1

    tasks = [asyncio.create_task(writer(w)) for w in range(count)]
    try:
        yield done
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_document_subscriptions_opened_during_concurrent_writes(
        server: RunningServer, client: GraphQLClient) -> None:
    doc_id = (await create(client, "ann"))["id"]
    opened = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(Subscriptions.connect(server.ws_url))
                       for _ in range(4)]
        subs: list[tuple[Subscriptions, str, Replica]] = []
        async with writers_running(
                4, lambda w, n: update(client, doc_id, note=f"w{w}-{n}"), opened, minimum=5):
            for i in range(24):  # each snapshot is taken while the writers are committing
                conn = connections[i % len(connections)]
                op = await conn.subscribe(WATCH_ONE, {"id": doc_id})
                replica = Replica()
                replica.apply(await conn.next(op))
                subs.append((conn, op, replica))
            opened.set()
        final = (await client.data(ONE, {"id": doc_id}))["order"]
        snapshot_versions = {r.snapshot_versions[doc_id] for _, _, r in subs}
        assert len(snapshot_versions) > 1, "the snapshots were not taken during the writes"
        assert final["version"] > max(snapshot_versions)
        for conn, op, replica in subs:
            await read_until(conn, op, replica, {doc_id: final["version"]})
            assert replica.docs == {doc_id: final}
        # Nothing more is queued: the next message of every subscription is the marker.
        marker = await update(client, doc_id, note="marker")
        for conn, op, replica in subs:
            replica.apply(await conn.next(op))
            assert replica.messages[-1]["version"] == marker["version"]
            assert replica.messages[-1]["document"]["note"] == "marker"

        # 3. resuming from a SNAPSHOT's cursor replays exactly what the snapshot did not hold.
        for conn, _, replica in subs[::6]:
            resumed = await conn.subscribe(WATCH_ONE, {"id": doc_id,
                                                       "since": str(replica.snapshot_cursor)})
            again = Replica()
            again.cursor = replica.snapshot_cursor
            again.snapshotting = False
            again.versions = dict(replica.snapshot_versions)
            await read_until(conn, resumed, again, {doc_id: marker["version"]})
            assert [m["cursor"] for m in again.messages] == [
                m["cursor"] for m in replica.messages if m["op"] != "SNAPSHOT"]
            await conn.complete(resumed)


async def test_collection_subscriptions_opened_during_concurrent_creates(
        server: RunningServer, client: GraphQLClient) -> None:
    where = {"customer": {"eq": "race"}}
    await create(client, "race", id="seed")
    opened = asyncio.Event()
    ids = itertools.count()

    async def write(w: int, n: int) -> None:
        if n % 3 == 2:  # every third write updates an existing matching document
            await update(client, "seed", note=f"w{w}-{n}")
        else:
            await create(client, "race" if n % 3 == 0 else "other", id=f"w{w}-{next(ids)}")

    async with contextlib.AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(Subscriptions.connect(server.ws_url))
                       for _ in range(4)]
        subs: list[tuple[Subscriptions, str, Replica]] = []
        async with writers_running(4, write, opened, minimum=6):
            for i in range(20):
                conn = connections[i % len(connections)]
                op = await conn.subscribe(WATCH_MANY, {"where": where})
                replica = Replica()
                replica.apply(await conn.next(op))
                subs.append((conn, op, replica))
            opened.set()
        final = await query_many(client, where)
        versions = {i: d["version"] for i, d in final.items()}
        assert len({len(r.snapshot_versions) for _, _, r in subs}) > 1, "snapshots not in the race"
        for conn, op, replica in subs:
            await read_until(conn, op, replica, versions)
            assert replica.docs == final
        marker = await update(client, "seed", note="marker")
        for conn, op, replica in subs:
            replica.apply(await conn.next(op))
            assert (replica.messages[-1]["id"], replica.messages[-1]["version"]) == (
                "seed", marker["version"])


# ---- 3. since resume -----------------------------------------------------------------------


async def test_resume_with_since(server: RunningServer, client: GraphQLClient) -> None:
    a1 = (await create(client, "ann", id="a1"))["id"]
    async with Subscriptions.connect(server.ws_url) as subs:
        op = await subs.subscribe(WATCH_MANY, {"where": ANN})
        snapshot = await subs.next(op)
        await update(client, a1, note="1")
        first = await subs.next(op)
        await update(client, a1, note="2")
        second = await subs.next(op)
        assert (first["version"], second["version"]) == (2, 3)
    # Disconnected: these happen while the client is away.
    await create(client, "ann", id="a2")
    await update(client, "a2", customer="bob")  # leaves the collection
    await create(client, "bob", id="b1")        # never in it
    await update(client, a1, note="3")
    await delete(client, "a2")                  # no longer matching: nothing
    async with Subscriptions.connect(server.ws_url) as subs:
        op = await subs.subscribe(WATCH_MANY, {"where": ANN, "since": first["cursor"]})
        got = [await subs.next(op) for _ in range(4)]
        assert [(m["op"], m["id"], m["version"]) for m in got] == [
            ("UPDATED", a1, 3), ("CREATED", "a2", 1), ("REMOVED", "a2", 2), ("UPDATED", a1, 4)]
        assert got[0]["cursor"] == second["cursor"]
        assert got[0]["document"]["note"] == "2" and got[3]["document"]["note"] == "3"
        cursors = [int(m["cursor"]) for m in got]
        assert cursors == sorted(set(cursors)) and cursors[0] > int(first["cursor"])
        # Then live, with nothing in between.
        await update(client, a1, note="live")
        live = await subs.next(op)
        assert (live["op"], live["id"], live["version"]) == ("UPDATED", a1, 5)
        assert int(live["cursor"]) > cursors[-1]

        # Resuming from the SNAPSHOT's cursor: exactly the changes after it, none it held.
        op2 = await subs.subscribe(WATCH_ONE, {"id": a1, "since": snapshot["cursor"]})
        versions = [(await subs.next(op2))["version"] for _ in range(4)]
        assert versions == [2, 3, 4, 5]
        marker = await update(client, a1, note="marker")
        assert (await subs.next(op2))["version"] == marker["version"] == 6


async def test_resume_from_a_fresh_snapshot_cursor(server: RunningServer,
                                                   client: GraphQLClient) -> None:
    doc = (await create(client, "ann"))["id"]
    await update(client, doc, note="in the snapshot")
    async with Subscriptions.connect(server.ws_url) as subs:
        op = await subs.subscribe(WATCH_ONE, {"id": doc})
        snapshot = await subs.next(op)
        assert snapshot["version"] == 2 and snapshot["document"]["note"] == "in the snapshot"
        await subs.complete(op)
        await update(client, doc, note="after")
        op = await subs.subscribe(WATCH_ONE, {"id": doc, "since": snapshot["cursor"]})
        after = await subs.next(op)
        assert (after["op"], after["version"]) == ("UPDATED", 3)
        assert after["document"]["note"] == "after"


async def test_since_ahead_of_the_feed_is_invalid(server: RunningServer,
                                                  client: GraphQLClient) -> None:
    doc = (await create(client, "ann"))["id"]
    async with Subscriptions.connect(server.ws_url) as subs:
        op = await subs.subscribe(WATCH_ONE, {"id": doc})
        head = int((await subs.next(op))["cursor"])
        for since in (str(head + 1), str(head + 1000)):
            bad = await subs.subscribe(WATCH_ONE, {"id": doc, "since": since})
            message = await subs.message(bad)
            errors = message["payload"] if message["type"] == "error" else message["payload"].get("errors")
            assert errors, message
            assert errors[0]["extensions"]["code"] == "INVALID_CURSOR", errors
        for since in ("-1", "nope"):
            bad = await subs.subscribe(WATCH_MANY, {"where": ANN, "since": since})
            message = await subs.message(bad)
            errors = message["payload"] if message["type"] == "error" else message["payload"].get("errors")
            assert errors and errors[0]["extensions"]["code"] == "INVALID_CURSOR", message
        # The head itself is a valid place to resume: nothing to replay, then live.
        ok = await subs.subscribe(WATCH_ONE, {"id": doc, "since": str(head)})
        await update(client, doc, note="x")
        change = await subs.next(ok)
        assert (change["op"], change["version"]) == ("UPDATED", 2)
