"""The advisory locks that elect one sequencer and one relay among every statesync process
on a database, and the read of which of them is held (the console's, and the tests')."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

SEQUENCER = 0x5157_A7E5  # arbitrary constants, the same in every statesync process
RELAY = 0x5157_0E1A

# A bigint key's lock shows in pg_locks as (classid, objid) = (high, low 32 bits), objsubid 1.
_HELD = sa.text(
    "SELECT objid::bigint AS key FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND classid = 0 AND objsubid = 1 AND objid::bigint = ANY(CAST(:keys AS bigint[]))")


async def held(connection: AsyncConnection, keys: Iterable[int]) -> set[int]:
    """Which of ``keys`` some session holds now (any process's, this one's included)."""
    rows = await connection.execute(_HELD, {"keys": sorted(keys)})
    return {int(row.key) for row in rows}
