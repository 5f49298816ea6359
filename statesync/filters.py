"""Document filters and keyset ordering, evaluated in pure Python.

The same filter is evaluated twice: in SQL for list queries
(:mod:`statesync.sql_filters`) and here, on a change's document dict, for live
subscriptions.  Both evaluations must agree exactly, so the rules below are the
contract for both sides.

Documents
---------
A document is a mapping holding the user fields (keyed by their Python names,
with JSON values) plus the meta fields ``id`` (str), ``version`` (int) and
``created_at`` / ``updated_at`` / ``expires_at`` (tz-aware datetimes or None).
``kinds`` maps every filterable field name (user and meta) to a
:class:`FieldKind`; naming a field that is not in ``kinds`` raises
:class:`InvalidFilter`.

Field kinds and how stored values are read
------------------------------------------
* ``STRING``, ``ID``, ``ENUM`` -- JSON strings (enums by their string value).
  Compared by Unicode code point (SQL uses ``COLLATE "C"``).
* ``INT`` -- JSON integers, compared exactly (SQL ``numeric``).  Should a float
  appear it is compared by its shortest decimal representation, as jsonb does.
* ``FLOAT`` -- JSON numbers, compared as IEEE doubles (SQL ``float8``).
* ``BOOL`` -- JSON booleans; ``false < true``.
* ``DATETIME`` -- ISO-8601 strings *with* a UTC offset, compared as instants
  (SQL casts to ``timestamptz``).  Meta datetimes are real datetimes.
* ``STRING_LIST``, ``INT_LIST`` -- JSON arrays; only ``CONTAINS`` applies.

A stored value whose JSON type does not fit the field's kind (e.g. a number in
a STRING field) is treated exactly like null.  Stored datetime strings must be
valid ISO-8601 with an offset: PostgreSQL rejects anything else.

Operators (``Compare.value`` must fit the field kind, see :func:`validate`)
---------------------------------------------------------------------------
* ``EQ`` / ``NE`` -- SQL ``IS NOT DISTINCT FROM`` / ``IS DISTINCT FROM``.  With
  a non-null value a missing or null field never equals it (EQ false, NE
  true).  ``value=None`` is allowed for these two only and tests for
  "missing or null" / "present and not null".
* ``LT LE GT GE`` -- false on a missing/null field.
* ``IN`` / ``NOT_IN`` -- ``value`` is a tuple of non-null values; IN is false on
  a missing/null field, NOT_IN is its exact negation (so true there).
* ``BETWEEN`` -- ``value`` is ``(low, high)``, inclusive; false when null.
* ``CONTAINS`` -- substring for STRING/ID/ENUM, element membership for the
  list kinds; false when null.
* ``BEGINS_WITH`` -- string prefix for STRING/ID/ENUM; false when null.  LIKE
  wildcards in the value are literal characters.
* ``AllOf`` / ``AnyOf`` -- and / or; an empty AllOf is true, an empty AnyOf
  false.  ``Negate`` is plain boolean NOT of its part (every comparison is
  two-valued, so NOT(EQ) on a null field is true).  A ``None`` filter matches
  everything.

Ordering and pages
------------------
Ordering uses the same typed values.  ASC puts nulls last and DESC puts them
first (PostgreSQL's defaults); ``id`` ascending by code point is always the
final tiebreak.  A page cursor holds one typed value per order key plus the id
(:func:`cursor_values`); :func:`encode_page_token` turns it into an opaque
url-safe string.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import orjson

from statesync.errors import BadInput
from statesync.values import check_instant, text_problem

__all__ = [
    "META_FIELDS",
    "AllOf",
    "AnyOf",
    "Compare",
    "FieldKind",
    "Filter",
    "InvalidFilter",
    "InvalidPageToken",
    "Negate",
    "Op",
    "OrderKey",
    "Through",
    "cursor_key",
    "cursor_values",
    "decode_page_token",
    "encode_page_token",
    "field_value",
    "fields_of",
    "goes_through",
    "is_after",
    "matcher",
    "matches",
    "normalise_compare",
    "size",
    "sort_key",
    "validate",
    "validate_cursor",
    "validate_order",
]

META_FIELDS: Final = frozenset(
    {"id", "version", "created_at", "updated_at", "expires_at"}
)
"""Fields stored as real columns; every other field lives in ``data``."""

_MAX_TOKEN_CHARS: Final = 8192


class FieldKind(enum.Enum):
    """How a field's stored JSON value is interpreted for filtering/ordering."""

    STRING = "string"
    """JSON string, compared by code point."""
    ID = "id"
    """Document id (or reference to one); behaves like STRING."""
    ENUM = "enum"
    """Enum stored as its string value; behaves like STRING."""
    INT = "int"
    """JSON integer, compared exactly."""
    FLOAT = "float"
    """JSON number, compared as a double."""
    BOOL = "bool"
    """JSON boolean."""
    DATETIME = "datetime"
    """ISO-8601 string with offset (or a real datetime for meta fields)."""
    STRING_LIST = "string_list"
    """JSON array of strings; CONTAINS only."""
    INT_LIST = "int_list"
    """JSON array of integers; CONTAINS only."""


class Op(enum.Enum):
    """Comparison operators; see the module docstring for null semantics."""

    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    BEGINS_WITH = "begins_with"
    BETWEEN = "between"


class InvalidFilter(ValueError):
    """A filter or ordering does not fit the fields it names."""


class InvalidPageToken(ValueError):
    """A page token is malformed, tampered with, or for another ordering."""


@dataclass(frozen=True, slots=True)
class Compare:
    field: str
    op: Op
    value: Any


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Negate:
    part: Filter


@dataclass(frozen=True, slots=True)
class Through:
    """The document that ``field`` (a reference) names, of ``model``, exists and matches
    ``where`` (over that model's ``kinds``). Evaluated in SQL only: a live subscription
    cannot tell when another document starts or stops matching (see :func:`matcher`)."""

    field: str
    model: str
    where: Filter
    kinds: tuple[tuple[str, FieldKind], ...]


Filter = Compare | AllOf | AnyOf | Negate | Through


@dataclass(frozen=True, slots=True)
class OrderKey:
    field: str
    descending: bool = False


STRING_KINDS: Final = frozenset({FieldKind.STRING, FieldKind.ID, FieldKind.ENUM})
LIST_KINDS: Final = frozenset({FieldKind.STRING_LIST, FieldKind.INT_LIST})
SCALAR_KINDS: Final = frozenset(FieldKind) - LIST_KINDS
ORDERED_OPS: Final = frozenset({Op.LT, Op.LE, Op.GT, Op.GE})


# --------------------------------------------------------------------------
# Reading stored values
# --------------------------------------------------------------------------


def _is_number(raw: object) -> bool:
    # bool is an int subclass, but JSON true is not the number 1.
    return isinstance(raw, int | float) and not isinstance(raw, bool)


def _json_number(raw: float) -> int | Decimal:
    # jsonb keeps the decimal text it was given; for a float that is the
    # shortest round-tripping repr, so compare that rather than the binary value.
    return raw if isinstance(raw, int) else Decimal(repr(raw))


def _read_string(raw: object) -> str | None:
    return raw if isinstance(raw, str) else None


def _read_int(raw: object) -> int | Decimal | None:
    if not _is_number(raw):
        return None
    assert isinstance(raw, int | float)
    return _json_number(raw)


def _read_float(raw: object) -> float | None:
    if not _is_number(raw):
        return None
    assert isinstance(raw, int | float)
    return float(raw)


def _read_bool(raw: object) -> bool | None:
    return raw if isinstance(raw, bool) else None


def _read_datetime(raw: object) -> datetime | None:
    if isinstance(raw, datetime):
        return raw
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        # SQL would raise on such a value; a live feed must not crash on it.
        return None


def _read_list(raw: object) -> list[Any] | None:
    return raw if isinstance(raw, list) else None


_READERS: Final[dict[FieldKind, Callable[[object], Any]]] = {
    FieldKind.STRING: _read_string,
    FieldKind.ID: _read_string,
    FieldKind.ENUM: _read_string,
    FieldKind.INT: _read_int,
    FieldKind.FLOAT: _read_float,
    FieldKind.BOOL: _read_bool,
    FieldKind.DATETIME: _read_datetime,
    FieldKind.STRING_LIST: _read_list,
    FieldKind.INT_LIST: _read_list,
}


def _kind_of(field: str, kinds: Mapping[str, FieldKind]) -> FieldKind:
    try:
        return kinds[field]
    except KeyError:
        raise InvalidFilter(f"unknown field {field!r}") from None


def field_value(doc: Mapping[str, Any], field: str, kind: FieldKind) -> Any:
    """The typed value of ``field`` in ``doc``; None when missing, null or mistyped."""
    return _READERS[kind](doc.get(field))


# --------------------------------------------------------------------------
# Validating and normalising filter values
# --------------------------------------------------------------------------


def _scalar_value(kind: FieldKind, value: object) -> Any:
    """Normalise one non-null filter value for ``kind`` or raise InvalidFilter."""
    if isinstance(value, enum.Enum) and kind in STRING_KINDS:
        value = value.value
    if kind in STRING_KINDS and isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise InvalidFilter(f"a filter string {problem}")
        return value
    if kind is FieldKind.INT and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is FieldKind.FLOAT and _is_number(value):
        assert isinstance(value, int | float)
        return float(value)
    if kind is FieldKind.BOOL and isinstance(value, bool):
        return value
    if kind is FieldKind.DATETIME and isinstance(value, datetime):
        if value.utcoffset() is None:
            raise InvalidFilter("datetime filter values must be timezone-aware")
        try:
            check_instant(value, "a datetime filter value")
        except BadInput as exc:
            raise InvalidFilter(exc.message) from None
        return value
    raise InvalidFilter(f"{value!r} is not a valid {kind.value} value")


def _element_kind(kind: FieldKind) -> FieldKind:
    return FieldKind.STRING if kind is FieldKind.STRING_LIST else FieldKind.INT


def normalise_compare(
    c: Compare, kinds: Mapping[str, FieldKind]
) -> tuple[FieldKind, Any]:
    """Check ``c`` against its field's kind; return the kind and normalised value.

    Shared with :mod:`statesync.sql_filters` so both sides accept the same filters.
    """
    kind = _kind_of(c.field, kinds)
    if c.op is Op.CONTAINS and kind in LIST_KINDS:
        if c.value is None:
            raise InvalidFilter("CONTAINS needs a non-null value")
        return kind, _scalar_value(_element_kind(kind), c.value)
    if kind in LIST_KINDS:
        raise InvalidFilter(f"{c.op.name} does not apply to list field {c.field!r}")
    if c.op in (Op.CONTAINS, Op.BEGINS_WITH) and kind not in STRING_KINDS:
        raise InvalidFilter(
            f"{c.op.name} needs a string field, {c.field!r} is {kind.value}"
        )
    if c.op in (Op.IN, Op.NOT_IN):
        if not isinstance(c.value, tuple | list | frozenset | set):
            raise InvalidFilter(f"{c.op.name} needs a tuple of values")
        return kind, tuple(_scalar_value(kind, v) for v in c.value)
    if c.op is Op.BETWEEN:
        if not isinstance(c.value, tuple | list) or len(c.value) != 2:
            raise InvalidFilter("BETWEEN needs a (low, high) pair")
        return kind, (_scalar_value(kind, c.value[0]), _scalar_value(kind, c.value[1]))
    if c.value is None and c.op in (Op.EQ, Op.NE):
        return kind, None
    return kind, _scalar_value(kind, c.value)


def size(f: Filter | None) -> int:
    """Comparisons plus the values they list: what ``max_filter_values`` bounds (each
    becomes SQL, and asyncpg takes at most 32,767 parameters)."""
    if f is None:
        return 0
    total, stack = 0, [f]
    while stack:
        part = stack.pop()
        if isinstance(part, Compare):
            listed = isinstance(part.value, tuple | list | frozenset | set)
            total += 1 + (len(part.value) if listed else 0)
        elif isinstance(part, AllOf | AnyOf):
            total += 1
            stack.extend(part.parts)
        elif isinstance(part, Negate):
            total += 1
            stack.append(part.part)
        elif isinstance(part, Through):
            total += 1
            stack.append(part.where)
    return total


def fields_of(f: Filter | None) -> set[str]:
    """The fields a filter tests (of a reference: the reference, not what it names)."""
    found: set[str] = set()
    stack = [] if f is None else [f]
    while stack:
        part = stack.pop()
        if isinstance(part, Compare | Through):
            found.add(part.field)
        elif isinstance(part, AllOf | AnyOf):
            stack.extend(part.parts)
        elif isinstance(part, Negate):
            stack.append(part.part)
    return found


def validate(f: Filter | None, kinds: Mapping[str, FieldKind]) -> None:
    """Raise :class:`InvalidFilter` unless every comparison in ``f`` fits ``kinds``."""
    if f is None:
        return
    if isinstance(f, Compare):
        normalise_compare(f, kinds)
    elif isinstance(f, AllOf | AnyOf):
        for part in f.parts:
            validate(part, kinds)
    elif isinstance(f, Negate):
        validate(f.part, kinds)
    elif isinstance(f, Through):
        if kinds.get(f.field) not in STRING_KINDS:
            raise InvalidFilter(f"{f.field!r} is not a reference")
        validate(f.where, dict(f.kinds))
    else:
        raise InvalidFilter(f"not a filter: {f!r}")


def goes_through(f: Filter | None) -> bool:
    """Whether ``f`` tests a referenced document (which only SQL can)."""
    if isinstance(f, Through):
        return True
    if isinstance(f, AllOf | AnyOf):
        return any(goes_through(p) for p in f.parts)
    return isinstance(f, Negate) and goes_through(f.part)


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def _list_has(items: list[Any], kind: FieldKind, value: Any) -> bool:
    # Mirrors jsonb @> on an array: same JSON type and equal value.
    if kind is FieldKind.STRING_LIST:
        return any(isinstance(item, str) and item == value for item in items)
    return any(_is_number(item) and _json_number(item) == value for item in items)


def _compare_present(op: Op, kind: FieldKind, actual: Any, value: Any) -> bool:
    """Evaluate ``op`` when the stored value is present and well typed."""
    match op:
        case Op.EQ:
            return bool(actual == value)
        case Op.NE:
            return bool(actual != value)
        case Op.LT:
            return bool(actual < value)
        case Op.LE:
            return bool(actual <= value)
        case Op.GT:
            return bool(actual > value)
        case Op.GE:
            return bool(actual >= value)
        case Op.IN:
            return any(actual == v for v in value)
        case Op.NOT_IN:
            return all(actual != v for v in value)
        case Op.BETWEEN:
            return bool(value[0] <= actual <= value[1])
        case Op.BEGINS_WITH:
            return bool(actual.startswith(value))
        case Op.CONTAINS:
            if kind in LIST_KINDS:
                return _list_has(actual, kind, value)
            return bool(value in actual)
    raise InvalidFilter(f"unknown operator {op!r}")  # pragma: no cover


def _absent(op: Op, actual: Any, value: Any) -> bool:
    """IS [NOT] DISTINCT FROM semantics when either side is null; only EQ/NE take a None value."""
    if op is Op.EQ:
        return actual is None and value is None
    return op in (Op.NE, Op.NOT_IN) and not (actual is None and value is None)


Matcher = Callable[[Mapping[str, Any]], bool]


def matcher(f: Filter | None, kinds: Mapping[str, FieldKind]) -> Matcher:
    """``f`` checked and normalised once, as a function of a document: what a subscription
    applies to every change (``matches`` checks again on every call)."""
    if f is None:
        return lambda doc: True
    if isinstance(f, Compare):
        kind, value = normalise_compare(f, kinds)
        read, name, op = _READERS[kind], f.field, f.op

        def compare(doc: Mapping[str, Any]) -> bool:
            actual = read(doc.get(name))
            if actual is None or value is None:
                return _absent(op, actual, value)
            return _compare_present(op, kind, actual, value)

        return compare
    if isinstance(f, AllOf | AnyOf):
        parts = [matcher(p, kinds) for p in f.parts]
        combine = all if isinstance(f, AllOf) else any
        return lambda doc: combine(p(doc) for p in parts)
    if isinstance(f, Negate):
        inner = matcher(f.part, kinds)
        return lambda doc: not inner(doc)
    if isinstance(f, Through):
        raise InvalidFilter("a filter through a reference is evaluated by queries only")
    raise InvalidFilter(f"not a filter: {f!r}")


def matches(
    f: Filter | None, doc: Mapping[str, Any], kinds: Mapping[str, FieldKind]
) -> bool:
    """Whether ``doc`` satisfies ``f`` (None matches everything)."""
    return matcher(f, kinds)(doc)


# --------------------------------------------------------------------------
# Ordering and keyset cursors
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Desc:
    """Wraps a value so that tuple comparison orders it descending."""

    value: Any

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.value < self.value)

    def __gt__(self, other: _Desc) -> bool:
        return bool(other.value > self.value)

    def __le__(self, other: _Desc) -> bool:
        return bool(other.value <= self.value)

    def __ge__(self, other: _Desc) -> bool:
        return bool(other.value >= self.value)


def validate_order(
    order: Sequence[OrderKey], kinds: Mapping[str, FieldKind]
) -> list[FieldKind]:
    """The kind of each order key; raise InvalidFilter for unknown or list fields."""
    out = []
    for key in order:
        kind = _kind_of(key.field, kinds)
        if kind in LIST_KINDS:
            raise InvalidFilter(f"cannot order by list field {key.field!r}")
        out.append(kind)
    return out


def _key_from_values(
    values: Sequence[Any], order: Sequence[OrderKey], doc_id: str
) -> tuple[Any, ...]:
    parts: list[Any] = []
    for key, value in zip(order, values, strict=True):
        # A null flag first: ASC puts nulls last (flag 1), DESC first (flag 0).
        if key.descending:
            parts += [0, None] if value is None else [1, _Desc(value)]
        else:
            parts += [1, None] if value is None else [0, value]
    parts.append(doc_id)
    return tuple(parts)


def cursor_values(
    doc: Mapping[str, Any], order: Sequence[OrderKey], kinds: Mapping[str, FieldKind]
) -> tuple[Any, ...]:
    """The keyset cursor for ``doc``: one typed value per order key, then the id."""
    order_kinds = validate_order(order, kinds)
    values = [
        field_value(doc, k.field, kind)
        for k, kind in zip(order, order_kinds, strict=True)
    ]
    return (*values, doc["id"])


def sort_key(
    doc: Mapping[str, Any], order: Sequence[OrderKey], kinds: Mapping[str, FieldKind]
) -> tuple[Any, ...]:
    """A key sorting documents exactly like ``sql_filters.order_by_clauses``."""
    cursor = cursor_values(doc, order, kinds)
    return _key_from_values(cursor[:-1], order, cursor[-1])


def _cursor_value(kind: FieldKind, value: object) -> Any:
    if value is None:
        return None
    if kind is FieldKind.INT and isinstance(value, Decimal):
        # Floats stored in INT fields are read as decimals; keep absurd
        # exponents from a tampered token away from the database.
        if value.is_finite() and abs(value.adjusted()) < 1000:
            return value
        raise InvalidPageToken("page token does not fit this ordering")
    try:
        return _scalar_value(kind, value)
    except InvalidFilter as exc:
        raise InvalidPageToken(str(exc)) from None


def validate_cursor(
    order: Sequence[OrderKey], after: Sequence[Any], kinds: Mapping[str, FieldKind]
) -> tuple[Any, ...]:
    """Check a decoded cursor against ``order``; return it normalised.

    Raises :class:`InvalidPageToken` for a wrong arity or mistyped value, so a
    tampered token cannot reach the database as a type error.
    """
    order_kinds = validate_order(order, kinds)
    if len(after) != len(order) + 1 or not isinstance(after[-1], str):
        raise InvalidPageToken("page token does not fit this ordering")
    if text_problem(after[-1]) is not None:
        raise InvalidPageToken("page token does not fit this ordering")
    values = [
        _cursor_value(kind, v) for kind, v in zip(order_kinds, after[:-1], strict=True)
    ]
    return (*values, after[-1])


def cursor_key(
    after: Sequence[Any], order: Sequence[OrderKey], kinds: Mapping[str, FieldKind]
) -> tuple[Any, ...]:
    """The :func:`sort_key` position of a cursor from :func:`cursor_values`."""
    checked = validate_cursor(order, after, kinds)
    return _key_from_values(checked[:-1], order, checked[-1])


def is_after(
    doc: Mapping[str, Any],
    order: Sequence[OrderKey],
    after: Sequence[Any],
    kinds: Mapping[str, FieldKind],
) -> bool:
    """Whether ``doc`` sorts strictly after the cursor (like ``after_clause``)."""
    return sort_key(doc, order, kinds) > cursor_key(after, order, kinds)


# --------------------------------------------------------------------------
# Page tokens
# --------------------------------------------------------------------------

# orjson would write datetimes/decimals as plain strings; tag them so that
# decoding restores the type.
_DATETIME_TAG: Final = "t"
_DECIMAL_TAG: Final = "n"
_BIG_INT_TAG: Final = "i"  # orjson only handles 64-bit integers
_JSON_INT_MIN: Final = -(2**63)
_JSON_INT_MAX: Final = 2**64 - 1


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {_DATETIME_TAG: value.isoformat()}
    if isinstance(value, Decimal):
        return {_DECIMAL_TAG: str(value)}
    if isinstance(value, int) and not _JSON_INT_MIN <= value <= _JSON_INT_MAX:
        return {_BIG_INT_TAG: str(value)}
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"cannot put {type(value).__name__} in a page token")


def _decode_value(raw: Any) -> Any:
    if raw is None or isinstance(raw, str | int | float):
        return raw
    if isinstance(raw, dict) and len(raw) == 1:
        ((tag, text),) = raw.items()
        if tag == _DATETIME_TAG and isinstance(text, str):
            return datetime.fromisoformat(text)
        if tag == _DECIMAL_TAG and isinstance(text, str):
            return Decimal(text)
        if tag == _BIG_INT_TAG and isinstance(text, str) and len(text) <= 1000:
            return int(text)
    raise InvalidPageToken("malformed page token")


def encode_page_token(values: Sequence[Any]) -> str:
    """An opaque url-safe token for cursor ``values``.

    Values may be None, bool, int, float, str, datetime or Decimal; each comes
    back from :func:`decode_page_token` with its type (and UTC offset) intact.
    """
    payload = orjson.dumps([_encode_value(v) for v in values])
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")


def decode_page_token(token: str, n: int) -> tuple[Any, ...]:
    """The ``n`` values in ``token``; InvalidPageToken on garbage or wrong arity."""
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
        raise InvalidPageToken("malformed page token")
    try:
        padded = token.encode("ascii") + b"=" * (-len(token) % 4)
        raw = orjson.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
        if not isinstance(raw, list):
            raise InvalidPageToken("malformed page token")
        values = tuple(_decode_value(v) for v in raw)
    except InvalidPageToken:
        raise
    except (ValueError, ArithmeticError):
        # Covers bad base64/ascii/JSON, bad ISO strings and bad decimals alike.
        raise InvalidPageToken("malformed page token") from None
    if len(values) != n:
        raise InvalidPageToken(f"page token has {len(values)} values, expected {n}")
    return values
