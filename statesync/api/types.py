"""GraphQL types generated from a model: output, inputs, filters, ordering, pages, changes.

Names follow what Amplify and Hasura users know: ``Order``, ``OrderInput``,
``OrderPatch``, ``OrderWhere``, ``OrderOrder``, ``OrderConnection``,
``OrderCommit``, ``OrderChange``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

import strawberry
from strawberry.scalars import JSON
from strawberry.types.unset import UNSET
from strawberry.utils.str_converters import to_camel_case

from statesync.api.inputs import THROUGH
from statesync.api.views import Converter, DocumentView, each, parse_datetime, view_class
from statesync.filters import FieldKind
from statesync.models import (
    EnumRef,
    FieldSpec,
    JsonRef,
    ListOf,
    ModelSpec,
    Scalar,
    TypeRef,
    ValueRef,
)

REFERENCE = "statesync.reference"  # metadata of the output fields that resolve a reference


@strawberry.enum(description="What a subscription message says happened.")
class ChangeOp(enum.Enum):
    SNAPSHOT = "SNAPSHOT"
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"
    REMOVED = "REMOVED"
    EXPIRED = "EXPIRED"
    RESYNC = "RESYNC"


class ChangeMessage:
    """Base of every generated ``<Model>Change``: what the fan-out recognises a message by
    (see statesync.api.shared_execution). A message about a change carries its
    ``changed_fields``; snapshots and RESYNC do not."""

    op: ChangeOp
    cursor: str
    id: str | None
    changed_fields: list[str] | None


@strawberry.type(description="The change of a referenced document that a message shows: the "
                            "document it carries did not change, what it refers to did.")
class ReferenceChange:
    model: str
    id: strawberry.ID


@strawberry.type(description="How an update based on an older version was applied to a newer "
                            "one, by the model's conflict strategy.")
class ConflictResolution:
    strategy: str = strawberry.field(description="merge or custom")
    based_on: int = strawberry.field(description="The expectedVersion the update was made against.")
    applied: list[str] = strawberry.field(
        description="The fields (paths such as address.city) that took the update's value.")
    kept: list[str] = strawberry.field(
        description="The fields the update changed that kept the server's value.")


def _model_field(name: str) -> Any:
    return strawberry.field(default=name, description=(
        f"Always {name}: the typename of the document. With `id`, what a normalized client "
        "cache (Apollo, urql) needs to evict a document that was DELETED or EXPIRED."))


@strawberry.enum
class SortDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


def _filter_input(name: str, value_type: Any, ops: tuple[str, ...]) -> type:
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    for op in ops:
        if op in ("in", "not_in"):
            annotations[f"{op}_" if op == "in" else op] = Optional[list[value_type]]  # noqa: UP045
        elif op == "between":
            annotations[op] = Optional[list[value_type]]  # noqa: UP045
        else:
            annotations[op] = Optional[value_type]  # noqa: UP045
    for attr in annotations:
        graphql_name = "in" if attr == "in_" else None
        description = "inclusive [low, high]" if attr == "between" else None
        namespace[attr] = strawberry.field(default=UNSET, name=graphql_name, description=description)
    namespace["__annotations__"] = annotations
    return strawberry.input(type(name, (), namespace))


_ORDERED = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "between")
_STRINGY = (*_ORDERED, "contains", "begins_with")
SCALAR_FILTERS: dict[FieldKind, type] = {
    FieldKind.STRING: _filter_input("StringFilter", str, _STRINGY),
    FieldKind.ID: _filter_input("IDFilter", strawberry.ID, _STRINGY),
    FieldKind.INT: _filter_input("IntFilter", int, _ORDERED),
    FieldKind.FLOAT: _filter_input("FloatFilter", float, _ORDERED),
    FieldKind.BOOL: _filter_input("BooleanFilter", bool, ("eq", "ne")),
    FieldKind.DATETIME: _filter_input("DateTimeFilter", datetime, _ORDERED),
    FieldKind.STRING_LIST: _filter_input("StringListFilter", str, ("contains",)),
    FieldKind.INT_LIST: _filter_input("IntListFilter", int, ("contains",)),
}


@dataclass(frozen=True, slots=True)
class ModelTypes:
    """The generated GraphQL types of one model, and how to read documents into them."""

    spec: ModelSpec
    output: type
    view: type[DocumentView]
    create_input: type
    patch_input: type
    where: type
    order: type
    order_field: type[enum.Enum]
    connection: type
    edge: type
    commit: type
    change: type


def reference_names(f: FieldSpec) -> tuple[str, str]:
    """A reference's output fields: the one resolving it, and the one holding its raw id(s):
    ``product`` → ``productId``, ``tags`` → ``tagIds``; with a relation, the field itself
    holds the id (``sku`` and ``product``)."""
    assert f.ref is not None
    if f.ref.relation is not None:
        return f.ref.relation, f.name
    return f.name, reference_id_name(f)


def filterable_references(spec: ModelSpec) -> list[FieldSpec]:
    """The references a where input may filter through: one id at the top of the document."""
    return [f for f in spec.fields
            if f.ref is not None and not isinstance(f.type.shape, ListOf)]


def reference_id_name(f: FieldSpec) -> str:
    if isinstance(f.type.shape, ListOf):
        return (f.name[:-1] if f.name.endswith("s") else f.name) + "_ids"
    return f.name + "_id"


class TypeFactory:
    """Builds types for every model of a schema, sharing enums and embedded values.

    Models may refer to each other in any order (and in circles), so every model's output
    class exists, empty, before any is built: a reference's resolver names its target's
    class, which strawberry reads only when the schema is assembled."""

    def __init__(self, specs: Sequence[ModelSpec] = ()) -> None:
        self._enums: dict[type[enum.Enum], Any] = {}
        self._enum_filters: dict[type[enum.Enum], type] = {}
        self._values: dict[type, tuple[type, type[DocumentView], type]] = {}
        self._outputs: dict[str, type] = {spec.name: type(spec.name, (), {}) for spec in specs}
        self._views: dict[str, type[DocumentView]] = {}
        self._where_shells: dict[str, type] = {}
        self._value_patches: dict[type, type] = {}

    # ---- leaf and embedded types ------------------------------------------------------------

    def _enum(self, cls: type[enum.Enum]) -> Any:
        if cls not in self._enums:
            self._enums[cls] = strawberry.enum(cls)
        return self._enums[cls]

    def _value(self, ref: ValueRef) -> tuple[type, type[DocumentView], type]:
        if ref.cls not in self._values:
            output, view = self._object(ref.cls.__name__, ref.fields, meta=False)
            create = self._input(f"{ref.cls.__name__}Input", ref.fields, partial=False)
            self._values[ref.cls] = (output, view, create)
        return self._values[ref.cls]

    def _value_patch(self, ref: ValueRef) -> type:
        """``AddressPatch``: an embedded object's fields, each optional, for an update that
        changes some of them (``documents.patched``)."""
        if ref.cls not in self._value_patches:
            self._value_patches[ref.cls] = self._input(f"{ref.cls.__name__}Patch", ref.fields,
                                                       partial=True)
        return self._value_patches[ref.cls]

    def _graphql_type(self, ref: TypeRef, *, for_input: bool) -> tuple[Any, Converter | None]:
        shape = ref.shape
        base: Any
        convert: Converter | None = None
        if isinstance(shape, Scalar):
            base = shape.py
            # A float written with an exponent may read back from JSONB as an integer
            # (statesync.values); GraphQL's Float refuses large ones, so make it a float again.
            converters: dict[FieldKind, Converter] = {FieldKind.DATETIME: parse_datetime,
                                                      FieldKind.FLOAT: float}
            convert = converters.get(shape.kind)
        elif isinstance(shape, EnumRef):
            base = self._enum(shape.cls)
        elif isinstance(shape, JsonRef):
            base = JSON
        elif isinstance(shape, ValueRef):
            output, view, create = self._value(shape)
            base, convert = (create, None) if for_input else (output, view)
        else:
            assert isinstance(shape, ListOf)
            item, item_convert = self._graphql_type(shape.item, for_input=for_input)
            base, convert = list[item], (each(item_convert) if item_convert else None)  # type: ignore[valid-type]
        return (Optional[base] if ref.nullable else base), convert  # noqa: UP045

    # ---- object and input types -------------------------------------------------------------

    def _object(self, name: str, fields: tuple[FieldSpec, ...], *, meta: bool
                ) -> tuple[type, type[DocumentView]]:
        annotations: dict[str, Any] = {}
        namespace: dict[str, Any] = {}
        converters: dict[str, Converter] = {}
        if meta:
            annotations.update(id=strawberry.ID, version=int, created_at=datetime,
                               updated_at=datetime, expires_at=Optional[datetime])  # noqa: UP045
        taken = {f.name for f in fields}
        for f in fields:
            if f.ref is not None:
                added = self._reference(f)
                clash = sorted((set(added) - {f.name}) & taken)
                if clash:
                    raise TypeError(f"{name}.{f.name}: its reference's output field {clash[0]!r} "
                                    "is another field's name; name it with ref(relation=...)")
                taken |= set(added)
                namespace.update(added)
                continue
            annotations[f.name], convert = self._graphql_type(f.type, for_input=False)
            if convert is not None:
                converters[f.name] = convert
            if f.description:
                namespace[f.name] = strawberry.field(description=f.description)
        namespace["__annotations__"] = annotations
        shell = self._outputs.get(name) if meta else None
        if shell is None:
            shell = type(name, (), {})
        for key, value in namespace.items():
            setattr(shell, key, value)
        output = strawberry.type(shell)
        view = view_class(name, converters)
        if meta:
            self._views[name] = view
        return output, view

    def _reference(self, f: FieldSpec) -> dict[str, Any]:
        """A reference's two output fields: the document(s) it names, resolved in batches
        (null, or left out of a list, where the reader may not see one or it is gone), and
        the raw id(s)."""
        assert f.ref is not None
        target, name = f.ref.target, f.name
        if target not in self._outputs:
            raise TypeError(f"{f.name}: refers to {target!r}, which is not a model of this schema")
        many = isinstance(f.type.shape, ListOf)
        views = self._views

        # Only text is an id: a value of another type (written by SQL, or before the field
        # became a reference) names nothing, and must not fail the batch it would join.
        async def resolve_one(root: Any, info: strawberry.Info) -> Any:
            doc_id = root._data.get(name)
            if not isinstance(doc_id, str):
                return None
            found = await info.context.referenced(target).load(doc_id)
            return None if found is None else views[target](found)

        async def resolve_many(root: Any, info: strawberry.Info) -> Any:
            stored = root._data.get(name)
            ids = [i for i in stored if isinstance(i, str)] if isinstance(stored, list) else []
            found = await info.context.referenced(target).load_many(ids)
            return [views[target](doc) for doc in found if doc is not None]

        def raw_ids(root: Any) -> Any:
            return root._data.get(name)

        shell = self._outputs[target]
        resolve: Any = resolve_many if many else resolve_one
        resolve.__annotations__ = {"info": strawberry.Info,
                                   "return": list[shell] if many else Optional[shell]}  # type: ignore[valid-type]  # noqa: UP045
        # The generated `<field>Id` is an ID; a field that keeps its own name (relation=) keeps
        # its declared type, as its input does, so clients written against it still work.
        raw_type: Any = self._graphql_type(f.type, for_input=False)[0]
        if f.ref.relation is None:
            ids: Any = list[strawberry.ID] if many else strawberry.ID
            raw_type = Optional[ids] if f.type.nullable else ids  # noqa: UP045
        raw_ids.__annotations__ = {"return": raw_type}
        described = f.description or (f"The {target} documents this refers to" if many
                                      else f"The {target} this refers to")
        resolved, raw = reference_names(f)
        return {
            resolved: strawberry.field(resolver=resolve, metadata={REFERENCE: True}, description=(
                f"{described} (null where you may not read it, or it does not exist)"
                if not many else f"{described}: those you may read")),
            raw: strawberry.field(resolver=raw_ids, description=(
                f"The id{'s' if many else ''} of the {target} this refers to")),
        }

    def _input(self, name: str, fields: tuple[FieldSpec, ...], *, partial: bool,
               expires: bool = False, preset: frozenset[str] = frozenset()) -> type:
        annotations: dict[str, Any] = {}
        namespace: dict[str, Any] = {}
        for f in fields:
            if not f.clients_may_write:
                continue
            graphql_type, _ = self._graphql_type(f.type, for_input=True)
            if partial and isinstance(f.type.shape, ValueRef):  # a patch of an embedded object
                graphql_type = self._value_patch(f.type.shape)
            # A field some role's rule presets from the session is not the client's to send
            # (for that role); for the others the model still requires it, on commit.
            optional = partial or not f.required or f.name in preset
            annotations[f.name] = Optional[graphql_type] if optional else graphql_type  # noqa: UP045
            if optional:
                namespace[f.name] = strawberry.field(default=UNSET, description=f.description)
        if expires:
            annotations["expires_at"] = Optional[datetime]  # noqa: UP045
            namespace["expires_at"] = strawberry.field(
                default=UNSET, description="When the document expires (overrides the model TTL)."
            )
        namespace["__annotations__"] = annotations
        return strawberry.input(type(name, (), namespace))

    # ---- query shapes -----------------------------------------------------------------------

    def _enum_filter(self, cls: type[enum.Enum]) -> type:
        if cls not in self._enum_filters:
            self._enum_filters[cls] = _filter_input(
                f"{cls.__name__}Filter", self._enum(cls), ("eq", "ne", "in", "not_in")
            )
        return self._enum_filters[cls]

    def _where(self, spec: ModelSpec) -> type:
        cls = self._where_shells.setdefault(spec.name, type(f"{spec.name}Where", (), {}))
        annotations: dict[str, Any] = {}
        namespace: dict[str, Any] = {}
        for name, kind in spec.filter_kinds().items():
            if kind is FieldKind.ENUM:
                ref = spec.field(name).type.shape
                assert isinstance(ref, EnumRef)
                filter_type = self._enum_filter(ref.cls)
            else:
                filter_type = SCALAR_FILTERS[kind]
            annotations[name] = Optional[filter_type]  # noqa: UP045
            namespace[name] = strawberry.field(default=UNSET)
        for f in filterable_references(spec):
            assert f.ref is not None
            resolved, raw = reference_names(f)
            # Named as the output type names them: the id, and the document through it.
            namespace[f.name] = strawberry.field(default=UNSET, name=to_camel_case(raw))
            target: Any = self._where_shells.setdefault(
                f.ref.target, type(f"{f.ref.target}Where", (), {}))
            annotations[f.name + THROUGH] = Optional[target]  # noqa: UP045
            namespace[f.name + THROUGH] = strawberry.field(
                default=UNSET, name=to_camel_case(resolved),
                description=f"The {f.ref.target} it refers to matches this (one level deep; "
                            "queries only)")
        recursive: Any = cls  # the input refers to itself: and/or/not take more of the same
        annotations.update(and_=Optional[list[recursive]], or_=Optional[list[recursive]],  # noqa: UP045
                           not_=Optional[recursive])  # noqa: UP045
        namespace.update(and_=strawberry.field(default=UNSET, name="and"),
                         or_=strawberry.field(default=UNSET, name="or"),
                         not_=strawberry.field(default=UNSET, name="not"))
        for key, value in namespace.items():
            setattr(cls, key, value)
        cls.__annotations__ = annotations
        return strawberry.input(cls)

    def _order(self, spec: ModelSpec) -> tuple[type, type[enum.Enum]]:
        sortable = [n for n, k in spec.filter_kinds().items()
                    if k not in (FieldKind.STRING_LIST, FieldKind.INT_LIST)]
        field_enum = enum.Enum(f"{spec.name}Field", {n.upper(): n for n in sortable})  # type: ignore[misc]
        graphql_enum = strawberry.enum(field_enum)
        order = strawberry.input(type(f"{spec.name}Order", (), {
            "__annotations__": {"field": graphql_enum, "direction": SortDirection},
            "direction": SortDirection.ASC,
        }))
        return order, field_enum

    def model(self, spec: ModelSpec) -> ModelTypes:
        output, view = self._object(spec.name, spec.fields, meta=True)
        edge = strawberry.type(type(f"{spec.name}Edge", (), {
            "__annotations__": {"cursor": str, "node": output}}))
        connection = strawberry.type(type(f"{spec.name}Connection", (), {
            "__annotations__": {"nodes": list[output], "edges": list[edge],  # type: ignore[valid-type]
                                "page_info": PageInfo}}))
        commit = strawberry.type(type(f"{spec.name}Commit", (), {
            "__doc__": "The result of a committed mutation.",
            "__annotations__": {
                "op": ChangeOp, "id": strawberry.ID, "version": int,
                "document": Optional[output],  # noqa: UP045
                "changed_fields": list[str], "event_ids": list[strawberry.ID],
                "replayed": bool, "resolution": Optional[ConflictResolution],  # noqa: UP045
                "model": str,
            },
            "model": _model_field(spec.name),
            "resolution": strawberry.field(
                default=None, description="Set when the update was based on an older version "
                                          "and the model's conflict strategy merged it."),
        }))
        change = strawberry.type(type(f"{spec.name}Change", (ChangeMessage,), {
            "__doc__": "One subscription message: a snapshot, a change, or a request to resync.",
            "__annotations__": {
                "op": ChangeOp, "cursor": str,
                "id": Optional[strawberry.ID], "version": Optional[int],  # noqa: UP045
                "document": Optional[output],  # noqa: UP045
                "changed_fields": Optional[list[str]],  # noqa: UP045
                "documents": Optional[list[output]],  # type: ignore[valid-type]  # noqa: UP045
                "has_more": Optional[bool], "mutation_id": Optional[strawberry.ID],  # noqa: UP045
                "resolution": Optional[ConflictResolution],  # noqa: UP045
                "via": Optional[ReferenceChange],  # noqa: UP045
                "model": str,
            },
            "model": _model_field(spec.name),
            "via": strawberry.field(
                default=None, description="Set when this UPDATED is sent because a document "
                                          "the selection shows through a reference changed: "
                                          "the version is the same, what it shows is not."),
            "resolution": strawberry.field(
                default=None, description="On a change that merged an update based on an older "
                                          "version: what was applied and what was kept."),
            "has_more": strawberry.field(
                default=None, description="On SNAPSHOT: more chunks of the snapshot follow."),
            "mutation_id": strawberry.field(
                default=None, description="The mutationId of the commit that made this change."),
        }))
        order, order_field = self._order(spec)
        return ModelTypes(
            spec=spec, output=output, view=view,
            create_input=self._input(f"{spec.name}Input", spec.fields, partial=False, expires=True,
                                     preset=frozenset(k for p in spec.options.access for k in p.presets)),
            patch_input=self._input(f"{spec.name}Patch", spec.fields, partial=True, expires=True),
            where=self._where(spec), order=order, order_field=order_field,
            connection=connection, edge=edge, commit=commit, change=change,
        )
