"""The demo app's models: a small catalog and orders priced from it.

Who may do what (the admin, and the pricing handler, may do everything):
- everyone, signed in or not, reads the catalog; only the admin writes it;
- a customer sees, edits and deletes only their own orders: ``customer`` is set from their
  token on create, and they may write only the items, the note and the expiry; the status,
  the total and the reason for a rejection come from the pricing handler.
"""

from __future__ import annotations

import enum
from datetime import timedelta

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


@ss.model(ttl=timedelta(days=7), access=[
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
