"""What one GraphQL operation may make the server spend, measured on the parsed document
before validation runs (graphql-core's field-merging rule is quadratic in repeated
fields, so it must never see a document these limits refuse).

Every bound is a setting (see the README's configuration table):

- ``max_query_tokens``: lexical tokens, enforced by the parser itself;
- ``max_query_depth``: nesting of selections, fragments expanded;
- ``max_aliases`` and ``max_directives``: counted over the whole document;
- ``max_root_fields``: distinct top-level fields, each a read or a write of its own;
- ``max_field_repeats``: times one response name is selected in one selection set,
  fragments included (what makes field merging quadratic);
- ``max_query_cost``: fields the answer can hold. Every field costs 1, and a field with a
  ``first`` argument multiplies what it selects by ``first`` (its default when absent,
  ``max_page_size`` when it is a variable). Fragments are costed once and multiplied
  where they are spread, so a fragment "bomb" is priced at its expanded size;
- ``max_input_depth``: nesting of literal input objects and lists (and of variables);
- ``max_input_values``: JSON values in a request's variables, counted before coercion.

Literal strings are also checked against :mod:`statesync.values`: a NUL character or a
lone surrogate is a client mistake, answered before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    Node,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
)
from graphql.language import DirectiveNode

from statesync.errors import BadInput, QueryTooComplex
from statesync.values import text_problem


@dataclass(frozen=True, slots=True)
class QueryLimits:
    max_tokens: int = 2000
    max_depth: int = 15
    max_aliases: int = 100
    max_directives: int = 50
    max_root_fields: int = 20
    max_field_repeats: int = 10
    max_cost: int = 25_000
    max_input_depth: int = 32
    max_input_values: int = 20_000
    default_page_size: int = 50
    max_page_size: int = 500


def _too_complex(limit: str, maximum: int, actual: int | None, what: str) -> QueryTooComplex:
    shown = f"{actual} " if actual is not None else "more "
    return QueryTooComplex(f"the operation has {shown}{what}; the limit is {maximum}",
                           limit=limit, maximum=maximum, actual=actual)


def check_document(document: DocumentNode, limits: QueryLimits) -> None:
    """Document-wide counts: aliases, directives, literal nesting and literal strings."""
    aliases = directives = 0
    for node, depth in _walk(document):
        if isinstance(node, FieldNode) and node.alias is not None:
            aliases += 1
        elif isinstance(node, DirectiveNode):
            directives += 1
        elif isinstance(node, ObjectValueNode | ListValueNode) and depth >= limits.max_input_depth:
            raise _too_complex("max_input_depth", limits.max_input_depth, None,
                               "input values nested deeper")
        elif isinstance(node, StringValueNode):
            problem = text_problem(node.value)
            if problem is not None:
                raise BadInput(f"a string in the query {problem}", field="query")
    if aliases > limits.max_aliases:
        raise _too_complex("max_aliases", limits.max_aliases, aliases, "aliases")
    if directives > limits.max_directives:
        raise _too_complex("max_directives", limits.max_directives, directives, "directives")


def _walk(document: DocumentNode) -> Iterator[tuple[Node, int]]:
    """Every node with its depth in literal values (iterative: depth costs no recursion)."""
    stack: list[tuple[Node, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        inner = depth + 1 if isinstance(node, ObjectValueNode | ListValueNode) else depth
        for key in node.keys:
            child = getattr(node, key, None)
            if isinstance(child, Node):
                stack.append((child, inner))
            elif isinstance(child, tuple | list):
                stack.extend((c, inner) for c in child if isinstance(c, Node))


class _Measure:
    """Depth, cost and repeats of one operation, fragments expanded (and memoized)."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, limits: QueryLimits) -> None:
        self.schema = schema
        self.limits = limits
        self.fragments = {d.name.value: d for d in document.definitions
                          if isinstance(d, FragmentDefinitionNode)}
        self._fragment_cost: dict[str, tuple[int, int]] = {}
        self._visiting: set[str] = set()

    def selection_cost(self, selection_set: SelectionSetNode | None,
                       parent: GraphQLNamedType | None) -> tuple[int, int]:
        """(cost, depth) of a selection set. Cycles count nothing: validation reports them."""
        if selection_set is None:
            return 0, 0
        cost = depth = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                child_type, multiplier = self._field(selection, parent)
                child_cost, child_depth = self.selection_cost(selection.selection_set, child_type)
                cost += 1 + max(multiplier, 1) * child_cost
                depth = max(depth, 1 + child_depth)
            elif isinstance(selection, InlineFragmentNode):
                inner = self._type(selection.type_condition.name.value) \
                    if selection.type_condition else parent
                inner_cost, inner_depth = self.selection_cost(selection.selection_set, inner)
                cost, depth = cost + inner_cost, max(depth, inner_depth)
            elif isinstance(selection, FragmentSpreadNode):
                spread_cost, spread_depth = self._fragment(selection.name.value)
                cost, depth = cost + spread_cost, max(depth, spread_depth)
            if cost > self.limits.max_cost:
                raise QueryTooComplex(
                    f"the operation may return more than {self.limits.max_cost} fields (its cost; "
                    "a field with `first` counts what it selects `first` times)",
                    limit="max_query_cost", maximum=self.limits.max_cost, actual=None)
        return cost, depth

    def _fragment(self, name: str) -> tuple[int, int]:
        known = self._fragment_cost.get(name)
        if known is not None:
            return known
        fragment = self.fragments.get(name)
        if fragment is None or name in self._visiting:
            return 0, 0
        self._visiting.add(name)
        try:
            measured = self.selection_cost(fragment.selection_set,
                                           self._type(fragment.type_condition.name.value))
        finally:
            self._visiting.discard(name)
        self._fragment_cost[name] = measured
        return measured

    def _type(self, name: str) -> GraphQLNamedType | None:
        return self.schema.type_map.get(name)

    def _field(self, node: FieldNode, parent: GraphQLNamedType | None
               ) -> tuple[GraphQLNamedType | None, int]:
        """The field's named type, and how many times its selection may be repeated."""
        if not isinstance(parent, GraphQLObjectType):
            return None, 1
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return None, 1
        named = definition.type
        while isinstance(named, GraphQLNonNull | GraphQLList):
            named = named.of_type
        if "first" not in definition.args:
            return named, 1
        return named, self._first(node, definition.args["first"].default_value)

    def _first(self, node: FieldNode, default: object) -> int:
        limits = self.limits
        for argument in node.arguments or ():
            if argument.name.value != "first":
                continue
            if isinstance(argument.value, IntValueNode):
                return min(max(int(argument.value.value), 0), limits.max_page_size)
            if isinstance(argument.value, VariableNode):
                return limits.max_page_size
        return default if isinstance(default, int) else limits.default_page_size

    def repeats(self, selection_sets: Iterable[SelectionSetNode]) -> None:
        """No response name selected more than ``max_field_repeats`` times in one merged
        selection set, at any depth."""
        groups: dict[str, list[FieldNode]] = {}
        for field in self._fields(selection_sets, set()):
            groups.setdefault((field.alias or field.name).value, []).append(field)
        for name, fields in groups.items():
            if len(fields) > self.limits.max_field_repeats:
                raise _too_complex("max_field_repeats", self.limits.max_field_repeats, len(fields),
                                   f"selections of {name!r} in one selection set")
            children = [f.selection_set for f in fields if f.selection_set is not None]
            if children:
                self.repeats(children)

    def _fields(self, selection_sets: Iterable[SelectionSetNode], spread: set[str]
                ) -> Iterator[FieldNode]:
        for selection_set in selection_sets:
            for selection in selection_set.selections:
                if isinstance(selection, FieldNode):
                    yield selection
                elif isinstance(selection, InlineFragmentNode):
                    yield from self._fields([selection.selection_set], spread)
                elif isinstance(selection, FragmentSpreadNode):
                    fragment = self.fragments.get(selection.name.value)
                    if fragment is not None and fragment.name.value not in spread:
                        yield from self._fields([fragment.selection_set],
                                                spread | {fragment.name.value})

    def root_fields(self, operation: OperationDefinitionNode) -> int:
        return len({(f.alias or f.name).value for f in self._fields([operation.selection_set], set())})


def check_operation(schema: GraphQLSchema, document: DocumentNode,
                    operation: OperationDefinitionNode, root: GraphQLObjectType | None,
                    limits: QueryLimits) -> int:
    """Depth, root fields, cost and repeats of ``operation``; returns its cost."""
    measure = _Measure(schema, document, limits)
    roots = measure.root_fields(operation)
    if roots > limits.max_root_fields:
        raise _too_complex("max_root_fields", limits.max_root_fields, roots, "top-level fields")
    cost, depth = measure.selection_cost(operation.selection_set, root)
    if depth > limits.max_depth:
        raise _too_complex("max_query_depth", limits.max_depth, depth, "levels of nesting")
    measure.repeats([operation.selection_set])  # after the cost: that bounds the expansion
    return cost
