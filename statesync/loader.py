"""Loading the deployment's code (models here, handlers in ``eventing.handlers``) from a
folder or file, never from site-packages.

``schema`` is a common top-level name (PyPI has a ``schema`` package), so the
files are imported under a private package name and cannot shadow anything.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from statesync.models import ModelSpec, is_model

PACKAGE = "statesync_deployment"


def _import(path: Path, name: str) -> ModuleType:
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        # Once per process: importing it again would make new classes (an enum, say) that
        # the first import's models and validators do not know.
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def import_folder(path: Path, kind: str, setting: str) -> list[ModuleType]:
    """The ``.py`` files at ``path`` (a folder or one file), imported as ``kind`` modules."""
    path = path.resolve()
    if not path.exists():
        raise FileNotFoundError(f"{kind} path {path} does not exist ({setting})")
    files = sorted(path.glob("*.py")) if path.is_dir() else [path]
    return [_import(file, f"{PACKAGE}.{kind}.{file.stem}") for file in files
            if not file.name.startswith("_")]


def load_models(path: Path) -> list[ModelSpec]:
    """Every ``@model`` class defined in the ``.py`` files at ``path``, in name order."""
    found: dict[str, ModelSpec] = {}
    for module in import_folder(path, "schema", "STATESYNC_SCHEMA_PATH"):
        for obj in vars(module).values():
            if is_model(obj) and obj.__module__ == module.__name__:
                spec = ModelSpec.of(obj)
                if spec.name in found:
                    raise TypeError(f"model {spec.name} is declared twice")
                found[spec.name] = spec
    return [found[name] for name in sorted(found)]
