"""Validation of a document's fields against its model, for every write path.

GraphQL already types client input; this also guards backend commits and handler
results, and catches what GraphQL cannot (a patch nulling a required field).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pydantic

from statesync.errors import BadInput


class Validator:
    def __init__(self, model_cls: type) -> None:
        self._adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(model_cls)

    def validate(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Normalized JSON fields (enums as values, datetimes as ISO strings), or BadInput."""
        try:
            raw = orjson.dumps(fields, default=_to_json)
        except TypeError as exc:
            raise BadInput(f"a value is not JSON-serializable: {exc}") from None
        try:
            # JSON mode so strict typing still accepts enum values and ISO datetimes.
            obj = self._adapter.validate_json(raw, strict=True)
        except pydantic.ValidationError as exc:
            raise _bad_input(exc) from None
        result: dict[str, Any] = self._adapter.dump_python(obj, mode="json")
        return result


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
