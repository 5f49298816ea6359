"""Bad input is answered with a coded error and writes nothing.

Every case counts the rows of the write path's tables before and after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from tests.conftest import RunningServer
from tests.support import GraphQLClient, row_counts

CREATE_VARS = """mutation($input: OrderInput!) { createOrder(input: $input) { id } }"""
UPDATE_VARS = """mutation($id: ID!, $patch: OrderPatch!) { updateOrder(id: $id, patch: $patch) {
  version } }"""
ORDER = """query($id: ID!) { order(id: $id) { version customer note items { sku qty } } }"""

# (what is wrong, query, variables)
Case = tuple[str, str, dict[str, Any] | None]

PARSE_FAILURES: list[Case] = [
    ("unclosed selection", 'mutation { createOrder(input: {customer: "a", items: []}) { id ', None),
    ("unclosed string", 'mutation { createOrder(input: {customer: "a, items: []}) { id } }', None),
    ("not graphql", "DROP TABLE statesync_documents", None),
]

VALIDATION_FAILURES: list[Case] = [
    ("int for a string, inline", "mutation { createOrder(input: {customer: 5, items: []}) { id } }",
     None),
    ("int for a string, variable", CREATE_VARS, {"input": {"customer": 5, "items": []}}),
    ("string for an int, variable", CREATE_VARS,
     {"input": {"customer": "a", "items": [{"sku": "s", "qty": "two"}]}}),
    ("unknown enum value, inline",
     'mutation { createOrder(input: {customer: "a", items: [], status: LOST}) { id } }', None),
    ("unknown enum value, variable", CREATE_VARS,
     {"input": {"customer": "a", "items": [], "status": "LOST"}}),
    ("bad datetime, inline",
     'mutation { createOrder(input: {customer: "a", items: [], expiresAt: "soon"}) { id } }', None),
    ("bad datetime, variable", CREATE_VARS,
     {"input": {"customer": "a", "items": [], "expiresAt": "soon"}}),
    ("missing required field, inline", 'mutation { createOrder(input: {customer: "a"}) { id } }',
     None),
    ("missing required field, variable", CREATE_VARS, {"input": {"customer": "a"}}),
    ("null for a required list", CREATE_VARS, {"input": {"customer": "a", "items": None}}),
    ("missing required argument", "mutation { createOrder { id } }", None),
    ("missing variable", CREATE_VARS, None),
    ("unknown input field, inline",
     'mutation { createOrder(input: {customer: "a", items: [], colour: "red"}) { id } }', None),
    ("unknown input field, variable", CREATE_VARS,
     {"input": {"customer": "a", "items": [], "colour": "red"}}),
    ("unknown value field", CREATE_VARS,
     {"input": {"customer": "a", "items": [{"sku": "s", "qty": 1, "price": 3}]}}),
    ("unknown argument", 'mutation { createOrder(input: {customer: "a", items: []}, owner: "x") '
     "{ id } }", None),
    ("unknown model mutation", 'mutation { createCustomer(input: {name: "a"}) { id } }', None),
    ("unknown output field", 'mutation { createOrder(input: {customer: "a", items: []}) '
     "{ id colour } }", None),
    ("unknown model query", '{ customer(id: "a") { id } }', None),
    ("no selection on an object", 'mutation { createOrder(input: {customer: "a", items: []}) }',
     None),
    ("client may not write totalCents, inline",
     'mutation { createOrder(input: {customer: "a", items: [], totalCents: 5}) { id } }', None),
    ("client may not write totalCents, variable", CREATE_VARS,
     {"input": {"customer": "a", "items": [], "totalCents": 5}}),
    ("client may not patch rejectReason", UPDATE_VARS,
     {"id": "o1", "patch": {"rejectReason": "mine"}}),
    ("client may not patch version", UPDATE_VARS, {"id": "o1", "patch": {"version": 9}}),
]


async def seeded(client: GraphQLClient) -> dict[str, Any]:
    """One order, o1, at version 2; the target of the bad patches."""
    await client.data("""mutation { createOrder(id: "o1", input: {
        customer: "ann", items: [{sku: "A-100", qty: 1}], note: "first"}) { id } }""")
    await client.data("""mutation { updateOrder(id: "o1", patch: {note: "second"}) { id } }""")
    doc: dict[str, Any] = (await client.data(ORDER, {"id": "o1"}))["order"]
    assert doc["version"] == 2
    return doc


async def assert_rejected(client: GraphQLClient, database_url: str, before: dict[str, int],
                          doc: dict[str, Any], cases: list[Case], code: str) -> None:
    for what, query, variables in cases:
        body = await client.raw(query, variables)
        assert body.get("data") is None, (what, body)
        assert len(body.get("errors", [])) == 1, (what, body)
        assert body["errors"][0]["extensions"]["code"] == code, (what, body)
        assert await row_counts(database_url) == before, what
    assert (await client.data(ORDER, {"id": "o1"}))["order"] == doc


async def test_parse_failures(client: GraphQLClient, database_url: str) -> None:
    doc = await seeded(client)
    before = await row_counts(database_url)
    await assert_rejected(client, database_url, before, doc, PARSE_FAILURES, "GRAPHQL_PARSE_FAILED")


async def test_validation_failures(client: GraphQLClient, database_url: str) -> None:
    doc = await seeded(client)
    before = await row_counts(database_url)
    await assert_rejected(client, database_url, before, doc, VALIDATION_FAILURES,
                          "GRAPHQL_VALIDATION_FAILED")
    # the message says what was wrong, not "Unexpected error."
    error = await client.error(CREATE_VARS, {"input": {"customer": 5, "items": []}})
    assert "customer" in error["message"] and "String" in error["message"]


async def test_patch_nulling_a_required_field(client: GraphQLClient, database_url: str) -> None:
    doc = await seeded(client)
    before = await row_counts(database_url)
    for field in ("customer", "items", "status"):
        error = await client.error(UPDATE_VARS, {"id": "o1", "patch": {field: None}})
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert [p["field"] for p in error["extensions"]["problems"]] == [field]
        assert field in error["message"]
        assert error["path"] == ["updateOrder"]
    await client.data("""mutation { createProduct(id: "p1", input: {
        sku: "A", name: "a", priceCents: 1}) { id } }""")
    before_product = await row_counts(database_url)
    assert before_product["statesync_changes"] == before["statesync_changes"] + 1
    error = await client.error("""mutation { updateProduct(id: "p1", patch: {priceCents: null}) {
        version } }""")
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    # named as the client knows it, not by its Python name
    assert [p["field"] for p in error["extensions"]["problems"]] == ["priceCents"]
    assert "priceCents" in error["message"] and "price_cents" not in error["message"]
    assert await row_counts(database_url) == before_product
    assert (await client.data(ORDER, {"id": "o1"}))["order"] == doc


async def test_other_bad_user_input(client: GraphQLClient, database_url: str) -> None:
    doc = await seeded(client)
    before = await row_counts(database_url)
    for variables in ({"input": {"customer": "a", "items": [], "expiresAt": "2099-01-01T00:00:00"}},):
        error = await client.error(CREATE_VARS, variables)
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "expiresAt"}, error
    error = await client.error(UPDATE_VARS, {"id": "o1", "patch": {
        "expiresAt": "2099-01-01T00:00:00"}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    error = await client.error("""mutation { createOrder(id: "o1", input: {
        customer: "x", items: []}) { id } }""")
    assert error["extensions"] == {"code": "ALREADY_EXISTS", "id": "o1"}
    assert await row_counts(database_url) == before
    assert (await client.data(ORDER, {"id": "o1"}))["order"] == doc


async def test_oversized_document(server: RunningServer, client: GraphQLClient,
                                  database_url: str) -> None:
    doc = await seeded(client)
    before = await row_counts(database_url)
    limit = server.settings.max_document_bytes
    assert limit == 256 * 1024
    note = "x" * limit
    error = await client.error(CREATE_VARS, {"input": {"customer": "a", "items": [], "note": note}})
    assert error["extensions"]["code"] == "PAYLOAD_TOO_LARGE", error
    assert error["extensions"]["limit"] == limit and error["extensions"]["size"] > limit
    error = await client.error(UPDATE_VARS, {"id": "o1", "patch": {"note": note}})
    assert error["extensions"]["code"] == "PAYLOAD_TOO_LARGE", error
    # many small items add up too
    items = [{"sku": "s" * 100, "qty": 1}] * 3000
    error = await client.error(UPDATE_VARS, {"id": "o1", "patch": {"items": items}})
    assert error["extensions"]["code"] == "PAYLOAD_TOO_LARGE", error
    assert await row_counts(database_url) == before
    assert (await client.data(ORDER, {"id": "o1"}))["order"] == doc
    # just under the limit is fine
    fits = (await client.data(CREATE_VARS, {"input": {
        "customer": "a", "items": [], "note": "x" * (limit - 1000)}}))["createOrder"]
    assert fits["id"]


async def test_request_body_over_the_limit(server: RunningServer, client: GraphQLClient,
                                           database_url: str) -> None:
    doc = await seeded(client)
    before = await row_counts(database_url)
    limit = server.settings.max_request_bytes
    body = orjson.dumps({"query": CREATE_VARS, "variables": {
        "input": {"customer": "a", "items": [], "note": "x" * limit}}})
    assert len(body) > limit

    response = await client.http.post("/graphql", content=body,
                                      headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted as it arrives
        for start in range(0, len(body), 64 * 1024):
            yield body[start:start + 64 * 1024]

    response = await client.http.post("/graphql", content=chunks(),
                                      headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await row_counts(database_url) == before
    assert (await client.data(ORDER, {"id": "o1"}))["order"] == doc


async def test_unreadable_requests_write_nothing(client: GraphQLClient, database_url: str) -> None:
    doc = await seeded(client)
    before = await row_counts(database_url)
    for content in (b'{"query": ""}', b"{not json", b'{"variables": {}}'):
        response = await client.http.post("/graphql", content=content,
                                          headers={"content-type": "application/json"})
        assert response.status_code == 400, (content, response.text)
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert await row_counts(database_url) == before
    assert (await client.data(ORDER, {"id": "o1"}))["order"] == doc


async def test_a_request_id_is_sent_back_and_made_up_when_missing(server: RunningServer) -> None:
    import httpx

    body = {"query": "{ __typename }"}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        given = await http.post("/graphql", json=body, headers={"x-request-id": "trace-42"})
        made = await http.post("/graphql", json=body)
        hostile = await http.post("/graphql", json=body, headers={"x-request-id": "a b;" * 50})
    assert given.headers["x-request-id"] == "trace-42"
    assert len(made.headers["x-request-id"]) == 32
    assert len(hostile.headers["x-request-id"]) == 32  # replaced: never echoed into the logs
