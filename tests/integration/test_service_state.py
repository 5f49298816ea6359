"""`service`: the roles, the feed, the outbox and this process's subscriptions, as the
console shows them; the admin's only."""

from __future__ import annotations

from tests.conftest import RunningServer
from tests.integration.test_fanout import WATCH_ONE, create
from tests.support import GraphQLClient, Subscriptions, eventually

SERVICE = """{ service { headCursor deliveredCursor sequencerActive sequencingHere relayActive
  outboxBacklog deliveries { status count } subscriptions { model subscriptions } } }"""


async def test_the_service_state_follows_commits_and_subscriptions(
        server: RunningServer, client: GraphQLClient) -> None:
    before = (await client.data(SERVICE))["service"]
    assert (before["sequencerActive"], before["sequencingHere"]) == (True, True)
    assert before["relayActive"] is False  # no relay runs beside this server
    assert before["subscriptions"] == []
    await create(client, "s1")

    async def sequenced() -> dict[str, object] | None:
        now: dict[str, object] = (await client.data(SERVICE))["service"]
        return now if int(str(now["headCursor"])) == int(before["headCursor"]) + 1 else None

    await eventually(sequenced, what="the commit sequenced")
    async with Subscriptions.connect(server.ws_url) as subs:
        op = await subs.subscribe(WATCH_ONE, {"id": "s1"})
        assert (await subs.next(op))["op"] == "SNAPSHOT"
        during = (await client.data(SERVICE))["service"]
    assert during["deliveredCursor"] is not None
    assert during["subscriptions"] == [{"model": "Order", "subscriptions": 1}]
    # The order's created event waits for a relay; no handler ran, so no delivery exists.
    assert during["outboxBacklog"] == before["outboxBacklog"] + 1
    assert {d["status"] for d in during["deliveries"]} >= {"DEAD", "PENDING", "SUCCEEDED"}
