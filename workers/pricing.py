"""The demo app's handler: price an order from the catalog.

Products are keyed by their SKU (create them with ``id`` = ``sku``). When an order
is created, or its items change, the handler reads each product's price and
commits ``total_cents`` and ``PRICED``, or ``REJECTED`` with a reason when a SKU
is unknown. It reads the order as it is now and writes with ``expected_version``;
Order merges edits of other fields (a note added meanwhile), but refuses a price
computed from items that changed since (``schema/shop.py`` ``merge_order``), so such
an attempt fails with CONFLICT and the retry prices the newer items.
"""

from __future__ import annotations

from statesync.workers import Event, Tx, handler


@handler("Order.created", "Order.updated", ordered=True, max_attempts=5)
def price_order(event: Event, tx: Tx) -> None:
    if event.type == "Order.updated" and "items" not in event.changed_fields:
        return  # our own write (status, total) or an edit that cannot change the price
    order = tx.get("Order", event.document_id or "")
    if order is None:
        return  # deleted or expired since
    total = 0
    for item in order["items"]:
        product = tx.get("Product", item["sku"])
        if product is None:
            tx.update("Order", order["id"], {
                "status": "REJECTED", "total_cents": None,
                "reject_reason": f"unknown product {item['sku']}",
            }, expected_version=order["version"])
            return
        total += product["price_cents"] * item["qty"]
    tx.update("Order", order["id"], {"status": "PRICED", "total_cents": total,
                                     "reject_reason": None},
              expected_version=order["version"])
