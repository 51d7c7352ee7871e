"""The paper venue's funding after a stall or a stop (venues/paper.py on venues/paper_funding.py),
through its sink in virtual time (``autojump_clock``): the venue's clock leaps as a stalled process's
does, and every funding time it missed settles once, at its own time and at the rate announced for
it, oldest first; across a restart with an account event committed but not handed over, no time is
settled twice nor skipped; a stall of days settles only the newest 1000 and says so. The real
process stopped with SIGSTOP, through the server and its journal, is in
tests/test_paper_funding_stall.py."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from seqtrade.config import PaperConfig
from seqtrade.models import AccountEventKind, FundingRate, OrderStatus, OrderType, Side
from seqtrade.venues.base import VenueAccountEvent, VenueOrder
from seqtrade.venues.paper import PaperVenue
from seqtrade.venues.paper_derivs import funding_rate
from seqtrade.venues.paper_funding import MAX_FUNDING_CATCH_UP

from .test_paper_derivs_venue import INV, SWAP, Sink, market_buy

T0 = 1_700_000_000_300  # the venue's clock at trio time 0 (ms), between two funding times
CFG = PaperConfig(
    tick_interval=0.1,
    trade_probability=0.0,
    balances={"USDT": 10_000.0, "BTC": 1.0},
    start_prices={SWAP: 60000.0, INV: 60000.0},
    funding_interval=1.0,
    funding_rate=0.0001,
    funding_rate_jitter=0.0002,  # each time its own rate
    seed=11,
)


class Leap:
    """The venue's clock: T0 plus trio's time plus the leaps taken (a stall: the venue's time jumps
    between two of its steps)."""

    def __init__(self) -> None:
        self.leapt = 0

    def __call__(self) -> int:
        return T0 + round(trio.current_time() * 1000) + self.leapt


@asynccontextmanager
async def running(
    clock: Callable[[], int], sink: Sink, state: Path | None = None, cfg: PaperConfig = CFG
) -> AsyncIterator[PaperVenue]:
    venue = PaperVenue(cfg, [SWAP, INV], state_path=state, clock=clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(venue.run, sink)
        yield venue
        nursery.cancel_scope.cancel()


def times_of(events: list[VenueAccountEvent], symbol: str) -> list[int]:
    out = []
    for e in events:
        if e.symbol == symbol:
            assert e.kind is AccountEventKind.FUNDING, e
            out.append(int(e.event_id.rsplit("-", 1)[1]))
    return out


def rate_paid(e: VenueAccountEvent, quantity: float, contract_value: float, inverse: bool) -> float:
    """The rate a funding event was settled at, from its amount and mark (longs pay when > 0)."""
    value = abs(quantity) * contract_value * (1 / e.price if inverse else e.price)
    return -e.amount / value * (1 if quantity > 0 else -1)


def model_rate(symbol: str, t: int) -> float:
    return funding_rate(symbol, t, base=CFG.funding_rate, jitter=CFG.funding_rate_jitter, seed=CFG.seed)


async def open_positions(venue: PaperVenue, sink: Sink) -> None:
    """Long 2 BTC-USDT-SWAP, short 10 BTC-USD-SWAP."""
    await market_buy(venue, sink, "long", SWAP, 2.0)
    await venue.place_order(VenueOrder("short", INV, Side.SELL, OrderType.MARKET, None, 10.0))
    assert await venue.positions() == {SWAP: 2.0, INV: -10.0}


async def test_a_stall_settles_every_missed_time_once_at_its_own_time_and_announced_rate(
    autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    clock, sink = Leap(), Sink()
    caplog.set_level(logging.INFO, logger="seqtrade.venues.paper")
    with trio.fail_after(60):
        async with running(clock, sink) as venue:
            await open_positions(venue, sink)
            await trio.sleep(2.5)  # two funding times while running
            before = venue._funding_ms
            clock.leapt += 5_500  # stalled for 5.5 s between two steps: 5 funding times missed, 6 due
            await trio.sleep(2.0)  # two more while running
    announced = {m.next_funding_time: m.funding_rate for m in sink.of_type(FundingRate) if m.symbol == SWAP}
    for sym, qty, ct_val, inverse in ((SWAP, 2.0, 0.01, False), (INV, -10.0, 100.0, True)):
        times = times_of(sink.account, sym)
        # every funding time from the first one after the position opened to the last, once, in order
        assert times == list(range(times[0], times[-1] + 1, 1000)), times
        assert len(times) >= 2 + 5 + 2 - 1
        assert {before + 1000 * i for i in range(1, 6)} <= set(times)  # the ones the stall missed
        for e in (e for e in sink.account if e.symbol == sym):
            t = int(e.event_id.rsplit("-", 1)[1])
            assert e.ts == t  # stamped with its own time, not the time it was settled at
            assert rate_paid(e, qty, ct_val, inverse) == pytest.approx(model_rate(sym, t), rel=1e-9)
            if sym == SWAP and t in announced:  # the rate published for that time before it
                assert announced[t] == pytest.approx(model_rate(sym, t), rel=1e-12)
    never_announced = [t for t in times_of(sink.account, SWAP) if t not in announced]
    assert len(never_announced) >= 4  # the times inside the stall: settled at the rate they would have had
    assert len({model_rate(SWAP, t) for t in times_of(sink.account, SWAP)}) > 1  # the rates differ
    caught_up = [r.getMessage() for r in caplog.records if "due at once" in r.getMessage()]
    assert len(caught_up) == 1 and caught_up[0].startswith("paper funding: 6 funding times due at once"), (
        caught_up
    )


async def test_a_stop_across_funding_times_and_a_kill_before_the_hand_over_settle_each_time_once(
    autojump_clock: object, tmp_path: Path
) -> None:
    state, clock = tmp_path / "paper.sqlite", Leap()
    first, held, third = Sink(), Sink(hold=True), Sink()
    with trio.fail_after(60):
        async with running(clock, first, state) as venue:
            await open_positions(venue, first)
            await trio.sleep(1.5)
            stopped_at = venue._funding_ms
        clock.leapt += 4_500  # the server was down 4.5 s: 4 funding times passed
        # it starts again, settles the 4 and commits them, and is killed before the server took them
        async with running(clock, held, state) as venue:
            assert venue._funding_ms >= stopped_at + 4000
            settled_at_restart = venue._funding_ms
            await trio.sleep(0.05)
        assert held.account == []
        async with running(clock, third, state) as venue:  # hands them over, settles none again
            await trio.sleep(1.2)
    for sym in (SWAP, INV):
        a, c = times_of(first.account, sym), times_of(third.account, sym)
        assert a and a[-1] == stopped_at
        assert a + c == list(range(a[0], c[-1] + 1, 1000)), (a, c)  # none twice, none skipped
        assert {stopped_at + 1000 * i for i in range(1, 5)} <= set(c)
        assert settled_at_restart in c
    # the paper account holds each settlement once, and its positions' funding sums them
    db = sqlite3.connect(state)
    try:
        ids = [
            r[0] for r in db.execute("SELECT event_id FROM account_changes WHERE event_id LIKE 'funding-%'")
        ]
        funding = dict(db.execute("SELECT symbol, funding FROM deriv_positions"))
    finally:
        db.close()
    events = first.account + third.account
    assert sorted(ids) == sorted(e.event_id for e in events)
    for sym in (SWAP, INV):
        assert funding[sym] == pytest.approx(sum(e.amount for e in events if e.symbol == sym), rel=1e-9)


async def test_a_stall_of_days_settles_the_newest_1000_times_and_logs_what_it_left(
    autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    clock, sink = Leap(), Sink()
    caplog.set_level(logging.INFO, logger="seqtrade.venues.paper")
    with trio.fail_after(60):
        async with running(clock, sink) as venue:
            await market_buy(venue, sink, "long", SWAP, 2.0)
            await trio.sleep(1.2)
            before, running_times = venue._funding_ms, len(sink.account)
            clock.leapt += 3 * 86_400_000  # three days at a 1 s interval: 259,200 funding times
            await trio.sleep(0.15)
            after = venue._funding_ms
    times = times_of(sink.account[running_times:], SWAP)[:MAX_FUNDING_CATCH_UP]
    assert times == list(range(after - (MAX_FUNDING_CATCH_UP - 1) * 1000, after + 1, 1000))
    missed = (after - before) // 1000
    assert missed >= 3 * 86_400
    skipped = [r for r in caplog.records if "beyond the cap" in r.getMessage()]
    assert len(skipped) == 1 and skipped[0].levelno == logging.WARNING
    assert skipped[0].getMessage().startswith(f"paper funding: {missed - MAX_FUNDING_CATCH_UP} funding times")
    assert f"from {before + 1000} ms on" in skipped[0].getMessage()
    at_once = [r.getMessage() for r in caplog.records if "due at once" in r.getMessage()]
    assert at_once == [
        f"paper funding: {MAX_FUNDING_CATCH_UP} funding times due at once ({times[0]} to {after} ms: the venue"
        f" did not run past them), each settled at its own time and rate: {MAX_FUNDING_CATCH_UP} account events"
    ]


async def test_at_a_start_the_missed_times_settle_on_the_position_before_the_first_book_fills_an_order(
    autojump_clock: object, tmp_path: Path
) -> None:
    state, clock = tmp_path / "paper.sqlite", Leap()
    first, second = Sink(), Sink()
    quiet = PaperConfig(**{**CFG.__dict__, "tick_interval": 3600.0})  # no step: the books the test sets
    with trio.fail_after(60):
        async with running(clock, first, state, quiet) as venue:
            await venue.set_market(SWAP, 50000.0, 50000.2)
            await market_buy(venue, first, "long", SWAP, 2.0)
            await venue.place_order(VenueOrder("tp", SWAP, Side.SELL, OrderType.LIMIT, 55000.0, 2.0))
            stopped_at = venue._funding_ms
        clock.leapt += 3_500  # down for 3.5 s: 3 funding times passed with the long of 2 open
        # the market opens at 60000: its first book fills the take-profit at once
        async with running(clock, second, state, quiet) as venue:
            assert second.of("tp")[-1].status is OrderStatus.FILLED
            assert (await venue.positions())[SWAP] == 0.0
    funding = [e for e in second.account if e.symbol == SWAP]
    assert times_of(funding, SWAP) == [stopped_at + 1000, stopped_at + 2000, stopped_at + 3000]
    for e in funding:  # on the long of 2, at the mark the market opened at
        assert e.price == pytest.approx(60000.0, abs=0.2) and e.ts == int(e.event_id.rsplit("-", 1)[1])
        assert rate_paid(e, 2.0, 0.01, False) == pytest.approx(model_rate(SWAP, e.ts), rel=1e-9)
