"""The reference graphql-ws and graphql-sse clients (Node) against the API, and the copy of
graphql-ws we vendor."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from statesync.web import CLIENT_DIR
from tests.conftest import RunningServer

NODE_PROJECT = Path(__file__).parent / "node"
VENDORED = CLIENT_DIR / "vendor" / "graphql-ws"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """`npm ci` of tests/compat/node once per run; skipped where Node or the registry is missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the graphql-ws compatibility test")
    packages = [NODE_PROJECT / "node_modules" / name / "package.json"
                for name in ("graphql-ws", "graphql-sse")]
    if not all(package.exists() for package in packages):
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_PROJECT,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"npm ci could not install the clients: {done.stderr.strip()[-300:]}")
    return NODE_PROJECT / "node_modules"


@pytest.mark.parametrize(("script", "product"), [
    ("reference_client.mjs", {"id": "node-1", "sku": "node-1", "name": "From Node", "priceCents": 120}),
    ("sse_client.mjs", {"id": "sse-1", "sku": "sse-1", "name": "Over SSE", "priceCents": 90}),
], ids=["graphql-ws", "graphql-sse"])
async def test_a_reference_client_subscribes_commits_and_receives(
        server: RunningServer, node_modules: Path, script: str, product: dict[str, object]) -> None:
    process = await asyncio.create_subprocess_exec(
        "node", str(NODE_PROJECT / script), f"{server.base_url}/graphql",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    snapshot, commit, created = orjson.loads(stdout)
    assert snapshot == {"op": "SNAPSHOT", "document": None, "documents": []}
    assert commit == {"commit": {"data": {"createProduct": {"version": 1}}}}
    assert created == {"op": "CREATED", "documents": None, "document": product}


@pytest.mark.parametrize("name", ["client.js", "common-CGW11Fyb.js", "LICENSE.md"])
def test_the_vendored_graphql_ws_is_the_npm_release_unchanged(node_modules: Path, name: str) -> None:
    package = node_modules / "graphql-ws"
    released = package / ("LICENSE.md" if name == "LICENSE.md" else f"dist/{name}")
    assert (VENDORED / name).read_bytes() == released.read_bytes()
