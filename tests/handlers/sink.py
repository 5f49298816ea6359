"""Accepts any ``Load.*`` event (the relay tests only count what is sent)."""

from __future__ import annotations

from statesync.workers import Event, Tx, handler


@handler("Load.*")
def sink(event: Event, tx: Tx) -> None:
    pass
