"""Every read a client's request makes, with the reader's rules applied: the one read path.

Each read of documents takes the reader's :class:`~statesync.access.ModelAccess` as a
required argument (``None`` for the admin, who sees everything), and ANDs what it may see
into the SQL: a new read path cannot forget the rules, because it cannot be called
without them. Live changes and replays are judged per change by the subscriber's target
(``statesync.feed``), with the same filter.

Only the read runs here; the caller owns the connection (and never holds it while it
waits for a client).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from statesync import relations
from statesync.access import ModelAccess
from statesync.change import Change
from statesync.filters import FieldKind, Filter, OrderKey
from statesync.relations import RefPath
from statesync.sql_filters import after_clause, filter_clause, order_by_clauses
from statesync.store import statements as q
from statesync.store.engines import json_dumps
from statesync.store.tables import documents

Document = dict[str, Any]


def _visible(access: ModelAccess | None, kinds: Mapping[str, FieldKind]) -> sa.ColumnElement[bool]:
    if access is None:
        return sa.true()
    if not access.can_read:
        return sa.false()
    return filter_clause(access.visible, documents, kinds)


async def document(connection: AsyncConnection, model: str, doc_id: str,
                   access: ModelAccess | None, kinds: Mapping[str, FieldKind]) -> Document | None:
    statement = q.read_document(model, doc_id).where(_visible(access, kinds))
    row = (await connection.execute(statement)).first()
    return None if row is None else q.document_of(row)


def _id_in(ids: Sequence[str]) -> sa.ColumnElement[bool]:
    # One array parameter, not one per id: a batch may name more ids than the 32,767
    # parameters a statement may carry.
    return documents.c.id == sa.any_(sa.literal(sorted(ids), ARRAY(sa.Text)))


async def documents_by_id(connection: AsyncConnection, model: str, ids: Sequence[str],
                          access: ModelAccess | None, kinds: Mapping[str, FieldKind]
                          ) -> dict[str, Document]:
    """The live documents of ``model`` with these ids that the reader may see, by id: what
    references resolve to, one query for a whole batch of them."""
    wanted = sorted(set(ids))
    statement = q.list_documents(model, _id_in(wanted) & _visible(access, kinds),
                                 [documents.c.id], len(wanted))
    return {row.id: q.document_of(row) for row in (await connection.execute(statement)).all()}


async def referring(connection: AsyncConnection, paths: Sequence[RefPath], target_id: str,
                    limit: int, among: Sequence[str] | None = None,
                    shown_by: Mapping[str, Sequence[tuple[Filter | None,
                                                          Mapping[str, FieldKind]]]]
                    | None = None) -> list[tuple[str, Document, tuple[str, ...]]]:
    """Up to ``limit`` live documents that refer to ``target_id`` through ``paths`` (all of one
    target model): ``(model, document, the fields that refer to it)``, by model and id;
    ``among``: only these ids; ``shown_by``: by model, the filters of those who will be shown
    them (a document none of them matches is not read). The document itself, should it refer
    to itself, is not one: its own change says it all."""
    by_model: dict[str, list[RefPath]] = {}
    for path in paths:
        by_model.setdefault(path.model, []).append(path)
    found: list[tuple[str, Document, tuple[str, ...]]] = []
    for model, model_paths in sorted(by_model.items()):
        contains = sa.or_(*(documents.c.data.op("@>", is_comparison=True)(sa.cast(sa.literal(
            json_dumps(relations.containment(p, target_id))), JSONB)) for p in model_paths))
        if among is not None:
            contains = contains & _id_in(among)
        if model == model_paths[0].target:
            contains = contains & (documents.c.id != target_id)
        filters_of = None if shown_by is None else shown_by.get(model, ())
        if filters_of is not None and all(where is not None for where, _ in filters_of):
            contains = contains & sa.or_(sa.false(), *(filter_clause(where, documents, kinds)
                                                       for where, kinds in filters_of))
        statement = q.list_documents(model, contains, [documents.c.id], limit - len(found))
        for row in (await connection.execute(statement)).all():
            fields = tuple(sorted({p.field for p in model_paths
                                   if target_id in relations.referenced_ids(row.data, p)}))
            found.append((model, q.document_of(row), fields))
        if len(found) >= limit:
            break
    return found


async def page(connection: AsyncConnection, model: str, condition: Filter | None,
               order: Sequence[OrderKey], after: tuple[Any, ...] | None, limit: int,
               access: ModelAccess | None, kinds: Mapping[str, FieldKind]) -> list[Document]:
    """Up to ``limit`` documents matching ``condition`` in ``order``, after ``after``."""
    clause = filter_clause(condition, documents, kinds) & _visible(access, kinds)
    if after is not None:
        clause = clause & after_clause(order, after, documents, kinds)
    statement = q.list_documents(model, clause, order_by_clauses(order, documents, kinds), limit)
    return [q.document_of(r) for r in (await connection.execute(statement)).all()]


async def snapshot(connection: AsyncConnection, model: str, doc_id: str | None,
                   condition: Filter | None, limit: int, access: ModelAccess | None,
                   kinds: Mapping[str, FieldKind]
                   ) -> tuple[int, set[int], dict[str, Document]] | None:
    """In one REPEATABLE READ transaction: the feed head, the changes committed but not yet
    sequenced (their ``seq``s), and the documents. None when more than ``limit`` match."""
    await connection.execution_options(isolation_level="REPEATABLE READ")
    async with connection.begin():
        head = (await connection.execute(q.feed_head_cursor())).scalar_one()
        pending = set((await connection.execute(q.unsequenced_seqs(model, doc_id))).scalars())
        if doc_id is not None:
            statement = q.read_document(model, doc_id).where(_visible(access, kinds))
            rows = (await connection.execute(statement)).all()
        else:
            where = filter_clause(condition, documents, kinds) & _visible(access, kinds)
            rows = (await connection.execute(q.list_documents(
                model, where, [documents.c.id], limit + 1))).all()
            if len(rows) > limit:
                return None
    return head, pending, {row.id: q.document_of(row) for row in rows}


async def feed_bounds(connection: AsyncConnection) -> tuple[int, int | None]:
    """The feed head, and the oldest cursor the changelog still holds (None: empty)."""
    head = (await connection.execute(q.feed_head_cursor())).scalar_one()
    oldest = (await connection.execute(q.oldest_cursor())).scalar_one()
    return head, oldest


async def changes(connection: AsyncConnection, model: str, doc_id: str | None, after: int,
                  limit: int, related: Sequence[str] = ()) -> list[Change]:
    """Sequenced changes of a model (or one document) after cursor ``after``, in order; and
    of the ``related`` models, whose documents the subscription selects through references."""
    rows = (await connection.execute(q.changes_between(
        after, None, model=model, doc_id=doc_id, limit=limit, related=related))).all()
    return [Change.from_row(row) for row in rows]


async def sequenced(connection: AsyncConnection, seqs: set[int]) -> list[tuple[int, int]]:
    """``(seq, cursor)`` of those changes that have their cursor by now."""
    return [(r.seq, r.cursor) for r in (await connection.execute(q.cursors_of(seqs))).all()]


# ---- events: the admin's, except a change event of a document the reader can see ---------
