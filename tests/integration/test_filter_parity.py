"""SQL filters and keyset paging must agree exactly with the Python evaluation.

Runs against the real PostgreSQL of the shared fixtures. Documents and filters are generated from a fixed seed
(override with ``STATESYNC_PARITY_SEED``) and include nulls, missing keys,
mistyped values, unicode, LIKE wildcards, ties and mixed-offset datetimes.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from statesync.config import asyncpg_url
from statesync.filters import (
    LIST_KINDS,
    STRING_KINDS,
    AllOf,
    AnyOf,
    Compare,
    FieldKind,
    Filter,
    Negate,
    Op,
    OrderKey,
    cursor_values,
    decode_page_token,
    encode_page_token,
    is_after,
    matches,
    sort_key,
)
from statesync.sql_filters import after_clause, filter_clause, order_by_clauses

SEED = int(os.environ.get("STATESYNC_PARITY_SEED", "20260102"))
N_DOCS = 300


documents = sa.Table(
    "filter_parity_documents",
    sa.MetaData(),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("id", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("data", postgresql.JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    prefixes=["TEMPORARY"],
)

KINDS: dict[str, FieldKind] = {
    "id": FieldKind.ID,
    "version": FieldKind.INT,
    "created_at": FieldKind.DATETIME,
    "updated_at": FieldKind.DATETIME,
    "expires_at": FieldKind.DATETIME,
    "title": FieldKind.STRING,
    "color": FieldKind.ENUM,
    "owner": FieldKind.ID,
    "count": FieldKind.INT,
    "score": FieldKind.FLOAT,
    "done": FieldKind.BOOL,
    "due": FieldKind.DATETIME,
    "tags": FieldKind.STRING_LIST,
    "nums": FieldKind.INT_LIST,
}
USER_FIELDS = [
    f
    for f in KINDS
    if f not in {"id", "version", "created_at", "updated_at", "expires_at"}
]
ORDERABLE = [f for f, k in KINDS.items() if k not in LIST_KINDS]

STRINGS = [
    "", "a", "A", "ab", "abc", "b", "B", "é", "e\u0301", "😀", "z", "%", "_", "a%",
    "a_c", "a\\", "\\%", "100%", "x_y", "Zürich", "日本", " ", "a b",
]  # fmt: skip
COLORS = ["red", "green", "blue", "Red"]
INTS = [-3, -2, -1, 0, 1, 2, 3, 2**40, -(2**53), 10**20]
# 2**53 + 1 is not a double: FLOAT fields must round it exactly as float8 does.
FLOATS = [
    -1.5,
    -0.0,
    0.0,
    0.1,
    0.2,
    0.3,
    0.30000000000000004,
    1.0,
    2.0,
    1e-300,
    1e300,
    3.25,
    2**53 + 1,
    float(2**53),
]
BASE_INSTANTS = [
    datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, 123457, tzinfo=UTC),
    datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(1999, 6, 1, tzinfo=UTC),
]
OFFSETS = [
    timedelta(0),
    timedelta(hours=2),
    timedelta(hours=-5, minutes=-30),
    timedelta(hours=13, minutes=45),
]
ALL_OPS = list(Op)


def _instant(rng: random.Random) -> datetime:
    offset = timezone(rng.choice(OFFSETS))
    return rng.choice(BASE_INSTANTS).astimezone(offset)


def _string(rng: random.Random) -> str:
    return "".join(rng.choice(STRINGS) for _ in range(rng.randint(1, 3)))


# Typed filter values per kind; drawn from the same pools as stored values so
# that equality and prefixes actually hit.
VALUE_MAKERS: dict[FieldKind, Callable[[random.Random], Any]] = {
    FieldKind.STRING: _string,
    FieldKind.ID: lambda rng: rng.choice([_string(rng), f"d{rng.randrange(N_DOCS)}"]),
    FieldKind.ENUM: lambda rng: rng.choice(COLORS),
    FieldKind.INT: lambda rng: rng.choice(INTS),
    FieldKind.FLOAT: lambda rng: rng.choice([*FLOATS, *INTS[:7]]),
    FieldKind.BOOL: lambda rng: rng.random() < 0.5,
    FieldKind.DATETIME: _instant,
    FieldKind.STRING_LIST: _string,
    FieldKind.INT_LIST: lambda rng: rng.choice(INTS),
}

# Stored values of the wrong JSON type: both sides must read them as null.
MISTYPED: dict[FieldKind, list[Any]] = {
    FieldKind.STRING: [5, True, ["a"]],
    FieldKind.ID: [7, {"a": "b"}],
    FieldKind.ENUM: [1.5],
    FieldKind.INT: ["5", True, [1]],
    FieldKind.FLOAT: ["1.5", False],
    FieldKind.BOOL: [1, "true"],
    FieldKind.DATETIME: [12345, True],
    FieldKind.STRING_LIST: ["a", {"a": 1}, 3],
    FieldKind.INT_LIST: ["1", 1],
}


def _stored_value(rng: random.Random, kind: FieldKind) -> Any:
    if kind is FieldKind.DATETIME:
        moment = _instant(rng)
        text = moment.isoformat()
        return text.replace("+00:00", "Z") if rng.random() < 0.3 else text
    if kind is FieldKind.INT and rng.random() < 0.1:
        return rng.choice([2.0, 2.5, 1e23, -0.5])
    if kind is FieldKind.STRING_LIST:
        items: list[Any] = [_string(rng) for _ in range(rng.randint(0, 4))]
        return items + ([1, None] if rng.random() < 0.1 else [])
    if kind is FieldKind.INT_LIST:
        nums: list[Any] = [rng.choice(INTS) for _ in range(rng.randint(0, 4))]
        return nums + ([True, 2.0, "3"] if rng.random() < 0.15 else [])
    return VALUE_MAKERS[kind](rng)


def _user_data(rng: random.Random) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for field in USER_FIELDS:
        kind, roll = KINDS[field], rng.random()
        if roll < 0.1:
            continue  # missing key
        if roll < 0.2:
            data[field] = None
        elif roll < 0.25:
            data[field] = rng.choice(MISTYPED[kind])
        else:
            data[field] = _stored_value(rng, kind)
    return data


def _make_docs(rng: random.Random) -> list[dict[str, Any]]:
    prefixes = ["d", "D", "é", "_", "%", "d_", ""]
    docs = []
    for i in range(N_DOCS):
        meta: dict[str, Any] = {
            "id": f"{rng.choice(prefixes)}{i}",
            "version": rng.randint(1, 4),
            "created_at": _instant(rng),
            "updated_at": _instant(rng),
            "expires_at": _instant(rng) if rng.random() < 0.5 else None,
        }
        docs.append(_user_data(rng) | meta)
    return docs


DOCS = _make_docs(random.Random(SEED))
DOCS_BY_ID = {d["id"]: d for d in DOCS}


def _ops_for(kind: FieldKind) -> list[Op]:
    if kind in LIST_KINDS:
        return [Op.CONTAINS]
    if kind in STRING_KINDS:
        return ALL_OPS
    return [op for op in ALL_OPS if op not in (Op.CONTAINS, Op.BEGINS_WITH)]


def _compare(rng: random.Random, field: str, op: Op) -> Compare:
    make = VALUE_MAKERS[KINDS[field]]
    if op in (Op.IN, Op.NOT_IN):
        return Compare(field, op, tuple(make(rng) for _ in range(rng.randint(0, 4))))
    if op is Op.BETWEEN:
        low, high = (
            sorted([make(rng), make(rng)])
            if rng.random() < 0.8
            else (make(rng), make(rng))
        )
        return Compare(field, op, (low, high))
    if op in (Op.EQ, Op.NE) and rng.random() < 0.1:
        return Compare(field, op, None)
    return Compare(field, op, make(rng))


def _random_compare(rng: random.Random) -> Compare:
    field = rng.choice(list(KINDS))
    return _compare(rng, field, rng.choice(_ops_for(KINDS[field])))


def _random_filter(rng: random.Random, depth: int) -> Filter:
    roll = rng.random()
    if depth <= 0 or roll < 0.4:
        return _random_compare(rng)
    parts = tuple(_random_filter(rng, depth - 1) for _ in range(rng.randint(0, 3)))
    if roll < 0.65:
        return AllOf(parts)
    if roll < 0.9:
        return AnyOf(parts)
    return Negate(_random_filter(rng, depth - 1))


def _make_filters(rng: random.Random) -> list[Filter]:
    # Every (field, op) pair, plain and negated, then random nested trees.
    base: list[Filter] = []
    for field, kind in KINDS.items():
        for op in _ops_for(kind):
            for _ in range(3):
                c = _compare(rng, field, op)
                base += [c, Negate(c)]
    return base + [_random_filter(rng, 3) for _ in range(400)]


FILTERS = _make_filters(random.Random(SEED + 1))


def _walk(f: Filter) -> list[Filter]:
    if isinstance(f, AllOf | AnyOf):
        return [f, *(g for p in f.parts for g in _walk(p))]
    if isinstance(f, Negate):
        return [f, *_walk(f.part)]
    return [f]


def test_generated_filters_cover_every_operator_and_combinator() -> None:
    nodes = [n for f in FILTERS for n in _walk(f)]
    assert {n.op for n in nodes if isinstance(n, Compare)} == set(Op)
    assert {type(n) for n in nodes} == {Compare, AllOf, AnyOf, Negate}
    assert any(isinstance(n, AllOf | AnyOf) and not n.parts for n in nodes)


@pytest_asyncio.fixture
async def conn(database_url: str) -> AsyncIterator[AsyncConnection]:
    engine = create_async_engine(asyncpg_url(database_url), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            # An exotic session zone proves nothing depends on it.
            await connection.execute(sa.text("SET TIME ZONE 'Pacific/Chatham'"))
            await connection.run_sync(lambda sync: documents.create(sync))
            await _use_linguistic_id_collation(connection)
            rows = [
                {
                    "model": "Task",
                    **{k: d[k] for k in KINDS if k not in USER_FIELDS},
                    "data": _data(d),
                }
                for d in DOCS
            ]
            await connection.execute(documents.insert(), rows)
            yield connection
    finally:
        await engine.dispose()


async def _use_linguistic_id_collation(connection: AsyncConnection) -> None:
    # Test databases are often C-collated, which would hide a missing
    # COLLATE "C"; give the id column a linguistic collation when one exists.
    found = await connection.scalar(
        sa.text(
            "SELECT collname FROM pg_collation"
            " WHERE collname IN ('en-x-icu', 'en_US.utf8') LIMIT 1"
        )
    )
    if found is not None:
        quoted = connection.dialect.identifier_preparer.quote_identifier(found)
        await connection.execute(
            sa.text(f"ALTER TABLE {documents.name} ALTER id TYPE text COLLATE {quoted}")
        )


def _data(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k in USER_FIELDS}


@dataclass
class Mismatch:
    filter: Filter
    doc_id: str
    python: bool
    sql: object

    def __str__(self) -> str:
        doc = DOCS_BY_ID[self.doc_id]
        return (
            f"{self.filter!r}\n  doc={doc!r}\n  python={self.python} sql={self.sql!r}"
        )


def _report(mismatches: Sequence[Mismatch]) -> str:
    shown = "\n".join(str(m) for m in mismatches[:5])
    return f"{len(mismatches)} mismatches (seed {SEED}), first:\n{shown}"


@pytest.mark.asyncio
async def test_filter_columns_agree_and_are_never_null(conn: AsyncConnection) -> None:
    mismatches: list[Mismatch] = []
    batch = 100
    for start in range(0, len(FILTERS), batch):
        chunk = FILTERS[start : start + batch]
        columns = [
            filter_clause(f, documents, KINDS).label(f"f{i}")
            for i, f in enumerate(chunk)
        ]
        result = await conn.execute(sa.select(documents.c.id, *columns))
        for row in result:
            doc = DOCS_BY_ID[row[0]]
            for f, got in zip(chunk, row[1:], strict=True):
                expected = matches(f, doc, KINDS)
                # `is` also catches a NULL, which would break NOT.
                if got is not expected:
                    mismatches.append(Mismatch(f, row[0], expected, got))
    assert not mismatches, _report(mismatches)


@pytest.mark.asyncio
async def test_where_clause_selects_exactly_matching_ids(conn: AsyncConnection) -> None:
    for f in FILTERS[::7]:
        query = sa.select(documents.c.id).where(filter_clause(f, documents, KINDS))
        got = set((await conn.execute(query)).scalars())
        expected = {d["id"] for d in DOCS if matches(f, d, KINDS)}
        assert got == expected, (
            f"{f!r}: sql-only={got - expected} python-only={expected - got}"
        )


def _random_order(rng: random.Random) -> list[OrderKey]:
    fields = rng.sample(ORDERABLE, rng.randint(1, 3))
    return [OrderKey(field, rng.random() < 0.5) for field in fields]


async def _ids(conn: AsyncConnection, query: sa.Select[Any]) -> list[str]:
    return list((await conn.execute(query)).scalars())


@pytest.mark.asyncio
async def test_order_and_keyset_paging_agree(conn: AsyncConnection) -> None:
    rng = random.Random(SEED + 2)
    orders = [[], *([OrderKey(f, d)] for f in ORDERABLE for d in (False, True))]
    orders += [_random_order(rng) for _ in range(20)]
    for order in orders:
        f = rng.choice([None, _random_filter(rng, 2)])
        expected = sorted(
            (d for d in DOCS if matches(f, d, KINDS)),
            key=lambda d: sort_key(d, order, KINDS),
        )
        expected_ids = [d["id"] for d in expected]
        base = sa.select(documents.c.id).where(filter_clause(f, documents, KINDS))
        base = base.order_by(*order_by_clauses(order, documents, KINDS))
        assert await _ids(conn, base) == expected_ids, f"ORDER BY {order} filter {f!r}"
        paged = await _page_through(conn, base, order, rng.randint(7, 60))
        assert paged == expected_ids, f"paging {order} filter {f!r}"


async def _page_through(
    conn: AsyncConnection, base: sa.Select[Any], order: list[OrderKey], size: int
) -> list[str]:
    seen: list[str] = []
    token: str | None = None
    while True:
        query = base
        if token is not None:
            after = decode_page_token(token, len(order) + 1)
            query = query.where(after_clause(order, after, documents, KINDS))
        page = await _ids(conn, query.limit(size))
        seen += page
        if len(page) < size:
            return seen
        token = encode_page_token(cursor_values(DOCS_BY_ID[page[-1]], order, KINDS))


@pytest.mark.asyncio
async def test_arbitrary_cursors_agree(conn: AsyncConnection) -> None:
    # Cursors that sit between or outside stored values, including null ones.
    rng = random.Random(SEED + 3)
    for _ in range(60):
        order = _random_order(rng)
        values = [
            None if rng.random() < 0.3 else VALUE_MAKERS[KINDS[k.field]](rng)
            for k in order
        ]
        after = (*values, rng.choice([*DOCS_BY_ID, "", "d5", "\U0010ffff"]))
        expected = sorted(
            (d for d in DOCS if is_after(d, order, after, KINDS)),
            key=lambda d: sort_key(d, order, KINDS),
        )
        query = (
            sa.select(documents.c.id)
            .where(after_clause(order, after, documents, KINDS))
            .order_by(*order_by_clauses(order, documents, KINDS))
        )
        assert await _ids(conn, query) == [d["id"] for d in expected], (
            f"{order} after {after!r}"
        )
