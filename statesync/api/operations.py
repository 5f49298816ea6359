"""Preparing a GraphQL operation: parse, measure, validate, pick the operation.

One preparation serves HTTP and both websocket protocols, so every transport refuses
the same documents the same way. Preparation is pure CPU: a document that passes is
kept in a cache bounded by its estimated memory; one that fails is not kept, so a
refused document cannot take cache space (it costs its parse again, which the token
limit bounds).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from statesync.api.errors import coded
from statesync.api.limits import QueryLimits, check_document, check_operation
from statesync.errors import BadRequest, OperationUnresolved, QueryTooComplex, StatesyncError
from statesync.pacing import Pacer

RULES = (*specified_rules, MaybeNullValidationRule, OneOfInputValidationRule)
# What a parsed and validated document keeps in memory, per character of its text
# (measured: 40 to 140 bytes; strings and names count once, punctuation is nodes).
BYTES_PER_CHARACTER = 150


@dataclass(frozen=True, slots=True)
class Prepared:
    document: DocumentNode
    operation: OperationDefinitionNode
    kind: OperationType
    cost: int
    # What each role may not select in it (statesync.api.permissions), found once per role.
    checks: dict[str, tuple[GraphQLError, ...]] = field(default_factory=dict)

    @property
    def name(self) -> str | None:
        return self.operation.name.value if self.operation.name else None


class Rejected(Exception):
    """The document cannot run. ``errors`` are coded; ``protocol_error`` marks the failures
    graphql-transport-ws answers by closing the socket (4400): no parse, or no operation."""

    def __init__(self, errors: list[GraphQLError], *, protocol_error: bool = False) -> None:
        super().__init__(errors[0].message)
        self.errors = errors
        self.protocol_error = protocol_error


def _error(exc: StatesyncError) -> GraphQLError:
    return coded(GraphQLError(exc.message, original_error=exc))


def prepare(schema: GraphQLSchema, query: object, operation_name: object,
            limits: QueryLimits, *, hide_suggestions: bool = False) -> Prepared:
    if not isinstance(query, str) or not query.strip():
        raise Rejected([_error(BadRequest("the request has no query"))], protocol_error=True)
    if operation_name is not None and not isinstance(operation_name, str):
        raise Rejected([_error(BadRequest("operationName must be a string"))], protocol_error=True)
    try:
        document = _parse(query, limits)
        check_document(document, limits)
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            raise Rejected([_error(_unresolved(document, operation_name))], protocol_error=True)
        root = schema.get_root_type(operation.operation)
        cost = check_operation(schema, document, operation, root, limits)
        errors = validate(schema, document, RULES, hide_suggestions=hide_suggestions)
    except RecursionError:
        # A chain of fragments (or of nesting) deeper than Python's stack: by far too complex.
        too_deep = QueryTooComplex("the operation nests too deeply to be analysed",
                                   limit="max_query_depth", maximum=limits.max_depth, actual=None)
        raise Rejected([_error(too_deep)]) from None
    except StatesyncError as exc:
        raise Rejected([_error(exc)]) from None
    if errors:
        raise Rejected([coded(e) for e in errors])
    return Prepared(document, operation, operation.operation, cost)


def _parse(query: str, limits: QueryLimits) -> DocumentNode:
    try:
        return parse(query, max_tokens=limits.max_tokens)
    except GraphQLSyntaxError as exc:
        if "tokens" in exc.message and "Parsing aborted" in exc.message:
            raise QueryTooComplex(f"the document has more than {limits.max_tokens} tokens",
                                  limit="max_query_tokens", maximum=limits.max_tokens,
                                  actual=None) from None
        if "nested too deeply" in exc.message:
            raise QueryTooComplex("the document nests deeper than the parser allows",
                                  limit="max_query_depth", maximum=limits.max_depth,
                                  actual=None) from None
        raise Rejected([coded(exc)], protocol_error=True) from None


def _unresolved(document: DocumentNode, name: str | None) -> OperationUnresolved:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if not operations:
        return OperationUnresolved("the document has no operation to run")
    if name is None:
        return OperationUnresolved("the document has several operations: name one in operationName")
    return OperationUnresolved(f"the document has no operation named {name!r}")


class OperationCache:
    """Prepared documents by ``(query, operationName)``, least recently used dropped first,
    within ``budget`` estimated bytes. A document over an eighth of it is never kept."""

    def __init__(self, schema: GraphQLSchema, limits: QueryLimits, budget: int, *,
                 hide_suggestions: bool = False) -> None:
        self.schema = schema
        self.limits = limits
        self.budget = budget
        self.hide_suggestions = hide_suggestions
        self.used = 0
        self._entries: OrderedDict[tuple[str, str | None], tuple[Prepared, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def cached(self, query: object, operation_name: object) -> Prepared | None:
        if isinstance(query, str) and (operation_name is None or isinstance(operation_name, str)):
            key = (query, operation_name)
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit[0]
        return None

    async def prepared(self, query: object, operation_name: object, pacer: Pacer,
                       owner: str) -> Prepared:
        """:meth:`get`, preparing a document the cache has not seen as bulk work
        (statesync.pacing), in ``owner``'s turn: clients sending new documents as fast as
        they can take turns by identity, and yield to requests whose documents are known."""
        hit = self.cached(query, operation_name)
        if hit is not None:
            return hit
        async with pacer.bulk(owner):
            return self.get(query, operation_name)

    def get(self, query: object, operation_name: object) -> Prepared:
        """The prepared operation, or :class:`Rejected`."""
        hit = self.cached(query, operation_name)
        if hit is not None:
            return hit
        prepared = prepare(self.schema, query, operation_name, self.limits,
                           hide_suggestions=self.hide_suggestions)
        assert isinstance(query, str) and (operation_name is None or isinstance(operation_name, str))
        self._keep((query, operation_name), prepared, len(query) * BYTES_PER_CHARACTER)
        return prepared

    def _keep(self, key: tuple[str, str | None], prepared: Prepared, weight: int) -> None:
        if weight * 8 > self.budget:
            return
        if key in self._entries:
            return
        self._entries[key] = (prepared, weight)
        self.used += weight
        while self.used > self.budget:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.used -= dropped
