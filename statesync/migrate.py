"""Running statesync's own Alembic migrations (users' models never need one)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config

# `migrations/` in a checkout; statesync/_migrations in an installed wheel (see pyproject.toml).
MIGRATIONS = Path(str(files("statesync._migrations")))


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: call it from sync code or a worker thread, not inside an event loop."""
    command.upgrade(alembic_config(database_url), revision)
