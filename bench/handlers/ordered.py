"""The eventing benchmark's ordered handler: a no-op on ``Bench.tick`` events, one key at
a time in event order (``ordered=True``), so a backlog on one key drains one by one."""

from __future__ import annotations

from statesync.workers import Event, Tx, handler


@handler("Bench.tick", ordered=True)
def ordered_tick(event: Event, tx: Tx) -> None:
    return None
