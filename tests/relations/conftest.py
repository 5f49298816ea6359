"""A server with the demo models plus test-only models that refer to each other
(schema/workshop.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from statesync.config import Settings
from statesync.loader import load_models
from statesync.models import ModelSpec
from tests.conftest import RunningServer, serve

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def workshop_models(demo_models: list[ModelSpec]) -> list[ModelSpec]:
    return [*demo_models, *load_models(HERE / "schema")]


@pytest.fixture
async def api(settings: Settings, workshop_models: list[ModelSpec]
              ) -> AsyncIterator[RunningServer]:
    async with serve(settings, workshop_models) as running:
        yield running
