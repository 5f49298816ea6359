"""The eventing benchmark's no-op handler on ``Bench.noop`` events (unordered): the
delivery machinery alone, to set beside a bare Celery no-op task."""

from __future__ import annotations

from statesync.workers import Event, Tx, handler


@handler("Bench.noop")
def noop(event: Event, tx: Tx) -> None:
    return None
