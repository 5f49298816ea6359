"""The conflict strategies as pure functions: examples, and hypothesis against a model of
the documented semantics written another way (documents flattened to leaf paths, each
leaf decided on its own), so that the recursive implementation is checked, not restated."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import statesync as ss
from statesync.conflicts import (
    Custom,
    Merge,
    Rejected,
    Resolution,
    custom,
    merge,
    resolve,
    same,
    strategy_of,
)
from statesync.models import ModelSpec

# ---- examples --------------------------------------------------------------------------------

BASE = {"note": "", "qty": 1, "status": "NEW"}


def test_edits_to_different_fields_both_apply() -> None:
    server = {**BASE, "note": "gift wrap"}  # someone else wrote the note
    patch, applied, kept = merge(Merge(), BASE, server, {"qty": 3, "note": ""})
    assert {**server, **patch} == {"note": "gift wrap", "qty": 3, "status": "NEW"}
    assert (applied, kept) == (("qty",), ())


@pytest.mark.parametrize(("prefer", "title", "applied", "kept"), [
    ("server", "theirs", (), ("title",)),
    ("client", "mine", ("title",), ()),
])
def test_a_scalar_both_changed_keeps_the_preferred_side(prefer: Any, title: str,
                                                        applied: tuple[str, ...],
                                                        kept: tuple[str, ...]) -> None:
    patch, got_applied, got_kept = merge(Merge(prefer=prefer), {"title": "a"}, {"title": "theirs"},
                                         {"title": "mine"})
    assert patch == {"title": title}
    assert (got_applied, got_kept) == (applied, kept)


def test_both_making_the_same_change_is_no_conflict() -> None:
    patch, applied, kept = merge(Merge(), {"title": "a"}, {"title": "b"}, {"title": "b"})
    assert (patch, applied, kept) == ({"title": "b"}, ("title",), ())


def test_embedded_objects_merge_key_by_key() -> None:
    base = {"address": {"city": "Lyon", "zip": "69001"}}
    server = {"address": {"city": "Paris", "zip": "69001"}}
    client = {"address": {"city": "Lyon", "zip": "69002"}}
    patch, applied, kept = merge(Merge(), base, server, client)
    assert patch == {"address": {"city": "Paris", "zip": "69002"}}
    assert (applied, kept) == (("address.zip",), ())


def test_a_set_list_gets_the_clients_additions_and_removals() -> None:
    base = {"tags": ["a", "b"]}
    server = {"tags": ["a", "b", "c"]}
    client = {"tags": ["b", "d"]}  # removed a, added d
    patch, applied, _ = merge(Merge(lists={"tags": "set"}), base, server, client)
    assert patch == {"tags": ["b", "c", "d"]}
    assert applied == ("tags",)


def test_an_append_list_appends_what_the_client_added_and_keeps_what_it_removed() -> None:
    base = {"log": ["created"]}
    server = {"log": ["created", "priced"]}
    client = {"log": ["noted"]}  # dropped "created", added "noted"
    patch, applied, kept = merge(Merge(lists={"log": "append"}), base, server, client)
    assert patch == {"log": ["created", "priced", "noted"]}
    assert (applied, kept) == (("log",), ("log",))


def test_an_undeclared_list_is_one_value() -> None:
    patch, _, kept = merge(Merge(), {"tags": ["a"]}, {"tags": ["a", "b"]}, {"tags": ["c"]})
    assert patch == {"tags": ["a", "b"]}
    assert kept == ("tags",)


def test_json_equality_tells_one_from_true() -> None:
    assert not same(1, True)
    assert not same(1, 1.0)
    assert same({"a": 1, "b": 2}, {"b": 2, "a": 1})


def test_a_custom_resolver_sees_the_three_documents_and_its_patch_is_reported() -> None:
    seen: list[tuple[Any, Any, Any]] = []

    def resolve_fn(base: Any, server: Any, client: Any) -> Any:
        seen.append((base, server, client))
        return {"value": server["value"] + client["value"] - base["value"]}

    patch, applied, kept = custom(Custom(resolve_fn), {"value": 1}, {"value": 5}, {"value": 3})
    assert seen == [({"value": 1}, {"value": 5}, {"value": 3})]
    assert patch == {"value": 7}
    assert (applied, kept) == ((), ("value",))  # 7 is not the client's 3


def test_a_custom_rejection_names_its_reason() -> None:
    with pytest.raises(Rejected, match="outbid"):
        custom(Custom(lambda b, s, c: ss.Reject("outbid")), {}, {}, {"bid": 1})


def test_a_resolver_that_returns_nonsense_is_a_server_bug_not_a_silent_write() -> None:
    with pytest.raises(TypeError, match="returns a patch"):
        custom(Custom(lambda b, s, c: 42), {}, {}, {"bid": 1})  # type: ignore[arg-type,return-value]


def test_a_resolution_round_trips_through_json() -> None:
    _, resolution = resolve(Merge(), 3, {"a": 1}, {"a": 1}, {"a": 2})
    assert resolution == Resolution("merge", 3, ("a",), ())
    assert Resolution.from_json(resolution.to_json()) == resolution


def test_the_declared_option_names_a_strategy() -> None:
    assert strategy_of("reject") == "reject"
    assert strategy_of("merge") == Merge()
    assert isinstance(strategy_of(lambda b, s, c: {}), Custom)
    with pytest.raises(TypeError, match="conflicts must be"):
        strategy_of("last-writer-wins")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'set' or 'append'"):
        Merge(lists={"tags": "union"})  # type: ignore[dict-item]


@ss.value
class Where:
    city: str


@ss.model(conflicts=ss.Merge(lists={"where.city": "set"}))
class Bad:
    where: Where


@ss.model(conflicts=ss.Merge(lists={"nowhere": "set"}))
class Missing:
    tags: list[str]


def test_a_list_rule_must_name_a_list_of_the_model() -> None:
    with pytest.raises(TypeError, match="'city' is not a list"):
        ModelSpec.of(Bad)
    with pytest.raises(TypeError, match="no field 'nowhere'"):
        ModelSpec.of(Missing)


# ---- properties against a model of the semantics --------------------------------------------

LEAVES = st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y", "z"]), st.booleans(), st.none())
KEYS = ("a", "b", "c")


@st.composite
def three_documents(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """base, server and client of one shape: top-level leaves and one embedded object, each
    side changing any subset of leaves (so edits overlap, or not, at random)."""
    def shaped(leaf: st.SearchStrategy[Any]) -> dict[str, Any]:
        return {"a": draw(leaf), "b": draw(leaf), "obj": {"c": draw(leaf), "d": draw(leaf)}}

    base = shaped(LEAVES)

    def edited() -> dict[str, Any]:
        return {key: ({k: (draw(LEAVES) if draw(st.booleans()) else v) for k, v in value.items()}
                      if isinstance(value, dict) else (draw(LEAVES) if draw(st.booleans()) else value))
                for key, value in base.items()}

    server, client = edited(), edited()
    sent = draw(st.lists(st.sampled_from(list(base)), unique=True, min_size=1))
    return base, server, {key: client[key] for key in sent}


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def unflatten(leaves: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in leaves.items():
        *parents, last = path.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def documented(prefer: str, base: dict[str, Any], server: dict[str, Any], client: dict[str, Any]
               ) -> tuple[dict[str, Any], set[str], set[str]]:
    """The README's rules, leaf by leaf: unchanged by the client keeps the server's; changed
    by the client only (or both to the same value) takes the client's; changed by both
    differently takes the preferred side."""
    b, s, c = flatten(base), flatten(server), flatten(client)
    result, applied, kept = dict(s), set(), set()
    for path, mine in c.items():
        if same(mine, b[path]):
            continue
        if same(s[path], b[path]) or same(s[path], mine) or prefer == "client":
            result[path], _ = mine, applied.add(path)
        else:
            kept.add(path)
    return unflatten(result), applied, kept


@settings(max_examples=400)
@given(three_documents(), st.sampled_from(["server", "client"]))
def test_merge_follows_the_documented_rules(docs: Any, prefer: Any) -> None:
    base, server, client = docs
    patch, applied, kept = merge(Merge(prefer=prefer), base, server, client)
    expected, expected_applied, expected_kept = documented(prefer, base, server, client)
    assert {**server, **patch} == expected
    assert (leaves(applied, base, client), leaves(kept, base, client)) == (expected_applied,
                                                                          expected_kept)


def leaves(paths: tuple[str, ...], base: dict[str, Any], client: dict[str, Any]) -> set[str]:
    """The leaves the client changed under each reported path (an object taken whole from the
    client is reported once, by its own path)."""
    b, c = flatten(base), flatten(client)
    return {leaf for path in paths for leaf in c
            if (leaf == path or leaf.startswith(path + ".")) and not same(c[leaf], b[leaf])}


@given(three_documents())
def test_without_a_concurrent_change_the_update_applies_as_sent(docs: Any) -> None:
    base, _, client = docs
    patch, _, kept = merge(Merge(), base, base, client)
    assert {**base, **patch} == {**base, **client}
    assert kept == ()


@given(three_documents())
def test_edits_that_do_not_overlap_merge_the_same_whichever_side_is_preferred(docs: Any) -> None:
    base, server, client = docs
    b, s, c = flatten(base), flatten(server), flatten(client)
    if any(not same(c[p], b[p]) and not same(s[p], b[p]) for p in c):
        return  # overlapping: the preference decides, covered above
    by_server = merge(Merge(prefer="server"), base, server, client)[0]
    by_client = merge(Merge(prefer="client"), base, server, client)[0]
    assert {**server, **by_server} == {**server, **by_client}


@given(three_documents())
def test_merging_an_update_already_applied_changes_nothing(docs: Any) -> None:
    base, server, client = docs
    first = {**server, **merge(Merge(), base, server, client)[0]}
    again = {**first, **merge(Merge(), base, first, client)[0]}
    assert again == first


SMALL_SETS = st.lists(st.integers(0, 6), unique=True, max_size=5)


@given(SMALL_SETS, SMALL_SETS, SMALL_SETS)
def test_a_set_merge_is_the_servers_set_plus_additions_minus_removals(base: list[int],
                                                                       server: list[int],
                                                                       client: list[int]) -> None:
    merged = merge(Merge(lists={"s": "set"}), {"s": base}, {"s": server}, {"s": client})[0]
    result = merged.get("s", server)
    if server == base:
        assert result == client  # nobody else changed it: the client's list, as sent
        return
    added, removed = set(client) - set(base), set(base) - set(client)
    assert len(result) == len(set(result))
    assert set(result) == (set(server) - removed) | added
    assert [x for x in result if x in server] == [x for x in server if x not in removed]


@given(st.lists(st.integers(0, 4), max_size=4), st.lists(st.integers(0, 4), max_size=4),
       st.lists(st.integers(0, 4), max_size=4))
def test_an_append_merge_keeps_the_servers_list_as_its_prefix(base: list[int], server: list[int],
                                                              client: list[int]) -> None:
    merged = merge(Merge(lists={"s": "append"}), {"s": base}, {"s": server}, {"s": client})[0]
    result = merged.get("s", server)
    if same(server, base):
        assert result == client  # nobody else changed it: the client's list, as sent
        return
    if same(client, base) or same(client, server):
        return
    assert result[:len(server)] == server
    assert sorted(result[len(server):]) == sorted(_minus(client, base))


def _minus(items: list[int], taken: list[int]) -> list[int]:
    left = list(items)
    for item in taken:
        if item in left:
            left.remove(item)
    return left
