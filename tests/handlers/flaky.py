"""Fails its first two attempts, then succeeds with one effect keyed on the event."""

from __future__ import annotations

from statesync.workers import Event, Tx, handler

FAILURES = 2
BACKOFF = 1.0  # after attempt n the delay is in [BACKOFF/2 * 2^(n-1), BACKOFF * 2^(n-1)]


@handler("Flaky.run", max_attempts=5, backoff=BACKOFF)
def flaky(event: Event, tx: Tx) -> None:
    if event.attempt <= FAILURES:
        raise RuntimeError(f"flaky failure on attempt {event.attempt}")
    tx.create("Product", {"sku": f"effect-{event.key}", "name": "flaky effect",
                          "price_cents": event.attempt}, id=f"effect-{event.key}")
