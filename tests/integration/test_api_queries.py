"""Reading through GraphQL: one document by id, filtered and ordered lists, cursor pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import RunningServer
from tests.support import GraphQLClient

PRODUCT_FIELDS = "id version createdAt updatedAt expiresAt sku name priceCents tags"
ORDER_FIELDS = ("id version createdAt updatedAt expiresAt customer items { sku qty } status note "
                "totalCents rejectReason")

CREATE_PRODUCT = f"""mutation($id: ID, $input: ProductInput!) {{
  createProduct(id: $id, input: $input) {{ document {{ {PRODUCT_FIELDS} }} }} }}"""
UPDATE_PRODUCT = f"""mutation($id: ID!, $patch: ProductPatch!) {{
  updateProduct(id: $id, patch: $patch) {{ document {{ {PRODUCT_FIELDS} }} }} }}"""
CREATE_ORDER = f"""mutation($id: ID, $input: OrderInput!) {{
  createOrder(id: $id, input: $input) {{ document {{ {ORDER_FIELDS} }} }} }}"""
DELETE_ORDER = """mutation($id: ID!) { deleteOrder(id: $id) { version } }"""

PRODUCT = f"""query($id: ID!) {{ product(id: $id) {{ {PRODUCT_FIELDS} }} }}"""
ORDER = f"""query($id: ID!) {{ order(id: $id) {{ {ORDER_FIELDS} }} }}"""
PRODUCTS = """query($where: ProductWhere, $orderBy: [ProductOrder!], $first: Int, $after: String) {
  products(where: $where, orderBy: $orderBy, first: $first, after: $after) {
    nodes { id } edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }"""
ORDERS = """query($where: OrderWhere, $orderBy: [OrderOrder!], $first: Int, $after: String) {
  orders(where: $where, orderBy: $orderBy, first: $first, after: $after) {
    nodes { id } edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }"""

# Ids sort a < b < c < d < e, so the default (id) order is the alphabet.
PRODUCT_SEED: list[tuple[str, dict[str, Any]]] = [
    ("p-a", {"sku": "A-100", "name": "apple", "priceCents": 100, "tags": ["fruit", "red"]}),
    ("p-b", {"sku": "A-200", "name": "banan", "priceCents": 200, "tags": ["fruit", "yellow"]}),
    ("p-c", {"sku": "B-100", "name": "cherry", "priceCents": 300,
             "tags": ["fruit", "red", "small"]}),
    ("p-d", {"sku": "B-200", "name": "pineapple", "priceCents": 200}),  # tags default to []
    ("p-e", {"sku": "C_%", "name": "nutmeg", "priceCents": 50, "tags": ["spice"]}),
]
ALL_PRODUCTS = ["p-a", "p-b", "p-c", "p-d", "p-e"]

ORDER_SEED: list[tuple[str, dict[str, Any]]] = [
    ("o-1", {"customer": "ann", "items": [], "status": "NEW", "note": "rush"}),
    ("o-2", {"customer": "bob", "items": [{"sku": "A-100", "qty": 1}], "status": "PRICED"}),
    ("o-3", {"customer": "ann", "items": [], "status": "REJECTED", "note": "fraud"}),
    ("o-4", {"customer": "cid", "items": [], "status": "SHIPPED"}),
    ("o-5", {"customer": "bob", "items": [], "note": "gift"}),  # status defaults to NEW
]
ALL_ORDERS = ["o-1", "o-2", "o-3", "o-4", "o-5"]


async def seed_products(client: GraphQLClient) -> dict[str, dict[str, Any]]:
    """The seed products (p-b updated once, so at version 2), by id."""
    docs: dict[str, dict[str, Any]] = {}
    for doc_id, fields in PRODUCT_SEED:
        created = await client.data(CREATE_PRODUCT, {"id": doc_id, "input": fields})
        docs[doc_id] = created["createProduct"]["document"]
    updated = await client.data(UPDATE_PRODUCT, {"id": "p-b", "patch": {"name": "banana"}})
    docs["p-b"] = updated["updateProduct"]["document"]
    assert docs["p-b"]["version"] == 2
    return docs


async def seed_orders(client: GraphQLClient) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for doc_id, fields in ORDER_SEED:
        created = await client.data(CREATE_ORDER, {"id": doc_id, "input": fields})
        docs[doc_id] = created["createOrder"]["document"]
    return docs


async def product_ids(client: GraphQLClient, where: dict[str, Any] | None = None,
                      order_by: list[dict[str, Any]] | None = None) -> list[str]:
    data = await client.data(PRODUCTS, {"where": where, "orderBy": order_by, "first": 100})
    return [n["id"] for n in data["products"]["nodes"]]


async def order_ids(client: GraphQLClient, where: dict[str, Any] | None = None,
                    order_by: list[dict[str, Any]] | None = None) -> list[str]:
    data = await client.data(ORDERS, {"where": where, "orderBy": order_by, "first": 100})
    return [n["id"] for n in data["orders"]["nodes"]]


def others(*excluded: str, among: list[str] = ALL_PRODUCTS) -> list[str]:
    return [i for i in among if i not in excluded]


# ---- one document by id -------------------------------------------------------------------


async def test_one_by_id_present_missing_deleted(client: GraphQLClient) -> None:
    products = await seed_products(client)
    got = (await client.data(PRODUCT, {"id": "p-c"}))["product"]
    assert got == products["p-c"]
    assert got["sku"] == "B-100" and got["priceCents"] == 300
    assert got["tags"] == ["fruit", "red", "small"]
    assert (await client.data(PRODUCT, {"id": "p-d"}))["product"]["tags"] == []
    assert (await client.data(PRODUCT, {"id": "no-such-product"})) == {"product": None}
    # Same id, other model: ids are per model.
    assert (await client.data(ORDER, {"id": "p-c"})) == {"order": None}

    await seed_orders(client)
    order = (await client.data(ORDER, {"id": "o-2"}))["order"]
    assert order["customer"] == "bob" and order["items"] == [{"sku": "A-100", "qty": 1}]
    assert order["status"] == "PRICED" and order["version"] == 1
    await client.data(DELETE_ORDER, {"id": "o-2"})
    assert (await client.data(ORDER, {"id": "o-2"})) == {"order": None}
    assert await order_ids(client) == others("o-2", among=ALL_ORDERS)


EXPIRE = """mutation($id: ID!, $at: DateTime!) {
  updateOrder(id: $id, patch: {expiresAt: $at}) { version } }"""
EXPIRE_PRODUCT = """mutation($id: ID!, $at: DateTime!) {
  updateProduct(id: $id, patch: {expiresAt: $at}) { version } }"""


async def test_expired_documents_are_gone_from_reads(client: GraphQLClient) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    refused = await client.error(CREATE_ORDER, {"id": "o-born-dead", "input": {
        "customer": "ann", "items": [], "expiresAt": past}})
    assert refused["extensions"]["code"] == "BAD_USER_INPUT"
    for doc_id in ("o-expired", "o-kept"):
        kept = (await client.data(CREATE_ORDER, {"id": doc_id, "input": {
            "customer": "ann", "items": [], "expiresAt": future}}))["createOrder"]["document"]
        assert datetime.fromisoformat(kept["expiresAt"]) == datetime.fromisoformat(future)
    await client.data(EXPIRE, {"id": "o-expired", "at": past})
    await client.data(CREATE_PRODUCT, {"id": "p-expired", "input": {
        "sku": "X", "name": "x", "priceCents": 1}})
    await client.data(EXPIRE_PRODUCT, {"id": "p-expired", "at": past})

    assert (await client.data(ORDER, {"id": "o-expired"})) == {"order": None}
    assert (await client.data(ORDER, {"id": "o-kept"}))["order"]["id"] == "o-kept"
    assert (await client.data(PRODUCT, {"id": "p-expired"})) == {"product": None}
    assert await order_ids(client) == ["o-kept"]
    assert await order_ids(client, {"customer": {"eq": "ann"}}) == ["o-kept"]
    assert await product_ids(client) == []


# ---- filters ------------------------------------------------------------------------------

STRING_AND_INT_CASES: list[tuple[dict[str, Any], list[str]]] = [
    ({"sku": {"eq": "A-100"}}, ["p-a"]),
    ({"sku": {"ne": "A-100"}}, others("p-a")),
    ({"name": {"lt": "banana"}}, ["p-a"]),
    ({"name": {"le": "banana"}}, ["p-a", "p-b"]),
    ({"name": {"gt": "nutmeg"}}, ["p-d"]),
    ({"name": {"ge": "nutmeg"}}, ["p-d", "p-e"]),
    ({"name": {"in": ["apple", "cherry", "kiwi"]}}, ["p-a", "p-c"]),
    ({"name": {"notIn": ["apple", "cherry"]}}, ["p-b", "p-d", "p-e"]),
    ({"name": {"between": ["banana", "cherry"]}}, ["p-b", "p-c"]),  # inclusive both ends
    ({"name": {"contains": "apple"}}, ["p-a", "p-d"]),
    ({"name": {"contains": "APPLE"}}, []),  # case-sensitive
    ({"name": {"beginsWith": "apple"}}, ["p-a"]),
    ({"sku": {"beginsWith": "A-"}}, ["p-a", "p-b"]),
    # LIKE wildcards are literal characters.
    ({"sku": {"beginsWith": "C_"}}, ["p-e"]),
    ({"sku": {"beginsWith": "A_"}}, []),
    ({"sku": {"contains": "%"}}, ["p-e"]),
    ({"sku": {"contains": "_"}}, ["p-e"]),
    ({"priceCents": {"eq": 200}}, ["p-b", "p-d"]),
    ({"priceCents": {"ne": 200}}, ["p-a", "p-c", "p-e"]),
    ({"priceCents": {"lt": 200}}, ["p-a", "p-e"]),
    ({"priceCents": {"le": 200}}, ["p-a", "p-b", "p-d", "p-e"]),
    ({"priceCents": {"gt": 200}}, ["p-c"]),
    ({"priceCents": {"ge": 200}}, ["p-b", "p-c", "p-d"]),
    ({"priceCents": {"in": [100, 300, 999]}}, ["p-a", "p-c"]),
    ({"priceCents": {"notIn": [100, 300]}}, ["p-b", "p-d", "p-e"]),
    ({"priceCents": {"between": [100, 200]}}, ["p-a", "p-b", "p-d"]),
    ({"priceCents": {"gt": 50, "lt": 300}}, ["p-a", "p-b", "p-d"]),  # ops in one filter: and
    # list membership, not substring
    ({"tags": {"contains": "red"}}, ["p-a", "p-c"]),
    ({"tags": {"contains": "small"}}, ["p-c"]),
    ({"tags": {"contains": "fru"}}, []),
    ({"tags": {"contains": "fruit"}}, ["p-a", "p-b", "p-c"]),
]


async def test_product_filters(client: GraphQLClient) -> None:
    docs = await seed_products(client)
    created = {i: docs[i]["createdAt"] for i in ALL_PRODUCTS}
    groups: dict[str, list[tuple[dict[str, Any], list[str]]]] = {
        "user": STRING_AND_INT_CASES,
        "meta": [
            ({"id": {"eq": "p-c"}}, ["p-c"]),
            ({"id": {"ne": "p-c"}}, others("p-c")),
            ({"id": {"lt": "p-b"}}, ["p-a"]),
            ({"id": {"le": "p-b"}}, ["p-a", "p-b"]),
            ({"id": {"gt": "p-d"}}, ["p-e"]),
            ({"id": {"ge": "p-d"}}, ["p-d", "p-e"]),
            ({"id": {"in": ["p-a", "p-e", "zzz"]}}, ["p-a", "p-e"]),
            ({"id": {"notIn": ["p-a", "p-e"]}}, ["p-b", "p-c", "p-d"]),
            ({"id": {"between": ["p-b", "p-d"]}}, ["p-b", "p-c", "p-d"]),
            ({"id": {"contains": "-c"}}, ["p-c"]),
            ({"id": {"beginsWith": "p-"}}, ALL_PRODUCTS),
            ({"id": {"beginsWith": "-"}}, []),
            ({"version": {"eq": 2}}, ["p-b"]),
            ({"version": {"ne": 2}}, others("p-b")),
            ({"version": {"gt": 1}}, ["p-b"]),
            ({"version": {"ge": 1}}, ALL_PRODUCTS),
            ({"version": {"lt": 2}}, others("p-b")),
            ({"version": {"le": 1}}, others("p-b")),
            ({"version": {"in": [2, 3]}}, ["p-b"]),
            ({"version": {"notIn": [2]}}, others("p-b")),
            ({"version": {"between": [2, 5]}}, ["p-b"]),
            ({"createdAt": {"eq": created["p-c"]}}, ["p-c"]),
            ({"createdAt": {"ne": created["p-c"]}}, others("p-c")),
            ({"createdAt": {"lt": created["p-b"]}}, ["p-a"]),
            ({"createdAt": {"le": created["p-b"]}}, ["p-a", "p-b"]),
            ({"createdAt": {"gt": created["p-d"]}}, ["p-e"]),
            ({"createdAt": {"ge": created["p-d"]}}, ["p-d", "p-e"]),
            ({"createdAt": {"in": [created["p-a"], created["p-e"]]}}, ["p-a", "p-e"]),
            ({"createdAt": {"notIn": [created["p-a"], created["p-e"]]}}, ["p-b", "p-c", "p-d"]),
            ({"createdAt": {"between": [created["p-b"], created["p-d"]]}},
             ["p-b", "p-c", "p-d"]),
            # p-b was updated after every create
            ({"updatedAt": {"gt": created["p-e"]}}, ["p-b"]),
            ({"expiresAt": {"eq": None}}, ALL_PRODUCTS),  # Product has no TTL
        ],
        "logic": [
            ({"and": [{"priceCents": {"ge": 100}}, {"tags": {"contains": "red"}}]},
             ["p-a", "p-c"]),
            ({"and": [{"priceCents": {"ge": 200}}, {"tags": {"contains": "red"}}]}, ["p-c"]),
            ({"or": [{"sku": {"eq": "A-100"}}, {"name": {"eq": "nutmeg"}}]}, ["p-a", "p-e"]),
            ({"not": {"tags": {"contains": "fruit"}}}, ["p-d", "p-e"]),
            ({"not": {"or": [{"priceCents": {"lt": 150}}, {"priceCents": {"gt": 250}}]}},
             ["p-b", "p-d"]),
            ({"or": [{"and": [{"priceCents": {"eq": 200}}, {"name": {"beginsWith": "pine"}}]},
                     {"id": {"eq": "p-a"}}]}, ["p-a", "p-d"]),
            ({"priceCents": {"eq": 200}, "not": {"name": {"eq": "banana"}}}, ["p-d"]),
            ({"not": {"not": {"sku": {"beginsWith": "B"}}}}, ["p-c", "p-d"]),
            ({"and": [{"version": {"eq": 1}}, {"or": [{"tags": {"contains": "yellow"}},
                                                       {"tags": {"contains": "spice"}}]}]},
             ["p-e"]),
            ({"and": []}, ALL_PRODUCTS),
            ({"or": []}, []),
        ],
    }
    for group, cases in groups.items():
        for where, expected in cases:
            assert await product_ids(client, where) == expected, (group, where)


async def test_order_filters_on_enum_and_nullable_fields(client: GraphQLClient) -> None:
    docs = await seed_orders(client)
    assert docs["o-5"]["status"] == "NEW"  # the default is stored and filterable
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"status": {"eq": "NEW"}}, ["o-1", "o-5"]),
        ({"status": {"ne": "NEW"}}, ["o-2", "o-3", "o-4"]),
        ({"status": {"in": ["PRICED", "SHIPPED"]}}, ["o-2", "o-4"]),
        ({"status": {"notIn": ["NEW", "REJECTED"]}}, ["o-2", "o-4"]),
        ({"or": [{"status": {"eq": "REJECTED"}},
                 {"and": [{"status": {"eq": "NEW"}}, {"customer": {"eq": "bob"}}]}]},
         ["o-3", "o-5"]),
        ({"not": {"status": {"in": ["NEW", "PRICED"]}}}, ["o-3", "o-4"]),
        ({"customer": {"eq": "ann"}, "status": {"ne": "REJECTED"}}, ["o-1"]),
        # null checks: eq/ne null test for a missing value
        ({"note": {"eq": None}}, ["o-2", "o-4"]),
        ({"note": {"ne": None}}, ["o-1", "o-3", "o-5"]),
        ({"totalCents": {"eq": None}}, ALL_ORDERS),
        # a null field never matches a comparison, and NOT is plain negation
        ({"note": {"ne": "rush"}}, ["o-2", "o-3", "o-4", "o-5"]),
        ({"note": {"lt": "zzz"}}, ["o-1", "o-3", "o-5"]),
        ({"not": {"note": {"lt": "zzz"}}}, ["o-2", "o-4"]),
        ({"note": {"notIn": ["rush"]}}, ["o-2", "o-3", "o-4", "o-5"]),
        ({"expiresAt": {"gt": docs["o-1"]["createdAt"]}}, ALL_ORDERS),  # the TTL
    ]
    for where, expected in cases:
        assert await order_ids(client, where) == expected, where


# ---- ordering -----------------------------------------------------------------------------


async def test_order_by(client: GraphQLClient) -> None:
    await seed_products(client)
    cases: list[tuple[list[dict[str, Any]], list[str]]] = [
        ([], ALL_PRODUCTS),
        ([{"field": "PRICE_CENTS", "direction": "ASC"}], ["p-e", "p-a", "p-b", "p-d", "p-c"]),
        # ties (p-b, p-d at 200) are always broken by id ascending
        ([{"field": "PRICE_CENTS", "direction": "DESC"}], ["p-c", "p-b", "p-d", "p-a", "p-e"]),
        ([{"field": "PRICE_CENTS", "direction": "DESC"}, {"field": "NAME", "direction": "DESC"}],
         ["p-c", "p-d", "p-b", "p-a", "p-e"]),
        ([{"field": "NAME"}], ["p-a", "p-b", "p-c", "p-e", "p-d"]),  # direction defaults to ASC
        ([{"field": "NAME", "direction": "DESC"}], ["p-d", "p-e", "p-c", "p-b", "p-a"]),
        ([{"field": "SKU", "direction": "DESC"}], ["p-e", "p-d", "p-c", "p-b", "p-a"]),
        ([{"field": "ID", "direction": "DESC"}], ["p-e", "p-d", "p-c", "p-b", "p-a"]),
        ([{"field": "CREATED_AT", "direction": "DESC"}], ["p-e", "p-d", "p-c", "p-b", "p-a"]),
        ([{"field": "UPDATED_AT", "direction": "DESC"}], ["p-b", "p-e", "p-d", "p-c", "p-a"]),
        ([{"field": "VERSION", "direction": "DESC"}], ["p-b", "p-a", "p-c", "p-d", "p-e"]),
        ([{"field": "VERSION", "direction": "ASC"}], ["p-a", "p-c", "p-d", "p-e", "p-b"]),
    ]
    for order_by, expected in cases:
        assert await product_ids(client, None, order_by) == expected, order_by
    # filtered and ordered at once
    assert await product_ids(client, {"tags": {"contains": "fruit"}},
                             [{"field": "PRICE_CENTS", "direction": "DESC"}]) == [
        "p-c", "p-b", "p-a"]


async def test_order_by_enum_and_nullable(client: GraphQLClient) -> None:
    await seed_orders(client)
    cases: list[tuple[list[dict[str, Any]], list[str]]] = [
        # enum values sort by name: NEW < PRICED < REJECTED < SHIPPED; ties by id
        ([{"field": "STATUS"}], ["o-1", "o-5", "o-2", "o-3", "o-4"]),
        ([{"field": "STATUS", "direction": "DESC"}], ["o-4", "o-3", "o-2", "o-1", "o-5"]),
        # nulls last ascending, first descending
        ([{"field": "NOTE"}], ["o-3", "o-5", "o-1", "o-2", "o-4"]),
        ([{"field": "NOTE", "direction": "DESC"}], ["o-2", "o-4", "o-1", "o-5", "o-3"]),
        ([{"field": "CUSTOMER", "direction": "DESC"}, {"field": "STATUS", "direction": "DESC"}],
         ["o-4", "o-2", "o-5", "o-3", "o-1"]),
    ]
    for order_by, expected in cases:
        assert await order_ids(client, None, order_by) == expected, order_by


# ---- pages --------------------------------------------------------------------------------


async def walk(client: GraphQLClient, query: str, key: str, first: int,
               order_by: list[dict[str, Any]] | None,
               where: dict[str, Any] | None = None) -> list[list[str]]:
    """Every page of a list query, checking each page's pageInfo on the way."""
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        conn = (await client.data(query, {"where": where, "orderBy": order_by,
                                          "first": first, "after": after}))[key]
        ids = [n["id"] for n in conn["nodes"]]
        assert [e["node"]["id"] for e in conn["edges"]] == ids
        assert conn["pageInfo"]["endCursor"] == (conn["edges"][-1]["cursor"] if ids else None)
        pages.append(ids)
        if not conn["pageInfo"]["hasNextPage"]:
            return pages
        assert len(ids) == first, conn  # only a full page can have a next one
        after = conn["pageInfo"]["endCursor"]
        assert len(pages) < 20, "paging does not end"


PAGE_ORDERINGS: list[list[dict[str, Any]] | None] = [
    None,
    [{"field": "PRICE_CENTS", "direction": "DESC"}],
    [{"field": "PRICE_CENTS", "direction": "ASC"}, {"field": "CREATED_AT", "direction": "DESC"}],
    [{"field": "NAME", "direction": "DESC"}, {"field": "VERSION"}],
]


async def test_cursor_pages_cover_everything_once(client: GraphQLClient) -> None:
    await seed_products(client)
    for extra in range(3):  # more ties at 200
        await client.data(CREATE_PRODUCT, {"id": f"p-tie{extra}", "input": {
            "sku": f"T{extra}", "name": "tie", "priceCents": 200}})
    for order_by in PAGE_ORDERINGS:
        await check_pages(client, order_by)


async def check_pages(client: GraphQLClient, order_by: list[dict[str, Any]] | None) -> None:
    everything = await product_ids(client, None, order_by)
    assert len(everything) == 8
    for first in (1, 2, 3, 8):
        pages = await walk(client, PRODUCTS, "products", first, order_by)
        assert [i for page in pages for i in page] == everything, (order_by, first, pages)
        assert all(len(page) == first for page in pages[:-1])
    # exactly full pages: the last full page says there is no next one
    pages = await walk(client, PRODUCTS, "products", 4, order_by)
    assert [len(p) for p in pages] == [4, 4]
    # a filtered walk
    fruit = await product_ids(client, {"tags": {"contains": "fruit"}}, order_by)
    assert sorted(fruit) == ["p-a", "p-b", "p-c"]
    pages = await walk(client, PRODUCTS, "products", 2, order_by, {"tags": {"contains": "fruit"}})
    assert [i for page in pages for i in page] == fruit


async def test_cursor_pages_over_nulls(client: GraphQLClient) -> None:
    await seed_orders(client)
    for direction in ("ASC", "DESC"):
        order_by = [{"field": "NOTE", "direction": direction}]
        everything = await order_ids(client, None, order_by)
        for first in (1, 2, 3):
            pages = await walk(client, ORDERS, "orders", first, order_by)
            assert [i for page in pages for i in page] == everything, (direction, first)


async def test_page_size_limits(server: RunningServer, client: GraphQLClient) -> None:
    await seed_products(client)
    limit = server.settings.max_page_size
    error = await client.error(PRODUCTS, {"first": limit + 1})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == "first"
    error = await client.error(PRODUCTS, {"first": -1})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    data = (await client.data(PRODUCTS, {"first": limit}))["products"]
    assert len(data["nodes"]) == 5 and data["pageInfo"]["hasNextPage"] is False
    data = (await client.data(PRODUCTS, {"first": 0}))["products"]
    assert data["nodes"] == [] and data["pageInfo"] == {"hasNextPage": True, "endCursor": None}


async def test_foreign_or_garbage_cursor_is_invalid(client: GraphQLClient) -> None:
    await seed_products(client)
    by_price = [{"field": "PRICE_CENTS"}]
    cursor = (await client.data(PRODUCTS, {"orderBy": by_price, "first": 2})
              )["products"]["pageInfo"]["endCursor"]
    assert cursor
    for after, order_by in [
        ("garbage!!", by_price),
        ("", by_price),
        ("bm90IGpzb24", by_price),  # base64 of "not json"
        (cursor, None),  # a cursor of another ordering (one key fewer)
        (cursor, [{"field": "NAME"}]),  # same arity, an int where a string belongs
    ]:
        error = await client.error(PRODUCTS, {"orderBy": order_by, "first": 2, "after": after})
        assert error["extensions"]["code"] == "INVALID_CURSOR", (after, order_by, error)
        assert error["path"] == ["products"]
    # the cursor still works where it belongs
    rest = (await client.data(PRODUCTS, {"orderBy": by_price, "first": 10, "after": cursor}))
    assert [n["id"] for n in rest["products"]["nodes"]] == ["p-b", "p-d", "p-c"]


async def test_graphiql_and_its_assets_are_served_by_the_api(
        settings: Settings, demo_models: list[ModelSpec]) -> None:
    import httpx

    from statesync.graphiql import ASSETS, PREFIX, VENDOR
    from tests.conftest import serve

    async with serve(settings.model_copy(update={"graphiql": True}), demo_models) as server, \
               httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        page = await http.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200 and "graphiql.min.js" in page.text
        assert "unpkg.com" not in page.text
        for name in ASSETS.values():
            asset = await http.get(PREFIX + name)
            assert asset.status_code == 200, name
            assert asset.content == (VENDOR / name).read_bytes(), name
