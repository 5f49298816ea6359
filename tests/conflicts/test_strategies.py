"""Conflict strategies end to end: updates made against an older version, sent over HTTP to a
real server, merged (or refused) against the base version read from the changelog; what
the commit answers, what the change message says, and what lands in PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg
import orjson
import pytest
import sqlalchemy as sa

from statesync.config import psycopg_url
from statesync.conflicts import Resolution
from statesync.eventing.retention import prune
from statesync.eventing.worker import event_from_row
from statesync.store.statements import read_version
from tests.conftest import RunningServer
from tests.support import GraphQLClient, Subscriptions, row_counts

RESOLUTION = "resolution { strategy basedOn applied kept }"
TICKET = "id version title priority tags log address { city zip }"


def commit_of(model: str, fields: str) -> tuple[str, str, str]:
    create = (f"mutation($input: {model}Input!, $id: ID) {{ create{model}(input: $input, id: $id) "
              f"{{ version }} }}")
    update = (f"mutation($id: ID!, $patch: {model}Patch!, $v: Int, $m: ID) {{ update{model}(id: $id, "
              f"patch: $patch, expectedVersion: $v, mutationId: $m) {{ version replayed "
              f"changedFields {RESOLUTION} document {{ {fields} }} }} }}")
    read = f"query($id: ID!) {{ {model[0].lower() + model[1:]}(id: $id) {{ {fields} }} }}"
    return create, update, read


CREATE_TICKET, UPDATE_TICKET, READ_TICKET = commit_of("Ticket", TICKET)
CREATE_DRAFT, UPDATE_DRAFT, _ = commit_of("Draft", "title body")
CREATE_COUNTER, UPDATE_COUNTER, READ_COUNTER = commit_of("Counter", "value version")


async def ticket(api: RunningServer, fields: dict[str, Any], doc_id: str = "t1"
                 ) -> GraphQLClient:
    client = GraphQLClient(api.base_url)
    await client.data(CREATE_TICKET, {"input": fields, "id": doc_id})
    return client


async def update(client: GraphQLClient, patch: dict[str, Any], version: int | None,
                 mutation: str = UPDATE_TICKET, doc_id: str = "t1", **more: Any) -> dict[str, Any]:
    data = await client.data(mutation, {"id": doc_id, "patch": patch, "v": version, **more})
    result: dict[str, Any] = next(iter(data.values()))
    return result


async def test_two_edits_made_against_one_version_both_land(api: RunningServer) -> None:
    client = await ticket(api, {"title": "Printer jam", "priority": 1})
    first = await update(client, {"title": "Printer jam, floor 2"}, 1)
    assert first["resolution"] is None  # based on the current version: nothing to merge
    second = await update(client, {"priority": 3}, 1)  # made before the first was seen
    assert second["version"] == 3
    assert second["document"]["title"] == "Printer jam, floor 2"
    assert second["document"]["priority"] == 3
    assert second["changedFields"] == ["priority"]
    assert second["resolution"] == {"strategy": "merge", "basedOn": 1, "applied": ["priority"],
                                    "kept": []}
    await client.aclose()


async def test_a_field_both_sides_changed_keeps_the_servers_value_and_says_so(
        api: RunningServer) -> None:
    client = await ticket(api, {"title": "a", "priority": 1})
    await update(client, {"title": "theirs"}, 1)
    mine = await update(client, {"title": "mine", "priority": 2}, 1)
    assert (mine["document"]["title"], mine["document"]["priority"]) == ("theirs", 2)
    assert mine["resolution"]["applied"] == ["priority"]
    assert mine["resolution"]["kept"] == ["title"]
    await client.aclose()


async def test_a_model_may_prefer_the_clients_value(api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    await client.data(CREATE_DRAFT, {"input": {"title": "a"}, "id": "d1"})
    await update(client, {"title": "theirs"}, 1, UPDATE_DRAFT, "d1")
    mine = await update(client, {"title": "mine"}, 1, UPDATE_DRAFT, "d1")
    assert mine["document"]["title"] == "mine"
    assert mine["resolution"]["applied"] == ["title"]
    await client.aclose()


async def test_lists_and_embedded_objects_merge_as_declared(api: RunningServer) -> None:
    client = await ticket(api, {"title": "t", "tags": ["a", "b"], "log": ["opened"],
                                "address": {"city": "Lyon", "zip": "69001"}})
    await update(client, {"tags": ["a", "b", "c"], "log": ["opened", "assigned"],
                          "address": {"city": "Paris", "zip": "69001"}}, 1)
    mine = await update(client, {"tags": ["b", "d"], "log": ["opened", "called back"],
                                 "address": {"city": "Lyon", "zip": "69002"}}, 1)
    assert mine["document"]["tags"] == ["b", "c", "d"]
    assert mine["document"]["log"] == ["opened", "assigned", "called back"]
    assert mine["document"]["address"] == {"city": "Paris", "zip": "69002"}
    assert sorted(mine["resolution"]["applied"]) == ["address.zip", "log", "tags"]
    await client.aclose()


async def test_subscribers_are_told_how_a_change_was_merged(api: RunningServer) -> None:
    client = await ticket(api, {"title": "t", "priority": 0})
    async with Subscriptions.connect(api.ws_url) as subs:
        op = await subs.subscribe(f"subscription {{ ticket(id: \"t1\") {{ op version "
                                  f"changedFields {RESOLUTION} }} }}")
        assert (await subs.next(op))["op"] == "SNAPSHOT"
        await update(client, {"title": "u"}, 1)
        plain = await subs.next(op)
        assert (plain["version"], plain["resolution"]) == (2, None)
        await update(client, {"priority": 5}, 1)
        merged = await subs.next(op)
        assert merged["version"] == 3
        assert merged["resolution"] == {"strategy": "merge", "basedOn": 1,
                                        "applied": ["priority"], "kept": []}
    await client.aclose()


async def test_a_handler_reads_the_resolution_in_its_event(api: RunningServer,
                                                          database_url: str) -> None:
    client = await ticket(api, {"title": "t"})
    await update(client, {"title": "u"}, 1)
    await update(client, {"priority": 5}, 1)
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT id, type, model, doc_id, key, version, payload, created_at, request_id"
            " FROM statesync_outbox WHERE doc_id = 't1' AND version = 3")
    finally:
        await connection.close()
    assert row is not None
    event = event_from_row(SimpleNamespace(**{**dict(row), "payload": orjson.loads(row["payload"])}),
                           attempt=1)  # as the worker reads the row it claimed
    assert event.resolution == Resolution("merge", 1, ("priority",), ())
    await client.aclose()


async def test_a_replayed_offline_commit_merges_once(api: RunningServer, database_url: str) -> None:
    client = await ticket(api, {"title": "t", "priority": 0})
    await update(client, {"title": "online edit"}, 1)
    first = await update(client, {"priority": 7}, 1, m="offline-1")
    again = await update(client, {"priority": 7}, 1, m="offline-1")  # the queue sent it twice
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["resolution"] == first["resolution"]
    assert again["version"] == first["version"] == 3
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetchval(
            "SELECT count(*) FROM statesync_changes WHERE mutation_id = 'offline-1'")
    finally:
        await connection.close()
    assert rows == 1
    await client.aclose()


async def test_concurrent_stale_increments_all_count_through_a_three_way_resolver(
        api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    await client.data(CREATE_COUNTER, {"input": {"label": "likes", "value": 10}, "id": "c1"})
    # Twenty screens saw version 1 (value 10) and each added one.
    results = await asyncio.gather(*(
        update(client, {"value": 11}, 1, UPDATE_COUNTER, "c1") for _ in range(20)))
    final = (await client.data(READ_COUNTER, {"id": "c1"}))["counter"]
    assert final == {"value": 30, "version": 21}
    assert sorted(r["version"] for r in results) == list(range(2, 22))
    stale = [r for r in results if r["version"] > 2]
    assert all(r["resolution"]["strategy"] == "custom" for r in stale)
    assert all(r["resolution"]["kept"] == ["value"] for r in stale)  # not the client's 11
    await client.aclose()


async def test_a_resolver_may_reject_and_nothing_is_written(api: RunningServer,
                                                           database_url: str) -> None:
    client = GraphQLClient(api.base_url)
    await client.data(CREATE_COUNTER, {"input": {"label": "likes", "value": 10}, "id": "c1"})
    await update(client, {"value": 12}, 1, UPDATE_COUNTER, "c1")
    before = await row_counts(database_url)
    error = await client.error(UPDATE_COUNTER, {"id": "c1", "patch": {"value": 9}, "v": 1})
    assert error["message"] == "a counter only goes up"
    assert error["extensions"]["code"] == "CONFLICT"
    assert error["extensions"]["strategy"] == "custom"
    assert error["extensions"]["current"]["value"] == 12
    assert await row_counts(database_url) == before
    await client.aclose()


async def test_a_base_pruned_by_retention_is_a_typed_error_and_writes_nothing(
        api: RunningServer, database_url: str) -> None:
    client = await ticket(api, {"title": "t"})
    await update(client, {"title": "u"}, 1)
    engine = sa.create_engine(psycopg_url(database_url))
    try:  # retention with a clock an hour ahead: the whole sequenced changelog is old
        await asyncio.to_thread(prune, engine, timedelta(0), datetime.now(UTC) + timedelta(hours=1))
    finally:
        engine.dispose()
    before = await row_counts(database_url)
    error = await client.error(UPDATE_TICKET, {"id": "t1", "patch": {"priority": 2}, "v": 1})
    assert error["extensions"]["code"] == "BASE_UNAVAILABLE"
    assert error["extensions"]["currentVersion"] == 2
    assert error["extensions"]["current"]["title"] == "u"
    assert await row_counts(database_url) == before
    await client.aclose()


async def test_a_version_of_a_deleted_incarnation_is_no_base(api: RunningServer) -> None:
    client = await ticket(api, {"title": "first life"})
    await client.data('mutation { deleteTicket(id: "t1") { version } }')
    await client.data(CREATE_TICKET, {"input": {"title": "second life"}, "id": "t1"})  # version 3
    await update(client, {"title": "second life, edited"}, 3)
    error = await client.error(UPDATE_TICKET, {"id": "t1", "patch": {"priority": 2}, "v": 1})
    assert error["extensions"]["code"] == "BASE_UNAVAILABLE"
    await client.aclose()


async def test_a_version_from_the_future_and_a_stale_delete_are_still_conflicts(
        api: RunningServer, database_url: str) -> None:
    client = await ticket(api, {"title": "t"})
    await update(client, {"title": "u"}, 1)
    before = await row_counts(database_url)
    ahead = await client.error(UPDATE_TICKET, {"id": "t1", "patch": {"priority": 2}, "v": 9})
    assert ahead["extensions"]["code"] == "CONFLICT"
    stale = await client.error('mutation { deleteTicket(id: "t1", expectedVersion: 1) { version } }')
    assert stale["extensions"]["code"] == "CONFLICT"
    assert await row_counts(database_url) == before
    await client.aclose()


async def test_the_default_strategy_still_rejects(api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    created = (await client.data('mutation { createProduct(input: {sku: "s", name: "n", '
                                 'priceCents: 1}) { id } }'))["createProduct"]
    await client.data('mutation($id: ID!) { updateProduct(id: $id, patch: {name: "m"}) '
                      '{ version } }', {"id": created["id"]})
    error = await client.error('mutation($id: ID!) { updateProduct(id: $id, patch: '
                               '{priceCents: 2}, expectedVersion: 1) { version } }',
                               {"id": created["id"]})
    assert error["extensions"]["code"] == "CONFLICT"
    assert "strategy" not in error["extensions"]
    await client.aclose()


async def test_the_python_client_returns_the_resolution(api: RunningServer) -> None:
    from statesync.client import Client

    async with Client(api.base_url) as client:
        await client.create("Ticket", {"title": "t"}, id="t9")
        await client.update("Ticket", "t9", {"title": "u"}, expected_version=1)
        merged = await client.update("Ticket", "t9", {"priority": 4}, expected_version=1,
                                     fields="priority")
    assert merged.version == 3
    assert merged.document is not None and merged.document["priority"] == 4
    assert merged.resolution == {"strategy": "merge", "basedOn": 1, "applied": ["priority"],
                                 "kept": []}


async def test_an_old_base_is_found_without_reading_the_documents_history(
        api: RunningServer, database_url: str) -> None:
    """A client may send expectedVersion 1 to a document with a long history: the base is
    one index probe, not a scan of every change the document had."""
    client = await ticket(api, {"title": "t"})
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("""
            INSERT INTO statesync_changes (cursor, model, doc_id, op, version, document,
                changed_fields, committed_at)
            SELECT -n, 'Ticket', 't1', 'UPDATED', n, '{}', '{}', now()
            FROM generate_series(2, 50001) AS n""")
        # (Cursors below the feed's: history as the index sees it, which the sequencer and
        # the hub never have to pass through, so the server has 50,000 rows less to do.)
        await connection.execute("ANALYZE statesync_changes")
        sql, args = read_version("Ticket", "t1", 1).for_asyncpg()
        explained = await connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
    finally:
        await connection.close()
    plan = orjson.loads(explained)[0]["Plan"]
    scans = [node for node in _walk(plan) if "Scan" in node["Node Type"]]
    assert [node.get("Index Name") for node in scans] == ["statesync_changes_by_version"], scans
    assert sum(node["Actual Rows"] for node in scans) == 1
    assert not any("Rows Removed by Filter" in node and node["Rows Removed by Filter"]
                   for node in scans)
    await client.aclose()


def _walk(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", ()):
        yield from _walk(child)


async def test_the_demo_order_merges_edits_of_other_fields_only(api: RunningServer) -> None:
    """schema/shop.py merge_order: a note and new quantities made against one version both
    land; the same field changed on both sides, or a price of items changed since, is
    CONFLICT (so the pricing handler retries)."""
    from statesync import documents as docs
    from statesync.errors import Conflict

    client = GraphQLClient(api.base_url)
    create_order, update_order, read_order = commit_of("Order", "note items { sku qty } status")
    await client.data(create_order, {"input": {"customer": "ann", "items": [{"sku": "tea", "qty": 1}]},
                               "id": "o1"})
    noted = await update(client, {"note": "gift"}, 1, mutation=update_order, doc_id="o1")
    assert noted["version"] == 2
    more = await update(client, {"items": [{"sku": "tea", "qty": 3}]}, 1, mutation=update_order,
                        doc_id="o1")
    assert more["document"] == {"note": "gift", "items": [{"sku": "tea", "qty": 3}],
                                "status": "NEW"}
    assert more["resolution"] == {"strategy": "custom", "basedOn": 1, "applied": ["items"],
                                  "kept": []}
    again = await client.error(update_order, {"id": "o1", "patch": {"note": "ribbon"}, "v": 1})
    assert again["extensions"]["code"] == "CONFLICT"
    assert again["extensions"]["strategy"] == "custom"
    assert "note" in again["message"]
    with pytest.raises(Conflict, match="items that changed since"):
        await api.runtime.commit(docs.Update("Order", "o1", {"status": "PRICED",
                                                             "total_cents": 450}, 2))
    assert (await client.data(read_order, {"id": "o1"}))["order"]["status"] == "NEW"


async def test_a_patch_of_an_embedded_object_changes_only_the_fields_it_names(
        api: RunningServer) -> None:
    client = await ticket(api, {"title": "Door", "address": {"city": "Oslo", "zip": "0150"}})
    moved = await update(client, {"address": {"city": "Bergen"}}, None)
    assert moved["document"]["address"] == {"city": "Bergen", "zip": "0150"}
    assert moved["changedFields"] == ["address"]
    # An offline edit of the city, made before the zip changed: both land.
    await update(client, {"address": {"zip": "5003"}}, None)
    late = await update(client, {"address": {"city": "Trondheim"}}, 2)
    assert late["document"]["address"] == {"city": "Trondheim", "zip": "5003"}
    assert late["resolution"]["applied"] == ["address.city"]
    # A document without the object yet: the patch must make a whole one.
    bare = await ticket(api, {"title": "Bare"}, doc_id="t2")
    error = await bare.error(UPDATE_TICKET, {"id": "t2", "patch": {"address": {"city": "Oslo"}}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    cleared = await update(bare, {"address": None}, None, doc_id="t2")
    assert cleared["document"]["address"] is None
