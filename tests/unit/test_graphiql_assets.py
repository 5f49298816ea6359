"""The vendored GraphiQL files are the ones strawberry's page names, byte for byte: each
matches the subresource-integrity hash in the page, which the browser checks too."""

from __future__ import annotations

import base64
import hashlib
import re

from strawberry.http.ides import get_graphql_ide_html

from statesync.graphiql import ASSETS, PREFIX, VENDOR, offline_page

TAG = re.compile(r'(?:src|href)="(?P<url>[^"]+)"\s+integrity="(?P<sri>sha384-[^"]+)"')


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def test_every_vendored_file_matches_the_integrity_hash_strawberry_pins() -> None:
    pinned = {m["url"]: m["sri"] for m in TAG.finditer(get_graphql_ide_html("graphiql"))}
    assert set(pinned) == set(ASSETS)  # nothing missing, nothing extra
    for url, name in ASSETS.items():
        assert sri((VENDOR / name).read_bytes()) == pinned[url], name


def test_the_offline_page_loads_nothing_from_elsewhere() -> None:
    page = offline_page()
    assert "https://" not in page.split("<body>")[0]  # no external asset in the head
    urls = {m["url"] for m in TAG.finditer(page)}
    assert urls == {PREFIX + name for name in ASSETS.values()}
