"""Hangs on its first attempt (the test kills the worker meanwhile); later attempts succeed."""

from __future__ import annotations

import time

from statesync.workers import Event, Tx, handler

HANG_SECONDS = 120.0  # far longer than any test: only a kill ends the first attempt


@handler("Blocking.run", max_attempts=5, backoff=0.2)
def blocking(event: Event, tx: Tx) -> None:
    if event.attempt == 1:
        time.sleep(HANG_SECONDS)
    tx.create("Product", {"sku": f"effect-{event.key}", "name": "after the kill",
                          "price_cents": event.attempt}, id=f"effect-{event.key}")
