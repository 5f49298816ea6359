"""The client's I/O: GraphQL over HTTP with retried commits, graphql-transport-ws with resume."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.typing import Subprotocol

from statesync.client.protocol import (
    EMIT_DOCUMENT,
    RETRY_STATUSES,
    Backoff,
    Change,
    CommitKind,
    CommitResult,
    EmitResult,
    StatesyncClientError,
    close_error,
    commit_document,
    commit_of,
    data_of,
    parsed,
    plural_of,
    retryable,
    singular_of,
    subscription_result,
    watch_document,
)

PROTOCOL = Subprotocol("graphql-transport-ws")
COMMIT_BACKOFF = (0.05, 2.0)  # first delay, cap (seconds)
RECONNECT_FIRST_DELAY = 0.1


class _Dropped(Exception):
    """The server broke off a handshake in a way a reconnect may fix."""


def _dumps(message: Mapping[str, Any]) -> str:
    return orjson.dumps(message).decode()


TokenProvider = Callable[[], str | Awaitable[str]]


class Client:
    """One statesync endpoint. ``url`` is the server's base URL (GraphQL at ``{url}/graphql``).

    Credentials: ``admin_secret`` (a backend service), or ``token``: a JWT, or a function
    returning one (called for every request and every connection, so it can refresh: a
    websocket the server closes when its token expires reconnects with a fresh one and
    resumes). ``role`` picks one of the identity's roles.

    ``timeout`` bounds each HTTP request and websocket handshake; ``commit_timeout`` bounds
    all the attempts of one commit; ``reconnect_max_delay`` caps a watch's reconnect backoff.
    """

    def __init__(self, url: str, *, admin_secret: str | None = None,
                 token: str | TokenProvider | None = None, role: str | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float = 10.0,
                 commit_timeout: float = 30.0, reconnect_max_delay: float = 5.0) -> None:
        base = url.rstrip("/")
        self.url = base if base.endswith("/graphql") else f"{base}/graphql"
        self.ws_url = "ws" + self.url.removeprefix("http")  # http -> ws, https -> wss
        self.timeout = timeout
        self.commit_timeout = commit_timeout
        self.reconnect_max_delay = reconnect_max_delay
        self._headers = dict(headers or {})
        if admin_secret is not None:
            self._headers["x-statesync-admin-secret"] = admin_secret
        if role is not None:
            self._headers["x-statesync-role"] = role
        self._token = token
        self._http = httpx.AsyncClient(timeout=timeout, headers=self._headers)
        self._sockets: set[ClientConnection] = set()
        self._closed = False

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections and every watch's socket; open watches then end."""
        self._closed = True
        await self._http.aclose()
        for ws in list(self._sockets):
            await ws.close()

    # ---- requests ----------------------------------------------------------------------------

    async def _credentials(self) -> dict[str, str]:
        """The Authorization header of this moment (a provider may have a fresh token)."""
        if self._token is None:
            return {}
        if not callable(self._token):
            return {"authorization": f"Bearer {self._token}"}
        token = self._token()
        if inspect.isawaitable(token):
            token = await token
        return {"authorization": f"Bearer {token}"}

    async def _post(self, document: str, variables: Mapping[str, Any], within: float
                    ) -> dict[str, Any]:
        body = orjson.dumps({"query": document, "variables": variables})
        try:
            response = await self._http.post(self.url, content=body, timeout=within, headers={
                "content-type": "application/json", **await self._credentials()})
        except httpx.TransportError as exc:
            raise StatesyncClientError("TRANSPORT_ERROR", f"{type(exc).__name__}: {exc}",
                                       {"error": type(exc).__name__}) from exc
        return data_of(response.status_code, response.content)

    async def query(self, document: str, variables: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
        """Run any GraphQL document and return its ``data``. Not retried: it may be a
        mutation without a ``mutationId``, which a retry could apply twice."""
        return await self._post(document, variables or {}, self.timeout)

    async def _commit(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Send until answered. Every attempt carries the same ``mutationId``, so the server
        applies the commit once and a retry gets the first result (``replayed``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.commit_timeout
        backoff = Backoff(*COMMIT_BACKOFF)
        while True:
            remaining = max(deadline - loop.time(), 0.001)
            try:
                return await self._post(document, variables, min(self.timeout, remaining))
            except StatesyncClientError as error:
                delay = max(backoff.next(), float(error.extensions.get("retryAfter") or 0))
                if not retryable(error) or loop.time() + delay >= deadline:
                    raise
            await asyncio.sleep(delay)

    async def _write(self, kind: CommitKind, model: str, fields: str, variables: dict[str, Any],
                     mutation_id: str | None) -> CommitResult:
        mutation_id = mutation_id or str(uuid.uuid4())
        data = await self._commit(commit_document(kind, model, fields),
                                  {**variables, "mutationId": mutation_id})
        return commit_of(data[f"{kind}{model}"], mutation_id)

    async def create(self, model: str, input: Mapping[str, Any], *, id: str | None = None,
                     fields: str = "", mutation_id: str | None = None) -> CommitResult:
        return await self._write("create", model, fields, {"input": input, "id": id}, mutation_id)

    async def update(self, model: str, id: str, patch: Mapping[str, Any], *,
                     expected_version: int | None = None, fields: str = "",
                     mutation_id: str | None = None) -> CommitResult:
        return await self._write("update", model, fields, {
            "id": id, "patch": patch, "expectedVersion": expected_version}, mutation_id)

    async def delete(self, model: str, id: str, *, expected_version: int | None = None,
                     mutation_id: str | None = None) -> CommitResult:
        return await self._write("delete", model, "", {"id": id, "expectedVersion": expected_version},
                                 mutation_id)

    async def emit(self, type: str, *, key: str | None = None, payload: Any = None,
                   mutation_id: str | None = None) -> EmitResult:
        """A custom event for the backend's handlers (not a state change)."""
        mutation_id = mutation_id or str(uuid.uuid4())
        data = await self._commit(EMIT_DOCUMENT, {"type": type, "key": key, "payload": payload,
                                                  "mutationId": mutation_id})
        emitted = data["emitEvent"]
        return EmitResult(emitted["eventId"], emitted["replayed"], mutation_id)

    # ---- watching ----------------------------------------------------------------------------

    def watch(self, model: str, *, id: str | None = None, where: Mapping[str, Any] | None = None,
              fields: str = "", plural: str | None = None, since: str | None = None
              ) -> AsyncGenerator[Change, None]:
        """One document (``id``) or a collection (``where``, optional): a ``SNAPSHOT`` (or,
        with ``since``, the changes after that cursor), then every change, across reconnects.

        A ``RESYNC`` change means what came before no longer adds up (the client fell
        behind, or a snapshot was cut off): drop it; a fresh ``SNAPSHOT`` follows. The socket
        closes when the iterator does (``aclose()``, or when a ``break`` drops it).
        """
        if id is not None and where is not None:
            raise ValueError("watch one document (id=) or a collection (where=), not both")
        one = id is not None
        field = singular_of(model) if one else plural or plural_of(model)
        variables: dict[str, Any] = {"id": id} if one else {"where": where}
        document = parsed(watch_document(model, field, one=one, fields=fields))
        return self._watch(document, field, variables, since)

    @contextlib.asynccontextmanager
    async def _socket(self) -> AsyncIterator[ClientConnection]:
        async with connect(self.ws_url, subprotocols=[PROTOCOL], compression=None, max_size=None,
                           open_timeout=self.timeout, additional_headers=self._headers) as ws:
            if ws.subprotocol != PROTOCOL:
                raise StatesyncClientError("PROTOCOL_ERROR", "the server does not speak "
                                           f"{PROTOCOL} (it chose {ws.subprotocol!r})")
            self._sockets.add(ws)
            try:
                if self._closed:  # aclose() ran while this socket was opening
                    raise _Dropped("the client is closed")
                await ws.send(_dumps({"type": "connection_init", "payload": {
                    "headers": {**self._headers, **await self._credentials()}}}))
                async with asyncio.timeout(self.timeout):
                    ack = await _receive(ws)
                if ack.get("type") != "connection_ack":
                    raise _Dropped(f"expected connection_ack, got {ack}")
                yield ws
            finally:
                self._sockets.discard(ws)

    async def _watch(self, document: str, field: str, variables: dict[str, Any], since: str | None
                     ) -> AsyncGenerator[Change, None]:
        cursor = since  # where to resume: after the last change yielded, or a whole snapshot
        partial: Change | None = None  # a snapshot's first chunk, while more are due
        backoff = Backoff(RECONNECT_FIRST_DELAY, self.reconnect_max_delay)
        while not self._closed:
            try:
                async with self._socket() as ws:
                    for op_id in map(str, itertools.count(1)):
                        await ws.send(_dumps({"id": op_id, "type": "subscribe", "payload": {
                            "query": document, "variables": {**variables, "since": cursor}}}))
                        while True:
                            message = await _receive(ws)
                            if message.get("id") != op_id:
                                continue  # the tail of a subscription we have moved on from
                            if message["type"] == "complete":
                                # statesync ends a subscription only after RESYNC; anything
                                # else is the server failing it, and resubscribing would loop.
                                raise StatesyncClientError(
                                    "SUBSCRIPTION_ENDED", "the server ended the subscription")
                            change = subscription_result(message, field)
                            if isinstance(change, StatesyncClientError):
                                if change.code != "INVALID_CURSOR" or cursor is None:
                                    raise change
                                # The feed cannot replay from there: start over.
                                change = Change(op="RESYNC", cursor=cursor)
                            backoff.reset()
                            if change.op == "RESYNC":
                                cursor, partial = None, None
                                yield change
                                break  # resubscribe on this socket, for a fresh snapshot
                            if change.op == "SNAPSHOT" and change.has_more:
                                partial = change
                            else:
                                cursor, partial = change.cursor, None
                            yield change
            except ConnectionClosed as exc:
                if isinstance(exc.__context__, GeneratorExit):
                    return  # closing the socket on aclose() found it closed already: done
                if (fatal := close_error(exc, refreshable=callable(self._token))) is not None:
                    raise fatal from exc
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status not in RETRY_STATUSES:
                    raise StatesyncClientError("HTTP_ERROR", f"websocket handshake got HTTP {status}",
                                               {"status": status}) from exc
            except (OSError, TimeoutError, InvalidMessage, _Dropped):
                pass  # the server is down, restarting or unreachable: try again
            if self._closed:
                return
            if partial is not None:
                # The caller holds part of a snapshot that will never be completed.
                resync, partial = Change(op="RESYNC", cursor=partial.cursor), None
                yield resync
            await asyncio.sleep(backoff.next())


async def _receive(ws: ClientConnection) -> dict[str, Any]:
    """The next protocol message, answering the server's pings on the way."""
    while True:
        message: dict[str, Any] = orjson.loads(await ws.recv())
        if message.get("type") == "ping":
            await ws.send(_dumps({"type": "pong"}))
        elif message.get("type") != "pong":
            return message
