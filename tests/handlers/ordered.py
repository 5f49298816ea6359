"""An ordered handler that logs every run (document id, version, event) into the table
``test_seen``, which the test creates, so the test can check per-document order."""

from __future__ import annotations

import os
import random
import time

import psycopg

from statesync.workers import Event, Tx, handler


@handler("Product.created", "Product.updated", ordered=True, max_attempts=5, backoff=0.2)
def record_versions(event: Event, tx: Tx) -> None:
    # Variable run time, so runs of different documents interleave across processes.
    time.sleep(random.uniform(0.0, 0.03))
    with psycopg.connect(os.environ["STATESYNC_DATABASE_URL"], autocommit=True) as connection:
        connection.execute(
            "INSERT INTO test_seen (doc_id, version, event_id, pid) VALUES (%s, %s, %s, %s)",
            (event.document_id, event.version, event.id, os.getpid()))
