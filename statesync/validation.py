"""Validation of a document's fields against its model, for every write path.

GraphQL already types client input; this also guards backend commits and handler
results, and catches what GraphQL cannot (a patch nulling a required field, a value
outside :mod:`statesync.values`' domain).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pydantic

from statesync import values
from statesync.errors import BadInput
from statesync.models import EnumRef, JsonRef, ListOf, Scalar, TypeRef, ValueRef, fields_of


class Validator:
    def __init__(self, model_cls: type, max_depth: int = values.DEFAULT_MAX_DEPTH) -> None:
        self._adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(model_cls)
        self._max_depth = max_depth
        # Datetime fields arrive as ISO strings; only the parsed value tells whether it is
        # timezone-aware and in range, so models with one are checked once more, parsed.
        self._has_datetimes = any(_has_datetime(f.type) for f in fields_of(model_cls))

    def validate(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Normalized JSON fields (enums as values, datetimes as ISO strings), or BadInput."""
        _check_domain(fields, self._max_depth)
        try:
            raw = orjson.dumps(fields, default=_to_json)
        except TypeError as exc:
            raise BadInput(f"a value is not JSON-serializable: {exc}") from None
        try:
            # JSON mode so strict typing still accepts enum values and ISO datetimes.
            obj = self._adapter.validate_json(raw, strict=True)
        except pydantic.ValidationError as exc:
            raise _bad_input(exc) from None
        if self._has_datetimes:
            _check_domain(self._adapter.dump_python(obj), self._max_depth)
        result: dict[str, Any] = self._adapter.dump_python(obj, mode="json")
        return result


def _check_domain(fields: Any, max_depth: int) -> None:
    found = values.json_problem(fields, max_depth + 1)  # + 1: the document itself
    if found is not None:
        path, problem = found
        problems = [{"field": path, "message": problem}]
        raise BadInput(describe(problems), problems=problems)


def _has_datetime(ref: TypeRef) -> bool:
    shape = ref.shape
    if isinstance(shape, Scalar):
        return shape.kind.value == "datetime"
    if isinstance(shape, ListOf):
        return _has_datetime(shape.item)
    if isinstance(shape, ValueRef):
        return any(_has_datetime(f.type) for f in shape.fields)
    assert isinstance(shape, EnumRef | JsonRef)
    return False


def _to_json(value: Any) -> Any:
    if hasattr(value, "value"):  # an Enum member from Python callers
        return value.value
    raise TypeError(type(value).__name__)


def _bad_input(exc: pydantic.ValidationError) -> BadInput:
    problems = [
        {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
        for err in exc.errors(include_url=False)
    ]
    return BadInput(describe(problems), problems=problems)


def describe(problems: list[dict[str, str]]) -> str:
    """The message of a validation error listing ``problems``."""
    return "invalid document: " + "; ".join(f"{p['field']}: {p['message']}" for p in problems)
