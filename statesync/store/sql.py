"""Statements of the commit path, written once as SQL and run as the driver's own.

Building a SQLAlchemy statement per call and compiling it costs about half a millisecond
of Python each (its cache key alone is a tree walk), and a commit runs several. The hot
path's statements are fixed text instead, with ``:name`` placeholders rendered once per
driver: ``$1`` for asyncpg (the API) and ``%(name)s`` for psycopg (the Celery workers),
and run with ``exec_driver_sql`` inside the caller's SQLAlchemy transaction, so nothing
about transactions changes. asyncpg prepares each text once per connection and keeps it.

Driver SQL gets no type processing: JSON goes in as text (``json_dumps``, cast to jsonb in
the SQL) and comes back decoded by the engines' codecs (orjson, statesync.store.engines).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_NAME = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class Sql:
    text: str
    names: tuple[str, ...]
    asyncpg: str
    psycopg: str

    @classmethod
    def of(cls, text: str) -> Sql:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        asyncpg = _NAME.sub(number, text)
        psycopg = _NAME.sub(lambda m: f"%({m.group(1)})s", text.replace("%", "%%"))
        return cls(text, tuple(names), asyncpg, psycopg)

    def __call__(self, **args: Any) -> Query:
        missing = set(self.names) - set(args)
        if missing:
            raise TypeError(f"missing arguments {sorted(missing)} for: {self.text[:60]}")
        return Query(self, args)


@dataclass(frozen=True, slots=True)
class Query:
    sql: Sql
    args: Mapping[str, Any]

    def for_asyncpg(self) -> tuple[str, tuple[Any, ...]]:
        return self.sql.asyncpg, tuple(self.args[name] for name in self.sql.names)

    def for_psycopg(self) -> tuple[str, Mapping[str, Any]]:
        return self.sql.psycopg, self.args
