"""What the relay needs of a broker, and the Celery one.

The relay only sends ``(event id, handler)`` pairs and asks how many tasks still wait in
the queue; it never sees Celery. Both calls block (kombu is synchronous), so the relay
makes them in a thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Protocol

from celery import Celery

from statesync.eventing.tasks import DELIVER, DELIVER_MANY

Pair = tuple[str, str]  # (event id, handler name): one delivery


class Broker(Protocol):
    def send(self, pairs: Sequence[Pair], bundle: int = 1) -> None:
        """Queue tasks running these deliveries, up to ``bundle`` per task; raises if the
        broker cannot take them."""

    def queued(self) -> int:
        """How many tasks wait in the handlers' queue (raises if the broker cannot say)."""


def bundles(pairs: Sequence[Pair], most: int) -> list[Sequence[Pair]]:
    """``pairs`` in order, cut into the fewest bundles of at most ``most``, as even as can be
    (17 by 8: 6, 6, 5), so that no worker is left with a long bundle beside short ones."""
    if not pairs:
        return []
    count = -(-len(pairs) // most)
    size, extra = divmod(len(pairs), count)
    cuts, start = [], 0
    for n in range(count):
        end = start + size + (1 if n < extra else 0)
        cuts.append(pairs[start:end])
        start = end
    return cuts


class CeleryBroker:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def send(self, pairs: Sequence[Pair], bundle: int = 1) -> None:
        """Split evenly, so the tasks of one send are of one size; a bundle of one is a
        plain ``deliver`` task."""
        with self.celery.producer_or_acquire() as producer:
            for cut in bundles(pairs, bundle):
                if len(cut) == 1:
                    [(event_id, handler)] = cut
                    self.celery.send_task(DELIVER, args=[event_id, handler], producer=producer)
                else:
                    self.celery.send_task(DELIVER_MANY, args=[[list(p) for p in cut]],
                                          producer=producer)

    def queued(self) -> int:
        # A pooled connection, as send uses: opening one per question cost the relay a
        # connect (and Redis a client). A channel of its own: on AMQP a passive declare
        # of a missing queue closes the channel it was asked on.
        with self.celery.pool.acquire(block=True) as connection:
            channel = connection.channel()
            try:
                declared = channel.queue_declare(queue=self.celery.conf.task_default_queue,
                                                 passive=True)
                return int(declared.message_count)
            except connection.channel_errors:
                return 0  # Redis deletes an empty list; AMQP: nobody declared it yet
            finally:
                with contextlib.suppress(Exception):
                    channel.close()

    def close(self) -> None:
        self.celery.close()
