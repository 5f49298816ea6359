"""The demo board in a real Chromium: two windows, a worker, offline edits, conflicts, reloads."""

from __future__ import annotations

from typing import NamedTuple

import asyncpg
import orjson
from playwright.async_api import BrowserContext, Locator, Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

from statesync.client import Client
from tests.browser.conftest import ADMIN_SECRET, Board

SETTLE = 20_000  # ms: a worker round trip on a loaded 2-core machine, with room to spare
ESPRESSO = 350


def order_card(page: Page, order_id: str) -> Locator:
    return page.locator(f'li.order[data-order-id="{order_id}"]')


def quantity(card: Locator, sku: str) -> Locator:
    return card.locator(f'li[data-sku="{sku}"] .qty')


def more(card: Locator, sku: str) -> Locator:
    return card.locator(f'li[data-sku="{sku}"] button.more')


async def priced(card: Locator, total: str) -> None:
    await expect(card).to_have_attribute("data-status", "PRICED", timeout=SETTLE)
    await expect(card.locator(".total")).to_have_text(f"total {total}", timeout=SETTLE)


def admin(board: Board) -> Client:
    return Client(board.server.base_url, admin_secret=ADMIN_SECRET)


async def order_with_espresso(board: Board, order_id: str, qty: int, customer: str = "ada") -> None:
    async with admin(board) as client:
        await client.create("Order", {"customer": customer,
                                      "items": [{"sku": "espresso", "qty": qty}]}, id=order_id)


async def changes_by_mutation(database_url: str, mutation_ids: list[str]) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT mutation_id, count(*) AS n FROM statesync_changes "
            "WHERE mutation_id = ANY($1::text[]) GROUP BY mutation_id", mutation_ids)
    finally:
        await connection.close()
    return {row["mutation_id"]: row["n"] for row in rows}


async def test_two_pages_stay_in_sync_and_an_order_appears_priced_in_both(board: Board) -> None:
    _, ada = await board.open_page()
    _, bob = await board.open_page()  # Ada's second window: "bob" is the page, not a customer

    await ada.fill('input[data-sku="espresso"]', "2")
    await ada.fill('input[data-sku="croissant"]', "1")
    await ada.click("form#new-order button[type=submit]")

    for page in (ada, bob):
        card = page.locator("li.order", has=page.locator(".customer", has_text="ada"))
        await expect(card).to_have_count(1, timeout=SETTLE)
        await priced(card, "$11.25")  # 2 x 3.50 + 4.25, computed by the worker
        await expect(card.locator(".badge")).to_have_text("priced")


class TwoWindows(NamedTuple):
    ada_card: Locator
    bob: Page
    bob_card: Locator
    bob_context: BrowserContext


async def bob_offline_beside_ada(board: Board, order_id: str, qty: int, total: str) -> TwoWindows:
    """An order of `qty` espressos, priced, shown to Ada and to Bob; then Bob's network goes."""
    await order_with_espresso(board, order_id, qty)
    _, ada = await board.open_page()
    bob_context, bob = await board.open_page()
    windows = TwoWindows(order_card(ada, order_id), bob, order_card(bob, order_id), bob_context)
    await priced(windows.bob_card, total)
    await bob_context.set_offline(True)
    await expect(bob.locator("#status")).to_have_attribute("data-status", "offline")
    return windows


async def test_offline_edits_queue_and_apply_exactly_once_back_online(board: Board) -> None:
    ada_card, bob, bob_card, bob_context = await bob_offline_beside_ada(
        board, "offline-order", 1, "$3.50")
    await more(bob_card, "espresso").click()
    await expect(quantity(bob_card, "espresso")).to_have_text("2")
    await more(bob_card, "espresso").click()
    await expect(quantity(bob_card, "espresso")).to_have_text("3")
    await expect(bob.locator("#queued")).to_have_attribute("data-count", "2")
    queued: list[str] = await bob.evaluate("window.statesync.queued.map(c => c.mutationId)")
    assert len(queued) == 2
    await expect(quantity(ada_card, "espresso")).to_have_text("1")  # nothing left Bob's page

    await bob_context.set_offline(False)
    await expect(bob.locator("#queued")).to_have_attribute("data-count", "0", timeout=SETTLE)
    for card in (ada_card, bob_card):
        await expect(quantity(card, "espresso")).to_have_text("3", timeout=SETTLE)
        await priced(card, f"${3 * ESPRESSO / 100:.2f}")
    assert await changes_by_mutation(board.server.settings.database_url or "", queued) == {
        queued[0]: 1, queued[1]: 1}


async def test_a_conflicting_edit_rolls_back_to_the_servers_document(board: Board) -> None:
    ada_card, bob, bob_card, bob_context = await bob_offline_beside_ada(
        board, "contested", 2, "$7.00")
    await more(bob_card, "espresso").click()
    await expect(quantity(bob_card, "espresso")).to_have_text("3")
    bobs_edit: list[str] = await bob.evaluate("window.statesync.queued.map(c => c.mutationId)")

    await ada_card.locator('li[data-sku="espresso"] button.less').click()
    await expect(ada_card).not_to_have_class("order pending", timeout=SETTLE)
    await priced(ada_card, "$3.50")

    await bob_context.set_offline(False)
    await expect(bob.locator("#notice")).to_be_visible(timeout=SETTLE)
    await expect(bob.locator("#notice-text")).to_contain_text("Conflict")
    await expect(quantity(bob_card, "espresso")).to_have_text("1")
    await expect(bob.locator("#queued")).to_have_attribute("data-count", "0")
    await priced(bob_card, "$3.50")
    assert await changes_by_mutation(board.server.settings.database_url or "", bobs_edit) == {}


async def test_a_reloaded_page_resumes_with_the_changes_made_meanwhile(board: Board) -> None:
    for order_id in ("stays", "goes"):
        await order_with_espresso(board, order_id, 1)
    _, page = await board.open_page()
    await priced(order_card(page, "stays"), "$3.50")
    await priced(order_card(page, "goes"), "$3.50")

    # Leaving at once could drop cache writes still waiting for IndexedDB to open (on a
    # loaded machine): this test is about resuming from them, so let them land first.
    await page.evaluate("window.statesync.saved()")
    await page.goto("about:blank")  # the page is gone; its watches' cursors stay in storage
    async with admin(board) as client:
        await client.update("Order", "stays", {"items": [{"sku": "espresso", "qty": 4}]})
        await client.delete("Order", "goes")
        await client.create("Order", {"customer": "ada", "items": [{"sku": "bagel", "qty": 1}]},
                            id="arrived")

    await page.goto(board.url)
    await expect(page.locator("#status")).to_have_attribute("data-status", "online")
    # The caches are read from IndexedDB before each watch subscribes, which may be after
    # the socket is up: wait for the watches, not for the status.
    try:
        await page.wait_for_function("[...window.statesync.watches].every(w => w.resumed)",
                                     timeout=SETTLE)
    except PlaywrightTimeout:
        states = await page.evaluate("[...window.statesync.watches].map(w => ({model: w.model, "
                                     "resumed: w.resumed, since: w.payload.variables.since}))")
        raise AssertionError(f"not every watch resumed: {states}") from None
    await expect(quantity(order_card(page, "stays"), "espresso")).to_have_text("4", timeout=SETTLE)
    await priced(order_card(page, "stays"), "$14.00")
    await expect(order_card(page, "goes")).to_have_count(0)
    await priced(order_card(page, "arrived"), "$3.00")


async def test_the_client_follows_the_events_a_commit_caused(board: Board) -> None:
    _, page = await board.open_page()
    event = await page.evaluate("""async () => {
        const sync = window.statesync;
        const result = await sync.create("Order", { items: [{ sku: "juice", qty: 2 }] });
        return await new Promise((resolve) => {
            sync.watchEvent(result.eventIds[0], (event) => { if (event.settled) resolve(event); });
        });
    }""")
    assert event["type"] == "Order.created" and event["settled"] is True
    assert [(d["handler"], d["status"]) for d in event["deliveries"]] == [
        ("price_order", "SUCCEEDED")]


async def test_two_customers_see_only_their_own_orders(board: Board) -> None:
    _, ann = await board.open_page("ann")
    _, bob = await board.open_page("bob")
    await expect(ann.locator("#user")).to_have_text("ann")
    for page, sku in ((ann, "espresso"), (bob, "bagel")):
        await page.fill(f'input[data-sku="{sku}"]', "1")
        await page.click("form#new-order button[type=submit]")
    await order_with_espresso(board, "for-ann", 2, customer="ann")  # the admin, for ann
    for page, mine in ((ann, "ann"), (bob, "bob")):
        cards = page.locator("li.order")
        await expect(cards).to_have_count(2 if mine == "ann" else 1, timeout=SETTLE)
        await expect(cards.locator(".customer")).to_have_text([mine] * (2 if mine == "ann" else 1))
    await priced(order_card(ann, "for-ann"), "$7.00")
    await expect(order_card(bob, "for-ann")).to_have_count(0)
    # What the server sent each page, not only what it shows: ann's orders never reach bob.
    bobs = await bob.evaluate("[...window.statesync.watches].flatMap(w => [...w.confirmed.docs.values()])"
                              ".filter(d => d.customer !== undefined).map(d => d.customer)")
    assert set(bobs) == {"bob"}, bobs


async def test_orders_show_their_products_live_through_the_reference(board: Board) -> None:
    await order_with_espresso(board, "live-price", 2)
    _, page = await board.open_page()
    _, other = await board.open_page()
    row = 'li[data-sku="espresso"]'
    for window in (page, other):
        card = order_card(window, "live-price")
        await priced(card, "$7.00")
        await expect(card.locator(f"{row} .name")).to_have_text("Espresso")
        await expect(card.locator(f"{row} .price")).to_have_text("$3.50")
    async with admin(board) as client:  # the catalog changes; no order does
        await client.update("Product", "espresso", {"name": "Double espresso",
                                                    "priceCents": 400})
    for window in (page, other):
        card = order_card(window, "live-price")
        await expect(card.locator(f"{row} .price")).to_have_text("$4.00", timeout=SETTLE)
        await expect(card.locator(f"{row} .name")).to_have_text("Double espresso")
        await expect(card.locator(".version")).to_have_text("v2")  # the order did not change


async def test_two_offline_edits_of_different_fields_both_land(board: Board) -> None:
    """The note from one screen, the quantity from another that was offline: merged by the
    server (schema/shop.py merge_order), not a conflict."""
    ada_card, bob, bob_card, bob_context = await bob_offline_beside_ada(
        board, "merged", 1, "$3.50")
    await more(bob_card, "espresso").click()
    await expect(quantity(bob_card, "espresso")).to_have_text("2")
    bobs_edit: list[str] = await bob.evaluate("window.statesync.queued.map(c => c.mutationId)")

    await ada_card.locator(".note").fill("gift wrap, please")
    await ada_card.locator(".note").press("Enter")
    await expect(ada_card.locator(".version")).to_have_text("v3", timeout=SETTLE)

    await bob_context.set_offline(False)
    await expect(bob.locator("#queued")).to_have_attribute("data-count", "0", timeout=SETTLE)
    for card in (ada_card, bob_card):
        await expect(quantity(card, "espresso")).to_have_text("2", timeout=SETTLE)
        await expect(card.locator(".note")).to_have_value("gift wrap, please", timeout=SETTLE)
        await priced(card, "$7.00")
    await expect(bob.locator("#notice")).to_be_hidden()
    assert await changes_by_mutation(board.server.settings.database_url or "", bobs_edit) == {
        bobs_edit[0]: 1}
    connection = await asyncpg.connect(board.server.settings.database_url)
    try:
        resolution = await connection.fetchval(
            "SELECT resolution FROM statesync_changes WHERE mutation_id = $1", bobs_edit[0])
    finally:
        await connection.close()
    # Based on the version Bob saw, merged on the server: his items applied, nothing kept.
    assert orjson.loads(resolution) == {"strategy": "custom", "basedOn": 2, "applied": ["items"],
                                        "kept": []}
