"""Rules on the write path: what a role may write, to which documents, and what it leaves;
a refused write writes nothing."""

from __future__ import annotations

import pytest

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.access.conftest import ADMIN_SECRET, As, Clients, Tokens
from tests.conftest import serve
from tests.support import row_counts

NOTE = ("mutation($id: ID, $input: NoteInput!) { createNote(id: $id, input: $input) "
        "{ id document { owner } } }")
UPDATE = """mutation($id: ID!, $patch: NotePatch!, $v: Int, $m: ID) {
  updateNote(id: $id, patch: $patch, expectedVersion: $v, mutationId: $m) { version replayed } }"""


async def test_presets_come_from_the_token_and_cannot_be_written(as_: Clients) -> None:
    ada = as_("ada", "author")
    made = await ada.data(NOTE, {"id": "n1", "input": {"text": "mine"}})
    assert made["createNote"]["document"]["owner"] == "ada"
    body = await ada.body(NOTE, {"id": "n2", "input": {"text": "forged", "owner": "bob"}})
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert body["errors"][0]["extensions"]["fields"] == ["owner"]


@pytest.mark.parametrize(("who", "query", "variables", "code"), [
    ("reader", NOTE, {"input": {"text": "x", "owner": "rita"}}, "FORBIDDEN"),
    ("reader", UPDATE, {"id": "n1", "patch": {"text": "x"}}, "FORBIDDEN"),
    ("editor", UPDATE, {"id": "n1", "patch": {"published": False}}, "FORBIDDEN"),
    ("editor", 'mutation { deleteNote(id: "n1") { version } }', None, "FORBIDDEN"),
    ("other author", UPDATE, {"id": "n1", "patch": {"text": "x"}}, "NOT_FOUND"),
    ("other author", 'mutation { deleteNote(id: "n1") { version } }', None, "NOT_FOUND"),
    ("anonymous", NOTE, {"input": {"text": "x", "owner": "x"}}, "FORBIDDEN"),
    ("editor", UPDATE, {"id": "n2", "patch": {"text": "x"}}, "NOT_FOUND"),  # unpublished: unseen
])
async def test_refused_writes_write_nothing(as_: Clients, database_url: str, who: str, query: str,
                                            variables: dict[str, object] | None, code: str) -> None:
    ada = as_("ada", "author")
    await ada.data(NOTE, {"id": "n1", "input": {"text": "mine", "published": True}})
    await ada.data(NOTE, {"id": "n2", "input": {"text": "draft"}})
    client = {"reader": as_("rita", "reader"), "editor": as_("eve", "editor"),
              "other author": as_("bob", "author"), "anonymous": as_()}[who]
    before = await row_counts(database_url)
    assert await client.code(query, variables) == code
    assert await row_counts(database_url) == before


async def test_a_write_must_leave_a_document_the_role_can_see(as_: Clients) -> None:
    eve = as_("eve", "editor")
    admin = as_(admin=True)
    await admin.data(NOTE, {"id": "p", "input": {"owner": "x", "text": "t", "published": True}})
    assert (await eve.data(UPDATE, {"id": "p", "patch": {"text": "fixed"}}))["updateNote"]["version"] == 2


async def test_a_conflict_shows_only_what_the_role_may_read(as_: Clients) -> None:
    admin, eve = as_(admin=True), as_("eve", "editor")
    await admin.data(NOTE, {"id": "p", "input": {"owner": "x", "text": "t", "published": True,
                                                 "secret": "s3cret"}})
    await admin.data(UPDATE, {"id": "p", "patch": {"text": "moved on"}})
    body = await eve.body(UPDATE, {"id": "p", "patch": {"text": "stale"}, "v": 1})
    error = body["errors"][0]
    assert error["extensions"]["code"] == "CONFLICT"
    assert error["extensions"]["current"]["text"] == "moved on"
    assert "secret" not in error["extensions"]["current"]


async def test_a_mutation_id_replays_only_to_who_made_it(as_: Clients, database_url: str) -> None:
    ada = as_("ada", "author")
    await ada.data(NOTE, {"id": "n1", "input": {"text": "v1"}})
    first = await ada.data(UPDATE, {"id": "n1", "patch": {"text": "v2"}, "m": "m-1"})
    again = await ada.data(UPDATE, {"id": "n1", "patch": {"text": "v2"}, "m": "m-1"})
    assert again["updateNote"] == {**first["updateNote"], "replayed": True}
    before = await row_counts(database_url)
    thief = as_("bob", "author")  # the same id and arguments from someone else: not a replay
    assert await thief.code(UPDATE, {"id": "n1", "patch": {"text": "v2"}, "m": "m-1"}) == \
        "MUTATION_ID_REUSED"
    assert await row_counts(database_url) == before


async def test_events_are_emitted_and_redelivered_by_the_admin_only(as_: Clients) -> None:
    admin, ann = as_(admin=True), as_("ann", "customer")
    assert await ann.code('mutation { emitEvent(type: "Shop.audit") { eventId } }') == "FORBIDDEN"
    emitted = await admin.data('mutation { emitEvent(type: "Shop.audit") { eventId } }')
    event_id = emitted["emitEvent"]["eventId"]
    assert await ann.code("mutation($id: ID!) { redeliverEvent(id: $id) { id } }", {"id": event_id}) == \
        "FORBIDDEN"
    for forged in ("Order.created", "Order.updated", "Product.deleted", "Note.expired"):
        body = await admin.body(f'mutation {{ emitEvent(type: "{forged}", key: "o1") {{ eventId }} }}')
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", (forged, body)
    assert "errors" not in await admin.body('mutation { emitEvent(type: "Order.audited") { eventId } }')


async def test_commits_over_the_identity_rate_are_refused(secured: Settings,
                                                          access_models: list[ModelSpec],
                                                          token: Tokens) -> None:
    slow = secured.model_copy(update={"commit_rate_per_identity": 0.5, "commit_burst_per_identity": 3})
    async with serve(slow, access_models) as api:
        ada = As(api.base_url, {"authorization": f"Bearer {token('ada', 'author')}"})
        bob = As(api.base_url, {"authorization": f"Bearer {token('bob', 'author')}"})
        admin = As(api.base_url, {"x-statesync-admin-secret": ADMIN_SECRET})
        try:
            codes = []
            for n in range(5):  # the burst of 3, then refused: one more every 2 s
                body = await ada.body(NOTE, {"id": f"r{n}", "input": {"text": "x"}})
                codes.append(body["errors"][0]["extensions"]["code"] if "errors" in body else "ok")
            assert codes == ["ok", "ok", "ok", "RATE_LIMITED", "RATE_LIMITED"], codes
            refused = await ada.body(NOTE, {"input": {"text": "x"}})
            assert 0 < refused["errors"][0]["extensions"]["retryAfter"] <= 2
            assert "errors" not in await bob.body(NOTE, {"input": {"text": "x"}})  # its own bucket
            for _ in range(6):  # the admin is not limited
                assert "errors" not in await admin.body(NOTE, {"input": {"owner": "x", "text": "x"}})
        finally:
            for client in (ada, bob, admin):
                await client.aclose()


async def test_a_merge_reports_only_the_fields_the_role_may_read(as_: Clients) -> None:
    admin, clerk = as_(admin=True), as_("cal", "clerk")
    await admin.data('mutation { createCard(id: "c", input: {title: "t", hidden: "h"}) { id } }')
    await admin.data('mutation { updateCard(id: "c", patch: {title: "u", hidden: "i"}) { id } }')
    merged = await clerk.data(
        'mutation { updateCard(id: "c", patch: {title: "mine", hidden: "mine"}, expectedVersion: 1)'
        ' { changedFields resolution { applied kept } } }')
    assert merged["updateCard"]["resolution"] == {"applied": [], "kept": ["title"]}
    stored = await admin.data('query { card(id: "c") { title hidden } }')
    assert stored["card"] == {"title": "u", "hidden": "i"}  # the server's, both kept
