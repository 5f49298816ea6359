"""Each per-operation limit trips with QUERY_TOO_COMPLEX naming it, before validation or
execution spend anything: the documents the robustness issue measured at seconds to a
minute of event loop are all refused here, and the server keeps answering."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import Api


def nested_introspection(levels: int) -> str:
    inner = "name"
    for _ in range(levels):
        inner = f"ofType {{ {inner} }}"
    return "{ __schema { types { fields { type { " + inner + " } } } } }"


def fragment_bomb(levels: int) -> str:
    """F0 selects F1 twice under two aliases, F1 selects F2 twice...: 2**levels leaves."""
    fragments = [f"fragment F{i} on Gauge {{ a: history {{ at }} b: history {{ at }} }}"
                 if i == levels else
                 f"fragment F{i} on Query {{ x: gauge(id: \"g\") {{ ...G{i} }} "
                 f"y: gauge(id: \"g\") {{ ...G{i} }} }}" for i in range(levels + 1)]
    return "{ ...F0 } " + " ".join(fragments)


# (limit, document)
OVER: list[tuple[str, str]] = [
    ("max_query_tokens", "{ " + " ".join("__typename" for _ in range(90_000)) + " }"),
    ("max_query_depth", "{ " + "a { " * 1600 + "b" + " }" * 1600 + " }"),  # deeper than the parser's stack
    ("max_query_depth", nested_introspection(20)),
    ("max_aliases", "{ " + " ".join(f'a{i}: gauge(id: "{i}") {{ id }}' for i in range(150)) + " }"),
    ("max_aliases", "{ " + " ".join('a: gauge(id: "g") { id }' for _ in range(150)) + " }"),
    ("max_directives", '{ gauge(id: "g") { id ' + " ".join("@include(if: true)" for _ in range(60))
     + " } }"),
    ("max_root_fields", "{ " + " ".join(f"t{i}: __typename" for i in range(21)) + " }"),
    ("max_field_repeats", "{ " + " ".join('gauge(id: "g") { id }' for _ in range(200)) + " }"),
    ("max_field_repeats", '{ gauge(id: "g") { ...A ...B } } '
     + "fragment A on Gauge { " + " ".join("name" for _ in range(6)) + " } "
     + "fragment B on Gauge { " + " ".join("name" for _ in range(6)) + " }"),
    ("max_query_cost", "{ " + " ".join(
        f"p{i}: gauges(first: 500) {{ nodes {{ id name level reading tags }} }}" for i in range(10)) + " }"),
    ("max_query_cost", "query($n: Int) { " + " ".join(
        f"p{i}: gauges(first: $n) {{ edges {{ cursor node {{ id name }} }} }}" for i in range(10)) + " }"),
    ("max_input_depth", 'mutation { emitEvent(type: "A.b", payload: ' + "{a: " * 40 + "1" + "}" * 40
     + ") { eventId } }"),
]


@pytest.mark.parametrize(("limit", "query"), OVER, ids=[f"{c[0]}-{i}" for i, c in enumerate(OVER)])
def test_over_a_limit(api: Api, limit: str, query: str) -> None:
    before = api.state()
    body = api.graphql(query)
    errors = body.get("errors")
    assert errors and len(errors) == 1, body
    assert errors[0]["extensions"]["code"] == "QUERY_TOO_COMPLEX", errors
    assert errors[0]["extensions"]["limit"] == limit, errors
    assert api.state() == before
    assert api.healthy()


def test_fragment_bombs_are_priced_expanded(api: Api) -> None:
    body = api.graphql(fragment_bomb(14).replace("G", "F"))
    assert [e["extensions"]["code"] for e in body["errors"]] == ["QUERY_TOO_COMPLEX"], body


def test_fragment_cycles_are_validation_errors(api: Api) -> None:
    body = api.graphql("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }")
    assert [e["extensions"]["code"] for e in body["errors"]] == ["GRAPHQL_VALIDATION_FAILED"], body


def test_a_long_chain_of_fragments_is_answered(api: Api) -> None:
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(400))
    body = api.graphql("{ ...F0 } " + chain + " fragment F400 on Query { __typename }")
    assert body == {"data": {"__typename": "Query"}} or body["errors"][0]["extensions"]["code"] in (
        "QUERY_TOO_COMPLEX", "GRAPHQL_VALIDATION_FAILED"), body


def test_just_under_every_limit_runs(api: Api) -> None:
    """The limits refuse what they say, not less: documents at each limit run."""
    at_limits = [
        nested_introspection(10),
        "{ " + " ".join(f"t{i}: __typename" for i in range(20)) + " }",
        '{ gauge(id: "g") { ' + " ".join(f"i{n}: id @include(if: true)" for n in range(50)) + " } }",
        "{ " + " ".join(f'a{i}: gauge(id: "{i}") {{ id }}' for i in range(20)) + " }",
        "{ gauges(first: 500) { nodes { id name level reading tags } } }",
    ]
    for query in at_limits:
        body = api.graphql(query)
        assert "errors" not in body, (query[:80], body)


def test_graphiql_introspection_fits(api: Api) -> None:
    from graphql import get_introspection_query

    query = get_introspection_query(descriptions=True, specified_by_url=True,
                                    directive_is_repeatable=True, schema_description=True,
                                    input_value_deprecation=True)
    body = api.graphql(query)
    assert "errors" not in body and body["data"]["__schema"]["queryType"]["name"] == "Query"
