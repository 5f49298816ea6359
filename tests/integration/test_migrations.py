"""Replaying the migrations yields exactly the tables statesync declares, and they reverse."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from statesync.config import psycopg_url
from statesync.migrate import alembic_config
from statesync.store.tables import metadata
from tests.conftest import _admin, _with_database


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



async def test_concurrent_upgrades_of_a_new_database_take_turns(admin_database_url: str) -> None:
    """Three `statesync migrate` (as three `statesync serve` starting at once) on an empty
    database: all succeed, and the schema is whole."""
    name = f"statesync_fresh_{uuid.uuid4().hex[:10]}"
    await _admin(admin_database_url, f"CREATE DATABASE {name}")
    try:
        url = _with_database(admin_database_url, name)
        env = {**os.environ, "STATESYNC_DATABASE_URL": url}
        processes = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "statesync", "migrate", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT) for _ in range(3)]
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in processes)), 60)
        assert [p.returncode for p in processes] == [0, 0, 0], [o[0].decode()[-2000:] for o in outputs]
        assert await asyncio.to_thread(_differences, url) == []
    finally:
        await _admin(admin_database_url, f"DROP DATABASE {name} WITH (FORCE)")
