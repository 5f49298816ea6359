"""Declaring models: ``@model`` documents, ``@value`` embedded objects, ``field()`` options.

Declarations only mark classes; :func:`statesync.loader.load_models` collects them,
and :class:`ModelSpec` turns a class into the type tree from which the GraphQL API
(``statesync.api.types``) and validation (``statesync.validation``) are generated.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar, get_args, overload

import pydantic

from statesync.access import ModelRules, Permission
from statesync.conflicts import Declared, Merge, Strategy, strategy_of
from statesync.filters import FieldKind

T = TypeVar("T")

META_FIELDS = ("id", "version", "created_at", "updated_at", "expires_at")
_MARK = "__statesync__"
_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")

@dataclass(frozen=True, slots=True)
class ModelOptions:
    ttl: timedelta | None
    conflicts: Strategy
    plural: str | None
    access: tuple[Permission, ...] = ()


@dataclass(frozen=True, slots=True)
class ValueOptions:
    pass


OnDelete = Literal["restrict", "set_null", "cascade", "keep"]
ON_DELETE: tuple[str, ...] = get_args(OnDelete)


@dataclass(frozen=True, slots=True)
class Reference:
    """A field that holds the id of another model's document (``statesync.ref``)."""

    target: str  # the model's name
    on_delete: OnDelete = "restrict"
    relation: str | None = None  # the output field that resolves it (None: the field's name)
    must_exist: bool = True  # a write must name live documents


@dataclass(frozen=True, slots=True)
class FieldOptions:
    clients_may_write: bool = True
    description: str | None = None
    ref: Reference | None = None


def field(
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    clients_may_write: bool = True,
    description: str | None = None,
) -> Any:
    """A model field with options; ``clients_may_write=False`` keeps it out of client inputs."""
    options = FieldOptions(clients_may_write=clients_may_write, description=description)
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={"statesync": options}
    )


def ref(
    target: type | str,
    *,
    on_delete: OnDelete = "restrict",
    relation: str | None = None,
    must_exist: bool = True,
    default: Any = dataclasses.MISSING,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    clients_may_write: bool = True,
    description: str | None = None,
) -> Any:
    """A reference to a document of the model ``target`` (its class, or its name for one
    declared elsewhere). The field is annotated ``str`` (``str | None``, or ``list[str]`` for
    several) and stores the id; the API resolves it to the document, in batches, and keeps
    subscriptions that select through it live.

    ``relation``: the name of the output field that resolves it; by default the field's own
    name, the id(s) then being ``<field>Id`` (``<field>Ids``); with a relation, the field
    keeps its name for the id (``sku: String!`` beside ``product: Product``).
    ``must_exist``: every id a write names must be a live document (False: a dangling id
    is stored, and resolves to null, as in Amplify and Firestore).
    ``on_delete``: deleting a referenced document is refused (``"restrict"``), clears the
    reference (``"set_null"``: a nullable field, or an id taken out of a list), deletes the
    referring document too (``"cascade"``) or leaves the id dangling (``"keep"``)."""
    name = target if isinstance(target, str) else target.__name__
    if on_delete not in ON_DELETE:
        raise TypeError(f"ref({name!r}): on_delete must be one of {', '.join(ON_DELETE)}")
    options = FieldOptions(clients_may_write=clients_may_write, description=description,
                           ref=Reference(name, on_delete, relation, must_exist))
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={"statesync": options}
    )


def _declare(cls: type[T]) -> type[T]:
    decorated = dataclasses.dataclass(kw_only=True)(cls)
    # Unknown keys are an error, not silently dropped data.
    decorated.__pydantic_config__ = pydantic.ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    return decorated


@overload
def model(cls: type[T], /) -> type[T]: ...
@overload
def model(
    *, ttl: timedelta | None = None, conflicts: Declared = "reject", plural: str | None = None,
    access: Iterable[Permission] = (),
) -> Callable[[type[T]], type[T]]: ...
def model(
    cls: type[T] | None = None,
    /,
    *,
    ttl: timedelta | None = None,
    conflicts: Declared = "reject",
    plural: str | None = None,
    access: Iterable[Permission] = (),
) -> type[T] | Callable[[type[T]], type[T]]:
    """Declare a state document type. Its GraphQL queries, mutations and subscriptions are
    generated; ``access`` says which roles may do what with it (``statesync.allow``; none:
    only the admin); ``conflicts`` what an update based on an old version does
    (``statesync.conflicts``: ``"reject"``, ``"merge"``, ``statesync.merge(...)`` or a
    resolver function)."""
    strategy = strategy_of(conflicts)

    def mark(target: type[T]) -> type[T]:
        decorated = _declare(target)
        setattr(decorated, _MARK, ModelOptions(ttl=ttl, conflicts=strategy, plural=plural,
                                               access=tuple(access)))
        return decorated

    return mark(cls) if cls is not None else mark


def value(cls: type[T]) -> type[T]:
    """Declare an object embedded in documents (a line item, an address): no id, no version."""
    decorated = _declare(cls)
    setattr(decorated, _MARK, ValueOptions())
    return decorated


def is_model(obj: object) -> bool:
    return isinstance(obj, type) and isinstance(obj.__dict__.get(_MARK), ModelOptions)


# ---- the type tree ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scalar:
    kind: FieldKind
    py: type


@dataclass(frozen=True, slots=True)
class EnumRef:
    cls: type[enum.Enum]


@dataclass(frozen=True, slots=True)
class ValueRef:
    cls: type
    fields: tuple[FieldSpec, ...]


@dataclass(frozen=True, slots=True)
class ListOf:
    item: TypeRef


@dataclass(frozen=True, slots=True)
class JsonRef:
    pass


@dataclass(frozen=True, slots=True)
class TypeRef:
    shape: Scalar | EnumRef | ValueRef | ListOf | JsonRef
    nullable: bool


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: TypeRef
    has_default: bool
    clients_may_write: bool
    description: str | None
    ref: Reference | None = None

    @property
    def required(self) -> bool:
        """Required in a create input: no default and not nullable."""
        return not self.has_default and not self.type.nullable

    @property
    def filter_kind(self) -> FieldKind | None:
        return filter_kind_of(self.type)


_SCALARS: dict[type, FieldKind] = {
    str: FieldKind.STRING,
    int: FieldKind.INT,
    float: FieldKind.FLOAT,
    bool: FieldKind.BOOL,
    datetime: FieldKind.DATETIME,
}
_LIST_KINDS = {FieldKind.STRING: FieldKind.STRING_LIST, FieldKind.INT: FieldKind.INT_LIST}


def filter_kind_of(ref: TypeRef) -> FieldKind | None:
    shape = ref.shape
    if isinstance(shape, Scalar):
        return shape.kind
    if isinstance(shape, EnumRef):
        return FieldKind.ENUM
    if isinstance(shape, ListOf) and isinstance(shape.item.shape, Scalar):
        return _LIST_KINDS.get(shape.item.shape.kind)
    return None


def type_ref(annotation: Any, where: str) -> TypeRef:
    """Translate a Python annotation into the type tree, or say plainly what is unsupported."""
    nullable = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"{where}: only `X | None` unions are supported, got {annotation!r}")
        nullable, annotation = True, members[0]
        origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return TypeRef(ListOf(type_ref(item, where)), nullable)
    if annotation in _SCALARS:
        return TypeRef(Scalar(_SCALARS[annotation], annotation), nullable)
    if annotation is dict or origin is dict or annotation is Any:
        return TypeRef(JsonRef(), nullable)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return TypeRef(EnumRef(annotation), nullable)
    if isinstance(annotation, type) and isinstance(annotation.__dict__.get(_MARK), ValueOptions):
        return TypeRef(ValueRef(annotation, fields_of(annotation)), nullable)
    raise TypeError(
        f"{where}: unsupported type {annotation!r}; use str, int, float, bool, datetime, an Enum, "
        "dict, a @statesync.value class, list[...] of those, or `X | None`"
    )


def fields_of(cls: type) -> tuple[FieldSpec, ...]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        options = f.metadata.get("statesync", FieldOptions())
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        where = f"{cls.__name__}.{f.name}"
        ref = type_ref(hints[f.name], where)
        if options.ref is not None:
            _check_reference(where, ref, options.ref)
        specs.append(FieldSpec(f.name, ref, has_default, options.clients_may_write,
                               options.description, options.ref))
    return tuple(specs)


def _check_reference(where: str, ref: TypeRef, reference: Reference) -> None:
    shape = ref.shape
    single = isinstance(shape, Scalar) and shape.py is str
    several = (isinstance(shape, ListOf) and isinstance(shape.item.shape, Scalar)
               and shape.item.shape.py is str and not shape.item.nullable)
    if not (single or several):
        raise TypeError(f"{where}: a ref holds ids: annotate it str, str | None or list[str]")
    if reference.on_delete == "set_null" and single and not ref.nullable:
        raise TypeError(f"{where}: on_delete='set_null' needs a nullable field (str | None)")


def _check_list_path(model_name: str, fields: tuple[FieldSpec, ...], path: str) -> None:
    """A merge's list rule must name a list, through embedded values (or into a dict field)."""
    where = f"{model_name}: merge list rule {path!r}"
    current: tuple[FieldSpec, ...] | None = fields
    parts = path.split(".")
    for depth, part in enumerate(parts):
        if current is None:  # inside a dict field: any key may hold a list
            return
        found = next((f for f in current if f.name == part), None)
        if found is None:
            raise TypeError(f"{where}: no field {part!r}")
        shape = found.type.shape
        if depth == len(parts) - 1:
            if not isinstance(shape, ListOf | JsonRef):
                raise TypeError(f"{where}: {part!r} is not a list")
            return
        if isinstance(shape, ValueRef):
            current = shape.fields
        elif isinstance(shape, JsonRef):
            current = None
        else:
            raise TypeError(f"{where}: {part!r} is not an object")


def pluralize(name: str) -> str:
    """The English plural the generated collection fields use (``category`` → ``categories``)."""
    if name.endswith("y") and name[-2:-1] not in "aeiou":
        return name[:-1] + "ies"
    if name.endswith(("s", "x", "z", "ch", "sh")):
        return name + "es"
    return name + "s"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Everything statesync derives from one ``@model`` class."""

    name: str
    cls: type
    fields: tuple[FieldSpec, ...]
    options: ModelOptions

    @classmethod
    def of(cls, model_cls: type) -> ModelSpec:
        options = model_cls.__dict__[_MARK]
        name = model_cls.__name__
        if not _NAME.match(name):
            raise TypeError(f"model name {name!r} must be PascalCase ASCII")
        specs = fields_of(model_cls)
        for f in specs:
            if f.name in META_FIELDS:
                raise TypeError(f"{name}.{f.name}: {f.name!r} is a reserved document field")
        spec = cls(name=name, cls=model_cls, fields=specs, options=options)
        spec.rules()  # declared rules are checked against the fields now, not at first use
        if isinstance(options.conflicts, Merge):
            for path in options.conflicts.lists:
                _check_list_path(name, specs, path)
        return spec

    @property
    def singular(self) -> str:
        return self.name[0].lower() + self.name[1:]

    @property
    def plural(self) -> str:
        return self.options.plural or pluralize(self.singular)

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def rules(self) -> ModelRules:
        """The model's permissions, checked against its fields."""
        return ModelRules(self.name, self.options.access, [f.name for f in self.fields],
                          [f.name for f in self.fields if f.clients_may_write], self.filter_kinds())

    def filter_kinds(self) -> dict[str, FieldKind]:
        kinds = {
            "id": FieldKind.ID,
            "version": FieldKind.INT,
            "created_at": FieldKind.DATETIME,
            "updated_at": FieldKind.DATETIME,
            "expires_at": FieldKind.DATETIME,
        }
        for f in self.fields:
            kind = f.filter_kind
            if kind is not None:
                kinds[f.name] = kind
        return kinds
