"""What a commit does to a document, decided without I/O.

A *document* here is the flat dict a client sees: the meta fields ``id``,
``version``, ``created_at``, ``updated_at``, ``expires_at`` (datetimes) plus the
model's own fields as normalized JSON values, keyed by their Python names.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from statesync.errors import AlreadyExists, BadInput, Conflict, NotFound, PayloadTooLarge
from statesync.models import FieldSpec, ModelSpec, ValueRef
from statesync.validation import Validator
from statesync.values import check_instant

Op = Literal["CREATED", "UPDATED", "DELETED", "EXPIRED"]
GONE: tuple[Op, ...] = ("DELETED", "EXPIRED")
Document = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Create:
    model: str
    fields: Mapping[str, Any]
    id: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Update:
    model: str
    id: str
    patch: Mapping[str, Any]
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    model: str
    id: str
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class Expire:
    """The TTL sweep's write: removes a document whose ``expires_at`` has passed."""

    model: str
    id: str


Write = Create | Update | Delete | Expire

# ``expires_at`` is a meta field a write may set; it travels inside fields/patch.
EXPIRES_AT = "expires_at"


@dataclass(frozen=True, slots=True)
class Stored:
    """A row of ``statesync_documents`` as the commit reads it (under FOR UPDATE)."""

    id: str
    version: int
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    deleted: bool

    def live_at(self, now: datetime) -> bool:
        return not self.deleted and (self.expires_at is None or self.expires_at > now)

    def as_document(self) -> Document:
        return flat_document(self.id, self.version, self.data, self.created_at, self.updated_at,
                             self.expires_at)


@dataclass(frozen=True, slots=True)
class Planned:
    """The outcome of a write: what to store, and what the change feed says about it."""

    op: Op
    id: str
    version: int
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    changed_fields: tuple[str, ...]
    previous: dict[str, Any] | None  # old values of changed fields; the whole old document on delete

    @property
    def unchanged(self) -> bool:
        """An update that would change nothing: there is nothing to commit."""
        return self.op == "UPDATED" and not self.changed_fields

    @property
    def document(self) -> Document | None:
        if self.op in GONE:
            return None
        return flat_document(self.id, self.version, self.data, self.created_at, self.updated_at,
                             self.expires_at)


def flat_document(doc_id: str, version: int, data: Mapping[str, Any], created_at: datetime,
                  updated_at: datetime, expires_at: datetime | None) -> Document:
    return {"id": doc_id, "version": version, "created_at": created_at,
            "updated_at": updated_at, "expires_at": expires_at, **data}


def fingerprint(request: Any) -> str:
    """A stable hash of a request, so a reused ``mutationId`` with other arguments is caught."""
    body = orjson.dumps(request, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.sha256(body).hexdigest()


def request_hash(write: Write, owner: str | None = None) -> str:
    """Also who wrote: the same mutationId from another identity is another request."""
    return fingerprint([type(write).__name__, dataclasses.asdict(write), owner])


def _check_size(data: Mapping[str, Any], limit: int) -> None:
    size = len(orjson.dumps(data))
    if size > limit:
        raise PayloadTooLarge(f"document is {size} bytes; the limit is {limit}", limit=limit,
                              size=size)


def _split_expiry(values: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    fields = dict(values)
    return fields, fields.pop(EXPIRES_AT, _ABSENT)


_ABSENT = object()


def _check_expiry(expires_at: Any) -> datetime | None:
    if expires_at is None:
        return None
    if not isinstance(expires_at, datetime):
        raise BadInput("expiresAt must be a timezone-aware datetime", field="expiresAt")
    return check_instant(expires_at, "expiresAt")


def plan_create(spec: ModelSpec, validator: Validator, write: Create, new_id: str,
                existing: Stored | None, now: datetime, max_bytes: int) -> Planned:
    if existing is not None and existing.live_at(now):
        raise AlreadyExists(f"{spec.name} {new_id} already exists", id=new_id)
    fields, expires = _split_expiry(write.fields)
    data = validator.validate(fields)
    _check_size(data, max_bytes)
    if expires is _ABSENT:
        expires = write.expires_at
        if expires is None and spec.options.ttl is not None:
            expires = now + spec.options.ttl
    expires_at = _check_expiry(expires)
    if expires_at is not None and expires_at <= now:
        # It would be announced to subscribers yet hidden from every read.
        raise BadInput("expiresAt is in the past", field="expiresAt")
    return Planned(
        op="CREATED", id=new_id, version=(existing.version + 1) if existing else 1, data=data,
        created_at=now, updated_at=now, expires_at=expires_at,
        changed_fields=tuple(data), previous=None,
    )


def _live(spec: ModelSpec, doc_id: str, current: Stored | None, now: datetime) -> Stored:
    if current is None or not current.live_at(now):
        raise NotFound(f"{spec.name} {doc_id} not found", id=doc_id)
    return current


def _check_version(current: Stored, expected: int | None) -> None:
    if expected is not None and expected != current.version:
        raise Conflict(
            f"expected version {expected}, current version is {current.version}",
            expectedVersion=expected, currentVersion=current.version,
            current=current.as_document(),
        )


def _check_known(spec: ModelSpec, patch: Mapping[str, Any]) -> None:
    unknown = set(patch) - {f.name for f in spec.fields}
    if unknown:
        raise BadInput(f"unknown field(s) of {spec.name}: {', '.join(sorted(unknown))}",
                       fields=sorted(unknown))


def _pairs(fields: Sequence[FieldSpec], patch: Mapping[str, Any], other: Mapping[str, Any]
           ) -> Iterator[tuple[str, Any, Any, ValueRef | None]]:
    """Each field ``patch`` names, its value there and in ``other``, and, where both are
    objects of an embedded value (a ``@value``: not a list of them, not a ``dict``), its
    type, to go into it field by field."""
    shapes = {f.name: f.type.shape for f in fields}
    for name, value in patch.items():
        shape, there = shapes.get(name), other.get(name)
        inner = shape if isinstance(shape, ValueRef) and isinstance(value, Mapping) and (
            isinstance(there, Mapping)) else None
        yield name, value, there, inner


def patched(fields: Sequence[FieldSpec], current: Mapping[str, Any], patch: Mapping[str, Any]
            ) -> dict[str, Any]:
    """``current`` with ``patch`` applied: a field the patch names takes its value, except an
    embedded object, which takes the patch's fields one by one, recursively, keeping the
    others. So an offline edit of ``shipping.city`` does not undo a ``shipping.street``
    changed meanwhile."""
    merged = dict(current)
    for name, value, before, inner in _pairs(fields, patch, current):
        merged[name] = value if inner is None else patched(inner.fields, before, value)
    return merged


def _named(fields: Sequence[FieldSpec], patch: Mapping[str, Any], data: Mapping[str, Any]
           ) -> dict[str, Any]:
    """The normalized values of what ``patch`` names, and only that: inside an embedded
    object, the fields it names (a merge must not take the rest as the client's edit)."""
    return {name: stored if inner is None else _named(inner.fields, value, stored)
            for name, value, stored, inner in _pairs(fields, patch, data)}


def normalized_patch(spec: ModelSpec, validator: Validator, patch: Mapping[str, Any],
                     current: Stored) -> dict[str, Any]:
    """``patch`` as the document would store it (enums as values, datetimes as ISO strings;
    an embedded object whole, as patched), so that it compares with stored versions; or
    BadInput, as the update itself would."""
    fields, expires = _split_expiry(patch)
    _check_known(spec, fields)
    data = validator.validate(patched(spec.fields, current.data, fields))
    normalized = _named(spec.fields, fields, data)
    if expires is not _ABSENT:
        normalized[EXPIRES_AT] = _check_expiry(expires)
    return normalized


def plan_update(spec: ModelSpec, validator: Validator, write: Update, current: Stored | None,
                now: datetime, max_bytes: int) -> Planned:
    current = _live(spec, write.id, current, now)
    _check_version(current, write.expected_version)
    patch, expires = _split_expiry(write.patch)
    _check_known(spec, patch)
    data = validator.validate(patched(spec.fields, current.data, patch))
    _check_size(data, max_bytes)
    changed = [name for name in data if current.data.get(name, _ABSENT) != data[name]]
    previous = {name: current.data.get(name) for name in changed}
    # Meta fields are filterable too: a subscriber filtering on updatedAt must see the old one.
    previous["updated_at"] = current.updated_at
    expires_at = current.expires_at if expires is _ABSENT else _check_expiry(expires)
    if expires_at != current.expires_at:
        changed.append(EXPIRES_AT)
        previous[EXPIRES_AT] = current.expires_at
    if not changed:
        # Nothing to say: no new version, no change message, no event. (A handler that
        # writes back what is already there must not wake itself up forever.)
        return Planned(
            op="UPDATED", id=write.id, version=current.version, data=current.data,
            created_at=current.created_at, updated_at=current.updated_at,
            expires_at=current.expires_at, changed_fields=(), previous=None,
        )
    return Planned(
        op="UPDATED", id=write.id, version=current.version + 1, data=data,
        created_at=current.created_at, updated_at=now, expires_at=expires_at,
        changed_fields=tuple(changed), previous=previous,
    )


def plan_delete(spec: ModelSpec, write: Delete, current: Stored | None, now: datetime) -> Planned:
    current = _live(spec, write.id, current, now)
    _check_version(current, write.expected_version)
    return Planned(
        op="DELETED", id=write.id, version=current.version + 1, data=current.data,
        created_at=current.created_at, updated_at=now, expires_at=current.expires_at,
        changed_fields=tuple(current.data), previous=current.as_document(),
    )


def plan_expire(spec: ModelSpec, write: Expire, current: Stored | None, now: datetime) -> Planned:
    if current is None or current.deleted or current.expires_at is None or current.expires_at > now:
        raise NotFound(f"{spec.name} {write.id} is not expired", id=write.id)
    return Planned(
        op="EXPIRED", id=write.id, version=current.version + 1, data=current.data,
        created_at=current.created_at, updated_at=now, expires_at=current.expires_at,
        changed_fields=tuple(current.data), previous=current.as_document(),
    )
