"""The Flower simulation benchmark's layout of logged and unlogged rounds: a drift of the
rounds' times over a simulation counts against neither kind, the storing of logged points ends
in a round left out, and the bootstrap interval of the mean overhead. (Pure functions of
``benchmarks/flower_simulation_bench.py``; the simulation itself runs in ``make bench``.)"""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.flower_simulation_bench import counted, interval, logged_round, stores_first


def layout(blocks: int, block: int) -> list[int]:
    """The rounds a simulation of ``blocks`` blocks of each kind runs (the warm-up first)."""
    return list(range(1, (2 * blocks + 1) * block + 1))


@given(blocks=st.sampled_from([2, 4, 6, 12]), block=st.integers(2, 6))
def test_a_steady_drift_of_the_rounds_cancels_out(blocks: int, block: int) -> None:
    rounds = [r for r in layout(blocks, block) if counted(r, block)]
    logged = [r for r in rounds if logged_round(r, block)]
    plain = [r for r in rounds if not logged_round(r, block)]
    assert len(logged) == len(plain) == blocks * (block - 1)
    # Rounds that only drift (a round's time grows with its number) cost both kinds the same.
    assert statistics.fmean(logged) == statistics.fmean(plain)
    assert all(logged_round(r, block) for r in range(1, block + 1))  # the warm-up logs


@pytest.mark.parametrize("block", [2, 3, 4])
def test_the_storing_of_a_logged_block_ends_in_a_round_left_out(block: int) -> None:
    rounds = layout(6, block)
    waits = [r for r in rounds if stores_first(r, block)]
    # One wait after every logged block that an unlogged block follows ...
    ends = [r for r in rounds[:-1] if logged_round(r, block) and not logged_round(r + 1, block)]
    assert [r + 2 for r in ends] == waits
    for r in waits:
        # ... timed in the round before it (a round ends at the next one's start), left out.
        assert not counted(r - 1, block) and not logged_round(r - 1, block)


def test_the_interval_holds_the_overhead_and_narrows_with_less_spread() -> None:
    plain = [1.0, 1.2, 0.9, 1.1, 1.0, 0.8]
    assert interval(plain, plain)[0] < 0 < interval(plain, plain)[1]
    logged = [seconds * 1.1 for seconds in plain]
    low, high = interval(logged, plain)
    assert low < 10 < high
    assert interval([1.1] * 6, [1.0] * 6) == pytest.approx((10.0, 10.0))
