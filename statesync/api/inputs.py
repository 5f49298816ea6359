"""Turning strawberry input objects into the plain values the core works with."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from strawberry.types.unset import UNSET

from statesync.errors import BadInput
from statesync.filters import (
    AllOf,
    AnyOf,
    Compare,
    FieldKind,
    Filter,
    Negate,
    Op,
    OrderKey,
    Through,
)

THROUGH = "__through"  # the suffix of a where input's attribute that filters a reference


@dataclasses.dataclass(frozen=True, slots=True)
class Referenced:
    """What a where input's filter through a reference tests: the reference (a field of the
    model), and the model it names, with that model's filterable fields."""

    field: str
    model: str
    kinds: Mapping[str, FieldKind]

_OPS = {"eq": Op.EQ, "ne": Op.NE, "lt": Op.LT, "le": Op.LE, "gt": Op.GT, "ge": Op.GE,
        "in_": Op.IN, "not_in": Op.NOT_IN, "contains": Op.CONTAINS,
        "begins_with": Op.BEGINS_WITH, "between": Op.BETWEEN}


def plain(value: Any) -> Any:
    """A strawberry input value as JSON-ready data; unset fields are left out."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not UNSET}
    return value


def _set_fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
            if getattr(obj, f.name) is not UNSET}


def to_filter(where: Any, kinds: Mapping[str, FieldKind],
              through: Mapping[str, Referenced] | None = None) -> Filter | None:
    """``OrderWhere`` → filter AST. Several conditions in one object all must hold.
    ``through``: the references it may filter through, by attribute (None: inside one)."""
    if where is None or where is UNSET:
        return None
    parts: list[Filter] = []
    for name, condition in _set_fields(where).items():
        if condition is None:
            continue
        if name == "and_":
            parts.append(AllOf(tuple(p for w in condition if (p := to_filter(w, kinds, through)))))
        elif name == "or_":
            parts.append(AnyOf(tuple(p for w in condition if (p := to_filter(w, kinds, through)))))
        elif name == "not_":
            inner = to_filter(condition, kinds, through)
            parts.append(Negate(inner if inner is not None else AllOf(())))
        elif name.endswith(THROUGH):
            referenced = (through or {}).get(name)
            if referenced is None:
                raise BadInput("a filter goes through one reference, not a reference's "
                               "reference", field=name.removesuffix(THROUGH))
            inner = to_filter(condition, referenced.kinds, None)
            parts.append(Through(referenced.field, referenced.model,
                                 inner if inner is not None else AllOf(()),
                                 tuple(sorted(referenced.kinds.items()))))
        else:
            for op_name, operand in _set_fields(condition).items():
                if operand is None and _OPS[op_name] not in (Op.EQ, Op.NE):
                    continue  # ``eq: null`` / ``ne: null`` test for null; other ops ignore null
                parts.append(Compare(name, _OPS[op_name], _operand(_OPS[op_name], plain(operand))))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _operand(op: Op, value: Any) -> Any:
    return tuple(value) if op in (Op.IN, Op.NOT_IN, Op.BETWEEN) else value


def to_order(order: list[Any] | None) -> tuple[OrderKey, ...]:
    if not order:
        return ()
    return tuple(OrderKey(o.field.value, o.direction.value == "DESC") for o in order)
