"""A server with access control on: an admin secret, HS256 tokens, and no open access;
the demo models plus a test-only Note whose rules use every kind of permission."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from statesync.auth.dev import mint
from statesync.config import Settings
from statesync.loader import load_models
from statesync.models import ModelSpec
from tests.conftest import RunningServer, serve
from tests.support import WAIT, Subscriptions

HERE = Path(__file__).resolve().parent
ADMIN_SECRET = "the-admin-secret"
JWT_SECRET = "a-test-jwt-secret-of-enough-length-for-hs256"


@pytest.fixture(scope="session")
def access_models(demo_models: list[ModelSpec]) -> list[ModelSpec]:
    return [*demo_models, *load_models(HERE / "schema")]


@pytest.fixture
def secured(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "open_access": False, "admin_secret": ADMIN_SECRET, "jwt_secret": JWT_SECRET,
        "introspection": "admin", "jwt_leeway": 0.0,
    })


@pytest.fixture
async def api(secured: Settings, access_models: list[ModelSpec]) -> AsyncIterator[RunningServer]:
    async with serve(secured, access_models) as running:
        yield running


Tokens = Callable[..., str]


@pytest.fixture
def token(secured: Settings) -> Tokens:
    def make(user: str, role: str, *, also: list[str] | None = None,
             lifetime: timedelta = timedelta(minutes=10), **claims: Any) -> str:
        settings = secured
        if claims:
            return _with_claims(settings, user, role, also, lifetime, claims)
        return mint(settings, user, role, also, lifetime)

    return make


def _with_claims(settings: Settings, user: str, role: str, also: list[str] | None,
                 lifetime: timedelta, claims: dict[str, Any]) -> str:
    import jwt

    decoded = jwt.decode(mint(settings, user, role, also, lifetime), settings.jwt_secret or "",
                         algorithms=["HS256"])
    decoded[settings.jwt_claims_namespace].update(claims)
    return jwt.encode(decoded, settings.jwt_secret or "", algorithm="HS256")


class As:
    """GraphQL over HTTP as one identity (a token, the admin secret, or nobody)."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=WAIT, headers=headers)
        self.headers = headers

    async def raw(self, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        return await self.http.post("/graphql", json={"query": query, "variables": variables or {}})

    async def body(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = (await self.raw(query, variables)).json()
        return result

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = await self.body(query, variables)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    async def code(self, query: str, variables: dict[str, Any] | None = None) -> str:
        body = await self.body(query, variables)
        assert body.get("errors"), body
        code: str = body["errors"][0]["extensions"]["code"]
        return code

    async def aclose(self) -> None:
        await self.http.aclose()


Clients = Callable[..., As]


@pytest.fixture
async def as_(api: RunningServer, token: Tokens) -> AsyncIterator[Clients]:
    made: list[As] = []

    def make(user: str | None = None, role: str | None = None, *, admin: bool = False,
             pick: str | None = None, **claims: Any) -> As:
        headers: dict[str, str] = {}
        if admin:
            headers["x-statesync-admin-secret"] = ADMIN_SECRET
        elif user is not None:
            assert role is not None
            headers["authorization"] = f"Bearer {token(user, role, **claims)}"
        if pick is not None:
            headers["x-statesync-role"] = pick
        client = As(api.base_url, headers)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.aclose()


def socket_as(api: RunningServer, headers: dict[str, str]) -> Any:
    """A graphql-transport-ws connection whose connection_init carries ``headers``."""
    return Subscriptions.connect(api.ws_url, payload={"headers": headers})
