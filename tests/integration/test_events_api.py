"""Eventing through GraphQL: watch an event settle, list events, emit custom events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from statesync.config import Settings
from statesync.models import ModelSpec
from tests.conftest import CeleryWorker, RunningServer, serve
from tests.support import GraphQLClient, Subscriptions

WATCH = """subscription($id: ID!) { event(id: $id) { type relayed settled
  deliveries { handler status attempts } } }"""
EMIT = """mutation($key: ID, $m: ID) { emitEvent(type: "Shop.audit", key: $key,
  payload: {who: "ann"}, mutationId: $m) { eventId replayed } }"""


async def test_a_client_watches_its_order_being_priced(
        eventing_server: RunningServer, start_worker: Callable[..., Awaitable[CeleryWorker]]) -> None:
    client = GraphQLClient(eventing_server.base_url)
    await start_worker(eventing_server.settings)
    created = (await client.data('mutation { createOrder(id: "o1", input: {customer: "ann", '
                                 'items: []}) { eventIds } }'))["createOrder"]
    (event_id,) = created["eventIds"]
    async with Subscriptions.connect(eventing_server.ws_url) as subs:
        op = await subs.subscribe(WATCH, {"id": event_id})
        states = [await subs.next(op)]
        while not states[-1]["settled"]:
            states.append(await subs.next(op))
        assert (await subs.message(op))["type"] == "complete"
    assert states[-1] == {"type": "Order.created", "relayed": True, "settled": True,
                          "deliveries": [{"handler": "price_order", "status": "SUCCEEDED",
                                          "attempts": 1}]}
    assert len({str(s) for s in states}) == len(states), "each message is a new state"
    listed = await client.data('{ events(key: "o1") { id type settled } }')
    types = [e["type"] for e in listed["events"]]
    assert types == ["Order.updated", "Order.created"]  # newest first: the handler's result
    caused = await client.data('{ events(type: "Order.updated") { causedBy } }')
    assert caused["events"] == [{"causedBy": event_id}]
    await client.aclose()


async def test_custom_events_are_idempotent_and_redeliver_needs_a_finished_delivery(
        server: RunningServer, client: GraphQLClient) -> None:
    first = (await client.data(EMIT, {"key": "k1", "m": "audit-1"}))["emitEvent"]
    again = (await client.data(EMIT, {"key": "k1", "m": "audit-1"}))["emitEvent"]
    assert first["replayed"] is False and again == {**first, "replayed": True}
    reused = await client.error(EMIT, {"key": "other", "m": "audit-1"})
    assert reused["extensions"]["code"] == "MUTATION_ID_REUSED"
    events = (await client.data('{ events(type: "Shop.audit") { id key payload relayed } }'))
    assert events["events"] == [{"id": first["eventId"], "key": "k1", "payload": {"who": "ann"},
                                 "relayed": False}]
    bad = await client.error('mutation { emitEvent(type: "nodot") { eventId } }')
    assert bad["extensions"]["code"] == "BAD_USER_INPUT"
    missing = await client.error('mutation($id: ID!) { redeliverEvent(id: $id) { id } }',
                                 {"id": first["eventId"]})
    assert missing["extensions"]["code"] == "NOT_FOUND"


async def test_the_event_watch_is_woken_by_the_worker_not_by_polling(
        settings: Settings, demo_models: list[ModelSpec],
        start_worker: Callable[..., Awaitable[CeleryWorker]]) -> None:
    """With re-reads a minute apart, only the worker's announcements can bring the
    updates within the test's patience (WAIT, 10 s)."""
    patient = settings.model_copy(update={"event_poll_interval": 60.0})
    async with serve(patient, demo_models, with_relay=True) as running:
        client = GraphQLClient(running.base_url)
        async with Subscriptions.connect(running.ws_url) as subs:
            created = (await client.data('mutation { createOrder(id: "o1", input: {customer: '
                                         '"ann", items: []}) { eventIds } }'))["createOrder"]
            op = await subs.subscribe(WATCH, {"id": created["eventIds"][0]})
            first = await subs.next(op)  # read at once, before any worker exists
            assert first["settled"] is False
            await start_worker(patient)
            states = [first]
            while not states[-1]["settled"]:
                states.append(await subs.next(op))
        await client.aclose()
    assert states[-1]["deliveries"] == [{"handler": "price_order", "status": "SUCCEEDED",
                                         "attempts": 1}]
