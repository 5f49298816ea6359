"""Custom events in, documents and custom events out: ``Shop.audit`` → a Product note,
then a ``Shop.audited`` event whose handler records it too."""

from __future__ import annotations

from statesync.workers import Event, Tx, handler


@handler("Shop.audit")
def audit(event: Event, tx: Tx) -> None:
    tx.create("Product", {"sku": "audit", "name": f"audited by {event.payload['who']}",
                          "price_cents": 0}, id=f"audit-{event.key}")
    tx.emit("Shop.audited", event.key, {"source": event.id})


@handler("Shop.audited")
def audited(event: Event, tx: Tx) -> None:
    tx.update("Product", f"audit-{event.key}", {"tags": ["seen", event.payload["source"]]})
