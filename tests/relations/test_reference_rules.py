"""References under access control: what a reader may not read stays unread through a
reference too, whether selected, filtered on, or shown live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import RunningServer, serve
from tests.support import WAIT

ADMIN = {"x-statesync-admin-secret": "the-admin-secret"}


@pytest.fixture
async def secured_api(settings: Settings, workshop_models: list[ModelSpec]
                      ) -> AsyncIterator[RunningServer]:
    secured = settings.model_copy(update={"open_access": False, "admin_secret": "the-admin-secret",
                                          "jwt_secret": "a-test-jwt-secret-of-enough-length"})
    async with serve(secured, workshop_models) as running:
        yield running


async def body(api: RunningServer, query: str, headers: dict[str, str] | None = None
               ) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=WAIT) as http:
        answer: dict[str, Any] = (await http.post("/graphql", json={"query": query},
                                                  headers=headers or {})).json()
    return answer


async def test_rules_hold_through_references(secured_api: RunningServer) -> None:
    for mutation in (
        'createSupplier(id: "acme", input: {name: "Acme", secretMargin: 40}) { id }',
        'createPart(id: "bolt", input: {name: "Bolt", priceCents: 10, supplier: "acme"}) { id }',
        'createLabel(id: "red", input: {name: "red"}) { id }',
        'createLabel(id: "x", input: {name: "secret"}) { id }',
        'createAssembly(id: "a1", input: {title: "Frame", labels: ["red", "x"]}) { id }',
    ):
        assert "errors" not in await body(secured_api, f"mutation {{ {mutation} }}", ADMIN)
    anonymous = await body(secured_api, 'query { assembly(id: "a1") { labelIds labels { name } } }')
    # The ids are the assembly's; the label the reader may not see resolves to nothing.
    assert anonymous["data"]["assembly"] == {"labelIds": ["red", "x"], "labels": [{"name": "red"}]}
    selected = await body(secured_api, 'query { part(id: "bolt") { supplier { secretMargin } } }')
    assert selected["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    filtered = await body(secured_api, 'query { parts(where: {supplier: {secretMargin: {gt: 0}}}) '
                                       '{ nodes { id } } }')
    assert filtered["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "data" not in filtered or filtered["data"] is None
    # A filter through a reference sees only what the reader's rule shows.
    hidden = await body(secured_api, 'query { assemblies(where: {title: {eq: "Frame"}}) { nodes { '
                                     'labels { name } } } }')
    assert hidden["data"]["assemblies"]["nodes"] == [{"labels": [{"name": "red"}]}]
    allowed = await body(secured_api, 'query { parts(where: {supplier: {name: {eq: "Acme"}}}) '
                                      '{ nodes { id supplier { name } } } }')
    assert allowed["data"]["parts"]["nodes"] == [{"id": "bolt", "supplier": {"name": "Acme"}}]
