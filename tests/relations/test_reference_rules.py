"""References under access control: what a reader may not read stays unread through a
reference too, whether selected, filtered on, or shown live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from statesync.auth.dev import mint
from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import RunningServer, serve
from tests.support import WAIT, Subscriptions

ADMIN = {"x-statesync-admin-secret": "the-admin-secret"}


@pytest.fixture
async def secured_api(settings: Settings, workshop_models: list[ModelSpec]
                      ) -> AsyncIterator[RunningServer]:
    secured = settings.model_copy(update={"open_access": False, "admin_secret": "the-admin-secret",
                                          "jwt_secret": "a-test-jwt-secret-of-enough-length"})
    async with serve(secured, workshop_models) as running:
        yield running


def member(api: RunningServer, user: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint(api.settings, user, 'member')}"}


async def body(api: RunningServer, query: str, headers: dict[str, str] | None = None,
               variables: dict[str, Any] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=WAIT) as http:
        answer: dict[str, Any] = (await http.post("/graphql", json={
            "query": query, "variables": variables or {}}, headers=headers or {})).json()
    return answer


async def lockers(api: RunningServer) -> None:
    """ann's locker and pointer, bob's locker; pointers are everyone's to read."""
    for user, locker in (("ann", "la"), ("bob", "lb")):
        made = await body(api, 'mutation($id: ID) { createLocker(id: $id, input: {secret: '
                               '"s3cret"}) { id } }', member(api, user), {"id": locker})
        assert "errors" not in made, made
    made = await body(api, 'mutation { createPointer(id: "p", input: {title: "t", locker: "la"}) '
                           "{ id } }", member(api, "ann"))
    assert "errors" not in made, made


POINTERS = ("subscription($since: String) { pointers(since: $since) { op id cursor via { id } "
            "document { title locker { owner secret } } documents { id } } }")


async def test_a_frame_through_a_reference_is_rendered_for_its_reader(secured_api: RunningServer
                                                                     ) -> None:
    api = secured_api
    await lockers(api)
    async with Subscriptions.connect(api.ws_url, payload={"headers": member(api, "ann")}) as ann:
        mine = await ann.subscribe(POINTERS)
        cursor = (await ann.next(mine))["cursor"]
        await body(api, 'mutation { updatePointer(id: "p", patch: {title: "new"}) { id } }', ADMIN)
        seen = await ann.next(mine)
    assert seen["document"] == {"title": "new", "locker": {"owner": "ann", "secret": "s3cret"}}
    # The same query, replayed for bob from the same cursor: not ann's rendering of it.
    async with Subscriptions.connect(api.ws_url, payload={"headers": member(api, "bob")}) as bob:
        theirs = await bob.subscribe(POINTERS, {"since": cursor})
        replayed = await bob.next(theirs)
    assert replayed["document"] == {"title": "new", "locker": None}


async def test_a_reference_names_only_what_its_writer_may_see(secured_api: RunningServer) -> None:
    api = secured_api
    await lockers(api)
    create = 'mutation($l: String) { createPointer(input: {title: "x", locker: $l}) { id } }'
    hidden = await body(api, create, member(api, "ann"), {"l": "lb"})
    absent = await body(api, create, member(api, "ann"), {"l": "nothing"})
    # Someone else's locker is as absent as one that does not exist.
    assert [a["errors"][0]["extensions"]["code"] for a in (hidden, absent)] == [
        "REFERENCE_NOT_FOUND"] * 2
    assert "errors" not in await body(api, create, member(api, "bob"), {"l": "lb"})


async def test_a_change_the_reader_may_not_see_sends_it_nothing(secured_api: RunningServer
                                                               ) -> None:
    api = secured_api
    await lockers(api)
    async with Subscriptions.connect(api.ws_url, payload={"headers": member(api, "bob")}) as bob, \
            Subscriptions.connect(api.ws_url, payload={"headers": member(api, "ann")}) as ann:
        theirs = await bob.subscribe(POINTERS)
        mine = await ann.subscribe(POINTERS)
        assert (await bob.next(theirs))["op"] == "SNAPSHOT"
        assert (await ann.next(mine))["op"] == "SNAPSHOT"
        changed = await body(api, 'mutation { updateLocker(id: "la", patch: {secret: "n3w"}) '
                                  "{ version } }", member(api, "ann"))
        assert "errors" not in changed, changed
        assert (await ann.next(mine))["via"] == {"id": "la"}  # ann may see her locker
        await body(api, 'mutation { updatePointer(id: "p", patch: {title: "later"}) { id } }',
                   ADMIN)
        later = await bob.next(theirs)  # bob heard nothing of ann's locker
    assert later["via"] is None and later["document"]["title"] == "later"


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
