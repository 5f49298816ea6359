"""What every server serves besides GraphQL: the JS client; and the demo board only when asked."""

from __future__ import annotations

import re

import httpx

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import RunningServer, serve


async def test_every_server_serves_the_js_client_and_sends_home_to_graphiql(
        server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        module = await http.get("/client/statesync.js")
        assert module.status_code == 200
        assert module.headers["content-type"].startswith("text/javascript")
        imported = re.findall(r'^(?:import|export) .* from "\./([\w.]+)";$', module.text, re.M)
        assert imported, "the client's own modules are not imported as expected"
        for name in imported:  # every module the client imports is served beside it
            assert (await http.get(f"/client/{name}")).status_code == 200, name
        vendored = await http.get("/client/vendor/graphql-ws/client.js")
        assert "function createClient" in vendored.text
        for private in ("/client/__init__.py", "/client/test/statesync.test.js", "/client/package.json"):
            assert (await http.get(private)).status_code == 404, private
        home = await http.get("/")
        assert (home.status_code, home.headers["location"]) == (307, "/graphql")
        assert (await http.get("/demo/board.js")).status_code == 404
        assert (await http.get("/console")).status_code == 404  # off unless asked for


async def test_the_demo_board_needs_the_demo_schema(settings: Settings,
                                                    demo_models: list[ModelSpec]) -> None:
    demo = settings.model_copy(update={"demo": True})
    async with serve(demo, demo_models) as running, httpx.AsyncClient(base_url=running.base_url) as http:
        assert "order board" in (await http.get("/")).text
        assert (await http.get("/demo/board.js")).status_code == 200
        assert (await http.get("/demo/seed.py")).status_code == 404  # only the page's files
    products_only = [spec for spec in demo_models if spec.name == "Product"]
    async with serve(demo, products_only) as running, httpx.AsyncClient(base_url=running.base_url) as http:
        assert (await http.get("/")).status_code == 307


async def test_the_console_is_served_when_asked_for(settings: Settings,
                                                    demo_models: list[ModelSpec]) -> None:
    on = settings.model_copy(update={"console": True})
    async with serve(on, demo_models) as running, httpx.AsyncClient(base_url=running.base_url) as http:
        page = await http.get("/console")
        assert "<title>statesync · console</title>" in page.text
        script = await http.get("/console/assets/console.js")
        assert script.status_code == 200 and 'from "graphql-ws"' in script.text
        assert (await http.get("/console/assets/__init__.py")).status_code == 404
