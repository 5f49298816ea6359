"""Property: whatever JSON value a client sends into a free-JSON field, a float field or an
event payload, statesync either stores it so that it reads back equal (and the feed and
the event list keep working), or refuses it with a code and writes nothing; and which of
the two happens is exactly what :mod:`statesync.values` documents."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.conftest import Api

INT64 = (-(2**63), 2**63 - 1)
REFUSALS = {"BAD_USER_INPUT", "BAD_REQUEST"}

texts = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "x\udfffy", "é", "\u2028"])
numbers = (st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([1e20, -1e20, 1e308, 5e-324, 2**63, 2**63 - 1, -(2**63), 2**64, 2**70, -0.0]))
leaves = st.none() | st.booleans() | numbers | texts
shallow = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(texts, inner, max_size=3), max_leaves=12)


def nested(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


values = shallow | st.integers(40, 60).map(nested)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def storable(value: Any) -> bool:
    """The documented domain, written out independently of the server's code."""
    if depth(value) > 25:
        return False
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return INT64[0] <= value <= INT64[1]
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return all(storable(v) for v in value)
    return all(storable(k) and storable(v) for k, v in value.items())


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON: numbers by value as a double reads them (a float written as 6.4e16 is
    stored as the integer 64000000000000000: the same JSON number, another Python type)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b if isinstance(a, int) and isinstance(b, int) else float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return bool(a == b)


def exact_float(value: int) -> bool:
    try:
        return int(float(value)) == value
    except OverflowError:
        return False


def send(api: Api, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    # The standard library writes what orjson refuses to (NaN, lone surrogates, huge
    # integers), exactly as a careless or hostile client would put it on the wire.
    raw = json.dumps({"query": query, "variables": variables}, allow_nan=True).encode()
    response = api.post(raw)
    assert response.status_code in (200, 400), response.text
    body: dict[str, Any] = response.json()
    return body


def refused_or_stored(api: Api, value: Any, query: str, variables: dict[str, Any]
                      ) -> dict[str, Any] | None:
    before = api.state()
    body = send(api, query, variables)
    if storable(value):
        assert "errors" not in body, (value, body)
        data: dict[str, Any] = body["data"]
        return data
    assert body.get("errors"), (value, body)
    assert {e["extensions"]["code"] for e in body["errors"]} <= REFUSALS, (value, body)
    assert api.state() == before, value
    return None


FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(value=values)
def test_free_json_fields(api: Api, value: Any) -> None:
    data = refused_or_stored(api, value, """mutation($input: GaugeInput!) {
        createGauge(input: $input) { id document { meta } } }""",
                             {"input": {"name": "json", "meta": {"k": value}}})
    if data is not None:
        created = data["createGauge"]
        assert same_json(created["document"]["meta"], {"k": value})
        read = api.data("query($id: ID!) { gauge(id: $id) { meta } }", {"id": created["id"]})
        assert same_json(read["gauge"]["meta"], {"k": value}), (read, value)


@FAST
@given(value=numbers)
def test_float_fields(api: Api, value: Any) -> None:
    # GraphQL's Float takes finite floats, and integers a float holds exactly; no request
    # may carry an integer outside 64 bits, whatever field it is for.
    expected_ok = math.isfinite(value) if isinstance(value, float) else (
        exact_float(value) and INT64[0] <= value <= INT64[1])
    before = api.state()
    body = send(api, "mutation($r: Float) { createGauge(input: {name: \"f\", reading: $r}) "
                     "{ id document { reading } } }", {"r": value})
    if expected_ok:
        assert "errors" not in body, (value, body)
        assert same_json(body["data"]["createGauge"]["document"]["reading"], value)
    else:
        codes = {e["extensions"]["code"] for e in body.get("errors", [])}
        assert codes and codes <= {*REFUSALS, "GRAPHQL_VALIDATION_FAILED"}, (value, body)
        assert api.state() == before


@FAST
@given(value=values)
def test_event_payloads(api: Api, value: Any) -> None:
    data = refused_or_stored(api, value, """mutation($p: JSON) {
        emitEvent(type: "Hostile.value", payload: $p) { eventId } }""", {"p": {"k": value}})
    if data is not None:
        event = api.data("query($id: ID!) { event(id: $id) { payload } }",
                         {"id": data["emitEvent"]["eventId"]})
        assert same_json(event["event"]["payload"], {"k": value}), (event, value)


# Hypothesis may draw the same text twice in a run: each example's id is its own.
SERIAL = itertools.count()


@FAST
@given(name=texts)
def test_text_fields_and_ids(api: Api, name: str) -> None:
    data = refused_or_stored(api, name, """mutation($input: GaugeInput!, $id: ID) {
        createGauge(id: $id, input: $input) { id document { name } } }""",
                             {"input": {"name": name}, "id": f"id{next(SERIAL)}-{name}"})
    if data is not None:
        assert data["createGauge"]["document"]["name"] == name


def test_after_everything_every_read_still_works(api: Api) -> None:
    """What was stored is readable and publishable: a page of everything, the event list,
    and a subscription snapshot of the whole collection."""
    body = api.graphql("{ gauges(first: 500) { nodes { id name meta reading } } "
                       "events(first: 500) { payload } }")
    assert "errors" not in body, body
    assert body["data"]["gauges"]["nodes"] and body["data"]["events"]
    from tests.hostile.test_ws_frames import receive, socket, subscribe

    with socket(api, "graphql-transport-ws") as ws:
        ws.send(subscribe("all", {"query": "subscription { gauges { op documents { meta } } }"}))
        assert receive(ws)["payload"]["data"]["gauges"]["op"] == "SNAPSHOT"
    assert api.healthy()
