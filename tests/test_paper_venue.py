"""The paper venue end to end: synthetic market, order lifecycles through a sink, bench mode,
cancel-all-after. Timing runs on trio's virtual clock (``autojump_clock``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from seqtrade.config import PaperConfig, load_config
from seqtrade.models import Book, OrderStatus, OrderType, Side, Ticker, Trade
from seqtrade.venues.base import EventKind, MarketData, OrderEvent, Venue, VenueOrder
from seqtrade.venues.paper import PaperVenue

SYM = "BTC-USDT"
# A market that keeps still: the walk's next step is an hour away, and no public trades.
# Its account is rich enough for any order of these tests (money: tests/test_paper_account.py).
QUIET = PaperConfig(
    tick_interval=3600.0,
    trade_probability=0.0,
    lot_size=0.001,
    min_size=0.001,
    balances={"USDT": 10_000_000.0, "BTC": 1000.0},
)


class Collector:
    """A VenueSink that keeps everything it is given."""

    def __init__(self, on_market: Callable[[MarketData], None] | None = None) -> None:
        self.market: list[MarketData] = []
        self.events: list[OrderEvent] = []
        self.connected: list[bool] = []
        self._send, self.received = trio.open_memory_channel[OrderEvent](math.inf)
        self._on_market = on_market

    def publish_market(self, msg: MarketData) -> None:
        self.market.append(msg)
        if self._on_market is not None:
            self._on_market(msg)

    async def order_event(self, event: OrderEvent) -> None:
        self.events.append(event)
        self._send.send_nowait(event)

    def set_connected(self, connected: bool) -> None:
        self.connected.append(connected)

    def of(self, venue_order_id: str) -> list[OrderEvent]:
        return [ev for ev in self.events if ev.venue_order_id == venue_order_id]

    def of_type(self, kind: type[MarketData]) -> list[MarketData]:
        return [m for m in self.market if isinstance(m, kind)]


@asynccontextmanager
async def running(
    cfg: PaperConfig,
    symbols: tuple[str, ...] = (SYM,),
    sink: Collector | None = None,
    cls: type[PaperVenue] = PaperVenue,
) -> AsyncIterator[tuple[PaperVenue, Collector]]:
    venue = cls(cfg, list(symbols))
    sink = sink or Collector()
    async with trio.open_nursery() as nursery:
        await nursery.start(venue.run, sink)
        yield venue, sink
        nursery.cancel_scope.cancel()


def limit(
    oid: str, side: Side, price: float | None, qty: float, kind: OrderType = OrderType.LIMIT
) -> VenueOrder:
    return VenueOrder(oid, SYM, side, kind, price, qty)


# ----------------------------------------------------------------------------- the market


async def test_started_connected_and_instruments() -> None:
    venue = PaperVenue(QUIET, [SYM, "ETH-USDT"])
    assert isinstance(venue, Venue) and venue.name == "paper"
    inst = venue.instruments[SYM]
    assert (inst.tick_size, inst.lot_size, inst.min_size, inst.code) == (0.1, 0.001, 0.001, None)
    with trio.fail_after(5):
        async with running(QUIET, (SYM, "ETH-USDT")) as (venue, sink):
            assert sink.connected == [True]
            # the first snapshot of every symbol is out before started
            assert {t.symbol for t in sink.of_type(Ticker)} == {SYM, "ETH-USDT"}
    assert sink.connected == [True, False]


async def test_start_prices() -> None:
    cfg = dataclasses.replace(QUIET, start_prices={"SOL-USDT": 150.0})
    with trio.fail_after(5):
        async with running(cfg, ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XYZ-USD")) as (_, sink):
            mids = {t.symbol: (t.bid_price + t.ask_price) / 2 for t in sink.of_type(Ticker)}  # type: ignore[union-attr]
    assert mids == {
        "BTC-USDT": pytest.approx(60_000, abs=1),
        "ETH-USDT": pytest.approx(3_000, abs=1),
        "SOL-USDT": pytest.approx(150, abs=1),
        "XYZ-USD": pytest.approx(100, abs=1),
    }


def on_grid(value: float, step: float) -> bool:
    return abs(value / step - round(value / step)) < 1e-6


async def test_random_walk_stays_on_the_grid_with_bid_below_ask(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cfg = PaperConfig(volatility=0.002, trade_probability=0.5)
    with trio.fail_after(600):
        async with running(cfg, (SYM, "ETH-USDT")) as (_, sink):
            await trio.sleep(100.1)  # 400 steps per symbol
    tickers = sink.of_type(Ticker)
    books = sink.of_type(Book)
    trades = sink.of_type(Trade)
    assert len(tickers) == len(books) == 2 * 401
    assert 200 < len(trades) < 600
    volumes: dict[str, float] = {}
    for t in tickers:
        assert isinstance(t, Ticker)
        assert t.bid_price < t.ask_price
        assert on_grid(t.bid_price, cfg.tick_size) and on_grid(t.ask_price, cfg.tick_size)
        assert t.ask_price - t.bid_price == pytest.approx(cfg.spread_ticks * cfg.tick_size)
        assert t.volume_24h >= volumes.get(t.symbol, 0.0)
        volumes[t.symbol] = t.volume_24h
        assert t.ts > 1_600_000_000_000  # ms wall clock
    for b in books:
        assert isinstance(b, Book)
        assert len(b.bids) == len(b.asks) == 5
        assert [p for p, _ in b.bids] == sorted((p for p, _ in b.bids), reverse=True)
        assert [p for p, _ in b.asks] == sorted(p for p, _ in b.asks)
        assert b.bids[0][0] < b.asks[0][0]
        for price, size in b.bids + b.asks:
            assert on_grid(price, cfg.tick_size) and on_grid(size, cfg.lot_size)
            assert 0.5 * cfg.level_size - cfg.lot_size <= size <= 1.5 * cfg.level_size
    ids = [int(t.trade_id) for t in trades if isinstance(t, Trade)]
    assert ids == sorted(set(ids))
    for tr in trades:
        assert isinstance(tr, Trade) and tr.side in ("buy", "sell") and tr.size > 0
    assert volumes[SYM] > 0


def market_without_ts(sink: Collector) -> list[MarketData]:
    return [dataclasses.replace(m, ts=0) for m in sink.market]


async def test_seeded_runs_repeat(autojump_clock: trio.testing.MockClock) -> None:
    runs = []
    for seed in (7, 7, 8):
        with trio.fail_after(100):
            async with running(PaperConfig(seed=seed), (SYM, "ETH-USDT")) as (_, sink):
                await trio.sleep(10.1)  # between two steps: trio orders simultaneous wake-ups at random
        runs.append(market_without_ts(sink))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


# ----------------------------------------------------------------------------- order lifecycles


async def test_limit_rests_then_fills_partially_and_fully_as_maker() -> None:
    with trio.fail_after(5):
        async with running(QUIET) as (venue, sink):
            await venue.set_market(SYM, 100.0, 100.2, bid_size=1.0, ask_size=1.0)
            await venue.place_order(limit("l1", Side.BUY, 100.1, 3.0))
            (acc,) = sink.of("l1")
            assert acc.status is OrderStatus.ACCEPTED and acc.kind is EventKind.UPDATE
            assert acc.exchange_order_id and acc.price == 100.1 and acc.quantity == pytest.approx(3.0)
            # the ask comes down to 100.1 with 2 there: a partial fill at our price
            await venue.set_market(SYM, 99.9, 100.1, ask_size=2.0)
            ev = sink.of("l1")[-1]
            assert ev.status is OrderStatus.PARTIALLY_FILLED
            assert (round(ev.last_fill_quantity, 9), ev.last_fill_price) == (2.0, 100.1)
            assert ev.fee == pytest.approx(QUIET.maker_fee * 2 * 100.1)
            # a public sell prints at our price: the rest fills
            await venue.print_trade(SYM, 100.1, 5.0, Side.SELL)
            ev = sink.of("l1")[-1]
            assert ev.status is OrderStatus.FILLED and ev.filled_quantity == pytest.approx(3.0)
            assert ev.avg_price == pytest.approx(100.1) and ev.fee == pytest.approx(
                QUIET.maker_fee * 3 * 100.1
            )
            assert len({e.trade_id for e in sink.of("l1") if e.trade_id}) == 2
            assert await venue.open_orders() == []
            assert await venue.positions() == {SYM: pytest.approx(3.0)}
            paid = 3 * 100.1 * (1 + QUIET.maker_fee)
            assert (await venue.balances())["USDT"] == pytest.approx(QUIET.balances["USDT"] - paid)
            assert (await venue.balances())["BTC"] == pytest.approx(QUIET.balances["BTC"] + 3)
            # published market data: tickers and books from set_market, the trade
            assert isinstance(sink.market[-1], Trade) and sink.market[-1].price == 100.1
            tickers = sink.of_type(Ticker)
            assert isinstance(tickers[-1], Ticker) and tickers[-1].ask_price == 100.1


async def test_market_order_walks_the_visible_book() -> None:
    with trio.fail_after(5):
        async with running(QUIET) as (venue, sink):
            await venue.set_market(SYM, 100.0, 100.2, ask_size=0.5)  # deeper levels: level_size = 1
            await venue.place_order(limit("m1", Side.BUY, None, 2.0, OrderType.MARKET))
            evs = sink.of("m1")
            assert [e.status for e in evs] == [
                OrderStatus.ACCEPTED,
                OrderStatus.PARTIALLY_FILLED,
                OrderStatus.PARTIALLY_FILLED,
                OrderStatus.FILLED,
            ]
            assert [(round(e.last_fill_quantity, 9), e.last_fill_price) for e in evs[1:]] == [
                (0.5, 100.2),
                (1.0, 100.3),
                (0.5, 100.4),
            ]
            assert evs[-1].fee == pytest.approx(QUIET.taker_fee * (50.1 + 100.3 + 50.2))


async def test_post_only_ioc_fok() -> None:
    with trio.fail_after(5):
        async with running(QUIET) as (venue, sink):
            await venue.set_market(SYM, 100.0, 100.2, bid_size=1.0, ask_size=1.0)
            await venue.place_order(limit("p1", Side.BUY, 100.2, 1.0, OrderType.POST_ONLY))
            (rej,) = sink.of("p1")
            assert rej.status is OrderStatus.REJECTED and "post_only" in rej.error_msg
            await venue.place_order(limit("p2", Side.SELL, 100.2, 1.0, OrderType.POST_ONLY))
            assert [e.status for e in sink.of("p2")] == [OrderStatus.ACCEPTED]

            await venue.place_order(limit("i1", Side.SELL, 99.9, 3.0, OrderType.IOC))
            evs = sink.of("i1")
            assert [e.status for e in evs] == [
                OrderStatus.ACCEPTED,
                OrderStatus.PARTIALLY_FILLED,
                OrderStatus.PARTIALLY_FILLED,
                OrderStatus.CANCELLED,
            ]
            assert evs[-1].filled_quantity == pytest.approx(2.0) and "IOC" in evs[-1].error_msg

            await venue.place_order(limit("f1", Side.BUY, 100.3, 5.0, OrderType.FOK))
            evs = sink.of("f1")
            assert [e.status for e in evs] == [OrderStatus.ACCEPTED, OrderStatus.CANCELLED]
            assert evs[-1].filled_quantity == 0 and "FOK" in evs[-1].error_msg
            await venue.place_order(limit("f2", Side.BUY, 100.3, 2.0, OrderType.FOK))
            assert sink.of("f2")[-1].status is OrderStatus.FILLED


async def test_cancel_and_amend_through_the_venue() -> None:
    with trio.fail_after(5):
        async with running(QUIET) as (venue, sink):
            await venue.set_market(SYM, 100.0, 100.2)
            await venue.place_order(limit("l1", Side.BUY, 99.0, 1.0))
            await venue.amend_order("l1", SYM, 99.5, 2.0)
            amended = sink.of("l1")[-1]
            assert amended.kind is EventKind.UPDATE and (amended.price, amended.quantity) == (99.5, 2.0)
            (open_,) = await venue.open_orders()
            assert open_.venue_order_id == "l1" and open_.price == 99.5
            await venue.cancel_order("l1", SYM)
            assert sink.of("l1")[-1].status is OrderStatus.CANCELLED
            await venue.cancel_order("l1", SYM)
            failed = sink.of("l1")[-1]
            assert failed.kind is EventKind.CANCEL_FAILED and failed.status is OrderStatus.CANCELLED
            await venue.amend_order("l1", SYM, 99.0, None)
            failed = sink.of("l1")[-1]
            assert failed.kind is EventKind.AMEND_FAILED and failed.status is OrderStatus.CANCELLED
            await venue.cancel_order("ghost", SYM)
            await venue.amend_order("ghost", SYM, 99.0, None)
            assert [(e.kind, e.status, e.error_msg) for e in sink.of("ghost")] == [
                (EventKind.CANCEL_FAILED, OrderStatus.REJECTED, "unknown order"),
                (EventKind.AMEND_FAILED, OrderStatus.REJECTED, "unknown order"),
            ]
            q = await venue.query_order("l1", SYM)
            assert q is not None and q.status is OrderStatus.CANCELLED and q.quantity == pytest.approx(2.0)
            assert await venue.query_order("ghost", SYM) is None


async def test_invalid_order_is_rejected() -> None:
    with trio.fail_after(5):
        async with running(QUIET) as (venue, sink):
            await venue.place_order(limit("x1", Side.BUY, 100.05, 1.0))
            await venue.place_order(limit("x2", Side.BUY, 100.0, 0.0005))
            assert [(e.status, "tick" in e.error_msg) for e in sink.of("x1")] == [
                (OrderStatus.REJECTED, True)
            ]
            assert [(e.status, "lot" in e.error_msg) for e in sink.of("x2")] == [(OrderStatus.REJECTED, True)]


async def test_random_walk_fills_a_resting_order(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(3600):
        async with running(PaperConfig(volatility=0.001)) as (venue, sink):
            first = sink.of_type(Ticker)[0]
            assert isinstance(first, Ticker)
            await venue.place_order(VenueOrder("r1", SYM, Side.BUY, OrderType.LIMIT, first.bid_price, 0.5))
            while True:
                ev = await sink.received.receive()
                if ev.status is OrderStatus.FILLED:
                    break
    fills = [e for e in sink.of("r1") if e.trade_id]
    assert fills and all(e.last_fill_price == first.bid_price for e in fills)
    assert fills[-1].fee == pytest.approx(PaperConfig().maker_fee * 0.5 * first.bid_price)


async def test_events_of_concurrent_callers_stay_in_order() -> None:
    """A sink that yields inside order_event lets callers interleave; each order's events still
    arrive accepted -> fills -> terminal, and nothing is lost."""

    class YieldingSink(Collector):
        async def order_event(self, event: OrderEvent) -> None:
            await trio.lowlevel.checkpoint()
            await super().order_event(event)

    with trio.fail_after(5):
        async with running(QUIET, sink=YieldingSink()) as (venue, sink):
            await venue.set_market(SYM, 100.0, 100.2, ask_size=50.0)
            async with trio.open_nursery() as nursery:
                for i in range(20):
                    kind = OrderType.IOC if i % 2 else OrderType.LIMIT
                    nursery.start_soon(venue.place_order, limit(f"o{i}", Side.BUY, 100.2, 1.0 + i, kind))
            # every caller has returned, and the last one delivering has delivered everything
            for i in range(20):
                evs = sink.of(f"o{i}")
                assert evs[0].status is OrderStatus.ACCEPTED
                filled = [e.filled_quantity for e in evs]
                assert filled == sorted(filled)
                now = await venue.query_order(f"o{i}", SYM)
                assert now is not None
                assert (evs[-1].status, evs[-1].filled_quantity) == (now.status, now.filled_quantity)
    assert len({e.trade_id for e in sink.events if e.trade_id}) == sum(1 for e in sink.events if e.trade_id)


async def test_place_order_before_run_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="run"):
        await PaperVenue(QUIET, [SYM]).place_order(limit("x", Side.BUY, 100.0, 1.0))


# ----------------------------------------------------------------------------- cancel-all-after


async def test_cancel_all_after_fires_unless_rearmed(autojump_clock: trio.testing.MockClock) -> None:
    cfg = dataclasses.replace(QUIET, tick_interval=1.0)
    with trio.fail_after(100):
        async with running(cfg) as (venue, sink):
            await venue.set_market(SYM, 100.0, 100.2)
            await venue.cancel_all_after(10)
            await venue.place_order(limit("a", Side.BUY, 50.0, 1.0))
            await venue.place_order(limit("b", Side.SELL, 500.0, 1.0))
            await trio.sleep(8)
            await venue.cancel_all_after(10)  # re-armed: now fires at t=18
            await trio.sleep(8)
            assert len(await venue.open_orders()) == 2
            while True:  # drain the events so far
                try:
                    sink.received.receive_nowait()
                except trio.WouldBlock:
                    break
            start = trio.current_time()
            ev = await sink.received.receive()  # the first event since: the switch firing
            assert trio.current_time() - start == pytest.approx(2, abs=0.01)
            assert ev.status is OrderStatus.CANCELLED and ev.error_msg == "cancel-all-after triggered"
            assert await venue.open_orders() == []
            assert {e.venue_order_id for e in sink.events if e.status is OrderStatus.CANCELLED} == {"a", "b"}
            # it disarmed when it fired
            await venue.place_order(limit("c", Side.BUY, 50.0, 1.0))
            await trio.sleep(60)
            assert [e.venue_order_id for e in await venue.open_orders()] == ["c"]


async def test_cancel_all_after_zero_disarms(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with running(QUIET) as (venue, _):
            await venue.place_order(limit("a", Side.BUY, 50.0, 1.0))
            await venue.cancel_all_after(10)
            await trio.sleep(5)
            await venue.cancel_all_after(0)
            await trio.sleep(30)
            assert len(await venue.open_orders()) == 1


# ----------------------------------------------------------------------------- the shipped config (issue 14)

SHIPPED = Path(__file__).resolve().parents[1] / "config.toml"


async def test_the_shipped_config_refuses_a_million_btc_market_sell() -> None:
    cfg = dataclasses.replace(load_config(SHIPPED).venue.paper, tick_interval=3600.0, state_path="")
    with trio.fail_after(5):
        async with running(cfg, ("BTC-USDT", "ETH-USDT")) as (venue, sink):
            await venue.place_order(limit("m1", Side.SELL, None, 1e6, OrderType.MARKET))
            (ev,) = sink.of("m1")
            assert ev.status is OrderStatus.REJECTED and ev.filled_quantity == 0
            assert ev.error_msg == "insufficient BTC balance (code 51008): needed 1000000, available 1"
            assert await venue.positions() == {"BTC-USDT": 0.0, "ETH-USDT": 0.0}


async def test_with_the_coins_a_million_btc_market_sell_takes_the_visible_depth_only() -> None:
    shipped = load_config(SHIPPED).venue.paper
    cfg = dataclasses.replace(shipped, tick_interval=3600.0, state_path="", balances={"BTC": 2e6})
    with trio.fail_after(5):
        async with running(cfg, ("BTC-USDT",)) as (venue, sink):
            book = sink.of_type(Book)[-1]
            assert isinstance(book, Book)
            await venue.place_order(limit("m1", Side.SELL, None, 1e6, OrderType.MARKET))
            evs = sink.of("m1")
            fills = [(e.last_fill_quantity, e.last_fill_price) for e in evs if e.trade_id]
            assert [p for _, p in fills] == [lv[0] for lv in book.bids]  # one fill per level, its price
            assert [q for q, _ in fills] == pytest.approx([lv[1] for lv in book.bids])
            visible = sum(lv[1] for lv in book.bids)
            assert evs[-1].status is OrderStatus.CANCELLED and evs[-1].filled_quantity == pytest.approx(
                visible
            )
            assert "beyond the visible book" in evs[-1].error_msg
            assert (await venue.balances())["BTC"] == pytest.approx(2e6 - visible)  # the rest is free again
            assert venue.account()["BTC"].frozen == 0
