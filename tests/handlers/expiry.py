"""Reacts to expired orders with one effect naming the expired document."""

from __future__ import annotations

from statesync.workers import Event, Tx, handler


@handler("Order.expired", max_attempts=3, backoff=0.2)
def on_expired(event: Event, tx: Tx) -> None:
    previous = event.previous or {}
    tx.create("Product", {"sku": f"expired-{event.document_id}",
                          "name": f"{previous.get('customer')} v{event.version}",
                          "price_cents": 0}, id=f"expired-{event.document_id}")
