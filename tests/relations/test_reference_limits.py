"""What references must not let anyone do: stall or crash a delete (deadlocks, cascades
thousands deep or wide), name documents in errors, fail a batch with a mistyped stored
value, or send a document's own change twice."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import RunningServer
from tests.relations.test_references import create, database, documents_of
from tests.support import GraphQLClient, Subscriptions


async def tasks_in_a_chain(api: RunningServer, depth: int) -> None:
    """t0 <- t1 <- ... <- t{depth}, written straight to the table."""
    async with database(api) as connection:
        await connection.execute(
            "INSERT INTO statesync_documents (model, id, version, data, created_at, updated_at) "
            "SELECT 'Task', 't' || n, 1, jsonb_build_object('title', 'task', 'parent', "
            "CASE WHEN n = 0 THEN NULL ELSE 't' || (n - 1) END), now(), now() "
            "FROM generate_series(0, $1::int) AS n", depth)


async def live_tasks(api: RunningServer) -> int:
    return sum(not d["deleted"] for d in (await documents_of(api, "Task")).values())


async def test_a_cascade_of_any_depth_runs_within_one_budget(api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    await tasks_in_a_chain(api, 1200)  # deeper than Python would recurse
    error = await client.error('mutation { deleteTask(id: "t0") { id } }')
    assert error["extensions"]["code"] == "REFERENCED"
    assert error["extensions"]["limit"] == 1000
    assert await live_tasks(api) == 1201  # nothing deleted
    # Under the budget, all the way down, each with its change.
    await client.data('mutation { deleteTask(id: "t600") { id } }')
    assert await live_tasks(api) == 600
    async with database(api) as connection:
        deleted = await connection.fetchval("SELECT count(*) FROM statesync_changes WHERE "
                                            "model = 'Task' AND op = 'DELETED'")
    assert deleted == 601


async def test_a_refusal_names_only_the_document_deleted(api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    await tasks_in_a_chain(api, 3)
    await create(client, "Pin", "pin", {"task": "t3"})
    error = await client.error('mutation { deleteTask(id: "t0") { id } }')
    assert error["extensions"]["code"] == "REFERENCED"
    assert error["extensions"]["referredBy"] == "Pin.task"
    assert "t0" in error["message"] and "t3" not in error["message"]
    assert await live_tasks(api) == 4


async def test_deletes_of_documents_that_refer_to_each_other_do_not_fail(api: RunningServer
                                                                        ) -> None:
    client = GraphQLClient(api.base_url)
    for n in range(8):
        await create(client, "Supplier", f"s{n}", {"name": "S"})
        await create(client, "Part", f"p{n}", {"name": "P", "priceCents": 1, "supplier": f"s{n}"})
        await client.data('mutation($id: ID!, $p: String) { updateSupplier(id: $id, patch: '
                          '{favorite: $p}) { version } }', {"id": f"s{n}", "p": f"p{n}"})

    async def delete(model: str, doc_id: str) -> dict[str, Any]:
        return await client.raw(f'mutation($id: ID!) {{ delete{model}(id: $id) {{ id }} }}',
                                {"id": doc_id})

    answers = await asyncio.gather(*(delete(model, f"{letter}{n}") for n in range(8)
                                     for model, letter in (("Supplier", "s"), ("Part", "p"))))
    assert all("errors" not in a for a in answers), [a for a in answers if "errors" in a]
    assert not any(not d["deleted"] for d in (await documents_of(api, "Part")).values())
    assert not any(not d["deleted"] for d in (await documents_of(api, "Supplier")).values())


async def test_a_mistyped_stored_reference_names_nothing(api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    await create(client, "Supplier", "acme", {"name": "Acme"})
    async with database(api) as connection:
        for n, supplier in enumerate(["123", '["acme"]', '{"id": "acme"}', '"acme"']):
            await connection.execute(
                "INSERT INTO statesync_documents (model, id, version, data, created_at, "
                "updated_at) VALUES ('Part', $1, 1, jsonb_build_object('name', 'P', "
                "'price_cents', 1, 'supplier', $2::jsonb), now(), now())", f"m{n}", supplier)
        await connection.execute(
            "INSERT INTO statesync_documents (model, id, version, data, created_at, updated_at) "
            "VALUES ('Assembly', 'odd', 1, '{\"title\": \"odd\", \"lines\": [], "
            "\"labels\": \"acme\"}', now(), now())")
    data = await client.data("query { parts { nodes { id supplier { name } } } }")
    assert [n["supplier"] for n in data["parts"]["nodes"]] == [None, None, None,
                                                               {"name": "Acme"}]
    odd = await client.data('query { assembly(id: "odd") { labels { name } } }')
    assert odd["assembly"]["labels"] == []


async def test_a_document_that_refers_to_itself_gets_its_change_once(api: RunningServer
                                                                    ) -> None:
    client = GraphQLClient(api.base_url)
    await create(client, "Task", "me", {"title": "a"})
    await client.data('mutation { updateTask(id: "me", patch: {parent: "me"}) { version } }')
    async with Subscriptions.connect(api.ws_url) as ws:
        many = await ws.subscribe("subscription { tasks { op id version via { id } "
                                  "document { title parent { title } } documents { id } } }")
        assert (await ws.next(many))["op"] == "SNAPSHOT"
        await client.data('mutation { updateTask(id: "me", patch: {title: "b"}) { version } }')
        change = await ws.next(many)
        await create(client, "Task", "other", {"title": "c"})
        after = await ws.next(many)
    assert (change["op"], change["version"], change["via"]) == ("UPDATED", 3, None)
    assert change["document"] == {"title": "b", "parent": {"title": "b"}}
    assert after["id"] == "other"  # and nothing between them


async def test_a_widely_referenced_document_reaches_a_filtered_follower(api: RunningServer
                                                                       ) -> None:
    """1,001 assemblies refer to one label; a collection that shows one of them hears of
    the label's change through that one, without the hub reading (or resyncing over) the
    thousand it does not show."""
    client = GraphQLClient(api.base_url)
    await create(client, "Label", "red", {"name": "red"})
    async with database(api) as connection:
        await connection.execute(
            "INSERT INTO statesync_documents (model, id, version, data, created_at, updated_at) "
            "SELECT 'Assembly', 'a' || n, 1, jsonb_build_object('title', CASE WHEN n = 0 "
            "THEN 'mine' ELSE 'other' END, 'lines', '[]'::jsonb, 'labels', '[\"red\"]'::jsonb),"
            " now(), now() FROM generate_series(0, 1000) AS n")
    async with Subscriptions.connect(api.ws_url) as ws:
        mine = await ws.subscribe('subscription { assemblies(where: {title: {eq: "mine"}}) { op '
                                  'id via { id } document { labels { name } } documents { id } } }')
        assert len((await ws.next(mine))["documents"]) == 1
        await client.data('mutation { updateLabel(id: "red", patch: {name: "crimson"}) '
                          '{ version } }')
        seen = await ws.next(mine)
    assert (seen["op"], seen["id"], seen["via"]) == ("UPDATED", "a0", {"id": "red"})
    assert seen["document"]["labels"] == [{"name": "crimson"}]


async def test_a_reference_id_is_an_id(api: RunningServer) -> None:
    """Empty, over-long and NUL-bearing ids are refused before any lookup, and the answer
    does not echo a huge id back in full."""
    client = GraphQLClient(api.base_url)
    huge = "x" * 200_000
    for bad in ("", "x" * 600, "a\x00b", huge):
        body = await client.raw('mutation($s: String) { createPart(input: {name: "P", '
                                'priceCents: 1, supplier: $s}) { id } }', {"s": bad})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", (bad[:20], body)
        assert len(str(body)) < 4_000
    assert await documents_of(api, "Part") == {}
