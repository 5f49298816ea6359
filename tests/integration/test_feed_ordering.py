"""The change feed's order: cursors in commit order (not insertion order), dense, per document
in version order; and the hub refilling what Redis pub/sub lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from statesync import documents as docs
from statesync.change import Change
from statesync.config import Settings, asyncpg_url
from statesync.models import ModelSpec
from statesync.store.commits import commit_steps, run_async
from tests.conftest import RunningServer, serve
from tests.support import GraphQLClient, Subscriptions

ORDER = "id version customer note"
WATCH_ONE = f"""subscription($id: ID!, $since: String) {{ order(id: $id, since: $since) {{
  op cursor id version document {{ {ORDER} }} }} }}"""
WATCH_MANY = f"""subscription($where: OrderWhere, $since: String) {{
  orders(where: $where, since: $since) {{
    op cursor id version hasMore document {{ {ORDER} }} documents {{ {ORDER} }} }} }}"""
CREATE = "mutation($input: OrderInput!, $id: ID) { createOrder(input: $input, id: $id) { id version } }"
UPDATE = "mutation($id: ID!, $patch: OrderPatch!) { updateOrder(id: $id, patch: $patch) { id version } }"
MANY = f"query {{ orders(first: 500) {{ nodes {{ {ORDER} }} }} }}"


async def create(client: GraphQLClient, id: str, customer: str = "ann") -> dict[str, Any]:
    result: dict[str, Any] = (await client.data(
        CREATE, {"input": {"customer": customer, "items": []}, "id": id}))["createOrder"]
    return result


async def update(client: GraphQLClient, id: str, **patch: Any) -> dict[str, Any]:
    result: dict[str, Any] = (await client.data(UPDATE, {"id": id, "patch": patch}))["updateOrder"]
    return result


def key(message: dict[str, Any]) -> tuple[str, str, int]:
    return message["op"], message["id"], message["version"]


class Replica:
    """State rebuilt from one subscription; asserts cursor order and +1 versions per document."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        assert snapshot["op"] == "SNAPSHOT" and not snapshot.get("hasMore"), snapshot
        found = snapshot.get("documents")
        if found is None:
            found = [snapshot["document"]] if snapshot["document"] else []
        self.docs = {d["id"]: d for d in found}
        self.versions = {d["id"]: d["version"] for d in found}
        self.cursor = int(snapshot["cursor"])
        self.changes: list[dict[str, Any]] = []

    def apply(self, message: dict[str, Any]) -> None:
        assert message["op"] in ("CREATED", "UPDATED", "DELETED"), message
        assert int(message["cursor"]) > self.cursor, (self.cursor, message)
        self.cursor = int(message["cursor"])
        expected = self.versions.get(message["id"], 0) + 1
        assert message["version"] == expected, (expected, message)
        self.versions[message["id"]] = message["version"]
        if message["op"] == "DELETED":
            self.docs.pop(message["id"], None)
        else:
            self.docs[message["id"]] = message["document"]
        self.changes.append(message)

    async def read_until(self, subs: Subscriptions, op: str, versions: dict[str, int]) -> None:
        while any(self.versions.get(i, 0) < v for i, v in versions.items()):
            self.apply(await subs.next(op))


@contextlib.asynccontextmanager
async def slow_transaction(server: RunningServer, database_url: str, write: docs.Write
                           ) -> AsyncIterator[tuple[AsyncConnection, int]]:
    """Run ``write`` through the product's commit path in a transaction left open: it holds
    its ``seq`` (assigned at insert) until the caller commits it with the yielded connection."""
    engine = create_async_engine(asyncpg_url(database_url), pool_size=2)
    try:
        async with engine.connect() as connection:
            await connection.begin()
            await run_async(connection, commit_steps(
                server.runtime.models, write,
                max_document_bytes=server.settings.max_document_bytes))
            seq = (await connection.execute(sa.text(
                "SELECT seq FROM statesync_changes WHERE cursor IS NULL AND doc_id = :doc"),
                {"doc": write.id})).scalar_one()
            yield connection, seq
    finally:
        await engine.dispose()


async def feed_rows(database_url: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(
            "SELECT seq, cursor, doc_id, version FROM statesync_changes ORDER BY seq")
        return rows
    finally:
        await connection.close()


# ---- 4. commit order is not sequence order ---------------------------------------------------


async def test_slow_transactions_get_cursors_in_commit_order(
        server: RunningServer, client: GraphQLClient, database_url: str) -> None:
    for doc_id in ("slow-a", "slow-b", "fast"):
        await create(client, doc_id)
    async with Subscriptions.connect(server.ws_url) as subs:
        live = await subs.subscribe(WATCH_MANY)
        replica = Replica(await subs.next(live))
        before = replica.cursor  # a cursor from before the slow commits, to resume from
        async with slow_transaction(server, database_url,
                                    docs.Update("Order", "slow-a", {"note": "slow a"})) as (a, seq_a), \
                   slow_transaction(server, database_url,
                                    docs.Update("Order", "slow-b", {"note": "slow b"})) as (b, seq_b):
            assert seq_a < seq_b
            for i in range(3):  # fast commits, inserted after the slow ones, commit first
                await update(client, "fast", note=f"fast {i}")
            await replica.read_until(subs, live, {"fast": 4})
            assert [key(m) for m in replica.changes] == [("UPDATED", "fast", v) for v in (2, 3, 4)]
            # Subscriptions opened now see neither slow change in their snapshot.
            watch_a = await subs.subscribe(WATCH_ONE, {"id": "slow-a"})
            snapshot_a = await subs.next(watch_a)
            assert snapshot_a["version"] == 1 and snapshot_a["document"]["note"] is None
            late = await subs.subscribe(WATCH_MANY)
            late_replica = Replica(await subs.next(late))
            assert late_replica.versions == {"slow-a": 1, "slow-b": 1, "fast": 4}
            # Commit in the other order than the seqs were taken: b, then a.
            await b.commit()
            server.runtime.sequencer.wake()
            await replica.read_until(subs, live, {"slow-b": 2})
            await a.commit()
            server.runtime.sequencer.wake()
            await replica.read_until(subs, live, {"slow-a": 2})
        assert [key(m) for m in replica.changes][3:] == [("UPDATED", "slow-b", 2),
                                                         ("UPDATED", "slow-a", 2)]
        cursors = [int(m["cursor"]) for m in replica.changes]
        assert cursors == list(range(before + 1, before + 6)), "a cursor was skipped or repeated"
        assert replica.changes[-1]["document"]["note"] == "slow a"

        late_replica_versions = {"slow-a": 2, "slow-b": 2}
        await late_replica.read_until(subs, late, late_replica_versions)
        assert [key(m) for m in late_replica.changes] == [("UPDATED", "slow-b", 2),
                                                          ("UPDATED", "slow-a", 2)]
        slow_a_change = await subs.next(watch_a)
        assert (key(slow_a_change), slow_a_change["cursor"]) == (
            ("UPDATED", "slow-a", 2), replica.changes[-1]["cursor"])

        # Resuming from before the slow commits replays all five once, in cursor order.
        resumed = await subs.subscribe(WATCH_MANY, {"since": str(before)})
        replayed = [await subs.next(resumed) for _ in range(5)]
        assert [(key(m), m["cursor"]) for m in replayed] == [
            (key(m), m["cursor"]) for m in replica.changes]
        # ... and nothing else: the next message everywhere is the marker.
        marker = await update(client, "fast", note="marker")
        for op in (live, late, resumed):
            assert key(await subs.next(op)) == ("UPDATED", "fast", marker["version"])

    rows = await feed_rows(database_url)
    by_doc = {(r["doc_id"], r["version"]): r for r in rows}
    fast_seqs = [by_doc[("fast", v)]["seq"] for v in (2, 3, 4)]
    assert by_doc[("slow-a", 2)]["seq"] == seq_a < by_doc[("slow-b", 2)]["seq"] == seq_b
    assert seq_b < min(fast_seqs)
    assert by_doc[("slow-a", 2)]["cursor"] > by_doc[("slow-b", 2)]["cursor"] > max(
        by_doc[("fast", v)]["cursor"] for v in (2, 3, 4))
    assert all(r["cursor"] is not None for r in rows), rows
    assert sorted(r["cursor"] for r in rows) == list(range(1, len(rows) + 1))


# ---- 5. per-document version order under concurrent writers ------------------------------------


async def test_versions_increase_by_one_under_concurrent_writers(
        server: RunningServer, client: GraphQLClient) -> None:
    ids = [f"doc-{i}" for i in range(4)]
    for doc_id in ids:
        await create(client, doc_id)
    async with Subscriptions.connect(server.ws_url) as subs, \
               Subscriptions.connect(server.ws_url) as other:
        collection = await subs.subscribe(WATCH_MANY)
        collection_replica = Replica(await subs.next(collection))
        singles: list[tuple[Subscriptions, str, str, Replica]] = []
        for n, doc_id in enumerate(ids):
            conn = (subs, other)[n % 2]
            op = await conn.subscribe(WATCH_ONE, {"id": doc_id})
            singles.append((conn, op, doc_id, Replica(await conn.next(op))))

        async def writer(w: int) -> None:
            for n in range(15):
                await update(client, ids[(w + n * (w + 1)) % len(ids)], note=f"w{w}-{n}")

        await asyncio.gather(*(writer(w) for w in range(6)))
        final = {d["id"]: d for d in (await client.data(MANY))["orders"]["nodes"]}
        versions = {i: d["version"] for i, d in final.items()}
        assert sum(versions.values()) == len(ids) + 6 * 15
        await collection_replica.read_until(subs, collection, versions)
        assert collection_replica.docs == final
        for conn, op, doc_id, replica in singles:
            await replica.read_until(conn, op, {doc_id: versions[doc_id]})
            assert replica.docs == {doc_id: final[doc_id]}
        # Nothing more: the marker comes next on each.
        for doc_id in ids:
            await update(client, doc_id, note="marker")
        for conn, op, doc_id, replica in singles:
            replica.apply(await conn.next(op))
            assert replica.docs[doc_id]["note"] == "marker"
        for _ in ids:
            collection_replica.apply(await subs.next(collection))
        assert all(d["note"] == "marker" for d in collection_replica.docs.values())


# ---- 8. the hub refills what pub/sub lost ----------------------------------------------------


async def test_hub_refills_dropped_feed_messages(server: RunningServer, client: GraphQLClient,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    hub = server.runtime.hub
    # The process's own hub hears of its own sequencer's batches first without Redis; here
    # only through Redis, which loses what the test says.
    monkeypatch.setattr(server.runtime.sequencer, "on_sequenced", lambda batch: None)
    await create(client, "gap")
    async with Subscriptions.connect(server.ws_url) as subs:
        one = await subs.subscribe(WATCH_ONE, {"id": "gap"})
        many = await subs.subscribe(WATCH_MANY)
        one_replica, many_replica = Replica(await subs.next(one)), Replica(await subs.next(many))

        dropped: list[int] = []
        drop = False
        drops_seen = asyncio.Condition()
        original_on_batch, original_catch_up = hub.on_batch, hub.catch_up

        async def lossy_on_batch(batch: list[Change]) -> None:
            if drop:  # as if Redis lost the message
                async with drops_seen:
                    dropped.extend(c.cursor for c in batch)
                    drops_seen.notify_all()
                return
            await original_on_batch(batch)

        async def no_catch_up() -> None:
            return None

        async def wait_for_drops(count: int) -> None:
            async with asyncio.timeout(10), drops_seen:
                await drops_seen.wait_for(lambda: len(dropped) >= count)

        hub.on_batch = lossy_on_batch
        hub.catch_up = no_catch_up
        try:
            # A gap found by the next message: three changes lost, the fourth reveals them.
            drop = True
            for i in range(3):
                await update(client, "gap", note=f"lost {i}")
            await wait_for_drops(3)  # the sequencer published all three, to no one
            drop = False
            lost = list(dropped)
            assert len(lost) == 3
            assert subs.pending(one) == subs.pending(many) == 0  # nothing reached them
            await update(client, "gap", note="revealing")
            total = 1 + 3 + 1
            await one_replica.read_until(subs, one, {"gap": total})
            assert [int(m["cursor"]) for m in one_replica.changes[:3]] == lost
            assert one_replica.docs["gap"]["note"] == "revealing"

            # A gap found by the periodic head check: the last message lost, nothing after it.
            hub.catch_up = original_catch_up
            drop = True
            await update(client, "gap", note="lost last")
            await wait_for_drops(4)
            await one_replica.read_until(subs, one, {"gap": total + 1})
            assert dropped[-1] == int(one_replica.changes[-1]["cursor"])
            assert one_replica.docs["gap"]["note"] == "lost last"
        finally:
            drop = False
            hub.on_batch, hub.catch_up = original_on_batch, original_catch_up

        await many_replica.read_until(subs, many, {"gap": total + 1})
        assert [m["cursor"] for m in many_replica.changes] == [
            m["cursor"] for m in one_replica.changes]
        marker = await update(client, "gap", note="marker")
        for op, replica in ((one, one_replica), (many, many_replica)):
            replica.apply(await subs.next(op))
            assert replica.versions["gap"] == marker["version"]


async def test_a_refill_larger_than_a_queue_reaches_a_healthy_subscriber_whole(
        settings: Settings, demo_models: list[ModelSpec]) -> None:
    """Forty lost changes, refilled into subscriptions that buffer eight: the refill goes
    in pages that fit and waits for room, so a subscriber that keeps reading gets every
    change and no RESYNC."""
    small = settings.model_copy(update={"subscriber_queue_size": 8})
    lost_count = 40
    async with serve(small, demo_models) as server:
        client = GraphQLClient(server.base_url)
        hub = server.runtime.hub
        await create(client, "big")
        async with Subscriptions.connect(server.ws_url) as subs:
            many = await subs.subscribe(WATCH_MANY)
            replica = Replica(await subs.next(many))
            original_on_batch, original_catch_up = hub.on_batch, hub.catch_up
            dropped: list[int] = []
            drops_seen = asyncio.Condition()

            async def lossy_on_batch(batch: list[Change]) -> None:
                async with drops_seen:
                    dropped.extend(c.cursor for c in batch)
                    drops_seen.notify_all()

            async def no_catch_up() -> None:
                return None

            hub.on_batch, hub.catch_up = lossy_on_batch, no_catch_up
            try:
                for i in range(lost_count):
                    await update(client, "big", note=f"lost {i}")
                async with asyncio.timeout(10), drops_seen:
                    await drops_seen.wait_for(lambda: len(dropped) >= lost_count)
            finally:
                hub.on_batch, hub.catch_up = original_on_batch, original_catch_up
            await update(client, "big", note="revealing")
            await replica.read_until(subs, many, {"big": 1 + lost_count + 1})
        await client.aclose()
    assert [int(m["cursor"]) for m in replica.changes[:lost_count]] == dropped
    assert replica.docs["big"]["note"] == "revealing"


async def test_hub_recovers_from_a_killed_redis_subscription(
        server: RunningServer, client: GraphQLClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLIENT KILL TYPE pubsub drops every pub/sub client of this Redis; with a Redis shared
    between test sessions the others' hubs lose a message too, and must refill the same way.
    Its own sequencer's batches reach the hub only through Redis here, as another
    process's would."""
    monkeypatch.setattr(server.runtime.sequencer, "on_sequenced", lambda batch: None)
    await create(client, "kill")
    admin = aioredis.Redis.from_url(server.settings.redis_url or "")
    try:
        async with Subscriptions.connect(server.ws_url) as subs:
            one = await subs.subscribe(WATCH_ONE, {"id": "kill"})
            replica = Replica(await subs.next(one))
            for round_ in range(3):
                killed = await admin.client_kill_filter(_type="pubsub")
                assert killed >= 1
                # Commits right after the kill: their feed messages may reach no one.
                await asyncio.gather(*(update(client, "kill", note=f"r{round_}-{i}")
                                       for i in range(5)))
                await replica.read_until(subs, one, {"kill": 1 + 5 * (round_ + 1)})
            marker = await update(client, "kill", note="marker")
            replica.apply(await subs.next(one))
            assert replica.versions["kill"] == marker["version"]
            assert replica.docs["kill"]["note"] == "marker"
    finally:
        await admin.aclose()


# ---- the sequencer survives a failed publish -------------------------------------------------


async def test_sequencer_keeps_sequencing_after_a_failed_publish(
        server: RunningServer, client: GraphQLClient) -> None:
    sequencer = server.runtime.sequencer
    await create(client, "blip")
    async with Subscriptions.connect(server.ws_url) as subs:
        one = await subs.subscribe(WATCH_ONE, {"id": "blip"})
        replica = Replica(await subs.next(one))
        original = sequencer._publish
        failed = asyncio.Event()

        async def failing_publish(batch: list[Change]) -> None:
            sequencer._publish = original
            failed.set()
            raise aioredis.ConnectionError("Redis went away (injected)")

        # Several idle connections in the pool: a connection that went back to it holding
        # the sequencer's session-level lock is then unlikely to be the one checked out next.
        await asyncio.gather(*(client.data(MANY) for _ in range(8)))
        sequencer._publish = failing_publish
        try:
            await update(client, "blip", note="unpublished")
            async with asyncio.timeout(10):
                await failed.wait()
        finally:
            sequencer._publish = original
        # The change was sequenced but never published: the hub's head check refills it.
        await replica.read_until(subs, one, {"blip": 2})
        # And the sequencer must take its role back: later commits keep flowing.
        for i in range(3):
            await update(client, "blip", note=f"after {i}")
        await replica.read_until(subs, one, {"blip": 5})
        assert replica.docs["blip"]["note"] == "after 2"
    assert sequencer.active


# ---- the process's own sequencer hands its batches to its own hub ----------------------------


async def test_own_batches_reach_own_subscribers_without_redis(
        server: RunningServer, client: GraphQLClient, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = server.runtime.hub
    await create(client, "local")
    async with Subscriptions.connect(server.ws_url) as subs:
        one = await subs.subscribe(WATCH_ONE, {"id": "local"})
        replica = Replica(await subs.next(one))

        async def deaf_on_batch(batch: list[Change]) -> None:  # Redis reaches no one
            return None

        async def no_catch_up() -> None:
            return None

        monkeypatch.setattr(hub, "on_batch", deaf_on_batch)
        monkeypatch.setattr(hub, "catch_up", no_catch_up)
        for i in range(3):
            await update(client, "local", note=f"n{i}")
        await replica.read_until(subs, one, {"local": 4})
        assert replica.docs["local"]["note"] == "n2"
