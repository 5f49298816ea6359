"""GraphiQL works with no internet: the page loads only the API's own files, and a
subscription run from it shows the snapshot, then a change committed elsewhere."""

from __future__ import annotations

from urllib.parse import quote

from playwright.async_api import Browser, expect

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.browser.conftest import offline_but_for
from tests.conftest import serve
from tests.support import GraphQLClient

SUBSCRIPTION = "subscription { products { op id } }"


async def test_graphiql_runs_a_subscription_offline(
        browser: Browser, settings: Settings, demo_models: list[ModelSpec]) -> None:
    async with serve(settings.model_copy(update={"graphiql": True}), demo_models) as server:
        context = await browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            elsewhere = await offline_but_for(context, server.base_url)
            page = await context.new_page()
            await page.goto(f"{server.base_url}/graphql?q={quote(SUBSCRIPTION)}")
            await expect(page.locator(".graphiql-execute-button")).to_be_visible(timeout=20_000)
            await page.locator(".graphiql-execute-button").click()
            result = page.locator(".graphiql-response")
            await expect(result).to_contain_text("SNAPSHOT", timeout=20_000)

            client = GraphQLClient(server.base_url)
            try:
                await client.data('mutation { createProduct(id: "from-graphiql", input: {sku: "g", '
                                  'name: "G", priceCents: 1}) { id } }')
            finally:
                await client.aclose()
            await expect(result).to_contain_text("from-graphiql", timeout=20_000)
            await expect(result).to_contain_text("CREATED")
            assert elsewhere == [], elsewhere
        finally:
            await context.close()
