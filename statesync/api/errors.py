"""Every error a client sees carries ``extensions.code``; unexpected ones are masked."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
from graphql import GraphQLError
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.utils.str_converters import to_camel_case

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
    return GraphQLError(message, nodes=error.nodes, source=error.source,
                        positions=error.positions, path=error.path, extensions=extensions)


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


class ErrorCodes(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        yield
        # A websocket sends a subscription's validation errors before on_operation ends,
        # from the very list strawberry is holding: code them in place, here.
        errors = self.execution_context.pre_execution_errors
        if errors:
            errors[:] = [coded(e) for e in errors]

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [coded(e) for e in result.errors]
        pre = self.execution_context.pre_execution_errors
        if pre:
            self.execution_context.pre_execution_errors = [coded(e) for e in pre]


class SafeParserCache(ParserCache):
    """strawberry's ParserCache, minus one problem: it parses in ``on_parse``, outside the
    error handling of a subscription (strawberry 0.341), so a syntax error there escapes
    the operation and the client only gets ``complete``. A document that does not parse is
    left to strawberry's own parser, which reports it the usual way (HTTP: a coded error;
    graphql-transport-ws: close 4400 with the message)."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        with contextlib.suppress(GraphQLError):
            context.graphql_document = self.cached_parse_document(context.query,
                                                                  **context.parse_options)
        yield
