"""Replaying the migrations yields exactly the tables statesync declares, and they reverse."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from statesync.config import psycopg_url
from statesync.migrate import alembic_config
from statesync.store.tables import metadata


def _differences(url: str) -> list[object]:
    engine = sa.create_engine(psycopg_url(url))
    try:
        with engine.connect() as connection:
            return list(compare_metadata(MigrationContext.configure(connection), metadata))
    finally:
        engine.dispose()


async def test_migrations_match_the_declared_tables_and_downgrade_cleanly(database_url: str) -> None:
    # The per-test database is a clone of the template that ran every migration.
    assert await asyncio.to_thread(_differences, database_url) == []
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, "base")
    engine = sa.create_engine(psycopg_url(database_url))
    try:
        with engine.connect() as connection:
            left = set(sa.inspect(connection).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()
    assert left == set()
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await asyncio.to_thread(_differences, database_url) == []
