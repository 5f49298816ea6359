"""What the relay needs of a broker, and the Celery one.

The relay only sends ``(event id, handler)`` pairs and asks whether anything still waits
in the queue; it never sees Celery. Both calls block (kombu is synchronous), so the relay
makes them in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from celery import Celery

from statesync.eventing.tasks import DELIVER

Pair = tuple[str, str]  # (event id, handler name): one delivery


class Broker(Protocol):
    def send(self, pairs: Sequence[Pair]) -> None:
        """Queue one task per delivery; raises if the broker cannot take them."""

    def nothing_queued(self) -> bool:
        """Whether no task waits in the handlers' queue."""


class CeleryBroker:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def send(self, pairs: Sequence[Pair]) -> None:
        with self.celery.producer_or_acquire() as producer:
            for event_id, handler in pairs:
                self.celery.send_task(DELIVER, args=[event_id, handler], producer=producer)

    def nothing_queued(self) -> bool:
        # A pooled connection, as send uses: opening one per question cost the relay a
        # connect (and Redis a client) every round.
        with self.celery.pool.acquire(block=True) as connection:
            try:
                declared = connection.default_channel.queue_declare(
                    queue=self.celery.conf.task_default_queue, passive=True)
                return int(declared.message_count) == 0
            except connection.channel_errors:
                return True  # Redis deletes an empty list; AMQP: nobody declared it yet

    def close(self) -> None:
        self.celery.close()
