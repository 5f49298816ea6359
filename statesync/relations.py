"""References between models, as pure functions of the declared type tree and of documents.

A reference (``statesync.ref``) is a string field holding another model's document id, at
the top of a document (``order.customer``), inside embedded values (``order.items[].product``)
or as a list of ids (``post.tags``). A :class:`RefPath` says where one sits; from it come
the ids a document refers to, the JSONB containment pattern that finds the documents
referring to an id (``statesync.store.statements.referring``), and what ``set_null`` leaves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from statesync.models import FieldSpec, ListOf, ModelSpec, OnDelete, ValueRef

EACH = None  # a path step into every element of a list


@dataclass(frozen=True, slots=True)
class RefPath:
    """Where one reference sits in the documents of ``model``: ``steps`` are field names,
    with :data:`EACH` for "every element of this list" (``("items", EACH, "product")``)."""

    model: str
    steps: tuple[str | None, ...]
    target: str
    on_delete: OnDelete
    nullable: bool  # set_null may write None there (else: an id taken out of its list)
    must_exist: bool = True

    @property
    def field(self) -> str:
        """The document's top-level field that holds it."""
        first = self.steps[0]
        assert first is not None
        return first

    @property
    def label(self) -> str:
        """``Order.items[].product``, for errors and docs."""
        text = ".".join("[]" if step is EACH else step for step in self.steps)
        return f"{self.model}.{text.replace('.[]', '[]')}"


def paths_of(spec: ModelSpec) -> tuple[RefPath, ...]:
    return tuple(_paths(spec.name, spec.fields, ()))


def _paths(model: str, fields: Sequence[FieldSpec], prefix: tuple[str | None, ...]
           ) -> Iterable[RefPath]:
    for f in fields:
        steps = (*prefix, f.name)
        if f.ref is not None:
            if isinstance(f.type.shape, ListOf):
                yield RefPath(model, (*steps, EACH), f.ref.target, f.ref.on_delete, False,
                              f.ref.must_exist)
            else:
                yield RefPath(model, steps, f.ref.target, f.ref.on_delete, f.type.nullable,
                              f.ref.must_exist)
            continue
        shape = f.type.shape
        if isinstance(shape, ListOf) and isinstance(shape.item.shape, ValueRef):
            yield from _paths(model, shape.item.shape.fields, (*steps, EACH))
        elif isinstance(shape, ValueRef):
            yield from _paths(model, shape.fields, steps)


def referenced_ids(document: Mapping[str, Any] | None, path: RefPath) -> set[str]:
    """The ids ``document`` refers to at ``path``."""
    found: set[str] = set()
    _collect(document, path.steps, found)
    return found


def _collect(value: Any, steps: Sequence[str | None], found: set[str]) -> None:
    if not steps:
        if isinstance(value, str):
            found.add(value)
        return
    step, rest = steps[0], steps[1:]
    if step is EACH:
        if isinstance(value, list):
            for item in value:
                _collect(item, rest, found)
    elif isinstance(value, Mapping) and step in value:
        _collect(value[step], rest, found)


def containment(path: RefPath, target_id: str) -> Any:
    """The JSONB value ``v`` such that ``data @> v`` holds exactly when the document refers
    to ``target_id`` at ``path`` (arrays in a pattern match any element)."""
    pattern: Any = target_id
    for step in reversed(path.steps):
        pattern = [pattern] if step is EACH else {step: pattern}
    return pattern


def without(document: Mapping[str, Any], path: RefPath, target_id: str) -> dict[str, Any]:
    """``path``'s top-level field with every reference to ``target_id`` cleared: set to None
    where the field is nullable, taken out of its list where it is a list of ids."""
    return {path.field: _clear(document.get(path.field), path.steps[1:], path, target_id)}


def _clear(value: Any, steps: Sequence[str | None], path: RefPath, target_id: str) -> Any:
    if not steps:
        return None if value == target_id else value
    step, rest = steps[0], steps[1:]
    if step is EACH:
        if not isinstance(value, list):
            return value
        if not rest:  # a list of ids: the id goes
            return [item for item in value if item != target_id]
        return [_clear(item, rest, path, target_id) for item in value]
    if isinstance(value, Mapping) and step in value:
        return {**value, step: _clear(value[step], rest, path, target_id)}
    return value


@dataclass(frozen=True, slots=True)
class Relations:
    """Every reference of a deployment's models, by the model that holds it and by target."""

    by_model: Mapping[str, tuple[RefPath, ...]]
    by_target: Mapping[str, tuple[RefPath, ...]]

    @classmethod
    def of(cls, specs: Sequence[ModelSpec]) -> Relations:
        names = {spec.name for spec in specs}
        by_model = {spec.name: paths_of(spec) for spec in specs}
        by_target: dict[str, list[RefPath]] = {}
        for paths in by_model.values():
            for path in paths:
                if path.target not in names:
                    raise TypeError(f"{path.label}: refers to {path.target!r}, which is not a "
                                    f"model of this schema ({', '.join(sorted(names))})")
                by_target.setdefault(path.target, []).append(path)
        return cls(by_model, {target: tuple(p) for target, p in by_target.items()})

    def referring_to(self, target: str) -> tuple[RefPath, ...]:
        return self.by_target.get(target, ())

    def ruling_deletes_of(self, target: str) -> tuple[RefPath, ...]:
        """The references to ``target`` whose on_delete rule does something."""
        return tuple(p for p in self.referring_to(target) if p.on_delete != "keep")

    def from_model(self, model: str) -> tuple[RefPath, ...]:
        return self.by_model.get(model, ())
