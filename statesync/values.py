"""The domain of values statesync stores: what a client or a handler may write, decided
without I/O, so that everything accepted can be stored, read back and published.

- **Text**: any Unicode string without NUL (PostgreSQL's text and jsonb cannot hold
  U+0000) and without lone surrogates (not encodable as UTF-8).
- **Integers**: from -2**63 to 2**63-1 (what JSONB, orjson and every client read exactly).
- **Floats**: finite. NaN and infinities have no JSON form; they were silently stored
  as ``null``. A float written with an exponent (``1e20``) may read back as an integer
  of the same value: JSON has one number type.
- **Instants**: timezone-aware, from 0001-01-02 to 9999-12-30 (UTC): inside what
  Python's ``datetime`` holds in every offset, and away from the values asyncpg maps
  to PostgreSQL's ``infinity``.
- **Nesting**: JSON values at most ``max_depth`` levels deep.

Every check raises :class:`statesync.errors.BadInput` naming the offending path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from statesync.errors import BadInput

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
MIN_INSTANT: Final = datetime(1, 1, 2, tzinfo=UTC)
MAX_INSTANT: Final = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)
DEFAULT_MAX_DEPTH: Final = 32
# PostgreSQL refuses index rows over ~2.7 kB; (model, id) is one. 512 characters of up to
# four UTF-8 bytes each stay clear of it; `max_id_length` may lower it, never raise it.
MAX_ID_LENGTH: Final = 512


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None."""
    if "\x00" in value:
        return "contains a NUL character (U+0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def check_text(value: str, field: str, *, max_length: int | None = None) -> str:
    problem = text_problem(value)
    if problem is None and max_length is not None and len(value) > max_length:
        problem = f"is {len(value)} characters long; the limit is {max_length}"
    if problem is not None:
        raise BadInput(f"{field} {problem}", field=field)
    return value


def check_id(value: str, field: str, max_length: int) -> str:
    """A document id, mutation id or event key: non-empty text of bounded length."""
    if value == "":
        raise BadInput(f"{field} must not be empty", field=field)
    return check_text(value, field, max_length=max_length)


def check_instant(value: datetime, field: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise BadInput(f"{field} must be a timezone-aware datetime", field=field)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not MIN_INSTANT <= utc <= MAX_INSTANT:
        raise BadInput(f"{field} must lie between {MIN_INSTANT.date()} and {MAX_INSTANT.date()} UTC",
                       field=field)
    return value


class TooManyValues(Exception):
    """More than ``max_values`` JSON values: refused before the rest is looked at."""


def json_problem(value: Any, max_depth: int = DEFAULT_MAX_DEPTH, max_values: int | None = None
                 ) -> tuple[str, str] | None:
    """The first ``(path, problem)`` that keeps ``value`` out of the domain, or None.

    Iterative, so a hostile nesting depth costs no recursion; with ``max_values``, it
    stops (raising :class:`TooManyValues`) once it has seen that many values."""
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    seen = 0
    while stack:
        path, item, depth = stack.pop()
        seen += 1
        if max_values is not None and seen > max_values:
            raise TooManyValues
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return path, problem
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                return path, "is an integer outside the 64-bit range"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, "is not a finite number (NaN and infinities have no JSON form)"
        elif isinstance(item, Mapping | list | tuple):
            if depth >= max_depth:
                return path, f"nests deeper than {max_depth} levels"
            if isinstance(item, Mapping):
                for key, child in item.items():
                    if not isinstance(key, str):
                        return _join(path, str(key)), "has a key that is not a string"
                    key_problem = text_problem(key)
                    if key_problem is not None:
                        return _join(path, repr(key)), "has a key that " + key_problem
                    stack.append((_join(path, key), child, depth + 1))
            else:
                stack.extend((_join(path, str(i)), child, depth + 1) for i, child in enumerate(item))
        elif isinstance(item, datetime):
            try:
                check_instant(item, path or "value")
            except BadInput as exc:
                return path, exc.message.removeprefix(path or "value").strip()
    return None


def check_json(value: Any, field: str, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    found = json_problem(value, max_depth)
    if found is not None:
        path, problem = found
        where = _join(field, path) if path else field
        raise BadInput(f"{where} {problem}", field=where)
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
