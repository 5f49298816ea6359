"""The operator console in Chromium, with no network beyond the API: it asks for the admin
secret, shows the roles, the live changes and a dead letter, and redelivers it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from playwright.async_api import Browser, expect

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.browser.conftest import offline_but_for
from tests.conftest import ROOT, CeleryWorker, serve
from tests.handlers.doomed import MAX_ATTEMPTS
from tests.support import GraphQLClient

SECRET = "console-admin-secret"
EMIT = 'mutation { emitEvent(type: "Doomed.run", key: "k1", payload: {}) { eventId } }'


async def test_the_console_shows_the_service_and_redelivers_a_dead_letter(
        browser: Browser, settings: Settings, demo_models: list[ModelSpec],
        start_worker: Callable[..., Awaitable[CeleryWorker]]) -> None:
    closed = settings.model_copy(update={
        "console": True, "open_access": False, "admin_secret": SECRET,
        "workers_path": ROOT / "tests" / "handlers" / "doomed.py", "handler_timeout": 3.0})
    async with serve(closed, demo_models, with_relay=True) as server:
        await start_worker(closed)
        admin = GraphQLClient(server.base_url, headers={"x-statesync-admin-secret": SECRET})
        context = await browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            elsewhere = await offline_but_for(context, server.base_url)
            page = await context.new_page()
            await page.goto(f"{server.base_url}/console")
            # Nothing shows before the admin signs in: the API refuses the page's reads.
            await expect(page.locator("#credentials")).to_be_visible()
            await expect(page.locator("#problem")).to_contain_text("admin")
            await page.locator("#credentials input[name=secret]").fill(SECRET)
            await page.locator("#credentials button").click()
            await expect(page.locator("#sequencer")).to_have_text("active, here")
            await expect(page.locator("#relay")).to_have_text("active", timeout=20_000)
            await expect(page.locator("#credentials")).to_be_hidden()

            await admin.data('mutation { createProduct(id: "p1", input: {sku: "p1", name: "P", '
                             "priceCents: 1}) { version } }")
            change = page.locator("#feed tr[data-model=Product][data-id=p1]")
            await expect(change).to_contain_text("CREATED")

            await admin.data(EMIT)
            letter = page.locator("#dead tr[data-handler=doomed]")
            await expect(letter).to_contain_text("no permit for k1", timeout=30_000)
            await expect(letter).to_contain_text(str(MAX_ATTEMPTS))
            await expect(page.locator("#deliveries .status-dead")).to_contain_text("1")

            await admin.data('mutation { createProduct(id: "permit-k1", input: {sku: "permit-k1", '
                             'name: "permit", priceCents: 0}) { version } }')
            await letter.locator("button").click()
            await expect(letter).to_have_count(0, timeout=30_000)
            event_row = page.locator("#events tr", has_text="Doomed.run")
            await expect(event_row).to_contain_text("doomed: succeeded", timeout=30_000)
            effect = await admin.data('{ product(id: "effect-k1") { name } }')
            assert effect == {"product": {"name": "redelivered effect"}}
            assert elsewhere == []
        finally:
            await context.close()
            await admin.aclose()
