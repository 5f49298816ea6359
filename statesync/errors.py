"""The one exception tree. Every error a client can see carries a machine-readable ``code``.

    StatesyncError(code)
     ├── BadInput            BAD_USER_INPUT      a value the schema admits but the model does not
     ├── PayloadTooLarge     PAYLOAD_TOO_LARGE   a document over ``max_document_bytes``
     ├── NotFound            NOT_FOUND           no live document with that id
     ├── AlreadyExists       ALREADY_EXISTS      create with an id that is taken
 ├── ReferenceNotFound   REFERENCE_NOT_FOUND a ref to no live document of its model
 ├── Referenced          REFERENCED          delete of a document a ``restrict`` ref still names
     ├── Conflict            CONFLICT            stale ``expectedVersion``; carries the current document
     │    └── BaseUnavailable BASE_UNAVAILABLE  a merge's base version is gone from the changelog
     ├── MutationIdReused    MUTATION_ID_REUSED  same ``mutationId``, different request
     ├── InvalidCursor       INVALID_CURSOR      a ``since`` or ``after`` the server never issued
     ├── BadRequest          BAD_REQUEST         a request or frame that is not GraphQL at all
     ├── QueryTooComplex     QUERY_TOO_COMPLEX   over a per-operation limit (tokens, depth, cost...)
     ├── OperationUnresolved OPERATION_RESOLUTION_FAILURE  no operation to run, or several and no name
     ├── TooManySubscriptions TOO_MANY_SUBSCRIPTIONS  over ``max_subscriptions_per_connection``
     ├── Unauthenticated     UNAUTHENTICATED     credentials that do not verify (bad, expired, wrong audience)
     ├── Forbidden           FORBIDDEN           the role may not do this (names the field or action)
     ├── RateLimited         RATE_LIMITED        over the identity's commit rate; carries ``retryAfter``
     └── ServiceUnavailable  SERVICE_UNAVAILABLE no database connection freed up in time; retry

GraphQL parse and validation failures are coded ``GRAPHQL_PARSE_FAILED`` and
``GRAPHQL_VALIDATION_FAILED`` at the HTTP boundary (see ``statesync.api.errors``).
"""

from __future__ import annotations

from typing import Any


class StatesyncError(Exception):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions: dict[str, Any] = {"code": self.code, **extensions}


class BadInput(StatesyncError):
    code = "BAD_USER_INPUT"


class PayloadTooLarge(StatesyncError):
    code = "PAYLOAD_TOO_LARGE"


class NotFound(StatesyncError):
    code = "NOT_FOUND"


class AlreadyExists(StatesyncError):
    code = "ALREADY_EXISTS"


class ReferenceNotFound(StatesyncError):
    code = "REFERENCE_NOT_FOUND"


class Referenced(StatesyncError):
    """Nothing was deleted: documents still refer to it (``on_delete="restrict"``), or the
    rules would have cleared or deleted more of them than one commit may touch."""

    code = "REFERENCED"


class Conflict(StatesyncError):
    code = "CONFLICT"


class BaseUnavailable(Conflict):
    """The model merges conflicts, but the version the update was based on is older than the
    changelog's retention (or of a deleted incarnation): it cannot be merged, only redone."""

    code = "BASE_UNAVAILABLE"


class MutationIdReused(StatesyncError):
    code = "MUTATION_ID_REUSED"


class InvalidCursor(StatesyncError):
    code = "INVALID_CURSOR"


class BadRequest(StatesyncError):
    code = "BAD_REQUEST"


class QueryTooComplex(StatesyncError):
    code = "QUERY_TOO_COMPLEX"


class OperationUnresolved(StatesyncError):
    code = "OPERATION_RESOLUTION_FAILURE"


class TooManySubscriptions(StatesyncError):
    code = "TOO_MANY_SUBSCRIPTIONS"


class ServiceUnavailable(StatesyncError):
    """Nothing was done; the same request may be sent again (with its mutationId)."""

    code = "SERVICE_UNAVAILABLE"


class Unauthenticated(StatesyncError):
    code = "UNAUTHENTICATED"


class Forbidden(StatesyncError):
    code = "FORBIDDEN"


class RateLimited(StatesyncError):
    code = "RATE_LIMITED"
