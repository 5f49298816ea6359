"""Execute a change's selection once for all the subscribers that asked for the same thing.

strawberry (through graphql-core) executes a subscription's selection set once per
event per subscriber. When a hundred screens watch the same collection with the same
query, every change was resolved a hundred times: the fan-out cost named in DESIGN.md.
Here the per-event executor keeps the result of each live change (the same ``Change``
goes to every subscriber, so the same cursor and op mean the same message) under the
query text and the variables its selection uses, and hands it to the next subscriber.

What may share: a message that carries a change (live or replayed), keyed by
``(op, cursor, document id)``, because the op is already per subscriber (``REMOVED`` vs ``UPDATED``).
Snapshots and ``RESYNC`` are per subscriber and always executed. Variables used only
in the root field's arguments (``id``, ``where``, ``since``) choose the stream, not how a
message renders, so they are left out of the key; any other variable is in it.
The reader's role is in the key too: it decides which changed fields a frame names
(and, through the permission check, which fields the query may select at all).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Iterable
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

import orjson
from graphql import (
    ExecutionResult,
    GraphQLSchema,
    OperationDefinitionNode,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    visit,
)
from graphql.language import ArgumentNode, FieldNode, VariableNode
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from statesync.api.context import Context
from statesync.api.types import REFERENCE, ChangeMessage
from statesync.feed.hub import Hub
from statesync.identity import ADMIN_ROLE
from statesync.runtime import Runtime

MAX_SHARED_RESULTS = 4096

# What renders a message the same way: the query, its operation, the variables its
# selection uses (encoded) and the reader's role.
Rendering = tuple[str, str | None, bytes, str]
# (op, cursor, document id) + Rendering: a change of a referenced document is shown, at its
# cursor, by every document that refers to it (statesync.change.Change.through).
Key = tuple[str, int, str | None, str, str | None, bytes, str]

V = TypeVar("V")


class Recent(Generic[V]):
    """A bounded map of recent results, oldest dropped first (changes arrive in cursor order,
    so a result is only asked for again while its change is still being fanned out)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[Key, V] = OrderedDict()

    def get(self, key: Key) -> V | None:
        return self._items.get(key)

    def put(self, key: Key, result: V) -> None:
        self._items[key] = result
        if len(self._items) > self.limit:
            self._items.popitem(last=False)

    def keys_at(self, cursor: int) -> list[Key]:
        return [key for key in self._items if key[1] == cursor]


# Per feed (one hub per feed): cursors are only unique within one database's feed, and
# a process (a test run, say) may serve several.
_results_by_feed: WeakKeyDictionary[Hub, Recent[ExecutionResult]] = WeakKeyDictionary()
_payloads_by_feed: WeakKeyDictionary[Hub, Recent[bytes]] = WeakKeyDictionary()


def shared_results(runtime: Runtime) -> Recent[ExecutionResult]:
    results = _results_by_feed.get(runtime.hub)
    if results is None:
        results = _results_by_feed[runtime.hub] = Recent(MAX_SHARED_RESULTS)
    return results


def shared_payloads(runtime: Runtime) -> Recent[bytes]:
    """Encoded ``payload``s of live frames, under the same keys as :func:`shared_results`."""
    payloads = _payloads_by_feed.get(runtime.hub)
    if payloads is None:
        payloads = _payloads_by_feed[runtime.hub] = Recent(MAX_SHARED_RESULTS)
    return payloads


class _VariableUses(Visitor):
    """Counts each variable's uses: in all, and inside the root fields' arguments."""

    def __init__(self, root_fields: list[FieldNode]) -> None:
        super().__init__()
        self.root_arguments = {id(arg) for field in root_fields for arg in field.arguments or ()}
        self.inside_root_argument = 0
        self.total: dict[str, int] = {}
        self.in_root_arguments: dict[str, int] = {}

    def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
        if id(node) in self.root_arguments:
            self.inside_root_argument += 1

    def leave_argument(self, node: ArgumentNode, *_: Any) -> None:
        if id(node) in self.root_arguments:
            self.inside_root_argument -= 1

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        name = node.name.value
        self.total[name] = self.total.get(name, 0) + 1
        if self.inside_root_argument:
            self.in_root_arguments[name] = self.in_root_arguments.get(name, 0) + 1


_rendering_variables_of: dict[tuple[str, str | None], tuple[str, ...]] = {}


def _rendering_variables(query: str, name: str | None, operation: OperationDefinitionNode,
                         fragments: Iterable[Any]) -> tuple[str, ...]:
    """The variables that can change how a message renders (computed once per query)."""
    cached = _rendering_variables_of.get((query, name))
    if cached is not None:
        return cached
    root_fields = [s for s in operation.selection_set.selections if isinstance(s, FieldNode)]
    uses = _VariableUses(root_fields)
    visit(operation.selection_set, uses)
    for fragment in fragments:
        visit(fragment, uses)
    if len(root_fields) != len(operation.selection_set.selections):
        names = tuple(sorted(uses.total))  # root fragments: no telling; key on everything
    else:
        names = tuple(sorted(n for n, count in uses.total.items()
                             if uses.in_root_arguments.get(n, 0) < count))
    if len(_rendering_variables_of) >= MAX_SHARED_RESULTS:
        _rendering_variables_of.clear()  # a bound, not a cache policy: queries are few
    _rendering_variables_of[(query, name)] = names
    return names


class SharedEventExecutor(StrawberryGraphQLCoreExecutionContext):
    def execute_operation(self, serially: bool | None = None) -> Any:
        message = self.root_value
        context = self.context_value
        if not isinstance(context, Context) or not isinstance(message, ChangeMessage):
            return super().execute_operation(serially)
        key = self._key(message, context.access.role if context.access else ADMIN_ROLE)
        if key is None:
            return super().execute_operation(serially)
        results = shared_results(context.runtime)
        hit = results.get(key)
        if hit is not None:
            return hit
        result = super().execute_operation(serially)
        if isinstance(result, Awaitable):
            return self._keep_when_done(results, key, result)
        _keep(results, key, result)
        return result

    async def _keep_when_done(self, results: Recent[ExecutionResult], key: Key,
                              pending: Awaitable[Any]) -> Any:
        result = await pending
        _keep(results, key, result)
        return result

    def _key(self, message: ChangeMessage, role: str) -> Key | None:
        if message.changed_fields is None:
            return None
        rendering = self.rendering(role)
        return None if rendering is None else (message.op.value, int(message.cursor), message.id,
                                               *rendering)

    def rendering(self, role: str) -> Rendering | None:
        """What decides how this operation renders a live change (None: it cannot share).
        A selection that resolves references reads other documents under the reader's own
        rules (a customer's, say), so it renders alike only for that same reader."""
        operation = self.operation
        source = operation.loc.source.body if operation.loc is not None else None
        if source is None:
            return None
        name = operation.name.value if operation.name is not None else None
        fragments = self.fragment_definitions.values()
        names = _rendering_variables(source, name, operation, fragments)
        coerced = self.variable_values.coerced
        variables = orjson.dumps([coerced.get(n) for n in names], default=str)
        reader = role
        context = self.context_value
        if isinstance(context, Context) and _reaches_references(self.schema, source, name,
                                                                 operation, fragments):
            reader = f"{role}\x00{context.identity.key}"
        return (source, name, variables, reader)


class _References(Visitor):
    """Whether a selection resolves a reference (a field marked ``REFERENCE``)."""

    def __init__(self, type_info: TypeInfo) -> None:
        super().__init__()
        self.type_info = type_info
        self.found = False

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        definition = self.type_info.get_field_def()
        field = None if definition is None else (definition.extensions or {}).get(
            "strawberry-definition")
        if field is not None and (getattr(field, "metadata", None) or {}).get(REFERENCE):
            self.found = True


_reaches_references_of: dict[tuple[str, str | None], bool] = {}


def _reaches_references(schema: GraphQLSchema, query: str, name: str | None,
                        operation: OperationDefinitionNode, fragments: Iterable[Any]) -> bool:
    cached = _reaches_references_of.get((query, name))
    if cached is not None:
        return cached
    found = False
    for node in (operation, *fragments):  # a fragment's definition names its own type
        type_info = TypeInfo(schema)
        visitor = _References(type_info)
        visit(node, TypeInfoVisitor(type_info, visitor))
        found = found or visitor.found
    if len(_reaches_references_of) >= MAX_SHARED_RESULTS:
        _reaches_references_of.clear()
    _reaches_references_of[(query, name)] = found
    return found


def _keep(results: Recent[ExecutionResult], key: Key, result: Any) -> None:
    # Errors are per execution (and get rewritten later); only clean results are shared.
    if isinstance(result, ExecutionResult) and not result.errors:
        results.put(key, result)
