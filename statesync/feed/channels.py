"""Redis channel names, namespaced so deployments (and test databases) can share a Redis."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Channels:
    prefix: str

    @property
    def feed(self) -> str:
        """Batches of sequenced changes, published after the sequencer commits."""
        return f"{self.prefix}:feed"

    @property
    def deliveries(self) -> str:
        """An event's deliveries changed (the payload is its id): wakes `event(id)` watchers."""
        return f"{self.prefix}:deliveries"

    @property
    def wake(self) -> str:
        """A commit happened: the active sequencer should look for new changes."""
        return f"{self.prefix}:wake"
