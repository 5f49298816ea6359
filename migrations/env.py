"""Alembic environment: runs statesync's migrations on the configured database."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from statesync.config import Settings, asyncpg_url
from statesync.store.tables import metadata

target_metadata = metadata


def _url() -> str:
    url = context.config.attributes.get("database_url") or Settings().database_url
    if not url:
        raise RuntimeError("set STATESYNC_DATABASE_URL (or run `statesync dev`)")
    return asyncpg_url(url)


# Several `statesync serve` started at once on a new database each run the migrations;
# this lock (held until the migration transaction ends) makes them take turns, and the
# later ones then find the schema current.
MIGRATION_LOCK = 0x5747_4D49  # arbitrary, fixed: "statesync migrations"


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


async def _online() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_online())
