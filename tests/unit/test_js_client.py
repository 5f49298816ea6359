"""The JS client's own tests (clients/js/test, node:test against an in-memory server)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from statesync.web import CLIENT_DIR

MIN_NODE = (20, 6)  # module.register, which maps `graphql-ws` to the vendored copy


def _node_version() -> tuple[int, ...] | None:
    if shutil.which("node") is None:
        return None
    out = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
    return tuple(int(part) for part in out.strip().lstrip("v").split(".")[:2])


def test_the_js_client_bookkeeping() -> None:
    version = _node_version()
    if version is None or version < MIN_NODE:
        pytest.skip(f"Node.js >= {'.'.join(map(str, MIN_NODE))} runs the JS client's tests")
    done = subprocess.run(["node", "--import", "./test/register.mjs", "--test", "test/"],
                          cwd=CLIENT_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout
