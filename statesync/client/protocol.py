"""The client's pure half: results, errors, the GraphQL documents it sends and how it reads answers."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from graphql import GraphQLSyntaxError, parse
from websockets.exceptions import ConnectionClosed

from statesync.models import pluralize

RETRY_STATUSES = frozenset({502, 503, 504})
# Close codes by which a graphql-transport-ws server says the client itself is at fault:
# reconnecting would only repeat the mistake.
FATAL_CLOSE_CODES = frozenset({4400, 4401, 4403, 4406, 4409, 4429})


class StatesyncClientError(Exception):
    """A GraphQL error (``code`` is its ``extensions.code``) or a transport failure
    (``TRANSPORT_ERROR``, ``HTTP_ERROR``, ``BAD_RESPONSE``), or a watch that cannot go on
    (``PROTOCOL_ERROR``, ``SUBSCRIPTION_ENDED``)."""

    def __init__(self, code: str, message: str, extensions: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.extensions: dict[str, Any] = {**(extensions or {}), "code": code}

    @property
    def current(self) -> dict[str, Any] | None:
        """On ``CONFLICT``: the document as it is now."""
        current: dict[str, Any] | None = self.extensions.get("current")
        return current


# The values are the JSON as received (documents keyed by GraphQL field names); frozen
# means the fields cannot be reassigned.


@dataclass(frozen=True, slots=True)
class CommitResult:
    op: str
    id: str
    version: int
    document: dict[str, Any] | None
    changed_fields: list[str]
    event_ids: list[str]
    replayed: bool
    mutation_id: str | None = None  # so a watcher can recognise this commit's own echo
    # Based on an older version and merged by the model's conflict strategy:
    # {"strategy", "basedOn", "applied", "kept"}.
    resolution: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class EmitResult:
    event_id: str
    replayed: bool
    mutation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    op: str
    cursor: str
    id: str | None = None
    version: int | None = None
    document: dict[str, Any] | None = None
    documents: list[dict[str, Any]] | None = None
    changed_fields: list[str] | None = None
    has_more: bool | None = None
    mutation_id: str | None = None
    # Sent because a document the selection shows through a reference changed:
    # {"model", "id"} of that document; this one's version is unchanged.
    via: dict[str, Any] | None = None


# ---- documents ---------------------------------------------------------------------------------


def singular_of(model: str) -> str:
    """The root field of one document, as ``ModelSpec.singular`` names it."""
    return model[:1].lower() + model[1:]


def plural_of(model: str) -> str:
    """The default root field of a collection; a model declared with ``plural=`` needs it passed."""
    return pluralize(singular_of(model))


def _selection(fields: str) -> str:
    return f"{{ id version {fields} }}" if fields.strip() else "{ id version }"


CommitKind = Literal["create", "update", "delete"]
_COMMIT_ARGS: dict[CommitKind, tuple[str, str]] = {
    "create": ("$input: {m}Input!, $id: ID, $mutationId: ID", "input: $input, id: $id"),
    "update": ("$id: ID!, $patch: {m}Patch!, $expectedVersion: Int, $mutationId: ID",
               "id: $id, patch: $patch, expectedVersion: $expectedVersion"),
    "delete": ("$id: ID!, $expectedVersion: Int, $mutationId: ID",
               "id: $id, expectedVersion: $expectedVersion"),
}


def commit_document(kind: CommitKind, model: str, fields: str = "") -> str:
    params, args = _COMMIT_ARGS[kind]
    return (f"mutation({params.format(m=model)}) {{ {kind}{model}({args}, mutationId: $mutationId) "
            f"{{ op id version document {_selection(fields)} changedFields eventIds replayed"
            f"{' resolution { strategy basedOn applied kept }' if kind == 'update' else ''} }} }}")


EMIT_DOCUMENT = ("mutation($type: String!, $key: ID, $payload: JSON, $mutationId: ID) { emitEvent("
                 "type: $type, key: $key, payload: $payload, mutationId: $mutationId) "
                 "{ eventId replayed } }")


def watch_document(model: str, field: str, *, one: bool, fields: str = "") -> str:
    selection = _selection(fields)
    if one:
        params, args, many = "$id: ID!, $since: String", "id: $id, since: $since", ""
    else:
        params, args = f"$where: {model}Where, $since: String", "where: $where, since: $since"
        many = f" documents {selection}"
    return (f"subscription({params}) {{ {field}({args}) {{ op cursor id version changedFields "
            f"hasMore mutationId via {{ model id }} document {selection}{many} }} }}")


def parsed(document: str) -> str:
    """``document``, if it parses. Checked here because over websockets a server may answer
    a malformed subscription only by closing the socket, or (strawberry's parser cache) with
    a bare ``complete``."""
    try:
        parse(document)
    except GraphQLSyntaxError as exc:
        raise StatesyncClientError("GRAPHQL_PARSE_FAILED", exc.message) from None
    return document


# ---- answers -----------------------------------------------------------------------------------


def error_from(error: Mapping[str, Any], default: str = "GRAPHQL_ERROR") -> StatesyncClientError:
    extensions = dict(error.get("extensions") or {})
    code = str(extensions.get("code") or default)
    return StatesyncClientError(code, str(error.get("message", "")), extensions)


def data_of(status: int, content: bytes) -> dict[str, Any]:
    """The ``data`` of an HTTP response, or the error it stands for."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and body.get("errors"):
        raise error_from(body["errors"][0])
    if not 200 <= status < 300:
        raise StatesyncClientError("HTTP_ERROR", f"HTTP {status} without a GraphQL answer",
                                   {"status": status})
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise StatesyncClientError("BAD_RESPONSE", f"not a GraphQL response: {content[:200]!r}")
    data: dict[str, Any] = body["data"]
    return data


# GraphQL errors that say nothing was done and the same request may succeed later.
RETRY_CODES = frozenset({"SERVICE_UNAVAILABLE", "RATE_LIMITED"})


def retryable(error: StatesyncClientError) -> bool:
    """Whether sending the same commit again may help: the request may have gone unanswered,
    or the server said it did nothing for now (busy, over the identity's rate)."""
    return error.code in ("TRANSPORT_ERROR", *RETRY_CODES) or (
        error.code == "HTTP_ERROR" and error.extensions.get("status") in RETRY_STATUSES)


def commit_of(data: Mapping[str, Any], mutation_id: str) -> CommitResult:
    return CommitResult(op=data["op"], id=data["id"], version=data["version"],
                        document=data.get("document"), changed_fields=list(data["changedFields"]),
                        event_ids=list(data["eventIds"]), replayed=data["replayed"],
                        mutation_id=mutation_id, resolution=data.get("resolution"))


def change_of(data: Mapping[str, Any]) -> Change:
    return Change(op=data["op"], cursor=data["cursor"], id=data.get("id"),
                  version=data.get("version"), document=data.get("document"),
                  documents=data.get("documents"), changed_fields=data.get("changedFields"),
                  has_more=data.get("hasMore"), mutation_id=data.get("mutationId"),
                  via=data.get("via"))


def subscription_result(message: Mapping[str, Any], field: str) -> Change | StatesyncClientError:
    """What a ``next`` or ``error`` message of a subscription says."""
    if message["type"] == "error":
        errors = message.get("payload") or [{"message": "the subscription failed"}]
        # The protocol sends `error` for a request that failed before execution: over
        # websockets the server leaves those uncoded, where HTTP says VALIDATION_FAILED.
        return error_from(errors[0], default="GRAPHQL_VALIDATION_FAILED")
    payload = message.get("payload") or {}
    if payload.get("errors"):
        return error_from(payload["errors"][0])
    return change_of(payload["data"][field])


def close_error(exc: ConnectionClosed, *, refreshable: bool = False) -> StatesyncClientError | None:
    """The error a server's close frame reports, when reconnecting cannot help. 4403 (the
    credentials were refused, or the token expired) is worth a reconnect when the client can
    get a fresh token."""
    if exc.rcvd is None or exc.rcvd.code not in FATAL_CLOSE_CODES:
        return None
    if exc.rcvd.code == 4403 and refreshable:
        return None
    code, reason = exc.rcvd.code, exc.rcvd.reason
    kind = "GRAPHQL_PARSE_FAILED" if reason.startswith("Syntax Error") else "PROTOCOL_ERROR"
    return StatesyncClientError(kind, reason or f"closed with {code}", {"closeCode": code})


class Backoff:
    """Exponential delays with jitter, so clients cut off together do not return together."""

    def __init__(self, first: float, cap: float) -> None:
        self.first, self.cap, self.attempt = first, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2.0 ** self.attempt)
        self.attempt += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0
