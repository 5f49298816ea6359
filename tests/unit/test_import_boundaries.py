"""The worker does not carry the web stack, and the web app does not carry the eventing
processes: each is checked in a fresh interpreter, as its process starts."""

from __future__ import annotations

import subprocess
import sys

import orjson

WEB_STACK = ("strawberry", "starlette", "graphql", "uvicorn")


def imported_after(module: str) -> list[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded: list[str] = orjson.loads(out.stdout)
    return loaded


def test_a_celery_worker_starts_without_the_web_stack() -> None:
    loaded = imported_after("statesync.celery_app")
    assert "statesync.eventing.worker" in loaded  # the entry did load the worker
    assert [m for m in loaded if m.split(".")[0] in WEB_STACK] == []
    assert [m for m in loaded if m.startswith("statesync.api")] == []


def test_the_web_app_imports_no_eventing_process() -> None:
    loaded = imported_after("statesync.app")
    eventing = [m for m in loaded if m.startswith("statesync.eventing.")]
    # The lifecycle's values and the SQL of the API's event reads and redeliveries; never
    # the relay, the worker or Celery (`statesync dev` puts the relay beside it in cli.py).
    assert eventing == ["statesync.eventing.lifecycle", "statesync.eventing.reads",
                        "statesync.eventing.statements"]
    assert "celery" not in loaded and "kombu" not in loaded
