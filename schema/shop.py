"""The demo app's models: a small catalog and orders priced from it.

Who may do what (the admin, and the pricing handler, may do everything):
- everyone, signed in or not, reads the catalog; only the admin writes it;
- a customer sees, edits and deletes only their own orders: ``customer`` is set from their
  token on create, and they may write only the items, the note and the expiry; the status,
  the total and the reason for a rejection come from the pricing handler.

Two screens editing one order offline (the note on one, the quantities on the other)
both land: see :func:`merge_order`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import statesync as ss


class OrderStatus(enum.Enum):
    NEW = "NEW"
    PRICED = "PRICED"
    REJECTED = "REJECTED"
    SHIPPED = "SHIPPED"


@ss.value
class LineItem:
    # Products are keyed by their SKU. An order may name one the catalog does not have (the
    # pricing handler rejects it), and keeps naming one deleted since: hence a loose ref.
    sku: str = ss.ref("Product", relation="product", must_exist=False, on_delete="keep")
    qty: int


@ss.model(access=[
    ss.allow("customer", "anonymous", read=True, fields=["sku", "name", "price_cents", "tags"]),
])
class Product:
    sku: str
    name: str
    price_cents: int
    tags: list[str] = ss.field(default_factory=list)


def merge_order(base: Mapping[str, Any], server: Mapping[str, Any],
                client: Mapping[str, Any]) -> dict[str, Any] | ss.Reject:
    """An edit made against an older version lands when it and the edits made since touch
    different fields; when both changed one field, it is a conflict for the user to look at.
    A price computed from items that changed since is refused, so the pricing handler
    prices again (it retries on CONFLICT) instead of a total of the old items."""
    mine = {name: value for name, value in client.items() if value != base.get(name)}
    theirs = {name for name in mine if server.get(name) not in (base.get(name), mine[name])}
    if theirs:
        return ss.Reject(f"changed meanwhile: {', '.join(sorted(theirs))}")
    if "total_cents" in mine and server.get("items") != base.get("items"):
        return ss.Reject("priced from items that changed since")
    return mine


@ss.model(ttl=timedelta(days=7), conflicts=merge_order, access=[
    ss.allow("customer",
             read={"customer": {"eq": ss.session.user_id}},
             create=["items", "note", "expires_at"], update=["items", "note"], delete=True,
             presets={"customer": ss.session.user_id}),
])
class Order:
    customer: str
    items: list[LineItem]
    status: OrderStatus = OrderStatus.NEW
    note: str | None = None
    total_cents: int | None = ss.field(default=None, clients_may_write=False)
    reject_reason: str | None = ss.field(default=None, clients_may_write=False)
