"""Every malformed HTTP request gets a coded JSON answer, writes nothing, and leaves the
server serving (and, at the end of the module, with nothing in its log)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from tests.hostile.conftest import Api

SEEDED = 'mutation { createGauge(id: "g1", input: {name: "seed"}) { version } }'
CREATE = "mutation($input: GaugeInput!, $id: ID) { createGauge(id: $id, input: $input) { id } }"
PAGE = ("query($after: String, $order: [GaugeOrder!]) { "
        "gauges(after: $after, orderBy: $order) { nodes { id } } }")


@pytest.fixture(scope="module", autouse=True)
def seeded(api: Api) -> None:
    api.data(SEEDED)


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def token(values: list[Any]) -> str:
    """A page token as a client could forge one (the server's encoding, any content)."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).rstrip(b"=").decode()


def deep_json(levels: int) -> bytes:
    return b'{"query": "{ gauge(id: \\"g1\\") { id } }", "variables": ' + b"[" * levels + b"]" * levels + b"}"


# (what is wrong, body, extra headers, HTTP status, code)
BODIES: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("a number", b"42", {}, 400, "BAD_REQUEST"),
    ("a string", b'"query"', {}, 400, "BAD_REQUEST"),
    ("null", b"null", {}, 400, "BAD_REQUEST"),
    ("an array (batching)", b'[{"query": "{ __typename }"}]', {}, 400, "BAD_REQUEST"),
    ("invalid UTF-8", b'{"query": "{ gauge(id: \\"\xff\xfe\\") { id } }"}', {}, 400, "BAD_REQUEST"),
    ("NaN", b'{"query": "{ __typename }", "variables": {"x": NaN}}', {}, 400, "BAD_REQUEST"),
    ("nested 2,000 deep", deep_json(2000), {}, 400, "BAD_REQUEST"),
    # Well-formed, but it cannot run: application/json answers it with 200, as the spec says.
    ("an operation name that is not there", b'{"query": "query A { __typename }", "operationName": "B"}',
     {}, 200, "OPERATION_RESOLUTION_FAILURE"),
    ("empty", b"", {}, 400, "BAD_REQUEST"),
    ("truncated", b'{"query": "{ __typename }"', {}, 400, "BAD_REQUEST"),
    ("query is a number", b'{"query": 5}', {}, 400, "BAD_REQUEST"),
    ("query is blank", b'{"query": "   "}', {}, 400, "BAD_REQUEST"),
    ("no query", b'{"variables": {}}', {}, 400, "BAD_REQUEST"),
    ("operationName is a number", b'{"query": "{ __typename }", "operationName": 1}', {}, 400,
     "BAD_REQUEST"),
    ("form content type", b"query=%7B__typename%7D", {"content-type": "application/x-www-form-urlencoded"},
     400, "BAD_REQUEST"),
    ("variables are a list", b'{"query": "{ __typename }", "variables": [1]}', {}, 400, "BAD_REQUEST"),
    ("extensions are a string", b'{"query": "{ __typename }", "extensions": "x"}', {}, 400,
     "BAD_REQUEST"),
    ("variables nested past max_input_depth",
     orjson.dumps({"query": CREATE, "variables": {"input": {"name": "x", "meta": nested(40)}}}),
     {}, 200, "BAD_USER_INPUT"),
]


@pytest.mark.parametrize(("what", "body", "headers", "status", "code"), BODIES,
                         ids=[case[0] for case in BODIES])
def test_malformed_bodies(api: Api, what: str, body: bytes, headers: dict[str, str], status: int,
                          code: str) -> None:
    before = api.state()
    response = api.post(body, **headers)
    assert response.status_code == status, (what, response.text)
    assert response.headers["content-type"].startswith("application/json"), what
    errors = response.json()["errors"]
    assert [e["extensions"]["code"] for e in errors] == [code], (what, errors)
    assert api.state() == before, what
    assert api.healthy()


# (what is wrong, query, variables, code)
DOCUMENTS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("several operations, no name", "query A { __typename } mutation B { emitEvent(type: \"X.y\") "
     "{ eventId } }", None, "OPERATION_RESOLUTION_FAILURE"),
    ("only fragments", "fragment F on Query { __typename }", None, "OPERATION_RESOLUTION_FAILURE"),
    ("NUL in a literal", 'mutation { createGauge(input: {name: "a\\u0000b"}) { id } }', None,
     "BAD_USER_INPUT"),
    ("NUL in a variable", CREATE, {"input": {"name": "a\x00b"}}, "BAD_USER_INPUT"),
    ("NUL in a JSON key", CREATE, {"input": {"name": "a", "meta": {"k\x00": 1}}}, "BAD_USER_INPUT"),
    ("NUL in an id", CREATE, {"input": {"name": "a"}, "id": "g\x00"}, "BAD_USER_INPUT"),
    ("NUL in a filter", '{ gauges(where: {name: {eq: "\\u0000"}}) { nodes { id } } }', None,
     "BAD_USER_INPUT"),
    ("NUL in a mutation id", 'mutation { emitEvent(type: "A.b", mutationId: "m\\u0000") { eventId } }',
     None, "BAD_USER_INPUT"),
    ("an empty id", CREATE, {"input": {"name": "a"}, "id": ""}, "BAD_USER_INPUT"),
    ("an id over max_id_length", CREATE, {"input": {"name": "a"}, "id": "g" * 5000},
     "BAD_USER_INPUT"),
    ("a mutation id over max_id_length",
     'mutation($m: ID) { emitEvent(type: "A.b", mutationId: $m) { eventId } }', {"m": "m" * 5000},
     "BAD_USER_INPUT"),
    ("a read id over max_id_length", "query($id: ID!) { gauge(id: $id) { id } }", {"id": "g" * 5000},
     "BAD_USER_INPUT"),
    ("an integer beyond 64 bits in JSON", CREATE, {"input": {"name": "a", "meta": {"n": 2**63}}},
     "BAD_USER_INPUT"),
    ("expiresAt at the end of time", CREATE,
     {"input": {"name": "a", "expiresAt": "9999-12-31T23:59:59.999999Z"}}, "BAD_USER_INPUT"),
    ("an instant that overflows in UTC", CREATE,
     {"input": {"name": "a", "seenAt": "0001-01-01T00:00:00+05:00"}}, "BAD_USER_INPUT"),
    ("a datetime without an offset", CREATE, {"input": {"name": "a", "seenAt": "2030-01-01T00:00:00"}},
     "BAD_USER_INPUT"),
    ("a filter date that overflows",
     '{ gauges(where: {seenAt: {gt: "0001-01-01T00:00:00+05:00"}}) { nodes { id } } }', None,
     "BAD_USER_INPUT"),
    ("a forged page token", PAGE, {"after": token([{"t": 1}]), "order": []}, "INVALID_CURSOR"),
    ("a page token of garbage", PAGE, {"after": "!!!", "order": []}, "INVALID_CURSOR"),
    ("a page token with a NUL id", PAGE, {"after": token(["\x00"]), "order": []}, "INVALID_CURSOR"),
    ("a page token with an absurd decimal", PAGE,
     {"after": token([{"n": "1e999999"}, "a"]), "order": [{"field": "LEVEL"}]}, "INVALID_CURSOR"),
    ("a page token with a naive date", PAGE,
     {"after": token([{"t": "2030-01-01T00:00:00"}, "a"]), "order": [{"field": "SEEN_AT"}]},
     "INVALID_CURSOR"),
    ("a page token with a date that overflows", PAGE,
     {"after": token([{"t": "0001-01-01T00:00:00+05:00"}, "a"]), "order": [{"field": "SEEN_AT"}]},
     "INVALID_CURSOR"),
    ("a page token with the wrong type", PAGE,
     {"after": token(["text", "a"]), "order": [{"field": "LEVEL"}]}, "INVALID_CURSOR"),
    ("a subscription over HTTP", 'subscription { gauge(id: "g1") { op } }', None, "BAD_REQUEST"),
    ("a payload that is not an object", 'mutation { emitEvent(type: "A.b", payload: [1]) { eventId } }',
     None, "BAD_USER_INPUT"),
    ("a payload nested too deep", "mutation($p: JSON) { emitEvent(type: \"A.b\", payload: $p) { eventId } }",
     {"p": {"a": nested(40)}}, "BAD_USER_INPUT"),
    ("a filter with too many values", "query($ids: [ID!]) { gauges(where: {id: {in: $ids}}) "
     "{ nodes { id } } }", {"ids": [f"g{i}" for i in range(2_000)]}, "QUERY_TOO_COMPLEX:max_filter_values"),
    ("variables with too many values", "query($ids: [ID!]) { gauges(where: {id: {in: $ids}}) "
     "{ nodes { id } } }", {"ids": [f"g{i}" for i in range(40_000)]}, "QUERY_TOO_COMPLEX:max_input_values"),
]


@pytest.mark.parametrize(("what", "query", "variables", "code"), DOCUMENTS,
                         ids=[case[0] for case in DOCUMENTS])
def test_bad_documents_and_values(api: Api, what: str, query: str, variables: dict[str, Any] | None,
                                  code: str) -> None:
    before = api.state()
    body = api.graphql(query, variables)
    assert body.get("errors"), (what, body)
    code, _, limit = code.partition(":")
    assert [e["extensions"]["code"] for e in body["errors"]] == [code], (what, body)
    if limit:
        assert body["errors"][0]["extensions"]["limit"] == limit, body
    assert "Traceback" not in orjson.dumps(body).decode()
    assert api.state() == before, what
    assert api.healthy()


def test_the_named_operation_runs_and_only_that_one(api: Api) -> None:
    before = api.state()
    body = api.post({"query": 'query A { gauge(id: "g1") { name } } '
                              'mutation B { emitEvent(type: "X.y") { eventId } }',
                     "operationName": "A"}).json()
    assert body == {"data": {"gauge": {"name": "seed"}}}
    assert api.state() == before


def test_methods_and_get(api: Api) -> None:
    put = api.http.put("/graphql", content=b"{}")
    assert put.status_code == 405 and put.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    query = api.http.get("/graphql", params={"query": '{ gauge(id: "g1") { name } }'})
    assert query.json() == {"data": {"gauge": {"name": "seed"}}}
    before = api.state()
    mutation = api.http.get("/graphql", params={"query": 'mutation { emitEvent(type: "X.y") { eventId } }'})
    assert mutation.status_code == 405
    assert mutation.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    bad_variables = api.http.get("/graphql", params={"query": "{ __typename }", "variables": "{nope"})
    assert bad_variables.status_code == 400
    assert api.state() == before


def test_graphql_response_json_uses_status_codes(api: Api) -> None:
    accept = "application/graphql-response+json, application/json;q=0.9"
    parse = api.post({"query": "{"}, accept=accept)
    assert parse.status_code == 400
    assert parse.headers["content-type"].startswith("application/graphql-response+json")
    invalid = api.post({"query": "{ nope }"}, accept=accept)
    assert (invalid.status_code, invalid.json()["errors"][0]["extensions"]["code"]) == (
        400, "GRAPHQL_VALIDATION_FAILED")
    ok = api.post({"query": "{ __typename }"}, accept=accept)
    assert (ok.status_code, ok.json()) == (200, {"data": {"__typename": "Query"}})
    plain = api.post({"query": "{ nope }"})  # application/json: 200 for a well-formed request
    assert plain.status_code == 200
