"""References between models over a real server: reads through them in batches, what a
write may refer to, what deleting a referenced document does, and subscriptions that stay
live through them (schema/workshop.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa

from statesync.config import psycopg_url
from tests.conftest import RunningServer
from tests.support import GraphQLClient, Subscriptions, row_counts

ASSEMBLY = ("id version title labelIds labels { name } "
            "lines { qty partId part { name priceCents supplier { name } } }")


async def create(client: GraphQLClient, model: str, doc_id: str, fields: dict[str, Any]
                 ) -> dict[str, Any]:
    data = await client.data(f"mutation($i: {model}Input!, $id: ID) {{ create{model}(input: $i, "
                             "id: $id) { version } }", {"i": fields, "id": doc_id})
    return next(iter(data.values()))


async def workshop(client: GraphQLClient) -> None:
    await create(client, "Supplier", "acme", {"name": "Acme"})
    await create(client, "Part", "bolt", {"name": "Bolt", "priceCents": 10, "supplier": "acme"})
    await create(client, "Part", "nut", {"name": "Nut", "priceCents": 5})
    await create(client, "Label", "red", {"name": "red"})
    await create(client, "Label", "big", {"name": "big"})
    await create(client, "Assembly", "a1", {"title": "Frame", "labels": ["red", "big"], "lines": [
        {"part": "bolt", "qty": 4}, {"part": "nut", "qty": 4}]})


@contextlib.asynccontextmanager
async def database(api: RunningServer) -> AsyncIterator[asyncpg.Connection]:
    """The test's own database, as the server under test uses it."""
    connection = await asyncpg.connect(api.settings.database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def documents_of(api: RunningServer, model: str) -> dict[str, dict[str, Any]]:
    async with database(api) as connection:
        rows = await connection.fetch("SELECT id, data, deleted FROM statesync_documents "
                                      "WHERE model = $1", model)
    return {r["id"]: {**orjson.loads(r["data"]), "deleted": r["deleted"]} for r in rows}


@contextlib.contextmanager
def document_reads(api: RunningServer) -> Iterator[list[str]]:
    """The SELECTs of statesync_documents the API runs meanwhile."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "statesync_documents" in statement:
            statements.append(statement)

    engine = api.runtime.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)


async def test_a_query_reads_through_references(api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    await workshop(client)
    data = await client.data(f"query {{ assembly(id: \"a1\") {{ {ASSEMBLY} }} }}")
    assembly = data["assembly"]
    assert assembly["labelIds"] == ["red", "big"]
    assert [label["name"] for label in assembly["labels"]] == ["red", "big"]
    assert assembly["lines"] == [
        {"qty": 4, "partId": "bolt",
         "part": {"name": "Bolt", "priceCents": 10, "supplier": {"name": "Acme"}}},
        {"qty": 4, "partId": "nut", "part": {"name": "Nut", "priceCents": 5, "supplier": None}},
    ]


async def test_references_in_circles_resolve_both_ways(api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    await workshop(client)
    await client.data('mutation { updateSupplier(id: "acme", patch: {favorite: "bolt"}) { version } }')
    data = await client.data('query { part(id: "bolt") { supplier { favorite { supplier { '
                             'favoriteId name } } } } }')
    assert data["part"]["supplier"]["favorite"]["supplier"] == {"favoriteId": "bolt",
                                                                "name": "Acme"}


async def test_a_page_resolves_its_references_in_one_read_per_model(api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    await workshop(client)
    for n in range(30):
        await create(client, "Assembly", f"b{n:02}", {"title": f"B{n}", "labels": ["red"], "lines": [
            {"part": "bolt", "qty": n}, {"part": "nut", "qty": 1}]})
    with document_reads(api) as reads:
        data = await client.data(f"query {{ assemblies(first: 40, where: {{title: {{beginsWith: "
                                 f"\"B\"}}}}) {{ nodes {{ {ASSEMBLY} }} }} }}")
    nodes = data["assemblies"]["nodes"]
    assert len(nodes) == 30
    assert all(n["lines"][0]["part"]["supplier"] == {"name": "Acme"} for n in nodes)
    assert all(n["labels"] == [{"name": "red"}] for n in nodes)
    # The page, then one batch each for its labels, its parts and the parts' suppliers:
    # 30 documents with 2 lines each would be 90 more reads one by one.
    assert len(reads) == 4, reads


async def test_a_write_may_refer_only_to_live_documents(api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    await workshop(client)
    before = await row_counts(api.settings.database_url)
    error = await client.error('mutation { createAssembly(input: {title: "X", lines: '
                               '[{part: "bolt"}, {part: "ghost"}]}) { id } }')
    assert error["extensions"]["code"] == "REFERENCE_NOT_FOUND"
    assert error["extensions"]["ids"] == ["ghost"]
    assert error["extensions"]["model"] == "Part"
    error = await client.error('mutation { updatePart(id: "nut", patch: {supplier: "nobody"}) '
                               '{ id } }')
    assert error["extensions"]["code"] == "REFERENCE_NOT_FOUND"
    # A reference to a document of another model with that id is no reference either.
    error = await client.error('mutation { updateAssembly(id: "a1", patch: {labels: ["bolt"]}) '
                               '{ id } }')
    assert error["extensions"]["code"] == "REFERENCE_NOT_FOUND"
    assert await row_counts(api.settings.database_url) == before
    # Unchanged references are not checked again, and may be kept as they are.
    await client.data('mutation { updateAssembly(id: "a1", patch: {title: "Frame 2"}) '
                      '{ version } }')


async def test_restrict_refuses_to_delete_what_is_referred_to(api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    await workshop(client)
    before = await row_counts(api.settings.database_url)
    error = await client.error('mutation { deletePart(id: "nut") { id } }')
    assert error["extensions"]["code"] == "REFERENCED"
    assert error["extensions"]["referredBy"] == "Assembly.lines[].part"
    assert await row_counts(api.settings.database_url) == before
    await client.data('mutation { updateAssembly(id: "a1", patch: {lines: [{part: "bolt"}]}) '
                      '{ version } }')
    await client.data('mutation { deletePart(id: "nut") { id } }')
    assert (await documents_of(api, "Part"))["nut"]["deleted"] is True


async def test_set_null_clears_the_reference_and_says_so(api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    await workshop(client)
    async with Subscriptions.connect(api.ws_url) as ws:
        parts = await ws.subscribe("subscription { parts { op id version changedFields "
                                   "document { supplierId } documents { id } } }")
        assert (await ws.next(parts))["op"] == "SNAPSHOT"
        await client.data('mutation { deleteSupplier(id: "acme") { id } }')
        change = await ws.next(parts)
    assert (change["op"], change["id"], change["version"]) == ("UPDATED", "bolt", 2)
    assert change["changedFields"] == ["supplier"]
    assert change["document"] == {"supplierId": None}
    # A list of ids loses the deleted one.
    await client.data('mutation { deleteLabel(id: "red") { id } }')
    data = await client.data('query { assembly(id: "a1") { labelIds version } }')
    assert data["assembly"] == {"labelIds": ["big"], "version": 2}


async def test_cascade_deletes_the_referring_documents_with_their_events(api: RunningServer
                                                                        ) -> None:
    client = GraphQLClient(api.base_url)
    await workshop(client)
    await create(client, "Assembly", "a2", {"title": "Other"})
    for n, assembly in enumerate(["a1", "a1", "a2"]):
        await create(client, "Note", f"n{n}", {"text": "check", "assembly": assembly})
    await client.data('mutation { deleteAssembly(id: "a1") { id } }')
    notes = await documents_of(api, "Note")
    assert {i: n["deleted"] for i, n in notes.items()} == {"n0": True, "n1": True, "n2": False}
    engine = sa.create_engine(psycopg_url(api.settings.database_url))
    try:
        with engine.connect() as connection:
            events = connection.execute(sa.text(
                "SELECT type, doc_id FROM statesync_outbox WHERE type LIKE '%.deleted' "
                "ORDER BY seq")).all()
    finally:
        engine.dispose()
    assert [tuple(e) for e in events] == [("Assembly.deleted", "a1"), ("Note.deleted", "n0"),
                                          ("Note.deleted", "n1")]


async def test_a_delete_racing_a_reference_to_it_never_both_succeed(api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    await workshop(client)
    await client.data('mutation { updateAssembly(id: "a1", patch: {lines: []}) { version } }')
    for n in range(8):
        await create(client, "Part", f"p{n}", {"name": "P", "priceCents": 1})

    async def refer(n: int) -> dict[str, Any]:
        return await client.raw('mutation($id: ID!, $p: String!) { createAssembly(id: $id, input: '
                                '{title: "R", lines: [{part: $p}]}) { id } }',
                                {"id": f"r{n}", "p": f"p{n}"})

    async def delete(n: int) -> dict[str, Any]:
        return await client.raw('mutation($p: ID!) { deletePart(id: $p) { id } }', {"p": f"p{n}"})

    answers = await asyncio.gather(*(call(n) for n in range(8) for call in (refer, delete)))
    parts = await documents_of(api, "Part")
    assemblies = await documents_of(api, "Assembly")
    for n in range(8):
        referred, deleted = answers[2 * n], answers[2 * n + 1]
        codes = {a["errors"][0]["extensions"]["code"] for a in (referred, deleted) if "errors" in a}
        assert len(codes) == 1, (referred, deleted)  # exactly one of the two lost
        assert codes <= {"REFERENCE_NOT_FOUND", "REFERENCED"}
        assert parts[f"p{n}"]["deleted"] is ("errors" not in deleted)
        assert (f"r{n}" in assemblies) is ("errors" not in referred)


SUBSCRIBE_ASSEMBLIES = ("subscription($since: String) { assemblies(since: $since) { op id version "
                        "cursor via { model id } document { title lines { part { priceCents } } } "
                        "documents { id } } }")


async def test_a_subscription_through_a_reference_gets_the_referenced_change(api: RunningServer
                                                                            ) -> None:
    client = GraphQLClient(api.base_url)
    await workshop(client)
    await create(client, "Assembly", "a2", {"title": "Nuts only", "lines": [{"part": "nut"}]})
    async with Subscriptions.connect(api.ws_url) as ws:
        through = await ws.subscribe(SUBSCRIBE_ASSEMBLIES)
        ids_only = await ws.subscribe("subscription { assemblies { op id document { lines { "
                                      "partId } } documents { id } } }")
        one = await ws.subscribe('subscription { assembly(id: "a1") { op via { id } document { '
                                 "lines { part { name } } } } }")
        for op_id in (through, ids_only, one):
            assert (await ws.next(op_id))["op"] == "SNAPSHOT"
        await client.data('mutation { updatePart(id: "bolt", patch: {priceCents: 12}) '
                          '{ version } }')
        seen = await ws.next(through)
        assert seen["op"] == "UPDATED" and seen["id"] == "a1" and seen["version"] == 1
        assert seen["via"] == {"model": "Part", "id": "bolt"}
        assert seen["document"]["lines"][0]["part"]["priceCents"] == 12
        assert (await ws.next(one))["via"] == {"id": "bolt"}
        # The nut is in both assemblies: each is sent, once.
        await client.data('mutation { updatePart(id: "nut", patch: {name: "Hex nut"}) '
                          '{ version } }')
        both = [await ws.next(through), await ws.next(through)]
        assert sorted(m["id"] for m in both) == ["a1", "a2"]
        # The subscription showing only ids was sent none of it: its next frame is the
        # next change of an assembly.
        await client.data('mutation { updateAssembly(id: "a2", patch: {title: "Nuts"}) '
                          '{ version } }')
        assert (await ws.next(ids_only))["id"] == "a2"
        assert ws.pending(ids_only) == 0
        last = await ws.next(through)
        assert last["via"] is None, (last, both)


async def test_a_resumed_subscription_gets_the_referenced_changes_it_missed(api: RunningServer
                                                                           ) -> None:
    client = GraphQLClient(api.base_url)
    await workshop(client)
    async with Subscriptions.connect(api.ws_url) as ws:
        first = await ws.subscribe(SUBSCRIBE_ASSEMBLIES)
        cursor = (await ws.next(first))["cursor"]
    await client.data('mutation { updatePart(id: "bolt", patch: {priceCents: 11}) { version } }')
    await client.data('mutation { updatePart(id: "bolt", patch: {priceCents: 13}) { version } }')
    await client.data('mutation { updatePart(id: "nut", patch: {priceCents: 6}) { version } }')
    async with Subscriptions.connect(api.ws_url) as ws:
        again = await ws.subscribe(SUBSCRIBE_ASSEMBLIES, {"since": cursor})
        # Once per referenced document (its last change), showing it as it is now.
        replayed = [await ws.next(again), await ws.next(again)]
        assert [m["via"]["id"] for m in replayed] == ["bolt", "nut"]
        assert all(m["id"] == "a1" and m["op"] == "UPDATED" for m in replayed)
        assert replayed[0]["document"]["lines"][0]["part"]["priceCents"] == 13
        await client.data('mutation { updateAssembly(id: "a1", patch: {title: "F"}) { version } }')
        live = await ws.next(again)
        assert live["via"] is None and live["document"]["title"] == "F"
        assert int(live["cursor"]) > int(replayed[-1]["cursor"])


async def ids(client: GraphQLClient, query: str) -> list[str]:
    data = await client.data(query)
    return [node["id"] for node in next(iter(data.values()))["nodes"]]


async def test_a_query_filters_through_a_reference_one_level_deep(api: RunningServer) -> None:
    client = GraphQLClient(api.base_url)
    await workshop(client)
    await create(client, "Supplier", "zeta", {"name": "Zeta"})
    await create(client, "Part", "gear", {"name": "Gear", "priceCents": 90, "supplier": "zeta"})
    assert await ids(client, 'query { parts(where: {supplier: {name: {eq: "Acme"}}}) '
                             '{ nodes { id } } }') == ["bolt"]
    assert await ids(client, 'query { parts(where: {supplierId: {eq: "zeta"}}) '
                             '{ nodes { id } } }') == ["gear"]
    # Two-valued like every filter: no supplier is simply "not Acme".
    assert await ids(client, 'query { parts(where: {not: {supplier: {name: {eq: "Acme"}}}}) '
                             '{ nodes { id } } }') == ["gear", "nut"]
    assert await ids(client, 'query { parts(where: {or: [{supplier: {name: {beginsWith: "Z"}}}, '
                             '{priceCents: {lt: 6}}]}) { nodes { id } } }') == ["gear", "nut"]
    await create(client, "Note", "n1", {"text": "tight", "assembly": "a1"})
    assert await ids(client, 'query { notes(where: {assembly: {title: {eq: "Frame"}}}) '
                             '{ nodes { id } } }') == ["n1"]
    error = await client.error('query { parts(where: {supplier: {favorite: {name: {eq: "x"}}}}) '
                               '{ nodes { id } } }')
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    async with Subscriptions.connect(api.ws_url) as ws:
        op = await ws.subscribe('subscription { parts(where: {supplier: {name: {eq: "Acme"}}}) '
                                '{ op } }')
        refused = await ws.message(op)
    assert refused["type"] == "error"
    assert refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_batch_of_more_ids_than_a_statement_takes_parameters(api: RunningServer) -> None:
    # Written straight to the table: more labels than any one commit could name.
    async with database(api) as connection:
        await connection.execute(
            "INSERT INTO statesync_documents (model, id, version, data, created_at, updated_at) "
            "SELECT 'Label', 'l' || n, 1, jsonb_build_object('name', 'label ' || n), now(), now() "
            "FROM generate_series(1, 33000) AS n")
        await connection.execute(
            "INSERT INTO statesync_documents (model, id, version, data, created_at, updated_at) "
            "SELECT 'Assembly', 'many', 1, jsonb_build_object('title', 'many', 'lines', '[]'::jsonb,"
            " 'labels', jsonb_agg('l' || n)), now(), now() FROM generate_series(1, 33000) AS n")
    client = GraphQLClient(api.base_url)
    data = await client.data('query { assembly(id: "many") { labels { name } } }')
    labels = data["assembly"]["labels"]
    assert len(labels) == 33000 and labels[-1] == {"name": "label 33000"}


async def test_the_python_client_sees_what_came_through_a_reference(api: RunningServer) -> None:
    from statesync.client import Client

    client = GraphQLClient(api.base_url)
    await workshop(client)
    async with Client(api.base_url) as backend:
        changes = backend.watch("Assembly", id="a1", fields="lines { part { priceCents } }")
        snapshot = await asyncio.wait_for(anext(changes), 20)
        assert snapshot.op == "SNAPSHOT" and snapshot.via is None
        await backend.update("Part", "nut", {"priceCents": 7})
        change = await asyncio.wait_for(anext(changes), 20)
        await changes.aclose()
    assert (change.op, change.version, change.via) == ("UPDATED", 1, {"model": "Part", "id": "nut"})
    assert change.document is not None
    assert change.document["lines"][1]["part"] == {"priceCents": 7}
