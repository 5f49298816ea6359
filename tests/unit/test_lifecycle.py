"""The delivery lifecycle's rules, as the relay and the worker apply them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from statesync.eventing.lifecycle import (
    DUE,
    FINISHED,
    HELD,
    LEASED,
    Status,
    after_failure,
    after_lost_lease,
    lost_lease_error,
    may_start,
)

NOW = datetime(2026, 12, 2, tzinfo=UTC)
PAST, FUTURE = NOW - timedelta(seconds=1), NOW + timedelta(seconds=1)


def test_the_groups_split_every_status_once() -> None:
    groups = [FINISHED, DUE, HELD, LEASED]
    assert set().union(*groups) == set(Status)
    assert sum(map(len, groups)) == len(Status)  # no status in two groups


@pytest.mark.parametrize(("status", "lease", "expected"), [
    (Status.DISPATCHED, FUTURE, True),
    (Status.DISPATCHED, None, True),
    (Status.RUNNING, FUTURE, False),  # another attempt owns it
    (Status.RUNNING, PAST, True),  # its worker died before the relay noticed
    (Status.RUNNING, None, True),
    (Status.PENDING, None, False),
    (Status.WAITING, None, False),
    (Status.RETRYING, None, False),  # not due yet: the relay sends it when it is
    (Status.SUCCEEDED, None, False),
    (Status.DEAD, None, False),
])
def test_a_worker_may_start_only_a_dispatched_or_abandoned_delivery(
        status: Status, lease: datetime | None, expected: bool) -> None:
    assert may_start(status, lease, NOW) is expected


def test_a_failure_retries_until_the_last_attempt() -> None:
    assert [after_failure(n, 3) for n in (1, 2, 3, 4)] == [
        Status.RETRYING, Status.RETRYING, Status.DEAD, Status.DEAD]


def test_a_lost_lease_costs_an_attempt_only_if_the_handler_was_running() -> None:
    assert after_lost_lease(Status.DISPATCHED, 3, 3) is Status.RETRYING  # never started
    assert after_lost_lease(Status.RUNNING, 2, 3) is Status.RETRYING
    assert after_lost_lease(Status.RUNNING, 3, 3) is Status.DEAD


def test_a_lost_lease_says_which_wait_ran_out() -> None:
    assert "dispatch timeout" in lost_lease_error(Status.DISPATCHED)
    assert "renewing the lease" in lost_lease_error(Status.RUNNING)


def test_statuses_are_the_stored_strings() -> None:
    assert [str(s) for s in Status] == [
        "pending", "waiting", "dispatched", "running", "succeeded", "retrying", "dead"]
