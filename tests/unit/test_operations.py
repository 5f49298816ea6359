"""Preparing operations (statesync.api.operations, statesync.api.limits) on the demo schema,
without a server: each limit, the operation choice, and what the cache keeps."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import GraphQLSchema

from statesync.api.limits import QueryLimits
from statesync.api.operations import BYTES_PER_CHARACTER, OperationCache, Rejected, prepare
from statesync.api.schema import build_schema
from statesync.loader import load_models

ROOT = Path(__file__).resolve().parents[2]
LIMITS = QueryLimits()


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return build_schema(load_models(ROOT / "schema"))._schema


def refusal(schema: GraphQLSchema, query: str, name: str | None = None,
            limits: QueryLimits = LIMITS) -> tuple[str, str | None, bool]:
    with pytest.raises(Rejected) as rejected:
        prepare(schema, query, name, limits)
    error = rejected.value.errors[0]
    assert error.extensions is not None
    return error.extensions["code"], error.extensions.get("limit"), rejected.value.protocol_error


def test_cost_multiplies_by_first(schema: GraphQLSchema) -> None:
    one = prepare(schema, "{ orders(first: 10) { nodes { id customer } } }", None, LIMITS)
    assert one.cost == 1 + 10 * (1 + 2)
    default = prepare(schema, "{ orders { nodes { id } } }", None, LIMITS)
    assert default.cost == 1 + LIMITS.default_page_size * 2
    variable = prepare(schema, "query($n: Int) { orders(first: $n) { nodes { id } } }", None, LIMITS)
    assert variable.cost == 1 + LIMITS.max_page_size * 2
    events = prepare(schema, "{ events { id } }", None, LIMITS)  # the argument's own default
    assert events.cost == 1 + 50


def test_fragments_are_costed_where_they_are_spread(schema: GraphQLSchema) -> None:
    query = ("{ a: orders(first: 10) { nodes { ...F } } b: orders(first: 20) { nodes { ...F } } } "
             "fragment F on Order { id customer items { sku } }")
    assert prepare(schema, query, None, LIMITS).cost == (1 + 10 * 5) + (1 + 20 * 5)


@pytest.mark.parametrize(("limits", "query", "limit"), [
    (QueryLimits(max_depth=3), "{ orders { nodes { items { sku } } } }", "max_query_depth"),
    (QueryLimits(max_aliases=1), '{ a: order(id: "1") { id } b: order(id: "2") { id } }', "max_aliases"),
    (QueryLimits(max_directives=1), '{ order(id: "1") { id @skip(if: false) customer @skip(if: false) } }',
     "max_directives"),
    (QueryLimits(max_root_fields=1), '{ order(id: "1") { id } orders { nodes { id } } }', "max_root_fields"),
    (QueryLimits(max_field_repeats=2), '{ order(id: "1") { id id id } }', "max_field_repeats"),
    (QueryLimits(max_cost=100), "{ orders(first: 100) { nodes { id } } }", "max_query_cost"),
    (QueryLimits(max_tokens=100), "{ " + "__typename " * 200 + "}", "max_query_tokens"),
    (QueryLimits(max_input_depth=3), 'mutation { emitEvent(type: "A.b", payload: {a: {b: {c: {d: 1}}}}) '
     "{ eventId } }", "max_input_depth"),
])
def test_each_limit(schema: GraphQLSchema, limits: QueryLimits, query: str, limit: str) -> None:
    assert refusal(schema, query, limits=limits) == ("QUERY_TOO_COMPLEX", limit, False)


def test_repeats_count_through_fragments_and_nesting(schema: GraphQLSchema) -> None:
    limits = QueryLimits(max_field_repeats=2)
    through_fragments = ('{ order(id: "1") { id ...A ...B } } fragment A on Order { id } '
                         "fragment B on Order { id }")
    assert refusal(schema, through_fragments, limits=limits)[1] == "max_field_repeats"
    merged_below = ('{ order(id: "1") { items { sku } } order(id: "1") { items { sku } } } ' * 1)
    prepare(schema, merged_below, None, limits)  # two is fine; their merged children too
    three_below = '{ order(id: "1") { items { sku sku } items { sku } } }'
    assert refusal(schema, three_below, limits=limits)[1] == "max_field_repeats"


def test_choosing_the_operation(schema: GraphQLSchema) -> None:
    two = 'query A { order(id: "1") { id } } query B { orders { nodes { id } } }'
    assert prepare(schema, two, "B", LIMITS).name == "B"
    assert refusal(schema, two) == ("OPERATION_RESOLUTION_FAILURE", None, True)
    assert refusal(schema, two, "C") == ("OPERATION_RESOLUTION_FAILURE", None, True)
    assert refusal(schema, "{") == ("GRAPHQL_PARSE_FAILED", None, True)
    assert refusal(schema, "") == ("BAD_REQUEST", None, True)
    assert refusal(schema, "{ nope }") == ("GRAPHQL_VALIDATION_FAILED", None, False)
    assert refusal(schema, '{ order(id: "a\\u0000") { id } }') == ("BAD_USER_INPUT", None, False)


def test_the_cache_keeps_only_what_passed_within_its_budget(schema: GraphQLSchema) -> None:
    small = '{ order(id: "1") { id } }'
    cache = OperationCache(schema, LIMITS, budget=len(small) * BYTES_PER_CHARACTER * 8)
    assert cache.get(small, None) is cache.get(small, None)
    assert len(cache) == 1
    with pytest.raises(Rejected):
        cache.get("{ nope }", None)
    assert len(cache) == 1  # a refused document takes no room
    big = '{ order(id: "1") { ' + " ".join(f"a{i}: id" for i in range(40)) + " } }"
    cache.get(big, None)
    assert len(cache) == 1  # over an eighth of the budget: answered, never kept
    others = [f'{{ order(id: "{n}") {{ id }} }}' for n in range(20)]
    for query in others:
        cache.get(query, None)
    assert cache.used <= cache.budget and len(cache) < 20
    assert small not in {key[0] for key in cache._entries}  # the least recently used went first
