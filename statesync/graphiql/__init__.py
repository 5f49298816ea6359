"""GraphiQL served from the package, so the API's page works on a machine without the
internet: strawberry's page, with its CDN assets replaced by the same files vendored here.

``vendor/`` holds the exact npm files strawberry's page names (``ASSETS``); the page keeps
their subresource-integrity hashes, so a browser refuses a file that is not the one
published, and ``tests/unit/test_graphiql_assets.py`` checks every byte against them.
"""

from __future__ import annotations

import re
from pathlib import Path

from strawberry.http.ides import get_graphql_ide_html

VENDOR = Path(__file__).resolve().parent / "vendor"
PREFIX = "/graphiql/"

# The CDN URL in strawberry's page -> the vendored file (npm package@version and path).
ASSETS: dict[str, str] = {
    "https://unpkg.com/react@18.2.0/umd/react.production.min.js": "react.production.min.js",
    "https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js":
        "react-dom.production.min.js",
    "https://unpkg.com/js-cookie@3.0.5/dist/js.cookie.min.js": "js.cookie.min.js",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.css": "graphiql.min.css",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.js": "graphiql.min.js",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/style.css": "plugin-explorer.css",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/index.umd.js":
        "plugin-explorer.umd.js",
}
_EXTERNAL = re.compile(r"""(?:src|href)="(https?://[^"]+)\"""")


class UnknownAsset(Exception):
    """strawberry's page names an asset that is not vendored (strawberry was upgraded)."""


def offline_page() -> str:
    """strawberry's GraphiQL page, every external asset served from ``PREFIX``."""
    page = get_graphql_ide_html("graphiql")
    for url in _EXTERNAL.findall(page):
        if url not in ASSETS:
            raise UnknownAsset(f"{url}: vendor it in statesync/graphiql (see its docstring)")
        page = page.replace(url, PREFIX + ASSETS[url])
    return page
