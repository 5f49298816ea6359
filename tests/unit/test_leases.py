"""The lease keeper: one thread renews every held attempt, announces the long ones once,
and forgets an attempt as soon as it is let go."""

from __future__ import annotations

import os
import threading
from collections import Counter

from statesync.eventing.leases import LeaseKeeper

WITHIN = 5.0  # seconds any expected renewal may take to come, on a loaded machine


class Record:
    def __init__(self) -> None:
        self.renewed: Counter[str] = Counter()
        self.announced: Counter[str] = Counter()
        self.changed = threading.Condition()

    def renew(self, attempt: str) -> None:
        with self.changed:
            self.renewed[attempt] += 1
            self.changed.notify_all()

    def announce(self, attempt: str) -> None:
        with self.changed:
            self.announced[attempt] += 1
            self.changed.notify_all()

    def wait(self, done: object) -> bool:
        with self.changed:
            return self.changed.wait_for(done, WITHIN)  # type: ignore[arg-type]


def keeper(record: Record, every: float, notice_after: float) -> LeaseKeeper[str]:
    return LeaseKeeper(every=every, notice_after=notice_after, renew=record.renew,
                       announce=record.announce)


def test_a_held_attempt_is_announced_once_and_renewed_until_let_go() -> None:
    record = Record()
    leases = keeper(record, every=0.02, notice_after=0.01)
    with leases.holding("a"):
        assert record.wait(lambda: record.renewed["a"] >= 3)
    with record.changed:
        renewals = record.renewed["a"]
    assert record.announced["a"] == 1
    # Let go: the next renewals would have come within a few periods; none does.
    other = Record()
    with keeper(other, every=0.02, notice_after=0.01).holding("clock"):
        assert other.wait(lambda: other.renewed["clock"] >= 5)
    assert record.renewed["a"] <= renewals + 1  # at most one already under way


def test_a_short_attempt_costs_no_round_trip() -> None:
    record = Record()
    leases = keeper(record, every=10.0, notice_after=5.0)
    for _ in range(100):
        with leases.holding("short"):
            pass
    clock = Record()
    with keeper(clock, every=0.02, notice_after=0.01).holding("clock"):
        assert clock.wait(lambda: clock.renewed["clock"] >= 3)
    assert record.renewed == Counter() and record.announced == Counter()


def test_attempts_held_at_once_are_each_renewed() -> None:
    record = Record()
    leases = keeper(record, every=0.02, notice_after=0.01)
    with leases.holding("a"), leases.holding("b"):
        assert record.wait(lambda: record.renewed["a"] >= 2 and record.renewed["b"] >= 2)
    assert record.announced == Counter({"a": 1, "b": 1})


def test_a_renewal_that_fails_is_logged_and_the_next_one_still_comes() -> None:
    record = Record()
    failures: list[str] = []

    def flaky(attempt: str) -> None:
        if len(failures) < 2:
            failures.append(attempt)
            raise ConnectionError("PostgreSQL went away")
        record.renew(attempt)

    leases = LeaseKeeper(every=0.02, notice_after=0.01, renew=flaky, announce=record.announce)
    with leases.holding("a"):
        assert record.wait(lambda: record.renewed["a"] >= 1)
    assert failures == ["a", "a"]


def test_a_forked_child_keeps_its_own_leases_not_its_parents() -> None:
    # Celery's prefork pool forks: a child must not renew what its parent holds (their
    # ends run in the parent), and must not inherit a lock taken at the fork.
    sink = [Record()]  # each process records into its own
    leases = LeaseKeeper(every=0.02, notice_after=0.01, renew=lambda a: sink[0].renew(a),
                         announce=lambda a: sink[0].announce(a))
    with leases.holding("parent"):
        assert sink[0].wait(lambda: sink[0].renewed["parent"] >= 1)
        pid = os.fork()
        if pid == 0:  # the child: its own attempt is kept, the parent's is not
            sink[0] = child = Record()
            with leases.holding("child"):
                kept = child.wait(lambda: child.renewed["child"] >= 3)
            os._exit(0 if kept and child.renewed["parent"] == 0 else 1)
        ended: list[tuple[int, int]] = []
        waiter = threading.Thread(target=lambda: ended.append(os.waitpid(pid, 0)))
        waiter.start()
        waiter.join(WITHIN)
        if not ended:
            os.kill(pid, 9)
            waiter.join()
            raise AssertionError("the child hung (a lock copied held?)")
    assert os.waitstatus_to_exitcode(ended[0][1]) == 0
