"""What every transport needs to answer a client, built once per app."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from graphql import GraphQLSchema
from starlette.requests import HTTPConnection

from statesync.access import Access, ModelRules
from statesync.api.context import Context
from statesync.api.operations import OperationCache
from statesync.api.permissions import PermissionCheck
from statesync.api.persisted import PersistedQueries
from statesync.api.quotas import Quotas
from statesync.auth.credentials import Authenticator
from statesync.identity import Identity
from statesync.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Gateway:
    schema: GraphQLSchema
    operations: OperationCache
    permissions: PermissionCheck
    authenticator: Authenticator
    rules: Mapping[str, ModelRules]
    quotas: Quotas
    persisted: PersistedQueries
    runtime: Callable[[], Runtime]
    hide_suggestions: bool

    def context(self, transport: HTTPConnection, identity: Identity) -> Context:
        access = None if identity.is_admin else Access(self.rules, identity)
        return Context(self.runtime(), transport, identity, access, self.quotas)
