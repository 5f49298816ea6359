"""The TTL sweep: expired documents leave in a normal commit with op EXPIRED.

Reads already hide a document the moment it expires; the sweep makes it a
change, so subscribers get an ``EXPIRED`` message and handlers an
``<Model>.expired`` event. Each document is its own transaction, re-checked
under its row lock, so a document updated meanwhile (a new ``expiresAt``) stays.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

import sqlalchemy as sa

from statesync import documents as docs
from statesync.errors import NotFound, StatesyncError
from statesync.eventing import statements as ev
from statesync.store.commits import Model, commit_steps, run_sync

BATCH = 500
log = logging.getLogger(__name__)


def sweep_expired(engine: sa.Engine, models: Mapping[str, Model], max_document_bytes: int) -> int:
    """Expire what is due now; returns how many documents expired. A document that cannot
    expire (a delete rule of one of its references failed) is logged and left for the next
    sweep, and never holds up the others."""
    expired = 0
    while True:
        with engine.connect() as connection:
            due = connection.execute(ev.expired_documents(datetime.now(UTC), BATCH)).all()
        progress = 0
        for row in due:
            if row.model not in models:
                continue  # a model removed from the schema: its documents stay hidden
            try:
                with engine.begin() as connection:
                    run_sync(connection, commit_steps(models, docs.Expire(row.model, row.id),
                                                      max_document_bytes=max_document_bytes))
                expired += 1
                progress += 1
            except NotFound:
                progress += 1  # changed since we looked: no longer expired, or already gone
            except StatesyncError as error:
                log.warning("%s %s could not expire: %s", row.model, row.id, error.message)
        if len(due) < BATCH or not progress:
            return expired
