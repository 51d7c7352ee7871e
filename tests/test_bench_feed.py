"""The benchmark's market feed (seqtrade.bench.feed): the paper venue publishing tickers at a set rate."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from seqtrade.bench.feed import BenchPaperVenue
from seqtrade.config import PaperConfig, parse_config
from seqtrade.models import OrderStatus, OrderType, Side, Ticker
from seqtrade.venues import venue_from_config
from seqtrade.venues.base import MarketData
from seqtrade.venues.paper import PaperVenue

from .test_paper_venue import SYM, Collector, limit, running


async def test_bench_mode_emits_the_set_rate_of_tickers(autojump_clock: trio.testing.MockClock) -> None:
    cfg = PaperConfig(bench_rate=20_000)
    with trio.fail_after(10):
        async with running(cfg, (SYM, "ETH-USDT"), cls=BenchPaperVenue) as (venue, sink):
            await trio.sleep(1.0005)
            n = len(sink.market)
            await trio.sleep(1.0)
            n2 = len(sink.market)
            # orders still work: a market order fills against the current synthetic book
            await venue.place_order(limit("m1", Side.BUY, None, 0.5, OrderType.MARKET))
            assert sink.of("m1")[-1].status is OrderStatus.FILLED
    assert n == pytest.approx(20_000, abs=20)
    assert n2 - n == pytest.approx(20_000, abs=20)
    assert all(type(m) is Ticker for m in sink.market)
    symbols = [m.symbol for m in sink.market[:6]]
    assert symbols == [SYM, "ETH-USDT"] * 3
    assert all(m.bid_price < m.ask_price for m in sink.market if isinstance(m, Ticker))


async def test_bench_mode_as_fast_as_possible() -> None:
    done = trio.Event()

    def count(_: MarketData) -> None:
        if len(sink.market) >= 50_000:
            done.set()

    sink = Collector(on_market=count)
    with trio.fail_after(10):
        async with running(PaperConfig(bench_rate=-1), sink=sink, cls=BenchPaperVenue):
            await done.wait()
    assert all(type(m) is Ticker for m in sink.market)


def test_the_config_key_selects_the_feed(tmp_path) -> None:
    """``venue.paper.bench_rate`` (what ``seqtrade bench`` writes) selects the feed; 0 the random walk."""
    bench = parse_config("[venue.paper]\nbench_rate = 1000.0\n", base_dir=str(tmp_path))
    plain = parse_config("", base_dir=str(tmp_path))
    assert type(venue_from_config(bench, {})) is BenchPaperVenue
    assert type(venue_from_config(plain, {})) is PaperVenue


@pytest.mark.parametrize("rest_first", [False, True])
async def test_market_orders_meet_the_last_published_book(
    autojump_clock: trio.testing.MockClock, rest_first: bool
) -> None:
    """Between two batches a market order meets each symbol's last published state, whether the
    engine saw every state of the batch (an order rested) or only the last one (none did); a resting
    buy fills on the first state whose ask crosses it."""
    cfg = PaperConfig(bench_rate=20_000)
    with trio.fail_after(10):
        async with running(cfg, (SYM, "ETH-USDT"), cls=BenchPaperVenue) as (venue, sink):
            await trio.sleep(0.0105)
            if rest_first:
                asks = [m.ask_price for m in sink.market if isinstance(m, Ticker) and m.symbol == SYM]
                await venue.place_order(limit("r1", Side.BUY, min(asks) - 1.0, 0.5))  # below every ask so far
            await trio.sleep(0.5)
            last = [m for m in sink.market if isinstance(m, Ticker) and m.symbol == SYM][-1]
            await venue.place_order(limit("m1", Side.BUY, None, 0.5, OrderType.MARKET))
            filled = sink.of("m1")[-1]
            assert filled.status is OrderStatus.FILLED
            assert filled.last_fill_price == last.ask_price
            if rest_first:
                rested = sink.of("r1")[-1]
                assert rested.status is OrderStatus.FILLED  # the walk crossed it some tick in between
                assert rested.last_fill_price <= rested.price  # type: ignore[operator]


async def test_a_stall_is_caught_up_in_chunks_not_one_burst(autojump_clock: trio.testing.MockClock) -> None:
    """After the venue's loop was held up (here: a 1 s jump of the clock, 20,000 tickers due), it hands
    them over a chunk at a time with the other tasks' turn in between, so the server's feed sends them
    (late) instead of its queue overflowing; none is skipped."""
    from seqtrade.bench.feed import _BENCH_CHUNK

    cfg = PaperConfig(bench_rate=20_000)
    seen: list[int] = []  # the tickers handed over so far, each time another task got its turn
    handed = [trio.Event()]

    def on_market(_: MarketData) -> None:
        handed[0].set()

    async def watch() -> None:
        while True:
            await handed[0].wait()
            handed[0] = trio.Event()
            seen.append(len(sink.market))

    sink = Collector(on_market=on_market)
    with trio.fail_after(10):
        async with running(cfg, (SYM,), sink=sink, cls=BenchPaperVenue):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await trio.sleep(0.0105)
                before = len(sink.market)
                autojump_clock.jump(1.0)
                await trio.sleep(0.0105)
                nursery.cancel_scope.cancel()
    assert len(sink.market) - before >= 20_000
    steps = [b - a for a, b in zip(seen, seen[1:], strict=False)]
    # Trio runs the tasks of one scheduling round in either order: the venue may hand over two chunks
    # before another task's turn comes, never more.
    assert max(steps) <= 2 * _BENCH_CHUNK
    assert sum(steps) >= 20_000 and len([x for x in steps if x >= _BENCH_CHUNK]) >= 10
