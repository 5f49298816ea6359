"""The value domain, at its edges: what a write may hold (statesync.values)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from statesync import values
from statesync.errors import BadInput


@pytest.mark.parametrize("value", [0, 2**63 - 1, -(2**63), 1.5, 1e308, -0.0, "é", "", None, True,
                                   [[1]], {"a": {"b": [None]}}])
def test_in_the_domain(value: object) -> None:
    assert values.json_problem(value) is None


@pytest.mark.parametrize(("value", "path", "problem"), [
    (2**63, "", "integer outside the 64-bit range"),
    (-(2**63) - 1, "", "integer outside the 64-bit range"),
    (float("nan"), "", "not a finite number"),
    ({"a": [1, float("inf")]}, "a.1", "not a finite number"),
    ("a\x00", "", "NUL"),
    ({"k": "\ud800"}, "k", "lone surrogate"),
    ({"\x00": 1}, "'\\x00'", "has a key that contains a NUL"),
    ({1: 1}, "1", "key that is not a string"),
])
def test_out_of_the_domain(value: object, path: str, problem: str) -> None:
    found = values.json_problem(value)
    assert found is not None and found[0] == path and problem in found[1], found


def test_depth_is_counted_in_containers_and_costs_no_recursion() -> None:
    def nested(levels: int) -> object:
        value: object = 1
        for _ in range(levels):
            value = [value]
        return value

    assert values.json_problem(nested(32), max_depth=32) is None
    assert values.json_problem(nested(33), max_depth=32) == ("0" + ".0" * 31, "nests deeper than 32 levels")
    assert values.json_problem(nested(100_000)) is not None  # far past Python's stack


def test_ids() -> None:
    assert values.check_id("o1", "id", 10) == "o1"
    for bad, message in (("", "must not be empty"), ("x" * 11, "the limit is 10"), ("a\x00", "NUL")):
        with pytest.raises(BadInput, match=message):
            values.check_id(bad, "id", 10)


def test_instants() -> None:
    assert values.check_instant(datetime(2030, 1, 1, tzinfo=UTC), "at")
    assert values.check_instant(values.MIN_INSTANT, "at") and values.check_instant(values.MAX_INSTANT, "at")
    for bad in (datetime(2030, 1, 1), datetime(9999, 12, 31, tzinfo=UTC),
                datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
                datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5)))):
        with pytest.raises(BadInput):
            values.check_instant(bad, "at")
