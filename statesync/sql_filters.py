"""SQL rendering of :mod:`statesync.filters` (SQLAlchemy Core, no execution).

Every clause here must agree exactly with the Python evaluation in
:mod:`statesync.filters`; the semantics are documented there.  How that
agreement is kept:

* Each user field is read through one typed expression: ``data->>field`` cast
  per kind, but only when ``jsonb_typeof`` fits the kind -- otherwise NULL,
  just as Python treats a mistyped value as null.
* String-like values use ``COLLATE "C"`` so comparisons and ordering follow
  code points, as Python's ``str`` does.
* Every comparison is made two-valued (``x IS NOT NULL AND ...``), so ``NOT``
  behaves as plain boolean negation rather than SQL's three-valued logic.
* Every user value is a bind parameter; LIKE patterns escape ``\\ % _``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa

from statesync.filters import (
    LIST_KINDS,
    META_FIELDS,
    STRING_KINDS,
    AllOf,
    AnyOf,
    Compare,
    FieldKind,
    Filter,
    InvalidFilter,
    Negate,
    Op,
    OrderKey,
    Through,
    normalise_compare,
    validate_cursor,
    validate_order,
)

__all__ = ["after_clause", "filter_clause", "order_by_clauses", "typed_field"]

_LIKE_ESCAPE: Final = "\\"
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

# Per kind: the jsonb_typeof a stored value must have, and the SQL type the
# ``->>`` text is cast to.
_JSON_TYPES: Final[dict[FieldKind, tuple[str, sa.types.TypeEngine[Any]]]] = {
    FieldKind.STRING: ("string", sa.Text()),
    FieldKind.ID: ("string", sa.Text()),
    FieldKind.ENUM: ("string", sa.Text()),
    # numeric, not bigint: exact for any JSON integer and never a cast error.
    FieldKind.INT: ("number", sa.Numeric()),
    FieldKind.FLOAT: ("number", sa.Double()),
    FieldKind.BOOL: ("boolean", sa.Boolean()),
    FieldKind.DATETIME: ("string", sa.DateTime(timezone=True)),
}


def typed_field(table: sa.FromClause, field: str, kind: FieldKind) -> sa.ColumnElement[Any]:
    """The SQL value of ``field`` as :func:`statesync.filters.field_value` reads it."""
    if kind in LIST_KINDS:
        raise InvalidFilter(f"list field {field!r} has no scalar value")
    if field in META_FIELDS:
        column: sa.ColumnElement[Any] = table.c[field]
    else:
        json_type, sql_type = _JSON_TYPES[kind]
        raw = table.c.data[field]
        text = raw.astext
        value = text if isinstance(sql_type, sa.Text) else sa.cast(text, sql_type)
        column = sa.case(
            (sa.func.jsonb_typeof(raw) == json_type, value), else_=sa.null()
        )
    return sa.collate(column, "C") if kind in STRING_KINDS else column


def _bind(kind: FieldKind, value: Any) -> sa.BindParameter[Any]:
    if kind in STRING_KINDS:
        return sa.literal(value, sa.Text())
    if kind is FieldKind.INT:
        fits = isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX
        # Cursors may carry decimals or huge ints read from stored JSON.
        return sa.literal(value, sa.BigInteger() if fits else sa.Numeric())
    if kind is FieldKind.FLOAT:
        return sa.literal(float(value), sa.Double())
    if kind is FieldKind.BOOL:
        return sa.literal(value, sa.Boolean())
    if kind is FieldKind.DATETIME:
        assert isinstance(value, datetime)
        return sa.literal(value, sa.DateTime(timezone=True))
    raise InvalidFilter(f"no scalar bind for {kind.value}")  # pragma: no cover


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _present(
    expr: sa.ColumnElement[Any], pred: sa.ColumnElement[bool]
) -> sa.ColumnElement[bool]:
    # Guarding with IS NOT NULL keeps the result two-valued yet index-friendly.
    return sa.and_(expr.is_not(None), pred)


def _like(expr: sa.ColumnElement[Any], pattern: str) -> sa.ColumnElement[bool]:
    return _present(
        expr, expr.like(sa.literal(pattern, sa.Text()), escape=_LIKE_ESCAPE)
    )


def _in(
    expr: sa.ColumnElement[Any], kind: FieldKind, values: tuple[Any, ...]
) -> sa.ColumnElement[bool]:
    if not values:
        return sa.false()
    return _present(expr, expr.in_([_bind(kind, v) for v in values]))


def _list_contains(table: sa.FromClause, field: str, value: Any) -> sa.ColumnElement[bool]:
    # Nested jsonb containment means "the array at field has an equal element",
    # and it can use a GIN index on data.
    contains = table.c.data.contains({field: [value]})
    return sa.and_(table.c.data.is_not(None), contains)


def _scalar_compare(
    op: Op, expr: sa.ColumnElement[Any], kind: FieldKind, value: Any
) -> sa.ColumnElement[bool]:
    match op:
        case Op.EQ:
            return (
                expr.is_(None)
                if value is None
                else _present(expr, expr == _bind(kind, value))
            )
        case Op.NE:
            return (
                expr.is_not(None)
                if value is None
                else expr.is_distinct_from(_bind(kind, value))
            )
        case Op.LT:
            return _present(expr, expr < _bind(kind, value))
        case Op.LE:
            return _present(expr, expr <= _bind(kind, value))
        case Op.GT:
            return _present(expr, expr > _bind(kind, value))
        case Op.GE:
            return _present(expr, expr >= _bind(kind, value))
        case Op.IN:
            return _in(expr, kind, value)
        case Op.NOT_IN:
            return sa.not_(_in(expr, kind, value))
        case Op.BETWEEN:
            return _present(
                expr, expr.between(_bind(kind, value[0]), _bind(kind, value[1]))
            )
        case Op.BEGINS_WITH:
            return _like(expr, _escape_like(value) + "%")
        case Op.CONTAINS:
            return _like(expr, "%" + _escape_like(value) + "%")
    raise InvalidFilter(f"unknown operator {op!r}")  # pragma: no cover


def _compare_clause(
    c: Compare, table: sa.FromClause, kinds: Mapping[str, FieldKind]
) -> sa.ColumnElement[bool]:
    kind, value = normalise_compare(c, kinds)
    if kind in LIST_KINDS:
        return _list_contains(table, c.field, value)
    return _scalar_compare(c.op, typed_field(table, c.field, kind), kind, value)


def filter_clause(
    f: Filter | None, table: sa.FromClause, kinds: Mapping[str, FieldKind]
) -> sa.ColumnElement[bool]:
    """A WHERE clause true exactly for rows that ``filters.matches`` accepts."""
    if f is None:
        return sa.true()
    if isinstance(f, Compare):
        return _compare_clause(f, table, kinds)
    if isinstance(f, AllOf):
        parts = [filter_clause(p, table, kinds) for p in f.parts]
        return sa.and_(*parts) if parts else sa.true()
    if isinstance(f, AnyOf):
        parts = [filter_clause(p, table, kinds) for p in f.parts]
        return sa.or_(*parts) if parts else sa.false()
    if isinstance(f, Negate):
        return sa.not_(filter_clause(f.part, table, kinds))
    if isinstance(f, Through):
        return _through_clause(f, table, kinds)
    raise InvalidFilter(f"not a filter: {f!r}")


def _through_clause(f: Through, table: sa.FromClause, kinds: Mapping[str, FieldKind]
                    ) -> sa.ColumnElement[bool]:
    """EXISTS the live document the reference names, matching ``f.where``. Two-valued like
    every clause here: a null, missing or dangling reference is simply false."""
    referenced = sa.alias(table)
    names = typed_field(table, f.field, kinds[f.field])
    return sa.exists().where(
        referenced.c.model == f.model,
        sa.collate(referenced.c.id, "C") == names,
        referenced.c.deleted.is_(False),
        sa.or_(referenced.c.expires_at.is_(None), referenced.c.expires_at > sa.func.now()),
        filter_clause(f.where, referenced, dict(f.kinds)),
    )


def _id_column(table: sa.FromClause) -> sa.ColumnElement[Any]:
    return sa.collate(table.c.id, "C")


def order_by_clauses(
    order: Sequence[OrderKey], table: sa.FromClause, kinds: Mapping[str, FieldKind]
) -> list[sa.ColumnElement[Any]]:
    """ORDER BY terms matching ``filters.sort_key``; ``id`` ascending comes last."""
    clauses: list[sa.ColumnElement[Any]] = []
    for key, kind in zip(order, validate_order(order, kinds), strict=True):
        expr = typed_field(table, key.field, kind)
        # Spelled out although they are PostgreSQL's defaults: sort_key relies on them.
        clauses.append(
            expr.desc().nulls_first() if key.descending else expr.asc().nulls_last()
        )
    clauses.append(_id_column(table).asc())
    return clauses


# One order level of a keyset predicate: rows strictly past the cursor value,
# and rows level with it.
_Level = tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]


def _level(
    expr: sa.ColumnElement[Any], kind: FieldKind, descending: bool, value: Any
) -> _Level:
    if value is None:
        # ASC: nulls are last, so nothing is past them.  DESC: nulls are first.
        past: sa.ColumnElement[bool] = expr.is_not(None) if descending else sa.false()
        return past, expr.is_(None)
    bound = _bind(kind, value)
    if descending:
        past = _present(expr, expr < bound)
    else:
        past = sa.or_(expr.is_(None), _present(expr, expr > bound))
    return past, _present(expr, expr == bound)


def after_clause(
    order: Sequence[OrderKey],
    after: tuple[Any, ...],
    table: sa.FromClause,
    kinds: Mapping[str, FieldKind],
) -> sa.ColumnElement[bool]:
    """Rows strictly after cursor ``after`` in ``order_by_clauses`` order.

    ``after`` holds one typed value per order key and then the id, as built by
    ``filters.cursor_values``; raises ``InvalidPageToken`` when it does not fit.
    """
    checked = validate_cursor(order, after, kinds)
    levels: list[_Level] = [
        _level(typed_field(table, key.field, kind), kind, key.descending, value)
        for key, kind, value in zip(
            order, validate_order(order, kinds), checked[:-1], strict=True
        )
    ]
    id_bound = sa.literal(checked[-1], sa.Text())
    levels.append((_id_column(table) > id_bound, _id_column(table) == id_bound))
    # (k1 past) OR (k1 level AND k2 past) OR ... -- the expanded row comparison,
    # needed because directions and null placement differ per key.
    alternatives: list[sa.ColumnElement[bool]] = []
    for i, (past, _) in enumerate(levels):
        alternatives.append(sa.and_(*(eq for _, eq in levels[:i]), past))
    return sa.or_(*alternatives)
