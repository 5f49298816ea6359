"""A wheel holds every package of statesync: pyproject.toml lists them by hand."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_statesync_package_is_in_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts)
             for init in (ROOT / "statesync").rglob("__init__.py")
             if "__pycache__" not in init.parts}
    assert found <= listed, sorted(found - listed)


def test_loading_the_models_twice_gives_the_same_classes() -> None:
    from statesync.loader import load_models

    first, second = load_models(ROOT / "schema"), load_models(ROOT / "schema")
    assert [spec.cls for spec in first] == [spec.cls for spec in second]
