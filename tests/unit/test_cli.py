"""The command's own edges: its version, and settings it cannot use, named plainly."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def statesync(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STATESYNC_")}
    return subprocess.run([sys.executable, "-m", "statesync", *args], capture_output=True,
                          text=True, cwd=ROOT, env={**clean, **env}, timeout=60)


def test_version() -> None:
    done = statesync("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"statesync {importlib.metadata.version('statesync')}"


def test_a_bad_setting_names_its_variable_without_a_traceback() -> None:
    done = statesync("schema", "print", STATESYNC_PORT="abc")
    assert done.returncode == 2
    assert done.stderr.startswith("error: STATESYNC_PORT: ")
    assert "(got 'abc')" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_an_unknown_variable_is_warned_about_with_the_likely_one() -> None:
    done = statesync("schema", "print", STATESYNC_PROT="9000", STATESYNC_TEST_ANYTHING="x")
    assert done.returncode == 0 and "type Order" in done.stdout
    assert done.stderr.splitlines() == [
        "warning: STATESYNC_PROT is not a statesync setting (did you mean STATESYNC_PORT?); "
        "it is ignored"]
