"""Which fields of a document a role may select, checked before anything runs.

Rules say which documents a role sees (applied in ``statesync.store.reads`` and by each
subscription's target) and which fields it may read; the fields are enforced here, on the
operation: selecting a field the role may not read, or a root field it may not use, is a
FORBIDDEN error naming it, and nothing runs. So no answer, frame or replay can carry such
a field: the only selections that execute are ones the role may see in full. The result
is kept on the prepared operation, per role.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    get_named_type,
    visit,
)
from strawberry.utils.str_converters import to_camel_case

from statesync.access import Access
from statesync.api.errors import coded
from statesync.api.operations import Prepared
from statesync.api.types import reference_names
from statesync.errors import Forbidden
from statesync.models import META_FIELDS, ModelSpec

INTROSPECTION = frozenset({"__schema", "__type"})
EVENT_READS = frozenset({("Query", "event"), ("Subscription", "event")})
ADMIN_ONLY = frozenset({("Query", "events"), ("Query", "deliveries"), ("Query", "service"),
                        ("Mutation", "emitEvent"), ("Mutation", "redeliverEvent")})


@dataclass(frozen=True, slots=True)
class SchemaMap:
    """The generated schema as rules see it: a model's output type and its fields, and what
    each root field does to which model."""

    outputs: Mapping[str, tuple[str, Mapping[str, str]]]  # type -> (model, GraphQL field -> field)
    roots: Mapping[tuple[str, str], tuple[str, str]]  # (root type, field) -> (model, action)

    @classmethod
    def of(cls, specs: Sequence[ModelSpec]) -> SchemaMap:
        outputs: dict[str, tuple[str, Mapping[str, str]]] = {}
        roots: dict[tuple[str, str], tuple[str, str]] = {}
        for spec in specs:
            names = [*META_FIELDS, *(f.name for f in spec.fields)]
            graphql = {to_camel_case(n): n for n in names}
            # A reference's raw ids reveal what the field does.
            graphql |= {to_camel_case(name): f.name for f in spec.fields if f.ref is not None
                        for name in reference_names(f)}
            outputs[spec.name] = (spec.name, graphql)
            for root, field_name, action in (
                    ("Query", spec.singular, "read"), ("Query", spec.plural, "read"),
                    ("Subscription", spec.singular, "read"), ("Subscription", spec.plural, "read"),
                    ("Mutation", f"create{spec.name}", "create"),
                    ("Mutation", f"update{spec.name}", "update"),
                    ("Mutation", f"delete{spec.name}", "delete")):
                roots[(root, field_name)] = (spec.name, action)
        return cls(outputs, roots)


class PermissionCheck:
    def __init__(self, schema: GraphQLSchema, specs: Sequence[ModelSpec], *,
                 introspection_for_all: bool) -> None:
        self.schema = schema
        self.map = SchemaMap.of(specs)
        self.introspection_for_all = introspection_for_all

    def errors(self, prepared: Prepared, access: Access | None) -> list[GraphQLError]:
        """FORBIDDEN errors for what ``access`` may not select (none for the admin)."""
        if access is None:
            return []
        known = prepared.checks.get(access.role)
        if known is None:
            known = prepared.checks[access.role] = self._check(prepared, access)
        return list(known)

    def _check(self, prepared: Prepared, access: Access) -> tuple[GraphQLError, ...]:
        type_info = TypeInfo(self.schema)
        found = _Fields(self, access, type_info)
        visit(prepared.document, TypeInfoVisitor(type_info, found))
        return tuple(found.errors)

    def refusal(self, access: Access, parent: str, field: str) -> str | None:
        """Why ``access`` may not select ``parent.field`` (None: it may)."""
        if field in INTROSPECTION:
            return None if self.introspection_for_all else "introspection is for the admin"
        if (parent, field) in ADMIN_ONLY:
            return f"{parent}.{field} is for the admin"
        if (parent, field) in EVENT_READS:
            return None
        root = self.map.roots.get((parent, field))
        if root is not None:
            model, action = root
            bound = access.model(model)
            allowed = {"read": bound.can_read, "create": bound.creatable is not None,
                       "update": bound.updatable is not None, "delete": bound.can_delete}[action]
            return None if allowed else f"this role may not {action} {model} documents"
        output = self.map.outputs.get(parent)
        if output is not None:
            model, fields = output
            name = fields.get(field)
            if name is not None and not access.model(model).may_read_field(name):
                return f"this role may not read {model}.{field}"
        return None


class _Fields(Visitor):
    def __init__(self, check: PermissionCheck, access: Access, type_info: TypeInfo) -> None:
        super().__init__()
        self.check = check
        self.access = access
        self.type_info = type_info
        self.errors: list[GraphQLError] = []

    def enter_field(self, node: FieldNode, *_: object) -> None:
        parent = self.type_info.get_parent_type()
        if parent is None:
            return
        reason = self.check.refusal(self.access, get_named_type(parent).name, node.name.value)
        if reason is not None:
            forbidden = Forbidden(reason, field=node.name.value)
            self.errors.append(coded(GraphQLError(reason, nodes=[node], original_error=forbidden)))
