"""Database engines, built in entry points: JSON goes through orjson both ways.

orjson decodes an integer beyond 64 bits as a float. statesync never stores such an
integer (see :mod:`statesync.values`), so one read back from JSONB was a float written
with an exponent (``1e20`` is stored as ``100000000000000000000``): decoding it as a
float gives exactly that float, and everything read can be encoded again.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from statesync.config import asyncpg_url, psycopg_url


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def async_engine(url: str, **options: Any) -> AsyncEngine:
    return create_async_engine(asyncpg_url(url), json_serializer=json_dumps,
                               json_deserializer=orjson.loads, **options)


def sync_engine(url: str, **options: Any) -> sa.Engine:
    return sa.create_engine(psycopg_url(url), json_serializer=json_dumps,
                            json_deserializer=orjson.loads, **options)
