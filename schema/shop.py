"""The demo app's models: a small catalog and orders priced from it."""

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
    sku: str
    qty: int


@ss.model
class Product:
    sku: str
    name: str
    price_cents: int
    tags: list[str] = ss.field(default_factory=list)


@ss.model(ttl=timedelta(days=7))
class Order:
    customer: str
    items: list[LineItem]
    status: OrderStatus = OrderStatus.NEW
    note: str | None = None
    total_cents: int | None = ss.field(default=None, clients_may_write=False)
    reject_reason: str | None = ss.field(default=None, clients_may_write=False)
