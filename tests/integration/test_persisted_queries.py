"""Apollo's automatic persisted queries: a hash alone once the server has seen the text."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import orjson

from tests.conftest import RunningServer
from tests.support import WAIT, GraphQLClient

QUERY = "query Catalog { products(first: 5) { nodes { id } } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(digest: str, version: int = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": digest}}


async def post(base_url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=WAIT) as http:
        response = await http.post("/graphql", json=body)
    answer: dict[str, Any] = response.json()
    return response.status_code, answer


def code(answer: dict[str, Any]) -> str:
    assert len(answer.get("errors", [])) == 1, answer
    value: str = answer["errors"][0]["extensions"]["code"]
    return value


async def test_a_hash_alone_runs_once_the_text_was_sent(server: RunningServer,
                                                        client: GraphQLClient) -> None:
    await client.data('mutation { createProduct(id: "tea", input: {sku: "tea", name: "Tea", '
                      "priceCents: 450}) { id } }")
    status, answer = await post(server.base_url, {"extensions": persisted(sha(QUERY))})
    assert (status, code(answer)) == (200, "PERSISTED_QUERY_NOT_FOUND")
    assert answer["errors"][0]["message"] == "PersistedQueryNotFound"  # what Apollo matches

    status, answer = await post(server.base_url, {"query": QUERY, "extensions": persisted(sha(QUERY))})
    assert status == 200 and answer["data"]["products"]["nodes"] == [{"id": "tea"}], answer
    status, answer = await post(server.base_url, {"extensions": persisted(sha(QUERY))})
    assert status == 200 and answer["data"]["products"]["nodes"] == [{"id": "tea"}], answer

    # Over GET too (Apollo's useGETForHashedQueries), the extensions as JSON.
    async with httpx.AsyncClient(base_url=server.base_url, timeout=WAIT) as http:
        response = await http.get("/graphql", params={
            "extensions": orjson.dumps(persisted(sha(QUERY))).decode()})
    assert response.json()["data"]["products"]["nodes"] == [{"id": "tea"}]


async def test_what_does_not_match_or_prepare_is_not_kept(server: RunningServer) -> None:
    other = "query Other { products(first: 1) { nodes { id } } }"
    status, answer = await post(server.base_url, {"query": other, "extensions": persisted(sha(QUERY))})
    assert (status, code(answer)) == (400, "BAD_REQUEST")  # a malformed request, as Apollo Server says
    assert "does not match" in answer["errors"][0]["message"]

    broken = "query Broken { nosuchfield }"
    status, answer = await post(server.base_url, {"query": broken, "extensions": persisted(sha(broken))})
    assert code(answer) == "GRAPHQL_VALIDATION_FAILED"
    status, answer = await post(server.base_url, {"extensions": persisted(sha(broken))})
    assert code(answer) == "PERSISTED_QUERY_NOT_FOUND"

    status, answer = await post(server.base_url, {"extensions": persisted(sha(QUERY), version=2)})
    assert code(answer) == "PERSISTED_QUERY_NOT_SUPPORTED"
    status, answer = await post(server.base_url, {"extensions": persisted("XYZ")})
    assert code(answer) == "BAD_REQUEST"
