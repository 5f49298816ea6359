"""An ordered handler of ``Load.*`` events that does nothing (the relay tests watch statuses)."""

from __future__ import annotations

from statesync.workers import Event, Tx, handler


@handler("Load.*", ordered=True)
def ordered_sink(event: Event, tx: Tx) -> None:
    pass
