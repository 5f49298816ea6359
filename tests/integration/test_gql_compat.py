"""A stock GraphQL client, gql, speaks to statesync: subscriptions over graphql-transport-ws
and mutations over HTTP, with no statesync code anywhere in the client's path."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from tests.conftest import RunningServer
from tests.support import WAIT

WATCH = """subscription($where: OrderWhere) { orders(where: $where) {
  op id version mutationId document { customer note } documents { id } } }"""
CREATE = """mutation($input: OrderInput!, $id: ID, $mutationId: ID) {
  createOrder(input: $input, id: $id, mutationId: $mutationId) { op id version replayed } }"""


async def test_gql_subscribes_commits_and_receives_the_change(server: RunningServer) -> None:
    # gql names graphql-transport-ws GRAPHQLWS_SUBPROTOCOL (graphql-ws is the Apollo one).
    websocket = WebsocketsTransport(url=server.ws_url,
                                    subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
    http = HTTPXAsyncTransport(url=f"{server.base_url}/graphql")
    async with Client(transport=websocket) as watching, Client(transport=http) as committing:
        assert websocket.subprotocol == "graphql-transport-ws"
        watch = GraphQLRequest(WATCH, variable_values={"where": {"customer": {"eq": "ann"}}})
        changes = watching.subscribe(watch)
        async with contextlib.aclosing(changes):
            snapshot = (await asyncio.wait_for(anext(changes), WAIT))["orders"]
            assert (snapshot["op"], snapshot["documents"]) == ("SNAPSHOT", [])

            variables = {"input": {"customer": "ann", "items": [{"sku": "tea", "qty": 2}]},
                         "id": "o1", "mutationId": "gql-1"}
            for replayed in (False, True):
                result = await committing.execute(GraphQLRequest(CREATE, variable_values=variables))
                assert result["createOrder"] == {"op": "CREATED", "id": "o1", "version": 1,
                                                 "replayed": replayed}
            await committing.execute(GraphQLRequest(CREATE, variable_values={
                **variables, "input": {"customer": "bob", "items": []}, "id": "o2",
                "mutationId": "gql-2"}))  # not watched
            await committing.execute(GraphQLRequest(CREATE, variable_values={
                **variables, "input": {"customer": "ann", "items": []}, "id": "o3",
                "mutationId": "gql-3"}))

            created = (await asyncio.wait_for(anext(changes), WAIT))["orders"]
            assert created == {"op": "CREATED", "id": "o1", "version": 1, "mutationId": "gql-1",
                               "document": {"customer": "ann", "note": None}, "documents": None}
            following = (await asyncio.wait_for(anext(changes), WAIT))["orders"]
            assert (following["id"], following["mutationId"]) == ("o3", "gql-3")


@pytest.mark.parametrize("subprotocols", [
    None, [WebsocketsTransport.APOLLO_SUBPROTOCOL], [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
], ids=["gql-default", "legacy-graphql-ws", "graphql-transport-ws"])
async def test_gql_websocket_transports_run_queries_and_mutations(
        server: RunningServer, subprotocols: list[str] | None) -> None:
    """Over whichever protocol gql's WebsocketsTransport speaks (its default, or either one
    asked for), queries and mutations run on the socket too, not only subscriptions."""
    websocket = WebsocketsTransport(url=server.ws_url, subprotocols=subprotocols)
    async with Client(transport=websocket) as session:
        if subprotocols:
            assert websocket.subprotocol == subprotocols[0]
        variables = {"input": {"customer": "ann", "items": []}, "id": "w1", "mutationId": "ws-1"}
        created = await session.execute(GraphQLRequest(CREATE, variable_values=variables))
        assert created["createOrder"] == {"op": "CREATED", "id": "w1", "version": 1,
                                          "replayed": False}
        read = await session.execute(GraphQLRequest('{ order(id: "w1") { customer version } }'))
        assert read == {"order": {"customer": "ann", "version": 1}}
        refused = GraphQLRequest('mutation { updateOrder(id: "w1", patch: {note: "x"}, '
                                 "expectedVersion: 7) { version } }")
        with pytest.raises(TransportQueryError) as conflict:
            await session.execute(refused)
        assert conflict.value.errors is not None
        assert conflict.value.errors[0]["extensions"]["code"] == "CONFLICT"
