"""kombu's Redis transport, with one crash taken out of it.

When the broker goes away under a worker, Celery closes the consumer's channel, and the
channel's close gives back the messages this worker held (acks are late) by writing them
to the broker that just went away. With no connection left to make one from, kombu raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``, which Celery does not
catch, and the worker exits (kombu#582 and #970 report the same path). Here a close that
cannot reach the broker gives nothing back and lets Celery reconnect: those messages stay
in the broker's unacked set, which the broker restores after its visibility timeout, and
the relay sends every delivery whose dispatch or lease ran out again sooner than that;
the claim runs each delivery once whichever copy arrives first.
"""

from __future__ import annotations

import logging

from kombu.transport import redis

log = logging.getLogger(__name__)


class Channel(redis.Channel):
    def close(self) -> None:
        try:
            super().close()  # type: ignore[no-untyped-call]
        except (AttributeError, *self.connection_errors) as exc:
            log.warning("the broker went away while closing a channel (%s: %s); what this "
                        "worker held is given back by the broker and the relay instead",
                        type(exc).__name__, exc)


class Transport(redis.Transport):
    Channel = Channel
