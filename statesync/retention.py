"""Retention: what statesync no longer needs after `retention` seconds is deleted.

Run by Celery beat every `prune_interval` seconds (task ``statesync.prune``):

- changelog rows (sequenced ones only): a subscription resuming with a ``since`` older
  than what is left gets ``RESYNC`` and starts over from a snapshot;
- mutation ids: a commit re-sent after that long is new to the server again;
- events whose every delivery succeeded (or that matched no handler), with their
  delivery rows and attempt history; dead letters stay until redelivered;
- tombstones of deleted documents: an id can then be created again from version 1.

Each table is pruned in batches, one short transaction per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from statesync.store import statements as q

log = logging.getLogger(__name__)

BATCH = 5000


@dataclass(frozen=True, slots=True)
class Pruned:
    changes: int
    mutations: int
    events: int
    tombstones: int


def prune(engine: sa.Engine, retention: timedelta, now: datetime | None = None,
          batch: int = BATCH) -> Pruned:
    before = (now or datetime.now(UTC)) - retention
    pruned = Pruned(
        changes=_in_batches(engine, lambda: q.prune_changes(before, batch), batch),
        mutations=_in_batches(engine, lambda: q.prune_mutations(before, batch), batch),
        events=_prune_events(engine, before, batch),
        tombstones=_in_batches(engine, lambda: q.prune_tombstones(before, batch), batch),
    )
    if any((pruned.changes, pruned.mutations, pruned.events, pruned.tombstones)):
        log.info("pruned what is older than %s: %s", before.isoformat(), pruned)
    return pruned


def _in_batches(engine: sa.Engine, statement: Callable[[], sa.Executable], batch: int) -> int:
    total = 0
    while True:
        with engine.begin() as connection:
            deleted = connection.execute(statement()).rowcount
        total += deleted
        if deleted < batch:
            return total


def _prune_events(engine: sa.Engine, before: datetime, batch: int) -> int:
    total = 0
    while True:
        with engine.begin() as connection:
            ids = [str(i) for i in connection.execute(q.settled_events(before, batch)).scalars()]
            for statement in q.prune_events(ids):
                connection.execute(statement)
        total += len(ids)
        if len(ids) < batch:
            return total
