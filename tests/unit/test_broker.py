"""How the relay cuts a dispatch into tasks: the fewest bundles, as even as can be, in order."""

from __future__ import annotations

import pytest

from statesync.eventing.broker import bundles
from statesync.eventing.tasks import bundle_size

PAIRS = [(f"e{n}", "h") for n in range(40)]


@pytest.mark.parametrize(("count", "sizes"), [
    (0, []), (1, [1]), (8, [8]), (9, [5, 4]), (17, [6, 6, 5]), (24, [8, 8, 8]), (25, [7, 6, 6, 6]),
])
def test_a_dispatch_is_cut_into_the_fewest_even_bundles(count: int, sizes: list[int]) -> None:
    cut = bundles(PAIRS[:count], 8)
    assert [len(bundle) for bundle in cut] == sizes
    assert [pair for bundle in cut for pair in bundle] == PAIRS[:count]  # each once, in order


@pytest.mark.parametrize(("due", "size"), [(1, 1), (31, 1), (63, 1), (64, 2), (200, 6), (10_000, 8)])
def test_only_a_backlog_is_bundled(due: int, size: int) -> None:
    # A handful of due deliveries goes one per task, side by side on every worker slot.
    assert bundle_size(due) == size
