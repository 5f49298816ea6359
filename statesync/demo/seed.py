"""The demo's catalog, committed through the Python client like any backend service would.

Each product is created with a fixed ``mutation_id``, so seeding again (every
`statesync dev` start) is a replay that changes nothing, and a product a user
edited or deleted since stays as the user left it.
"""

from __future__ import annotations

import logging
from typing import Any

from statesync.client import Client, StatesyncClientError
from statesync.config import Settings

log = logging.getLogger(__name__)

CATALOG: list[dict[str, Any]] = [
    {"sku": "espresso", "name": "Espresso", "priceCents": 350},
    {"sku": "croissant", "name": "Croissant", "priceCents": 425},
    {"sku": "matcha", "name": "Matcha latte", "priceCents": 550},
    {"sku": "bagel", "name": "Sesame bagel", "priceCents": 300},
    {"sku": "juice", "name": "Orange juice", "priceCents": 475},
]


async def seed_catalog(base_url: str, admin_secret: str | None = None) -> int:
    """Create the catalog's products; returns how many this call created."""
    created = 0
    async with Client(base_url, admin_secret=admin_secret) as client:
        for product in CATALOG:
            try:
                result = await client.create("Product", product, id=product["sku"],
                                             mutation_id=f"demo-seed-{product['sku']}")
            except StatesyncClientError as error:
                if error.code != "ALREADY_EXISTS":  # made by hand before the first seed
                    raise
                continue
            created += not result.replayed
    log.info("demo catalog: %d of %d products created", created, len(CATALOG))
    return created


async def seed_when_listening(settings: Settings) -> None:
    """Run from the app's startup, before uvicorn listens: the client's retries of a commit
    that could not connect are what wait for the socket to open."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    try:
        await seed_catalog(f"http://{host}:{settings.port}", settings.admin_secret)
    except Exception:
        log.exception("seeding the demo catalog failed; the board works, its catalog is empty")
