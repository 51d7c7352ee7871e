"""A second reader's probes of the paper venue's funding catch-up (venues/paper.py on
venues/paper_funding.py), through its sink in virtual time (``autojump_clock``) as
tests/test_paper_funding_venue.py does: margin running out in the middle of a catch-up, time set
back, the cap's boundary, an interval and a symbol list changed across a restart, several swaps in
one catch-up."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from seqtrade.config import PaperConfig
from seqtrade.models import AccountEventKind
from seqtrade.venues.paper import PaperVenue
from seqtrade.venues.paper_funding import MAX_FUNDING_CATCH_UP, funding_due

from .test_paper_derivs_venue import INV, SWAP, Sink, market_buy
from .test_paper_funding_venue import CFG, Leap, model_rate, open_positions, running, times_of

# a long of 10 contracts (6000 USDT at 60000, 600 margin at 10x) on 1000 USDT, at 0.3 % a time: 18 USDT
# a time, so the margin runs out after ~50 funding times, far fewer than a stall of 1000 settles
DRAINING = PaperConfig(
    **{
        **CFG.__dict__,
        "balances": {"USDT": 1000.0, "BTC": 1.0},
        "funding_rate": 0.003,
        "funding_rate_jitter": 0.0,
    }
)


async def test_a_catch_up_liquidates_a_position_when_its_margin_runs_out_and_the_cash_never_goes_below_zero(
    autojump_clock: object,
) -> None:
    clock, sink = Leap(), Sink()
    with trio.fail_after(60):
        async with running(clock, sink, cfg=DRAINING) as venue:
            await market_buy(venue, sink, "long", SWAP, 10.0)
            before = venue._funding_ms
            clock.leapt += 1000 * 1000  # stalled 1000 s: 1000 funding times
            await trio.sleep(0.15)
            cash = (await venue.balances())["USDT"]
            position = (await venue.positions())[SWAP]
    assert cash >= 0.0, cash  # docs/risk.md: the cash never goes below zero
    assert position == 0.0  # liquidated when its margin ran out, as OKX would have during the stall
    kinds = [e.kind for e in sink.account if e.symbol == SWAP]
    liquidated = kinds.index(AccountEventKind.LIQUIDATION)
    funded = times_of([e for e in sink.account[:liquidated] if e.kind is AccountEventKind.FUNDING], SWAP)
    assert funded == list(range(before + 1000, funded[-1] + 1, 1000))
    assert 40 <= len(funded) <= 60  # not 1000: none after the liquidation
    assert all(k is not AccountEventKind.FUNDING for k in kinds[liquidated:])


def test_the_cap_boundary_exactly_1000_settles_all_and_1001_leaves_the_oldest() -> None:
    rates = {"X": 0.0001}
    exact = funding_due(0, MAX_FUNDING_CATCH_UP * 10, 10, lambda t: rates)
    assert exact.times == list(range(10, MAX_FUNDING_CATCH_UP * 10 + 1, 10)) and exact.skipped == 0
    assert exact.skipped_from == 0
    over = funding_due(0, (MAX_FUNDING_CATCH_UP + 1) * 10, 10, lambda t: rates)
    assert over.times == list(range(20, (MAX_FUNDING_CATCH_UP + 1) * 10 + 1, 10))
    assert (over.skipped, over.skipped_from) == (1, 10)


def test_time_set_back_settles_nothing_twice() -> None:
    # the wall clock stepped back 25 s after the time 100 s was settled: nothing due until it passes 100 s
    assert funding_due(100_000, 75_000, 10_000, lambda t: {}).settle == ()
    assert funding_due(100_000, 100_000, 10_000, lambda t: {}).settle == ()
    assert funding_due(100_000, 110_000, 10_000, lambda t: {}).times == [110_000]


async def test_the_venue_clock_set_back_and_forward_settles_each_time_once(autojump_clock: object) -> None:
    clock, sink = Leap(), Sink()
    with trio.fail_after(60):
        async with running(clock, sink) as venue:
            await market_buy(venue, sink, "long", SWAP, 2.0)
            await trio.sleep(2.5)
            clock.leapt -= 4_000  # an NTP step back of 4 s: the venue's time is before its last settlement
            await trio.sleep(6.0)  # runs past the times it settled before the step, and on
            clock.leapt += 3_000  # and forward again
            await trio.sleep(1.5)
    times = times_of(sink.account, SWAP)
    assert len(times) == len(set(times)) and times == sorted(times)
    assert times == list(range(times[0], times[-1] + 1, 1000))  # none twice, none skipped


async def test_a_restart_with_a_longer_interval_settles_its_multiples_once(
    autojump_clock: object, tmp_path: Path
) -> None:
    state, clock = tmp_path / "paper.sqlite", Leap()
    first, second = Sink(), Sink()
    slower = PaperConfig(**{**CFG.__dict__, "funding_interval": 2.0})
    with trio.fail_after(60):
        async with running(clock, first, state) as venue:
            await market_buy(venue, first, "long", SWAP, 2.0)
            await trio.sleep(1.5)
            stopped_at = venue._funding_ms
        clock.leapt += 7_300  # down for 7.3 s; every 2 s now
        async with running(clock, second, state, slower) as venue:
            now = clock()
            await trio.sleep(0.05)
    times = times_of(second.account, SWAP)
    expected = list(range((stopped_at // 2000 + 1) * 2000, now // 2000 * 2000 + 1, 2000))
    assert len(expected) >= 3 and times == expected
    assert not set(times) & set(times_of(first.account, SWAP))


async def run_then_stop(clock: Leap, state: Path, down_ms: int) -> int:
    """Run the venue on ``state`` with a long of 2 linear and a short of 10 inverse swaps for 1.5 s,
    stop it and leap ``down_ms``; the last funding time it settled."""
    sink = Sink()
    async with running(clock, sink, state) as venue:
        await open_positions(venue, sink)
        await trio.sleep(1.5)
        stopped_at: int = venue._funding_ms
    clock.leapt += down_ms
    return stopped_at


async def test_a_restart_with_a_swap_removed_or_added_settles_the_swaps_it_runs(
    autojump_clock: object, tmp_path: Path
) -> None:
    state, clock = tmp_path / "paper.sqlite", Leap()
    second = Sink()
    with trio.fail_after(60):
        stopped_at = await run_then_stop(clock, state, 3_500)  # down for 3.5 s: 3 funding times
        only_linear = PaperVenue(CFG, [SWAP, "ETH-USDT-SWAP"], state_path=state, clock=clock)
        async with trio.open_nursery() as nursery:
            await nursery.start(only_linear.run, second)
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    times = times_of(second.account, SWAP)
    assert len(times) >= 3 and times == list(range(stopped_at + 1000, times[-1] + 1, 1000))
    assert {e.symbol for e in second.account} == {
        SWAP
    }  # the added swap holds nothing; the removed one runs not


async def test_several_swaps_in_one_catch_up_settle_time_by_time_in_the_same_order_again_after_a_kill(
    autojump_clock: object, tmp_path: Path
) -> None:
    state, clock = tmp_path / "paper.sqlite", Leap()
    third = Sink()
    with trio.fail_after(60):
        stopped_at = await run_then_stop(clock, state, 4_500)
        # committed at the start and killed before the hand-over (held), then handed over (third)
        for sink in (Sink(hold=True), third):
            async with running(clock, sink, state):
                await trio.sleep(0.05)
    caught_up = [e for e in third.account if int(e.event_id.rsplit("-", 1)[1]) > stopped_at]
    keys = [(e.ts, e.symbol) for e in caught_up]
    assert keys[:8] == [(stopped_at + 1000 * i, sym) for i in (1, 2, 3, 4) for sym in (SWAP, INV)]
    for e in caught_up:  # units: USDT from contracts x 0.01 BTC x mark; BTC from contracts x 100 USD / mark
        rate = model_rate(e.symbol, e.ts)
        if e.symbol == SWAP:  # a long of 2 pays a positive rate
            assert (e.currency, e.amount) == ("USDT", pytest.approx(-2 * 0.01 * e.price * rate, rel=1e-12))
        else:  # a short of 10 receives it
            assert (e.currency, e.amount) == ("BTC", pytest.approx(10 * 100 / e.price * rate, rel=1e-12))


async def test_a_liquidation_in_a_start_catch_up_killed_before_the_hand_over_is_handed_over_once(
    autojump_clock: object, tmp_path: Path
) -> None:
    state, clock = tmp_path / "paper.sqlite", Leap()
    first, third = Sink(), Sink()
    with trio.fail_after(60):
        async with running(clock, first, state, DRAINING) as venue:
            await market_buy(venue, first, "long", SWAP, 10.0)
            stopped_at = venue._funding_ms
        clock.leapt += 200 * 1000  # down for 200 s: the margin runs out after ~50 of its funding times
        for sink in (Sink(hold=True), third):  # committed at the start, killed before the hand-over; again
            async with running(clock, sink, state, DRAINING) as venue:
                await trio.sleep(0.05)
                assert (await venue.positions())[SWAP] == 0.0
                cash = (await venue.balances())["USDT"]
    assert cash >= 0.0
    kinds = [e.kind for e in third.account]
    assert kinds.count(AccountEventKind.LIQUIDATION) == 1 and kinds[-1] is AccountEventKind.LIQUIDATION
    funded = times_of([e for e in third.account if e.kind is AccountEventKind.FUNDING], SWAP)
    assert kinds.count(AccountEventKind.LIQUIDATION_WARNING) <= 1  # warned once on the way, not per time
    assert 40 <= len(funded) <= 60 and funded == list(range(stopped_at + 1000, funded[-1] + 1, 1000))
    assert third.account[-1].ts == funded[-1]  # at the funding time that used up the margin
    db = sqlite3.connect(state)
    try:
        ids = [r[0] for r in db.execute("SELECT event_id FROM account_changes")]
    finally:
        db.close()
    assert sorted(ids) == sorted(e.event_id for e in third.account)  # each once, all handed over


async def test_an_order_filled_after_a_stall_before_the_next_step_leaves_the_missed_times_on_the_old_position(
    autojump_clock: object,
) -> None:
    # the strategy's order waited in the socket while the venue was stalled: it may be taken before the
    # market loop's next step; the funding times the stall missed belong to the position held before it
    clock, sink = Leap(), Sink()
    with trio.fail_after(60):
        async with running(clock, sink) as venue:
            await market_buy(venue, sink, "long", SWAP, 2.0)
            await trio.sleep(1.5)
            before, settled = venue._funding_ms, len(sink.account)
            clock.leapt += 3_500  # 3 funding times missed
            fill = await market_buy(venue, sink, "more", SWAP, 8.0)  # before the loop wakes
            await trio.sleep(1.0)
    missed = [e for e in sink.account[settled:] if e.ts <= fill.ts]
    assert times_of(missed, SWAP) == list(range(before + 1000, fill.ts // 1000 * 1000 + 1, 1000))
    assert len(missed) >= 3
    for e in missed:  # on the long of 2, not the 10 after the fill
        assert e.amount == pytest.approx(-2 * 0.01 * e.price * model_rate(SWAP, e.ts), rel=1e-12)
    later = [e for e in sink.account[settled:] if e.ts > fill.ts]
    assert later and all(
        e.amount == pytest.approx(-10 * 0.01 * e.price * model_rate(SWAP, e.ts)) for e in later
    )
