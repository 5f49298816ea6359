"""The reference graphql-ws and graphql-sse clients (Node) against the API, and the copy of
graphql-ws we vendor."""

from __future__ import annotations

import asyncio
import re
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
    wanted = orjson.loads((NODE_PROJECT / "package.json").read_bytes())["dependencies"]
    packages = [NODE_PROJECT / "node_modules" / name / "package.json" for name in wanted]
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


async def node(*args: str, timeout: float = 40) -> bytes:
    """Run a script of tests/compat/node with the client's imports resolved there."""
    process = await asyncio.create_subprocess_exec(
        "node", "--import", str(NODE_PROJECT / "register.mjs"), *args, cwd=NODE_PROJECT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=timeout)
    assert process.returncode == 0, stderr.decode()
    return stdout


async def test_react_hooks_render_a_document_and_a_collection_through_changes(
        server: RunningServer, node_modules: Path) -> None:
    answer = orjson.loads(await node("react_client.mjs", f"{server.base_url}/graphql", "react-1"))
    shown = [(step["what"], step["product"], step["catalog"]) for step in answer["seen"]]
    assert shown == [("snapshot", "gone", "Bolt"), ("own commit", "Nut at 7", "BoltNut"),
                     ("someone else's change", "Nut at 9", "BoltNut"), ("delete", "gone", "Bolt")]
    first, *_, last = answer["seen"]
    # Bolt never changed: its memoized row was not rendered again by anything after the snapshot.
    assert last["renders"]["rows"]["Bolt"] == first["renders"]["rows"]["Bolt"]
    assert answer["errors"] == []  # React warns when a snapshot is not stable; none here


async def test_apollo_client_persists_queries_subscribes_over_multipart_and_keeps_its_cache(
        server: RunningServer, node_modules: Path) -> None:
    seen = orjson.loads(await node("apollo_client.mjs", f"{server.base_url}/graphql", "apollo-1"))
    sent = [(r["operation"], "text" if r["text"] else "hash") for r in seen["requests"]]
    # Each operation's hash alone first, then its text once the server says it does not know
    # it; the query asked again goes as its hash alone, which the server kept.
    assert sent == [("Product", "hash"), ("Product", "text"), ("Live", "hash"), ("Live", "text"),
                    ("Rename", "hash"), ("Rename", "text"), ("Product", "hash"),
                    ("Product", "hash")]  # the last: refetched once the delete evicted it
    assert "subscriptionSpec=1.0" in seen["requests"][3]["accept"]
    assert seen["frames"] == ["SNAPSHOT", "UPDATED", "UPDATED", "DELETED"]
    # The watched query never refetched until the eviction: the subscription's documents
    # and the mutation's answer updated the normalized cache it reads.
    product = {"__typename": "Product", "id": "apollo-1"}
    assert seen["watched"] == [{**product, "name": "Bolt", "priceCents": 5},
                               {**product, "name": "Bolt", "priceCents": 9},
                               {**product, "name": "Nut", "priceCents": 9}, None]
    assert seen["cached"] == []


async def test_graphql_http_s_audit_passes_every_must_should_and_may(
        server: RunningServer, node_modules: Path) -> None:
    """graphql-http's serverAudits: the GraphQL over HTTP spec's requirements, each checked
    against the running server; every one is met, the optional ones too."""
    results = orjson.loads(await node("http_audit.mjs", f"{server.base_url}/graphql"))
    assert len(results) > 50
    assert [r for r in results if r["status"] != "ok"] == []


async def test_the_typescript_declarations_compile_under_strict_and_catch_mistakes(
        node_modules: Path) -> None:
    """typed_usage.tsx uses the whole API and holds `@ts-expect-error` lines: tsc fails both
    when a declaration is wrong and when one is too loose to catch a mistake."""
    tsc = node_modules / "typescript" / "bin" / "tsc"
    process = await asyncio.create_subprocess_exec(
        "node", str(tsc), "-p", str(NODE_PROJECT / "tsconfig.json"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stdout.decode()


@pytest.mark.parametrize("module", ["statesync", "durable", "react"])
async def test_every_export_of_a_client_module_is_declared(node_modules: Path, module: str) -> None:
    listed = await node("--input-type=module", "-e", (
        f"const m = await import({str(CLIENT_DIR / (module + '.js'))!r});"
        "console.log(JSON.stringify(Object.keys(m).sort()))"))
    declarations = (CLIENT_DIR / f"{module}.d.ts").read_text()
    declared = set(re.findall(r"^export (?:declare )?(?:function|class|const) (\w+)", declarations, re.M))
    for names in re.findall(r"^export \{([^}]*)\} from", declarations, re.M):
        declared |= {name.strip() for name in names.split(",")}
    assert sorted(declared) == orjson.loads(listed)


@pytest.mark.parametrize("name", ["client.js", "common-CGW11Fyb.js", "LICENSE.md"])
def test_the_vendored_graphql_ws_is_the_npm_release_unchanged(node_modules: Path, name: str) -> None:
    package = node_modules / "graphql-ws"
    released = package / ("LICENSE.md" if name == "LICENSE.md" else f"dist/{name}")
    assert (VENDORED / name).read_bytes() == released.read_bytes()
