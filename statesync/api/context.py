"""What every resolver of one client sees: the runtime, the transport, and the client's
share of the database.

One HTTP request, or one websocket with all its operations, is one client: it may hold
``db_connections_per_client`` connections at once, however many fields or subscriptions
it runs, so no client can drain the pool for the others. The websocket's context is
built once per connection and shared by its operations: it keeps no connection itself,
only the right to borrow one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import HTTPConnection
from strawberry.dataloader import DataLoader

from statesync.access import Access, ModelAccess
from statesync.api.quotas import Quotas
from statesync.errors import Forbidden
from statesync.identity import Identity
from statesync.runtime import Runtime
from statesync.store import reads


@dataclass(slots=True)
class Context:
    runtime: Runtime
    transport: HTTPConnection  # the HTTP request, or the websocket's upgrade request
    identity: Identity
    access: Access | None  # None: the admin, whom rules do not bind
    quotas: Quotas
    slots: asyncio.Semaphore = field(init=False)
    _snapshot_turn: asyncio.Lock = field(init=False)
    _referenced: dict[str, DataLoader[str, dict[str, Any] | None]] = field(init=False)

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.runtime.settings.db_connections_per_client)
        self._snapshot_turn = asyncio.Lock()
        self._referenced = {}

    def require_admin(self, what: str) -> None:
        """Refuse a root field that is the admin's (the permissions layer refuses it before
        execution too; this holds when a resolver is reached some other way)."""
        if self.access is not None:
            raise Forbidden(f"{what} is for the admin", field=what)

    def referenced(self, model: str) -> DataLoader[str, dict[str, Any] | None]:
        """Loads the documents references name, as this client may see them: every load in
        one tick of the loop is one query (a page of orders and all their products: two).
        Nothing is cached, because a websocket's context lives as long as its subscriptions
        and each of their messages must show the referenced documents as they are now."""
        loader = self._referenced.get(model)
        if loader is None:
            kinds = self.runtime.models[model].spec.filter_kinds()
            access = self.model_access(model)

            async def load(ids: list[str]) -> list[dict[str, Any] | None]:
                async with self.connect() as connection:
                    found = await reads.documents_by_id(connection, model, ids, access, kinds)
                return [found.get(i) for i in ids]

            loader = self._referenced[model] = DataLoader(load, cache=False)
        return loader

    def model_access(self, model: str) -> ModelAccess | None:
        """This client's rules for ``model`` (None: the admin)."""
        return None if self.access is None else self.access.model(model)

    @property
    def owner(self) -> str:
        """Who this client is: a mutation id's replay answers only its owner, and bulk work
        and snapshot places are taken in turn by owner (statesync.fair)."""
        return self.identity.key

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection from this client's share (no transaction begun)."""
        async with self.slots, self.runtime.connect() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def streaming_read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a page of a subscription's replay: these also queue for one of
        the process's ``max_concurrent_snapshots`` places, so a thousand subscriptions
        resuming at once read a few at a time, in turn, while commits keep their connections."""
        async with self.slots, self._snapshot_place(), self.runtime.connect() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def snapshot_turn(self) -> AsyncIterator[None]:
        """The right to read a snapshot and hand out its chunks: one at a time per client,
        ``max_concurrent_snapshots`` at a time per process, taken in turn by identity. Held
        until the last chunk is taken, so no more snapshots sit in memory than that (a
        thousand subscriptions opened at once wait their turn instead of being read at
        once and queued in full)."""
        async with self._snapshot_turn, self._snapshot_place():
            yield

    def _snapshot_place(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.runtime.snapshot_slots.place(self.owner)

    @contextlib.asynccontextmanager
    async def share(self) -> AsyncIterator[None]:
        """Hold one of this client's places (for a commit, which opens its own transaction)."""
        async with self.slots:
            yield
