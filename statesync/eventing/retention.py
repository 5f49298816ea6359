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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from statesync.eventing import statements as ev
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

    def deleted(statement: sa.Executable) -> Callable[[sa.Connection], int]:
        return lambda connection: connection.execute(statement).rowcount

    def events(connection: sa.Connection) -> int:
        ids = [str(i) for i in connection.execute(ev.settled_events(before, batch)).scalars()]
        for statement in ev.prune_events(ids):
            connection.execute(statement)
        return len(ids)

    pruned = Pruned(
        changes=_in_batches(engine, deleted(q.prune_changes(before, batch)), batch),
        mutations=_in_batches(engine, deleted(q.prune_mutations(before, batch)), batch),
        events=_in_batches(engine, events, batch),
        tombstones=_in_batches(engine, deleted(q.prune_tombstones(before, batch)), batch),
    )
    if any(asdict(pruned).values()):
        log.info("pruned what is older than %s: %s", before.isoformat(), pruned)
    return pruned


def _in_batches(engine: sa.Engine, one_batch: Callable[[sa.Connection], int], batch: int) -> int:
    """Run ``one_batch`` in its own transaction until it handles fewer than ``batch`` rows."""
    total = 0
    while True:
        with engine.begin() as connection:
            done = one_batch(connection)
        total += done
        if done < batch:
            return total
