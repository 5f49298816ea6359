"""The strawberry schema generated from the models: queries, mutations, subscriptions."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Optional

import strawberry
from strawberry.types.nodes import SelectedField
from strawberry.types.unset import UNSET
from strawberry.utils.str_converters import to_camel_case

from statesync import documents as docs
from statesync import filters, values
from statesync.api.context import Context
from statesync.api.events import EventMutations, EventQueries, EventSubscriptions
from statesync.api.inputs import THROUGH, Referenced, plain, to_filter, to_order
from statesync.api.references import followed
from statesync.api.service import ServiceQueries
from statesync.api.streams import LiveSinks, Message, Target, live_message, stream
from statesync.api.types import (
    ChangeOp,
    ConflictResolution,
    ModelTypes,
    PageInfo,
    ReferenceChange,
    TypeFactory,
    filterable_references,
)
from statesync.conflicts import Resolution
from statesync.errors import BadInput, Forbidden, InvalidCursor, QueryTooComplex
from statesync.feed.subscriber import Sees, Sink
from statesync.filters import (
    Filter,
    InvalidFilter,
    InvalidPageToken,
    Through,
    cursor_values,
    decode_page_token,
    encode_page_token,
    validate,
    validate_cursor,
    validate_order,
)
from statesync.models import ModelSpec
from statesync.store import reads
from statesync.store.commits import CommitResult

REQUIRED = inspect.Parameter.empty


def _resolver(params: Sequence[tuple[str, Any, Any]], returns: Any,
              body: Callable[..., Any]) -> Callable[..., Any]:
    """A function strawberry can introspect: its signature declares the GraphQL arguments."""

    async def resolver(info: strawberry.Info, **kwargs: Any) -> Any:
        return await body(info.context, **kwargs)

    async def subscriber(info: strawberry.Info, **kwargs: Any) -> AsyncGenerator[Any, None]:
        # The root value may offer the live fast path (statesync.api.streams.LiveSinks).
        async with contextlib.aclosing(body(info.context, info.root_value,
                                            info.selected_fields[0], **kwargs)) as items:
            async for item in items:
                yield item

    target: Any = subscriber if inspect.isasyncgenfunction(body) else resolver
    parameters = [inspect.Parameter("info", inspect.Parameter.KEYWORD_ONLY,
                                    annotation=strawberry.Info)]
    parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                     default=default) for name, annotation, default in params]
    target.__signature__ = inspect.Signature(parameters, return_annotation=returns)
    target.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": returns}
    function: Callable[..., Any] = target
    return function


class ModelApi:
    """The resolvers of one model."""

    def __init__(self, types: ModelTypes, specs: Mapping[str, ModelSpec]) -> None:
        self.types = types
        self.spec: ModelSpec = types.spec
        self.kinds = self.spec.filter_kinds()
        self.through = {f.name + THROUGH: Referenced(f.name, f.ref.target,
                                                     specs[f.ref.target].filter_kinds())
                        for f in filterable_references(self.spec) if f.ref is not None}

    # ---- reading ----------------------------------------------------------------------------

    def view(self, document: dict[str, Any] | None) -> Any:
        return None if document is None else self.types.view(document)

    def _where(self, ctx: Context, where: Any, *, live: bool = False) -> Filter | None:
        condition = to_filter(where, self.kinds, self.through)
        if live and filters.goes_through(condition):
            raise BadInput("a subscription filters on its documents' own fields; filters "
                           "through a reference are for queries", field="where")
        limit = ctx.runtime.settings.max_filter_values
        if (found := filters.size(condition)) > limit:
            raise QueryTooComplex(f"the filter has {found} comparisons and values; the limit is "
                                  f"{limit}", limit="max_filter_values", maximum=limit, actual=found)
        try:
            validate(condition, self.kinds)
        except InvalidFilter as exc:
            raise BadInput(str(exc), field="where") from None
        self._readable(ctx, filters.fields_of(condition), "filter on")
        return _within_rules(ctx, condition)

    def _readable(self, ctx: Context, names: Iterable[str], doing: str) -> None:
        """Filtering or sorting on a field reveals it: only on fields the role may read."""
        access = ctx.model_access(self.spec.name)
        refused = sorted({n for n in names if access is not None and not access.may_read_field(n)})
        if refused:
            raise Forbidden(f"this role may not {doing} {', '.join(refused)} of {self.spec.name}",
                            fields=refused)

    def _id(self, ctx: Context, id: str) -> str:
        return values.check_text(id, "id", max_length=ctx.runtime.settings.max_id_length)

    async def get(self, ctx: Context, id: str) -> Any:
        doc_id = self._id(ctx, id)
        async with ctx.connect() as connection:
            document = await reads.document(connection, self.spec.name, doc_id,
                                            ctx.model_access(self.spec.name), self.kinds)
        return self.view(document)

    async def list(self, ctx: Context, where: Any = UNSET, order_by: Any = UNSET,
                   first: Any = UNSET, after: Any = UNSET) -> Any:
        settings = ctx.runtime.settings
        limit = settings.default_page_size if first in (UNSET, None) else first
        if not 0 <= limit <= settings.max_page_size:
            raise BadInput(f"first must be between 0 and {settings.max_page_size}", field="first")
        condition = self._where(ctx, where)
        order = to_order(None if order_by is UNSET else order_by)
        try:
            validate_order(order, self.kinds)
        except InvalidFilter as exc:
            raise BadInput(str(exc), field="orderBy") from None
        self._readable(ctx, (key.field for key in order), "sort on")
        position = None
        if after not in (UNSET, None):
            try:
                position = validate_cursor(order, decode_page_token(after, len(order) + 1),
                                           self.kinds)
            except (InvalidPageToken, InvalidFilter):
                raise InvalidCursor(f"not a page cursor of this query: {str(after)[:40]!r}",
                                    cursor=str(after)[:40]) from None
        async with ctx.connect() as connection:
            rows = await reads.page(connection, self.spec.name, condition, order, position,
                                    limit + 1, ctx.model_access(self.spec.name), self.kinds)
        page = rows[:limit]
        edges = [self.types.edge(cursor=encode_page_token(cursor_values(d, order, self.kinds)),
                                 node=self.view(d)) for d in page]
        return self.types.connection(
            nodes=[e.node for e in edges], edges=edges,
            page_info=PageInfo(has_next_page=len(rows) > limit,
                               end_cursor=edges[-1].cursor if edges else None),
        )

    # ---- writing ----------------------------------------------------------------------------

    def _changed(self, ctx: Context, names: Iterable[str]) -> builtins.list[str]:
        """The changed fields this role may know of."""
        access = ctx.model_access(self.spec.name)
        shown = names if access is None else access.readable_of(names)
        return [to_camel_case(f) for f in shown]

    def _resolution(self, ctx: Context, resolution: Resolution | None) -> ConflictResolution | None:
        """What was applied and kept, in the paths this role may know of."""
        if resolution is None:
            return None
        access = ctx.model_access(self.spec.name)

        def shown(paths: Iterable[str]) -> builtins.list[str]:
            return [".".join(to_camel_case(part) for part in path.split("."))
                    for path in paths
                    if access is None or access.may_read_field(path.split(".", 1)[0])]

        return ConflictResolution(strategy=resolution.strategy, based_on=resolution.based_on,
                                  applied=shown(resolution.applied), kept=shown(resolution.kept))

    def _commit_result(self, ctx: Context, result: CommitResult) -> Any:
        return self.types.commit(
            op=ChangeOp(result.op), id=result.id, version=result.version,
            document=self.view(result.document),
            changed_fields=self._changed(ctx, result.changed_fields),
            event_ids=list(result.event_ids), replayed=result.replayed,
            resolution=self._resolution(ctx, result.resolution),
        )

    async def _commit(self, ctx: Context, write: docs.Write, mutation_id: Any) -> Any:
        ctx.quotas.commit(ctx.identity)
        async with ctx.share():
            result = await ctx.runtime.commit(write, mutation_id=_given(mutation_id),
                                              guard=ctx.model_access(self.spec.name),
                                              owner=ctx.owner, readers=ctx.model_access)
        return self._commit_result(ctx, result)

    async def create(self, ctx: Context, input: Any, id: Any = UNSET,
                     mutation_id: Any = UNSET) -> Any:
        return await self._commit(ctx, docs.Create(self.spec.name, plain(input), id=_given(id)),
                                  mutation_id)

    async def update(self, ctx: Context, id: str, patch: Any, expected_version: Any = UNSET,
                     mutation_id: Any = UNSET) -> Any:
        write = docs.Update(self.spec.name, id, plain(patch), _given(expected_version))
        return await self._commit(ctx, write, mutation_id)

    async def delete(self, ctx: Context, id: str, expected_version: Any = UNSET,
                     mutation_id: Any = UNSET) -> Any:
        return await self._commit(ctx, docs.Delete(self.spec.name, id, _given(expected_version)),
                                  mutation_id)

    # ---- subscribing ------------------------------------------------------------------------

    def _message(self, ctx: Context, message: Message) -> Any:
        change = message.change
        return self.types.change(
            op=ChangeOp(message.op), cursor=str(message.cursor),
            id=change.doc_id if change else (message.document or {}).get("id"),
            version=change.version if change else (message.document or {}).get("version"),
            document=self.view(message.document),
            changed_fields=self._changed(ctx, change.changed_fields) if change else None,
            documents=None if message.documents is None else [self.view(d) for d in message.documents],
            has_more=message.has_more,
            mutation_id=change.mutation_id if change else None,
            resolution=self._resolution(ctx, change.resolution) if change else None,
            via=None if change is None or change.via is None else ReferenceChange(
                model=change.via[0], id=strawberry.ID(change.via[1])),
        )

    def _follows(self, ctx: Context, selected: SelectedField) -> dict[str, Sees | None]:
        """The referenced models the selection shows that this reader may read, with which of
        their documents it sees (the changes of others must not reach it, not even as a
        re-render of what refers to them)."""
        follows: dict[str, Sees | None] = {}
        for model in followed(self.spec.fields, selected):
            access = ctx.model_access(model)
            if access is None:
                follows[model] = None
            elif access.can_read:
                follows[model] = access.sees
        return follows

    def _live(self, ctx: Context, root: Any, target: Target) -> Sink | None:
        # A frame that shows referenced documents reads them as it renders: it cannot be
        # rendered without waiting, which is what the fast path is for.
        if not isinstance(root, LiveSinks) or target.follows:
            return None
        return root.sink(lambda delivery: self._message(ctx, live_message(delivery)))

    async def watch_one(self, ctx: Context, root: Any, selected: SelectedField, id: str,
                        since: Any = UNSET) -> AsyncGenerator[Any, None]:
        target = Target.of(self.spec.name, self._id(ctx, id), None, self.kinds,
                           ctx.model_access(self.spec.name), self._follows(ctx, selected))
        live = self._live(ctx, root, target)
        async with contextlib.aclosing(stream(ctx, target, _given(since), live)) as messages:
            async for message in messages:
                yield self._message(ctx, message)

    async def watch_many(self, ctx: Context, root: Any, selected: SelectedField,
                         where: Any = UNSET, since: Any = UNSET) -> AsyncGenerator[Any, None]:
        target = Target.of(self.spec.name, None, self._where(ctx, where, live=True), self.kinds,
                           ctx.model_access(self.spec.name), self._follows(ctx, selected))
        live = self._live(ctx, root, target)
        async with contextlib.aclosing(stream(ctx, target, _given(since), live)) as messages:
            async for message in messages:
                yield self._message(ctx, message)


def _within_rules(ctx: Context, condition: Filter | None) -> Filter | None:
    """``condition`` with each filter through a reference held to the reader's rules for the
    model it names: only fields it may read, only documents it may see."""
    if isinstance(condition, filters.AllOf | filters.AnyOf):
        return type(condition)(tuple(p for part in condition.parts
                                     if (p := _within_rules(ctx, part)) is not None))
    if isinstance(condition, filters.Negate):
        inner = _within_rules(ctx, condition.part)
        return filters.Negate(inner if inner is not None else filters.AllOf(()))
    if not isinstance(condition, Through):
        return condition
    access = ctx.model_access(condition.model)
    if access is None:
        return condition
    refused = sorted(n for n in filters.fields_of(condition.where) if not access.may_read_field(n))
    if not access.can_read or refused:
        raise Forbidden(f"this role may not filter on {', '.join(refused) or 'documents'} of "
                        f"{condition.model}", fields=refused)
    if access.visible is None:
        return condition
    return dataclasses.replace(condition, where=filters.AllOf((condition.where, access.visible)))


def _given(value: Any) -> Any:
    return None if value is UNSET else value


def build_schema(specs: Sequence[ModelSpec]) -> strawberry.Schema:
    if not specs:
        raise ValueError("no models declared: add a @statesync.model class to the schema folder")
    factory = TypeFactory(specs)
    by_name = {spec.name: spec for spec in specs}
    query: dict[str, Any] = {}
    mutation: dict[str, Any] = {}
    subscription: dict[str, Any] = {}
    ID, opt_int, opt_id, opt_str = strawberry.ID, Optional[int], Optional[strawberry.ID], Optional[str]  # noqa: UP045
    for spec in specs:
        types = factory.model(spec)
        api = ModelApi(types, by_name)
        one, many, name = spec.singular, spec.plural, spec.name
        query[one] = strawberry.field(
            resolver=_resolver([("id", ID, REQUIRED)], Optional[types.output], api.get),  # noqa: UP045
            description=f"One {name} by id; null when it does not exist or has expired.")
        query[many] = strawberry.field(resolver=_resolver([
            ("where", Optional[types.where], UNSET),  # noqa: UP045
            ("order_by", Optional[list[types.order]], UNSET),  # type: ignore[name-defined]  # noqa: UP045
            ("first", opt_int, UNSET), ("after", opt_str, UNSET),
        ], types.connection, api.list), description=f"A page of {name} documents.")
        mutation[f"create{name}"] = strawberry.mutation(resolver=_resolver([
            ("input", types.create_input, REQUIRED), ("id", opt_id, UNSET),
            ("mutation_id", opt_id, UNSET),
        ], types.commit, api.create), description=f"Create a {name}; `id` defaults to a new UUID.")
        mutation[f"update{name}"] = strawberry.mutation(resolver=_resolver([
            ("id", ID, REQUIRED), ("patch", types.patch_input, REQUIRED),
            ("expected_version", opt_int, UNSET), ("mutation_id", opt_id, UNSET),
        ], types.commit, api.update), description=f"Change some fields of a {name}.")
        mutation[f"delete{name}"] = strawberry.mutation(resolver=_resolver([
            ("id", ID, REQUIRED), ("expected_version", opt_int, UNSET),
            ("mutation_id", opt_id, UNSET),
        ], types.commit, api.delete), description=f"Delete a {name}.")
        subscription[one] = strawberry.subscription(resolver=_resolver([
            ("id", ID, REQUIRED), ("since", opt_str, UNSET),
        ], AsyncGenerator[types.change, None], api.watch_one),  # type: ignore[name-defined]
            description=f"A snapshot of one {name} (or, with `since`, what was missed), "
                        "then its changes.")
        subscription[many] = strawberry.subscription(resolver=_resolver([
            ("where", Optional[types.where], UNSET), ("since", opt_str, UNSET),  # noqa: UP045
        ], AsyncGenerator[types.change, None], api.watch_many),  # type: ignore[name-defined]
            description=f"A snapshot of matching {name} documents (or, with `since`, what was "
                        "missed), then their changes.")
    return strawberry.Schema(
        query=strawberry.type(type("Query", (EventQueries, ServiceQueries), query)),
        mutation=strawberry.type(type("Mutation", (EventMutations,), mutation)),
        subscription=strawberry.type(type("Subscription", (EventSubscriptions,), subscription)),
    )


__all__ = ["Awaitable", "build_schema"]
