"""Rules on every read path: another user's document, or a field the role may not read,
never appears in a query, a page, a snapshot, a live change or a replay."""

from __future__ import annotations

from typing import Any

import pytest

from tests.access.conftest import ADMIN_SECRET, As, Clients, Tokens
from tests.conftest import RunningServer
from tests.support import Subscriptions

ORDER = "query($id: ID!) { order(id: $id) { id customer } }"
ORDERS = """query($after: String) { orders(first: 1, after: $after) {
  nodes { id customer } pageInfo { hasNextPage endCursor } } }"""
CREATE_ORDER = 'mutation($id: ID) { createOrder(id: $id, input: {items: [{sku: "tea", qty: 1}]}) { id } }'
NOTE = "mutation($id: ID, $input: NoteInput!) { createNote(id: $id, input: $input) { id version } }"
PUBLISH = "mutation($id: ID!, $p: Boolean) { updateNote(id: $id, patch: {published: $p}) { version } }"


async def two_customers(as_: Clients) -> tuple[As, As]:
    ann, bob = as_("ann", "customer"), as_("bob", "customer")
    for n in range(3):
        await ann.data(CREATE_ORDER, {"id": f"ann-{n}"})
    for n in range(2):
        await bob.data(CREATE_ORDER, {"id": f"bob-{n}"})
    return ann, bob


async def test_get_and_pages_show_only_what_the_rule_allows(as_: Clients) -> None:
    ann, bob = await two_customers(as_)
    admin, nobody = as_(admin=True), as_()
    assert (await ann.data(ORDER, {"id": "ann-0"}))["order"] == {"id": "ann-0", "customer": "ann"}
    assert (await ann.data(ORDER, {"id": "bob-0"}))["order"] is None  # not a leak: as if absent
    assert (await admin.data(ORDER, {"id": "bob-0"}))["order"]["customer"] == "bob"
    assert await nobody.code(ORDER, {"id": "ann-0"}) == "FORBIDDEN"  # anonymous: no Order rule

    seen, after = [], None
    while True:  # every page of ann's list holds only ann's orders, and all of them
        page = (await ann.data(ORDERS, {"after": after}))["orders"]
        seen += [n["id"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["ann-0", "ann-1", "ann-2"]
    assert (await bob.data('{ orders(where: {customer: {eq: "ann"}}) { nodes { id } } }')) == {
        "orders": {"nodes": []}}
    everything = await admin.data("{ orders(first: 10) { nodes { id } } }")
    assert len(everything["orders"]["nodes"]) == 5


async def test_the_catalog_is_for_everyone_and_written_by_the_admin(as_: Clients) -> None:
    admin, ann, nobody = as_(admin=True), as_("ann", "customer"), as_()
    await admin.data('mutation { createProduct(id: "tea", input: {sku: "tea", name: "Tea", '
                     "priceCents: 450}) { id } }")
    for reader in (ann, nobody):
        assert (await reader.data('{ product(id: "tea") { name priceCents } }')) == {
            "product": {"name": "Tea", "priceCents": 450}}
        assert await reader.code('mutation { updateProduct(id: "tea", patch: {priceCents: 1}) '
                                 "{ id } }") == "FORBIDDEN"


@pytest.mark.parametrize(("what", "query"), [
    ("a hidden field", '{ note(id: "n1") { text secret } }'),
    ("a hidden field in a fragment", '{ note(id: "n1") { ...F } } fragment F on Note { secret }'),
    ("a hidden field through a page", "{ notes { edges { node { secret } } } }"),
    ("a hidden field in a filter", '{ notes(where: {secret: {eq: "x"}}) { nodes { id } } }'),
    ("a hidden field in an order", "{ notes(orderBy: [{field: SECRET}]) { nodes { id } } }"),
    ("a hidden field through a commit", 'mutation { updateNote(id: "n1", patch: {text: "t"}) '
                                        "{ document { secret } } }"),
    ("the admin's event list", "{ events { id } }"),
    ("the admin's deliveries", "{ deliveries { handler } }"),
    ("the service's state", "{ service { relayActive } }"),
    ("introspection", "{ __schema { queryType { name } } }"),
])
async def test_what_a_role_may_not_select_is_forbidden_by_name(as_: Clients, what: str,
                                                                query: str) -> None:
    reader = as_("rita", "reader")
    body = await reader.body(query)
    assert body.get("data") is None, (what, body)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", (what, body)
    assert "Traceback" not in str(body)


async def test_introspection_and_suggestions_for_the_admin(as_: Clients) -> None:
    admin, reader = as_(admin=True), as_("rita", "reader")
    assert (await admin.data("{ __schema { queryType { name } } }"))["__schema"]["queryType"] == {
        "name": "Query"}
    assert (await reader.data("{ __typename }")) == {"__typename": "Query"}  # not introspection
    typo = await reader.body('{ nots { nodes { id } } }')
    assert "Did you mean" not in typo["errors"][0]["message"]


async def notes_of_ada(as_: Clients) -> tuple[As, As]:
    ada, rita = as_("ada", "author"), as_("rita", "reader")
    await ada.data(NOTE, {"id": "n1", "input": {"text": "hello", "secret": "s3cret", "published": True}})
    await ada.data(NOTE, {"id": "n2", "input": {"text": "draft", "secret": "hidden"}})
    return ada, rita


async def test_live_changes_follow_documents_in_and_out_of_the_rule(api: RunningServer,
                                                                    as_: Clients, token: Tokens) -> None:
    ada, _ = await notes_of_ada(as_)
    headers = {"authorization": f"Bearer {token('rita', 'reader')}"}
    async with Subscriptions.connect(api.ws_url, {"headers": headers}) as subs:
        many = await subs.subscribe("subscription { notes { op id cursor changedFields "
                                    "documents { id text } document { id text published } } }")
        one = await subs.subscribe('subscription { note(id: "n2") { op version document { text } } }')
        snapshot = await subs.next(many)
        assert [d["id"] for d in snapshot["documents"]] == ["n1"]  # n2 is unpublished
        # not even its version: to rita it does not exist
        assert (await subs.next(one)) == {"op": "SNAPSHOT", "version": None, "document": None}

        await ada.data(PUBLISH, {"id": "n2", "p": True})  # n2 enters rita's view
        entered = await subs.next(many)
        assert (entered["op"], entered["id"], entered["document"]["text"]) == ("UPDATED", "n2", "draft")
        assert entered["changedFields"] == ["published"]
        assert (await subs.next(one))["op"] == "UPDATED"

        await ada.data('mutation { updateNote(id: "n2", patch: {secret: "new secret"}) { version } }')
        secret_change = await subs.next(many)  # she sees that it changed, not what (nor which)
        assert secret_change["changedFields"] == [] and "secret" not in str(secret_change)
        await subs.next(one)

        await ada.data(PUBLISH, {"id": "n2", "p": False})  # and leaves it
        left = await subs.next(many)
        assert (left["op"], left["id"], left["document"]) == ("REMOVED", "n2", None)
        assert (await subs.next(one))["op"] == "REMOVED"
        await ada.data('mutation { updateNote(id: "n2", patch: {text: "unseen"}) { version } }')
        await ada.data('mutation { updateNote(id: "n1", patch: {text: "seen"}) { version } }')
        after = await subs.next(many)  # n2's edit, outside her rule, never arrives
        assert (after["op"], after["id"], after["document"]["text"]) == ("UPDATED", "n1", "seen")


async def test_a_replay_obeys_the_rule_too(api: RunningServer, as_: Clients, token: Tokens) -> None:
    ada, _ = await notes_of_ada(as_)
    headers = {"authorization": f"Bearer {token('rita', 'reader')}"}
    async with Subscriptions.connect(api.ws_url, {"headers": headers}) as subs:
        op = await subs.subscribe("subscription { notes { op cursor } }")
        cursor = (await subs.next(op))["cursor"]
        await subs.complete(op)
    await ada.data(PUBLISH, {"id": "n2", "p": True})
    await ada.data('mutation { updateNote(id: "n2", patch: {secret: "x"}) { version } }')
    await ada.data(PUBLISH, {"id": "n2", "p": False})
    await ada.data(NOTE, {"id": "n3", "input": {"text": "private"}})
    await ada.data(PUBLISH, {"id": "n1", "p": False})
    async with Subscriptions.connect(api.ws_url, {"headers": headers}) as subs:
        op = await subs.subscribe("subscription($since: String) { notes(since: $since) "
                                  "{ op id changedFields } }", {"since": cursor})
        replayed = [await subs.next(op) for _ in range(4)]
    assert replayed == [
        {"op": "UPDATED", "id": "n2", "changedFields": ["published"]},
        {"op": "UPDATED", "id": "n2", "changedFields": []},
        {"op": "REMOVED", "id": "n2", "changedFields": ["published"]},
        {"op": "REMOVED", "id": "n1", "changedFields": ["published"]},  # n3 never appears
    ]


async def test_a_claim_in_a_rule(as_: Clients) -> None:
    admin = as_(admin=True)
    for n, org in enumerate(("acme", "acme", "globex")):
        await admin.data(NOTE, {"id": f"o{n}", "input": {"owner": "x", "text": "t", "org": org}})
    acme = as_("mia", "member", **{"x-hasura-org-id": "acme"})
    nobody_org = as_("max", "member")  # no such claim: the rule matches nothing
    assert [n["id"] for n in (await acme.data("{ notes { nodes { id } } }"))["notes"]["nodes"]] == [
        "o0", "o1"]
    assert (await nobody_org.data("{ notes { nodes { id } } }"))["notes"]["nodes"] == []


async def test_events_of_documents_the_reader_can_see(api: RunningServer, as_: Clients,
                                                      token: Tokens) -> None:
    ann, bob = as_("ann", "customer"), as_("bob", "customer")
    created = await ann.data('mutation { createOrder(id: "o1", input: {items: [{sku: "tea", qty: 1}], '
                             'note: "ring"}) { eventIds } }')
    event_id = created["createOrder"]["eventIds"][0]
    query = ("query($id: ID!) { event(id: $id) { type key payload requestId "
             "deliveries { handler lastError } } }")
    mine = (await ann.data(query, {"id": event_id}))["event"]
    assert (mine["type"], mine["key"]) == ("Order.created", "o1")
    assert mine["payload"]["document"]["note"] == "ring"
    # The request id is kept (the admin sees it) but is the admin's: a role sees none.
    assert mine["requestId"] is None
    assert (await as_(admin=True).data(query, {"id": event_id}))["event"]["requestId"]
    assert (await bob.data(query, {"id": event_id}))["event"] is None
    async with Subscriptions.connect(api.ws_url, {
            "headers": {"authorization": f"Bearer {token('bob', 'customer')}"}}) as subs:
        op = await subs.subscribe("subscription($id: ID!) { event(id: $id) { type } }", {"id": event_id})
        message = await subs.message(op)
        assert message["type"] == "error" and message["payload"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_admin_secret_and_roles(api: RunningServer, as_: Clients) -> None:
    wrong = As(api.base_url, {"x-statesync-admin-secret": "nope"})
    try:
        response = await wrong.raw("{ orders { nodes { id } } }")
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    finally:
        await wrong.aclose()
    both = as_("ada", "author", also=["reader"], pick="reader")  # an allowed role, picked
    assert await both.code('{ note(id: "n1") { secret } }') == "FORBIDDEN"
    not_hers = as_("ada", "author", pick="editor")
    response = await not_hers.raw("{ __typename }")
    assert response.status_code == 403 and response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    admin_as = As(api.base_url, {"x-statesync-admin-secret": ADMIN_SECRET, "x-statesync-role": "reader"})
    try:  # the admin may look through a role's eyes
        assert await admin_as.code('{ note(id: "n1") { secret } }') == "FORBIDDEN"
    finally:
        await admin_as.aclose()


def _ids(page: dict[str, Any]) -> list[str]:
    return [n["id"] for n in page["nodes"]]


async def test_the_fast_path_never_hands_one_roles_frame_to_another(
        api: RunningServer, as_: Clients, token: Tokens) -> None:
    """The same query text, live, for the admin and for a reader: each change is rendered
    once per role, so what the reader may not know (which fields changed) stays out of her
    frame whichever of the two the hub serves first."""
    ada, _ = await notes_of_ada(as_)
    watch = "subscription { notes { op id changedFields } }"
    reader = {"headers": {"authorization": f"Bearer {token('rita', 'reader')}"}}
    admin = {"headers": {"x-statesync-admin-secret": ADMIN_SECRET}}
    async with Subscriptions.connect(api.ws_url, reader) as rita, \
               Subscriptions.connect(api.ws_url, admin) as root:
        hers, mine = await rita.subscribe(watch), await root.subscribe(watch)
        assert (await rita.next(hers))["op"] == (await root.next(mine))["op"] == "SNAPSHOT"
        for secret in ("one", "two", "three"):  # several changes: either may render first
            await ada.data('mutation($s: String) { updateNote(id: "n1", patch: {secret: $s}) '
                           "{ version } }", {"s": secret})
            assert (await root.next(mine))["changedFields"] == ["secret"]
            assert (await rita.next(hers))["changedFields"] == []
