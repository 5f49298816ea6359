"""References as pure functions: where they sit in a model, which ids a document names,
the containment pattern that finds it, and what set_null leaves (checked with hypothesis
against a model of PostgreSQL's jsonb ``@>``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import statesync as ss
from statesync.models import ModelSpec
from statesync.relations import EACH, Relations, containment, paths_of, referenced_ids, without


@ss.model
class Target:
    name: str


@ss.value
class Inner:
    target: str | None = ss.ref(Target, on_delete="set_null", default=None)


@ss.value
class Line:
    target: str = ss.ref(Target)
    inner: Inner | None = None


@ss.model
class Holder:
    one: str | None = ss.ref(Target, on_delete="set_null", default=None)
    many: list[str] = ss.ref("Target", on_delete="set_null", default_factory=list)
    lines: list[Line] = ss.field(default_factory=list)


HOLDER = ModelSpec.of(Holder)
PATHS = paths_of(HOLDER)


def test_every_place_a_reference_may_sit() -> None:
    assert [(p.steps, p.on_delete, p.nullable) for p in PATHS] == [
        (("one",), "set_null", True),
        (("many", EACH), "set_null", False),
        (("lines", EACH, "target"), "restrict", False),
        (("lines", EACH, "inner", "target"), "set_null", True),
    ]
    assert [p.label for p in PATHS] == ["Holder.one", "Holder.many[]", "Holder.lines[].target",
                                        "Holder.lines[].inner.target"]


def test_a_reference_must_hold_ids_and_name_a_model() -> None:
    with pytest.raises(TypeError, match="annotate it str"):
        @ss.model
        class Bad:
            n: int = ss.ref(Target)

        ModelSpec.of(Bad)
    with pytest.raises(TypeError, match="needs a nullable field"):
        @ss.model
        class Strict:
            t: str = ss.ref(Target, on_delete="set_null")

        ModelSpec.of(Strict)
    with pytest.raises(TypeError, match="not a model of this schema"):
        Relations.of([HOLDER])


def jsonb_contains(value: Any, pattern: Any) -> bool:
    """PostgreSQL's ``value @> pattern`` (jsonb containment), as documented."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and jsonb_contains(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(
            any(jsonb_contains(item, p) for item in value) for p in pattern)
    return value == pattern


ids = st.sampled_from(["a", "b", "c"])
inner = st.fixed_dictionaries({}, optional={"target": st.none() | ids})
line = st.fixed_dictionaries({"target": ids}, optional={"inner": st.none() | inner})
holder = st.fixed_dictionaries({}, optional={
    "one": st.none() | ids, "many": st.lists(ids, max_size=4),
    "lines": st.lists(line, max_size=4)})


@given(holder, ids)
def test_the_pattern_finds_exactly_the_documents_that_name_the_id(doc: dict[str, Any],
                                                                  target: str) -> None:
    for path in PATHS:
        assert jsonb_contains(doc, containment(path, target)) == (
            target in referenced_ids(doc, path))


@given(holder, ids)
def test_set_null_clears_that_id_and_nothing_else(doc: dict[str, Any], target: str) -> None:
    for path in PATHS:
        if path.field not in doc:
            continue
        cleared = {**doc, **without(doc, path, target)}
        assert target not in referenced_ids(cleared, path)
        assert referenced_ids(cleared, path) == referenced_ids(doc, path) - {target}
        for other in PATHS:  # another reference in the same field keeps what it names
            if other.field == path.field and other != path:
                assert referenced_ids(cleared, other) == referenced_ids(doc, other)
        if path.steps[-1] is EACH:  # a list of ids loses the id, keeping the others in order
            assert cleared[path.field] == [i for i in doc[path.field] if i != target]
