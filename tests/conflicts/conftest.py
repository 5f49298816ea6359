"""A server with the demo models plus one model per conflict strategy (schema/boards.py)."""

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
def conflict_models(demo_models: list[ModelSpec]) -> list[ModelSpec]:
    return [*demo_models, *load_models(HERE / "schema")]


@pytest.fixture
async def api(settings: Settings, conflict_models: list[ModelSpec]) -> AsyncIterator[RunningServer]:
    async with serve(settings, conflict_models) as running:
        yield running
