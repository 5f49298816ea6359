"""Which referenced models a subscription's selection shows, so its stream follows them.

``orders { document { items { product { priceCents } } } }`` shows products: when one
changes, the orders that refer to it must be sent again (``statesync.feed.hub``). Only the
first reference from the subscribed model counts: a product's supplier shown through the
order is read when a frame is rendered, but its changes do not send the order again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from strawberry.types.nodes import SelectedField
from strawberry.utils.str_converters import to_camel_case

from statesync.models import FieldSpec, ListOf, ValueRef

MESSAGE_DOCUMENTS = frozenset({"document", "documents"})


def followed(fields: Sequence[FieldSpec], root: SelectedField) -> frozenset[str]:
    """The models ``root`` (a subscription's root field) shows through references."""
    found: set[str] = set()
    for selected in _fields(root.selections):
        if selected.name in MESSAGE_DOCUMENTS:
            _walk(fields, selected.selections, found)
    return frozenset(found)


def _fields(selections: Iterable[Any]) -> Iterable[SelectedField]:
    """The fields of a selection set, through fragments."""
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection
        else:
            yield from _fields(selection.selections)


def _walk(fields: Sequence[FieldSpec], selections: Iterable[Any], found: set[str]) -> None:
    by_name = {to_camel_case(f.name): f for f in fields}
    resolving = {to_camel_case(f.ref.relation or f.name): f.ref.target
                 for f in fields if f.ref is not None}
    for selected in _fields(selections):
        if selected.name in resolving and selected.selections:  # `product { ... }`, not an id
            found.add(resolving[selected.name])
            continue
        spec = by_name.get(selected.name)
        if spec is None or spec.ref is not None:
            continue
        shape = spec.type.shape
        if isinstance(shape, ListOf):
            shape = shape.item.shape
        if isinstance(shape, ValueRef):
            _walk(shape.fields, selected.selections, found)
