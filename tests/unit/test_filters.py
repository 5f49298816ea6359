"""Unit tests for the pure-Python filter, ordering and page-token helpers."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from statesync.filters import (
    AllOf,
    AnyOf,
    Compare,
    FieldKind,
    Filter,
    InvalidFilter,
    InvalidPageToken,
    Negate,
    Op,
    OrderKey,
    cursor_values,
    decode_page_token,
    encode_page_token,
    is_after,
    matches,
    sort_key,
    validate,
)

KINDS: dict[str, FieldKind] = {
    "id": FieldKind.ID,
    "version": FieldKind.INT,
    "created_at": FieldKind.DATETIME,
    "updated_at": FieldKind.DATETIME,
    "expires_at": FieldKind.DATETIME,
    "name": FieldKind.STRING,
    "count": FieldKind.INT,
    "score": FieldKind.FLOAT,
    "done": FieldKind.BOOL,
    "color": FieldKind.ENUM,
    "due": FieldKind.DATETIME,
    "owner": FieldKind.ID,
    "tags": FieldKind.STRING_LIST,
    "nums": FieldKind.INT_LIST,
}

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def doc(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "d1",
        "version": 3,
        "created_at": T0,
        "updated_at": T0,
        "expires_at": None,
    }
    return base | fields


def m(f: Filter | None, d: dict[str, Any]) -> bool:
    return matches(f, d, KINDS)


# --------------------------------------------------------------------------
# matches
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        (Op.EQ, 5, True),
        (Op.EQ, 6, False),
        (Op.NE, 5, False),
        (Op.NE, 6, True),
        (Op.LT, 6, True),
        (Op.LT, 5, False),
        (Op.LE, 5, True),
        (Op.GT, 4, True),
        (Op.GT, 5, False),
        (Op.GE, 5, True),
        (Op.IN, (1, 5), True),
        (Op.IN, (1, 2), False),
        (Op.IN, (), False),
        (Op.NOT_IN, (1, 2), True),
        (Op.NOT_IN, (5,), False),
        (Op.NOT_IN, (), True),
        (Op.BETWEEN, (5, 9), True),
        (Op.BETWEEN, (1, 5), True),
        (Op.BETWEEN, (6, 9), False),
        (Op.BETWEEN, (9, 1), False),
    ],
)
def test_int_operators(op: Op, value: Any, expected: bool) -> None:
    assert m(Compare("count", op, value), doc(count=5)) is expected


@pytest.mark.parametrize(
    ("op", "value"),
    [
        (Op.EQ, 1),
        (Op.LT, 1),
        (Op.LE, 1),
        (Op.GT, 1),
        (Op.GE, 1),
        (Op.IN, (1,)),
        (Op.BETWEEN, (0, 2)),
    ],
)
@pytest.mark.parametrize("d", [doc(), doc(count=None), doc(count="1"), doc(count=True)])
def test_null_missing_or_mistyped_is_false_for_positive_ops(
    op: Op, value: Any, d: dict[str, Any]
) -> None:
    assert m(Compare("count", op, value), d) is False
    assert m(Negate(Compare("count", op, value)), d) is True


@pytest.mark.parametrize("d", [doc(), doc(name=None), doc(name=7)])
def test_null_is_distinct(d: dict[str, Any]) -> None:
    assert m(Compare("name", Op.NE, "x"), d)
    assert m(Compare("name", Op.NOT_IN, ("x",)), d)
    assert not m(Compare("name", Op.CONTAINS, ""), d)
    assert not m(Compare("name", Op.BEGINS_WITH, ""), d)
    assert m(Compare("name", Op.EQ, None), d)
    assert not m(Compare("name", Op.NE, None), d)


def test_eq_none_on_present_value() -> None:
    assert not m(Compare("name", Op.EQ, None), doc(name=""))
    assert m(Compare("name", Op.NE, None), doc(name=""))
    assert m(Compare("expires_at", Op.EQ, None), doc())


def test_strings_compare_by_code_point() -> None:
    assert m(Compare("name", Op.LT, "a"), doc(name="Z"))
    assert m(Compare("name", Op.GT, "z"), doc(name="é"))
    assert m(Compare("name", Op.GT, "\uffff"), doc(name="😀"))
    assert not m(Compare("name", Op.EQ, "e\u0301"), doc(name="é"))


def test_contains_and_begins_with_are_literal() -> None:
    d = doc(name="50%_off\\now")
    assert m(Compare("name", Op.CONTAINS, "%_"), d)
    assert m(Compare("name", Op.CONTAINS, "\\"), d)
    assert m(Compare("name", Op.BEGINS_WITH, "50%"), d)
    assert not m(Compare("name", Op.BEGINS_WITH, "5_"), d)
    assert not m(Compare("name", Op.CONTAINS, "OFF"), d)
    assert m(Compare("name", Op.CONTAINS, ""), doc(name=""))


def test_list_membership() -> None:
    d = doc(tags=["a", "b%"], nums=[1, 2.0, True])
    assert m(Compare("tags", Op.CONTAINS, "b%"), d)
    assert not m(Compare("tags", Op.CONTAINS, "b"), d)
    assert m(Compare("nums", Op.CONTAINS, 2), d)
    # JSON true is not the number 1.
    assert not m(Compare("nums", Op.CONTAINS, 1), doc(nums=[True]))
    assert not m(Compare("tags", Op.CONTAINS, "a"), doc(tags="a"))
    assert not m(Compare("tags", Op.CONTAINS, "a"), doc())
    assert m(Negate(Compare("tags", Op.CONTAINS, "a")), doc(tags=None))


def test_datetimes_compare_as_instants() -> None:
    plus2 = timezone(timedelta(hours=2))
    d = doc(due="2026-01-02T05:04:05.123456+02:00")
    assert m(Compare("due", Op.EQ, T0), d)
    assert m(Compare("due", Op.EQ, T0.astimezone(plus2)), d)
    assert m(Compare("due", Op.LT, T0 + timedelta(microseconds=1)), d)
    assert m(Compare("created_at", Op.BETWEEN, (T0, T0)), doc())
    assert m(Compare("due", Op.GT, T0), doc(due="2026-01-02T03:04:05.123457Z"))
    assert not m(Compare("due", Op.GT, T0), doc(due="not a date"))


def test_numbers() -> None:
    assert m(Compare("score", Op.EQ, 2), doc(score=2))
    assert m(Compare("score", Op.EQ, 0.0), doc(score=-0.0))
    assert m(Compare("score", Op.GT, 0.1), doc(score=0.30000000000000004))
    assert m(Compare("count", Op.EQ, 2), doc(count=2.0))
    assert not m(Compare("count", Op.EQ, 1), doc(count=True))
    # A float in an INT field is read by its decimal text, like jsonb numeric.
    assert m(Compare("count", Op.EQ, 10**23), doc(count=1e23))


def test_bool_and_enum() -> None:
    class Color(enum.Enum):
        RED = "red"

    assert m(Compare("done", Op.EQ, False), doc(done=False))
    assert m(Compare("done", Op.LT, True), doc(done=False))
    assert not m(Compare("done", Op.EQ, False), doc(done=0))
    assert m(Compare("color", Op.EQ, Color.RED), doc(color="red"))
    assert m(Compare("color", Op.IN, ("blue", "red")), doc(color="red"))


def test_combinators() -> None:
    d = doc(count=5, name="x")
    yes, no = Compare("count", Op.EQ, 5), Compare("name", Op.EQ, "y")
    assert m(AllOf((yes,)), d) and not m(AllOf((yes, no)), d)
    assert m(AnyOf((no, yes)), d) and not m(AnyOf((no,)), d)
    assert m(AllOf(()), d) and not m(AnyOf(()), d)
    assert m(Negate(no), d) and not m(Negate(Negate(no)), d)
    assert m(None, d)


@pytest.mark.parametrize(
    "f",
    [
        Compare("nope", Op.EQ, 1),
        Compare("count", Op.EQ, "1"),
        Compare("count", Op.EQ, True),
        Compare("count", Op.EQ, 1.5),
        Compare("count", Op.LT, None),
        Compare("count", Op.IN, (1, None)),
        Compare("count", Op.IN, 1),
        Compare("count", Op.BETWEEN, (1,)),
        Compare("count", Op.CONTAINS, 1),
        Compare("done", Op.BEGINS_WITH, "t"),
        Compare("tags", Op.EQ, "a"),
        Compare("tags", Op.CONTAINS, 1),
        Compare("nums", Op.CONTAINS, None),
        Compare("due", Op.EQ, datetime(2026, 1, 1)),  # naive on purpose
        Compare("due", Op.EQ, "2026-01-01T00:00:00+00:00"),
        AllOf((Compare("name", Op.EQ, 1),)),
    ],
)
def test_invalid_filters_raise(f: Filter) -> None:
    with pytest.raises(InvalidFilter):
        validate(f, KINDS)
    with pytest.raises(InvalidFilter):
        m(f, doc())


# --------------------------------------------------------------------------
# Ordering
# --------------------------------------------------------------------------


def _ids(docs: list[dict[str, Any]], order: list[OrderKey]) -> list[str]:
    return [d["id"] for d in sorted(docs, key=lambda d: sort_key(d, order, KINDS))]


def test_sort_nulls_last_asc_first_desc_and_id_tiebreak() -> None:
    docs = [
        doc(id="b", count=1),
        doc(id="a", count=1),
        doc(id="n"),
        doc(id="m", count="mistyped"),
        doc(id="c", count=0),
    ]
    assert _ids(docs, [OrderKey("count", False)]) == ["c", "a", "b", "m", "n"]
    assert _ids(docs, [OrderKey("count", True)]) == ["m", "n", "a", "b", "c"]


def test_sort_mixed_directions_and_kinds() -> None:
    docs = [
        doc(id="1", name="b", due="2026-01-01T00:00:00+00:00"),
        doc(id="2", name="b", due="2026-01-01T01:00:00+02:00"),
        doc(id="3", name="a", due=None),
        doc(id="4", name="B", due="2026-01-01T00:00:00Z"),
    ]
    order = [OrderKey("name", True), OrderKey("due", False)]
    assert _ids(docs, order) == ["2", "1", "3", "4"]
    assert _ids(docs, []) == ["1", "2", "3", "4"]


def test_sort_ints_with_float_values() -> None:
    docs = [doc(id="a", count=2), doc(id="b", count=1.5), doc(id="c", count=2.0)]
    assert _ids(docs, [OrderKey("count", False)]) == ["b", "a", "c"]


def test_is_after_matches_sorted_position() -> None:
    docs = [doc(id=str(i), count=[None, 1, 2][i % 3], score=i / 3) for i in range(12)]
    for order in (
        [OrderKey("count", False)],
        [OrderKey("count", True), OrderKey("score", True)],
    ):
        ordered = sorted(docs, key=lambda d: sort_key(d, order, KINDS))
        for i, pivot in enumerate(ordered):
            cursor = cursor_values(pivot, order, KINDS)
            after = [d for d in ordered if is_after(d, order, cursor, KINDS)]
            assert after == ordered[i + 1 :]


def test_cannot_order_by_lists_or_unknown_fields() -> None:
    with pytest.raises(InvalidFilter):
        sort_key(doc(), [OrderKey("tags", False)], KINDS)
    with pytest.raises(InvalidFilter):
        sort_key(doc(), [OrderKey("nope", False)], KINDS)


# --------------------------------------------------------------------------
# Page tokens
# --------------------------------------------------------------------------


def test_page_token_round_trip() -> None:
    plus5 = timezone(timedelta(hours=5, minutes=30))
    values = (
        None,
        True,
        -(2**63),
        2**64,
        -(10**30),
        1.5,
        -0.0,
        "é%_/+",
        T0.astimezone(plus5),
        Decimal("1E+23"),
        "id",
    )
    token = encode_page_token(values)
    assert (
        token.isascii() and "=" not in token and "+" not in token and "/" not in token
    )
    decoded = decode_page_token(token, len(values))
    assert decoded == values
    assert [type(v) for v in decoded] == [type(v) for v in values]
    assert decoded[8].utcoffset() == plus5.utcoffset(None)


def test_cursor_values_round_trip_through_token() -> None:
    order = [
        OrderKey("due", True),
        OrderKey("count", False),
        OrderKey("expires_at", False),
    ]
    d = doc(id="x", due="2026-01-02T03:04:05+00:00", count=1e23)
    cursor = cursor_values(d, order, KINDS)
    assert decode_page_token(encode_page_token(cursor), 4) == cursor


@pytest.mark.parametrize(
    "token",
    [
        "",
        "!!!",
        "a b",
        "é",
        encode_page_token([1, 2])[:-3] + "$$",
        "bnVsbA",  # "null"
        "eyJhIjoxfQ",  # {"a":1}
        encode_page_token([1])[:-1],
        "W3sidCI6IngifV0",  # [{"t":"x"}]
        "W3sibiI6Im5vcGUifV0",  # [{"n":"nope"}]
        "W1tdXQ",  # [[]]
        "x" * 10_000,
    ],
)
def test_garbage_tokens_raise(token: str) -> None:
    with pytest.raises(InvalidPageToken):
        decode_page_token(token, 1)


def test_wrong_arity_raises() -> None:
    with pytest.raises(InvalidPageToken):
        decode_page_token(encode_page_token([1, "a"]), 3)


def test_unsupported_token_value() -> None:
    with pytest.raises(TypeError):
        encode_page_token([object()])


def test_cursor_validation_rejects_tampering() -> None:
    order = [OrderKey("count", False)]
    with pytest.raises(InvalidPageToken):
        is_after(doc(), order, ("x", "id"), KINDS)
    with pytest.raises(InvalidPageToken):
        is_after(doc(), order, (1,), KINDS)
    with pytest.raises(InvalidPageToken):
        is_after(doc(), order, (1, 2), KINDS)
    with pytest.raises(InvalidPageToken):
        is_after(
            doc(), [OrderKey("due", False)], (datetime(2026, 1, 1), "id"), KINDS
        )  # naive


# --------------------------------------------------------------------------
# SQL rendering details the parity test cannot see on a C-collated database
# --------------------------------------------------------------------------


def test_sql_strings_use_code_point_collation() -> None:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    from statesync.sql_filters import after_clause, filter_clause, order_by_clauses

    table = sa.Table(
        "documents",
        sa.MetaData(),
        sa.Column("id", sa.Text),
        sa.Column("data", postgresql.JSONB),
    )
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    order = [OrderKey("name", False)]
    for clause in (
        filter_clause(Compare("name", Op.LT, "a"), table, KINDS),
        filter_clause(Compare("color", Op.GT, "a"), table, KINDS),
        after_clause(order, ("a", "id"), table, KINDS),
        *order_by_clauses(order, table, KINDS),
    ):
        assert 'COLLATE "C"' in str(clause.compile(dialect=dialect))
    assert str(order_by_clauses([], table, KINDS)[0].compile(dialect=dialect)) == (
        'documents.id COLLATE "C" ASC'
    )
