"""Every error a client sees carries ``extensions.code``; unexpected ones are masked."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson
from graphql import GraphQLError
from strawberry.utils.str_converters import to_camel_case

from statesync import metrics
from statesync.errors import StatesyncError
from statesync.validation import describe

log = logging.getLogger(__name__)


def coded(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if not isinstance(original, StatesyncError) and error.extensions and "code" in error.extensions:
        return error  # coded already
    if isinstance(original, StatesyncError):
        code, message = original.code, error.message
    elif original is not None and error.path is not None:
        # Only a resolver's error has a path; graphql-core also wraps variable
        # coercion failures with an original_error, and those are client mistakes.
        log.error("unexpected error in a resolver", exc_info=original)
        code, message = "INTERNAL_SERVER_ERROR", "Unexpected error."
    elif error.message.startswith("Syntax Error"):
        code, message = "GRAPHQL_PARSE_FAILED", error.message
    else:
        code, message = "GRAPHQL_VALIDATION_FAILED", error.message
    extensions = dict(getattr(original, "extensions", None) or {})
    if "current" in extensions:  # a document, shaped as the GraphQL type shows it
        extensions["current"] = graphql_json(extensions["current"])
    if "problems" in extensions:  # validation problems name fields as the GraphQL type does
        extensions["problems"] = [{**p, "field": _camel_path(p["field"])}
                                  for p in extensions["problems"]]
        message = describe(extensions["problems"])
    extensions["code"] = code
    metrics.ERRORS.labels(code).inc()
    return GraphQLError(message, nodes=error.nodes, source=error.source,
                        positions=error.positions, path=error.path, extensions=extensions)


def refusal(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    """A coded error answered outside GraphQL's own path (the edge, a body refused before it
    is read), counted with the rest; as the ``errors`` entry of a response body."""
    metrics.ERRORS.labels(code).inc()
    return dict(GraphQLError(message, extensions={**extensions, "code": code}).formatted)


def masked() -> GraphQLError:
    """What a client sees of a bug: nothing of it (the bug itself is logged where it happened)."""
    metrics.ERRORS.labels("INTERNAL_SERVER_ERROR").inc()
    return GraphQLError("Unexpected error.", extensions={"code": "INTERNAL_SERVER_ERROR"})


def _camel_path(path: str) -> str:
    """``items.0.unit_price`` → ``items.0.unitPrice``."""
    return ".".join(to_camel_case(part) for part in path.split("."))


def graphql_json(value: Any) -> Any:
    """A stored document as GraphQL shows it: camelCase names, JSON values."""
    if isinstance(value, dict):
        return {to_camel_case(k): graphql_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [graphql_json(v) for v in value]
    return orjson.loads(orjson.dumps(value)) if isinstance(value, datetime) else value
