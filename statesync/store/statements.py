"""Every SQL statement statesync runs, built in one place (SQLAlchemy Core).

Both the async API and the sync workers execute these; only the service layer
decides where a transaction begins and ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from statesync.change import ChangeEventPayload
from statesync.conflicts import Resolution
from statesync.documents import flat_document
from statesync.store.engines import json_dumps
from statesync.store.sql import Query, Sql
from statesync.store.tables import (
    changes,
    documents,
    feed_head,
    mutations,
)

DOCUMENT_COLUMNS = (documents.c.id, documents.c.version, documents.c.data, documents.c.created_at,
                    documents.c.updated_at, documents.c.expires_at, documents.c.deleted)
CHANGE_COLUMNS = (changes.c.cursor, changes.c.seq, changes.c.model, changes.c.doc_id, changes.c.op,
                  changes.c.version, changes.c.document, changes.c.previous,
                  changes.c.changed_fields, changes.c.mutation_id, changes.c.committed_at,
                  changes.c.resolution)


def document_of(row: Any) -> dict[str, Any]:
    """A row selected with DOCUMENT_COLUMNS as the flat document clients see."""
    return flat_document(row.id, row.version, row.data, row.created_at, row.updated_at,
                         row.expires_at)


# ---- the commit path, as driver SQL (statesync.store.sql: no statement building per call) ---

_CLAIM = Sql.of("INSERT INTO statesync_mutations (mutation_id, request_hash, created_at) "
                "VALUES (:mutation_id, :request_hash, :now) ON CONFLICT DO NOTHING "
                "RETURNING mutation_id")
_READ_MUTATION = Sql.of("SELECT request_hash, result FROM statesync_mutations "
                        "WHERE mutation_id = :mutation_id")
_RECORD_RESULT = Sql.of("UPDATE statesync_mutations SET result = CAST(:result AS jsonb) "
                        "WHERE mutation_id = :mutation_id")
_READ_VERSION = Sql.of("SELECT document FROM statesync_changes WHERE model = :model"
                       " AND doc_id = :id AND version = :version ORDER BY seq DESC LIMIT 1")
_LOCK_DOCUMENT = Sql.of("SELECT id, version, data, created_at, updated_at, expires_at, deleted "
                        "FROM statesync_documents WHERE model = :model AND id = :id FOR UPDATE")
# Writing a change is one statement: the document (inserted, or updated), then, only if
# that happened, its changelog row, its outbox event and the mutation's recorded result.
# An insert that loses a race to a concurrent create writes nothing and returns no row.
_CHANGE_REST = (
    " chg AS (INSERT INTO statesync_changes (model, doc_id, op, version, document, previous,"
    " changed_fields, mutation_id, committed_at, caused_by, resolution)"
    " SELECT CAST(:model AS text), CAST(:id AS text), CAST(:op AS text), CAST(:version AS integer),"
    " CAST(:document AS jsonb), CAST(:previous AS jsonb), CAST(:changed_fields AS text[]),"
    " CAST(:mutation_id AS text), CAST(:committed_at AS timestamptz), CAST(:caused_by AS uuid),"
    " CAST(:resolution AS jsonb) FROM doc RETURNING seq),"
    " evt AS (INSERT INTO statesync_outbox (id, type, model, doc_id, key, version, change_seq,"
    " created_at, caused_by, request_id, payload)"
    " SELECT CAST(:event_id AS uuid), CAST(:event_type AS text), CAST(:model AS text),"
    " CAST(:id AS text), CAST(:id AS text), CAST(:version AS integer), seq,"
    " CAST(:committed_at AS timestamptz), CAST(:caused_by AS uuid), CAST(:request_id AS text),"
    " CAST(:payload AS jsonb) FROM chg),"
    " mut AS (UPDATE statesync_mutations SET result = CAST(:result AS jsonb)"
    " WHERE mutation_id = CAST(:mutation_id AS text) AND EXISTS (SELECT 1 FROM chg))"
    " SELECT seq FROM chg")
_WRITE_UPDATED = Sql.of(
    "WITH doc AS (UPDATE statesync_documents SET version = CAST(:version AS integer),"
    " data = CAST(:data AS jsonb), created_at = CAST(:created_at AS timestamptz),"
    " updated_at = CAST(:updated_at AS timestamptz), expires_at = CAST(:expires_at AS timestamptz),"
    " deleted = CAST(:deleted AS boolean) WHERE model = CAST(:model AS text) AND id = CAST(:id AS text)"
    " RETURNING id)," + _CHANGE_REST)
_WRITE_CREATED = Sql.of(
    "WITH doc AS (INSERT INTO statesync_documents (model, id, version, data, created_at,"
    " updated_at, expires_at, deleted) VALUES (CAST(:model AS text), CAST(:id AS text),"
    " CAST(:version AS integer), CAST(:data AS jsonb), CAST(:created_at AS timestamptz),"
    " CAST(:updated_at AS timestamptz), CAST(:expires_at AS timestamptz), CAST(:deleted AS boolean))"
    " ON CONFLICT DO NOTHING RETURNING id)," + _CHANGE_REST)
# References (statesync.relations): the targets a write names, locked against a concurrent
# delete (KEY SHARE conflicts only with the delete's FOR UPDATE), and the documents that
# refer to one (the GIN index on data serves the containment test).
_LIVE_TARGETS = Sql.of(
    "SELECT id, version, data, created_at, updated_at, expires_at FROM statesync_documents"
    " WHERE model = :model AND id = ANY(CAST(:ids AS text[]))"
    " AND NOT deleted AND (expires_at IS NULL OR expires_at > :now) FOR KEY SHARE")
_REFERRING = Sql.of(
    "SELECT id, version, data, created_at, updated_at, expires_at, deleted"
    " FROM statesync_documents WHERE model = :model AND data @> CAST(:pattern AS jsonb)"
    " AND NOT deleted AND (expires_at IS NULL OR expires_at > :now)"
    " ORDER BY id LIMIT :limit FOR UPDATE")
_INSERT_EVENT = Sql.of(
    "INSERT INTO statesync_outbox (id, type, model, doc_id, key, version, change_seq, "
    "created_at, caused_by, request_id, payload) VALUES (CAST(:id AS uuid), :type, :model, "
    ":doc_id, :key, :version, :change_seq, :created_at, CAST(:caused_by AS uuid), "
    "CAST(:request_id AS text), CAST(:payload AS jsonb))")


def _json(value: Any) -> str | None:
    """A JSON parameter: SQL NULL for None (not JSON ``null``)."""
    return None if value is None else json_dumps(value)


def claim_mutation_id(mutation_id: str, request_hash: str, now: datetime) -> Query:
    """Blocks while another transaction holds the same id, so concurrent retries serialize."""
    return _CLAIM(mutation_id=mutation_id, request_hash=request_hash, now=now)


def read_mutation(mutation_id: str) -> Query:
    return _READ_MUTATION(mutation_id=mutation_id)


def record_mutation_result(mutation_id: str, result: Any) -> Query:
    return _RECORD_RESULT(mutation_id=mutation_id, result=json_dumps(result))


def lock_document(model: str, doc_id: str) -> Query:
    return _LOCK_DOCUMENT(model=model, id=doc_id)


def read_version(model: str, doc_id: str, version: int) -> Query:
    """The document as that version left it (no row: pruned; ``document`` null: gone)."""
    return _READ_VERSION(model=model, id=doc_id, version=version)


def write_change(*, model: str, doc_id: str, creating: bool, row: dict[str, Any], deleted: bool,
                 op: str, document: Any, previous: Any, changed_fields: list[str],
                 mutation_id: str | None, committed_at: datetime, caused_by: str | None,
                 event_id: str, event_type: str, result: Any,
                 resolution: Resolution | None = None, request_id: str | None = None) -> Query:
    """The whole write of one change; returns its ``seq`` (no row: a lost insert race)."""
    resolved = None if resolution is None else resolution.to_json()
    statement = _WRITE_CREATED if creating else _WRITE_UPDATED
    return statement(
        model=model, id=doc_id, version=row["version"], data=json_dumps(row["data"]),
        created_at=row["created_at"], updated_at=row["updated_at"], expires_at=row["expires_at"],
        deleted=deleted, op=op, document=_json(document), previous=_json(previous),
        changed_fields=changed_fields, mutation_id=mutation_id, committed_at=committed_at,
        caused_by=caused_by, request_id=request_id, event_id=event_id, event_type=event_type,
        payload=json_dumps(ChangeEventPayload(document, previous, tuple(changed_fields),
                                              mutation_id, resolution).to_json()),
        result=_json(result), resolution=_json(resolved))


def live_targets(model: str, ids: Sequence[str], now: datetime) -> Query:
    """Which of ``ids`` are live documents of ``model``, each locked until commit against
    being deleted."""
    return _LIVE_TARGETS(model=model, ids=sorted(ids), now=now)


def referring(model: str, pattern: Any, now: datetime, limit: int) -> Query:
    """Up to ``limit`` live documents of ``model`` whose data contains ``pattern``
    (``relations.containment``), locked for update, by id."""
    return _REFERRING(model=model, pattern=json_dumps(pattern), now=now, limit=limit)


def insert_event(values: dict[str, Any]) -> Query:
    return _INSERT_EVENT(
        id=values["id"], type=values["type"], model=values.get("model"),
        doc_id=values.get("doc_id"), key=values.get("key"), version=values.get("version"),
        change_seq=values.get("change_seq"), created_at=values["created_at"],
        caused_by=values.get("caused_by"), request_id=values.get("request_id"),
        payload=json_dumps(values["payload"]))


def live(now: datetime | sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """Deleted and expired documents are gone from every read at once."""
    return sa.and_(
        documents.c.deleted.is_(False),
        sa.or_(documents.c.expires_at.is_(None), documents.c.expires_at > now),
    )


def read_document(model: str, doc_id: str) -> sa.Select[Any]:
    return sa.select(*DOCUMENT_COLUMNS).where(
        documents.c.model == model, documents.c.id == doc_id, live(sa.func.now())
    )


def list_documents(model: str, where: sa.ColumnElement[bool], order: Sequence[Any],
                   limit: int) -> sa.Select[Any]:
    return (
        sa.select(*DOCUMENT_COLUMNS)
        .where(documents.c.model == model, live(sa.func.now()), where)
        .order_by(*order)
        .limit(limit)
    )


# ---- the change feed ------------------------------------------------------------------------

OUTBOX_CHANNEL = "statesync_outbox"  # NOTIFY channel: a wake-up for the relay, never a queue


def feed_head_cursor(*, for_update: bool = False) -> sa.Select[Any]:
    stmt = sa.select(feed_head.c.cursor).where(feed_head.c.id == 1)
    return stmt.with_for_update() if for_update else stmt


# The sequencer's whole batch in one statement: lock the head, take the committed changes
# that have no cursor (oldest first, at most :limit), number them densely after the head,
# advance the head, and wake the relay (NOTIFY is delivered once per transaction for the
# same payload, however many rows call it). Insertion order is per-document version order:
# a change to a document waits for the row lock of the previous change, which commits
# before it inserts.
_SEQUENCE = Sql.of(
    "WITH head AS (SELECT cursor FROM statesync_feed_head WHERE id = 1 FOR UPDATE),"
    " todo AS (SELECT seq FROM statesync_changes WHERE cursor IS NULL ORDER BY seq"
    " LIMIT CAST(:limit AS integer) FOR UPDATE),"
    " numbered AS (SELECT seq, (SELECT cursor FROM head) + row_number() OVER (ORDER BY seq) AS cursor"
    " FROM todo),"
    " assigned AS (UPDATE statesync_changes c SET cursor = n.cursor FROM numbered n WHERE c.seq = n.seq"
    " RETURNING c.cursor, c.seq, c.model, c.doc_id, c.op, c.version, c.document, c.previous,"
    " c.changed_fields, c.mutation_id, c.committed_at, c.resolution),"
    " advanced AS (UPDATE statesync_feed_head SET cursor = (SELECT max(cursor) FROM numbered)"
    " WHERE id = 1 AND EXISTS (SELECT 1 FROM numbered))"
    " SELECT assigned.*, pg_notify('" + OUTBOX_CHANNEL + "', '') AS woke FROM assigned"
    " ORDER BY cursor")


def sequence_batch(limit: int) -> Query:
    """The changes given cursors by this batch, in cursor order (none: nothing to do)."""
    return _SEQUENCE(limit=limit)


def unsequenced_seqs(model: str, doc_id: str | None) -> sa.Select[Any]:
    stmt = sa.select(changes.c.seq).where(changes.c.cursor.is_(None), changes.c.model == model)
    return stmt if doc_id is None else stmt.where(changes.c.doc_id == doc_id)


def cursors_of(seqs: set[int]) -> sa.Select[Any]:
    return sa.select(changes.c.seq, changes.c.cursor).where(
        changes.c.seq.in_(sorted(seqs)), changes.c.cursor.is_not(None)
    )


def changes_between(after: int, upto: int | None, *, model: str | None = None,
                    doc_id: str | None = None, limit: int = 1000,
                    related: Sequence[str] = ()) -> sa.Select[Any]:
    """Sequenced changes with ``after < cursor <= upto``, in cursor order: of ``model`` (and
    ``doc_id``) if given, and of every ``related`` model."""
    stmt = sa.select(*CHANGE_COLUMNS).where(changes.c.cursor > after)
    if upto is not None:
        stmt = stmt.where(changes.c.cursor <= upto)
    if model is not None:
        own = changes.c.model == model
        if doc_id is not None:
            own = own & (changes.c.doc_id == doc_id)
        stmt = stmt.where(sa.or_(own, changes.c.model.in_(sorted(related))) if related else own)
    return stmt.order_by(changes.c.cursor).limit(limit)


# ---- retention: what `statesync.eventing.retention.prune` deletes from the core tables -----

def prune_changes(before: datetime, limit: int) -> sa.Executable:
    """Sequenced changelog rows committed before ``before`` (oldest first, along the key)."""
    old = (sa.select(changes.c.seq).where(changes.c.cursor.is_not(None),
                                          changes.c.committed_at < before)
           .order_by(changes.c.seq).limit(limit))
    return sa.delete(changes).where(changes.c.seq.in_(old.scalar_subquery()))


def oldest_cursor() -> sa.Select[Any]:
    """The first cursor the changelog can still replay from (None when it is empty)."""
    return sa.select(sa.func.min(changes.c.cursor))


def prune_mutations(before: datetime, limit: int) -> sa.Executable:
    old = (sa.select(mutations.c.mutation_id).where(mutations.c.created_at < before)
           .limit(limit))
    return sa.delete(mutations).where(mutations.c.mutation_id.in_(old.scalar_subquery()))


def prune_tombstones(before: datetime, limit: int) -> sa.Executable:
    old = (sa.select(documents.c.model, documents.c.id)
           .where(documents.c.deleted.is_(True), documents.c.updated_at < before).limit(limit))
    return sa.delete(documents).where(
        sa.tuple_(documents.c.model, documents.c.id).in_(old))
