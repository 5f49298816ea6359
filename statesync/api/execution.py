"""Running a prepared operation on strawberry's schema through graphql-core, for every
transport: coded errors, variables checked before they are coerced, nothing unexpected
shown to the client (it is logged, once, with its traceback)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from graphql import (
    ExecutionResult,
    Executor,
    GraphQLError,
    GraphQLSchema,
    create_source_event_stream,
    execute_subscription_event,
    map_source_to_response_event,
)
from graphql import execute as graphql_execute

from statesync.api.context import Context
from statesync.api.errors import coded, masked
from statesync.api.operations import Prepared
from statesync.api.shared_execution import SharedEventExecutor
from statesync.api.types import ChangeMessage, ChangeOp
from statesync.errors import BadInput, BadRequest, QueryTooComplex, StatesyncError
from statesync.pacing import Pacer
from statesync.values import TooManyValues, json_problem

log = logging.getLogger(__name__)


def check_variables(variables: object, max_depth: int, max_values: int) -> dict[str, Any] | None:
    """The request's variables, or BadRequest / BadInput / QueryTooComplex before
    graphql-core coerces them: coercion recurses, so a deep value must be refused before it
    gets there, and costs about 1.5 µs a value, so a huge list must be too."""
    if variables is None:
        return None
    if not isinstance(variables, Mapping):
        raise BadRequest("variables must be a JSON object")
    try:
        found = json_problem(variables, max_depth + 1, max_values + 1)
    except TooManyValues:
        raise QueryTooComplex(f"the variables hold more than {max_values} values",
                              limit="max_input_values", maximum=max_values, actual=None) from None
    if found is not None:
        path, problem = found
        raise BadInput(f"variable {path} {problem}", field=path)
    return dict(variables)


def error_result(error: StatesyncError | GraphQLError) -> ExecutionResult:
    if isinstance(error, StatesyncError):
        error = GraphQLError(error.message, original_error=error)
    return ExecutionResult(data=None, errors=[coded(error)])


def _coded(result: ExecutionResult) -> ExecutionResult:
    if result.errors:
        result.errors = [coded(e) for e in result.errors]
    return result


async def execute(schema: GraphQLSchema, prepared: Prepared, variables: dict[str, Any] | None,
                  context: Context, *, hide_suggestions: bool = False) -> ExecutionResult:
    """A query or mutation. Never raises for a client's mistake: it is in the result."""
    result = graphql_execute(
        schema, prepared.document, context_value=context, variable_values=variables,
        operation_name=prepared.name, executor_class=SharedEventExecutor,
        hide_suggestions=hide_suggestions,
    )
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, ExecutionResult)
    return _coded(result)


async def subscribe(schema: GraphQLSchema, prepared: Prepared, variables: dict[str, Any] | None,
                    context: Context, *, hide_suggestions: bool = False, root_value: Any = None
                    ) -> _CodedStream | ExecutionResult:
    """The response stream of a subscription, or the result that refuses it.

    A stream's source may still fail on its first step (an unknown cursor, a collection
    too large to snapshot): that surfaces as an exception from the iterator, which the
    transport answers with an ``error`` message (see :func:`failure`)."""
    executor = SharedEventExecutor.build(
        schema, prepared.document, context_value=context, raw_variable_values=variables,
        operation_name=prepared.name, hide_suggestions=hide_suggestions, root_value=root_value)
    if isinstance(executor, list):
        return _coded(ExecutionResult(None, errors=executor))
    assert isinstance(executor, SharedEventExecutor)  # build() is typed as its base's
    source = create_source_event_stream(executor)
    if inspect.isawaitable(source):
        source = await source
    if isinstance(source, ExecutionResult):
        return _coded(source)
    paced = _paced(context.runtime.pacer, context.owner)
    return _CodedStream(map_source_to_response_event(executor, source, paced), executor)


def _paced(pacer: Pacer, owner: str) -> Any:
    """Execute each event; a snapshot chunk (hundreds of documents: milliseconds of CPU
    with nothing to await) as bulk work (statesync.pacing), so that a thousand
    subscriptions opened at once render one chunk at a time, yielding to requests and
    taking turns with other identities' subscriptions."""

    async def snapshot(per_event: Executor[Any]) -> ExecutionResult:
        async with pacer.bulk(owner):
            result = execute_subscription_event(per_event)
            return await result if inspect.isawaitable(result) else result

    def run(per_event: Executor[Any]) -> Any:
        message = per_event.root_value
        if isinstance(message, ChangeMessage) and message.op is ChangeOp.SNAPSHOT:
            return snapshot(per_event)
        return execute_subscription_event(per_event)

    return run


class _CodedStream:
    """Each result of a response stream with coded errors; closing it closes the source."""

    def __init__(self, source: AsyncIterator[ExecutionResult], executor: SharedEventExecutor) -> None:
        self._source = source
        self.executor = executor  # the operation's, which each event's executor copies

    def __aiter__(self) -> _CodedStream:
        return self

    async def __anext__(self) -> ExecutionResult:
        return _coded(await self._source.__anext__())

    async def aclose(self) -> None:
        close = getattr(self._source, "aclose", None)
        if close is not None:
            await close()


def failure(exc: Exception) -> list[GraphQLError]:
    """The coded errors of an exception that ended an operation's stream."""
    if isinstance(exc, GraphQLError):
        original = exc.original_error
        if isinstance(original, StatesyncError):
            return [coded(exc)]
        if original is None:
            return [coded(exc)]
        exc = original if isinstance(original, Exception) else exc
    if isinstance(exc, StatesyncError):
        return [coded(GraphQLError(exc.message, original_error=exc))]
    log.error("unexpected error in a subscription", exc_info=exc)
    return [masked()]
