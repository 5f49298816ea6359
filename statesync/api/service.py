"""GraphQL for watching the service itself (the console's): who sequences and relays,
how far the feed and the outbox are, and what this process serves. The admin's."""

from __future__ import annotations

import strawberry

from statesync.api.context import Context
from statesync.eventing import reads as eventing_reads
from statesync.eventing.lifecycle import Status
from statesync.store import locks, reads


@strawberry.type(description="Deliveries in one status.")
class DeliveryCount:
    status: Status
    count: int


@strawberry.type(description="Open subscriptions of one model, in the process that answered.")
class ModelSubscriptions:
    model: str
    subscriptions: int


@strawberry.type(description="Where the service stands, as the process that answered sees it.")
class Service:
    head_cursor: str = strawberry.field(description="The feed's last sequenced cursor.")
    delivered_cursor: str | None = strawberry.field(
        description="The last cursor this process delivered to its subscribers.")
    sequencer_active: bool = strawberry.field(
        description="Some process holds the sequencer's role.")
    sequencing_here: bool = strawberry.field(description="This process is the sequencer.")
    relay_active: bool = strawberry.field(description="Some relay holds the relay's role.")
    outbox_backlog: int = strawberry.field(description="Events committed, not yet relayed.")
    deliveries: list[DeliveryCount]
    subscriptions: list[ModelSubscriptions]


@strawberry.type
class ServiceQueries:
    @strawberry.field(description="The service's state: roles, feed, outbox (the admin's).")
    async def service(self, info: strawberry.Info) -> Service:
        ctx: Context = info.context
        ctx.require_admin("service")
        runtime = ctx.runtime
        async with ctx.connect() as connection:
            head, _ = await reads.feed_bounds(connection)
            unrelayed, by_status = await eventing_reads.backlog(connection)
            holders = await locks.held(connection, (locks.SEQUENCER, locks.RELAY))
        last = runtime.hub.last
        return Service(
            head_cursor=str(head), delivered_cursor=None if last is None else str(last),
            sequencer_active=locks.SEQUENCER in holders,
            sequencing_here=runtime.sequencer.active, relay_active=locks.RELAY in holders,
            outbox_backlog=unrelayed,
            deliveries=[DeliveryCount(status=s, count=by_status.get(s, 0)) for s in Status],
            subscriptions=[ModelSubscriptions(model=m, subscriptions=n)
                           for m, n in runtime.hub.subscriptions_by_model().items()])
