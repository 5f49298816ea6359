"""The eventing benchmark's handler (bench/eventing.py points STATESYNC_WORKERS_PATH here).

Nearly a no-op: when a product's price changes, it commits ``name = "seen <price>"``
to the same product, so the result flows back to subscribers like any change. Its
own write is a ``Product.updated`` without ``price_cents``, which it skips.
"""

from __future__ import annotations

from statesync.workers import Event, Tx, handler


@handler("Product.updated")
def echo_price(event: Event, tx: Tx) -> None:
    if "price_cents" not in event.changed_fields or event.document is None:
        return  # our own write-back (or a change that is not a price)
    tx.update("Product", event.document_id or "", {"name": f"seen {event.document['price_cents']}"})
