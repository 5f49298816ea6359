"""Writing through GraphQL: create, patch, delete, optimistic concurrency, idempotency.

Every commit is checked where it lands too: the document row, one changelog row
and one outbox row, read straight from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.support import STATESYNC_TABLES, GraphQLClient, row_counts

ORDER_FIELDS = ("id version createdAt updatedAt expiresAt customer items { sku qty } status note "
                "totalCents rejectReason")
COMMIT = f"op id version changedFields eventIds replayed document {{ {ORDER_FIELDS} }}"
CREATE = f"""mutation($input: OrderInput!, $id: ID, $mutationId: ID) {{
  createOrder(input: $input, id: $id, mutationId: $mutationId) {{ {COMMIT} }} }}"""
UPDATE = f"""mutation($id: ID!, $patch: OrderPatch!, $expectedVersion: Int, $mutationId: ID) {{
  updateOrder(id: $id, patch: $patch, expectedVersion: $expectedVersion, mutationId: $mutationId) {{
    {COMMIT} }} }}"""
DELETE = f"""mutation($id: ID!, $expectedVersion: Int, $mutationId: ID) {{
  deleteOrder(id: $id, expectedVersion: $expectedVersion, mutationId: $mutationId) {{ {COMMIT} }} }}"""
ORDER = f"""query($id: ID!) {{ order(id: $id) {{ {ORDER_FIELDS} }} }}"""
CREATE_PRODUCT = """mutation($input: ProductInput!, $id: ID) { createProduct(input: $input, id: $id) {
  op id version changedFields eventIds
  document { id version expiresAt sku name priceCents tags } } }"""
UPDATE_PRODUCT = """mutation($id: ID!, $patch: ProductPatch!) { updateProduct(id: $id, patch: $patch) {
  op version changedFields eventIds document { sku name priceCents tags expiresAt } } }"""

ANN = {"customer": "ann", "items": [{"sku": "A-100", "qty": 2}], "note": "rush"}


async def fetch(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def last_change_and_event(database_url: str) -> tuple[asyncpg.Record, asyncpg.Record]:
    change = (await fetch(database_url, """SELECT seq, model, doc_id, op, version, changed_fields,
        mutation_id, document FROM statesync_changes ORDER BY seq DESC LIMIT 1"""))[0]
    event = (await fetch(database_url, """SELECT id::text AS id, type, model, doc_id, version,
        change_seq FROM statesync_outbox ORDER BY change_seq DESC LIMIT 1"""))[0]
    return change, event


def plus(before: dict[str, int], **added: int) -> dict[str, int]:
    return {t: n + added.get(t.removeprefix("statesync_"), 0) for t, n in before.items()}


async def create(client: GraphQLClient, fields: dict[str, Any] = ANN, **args: Any) -> dict[str, Any]:
    result: dict[str, Any] = (await client.data(CREATE, {"input": fields, **args}))["createOrder"]
    return result


async def current(client: GraphQLClient, doc_id: str) -> dict[str, Any] | None:
    result: dict[str, Any] | None = (await client.data(ORDER, {"id": doc_id}))["order"]
    return result


# ---- create -------------------------------------------------------------------------------


async def test_create_with_generated_id_applies_defaults_and_ttl(client: GraphQLClient) -> None:
    before = datetime.now(UTC)
    commit = await create(client, {"customer": "ann", "items": [{"sku": "A-100", "qty": 2}]})
    after = datetime.now(UTC)
    assert uuid.UUID(commit["id"]).version == 4
    assert commit["op"] == "CREATED" and commit["version"] == 1 and commit["replayed"] is False
    doc = commit["document"]
    assert doc["id"] == commit["id"] and doc["version"] == 1
    assert doc["customer"] == "ann" and doc["items"] == [{"sku": "A-100", "qty": 2}]
    assert doc["status"] == "NEW"
    assert doc["note"] is None and doc["totalCents"] is None and doc["rejectReason"] is None
    created = datetime.fromisoformat(doc["createdAt"])
    assert before <= created <= after
    assert doc["updatedAt"] == doc["createdAt"]
    assert datetime.fromisoformat(doc["expiresAt"]) - created == timedelta(days=7)
    assert sorted(commit["changedFields"]) == sorted(
        ["customer", "items", "status", "note", "totalCents", "rejectReason"])
    assert await current(client, commit["id"]) == doc

    other = await create(client)
    assert other["id"] != commit["id"]


async def test_create_with_given_id_and_expiry(client: GraphQLClient) -> None:
    expires = datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)
    commit = await create(client, {**ANN, "status": "PRICED", "expiresAt": expires.isoformat()},
                          id="order-1")
    assert commit["id"] == "order-1" and commit["document"]["id"] == "order-1"
    assert commit["document"]["status"] == "PRICED" and commit["document"]["note"] == "rush"
    assert datetime.fromisoformat(commit["document"]["expiresAt"]) == expires
    assert await current(client, "order-1") == commit["document"]
    error = await client.error(CREATE, {"input": ANN, "id": "order-1"})
    assert error["extensions"]["code"] == "ALREADY_EXISTS"


async def test_product_without_ttl(client: GraphQLClient) -> None:
    commit = (await client.data(CREATE_PRODUCT, {"input": {
        "sku": "A-100", "name": "apple", "priceCents": 100}}))["createProduct"]
    assert commit["document"]["expiresAt"] is None and commit["document"]["tags"] == []
    assert sorted(commit["changedFields"]) == ["name", "priceCents", "sku", "tags"]


# ---- update -------------------------------------------------------------------------------


async def test_update_is_a_partial_patch(client: GraphQLClient) -> None:
    created = (await create(client, id="o1"))["document"]
    commit = (await client.data(UPDATE, {"id": "o1", "patch": {"status": "PRICED"}}))["updateOrder"]
    assert commit["op"] == "UPDATED" and commit["version"] == 2 and commit["id"] == "o1"
    assert commit["changedFields"] == ["status"]
    doc = commit["document"]
    assert doc == {**created, "status": "PRICED", "version": 2, "updatedAt": doc["updatedAt"]}
    assert datetime.fromisoformat(doc["updatedAt"]) > datetime.fromisoformat(created["updatedAt"])
    assert await current(client, "o1") == doc

    commit = (await client.data(UPDATE, {"id": "o1", "patch": {
        "note": None, "items": [{"sku": "B-1", "qty": 1}], "customer": "ann"}}))["updateOrder"]
    assert commit["version"] == 3
    assert sorted(commit["changedFields"]) == ["items", "note"]  # customer did not change
    assert commit["document"]["note"] is None
    assert commit["document"]["items"] == [{"sku": "B-1", "qty": 1}]
    assert commit["document"]["status"] == "PRICED" and commit["document"]["customer"] == "ann"

    commit = (await client.data(UPDATE, {"id": "o1", "patch": {"expiresAt": None}}))["updateOrder"]
    assert commit["changedFields"] == ["expiresAt"] and commit["document"]["expiresAt"] is None
    assert (await current(client, "o1"))["version"] == 4  # type: ignore[index]


async def test_changed_fields_are_camel_case(client: GraphQLClient) -> None:
    await client.data(CREATE_PRODUCT, {"id": "p1", "input": {
        "sku": "A-100", "name": "apple", "priceCents": 100, "tags": ["red"]}})
    commit = (await client.data(UPDATE_PRODUCT, {"id": "p1", "patch": {
        "priceCents": 120, "name": "apple"}}))["updateProduct"]
    assert commit["changedFields"] == ["priceCents"]
    assert commit["document"] == {"sku": "A-100", "name": "apple", "priceCents": 120,
                                  "tags": ["red"], "expiresAt": None}


# ---- delete -------------------------------------------------------------------------------


async def test_delete_then_not_found_and_recreate_continues_versions(
        client: GraphQLClient, database_url: str) -> None:
    await create(client, id="o1")
    await client.data(UPDATE, {"id": "o1", "patch": {"note": "v2"}})
    commit = (await client.data(DELETE, {"id": "o1"}))["deleteOrder"]
    assert commit["op"] == "DELETED" and commit["id"] == "o1" and commit["version"] == 3
    assert commit["document"]["note"] == "v2"  # the last document
    assert await current(client, "o1") is None

    missing: list[tuple[str, dict[str, Any]]] = [
        (UPDATE, {"id": "o1", "patch": {"note": "x"}}),
        (DELETE, {"id": "o1"}),
        (UPDATE, {"id": "never", "patch": {"note": "x"}}),
    ]
    for query, variables in missing:
        counts = await row_counts(database_url)
        error = await client.error(query, variables)
        assert error["extensions"]["code"] == "NOT_FOUND", error
        assert error["extensions"]["id"] == variables["id"]
        assert await row_counts(database_url) == counts

    again = await create(client, {"customer": "bob", "items": []}, id="o1")
    assert again["op"] == "CREATED" and again["version"] == 4
    assert again["document"]["note"] is None and again["document"]["customer"] == "bob"
    assert again["document"]["createdAt"] != commit["document"]["createdAt"]
    assert await current(client, "o1") == again["document"]
    versions = await fetch(database_url, "SELECT op, version FROM statesync_changes "
                           "WHERE doc_id = 'o1' ORDER BY seq")
    assert [(r["op"], r["version"]) for r in versions] == [
        ("CREATED", 1), ("UPDATED", 2), ("DELETED", 3), ("CREATED", 4)]


# ---- expectedVersion ----------------------------------------------------------------------


async def test_expected_version_match_succeeds(client: GraphQLClient) -> None:
    await create(client, id="o1")
    commit = (await client.data(UPDATE, {"id": "o1", "patch": {"note": "a"},
                                         "expectedVersion": 1}))["updateOrder"]
    assert commit["version"] == 2
    commit = (await client.data(DELETE, {"id": "o1", "expectedVersion": 2}))["deleteOrder"]
    assert commit["version"] == 3
    assert await current(client, "o1") is None


async def test_expected_version_mismatch_is_a_conflict_that_writes_nothing(
        client: GraphQLClient, database_url: str) -> None:
    await create(client, id="o1")
    doc = (await client.data(UPDATE, {"id": "o1", "patch": {"status": "PRICED"}}))[
        "updateOrder"]["document"]
    counts = await row_counts(database_url)
    for query, variables in [
        # Order merges edits of other fields (schema/shop.py): this one is of the same field.
        (UPDATE, {"id": "o1", "patch": {"status": "SHIPPED"}, "expectedVersion": 1}),
        (UPDATE, {"id": "o1", "patch": {"note": "future"}, "expectedVersion": 3}),
        (DELETE, {"id": "o1", "expectedVersion": 1}),
    ]:
        error = await client.error(query, variables)
        ext = error["extensions"]
        assert ext["code"] == "CONFLICT", error
        assert ext["expectedVersion"] == variables["expectedVersion"]
        assert ext["currentVersion"] == 2
        # the current document, exactly as the Order type shows it
        assert ext["current"] == doc
        assert await row_counts(database_url) == counts
        assert await current(client, "o1") == doc


# ---- changelog and outbox -----------------------------------------------------------------


async def test_each_commit_writes_one_change_and_one_event(
        client: GraphQLClient, database_url: str) -> None:
    counts = await row_counts(database_url)
    assert counts == dict.fromkeys(STATESYNC_TABLES, 0)
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("createOrder", CREATE, {"input": ANN, "id": "o1"}),
        ("updateOrder", UPDATE, {"id": "o1", "patch": {"status": "SHIPPED"}}),
        ("deleteOrder", DELETE, {"id": "o1"}),
        ("createOrder", CREATE, {"input": ANN, "id": "o1"}),
    ]
    for name, query, variables in steps:
        commit = (await client.data(query, variables))[name]
        documents = 1 if counts["statesync_documents"] == 0 else 0  # the tombstone is reused
        counts = plus(counts, documents=documents, changes=1, outbox=1)
        assert await row_counts(database_url) == counts, name
        change, event = await last_change_and_event(database_url)
        op = commit["op"]
        assert (change["model"], change["doc_id"], change["op"], change["version"]) == (
            "Order", "o1", op, commit["version"])
        assert change["mutation_id"] is None
        assert commit["eventIds"] == [event["id"]]
        assert event["type"] == f"Order.{op.lower()}"
        assert (event["model"], event["doc_id"], event["version"], event["change_seq"]) == (
            "Order", "o1", commit["version"], change["seq"])
    assert [t for (t,) in await fetch(database_url, "SELECT type FROM statesync_outbox "
                                      "ORDER BY change_seq")] == [
        "Order.created", "Order.updated", "Order.deleted", "Order.created"]

    await client.data(CREATE_PRODUCT, {"id": "p1", "input": {
        "sku": "A", "name": "a", "priceCents": 1}})
    commit = (await client.data(UPDATE_PRODUCT, {"id": "p1", "patch": {"priceCents": 2}})
              )["updateProduct"]
    change, event = await last_change_and_event(database_url)
    assert event["type"] == "Product.updated" and commit["eventIds"] == [event["id"]]
    assert change["changed_fields"] == ["price_cents"]


async def test_an_update_that_changes_nothing_commits_nothing(
        client: GraphQLClient, database_url: str) -> None:
    created = await create(client, id="o1")
    counts = await row_counts(database_url)
    same = (await client.data(UPDATE, {"id": "o1", "patch": {"note": "rush", "items": ANN["items"]},
                                       "mutationId": "m-same"}))["updateOrder"]
    assert (same["op"], same["version"], same["changedFields"], same["eventIds"]) == (
        "UPDATED", 1, [], [])
    assert same["document"] == created["document"]  # updatedAt included: nothing moved
    assert await row_counts(database_url) == plus(counts, mutations=1)  # only the id, for replays
    again = (await client.data(UPDATE, {"id": "o1", "patch": {"note": "rush", "items": ANN["items"]},
                                        "mutationId": "m-same"}))["updateOrder"]
    assert again == {**same, "replayed": True}
    changed = (await client.data(UPDATE, {"id": "o1", "patch": {"note": "calm"}}))["updateOrder"]
    assert (changed["version"], changed["changedFields"]) == (2, ["note"])


# ---- idempotency --------------------------------------------------------------------------


async def test_same_mutation_id_replays(client: GraphQLClient, database_url: str) -> None:
    first = await create(client, mutationId="m-create")
    counts = await row_counts(database_url)
    assert counts == {"statesync_documents": 1, "statesync_changes": 1, "statesync_outbox": 1,
                      "statesync_mutations": 1}
    second = await create(client, mutationId="m-create")
    assert first["replayed"] is False and second["replayed"] is True
    assert second == {**first, "replayed": True}
    assert await row_counts(database_url) == counts
    (change,) = await fetch(database_url, "SELECT mutation_id FROM statesync_changes")
    assert change["mutation_id"] == "m-create"

    patch = {"id": first["id"], "patch": {"note": "once"}, "mutationId": "m-update"}
    updated = (await client.data(UPDATE, patch))["updateOrder"]
    replayed = (await client.data(UPDATE, patch))["updateOrder"]
    assert updated["version"] == 2 and replayed == {**updated, "replayed": True}
    assert (await current(client, first["id"]))["version"] == 2  # type: ignore[index]
    assert await row_counts(database_url) == plus(counts, changes=1, outbox=1, mutations=1)


async def test_concurrent_duplicates_commit_once(client: GraphQLClient, database_url: str) -> None:
    results = await asyncio.gather(*(create(client, mutationId="m-race") for _ in range(10)))
    assert sorted(r["replayed"] for r in results) == [False] + [True] * 9
    assert len({r["id"] for r in results}) == 1
    assert len({tuple(r["eventIds"]) for r in results}) == 1
    assert all(r["version"] == 1 for r in results)
    assert await row_counts(database_url) == dict.fromkeys(STATESYNC_TABLES, 1)


async def test_mutation_id_reused_with_other_arguments(
        client: GraphQLClient, database_url: str) -> None:
    first = await create(client, id="o1", mutationId="m1")
    counts = await row_counts(database_url)
    reuses: list[tuple[str, dict[str, Any]]] = [
        (CREATE, {"input": {**ANN, "customer": "bob"}, "id": "o1", "mutationId": "m1"}),
        (CREATE, {"input": ANN, "id": "o2", "mutationId": "m1"}),
        (CREATE, {"input": ANN, "mutationId": "m1"}),
        (UPDATE, {"id": "o1", "patch": {"note": "x"}, "mutationId": "m1"}),
        (DELETE, {"id": "o1", "mutationId": "m1"}),
    ]
    for query, variables in reuses:
        error = await client.error(query, variables)
        assert error["extensions"]["code"] == "MUTATION_ID_REUSED", error
        assert error["extensions"]["mutationId"] == "m1"
        assert await row_counts(database_url) == counts
    assert await current(client, "o1") == first["document"]
    assert await current(client, "o2") is None


async def test_failed_mutation_records_nothing_so_a_retry_runs(
        client: GraphQLClient, database_url: str) -> None:
    await create(client, id="o1")
    await client.data(UPDATE, {"id": "o1", "patch": {"note": "v2"}})
    counts = await row_counts(database_url)
    stale = {"id": "o1", "patch": {"note": "mine"}, "expectedVersion": 1, "mutationId": "m-retry"}
    error = await client.error(UPDATE, stale)
    assert error["extensions"]["code"] == "CONFLICT"
    assert await row_counts(database_url) == counts  # no mutation-id record either
    # the same failing request again fails again (nothing was stored to replay)
    assert (await client.error(UPDATE, stale))["extensions"]["code"] == "CONFLICT"

    fixed = {**stale, "expectedVersion": 2}
    commit = (await client.data(UPDATE, fixed))["updateOrder"]
    assert commit["replayed"] is False and commit["version"] == 3
    assert commit["document"]["note"] == "mine"
    assert await row_counts(database_url) == plus(counts, changes=1, outbox=1, mutations=1)
    again = (await client.data(UPDATE, fixed))["updateOrder"]
    assert again == {**commit, "replayed": True}

    # the same holds for other failures: NOT_FOUND, then a create under the same id
    assert (await client.error(DELETE, {"id": "o2", "mutationId": "m-later"})
            )["extensions"]["code"] == "NOT_FOUND"
    await create(client, id="o2")
    deleted = (await client.data(DELETE, {"id": "o2", "mutationId": "m-later"}))["deleteOrder"]
    assert deleted["replayed"] is False and deleted["op"] == "DELETED"
