"""Credentials: every bad token is UNAUTHENTICATED and writes nothing; JWKS keys rotate; a
websocket's token expires on it, and the clients come back with a fresh one, missing
nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from statesync.client import Client
from statesync.config import Settings
from statesync.models import ModelSpec
from tests.access.conftest import JWT_SECRET, As, Tokens
from tests.conftest import RunningServer, serve
from tests.support import WAIT, Subscriptions, eventually, row_counts

NAMESPACE = "https://hasura.io/jwt/claims"
WRITE = 'mutation { createNote(input: {text: "x"}) { id } }'


def _no_websockets(admin: As) -> Any:
    async def check() -> bool:
        health = (await admin.http.get("/healthz")).json()
        return bool(health["websockets"] == 0)

    return check


def claims(user: str = "ada", role: str = "author", **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {"sub": user, "iat": now, "exp": now + timedelta(minutes=5),
                            NAMESPACE: {"x-hasura-user-id": user, "x-hasura-default-role": role,
                                        "x-hasura-allowed-roles": [role]}}
    body.update(extra)
    return body


def _none_token() -> str:
    header = jwt.utils.base64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = jwt.utils.base64url_encode(json.dumps(claims(exp=int(time.time()) + 300,
                                                           iat=int(time.time()))).encode())
    return f"{header.decode()}.{payload.decode()}."


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

BAD_TOKENS: list[tuple[str, str]] = [
    ("expired", jwt.encode(claims(exp=datetime.now(UTC) - timedelta(seconds=30)), JWT_SECRET)),
    ("not yet valid", jwt.encode(claims(nbf=datetime.now(UTC) + timedelta(minutes=5)), JWT_SECRET)),
    ("wrong signature", jwt.encode(claims(), "another-secret-of-a-decent-length-to-sign-with")),
    ("alg none", _none_token()),
    ("RS256 on an HS256 server", jwt.encode(claims(), RSA_KEY, algorithm="RS256")),
    ("no exp", jwt.encode({k: v for k, v in claims().items() if k != "exp"}, JWT_SECRET)),
    ("garbage", "not.a.token"),
    ("no claims namespace", jwt.encode({"sub": "ada", "exp": datetime.now(UTC) + timedelta(minutes=5)},
                                       JWT_SECRET)),
    ("a default role outside the allowed ones", jwt.encode(claims() | {NAMESPACE: {
        "x-hasura-default-role": "admin", "x-hasura-allowed-roles": ["author"]}}, JWT_SECRET)),
]


@pytest.mark.parametrize(("what", "token"), BAD_TOKENS, ids=[t[0] for t in BAD_TOKENS])
async def test_bad_tokens_are_refused_and_write_nothing(api: RunningServer, database_url: str,
                                                        what: str, token: str) -> None:
    before = await row_counts(database_url)
    client = As(api.base_url, {"authorization": f"Bearer {token}"})
    try:
        response = await client.raw(WRITE)
    finally:
        await client.aclose()
    assert response.status_code == 401, (what, response.text)
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", what
    assert await row_counts(database_url) == before


async def test_the_authorization_header_must_be_bearer(api: RunningServer) -> None:
    client = As(api.base_url, {"authorization": "Basic YWRhOnB3"})
    try:
        assert (await client.raw(WRITE)).status_code == 401
    finally:
        await client.aclose()


async def test_audience_and_issuer(secured: Settings, access_models: list[ModelSpec]) -> None:
    strict = secured.model_copy(update={"jwt_audience": "statesync", "jwt_issuer": "https://id.test"})
    async with serve(strict, access_models) as api:
        good = jwt.encode(claims(aud="statesync", iss="https://id.test"), JWT_SECRET)
        for token, status in ((good, 200),
                              (jwt.encode(claims(aud="other", iss="https://id.test"), JWT_SECRET), 401),
                              (jwt.encode(claims(aud="statesync", iss="https://evil"), JWT_SECRET), 401),
                              (jwt.encode(claims(iss="https://id.test"), JWT_SECRET), 401)):
            client = As(api.base_url, {"authorization": f"Bearer {token}"})
            try:
                assert (await client.raw("{ __typename }")).status_code == status
            finally:
                await client.aclose()


@contextlib.asynccontextmanager
async def jwks_server(keys: dict[str, Any]) -> AsyncIterator[str]:
    """A key server whose key set is ``keys`` at the moment it is asked."""
    fetches: list[float] = []

    async def jwks(request: Request) -> JSONResponse:
        fetches.append(time.monotonic())
        return JSONResponse({"keys": list(keys.values())})

    config = uvicorn.Config(Starlette(routes=[Route("/jwks", jwks)]), host="127.0.0.1", port=0,
                            log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    config.load()
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/jwks"
    finally:
        server.should_exit = True
        await server.shutdown()


def _jwk(key: Any, kid: str, algorithm: Any) -> dict[str, Any]:
    public: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "use": "sig"}


async def test_jwks_keys_rotate(secured: Settings, access_models: list[ModelSpec]) -> None:
    first = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    second = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curve = ec.generate_private_key(ec.SECP256R1())
    keys = {"k1": _jwk(first, "k1", RSAAlgorithm), "e1": _jwk(curve, "e1", ECAlgorithm)}
    async with jwks_server(keys) as url:
        settings = secured.model_copy(update={"jwt_secret": None, "jwt_jwks_url": url})
        async with serve(settings, access_models) as api:
            async def status(token: str) -> int:
                client = As(api.base_url, {"authorization": f"Bearer {token}"})
                try:
                    return (await client.raw("{ __typename }")).status_code
                finally:
                    await client.aclose()

            signed_first = jwt.encode(claims(), first, algorithm="RS256", headers={"kid": "k1"})
            assert await status(signed_first) == 200
            assert await status(jwt.encode(claims(), curve, algorithm="ES256",
                                           headers={"kid": "e1"})) == 200
            assert await status(jwt.encode(claims(), JWT_SECRET, headers={"kid": "k1"})) == 401

            keys.clear()  # rotation: the key server now has only the second key
            keys["k2"] = _jwk(second, "k2", RSAAlgorithm)
            signed_second = jwt.encode(claims(), second, algorithm="RS256", headers={"kid": "k2"})
            assert await status(signed_second) == 200  # an unknown kid: fetched again, found
            assert await status(signed_first) == 401  # and the first key went with that fetch
            # A made-up kid fetches again (at most once a second) and is refused.
            assert await status(jwt.encode(claims(), second, algorithm="RS256",
                                           headers={"kid": "made-up"})) == 401


async def test_websocket_credentials(api: RunningServer, token: Tokens) -> None:
    good = {"authorization": f"Bearer {token('ada', 'author')}"}
    async with Subscriptions.connect(api.ws_url, {"headers": good}) as subs:
        op = await subs.subscribe("subscription { notes { op } }")
        assert (await subs.next(op))["op"] == "SNAPSHOT"
    import websockets

    for payload in ({"headers": {"authorization": "Bearer nope"}}, {"authorization": "Bearer x.y.z"}):
        async with websockets.connect(api.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), WAIT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        assert closed.value.rcvd.reason.startswith("Forbidden: the token")
    # credentials on the upgrade request count when the payload has none
    async with websockets.connect(api.ws_url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                                  additional_headers=good) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT)) == {"type": "connection_ack"}
        await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                  "payload": {"query": "{ notes { nodes { owner } } }"}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["payload"] == {
            "data": {"notes": {"nodes": []}}}


async def test_a_token_expires_on_a_live_socket_and_the_client_resumes(
        api: RunningServer, token: Tokens) -> None:
    admin = As(api.base_url, {"x-statesync-admin-secret": "the-admin-secret"})
    minted: list[str] = []

    def fresh() -> str:  # a token provider: each connection gets a token good for 2 s
        minted.append(token("ada", "author", lifetime=timedelta(seconds=2)))
        return minted[-1]

    try:
        await admin.data('mutation { createNote(id: "n1", input: {owner: "ada", text: "v1"}) { id } }')
        async with Client(api.base_url, token=fresh, reconnect_max_delay=0.5) as client:
            stream = client.watch("Note", id="n1", fields="text")
            snapshot = await asyncio.wait_for(anext(stream), WAIT)
            assert snapshot.op == "SNAPSHOT"
            seen: list[str] = []
            for expiry in range(2):
                connections = len(minted)
                await admin.data("mutation($t: String) { updateNote(id: \"n1\", patch: {text: $t}) "
                                 "{ version } }", {"t": f"before expiry {expiry}"})
                change = await asyncio.wait_for(anext(stream), WAIT)
                assert change.document is not None
                seen.append(change.document["text"])
                # The server closes the socket at the token's exp (4403) ...
                await eventually(_no_websockets(admin), 10, "the server to close the expired socket")
                # ... a change lands while the client is away ...
                await admin.data("mutation($t: String) { updateNote(id: \"n1\", patch: {text: $t}) "
                                 "{ version } }", {"t": f"while away {expiry}"})
                # ... and it comes back with a fresh token, resuming where it was.
                change = await asyncio.wait_for(anext(stream), WAIT)
                assert change.document is not None
                seen.append(change.document["text"])
                assert len(minted) > connections
            await stream.aclose()
        assert seen == ["before expiry 0", "while away 0", "before expiry 1", "while away 1"]
    finally:
        await admin.aclose()
