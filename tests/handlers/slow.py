"""Runs for longer than the test's handler_timeout, then writes one effect."""

from __future__ import annotations

import time

from statesync.workers import Event, Tx, handler

RUN_SECONDS = 2.5  # the tests run it with handler_timeout = 1.0


@handler("Slow.run", max_attempts=3, backoff=0.2)
def slow(event: Event, tx: Tx) -> None:
    time.sleep(RUN_SECONDS)
    tx.create("Product", {"sku": f"slow-{event.key}", "name": "after a long run",
                          "price_cents": event.attempt}, id=f"slow-{event.key}")
