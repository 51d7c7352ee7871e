"""Which funding times the paper venue settles at one look (venues/paper_funding.py), pure, against
hand cases: no stall, one missed, five missed, a rate change between, a stall across a restart (the
last time settled committed or not), the cap, and a property: over any run of looks, every funding
time is settled once, in order, at its own rate."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrade.venues.paper_funding import MAX_FUNDING_CATCH_UP, FundingDue, funding_due

S = 10_000  # the interval of the hand cases (ms)
SWAP, INV = "BTC-USDT-SWAP", "BTC-USD-SWAP"


def flat(t: int) -> dict[str, float]:
    return {SWAP: 0.0001}


def test_no_stall_one_time_at_each_look_and_nothing_between() -> None:
    assert funding_due(10_000, 19_999, S, flat) == FundingDue()  # not yet
    due = funding_due(10_000, 20_000, S, flat)  # at the time itself
    assert (due.times, due.last, due.skipped) == ([20_000], 20_000, 0)
    assert funding_due(10_000, 20_050, S, flat).times == [20_000]  # the step after it
    assert funding_due(20_000, 20_100, S, flat).times == []  # settled: not again
    assert funding_due(20_000, 20_100, S, flat).last is None


def test_one_missed_time_settles_with_the_current_one() -> None:
    # the step before 20_000 was at 19_950, the next one at 30_020 (a stall of 10 s): 20_000 was missed
    due = funding_due(10_000, 30_020, S, flat)
    assert due.times == [20_000, 30_000]
    assert due.settle == ((20_000, {SWAP: 0.0001}), (30_000, {SWAP: 0.0001}))
    assert (due.last, due.skipped, due.skipped_from) == (30_000, 0, 0)


def test_five_missed_times_each_settle_oldest_first() -> None:
    due = funding_due(10_000, 69_999, S, flat)  # stalled from 10_500 to 69_999
    assert due.times == [20_000, 30_000, 40_000, 50_000, 60_000]
    assert due.last == 60_000 and due.skipped == 0


def test_a_rate_change_between_each_time_at_the_rate_announced_for_it() -> None:
    # the rate announced for each time (a change from 40_000 on, and per symbol): never the newest's
    announced = {
        20_000: {SWAP: 0.0001, INV: 0.0003},
        30_000: {SWAP: 0.0001, INV: 0.0003},
        40_000: {SWAP: -0.0002, INV: 0.0001},
        50_000: {SWAP: 0.00375, INV: -0.00375},
    }
    asked: list[int] = []

    def rates(t: int) -> Mapping[str, float]:
        asked.append(t)
        return announced[t]

    due = funding_due(15_000, 55_000, S, rates)
    assert due.settle == tuple(announced.items())
    assert asked == [20_000, 30_000, 40_000, 50_000]  # each time's own rate, asked once


def test_a_stall_across_a_restart_settles_each_time_once() -> None:
    # before the kill: 20_000 settled and committed (last = 20_000); the server was down until 53_000
    before = funding_due(10_000, 20_030, S, flat)
    assert before.times == [20_000]
    after = funding_due(before.last or 0, 53_000, S, flat)
    assert after.times == [30_000, 40_000, 50_000]  # none twice, none skipped
    # killed after 20_000 was settled in memory but before it was committed: the account still says
    # 10_000, so 20_000 is settled again at the restart (the first settlement was lost with the process,
    # the same id funding-<symbol>-20000 is made once)
    assert funding_due(10_000, 53_000, S, flat).times == [20_000, 30_000, 40_000, 50_000]
    # a restart before the next time is due: nothing
    assert funding_due(50_000, 53_500, S, flat).times == []


def test_the_interval_changed_across_a_restart_the_first_multiple_after_the_last_settled() -> None:
    # settled at 25_000 with a 5 s interval, restarted with 10 s: 30_000 is the first due
    assert funding_due(25_000, 41_000, S, flat).times == [30_000, 40_000]
    # a longer interval whose newest multiple is before the last settled: nothing
    assert funding_due(25_000, 29_000, 20_000, flat).times == []


def test_a_stall_of_days_settles_the_newest_cap_times_and_counts_the_rest() -> None:
    asked: list[int] = []

    def rates(t: int) -> Mapping[str, float]:
        asked.append(t)
        return {SWAP: 0.0001}

    # a 1 s interval, last settled at 1000 s, resumed 3 days later
    last, now, interval = 1_000_000, 1_000_000 + 3 * 86_400_000 + 500, 1000
    due = funding_due(last, now, interval, rates)
    missed = 3 * 86_400
    assert len(due.settle) == MAX_FUNDING_CATCH_UP == len(asked)  # rates asked for the settled only
    assert due.times == list(range(now // 1000 * 1000 - (MAX_FUNDING_CATCH_UP - 1) * 1000, now, 1000))
    assert due.last == 1_000_000 + 3 * 86_400_000
    assert due.skipped == missed - MAX_FUNDING_CATCH_UP and due.skipped_from == 1_001_000
    assert due.skipped_from + due.skipped * interval == due.times[0]  # skipped and settled: no gap
    # a smaller cap, by hand: 5 missed, cap 2: 50_000 and 60_000 settled, 20_000 .. 40_000 counted
    small = funding_due(10_000, 60_000, S, flat, cap=2)
    assert (small.times, small.skipped, small.skipped_from) == ([50_000, 60_000], 3, 20_000)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        funding_due(0, 1, 0, flat)
    with pytest.raises(ValueError, match="cap"):
        funding_due(0, 1, 1, flat, cap=0)


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 10**6),
    interval=st.integers(1, 5000),
    steps=st.lists(st.tuples(st.integers(0, 30_000), st.booleans()), min_size=1, max_size=40),
)
def test_any_run_of_looks_settles_every_time_once_in_order(
    start: int, interval: int, steps: list[tuple[int, bool]]
) -> None:
    """Looks at times moving forward by any step (stalls included); at some the process dies before the
    look is committed (``lost``): the look is as if not made. Every funding time in (start, end] is
    settled once, in time order, at its own rate (cap large enough not to bite)."""
    last, now, settled = start, start, []
    for gap, lost in [*steps, (0, False)]:  # the last look is committed
        now += gap
        due = funding_due(last, now, interval, lambda t: {SWAP: t * 1e-9}, cap=10**6)
        assert all(rates == {SWAP: t * 1e-9} for t, rates in due.settle)
        if lost:
            continue
        settled += due.times
        last = due.last if due.last is not None else last
    first = (start // interval + 1) * interval
    assert settled == list(range(first, now // interval * interval + 1, interval))
