"""The API's reads of events and deliveries (``events``, ``deliveries``, ``event``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from statesync.eventing import statements as q


async def event(connection: AsyncConnection, event_id: str) -> Any | None:
    return (await connection.execute(q.read_event(event_id))).first()


async def events(connection: AsyncConnection, *, event_type: str | None, key: str | None,
                 status: str | None, before_seq: int | None, limit: int) -> list[Any]:
    return list((await connection.execute(q.list_events(
        event_type=event_type, key=key, status=status, after_seq=before_seq, limit=limit))).all())


async def deliveries_of(connection: AsyncConnection, event_ids: Sequence[str]) -> list[Any]:
    return list((await connection.execute(q.deliveries_of(event_ids))).all()) if event_ids else []


async def deliveries(connection: AsyncConnection, *, status: str | None, handler: str | None,
                     limit: int) -> list[Any]:
    return list((await connection.execute(q.list_deliveries(
        status=status, handler=handler, limit=limit))).all())


async def backlog(connection: AsyncConnection) -> tuple[int, dict[str, int]]:
    """Events not yet relayed, and deliveries by status (for ``/metrics``)."""
    unrelayed = (await connection.execute(q.unrelayed_count())).scalar_one()
    by_status = {row.status: row.n for row in await connection.execute(q.deliveries_by_status())}
    return int(unrelayed), by_status
