"""The lifecycle of one delivery (an event for one handler): its statuses and the rules
that move it on, as values and pure functions, shared by the relay, the worker, the
statements and the GraphQL enum.

::

    PENDING --relay sends it--> DISPATCHED --a worker starts it--> RUNNING
    WAITING --the earlier delivery of its key finishes--> PENDING   (ordered handlers)
    RUNNING --the handler returns--> SUCCEEDED
    RUNNING --the handler raises--> RETRYING (backoff) --due--> DISPATCHED ... or DEAD
    DISPATCHED, RUNNING --lease runs out--> RETRYING (or DEAD after the last attempt)
    SUCCEEDED, DEAD --redeliverEvent--> PENDING (attempts start over)

A dispatched delivery's lease is the dispatch timeout (was it ever started?); a running
one's is the heartbeat lease its worker renews (is the worker still there?).
"""

from __future__ import annotations

import enum
from datetime import datetime


class Status(enum.StrEnum):
    PENDING = "pending"  # the relay matched the event to the handler
    # An ordered handler's delivery behind an unfinished earlier one of the same key: not
    # due, and not in the due index, until that one succeeds or is dead.
    WAITING = "waiting"
    DISPATCHED = "dispatched"  # sent to the broker, not yet started
    RUNNING = "running"  # a worker is running an attempt
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"  # waiting out its backoff (or sent again after a lost lease)
    DEAD = "dead"  # out of attempts: a dead letter until someone redelivers it


FINISHED = frozenset({Status.SUCCEEDED, Status.DEAD})
DUE = frozenset({Status.PENDING, Status.RETRYING})  # the relay sends these when due
HELD = frozenset({Status.WAITING})  # behind another delivery of its key
LEASED = frozenset({Status.DISPATCHED, Status.RUNNING})  # a lease says how long to wait


def may_start(status: str, lease_expires_at: datetime | None, now: datetime) -> bool:
    """May a worker claim the delivery now? It must be dispatched, or running under a lease
    that ran out (the worker before died without the relay noticing yet). Anything else is
    a duplicate or late task, which does nothing."""
    if status == Status.DISPATCHED:
        return True
    return status == Status.RUNNING and (lease_expires_at is None or lease_expires_at < now)


def after_failure(attempt: int, max_attempts: int) -> Status:
    """What a failed attempt (the handler raised, or its writes were refused) leads to."""
    return Status.DEAD if attempt >= max_attempts else Status.RETRYING


def after_lost_lease(status: str, attempts: int, max_attempts: int) -> Status:
    """What a delivery whose lease ran out leads to. A dispatched one was never started, so
    it used no attempt and is simply sent again; a running one used its attempt."""
    if status == Status.RUNNING:
        return after_failure(attempts, max_attempts)
    return Status.RETRYING


def lost_lease_error(status: str) -> str:
    """The ``last_error`` a lost lease records."""
    if status == Status.DISPATCHED:
        return ("no worker started it within the dispatch timeout (lost by the broker or by "
                "a worker that died)")
    return "its worker stopped renewing the lease (killed, lost or stuck)"
