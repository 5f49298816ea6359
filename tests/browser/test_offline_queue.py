"""The durable offline queue in a real Chromium: commits queued offline survive closing the
browser, the tabs of one customer share one queue that exactly one of them sends, and a
stale edit of a model that merges shows both edits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, Request, async_playwright, expect

from statesync.client import Client
from statesync.config import Settings
from statesync.loader import load_models
from statesync.models import ModelSpec
from tests.browser.conftest import ADMIN_SECRET, CHROMIUM_ARGS, board_settings
from tests.browser.test_board import SETTLE, changes_by_mutation, more, order_card, quantity
from tests.conftest import RunningServer, serve
from tests.support import eventually

CONFLICT_SCHEMA = Path(__file__).resolve().parents[1] / "conflicts" / "schema"

Launch = Callable[[], Awaitable[BrowserContext]]


@dataclass
class Shop:
    server: RunningServer
    launch: Launch  # the same browser profile each time, as if the user reopened the browser

    def url(self, user: str = "ada") -> str:
        return f"{self.server.base_url}/?as={user}"

    @property
    def database_url(self) -> str:
        return self.server.settings.database_url or ""

    def admin(self) -> Client:
        return Client(self.server.base_url, admin_secret=ADMIN_SECRET)


@pytest.fixture
async def shop(settings: Settings, demo_models: list[ModelSpec], chromium_path: str,
               tmp_path: Path) -> AsyncIterator[Shop]:
    """The demo board (no worker: orders stay NEW) beside the conflict suite's models, and a
    persistent Chromium profile in a temporary folder."""
    models = [*demo_models, *load_models(CONFLICT_SCHEMA)]
    profile = tmp_path / "profile"
    async with serve(board_settings(settings), models) as server, async_playwright() as playwright:
        opened: list[BrowserContext] = []

        async def launch() -> BrowserContext:
            context = await playwright.chromium.launch_persistent_context(
                str(profile), executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1200, "height": 900})
            opened.append(context)
            return context

        try:
            yield Shop(server, launch)
        finally:
            for context in opened:
                await context.close()


async def open_board(context: BrowserContext, url: str) -> Page:
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("#status")).to_have_attribute("data-status", "online")
    return page


async def order_for_ada(shop: Shop, order_id: str) -> None:
    async with shop.admin() as client:
        await client.create("Order", {"customer": "ada", "items": [{"sku": "espresso", "qty": 1}]},
                            id=order_id)


def record_sent_commits(context: BrowserContext) -> list[str]:
    """The mutationId of every commit any page of `context` sends, in order."""
    sent: list[str] = []

    def on_request(request: Request) -> None:
        if request.method != "POST" or not request.url.endswith("/graphql"):
            return
        body: Any = request.post_data_json
        mutation_id = (body or {}).get("variables", {}).get("mutationId")
        if mutation_id:
            sent.append(mutation_id)

    context.on("request", on_request)
    return sent


async def queued_ids(page: Page) -> list[str]:
    ids: list[str] = await page.evaluate("window.statesync.queued.map(c => c.mutationId)")
    return ids


async def test_commits_queued_offline_survive_closing_the_browser(shop: Shop) -> None:
    await order_for_ada(shop, "durable")
    context = await shop.launch()
    console: list[str] = []
    context.on("console", lambda message: console.append(f"1: {message.text}"))
    page = await open_board(context, shop.url())
    card = order_card(page, "durable")
    await expect(quantity(card, "espresso")).to_have_text("1")
    await context.set_offline(True)
    await expect(page.locator("#status")).to_have_attribute("data-status", "offline")
    await more(card, "espresso").click()
    await expect(quantity(card, "espresso")).to_have_text("2")
    await more(card, "espresso").click()
    await expect(quantity(card, "espresso")).to_have_text("3")
    await expect(page.locator("#queued")).to_have_attribute("data-count", "2")
    queued = await queued_ids(page)
    await page.evaluate("window.statesync.saved()")
    await context.close()  # the whole browser, with its queued commits
    assert await changes_by_mutation(shop.database_url, queued) == {}

    reopened = await shop.launch()
    page = await open_board(reopened, shop.url())
    await expect(page.locator("#queued")).to_have_attribute("data-count", "0", timeout=SETTLE)
    # Chromium may restore the board's tab from the closed session, and that tab may lead
    # and send the queue before this page does: what must hold is that the server applied
    # each commit once, whichever tab sent it (requests seen on the wire would miss the
    # restored tab's). The two-tab test below checks that no tab sends a commit twice.
    async def each_applied_once() -> bool:
        return await changes_by_mutation(shop.database_url, queued) == {queued[0]: 1,
                                                                         queued[1]: 1}

    await eventually(each_applied_once, SETTLE / 1000, f"{queued} applied once each; {console}")
    await expect(quantity(order_card(page, "durable"), "espresso")).to_have_text("3")
    async with shop.admin() as client:
        data = await client.query('{ order(id: "durable") { version items { qty } } }')
    assert data["order"] == {"version": 3, "items": [{"qty": 3}]}


async def test_two_tabs_share_one_queue_and_the_next_leader_sends_it_once(shop: Shop) -> None:
    await order_for_ada(shop, "shared")
    context = await shop.launch()
    sent = record_sent_commits(context)
    first = await open_board(context, shop.url())
    second = await open_board(context, shop.url())
    await first.wait_for_function("window.statesync.leading")  # the first tab leads
    assert not await second.evaluate("window.statesync.loaded.then(() => window.statesync.leading)")
    await context.set_offline(True)
    for page in (first, second):
        await expect(page.locator("#status")).to_have_attribute("data-status", "offline")

    await more(order_card(second, "shared"), "espresso").click()  # the follower's commit
    for page in (first, second):  # the same optimistic state and count in both tabs
        await expect(quantity(order_card(page, "shared"), "espresso")).to_have_text("2")
        await expect(page.locator("#queued")).to_have_attribute("data-count", "1")
    await more(order_card(first, "shared"), "espresso").click()  # built on the follower's
    for page in (first, second):
        await expect(quantity(order_card(page, "shared"), "espresso")).to_have_text("3")
        await expect(page.locator("#queued")).to_have_attribute("data-count", "2")
    queued = await queued_ids(second)
    assert queued == await queued_ids(first) and len(queued) == 2

    await first.close()  # the leader goes; the other tab takes over
    await second.wait_for_function("window.statesync.leading")
    await context.set_offline(False)
    await expect(second.locator("#queued")).to_have_attribute("data-count", "0", timeout=SETTLE)
    await expect(quantity(order_card(second, "shared"), "espresso")).to_have_text("3")
    assert await changes_by_mutation(shop.database_url, queued) == {queued[0]: 1, queued[1]: 1}
    assert sent == queued


async def test_an_offline_edit_of_a_merging_model_shows_both_edits(shop: Shop) -> None:
    async with shop.admin() as client:
        await client.create("Ticket", {"title": "printer", "priority": 1}, id="t1")
    context = await shop.launch()
    page = await open_board(context, shop.url())
    # Tickets are the admin's (no rule lets a customer see them): a second client in the page.
    await page.evaluate("""async (secret) => {
        const { createStatesync } = await import("/client/statesync.js");
        const tickets = createStatesync({ url: "/graphql", adminSecret: secret, user: "admin" });
        window.tickets = { sync: tickets, resolved: [], value: null };
        tickets.on("resolved", ({ resolution }) => window.tickets.resolved.push(resolution));
        tickets.watch({ model: "Ticket", id: "t1", fields: "title priority" },
                      (ticket) => { window.tickets.value = ticket; });
    }""", ADMIN_SECRET)
    await page.wait_for_function("window.tickets.value?.version === 1")
    await context.set_offline(True)
    await page.wait_for_function("window.tickets.sync.status === 'offline'")
    await page.evaluate("""() => { window.tickets.sync.update(
        "Ticket", "t1", { title: "printer on fire" }, { expectedVersion: "current" }).catch(() => {}); }""")
    assert await page.evaluate("window.tickets.value.title") == "printer on fire"  # at once
    async with shop.admin() as client:  # meanwhile, someone else raises the priority
        await client.update("Ticket", "t1", {"priority": 5})

    await context.set_offline(False)
    await page.wait_for_function("window.tickets.sync.queued.length === 0 "
                                 "&& window.tickets.value.version === 3", timeout=SETTLE)
    ticket = await page.evaluate("window.tickets.value")
    assert (ticket["title"], ticket["priority"], ticket.get("pending")) == ("printer on fire", 5, None)
    resolved = await page.evaluate("window.tickets.resolved")
    assert resolved == [{"strategy": "merge", "basedOn": 1, "applied": ["title"], "kept": []}]
