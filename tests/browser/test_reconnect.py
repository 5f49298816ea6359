"""The JS client across a server restart: graphql-ws reconnects, the watches resume with since."""

from __future__ import annotations

import socket
from typing import Any

import orjson
from playwright.async_api import WebSocket, expect

from statesync.client import Client
from statesync.config import Settings
from statesync.models import ModelSpec
from tests.browser.conftest import ADMIN_SECRET, OpenPage, board_settings
from tests.browser.test_board import SETTLE, order_card
from tests.conftest import serve


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _order(order_id: str) -> dict[str, Any]:
    return {"customer": "ada", "items": [{"sku": "espresso", "qty": 1}]}


async def test_a_page_resumes_after_a_server_restart_with_what_it_missed(
        settings: Settings, demo_models: list[ModelSpec], open_page: OpenPage) -> None:
    demo = board_settings(settings)
    port = _free_port()
    subscribed: list[dict[str, Any]] = []

    def record(ws: WebSocket) -> None:
        def sent(frame: str | bytes) -> None:
            message = orjson.loads(frame)
            if message.get("type") == "subscribe":
                subscribed.append(message["payload"])
        ws.on("framesent", sent)

    async with serve(demo, demo_models, port=port) as first:
        async with Client(first.base_url, admin_secret=ADMIN_SECRET) as client:
            await client.create("Order", _order("before"), id="before")
        _, page = await open_page(first.base_url + "/?as=ada")
        page.on("websocket", record)  # the first socket opened already; record the next ones
        await expect(order_card(page, "before")).to_have_count(1)

    await expect(page.locator("#status")).to_have_attribute("data-status", "connecting")
    async with serve(demo, demo_models) as other, Client(other.base_url,
                                                         admin_secret=ADMIN_SECRET) as client:
        await client.create("Order", _order("during"), id="during")
        await client.delete("Order", "before")

    async with serve(demo, demo_models, port=port):
        await expect(page.locator("#status")).to_have_attribute("data-status", "online", timeout=SETTLE)
        await expect(order_card(page, "during")).to_have_count(1, timeout=SETTLE)
        await expect(order_card(page, "before")).to_have_count(0)
    orders = [p for p in subscribed if "orders(" in p["query"]]
    assert orders, "the page did not resubscribe to the orders"
    assert all(p["variables"]["since"] is not None for p in orders), orders
