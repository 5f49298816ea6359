"""Permission rules: declared beside the model, bound to an identity, applied in the one
read path and the one write path. Pure: no I/O.

    @ss.model(access=[
        ss.allow("customer",
                 read={"customer": {"eq": ss.session.user_id}},  # which documents
                 fields=["customer", "items", "status", "note", "total_cents"],  # which fields
                 create=["items", "note"], update=["items", "note"], delete=True,
                 presets={"customer": ss.session.user_id}),  # set from the session on create
        ss.allow("anonymous", read=True, fields=["status"]),
    ])
    class Order: ...

A role with no ``allow`` for a model has no access to it; the admin always has all.

- ``read``: ``True`` (every document), ``False`` (none), or a ``where`` in the language of
  queries (Python field names; ``and``/``or``/``not``; the operators of ``<Model>Where``)
  whose values may be ``ss.session.user_id``, ``ss.session.role`` or
  ``ss.session["claim"]``. A session value the identity lacks matches nothing.
- ``fields``: the fields the role may read (``id``, ``version`` and the timestamps always);
  all of them when omitted. Selecting, filtering or sorting on another is FORBIDDEN.
- ``create`` / ``update``: ``True`` (every field clients may write), ``False``, or the
  fields the role may write; writing another is FORBIDDEN. Updates and deletes apply only
  to documents the role can read (others are NOT_FOUND).
- ``check``: a ``where`` every document must satisfy after a create or update the role
  makes (default: ``read``), so no role can write a document it could not then see.
- ``presets``: fields set on create from the session (or a constant); the client cannot
  write them.
- ``delete``: whether the role may delete documents it can read.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from statesync.errors import Forbidden, NotFound
from statesync.filters import (
    AllOf,
    AnyOf,
    Compare,
    FieldKind,
    Filter,
    InvalidFilter,
    Negate,
    Op,
    matches,
    validate,
)
from statesync.identity import Identity

META_READABLE: Final = frozenset({"id", "version", "created_at", "updated_at", "expires_at"})
EXPIRES_AT: Final = "expires_at"
NOTHING: Final[Filter] = AnyOf(())  # matches no document
_OPS: Final = {"eq": Op.EQ, "ne": Op.NE, "lt": Op.LT, "le": Op.LE, "gt": Op.GT, "ge": Op.GE,
               "in": Op.IN, "not_in": Op.NOT_IN, "between": Op.BETWEEN, "contains": Op.CONTAINS,
               "begins_with": Op.BEGINS_WITH}


@dataclass(frozen=True, slots=True)
class SessionValue:
    """A value a rule takes from the identity when it is applied."""

    name: str

    def __repr__(self) -> str:
        return f"session.{self.name}"


class _Session:
    """``session.user_id``, ``session.role``, ``session["x-hasura-org-id"]``."""

    def __getattr__(self, name: str) -> SessionValue:
        if name.startswith("__"):
            raise AttributeError(name)
        return SessionValue(name)

    def __getitem__(self, name: str) -> SessionValue:
        return SessionValue(name)


session: Final = _Session()

Where = Mapping[str, Any] | bool


@dataclass(frozen=True, slots=True)
class Permission:
    roles: tuple[str, ...]
    read: Where = False
    fields: frozenset[str] | None = None
    create: frozenset[str] | bool = False
    update: frozenset[str] | bool = False
    delete: bool = False
    presets: Mapping[str, Any] = field(default_factory=dict)
    check: Where | None = None


def allow(*roles: str, read: Where = False, fields: Iterable[str] | None = None,
          create: Iterable[str] | bool = False, update: Iterable[str] | bool = False,
          delete: bool = False, presets: Mapping[str, Any] | None = None,
          check: Where | None = None) -> Permission:
    """What ``roles`` may do with a model's documents (see the module docstring)."""
    if not roles:
        raise TypeError("allow() needs at least one role")
    return Permission(
        roles=tuple(roles), read=read, fields=None if fields is None else frozenset(fields),
        create=create if isinstance(create, bool) else frozenset(create),
        update=update if isinstance(update, bool) else frozenset(update),
        delete=delete, presets=dict(presets or {}), check=check,
    )


# ---- turning a `where` into a filter ---------------------------------------------------------


def to_filter(where: Where, kinds: Mapping[str, FieldKind], identity: Identity | None) -> Filter | None:
    """The filter ``where`` stands for (None: everything); session values taken from
    ``identity`` (with ``identity=None``, only the shape is checked, for declarations)."""
    if where is True:
        return None
    if where is False:
        return NOTHING
    return _convert(where, kinds, identity)


def _convert(where: Mapping[str, Any], kinds: Mapping[str, FieldKind], identity: Identity | None
             ) -> Filter:
    parts: list[Filter] = []
    for key, value in where.items():
        if key in ("and", "or"):
            if not isinstance(value, list | tuple):
                raise InvalidFilter(f"`{key}` takes a list of conditions")
            inner = tuple(_convert(v, kinds, identity) for v in value)
            parts.append(AllOf(inner) if key == "and" else AnyOf(inner))
        elif key == "not":
            parts.append(Negate(_convert(value, kinds, identity)))
        else:
            if key not in kinds:
                raise InvalidFilter(f"unknown field {key!r}")
            if not isinstance(value, Mapping):
                raise InvalidFilter(f"{key!r} takes {{operator: value}}, not {value!r}")
            for op_name, operand in value.items():
                op = _OPS.get(op_name)
                if op is None:
                    raise InvalidFilter(f"unknown operator {op_name!r} (one of {', '.join(_OPS)})")
                parts.append(_compare(key, op, operand, identity))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _compare(name: str, op: Op, operand: Any, identity: Identity | None) -> Filter:
    if isinstance(operand, list | tuple):
        resolved = [_value(v, identity) for v in operand]
        if any(v is _MISSING for v in resolved):
            return NOTHING
        return Compare(name, op, tuple(resolved))
    value = _value(operand, identity)
    if value is _MISSING:
        return NOTHING  # the identity has no such session value: nothing can match
    return Compare(name, op, value)


_MISSING: Final = object()


def _value(operand: Any, identity: Identity | None) -> Any:
    if isinstance(operand, enum.Enum):
        return operand.value
    if isinstance(operand, SessionValue):
        if identity is None:
            return "declared"  # any string: declarations are checked for shape only
        value = identity.session_value(operand.name)
        return _MISSING if value is None else value
    return operand


# ---- what one role may do with one model ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelAccess:
    """One model as one identity may use it (the admin needs none: it may do everything)."""

    model: str
    can_read: bool
    visible: Filter | None  # None: every document (when can_read)
    readable: frozenset[str] | None  # None: every field
    creatable: frozenset[str] | None  # None: no create at all
    updatable: frozenset[str] | None  # None: no update at all
    can_delete: bool
    presets: Mapping[str, Any]
    check: Filter | None
    kinds: Mapping[str, FieldKind]

    def may_read_field(self, name: str) -> bool:
        return name in META_READABLE or self.readable is None or name in self.readable

    def sees(self, document: Mapping[str, Any] | None) -> bool:
        return (document is not None and self.can_read
                and (self.visible is None or matches(self.visible, document, self.kinds)))

    def redact(self, document: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The document as this role may read it."""
        if document is None:
            return None
        if self.readable is None:
            return dict(document)
        return {k: v for k, v in document.items() if self.may_read_field(k)}

    def readable_of(self, names: Iterable[str]) -> tuple[str, ...]:
        return tuple(n for n in names if self.may_read_field(n))

    # -- the write path's questions (statesync.store.commits asks them) --------------------

    def creating(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The fields to create with (presets applied), or Forbidden."""
        if self.creatable is None:
            raise Forbidden(f"this role may not create {self.model} documents", model=self.model)
        self._writable(fields, self.creatable)
        return {**fields, **self.presets}

    def patching(self, patch: Mapping[str, Any]) -> None:
        if self.updatable is None:
            raise Forbidden(f"this role may not update {self.model} documents", model=self.model)
        self._writable(patch, self.updatable)

    def deleting(self) -> None:
        if not self.can_delete:
            raise Forbidden(f"this role may not delete {self.model} documents", model=self.model)

    def existing(self, document: Mapping[str, Any] | None, doc_id: str) -> None:
        """An update or delete applies only to a document the role can see."""
        if document is not None and not self.sees(document):
            raise NotFound(f"{self.model} {doc_id} not found", id=doc_id)

    def checked(self, document: Mapping[str, Any]) -> None:
        """A document the role wrote must pass its check (by default: it can see it)."""
        rule = self.check if self.check is not None else (self.visible if self.can_read else NOTHING)
        if rule is not None and not matches(rule, document, self.kinds):
            raise Forbidden(f"this role may not write that {self.model} document "
                            "(it would fail the role's check)", model=self.model)

    def _writable(self, values: Mapping[str, Any], allowed: frozenset[str]) -> None:
        refused = sorted(set(values) - allowed)
        if refused:
            raise Forbidden(f"this role may not write {', '.join(refused)} of {self.model}",
                            model=self.model, fields=refused)


def no_access(model: str, kinds: Mapping[str, FieldKind]) -> ModelAccess:
    return ModelAccess(model=model, can_read=False, visible=NOTHING, readable=frozenset(),
                       creatable=None, updatable=None, can_delete=False, presets={},
                       check=NOTHING, kinds=kinds)


class ModelRules:
    """A model's permissions, checked when declared and bound per identity."""

    def __init__(self, model: str, permissions: Iterable[Permission], fields: Iterable[str],
                 client_writable: Iterable[str], kinds: Mapping[str, FieldKind]) -> None:
        self.model = model
        self.kinds = kinds
        self.fields = frozenset(fields)
        self.client_writable = frozenset(client_writable) | {EXPIRES_AT}
        self.by_role: dict[str, Permission] = {}
        for permission in permissions:
            for role in permission.roles:
                if role in self.by_role:
                    raise TypeError(f"{model}: role {role!r} has two allow() rules; merge them")
                self.by_role[role] = permission
            self._check_declared(permission)

    def _where_ok(self, where: Where | None, what: str) -> None:
        if where is None or isinstance(where, bool):
            return
        try:
            validate(to_filter(where, self.kinds, None), self.kinds)
        except InvalidFilter as exc:
            raise TypeError(f"{self.model}: {what} rule: {exc}") from None

    def _check_declared(self, p: Permission) -> None:
        self._where_ok(p.read, "read")
        self._where_ok(p.check, "check")
        for what, names in (("fields", p.fields), ("create", p.create), ("update", p.update),
                            ("presets", frozenset(p.presets))):
            if isinstance(names, frozenset):
                unknown = names - self.fields - {EXPIRES_AT}
                if unknown:
                    raise TypeError(f"{self.model}: {what} names unknown fields {sorted(unknown)}")
        for what, names in (("create", p.create), ("update", p.update)):
            if isinstance(names, frozenset) and names - self.client_writable:
                raise TypeError(f"{self.model}: {what} names fields clients may not write: "
                                f"{sorted(names - self.client_writable)}")

    def bind(self, identity: Identity) -> ModelAccess:
        permission = self.by_role.get(identity.role)
        if permission is None:
            return no_access(self.model, self.kinds)
        presets = {k: _value(v, identity) for k, v in permission.presets.items()}
        writable = self.client_writable - set(presets)
        # A preset from a session value the identity lacks: it cannot create at all.
        creatable = None if _MISSING in presets.values() else _writable(permission.create, writable)
        return ModelAccess(
            model=self.model,
            can_read=permission.read is not False,
            visible=to_filter(permission.read, self.kinds, identity),
            readable=permission.fields,
            creatable=creatable,
            updatable=_writable(permission.update, writable),
            can_delete=permission.delete,
            presets=presets,
            check=None if permission.check is None else to_filter(permission.check, self.kinds,
                                                                   identity),
            kinds=self.kinds,
        )

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(self.by_role)


def _writable(declared: frozenset[str] | bool, writable: frozenset[str]) -> frozenset[str] | None:
    if declared is False:
        return None
    if declared is True:
        return writable
    return declared & writable


class Access:
    """Everything one identity may do, per model; bound lazily, kept for the identity's life."""

    def __init__(self, rules: Mapping[str, ModelRules], identity: Identity) -> None:
        self.identity = identity
        self._rules = rules
        self._bound: dict[str, ModelAccess] = {}

    @property
    def role(self) -> str:
        return self.identity.role

    def model(self, name: str) -> ModelAccess:
        bound = self._bound.get(name)
        if bound is None:
            bound = self._bound[name] = self._rules[name].bind(self.identity)
        return bound
