"""Fails every attempt until a permit document exists; then succeeds with one effect."""

from __future__ import annotations

from statesync.workers import Event, Tx, handler

MAX_ATTEMPTS = 3


@handler("Doomed.run", max_attempts=MAX_ATTEMPTS, backoff=0.2)
def doomed(event: Event, tx: Tx) -> None:
    if tx.get("Product", f"permit-{event.key}") is None:
        raise RuntimeError(f"no permit for {event.key} (attempt {event.attempt})")
    tx.create("Product", {"sku": f"effect-{event.key}", "name": "redelivered effect",
                          "price_cents": event.attempt}, id=f"effect-{event.key}")
