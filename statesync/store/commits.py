"""The one write path: every mutation, backend commit and handler result goes through here.

:func:`commit_steps` is the whole procedure as a generator that yields statements
and receives their results, so the async API (:func:`run_async`) and the sync
workers run exactly the same logic inside the caller's transaction.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import deque
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from statesync import conflicts, relations, values
from statesync import documents as docs
from statesync.access import ModelAccess
from statesync.change import document_from_json
from statesync.conflicts import Resolution
from statesync.errors import (
    BadInput,
    BaseUnavailable,
    Conflict,
    Forbidden,
    MutationIdReused,
    Referenced,
    ReferenceNotFound,
)
from statesync.models import ModelSpec
from statesync.relations import RefPath, Relations
from statesync.store import statements as q
from statesync.store.sql import Query
from statesync.validation import Validator

Statement = sa.Executable | Query
Readers = Callable[[str], ModelAccess | None]  # how a writer may read a model (None: all)
Steps = Generator[Statement, Any, "CommitResult"]


@dataclass(frozen=True, slots=True)
class CommitResult:
    op: str
    id: str
    version: int
    document: dict[str, Any] | None  # after the change; the last document for a delete
    changed_fields: tuple[str, ...]
    event_ids: tuple[str, ...]
    replayed: bool = False
    resolution: Resolution | None = None  # based on an older version, and merged

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "id": self.id, "version": self.version, "document": self.document,
                "changed_fields": self.changed_fields, "event_ids": self.event_ids,
                "resolution": None if self.resolution is None else self.resolution.to_json()}

    @classmethod
    def replay(cls, stored: Mapping[str, Any]) -> CommitResult:
        return cls(op=stored["op"], id=stored["id"], version=stored["version"],
                   document=document_from_json(stored["document"]),
                   changed_fields=tuple(stored["changed_fields"]),
                   event_ids=tuple(stored["event_ids"]), replayed=True,
                   resolution=Resolution.from_json(stored.get("resolution")))


# How many documents one delete may clear or delete through references, in all levels of
# its cascades: a commit is one transaction, and one that touches more is a batch job's.
MAX_REFERRING = 1000
UNBOUNDED = 2**31 - 1  # an expiry's rules: it cannot be refused


@dataclass(frozen=True, slots=True)
class Model:
    """A model as the write path needs it."""

    spec: ModelSpec
    validator: Validator
    refs: tuple[RefPath, ...] = ()  # the references its documents hold
    referred_by: tuple[RefPath, ...] = ()  # other documents' references to it, with a rule


def model_table(specs: list[ModelSpec]) -> dict[str, Model]:
    """The write path's view of the deployment's models, by name."""
    related = Relations.of(specs)
    return {spec.name: Model(spec, Validator(spec.cls), related.from_model(spec.name),
                             related.ruling_deletes_of(spec.name)) for spec in specs}


def _stored(row: Any) -> docs.Stored | None:
    if row is None:
        return None
    return docs.Stored(id=row.id, version=row.version, data=row.data, created_at=row.created_at,
                       updated_at=row.updated_at, expires_at=row.expires_at, deleted=row.deleted)


def _claim(mutation_id: str, fingerprint: str, now: datetime
           ) -> Generator[Statement, Any, Any | None]:
    """Take ``mutation_id`` for this request, or return the stored result of its first run.

    The claim blocks while another transaction holds the same id, so concurrent retries
    serialize; the same id with another request is MUTATION_ID_REUSED.
    """
    claimed = (yield q.claim_mutation_id(mutation_id, fingerprint, now)).first()
    if claimed is not None:
        return None
    stored = (yield q.read_mutation(mutation_id)).one()
    if stored.request_hash != fingerprint:
        raise MutationIdReused(
            f"mutationId {mutation_id!r} was already used for another request",
            mutationId=mutation_id,
        )
    return stored.result


def commit_steps(
    models: Mapping[str, Model],
    write: docs.Write,
    *,
    mutation_id: str | None = None,
    caused_by: str | None = None,
    request_id: str | None = None,
    max_document_bytes: int,
    max_id_length: int = values.MAX_ID_LENGTH,
    guard: ModelAccess | None = None,
    owner: str | None = None,
    readers: Readers | None = None,
    now: datetime | None = None,
    apply_delete_rules: bool = True,
) -> Steps:
    """``guard``: the writer's rules for this model (None: the admin, a service, a handler).
    ``owner``: who writes, so that a ``mutation_id`` replays only to the one who made it.
    ``readers``: how the writer may read other models, so that a reference may name only a
    document it could see (None: every document). ``apply_delete_rules``: False when the
    caller (the delete rules' own work list) applies a delete's rules itself.
    ``caused_by``, ``request_id``: the event whose handler writes, and the request that set
    it all off, kept with the change's event (the delete rules' changes inherit both)."""
    model = models.get(write.model)
    if model is None:
        raise BadInput(f"unknown model {write.model!r}", model=write.model)
    write = _guarded(write, guard)
    doc_id = str(uuid.uuid4()) if isinstance(write, docs.Create) and write.id is None else write.id
    assert doc_id is not None
    values.check_id(doc_id, "id", max_id_length)
    if mutation_id is not None:
        values.check_id(mutation_id, "mutationId", max_id_length)
    now = now or datetime.now(UTC)
    if mutation_id is not None:
        stored = yield from _claim(mutation_id, docs.request_hash(write, owner), now)
        if stored is not None:
            return CommitResult.replay(stored)

    current = _stored((yield q.lock_document(write.model, doc_id)).first())
    try:
        write, resolution = yield from _resolving(model, write, current, now)
    except Conflict as conflict:
        raise _seen_by(guard, conflict) from None
    while True:
        planned = _decide(model, write, doc_id, current, now, max_document_bytes, guard)
        if planned.unchanged:
            unchanged = CommitResult(op=planned.op, id=doc_id, version=planned.version,
                                     document=planned.document, changed_fields=(), event_ids=(),
                                     resolution=resolution)
            if mutation_id is not None:
                yield q.record_mutation_result(mutation_id, unchanged.to_json())
            return unchanged
        if planned.document is not None and model.refs:
            yield from _check_targets(model, planned, current, now, max_id_length, readers)
        event_id = str(uuid.uuid4())
        result = CommitResult(
            op=planned.op, id=doc_id, version=planned.version,
            document=planned.previous if planned.op in docs.GONE else planned.document,
            changed_fields=planned.changed_fields, event_ids=(event_id,), resolution=resolution,
        )
        # The document, its change, its event and the mutation's result: one round trip.
        written = (yield q.write_change(
            model=write.model, doc_id=doc_id, creating=current is None, row=_row(planned),
            deleted=planned.op in docs.GONE, op=planned.op, document=planned.document,
            previous=planned.previous, changed_fields=list(planned.changed_fields),
            mutation_id=mutation_id, committed_at=now, caused_by=caused_by, event_id=event_id,
            event_type=event_type(write.model, planned.op),
            result=result.to_json() if mutation_id is not None else None,
            resolution=resolution, request_id=request_id)).first()
        if written is not None:
            if planned.op in docs.GONE and model.referred_by and apply_delete_rules:
                yield from _on_delete(models, write.model, doc_id, planned.op, now,
                                      (caused_by, request_id), max_document_bytes)
            return result
        # A concurrent create of the same id committed first: decide again against it.
        current = _stored((yield q.lock_document(write.model, doc_id)).first())


def _check_targets(model: Model, planned: docs.Planned, current: docs.Stored | None,
                   now: datetime, max_id_length: int, readers: Readers | None
                   ) -> Generator[Statement, Any, None]:
    """Every id the write newly refers to is a well-formed id and, where the reference must
    exist, names a live document of its model that the writer could read (one it may not is
    as absent: else naming ids would tell which exist, and a restrict reference to someone
    else's document would keep its owner from deleting it). The targets stay live until this
    commits: a concurrent delete of one waits, then sees the reference."""
    before = current.data if current is not None and current.live_at(now) else None
    for path in model.refs:
        if before is not None and path.field not in planned.changed_fields:
            continue
        ids = relations.referenced_ids(planned.data, path)
        if before is not None:
            ids -= relations.referenced_ids(before, path)
        for ref_id in ids:
            values.check_id(ref_id, path.field, max_id_length)
        if not ids or not path.must_exist:
            continue
        reader = readers(path.target) if readers is not None else None
        rows = (yield q.live_targets(path.target, sorted(ids), now)).all()
        found = {row.id for row in rows
                 if reader is None or reader.sees(q.document_of(row))}
        missing = sorted(ids - found)
        if missing:
            shown = [_clipped(i) for i in missing[:10]]
            raise ReferenceNotFound(
                f"{path.label} refers to {path.target} {shown[0]!r}, which does not exist",
                field=path.field, model=path.target, ids=shown)


def _clipped(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _on_delete(models: Mapping[str, Model], root_model: str, root_id: str, op: str,
               now: datetime, origin: tuple[str | None, str | None], max_bytes: int
               ) -> Generator[Statement, Any, None]:
    """What each reference to a deleted document declares: refuse (restrict), clear the
    reference (set_null) or delete the referring document (cascade), in this transaction,
    through as many levels as cascades reach (a work list, not recursion), touching at most
    MAX_REFERRING documents in all. The rules are the schema's, so they run as the system
    whoever deleted: like a foreign key, they do not ask the deleter's role. An expiry
    cannot be refused, so restrict lets it pass (the reference then resolves to null) and
    its rules have no budget. Errors name only the document the caller deleted."""
    expiring = op != "DELETED"
    caused_by, request_id = origin
    gone = deque([(root_model, root_id)])
    touched = 0
    while gone:
        model_name, doc_id = gone.popleft()
        for path in models[model_name].referred_by:
            if path.on_delete == "restrict" and expiring:
                continue
            room = UNBOUNDED if expiring else MAX_REFERRING - touched
            limit = 1 if path.on_delete == "restrict" else min(room + 1, UNBOUNDED)
            rows = (yield q.referring(path.model, relations.containment(path, doc_id), now,
                                      limit)).all()
            if not rows:
                continue
            if path.on_delete == "restrict":
                through = "" if (model_name, doc_id) == (root_model, root_id) else (
                    " (to a document its deletion cascades to)")
                raise Referenced(f"{root_model} {root_id} cannot be deleted: {path.label} still "
                                 f"refers to it{through}; delete or change those first",
                                 referredBy=path.label)
            if len(rows) > room:
                raise Referenced(f"deleting {root_model} {root_id} would change more than "
                                 f"{MAX_REFERRING} documents through its references",
                                 referredBy=path.label, limit=MAX_REFERRING)
            touched += len(rows)
            for row in rows:
                if path.on_delete == "cascade":
                    yield from commit_steps(models, docs.Delete(path.model, row.id),
                                            caused_by=caused_by, request_id=request_id, now=now,
                                            max_document_bytes=max_bytes,
                                            apply_delete_rules=False)
                    if models[path.model].referred_by:
                        gone.append((path.model, row.id))
                else:
                    yield from commit_steps(
                        models, docs.Update(path.model, row.id,
                                            relations.without(row.data, path, doc_id)),
                        caused_by=caused_by, request_id=request_id, now=now,
                        max_document_bytes=max_bytes)


CHANGE_ACTIONS = frozenset({"created", "updated", "deleted", "expired"})


def event_type(model: str, op: str) -> str:
    """``Order.created`` for a CREATED change of an Order."""
    return f"{model}.{op.lower()}"


@dataclass(frozen=True, slots=True)
class Emitted:
    event_id: str
    replayed: bool = False


def emit_steps(event_type_name: str, key: str | None, payload: Mapping[str, Any], *,
               mutation_id: str | None = None, caused_by: str | None = None,
               request_id: str | None = None,
               max_id_length: int = values.MAX_ID_LENGTH, models: Mapping[str, Any] | None = None,
               owner: str | None = None,
               now: datetime | None = None) -> Generator[Statement, Any, Emitted]:
    """A custom event: an outbox row only, idempotent on ``mutation_id``. A model's own change
    events (``Order.created``...) come only from commits: nobody may emit one (``models``)."""
    values.check_id(event_type_name, "type", max_id_length)
    if "." not in event_type_name or event_type_name.startswith(".") or event_type_name.endswith("."):
        raise BadInput(f"event type {event_type_name!r} must look like Domain.action", field="type")
    domain, _, action = event_type_name.partition(".")
    if models is not None and domain in models and action in CHANGE_ACTIONS:
        raise Forbidden(f"{event_type_name} is a change event: only a commit of {domain} makes one",
                        field="type")
    if key is not None:
        values.check_id(key, "key", max_id_length)
    if mutation_id is not None:
        values.check_id(mutation_id, "mutationId", max_id_length)
    values.check_json(payload, "payload")
    now = now or datetime.now(UTC)
    if mutation_id is not None:
        fingerprint = docs.fingerprint(["emit", event_type_name, key, payload, owner])
        stored = yield from _claim(mutation_id, fingerprint, now)
        if stored is not None:
            return Emitted(stored["event_id"], replayed=True)
    event_id = str(uuid.uuid4())
    yield q.insert_event({"id": event_id, "type": event_type_name, "key": key,
                          "payload": dict(payload), "created_at": now, "caused_by": caused_by,
                          "request_id": request_id})
    if mutation_id is not None:
        yield q.record_mutation_result(mutation_id, {"event_id": event_id})
    return Emitted(event_id)


def _row(planned: docs.Planned) -> dict[str, Any]:
    return {"version": planned.version, "data": planned.data, "created_at": planned.created_at,
            "updated_at": planned.updated_at, "expires_at": planned.expires_at}


def _guarded(write: docs.Write, guard: ModelAccess | None) -> docs.Write:
    """What the writer's role may write, before anything is read (presets applied)."""
    if guard is None:
        return write
    if isinstance(write, docs.Create):
        return dataclasses.replace(write, fields=guard.creating(write.fields))
    if isinstance(write, docs.Update):
        guard.patching(write.patch)
    elif isinstance(write, docs.Delete):
        guard.deleting()
    else:
        raise Forbidden("only the TTL sweep expires documents")
    return write


def _decide(model: Model, write: docs.Write, doc_id: str, current: docs.Stored | None,
            now: datetime, max_bytes: int, guard: ModelAccess | None) -> docs.Planned:
    """The plan of ``write``, within the writer's rules: it may change only a document it
    can see, and must leave one it could see (its role's check)."""
    if guard is None:
        return _plan(model, write, doc_id, current, now, max_bytes)
    if not isinstance(write, docs.Create) and current is not None and current.live_at(now):
        guard.existing(current.as_document(), doc_id)
    try:
        planned = _plan(model, write, doc_id, current, now, max_bytes)
    except Conflict as conflict:
        raise _seen_by(guard, conflict) from None
    if planned.document is not None and not planned.unchanged:
        guard.checked(planned.document)
    return planned


def _seen_by(guard: ModelAccess | None, conflict: Conflict) -> Conflict:
    """The conflict with the current document as this role may read it."""
    if guard is not None:
        conflict.extensions["current"] = guard.redact(conflict.extensions.get("current"))
    return conflict


def _resolving(model: Model, write: docs.Write, current: docs.Stored | None, now: datetime
               ) -> Generator[Statement, Any, tuple[docs.Write, Resolution | None]]:
    """An update based on an older version, as the model's conflict strategy applies it: a
    patch over the current document, no longer based on a version (anything else: as is)."""
    strategy = model.spec.options.conflicts
    if (not isinstance(strategy, conflicts.Merge | conflicts.Custom)
            or not isinstance(write, docs.Update) or current is None
            or write.expected_version is None or write.expected_version >= current.version
            or not current.live_at(now)):
        return write, None
    based_on = write.expected_version
    server = current.as_document()
    row = (yield q.read_version(write.model, write.id, based_on)).first()
    base = None if row is None else document_from_json(row.document)
    if base is None or base["created_at"] != current.created_at:
        raise BaseUnavailable(
            f"version {based_on} of {write.model} {write.id} is no longer in the changelog, so "
            f"the update cannot be merged; redo it against version {current.version}",
            expectedVersion=based_on, currentVersion=current.version, current=server,
            strategy=conflicts.name_of(strategy))
    client = docs.normalized_patch(model.spec, model.validator, write.patch, current)
    try:
        patch, resolution = conflicts.resolve(strategy, based_on, base, server, client)
    except conflicts.Rejected as rejected:
        raise Conflict(rejected.reason, expectedVersion=based_on, currentVersion=current.version,
                       current=server, strategy=conflicts.name_of(strategy)) from None
    return dataclasses.replace(write, patch=patch, expected_version=None), resolution


def _plan(model: Model, write: docs.Write, doc_id: str, current: docs.Stored | None,
          now: datetime, max_bytes: int) -> docs.Planned:
    if isinstance(write, docs.Create):
        return docs.plan_create(model.spec, model.validator, write, doc_id, current, now, max_bytes)
    if isinstance(write, docs.Update):
        return docs.plan_update(model.spec, model.validator, write, current, now, max_bytes)
    if isinstance(write, docs.Expire):
        return docs.plan_expire(model.spec, write, current, now)
    return docs.plan_delete(model.spec, write, current, now)


R = TypeVar("R")


class _Record:
    """An asyncpg record as the steps read rows: by attribute."""

    __slots__ = ("_record",)

    def __init__(self, record: Any) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        try:
            return self._record[name]
        except KeyError:
            raise AttributeError(name) from None


class _Records:
    """asyncpg's rows with the few methods of a SQLAlchemy result the steps use."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def first(self) -> _Record | None:
        return _Record(self._rows[0]) if self._rows else None

    def all(self) -> list[_Record]:
        return [_Record(row) for row in self._rows]

    def one(self) -> _Record:
        if len(self._rows) != 1:
            raise LookupError(f"expected one row, got {len(self._rows)}")
        return _Record(self._rows[0])

    def scalar_one(self) -> Any:
        return self.one()._record[0]


async def run_asyncpg(connection: Any, steps: Generator[Statement, Any, R]) -> R:
    """Drive ``steps`` on a bare asyncpg connection, inside the caller's transaction: the API's
    commit path, with no SQLAlchemy between it and the driver (the steps yield only
    :class:`~statesync.store.sql.Query` statements)."""
    try:
        statement = next(steps)
        while True:
            if not isinstance(statement, Query):
                raise TypeError("run_asyncpg runs driver SQL only")
            sql, args = statement.for_asyncpg()
            statement = steps.send(_Records(await connection.fetch(sql, *args)))
    except StopIteration as done:
        value: R = done.value
        return value


async def run_async(connection: AsyncConnection, steps: Generator[Statement, Any, R]) -> R:
    """Drive ``steps`` on an async connection, inside the caller's transaction."""
    try:
        statement = next(steps)
        while True:
            if isinstance(statement, Query):
                result = await connection.exec_driver_sql(*statement.for_asyncpg())
            else:
                result = await connection.execute(statement)
            statement = steps.send(result)
    except StopIteration as done:
        value: R = done.value
        return value


def execute_sync(connection: sa.Connection, query: Query) -> sa.CursorResult[Any]:
    """One driver-SQL statement on a sync connection (Celery workers)."""
    return connection.exec_driver_sql(*query.for_psycopg())


def run_sync(connection: sa.Connection, steps: Generator[Statement, Any, R]) -> R:
    """Drive ``steps`` on a sync connection (Celery workers), inside the caller's transaction."""
    try:
        statement = next(steps)
        while True:
            if isinstance(statement, Query):
                result = execute_sync(connection, statement)
            else:
                result = connection.execute(statement)
            statement = steps.send(result)
    except StopIteration as done:
        value: R = done.value
        return value
