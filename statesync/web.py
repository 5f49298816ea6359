"""Static routes: the JS client every server serves, and the demo page and the console
`statesync dev` adds."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from statesync.graphiql import PREFIX as GRAPHIQL_PREFIX
from statesync.graphiql import VENDOR as GRAPHIQL_VENDOR
from statesync.models import ModelSpec

# clients/js in a checkout; statesync/_client in an installed wheel (see pyproject.toml).
CLIENT_DIR = Path(str(files("statesync._client")))
DEMO_DIR = Path(str(files("statesync.demo")))
CONSOLE_DIR = Path(str(files("statesync.console")))
# The pages' files, served by name: not the folders' Python (seed.py, __init__.py).
CONSOLE_ASSETS = ("console.js", "console.css")
DEMO_ASSETS = ("board.js", "board.css")
PAGE_ASSETS = {"js": "text/javascript", "css": "text/css"}
DEMO_MODELS = {"Order", "Product"}
# The client's modules, served by name: not the folder's tests or packaging files.
CLIENT_MODULES = ("statesync.js", "durable.js", "tabs.js")


def demo_fits(specs: list[ModelSpec]) -> bool:
    """The demo page is an order board: it needs the demo schema's models."""
    return {spec.name for spec in specs} >= DEMO_MODELS


def _page(path: str, assets: str, folder: Path, names: tuple[str, ...]) -> list[BaseRoute]:
    """A page (``folder``/index.html at ``path``) and its named files under ``assets``."""

    async def page(request: Request) -> Response:
        return FileResponse(folder / "index.html")

    async def asset(request: Request) -> Response:
        name = request.url.path.rsplit("/", 1)[-1]
        return FileResponse(folder / name, media_type=PAGE_ASSETS[name.rsplit(".", 1)[1]])

    return [Route(path, page), *(Route(f"{assets}/{name}", asset) for name in names)]


def static_routes(specs: list[ModelSpec], *, demo: bool, graphiql: bool = False,
                  console: bool = False) -> list[BaseRoute]:
    async def client_module(request: Request) -> Response:
        name = request.url.path.rsplit("/", 1)[-1]
        return FileResponse(CLIENT_DIR / name, media_type="text/javascript")

    # The modules and what they import.
    routes: list[BaseRoute] = [Route(f"/client/{name}", client_module) for name in CLIENT_MODULES]
    routes.append(Mount("/client/vendor", StaticFiles(directory=CLIENT_DIR / "vendor"),
                        name="client-vendor"))
    if graphiql:  # the page at /graphql loads these instead of a CDN's
        routes.append(Mount(GRAPHIQL_PREFIX.rstrip("/"), StaticFiles(directory=GRAPHIQL_VENDOR),
                            name="graphiql"))
    if console:  # the page is static; what it shows is the admin's, asked of the API
        routes += _page("/console", "/console/assets", CONSOLE_DIR, CONSOLE_ASSETS)
    if demo and demo_fits(specs):
        routes += _page("/", "/demo", DEMO_DIR, DEMO_ASSETS)
    else:

        async def home(request: Request) -> Response:
            return RedirectResponse("/graphql")

        routes.append(Route("/", home))
    return routes
