"""OkxVenue end to end against the fake OKX exchange (tests/fakeokx), plus the governor on virtual time.

Every test is bounded by ``trio.fail_after``; waits are on conditions of the collected output, never
on sleeps. A ``live`` test talks to OKX demo trading when keys are in the environment.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from seqtrade.config import OkxConfig
from seqtrade.errors import VenueAuthError, VenueError
from seqtrade.models import Book, OrderStatus, OrderType, Side, Ticker, Trade
from seqtrade.venues.base import EventKind, MarketData, OrderEvent, VenueOrder
from seqtrade.venues.okx import OkxCredentials, OkxVenue
from seqtrade.venues.okx.governor import Governor, Op
from seqtrade.venues.okx.ws import Backoff

# ----------------------------------------------------------------------------- governor (virtual time)


async def test_governor_keeps_every_window_under_the_limit(autojump_clock: trio.testing.MockClock) -> None:
    gov: Governor[int] = Governor(limit=60, period=2.0, margin=0.1, max_queue=150)
    sent: list[tuple[float, Op, int]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(gov.run, lambda op, item: sent.append((trio.current_time(), op, item)))
        for i in range(150):
            assert gov.submit(Op.PLACE, "BTC-USDT", i) is None
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    places = [t for t, op, _ in sent if op is Op.PLACE]
    assert len(places) == 150 and [i for _, _, i in sent] == list(range(150))
    for k in range(len(places) - 60):
        assert places[k + 60] - places[k] >= 2.0  # never 61 in any 2 s window


async def test_governor_bounds_the_queue_and_sends_cancels_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gov: Governor[str] = Governor(limit=2, period=2.0, margin=0.0, max_queue=3)
    sent: list[tuple[Op, str]] = []
    async with trio.open_nursery() as nursery:
        for i in range(5):
            assert gov.submit(Op.PLACE, "X", f"p{i}") is None
        refused = gov.submit(Op.PLACE, "X", "p5")
        assert refused is not None and "rate limit" in refused and "X" in refused
        assert gov.submit(Op.PLACE, "Y", "y0") is None  # other instruments are independent
        assert gov.submit(Op.CANCEL, "X", "c0") is None
        assert gov.remove(Op.PLACE, "X", lambda s: s == "p4") == "p4"
        await nursery.start(gov.run, lambda op, item: sent.append((op, item)))
        await trio.sleep(0.001)
        assert sent[0] == (Op.CANCEL, "c0")  # cancels before the new orders released with them
        assert [i for _, i in sent] == ["c0", "p0", "p1", "y0"]
        await trio.sleep(2.0)
        assert [i for _, i in sent][4:] == ["p2", "p3"]
        nursery.cancel_scope.cancel()


async def test_governor_acquire_waits_for_a_slot(autojump_clock: trio.testing.MockClock) -> None:
    gov: Governor[str] = Governor(limit=2, period=1.0, margin=0.0)
    t0 = trio.current_time()
    for _ in range(5):
        await gov.acquire(Op.QUERY, "X")
    assert trio.current_time() - t0 == pytest.approx(2.0)


def test_backoff_grows_with_jitter_and_resets() -> None:
    b = Backoff(0.5, 4.0, rng=lambda: 1.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    b.reset()
    low = Backoff(0.5, 4.0, rng=lambda: 0.0)
    assert b.next() == 0.5 and low.next() == 0.25


# ----------------------------------------------------------------------------- against the fake

try:
    from tests.fakeokx import open_fake_okx
except ImportError:  # the fake is built alongside; until it imports, its tests are skipped
    try:
        from tests.fakeokx.server import open_fake_okx
    except ImportError:
        open_fake_okx = None

needs_fake = pytest.mark.skipif(open_fake_okx is None, reason="tests.fakeokx.open_fake_okx not importable")

CREDS = OkxCredentials("fake-key", "fake-secret", "fake-pass")
SYMBOLS = ["BTC-USDT", "ETH-USDT"]


class Collector:
    """A real VenueSink: lists of what arrived, a memory channel of order events, change waits."""

    def __init__(self) -> None:
        self.market: list[MarketData] = []
        self.events: list[OrderEvent] = []
        self.connected: list[bool] = []
        self._send, self.receive = trio.open_memory_channel[OrderEvent](10_000)
        self._changed = trio.Event()

    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def publish_market(self, msg: MarketData) -> None:
        self.market.append(msg)
        self._touch()

    async def order_event(self, event: OrderEvent) -> None:
        self.events.append(event)
        self._send.send_nowait(event)
        self._touch()

    def set_connected(self, connected: bool) -> None:
        self.connected.append(connected)
        self._touch()

    async def until(self, cond: Callable[[], Any]) -> Any:
        while not (result := cond()):
            await self._changed.wait()
        return result

    def of(self, vid: str) -> list[OrderEvent]:
        return [e for e in self.events if e.venue_order_id == vid]

    async def final(self, vid: str, *statuses: OrderStatus) -> OrderEvent:
        want = statuses or (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED)
        return await self.until(
            lambda: next((e for e in self.of(vid) if e.status in want and e.kind is EventKind.UPDATE), None)
        )


def config(fake: Any, **kw: Any) -> OkxConfig:
    base = OkxConfig(
        demo=True,
        rest_url=fake.rest_url,
        ws_public_url=fake.ws_public_url,
        ws_private_url=fake.ws_private_url,
        reconnect_min=0.05,
        reconnect_max=0.2,
        request_timeout=2.0,
    )
    return replace(base, **kw)


@asynccontextmanager
async def running(fake: Any, **kw: Any) -> AsyncIterator[tuple[OkxVenue, Collector]]:
    venue = OkxVenue(config(fake, **kw), SYMBOLS, CREDS)
    sink = Collector()
    async with trio.open_nursery() as nursery:
        await nursery.start(venue.run, sink)
        yield venue, sink
        nursery.cancel_scope.cancel()


def order(
    vid: str, t: OrderType, side: Side, price: float | None, qty: float, symbol: str = "BTC-USDT"
) -> VenueOrder:
    return VenueOrder(vid, symbol, side, t, price, qty)


def header(request: Any, name: str) -> str:
    return {k.lower(): v for k, v in request.headers.items()}[name.lower()]


TRANSPORTS = pytest.mark.parametrize("transport", ["ws", "rest"])


@needs_fake
async def test_start_instruments_and_market_data() -> None:
    with trio.fail_after(10):
        async with open_fake_okx() as fake, running(fake) as (venue, sink):
            inst = venue.instruments["BTC-USDT"]
            assert (inst.tick_size, inst.lot_size, inst.min_size, inst.code) == (0.1, 1e-8, 1e-5, 1000000000)
            assert venue.instruments["ETH-USDT"].code == 1000000001
            await sink.until(lambda: sink.connected == [True])
            fake.set_market("BTC-USDT", bid=100.0, ask=100.2, bid_sz=1.0, ask_sz=2.0)
            fake.print_trade("BTC-USDT", px=100.1, sz=0.5, side="buy")
            tick = await sink.until(
                lambda: next((m for m in sink.market if isinstance(m, Ticker) and m.bid_price == 100.0), None)
            )
            assert (tick.symbol, tick.ask_price, tick.ask_size) == ("BTC-USDT", 100.2, 2.0)
            book = await sink.until(
                lambda: next((m for m in sink.market if isinstance(m, Book) and m.bids), None)
            )
            assert book.bids[0] == [100.0, 1.0] and book.asks[0] == [100.2, 2.0]
            trade = await sink.until(lambda: next((m for m in sink.market if isinstance(m, Trade)), None))
            assert (trade.price, trade.size, trade.side) == (100.1, 0.5, "buy")
            # every request was made with the demo header
            rest = [r for r in fake.requests if r.transport == "rest"]
            assert rest and all(r.headers.get("x-simulated-trading") == "1" for r in rest)


@needs_fake
async def test_unknown_symbol_and_bad_keys_fail_at_start() -> None:
    with trio.fail_after(10):
        async with open_fake_okx() as fake:
            venue = OkxVenue(config(fake), ["NOPE-USDT"], CREDS)
            with pytest.raises(VenueError, match="NOPE-USDT"):
                await venue.run(Collector())
            bad = OkxVenue(config(fake), SYMBOLS, OkxCredentials("fake-key", "wrong", "fake-pass"))
            with pytest.raises(VenueAuthError, match="login refused"):
                await bad.run(Collector())


@needs_fake
@TRANSPORTS
async def test_every_order_type(transport: str) -> None:
    with trio.fail_after(15):
        async with open_fake_okx() as fake, running(fake, order_transport=transport) as (venue, sink):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.2, bid_sz=1.0, ask_sz=1.0)
            await venue.place_order(order("lim1", OrderType.LIMIT, Side.BUY, 99.9, 0.1 + 0.2))
            acc = await sink.final("lim1", OrderStatus.ACCEPTED)
            assert acc.exchange_order_id and acc.price == 99.9 and acc.quantity == pytest.approx(0.3)
            await venue.place_order(order("po1", OrderType.POST_ONLY, Side.BUY, 100.2, 0.1))
            po = await sink.final("po1")
            assert po.status is OrderStatus.CANCELLED and "31" in po.error_msg
            await venue.place_order(order("ioc1", OrderType.IOC, Side.BUY, 100.2, 1.5))
            ioc = await sink.final("ioc1")
            assert ioc.status is OrderStatus.CANCELLED and ioc.filled_quantity == pytest.approx(1.0)
            assert any(e.status is OrderStatus.PARTIALLY_FILLED for e in sink.of("ioc1"))
            fake.set_market("BTC-USDT", bid=100.0, ask=100.2, bid_sz=1.0, ask_sz=1.0)
            await venue.place_order(order("fok1", OrderType.FOK, Side.BUY, 100.2, 5.0))
            fok = await sink.final("fok1")
            assert fok.status is OrderStatus.CANCELLED and fok.filled_quantity == 0
            await venue.place_order(order("mkt1", OrderType.MARKET, Side.BUY, None, 0.25))
            mkt = await sink.final("mkt1")
            assert mkt.status is OrderStatus.FILLED and mkt.filled_quantity == pytest.approx(0.25)
            assert mkt.avg_price == pytest.approx(100.2) and mkt.fee > 0
            await venue.place_order(order("mkts1", OrderType.MARKET, Side.SELL, None, 0.25))
            assert (await sink.final("mkts1")).status is OrderStatus.FILLED
            # wire details: instIdCode + expTime on WS, instId + expTime header on REST, base_ccy buys
            places = [
                r
                for r in fake.requests
                if r.op == "order"
                or (r.transport == "rest" and r.method == "POST" and r.path == "/api/v5/trade/order")
            ]
            assert len(places) == 6
            for r in places:
                if transport == "ws":
                    arg = r.body["args"][0]
                    assert (
                        arg["instIdCode"] == 1000000000
                        and "instId" not in arg
                        and int(r.body["expTime"]) > r.ts
                    )
                else:
                    arg = r.body
                    assert arg["instId"] == "BTC-USDT" and int(header(r, "expTime")) > r.ts
            mkt_arg = next(r for r in places if (r.body.get("args") or [r.body])[0]["clOrdId"] == "mkt1")
            assert (mkt_arg.body.get("args") or [mkt_arg.body])[0]["tgtCcy"] == "base_ccy"
            lim_arg = next(r for r in places if (r.body.get("args") or [r.body])[0]["clOrdId"] == "lim1")
            assert (lim_arg.body.get("args") or [lim_arg.body])[0]["sz"] == "0.3"


@needs_fake
@TRANSPORTS
async def test_partial_fills_amend_cancel(transport: str) -> None:
    with trio.fail_after(15):
        async with open_fake_okx() as fake, running(fake, order_transport=transport) as (venue, sink):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            await venue.place_order(order("pf1", OrderType.LIMIT, Side.BUY, 100.1, 1.0))
            await sink.final("pf1", OrderStatus.ACCEPTED)
            fake.print_trade("BTC-USDT", px=100.1, sz=0.4, side="sell")
            e1 = await sink.until(lambda: next((e for e in sink.of("pf1") if e.filled_quantity > 0), None))
            assert (e1.status, e1.filled_quantity, e1.last_fill_quantity, e1.last_fill_price) == (
                OrderStatus.PARTIALLY_FILLED,
                pytest.approx(0.4),
                pytest.approx(0.4),
                100.1,
            )
            # amend the rest: price up, then total quantity down
            await venue.amend_order("pf1", "BTC-USDT", 100.2, None)
            am = await sink.until(lambda: next((e for e in sink.of("pf1") if e.price == 100.2), None))
            assert am.filled_quantity == pytest.approx(0.4)
            await venue.amend_order("pf1", "BTC-USDT", None, 0.8)
            await sink.until(
                lambda: next((e for e in sink.of("pf1") if e.quantity == pytest.approx(0.8)), None)
            )
            fake.print_trade("BTC-USDT", px=100.2, sz=1.0, side="sell")
            done = await sink.final("pf1")
            assert done.status is OrderStatus.FILLED and done.filled_quantity == pytest.approx(0.8)
            assert done.avg_price == pytest.approx((0.4 * 100.1 + 0.4 * 100.2) / 0.8)
            fills = [e for e in sink.of("pf1") if e.trade_id]
            assert len(fills) == len({e.trade_id for e in fills}) == 2
            # cancel and amend of a filled order fail with the exchange's codes
            await venue.cancel_order("pf1", "BTC-USDT")
            cf = await sink.until(
                lambda: next((e for e in sink.of("pf1") if e.kind is EventKind.CANCEL_FAILED), None)
            )
            assert cf.error_msg.startswith("51400") and cf.status is OrderStatus.FILLED
            await venue.amend_order("pf1", "BTC-USDT", 100.3, None)
            af = await sink.until(
                lambda: next((e for e in sink.of("pf1") if e.kind is EventKind.AMEND_FAILED), None)
            )
            assert af.error_msg.startswith("51503")
            # a plain cancel of a resting order
            await venue.place_order(order("cx1", OrderType.LIMIT, Side.SELL, 101.0, 0.2))
            await sink.final("cx1", OrderStatus.ACCEPTED)
            await venue.cancel_order("cx1", "BTC-USDT")
            cx = await sink.final("cx1")
            assert cx.status is OrderStatus.CANCELLED and cx.error_msg == ""


@needs_fake
@TRANSPORTS
async def test_rejects_carry_exchange_codes(transport: str) -> None:
    with trio.fail_after(10):
        async with open_fake_okx() as fake, running(fake, order_transport=transport) as (venue, sink):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.2, bid_sz=1.0, ask_sz=1.0)
            await venue.place_order(order("big1", OrderType.LIMIT, Side.BUY, 100.0, 5000.0))
            big = await sink.final("big1")
            assert big.status is OrderStatus.REJECTED and big.error_msg.startswith("51008")
            await venue.place_order(order("tiny1", OrderType.LIMIT, Side.BUY, 100.0, 0.000001))
            tiny = await sink.final("tiny1")
            assert tiny.status is OrderStatus.REJECTED and tiny.error_msg.split(" ")[0] in {"51020", "51121"}
            await venue.place_order(order("bad-id", OrderType.LIMIT, Side.BUY, 100.0, 0.1))
            assert "letters and digits" in (await sink.final("bad-id")).error_msg
            await venue.place_order(order("dup1", OrderType.LIMIT, Side.BUY, 99.0, 0.1))
            await sink.final("dup1", OrderStatus.ACCEPTED)
            await venue.place_order(order("dup1", OrderType.LIMIT, Side.BUY, 99.0, 0.1))
            await sink.until(lambda: any(e.status is OrderStatus.REJECTED for e in sink.of("dup1")))
            assert fake.place_count("dup1") == 1


@needs_fake
async def test_public_reconnect_and_notice() -> None:
    with trio.fail_after(10):
        async with open_fake_okx() as fake, running(fake) as (_venue, sink):
            await sink.until(lambda: sink.connected == [True])
            await fake.disconnect(which="public")
            await sink.until(lambda: sink.connected == [True, False, True])
            fake.set_market("BTC-USDT", bid=101.0, ask=101.2, bid_sz=1.0, ask_sz=1.0)
            await sink.until(lambda: any(isinstance(m, Ticker) and m.bid_price == 101.0 for m in sink.market))
            await fake.send_notice(which="public")
            await sink.until(lambda: sink.connected == [True, False, True, False, True])
            fake.set_market("BTC-USDT", bid=102.0, ask=102.2, bid_sz=1.0, ask_sz=1.0)
            await sink.until(lambda: any(isinstance(m, Ticker) and m.bid_price == 102.0 for m in sink.market))
            subs = [r for r in fake.requests if r.op == "subscribe" and r.path.endswith("public")]
            assert len(subs) == 3
            channels = {(a["channel"], a["instId"]) for a in subs[-1].body["args"]}
            assert channels == {(c, s) for c in ("tickers", "books5", "trades", "books") for s in SYMBOLS}


@needs_fake
@TRANSPORTS
async def test_private_reconnect_reports_missed_fills_once(transport: str) -> None:
    with trio.fail_after(15):
        async with open_fake_okx() as fake, running(fake, order_transport=transport) as (venue, sink):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            await venue.place_order(order("rc1", OrderType.LIMIT, Side.BUY, 100.1, 1.0))
            await venue.place_order(order("rc2", OrderType.LIMIT, Side.SELL, 100.4, 0.5))
            await sink.final("rc1", OrderStatus.ACCEPTED)
            await sink.final("rc2", OrderStatus.ACCEPTED)
            fake.private_pushes_paused = True
            fake.print_trade("BTC-USDT", px=100.1, sz=0.3, side="sell")  # rc1: 0.3
            fake.print_trade("BTC-USDT", px=100.1, sz=0.2, side="sell")  # rc1: 0.5
            fake.print_trade("BTC-USDT", px=100.4, sz=0.5, side="buy")  # rc2: filled
            await fake.disconnect(which="private")
            fake.private_pushes_paused = False
            assert len(fake.dropped_pushes) >= 3  # the fills were really not pushed
            rc2 = await sink.final("rc2")
            assert rc2.status is OrderStatus.FILLED and rc2.filled_quantity == pytest.approx(0.5)
            await sink.until(lambda: any(e.filled_quantity == pytest.approx(0.5) for e in sink.of("rc1")))
            rc1_fills = [e for e in sink.of("rc1") if e.trade_id]
            assert [e.last_fill_quantity for e in rc1_fills] == [pytest.approx(0.3), pytest.approx(0.2)]
            assert [e.filled_quantity for e in rc1_fills] == [pytest.approx(0.3), pytest.approx(0.5)]
            assert rc1_fills[-1].status is OrderStatus.PARTIALLY_FILLED
            # after reconnect: trading continues on the new session and nothing is reported twice
            fake.print_trade("BTC-USDT", px=100.1, sz=0.5, side="sell")
            rc1 = await sink.final("rc1")
            assert rc1.filled_quantity == pytest.approx(1.0)
            trade_ids = [e.trade_id for e in sink.events if e.trade_id]
            assert len(trade_ids) == len(set(trade_ids)) == 4
            logins = [r for r in fake.requests if r.op == "login"]
            assert len(logins) == 2
            after = [r.path for r in fake.requests if r.ts >= logins[1].ts and r.transport == "rest"]
            assert "/api/v5/trade/orders-pending" in after and "/api/v5/trade/fills" in after


@needs_fake
async def test_duplicate_pushes_applied_once() -> None:
    with trio.fail_after(10):
        async with open_fake_okx() as fake, running(fake) as (venue, sink):
            fake.duplicate_pushes = True
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            await venue.place_order(order("du1", OrderType.LIMIT, Side.BUY, 100.1, 1.0))
            await sink.final("du1", OrderStatus.ACCEPTED)
            fake.print_trade("BTC-USDT", px=100.1, sz=0.4, side="sell")
            fake.print_trade("BTC-USDT", px=100.1, sz=0.6, side="sell")
            await sink.final("du1")
            await venue.place_order(order("du2", OrderType.LIMIT, Side.BUY, 99.0, 1.0))
            await sink.final("du2", OrderStatus.ACCEPTED)  # every du1 push (and its twin) came before
            evs = sink.of("du1")
            assert [e.status for e in evs] == [
                OrderStatus.ACCEPTED,
                OrderStatus.PARTIALLY_FILLED,
                OrderStatus.FILLED,
            ]
            assert [e.filled_quantity for e in evs] == [0, pytest.approx(0.4), pytest.approx(1.0)]


@needs_fake
async def test_rate_limit_pressure_never_earns_50011() -> None:
    with trio.fail_after(20):
        async with open_fake_okx() as fake, running(fake) as (venue, sink):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            n = 150
            for i in range(n):
                await venue.place_order(order(f"rl{i}", OrderType.LIMIT, Side.BUY, 99.0, 0.001))
            await sink.until(
                lambda: all(
                    any(e.status in (OrderStatus.ACCEPTED, OrderStatus.REJECTED) for e in sink.of(f"rl{i}"))
                    for i in range(n)
                )
            )
            rejected = [e for e in sink.events if e.status is OrderStatus.REJECTED]
            accepted = [e for e in sink.events if e.status is OrderStatus.ACCEPTED]
            assert len(accepted) == 120 and len(rejected) == 30  # 60 at once + 60 queued
            assert all(e.error_msg.startswith("rate limit") for e in rejected)
            # cancels still go first, under their own limit, while places queue
            for i in range(60):
                await venue.cancel_order(f"rl{i}", "BTC-USDT")
            await sink.until(lambda: sum(e.status is OrderStatus.CANCELLED for e in sink.events) == 60)
            assert not any("50011" in e.error_msg for e in sink.events)


@needs_fake
async def test_cancel_of_a_queued_place_never_reaches_okx() -> None:
    with trio.fail_after(10):
        async with open_fake_okx() as fake, running(fake) as (venue, sink):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            for i in range(61):
                await venue.place_order(order(f"q{i}", OrderType.LIMIT, Side.BUY, 99.0, 0.001))
            await venue.cancel_order("q60", "BTC-USDT")  # the 61st waits for the window: still ours
            cx = await sink.final("q60")
            assert cx.status is OrderStatus.CANCELLED and "before it was sent" in cx.error_msg
            await sink.until(lambda: sum(e.status is OrderStatus.ACCEPTED for e in sink.events) == 60)
            assert fake.place_count("q60") == 0


@needs_fake
async def test_clock_skew_is_absorbed() -> None:
    with trio.fail_after(10):
        async with (
            open_fake_okx(clock_offset_ms=40_000) as fake,
            running(fake, order_transport="rest") as (venue, sink),
        ):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            await venue.place_order(order("sk1", OrderType.LIMIT, Side.BUY, 99.0, 0.01))
            assert (
                await sink.final("sk1", OrderStatus.ACCEPTED, OrderStatus.REJECTED)
            ).status is OrderStatus.ACCEPTED
            await venue.cancel_order("sk1", "BTC-USDT")
            assert (await sink.final("sk1")).status is OrderStatus.CANCELLED
            assert not any("50102" in e.error_msg for e in sink.events)
            place = next(r for r in fake.requests if r.path == "/api/v5/trade/order" and r.method == "POST")
            assert abs(int(header(place, "expTime")) - 5000 - place.ts) < 1000  # exchange clock


@needs_fake
@pytest.mark.parametrize(("transport", "target"), [("ws", "order"), ("rest", "POST /api/v5/trade/order")])
async def test_outcome_unknown_place_is_resolved_by_query(transport: str, target: str) -> None:
    with trio.fail_after(15):
        async with (
            open_fake_okx() as fake,
            running(fake, order_transport=transport, request_timeout=0.5) as (venue, sink),
        ):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            stall = fake.stall_next(target, 3.0)
            fake.private_pushes_paused = True  # only the query can tell
            await venue.place_order(order("unk1", OrderType.LIMIT, Side.BUY, 99.0, 0.01))
            await stall.hit.wait()
            acc = await sink.final("unk1", OrderStatus.ACCEPTED)
            assert acc.exchange_order_id
            fake.private_pushes_paused = False
            assert fake.place_count("unk1") == 1
            assert any(
                r.method == "GET" and r.path == "/api/v5/trade/order" and r.query.get("clOrdId") == "unk1"
                for r in fake.requests
            )
            # a cancel issued meanwhile waited for the outcome and then went out once
            await venue.cancel_order("unk1", "BTC-USDT")
            assert (await sink.final("unk1")).status is OrderStatus.CANCELLED


@needs_fake
@TRANSPORTS
async def test_50004_answer_is_resolved_by_query(transport: str) -> None:
    target = "order" if transport == "ws" else "POST /api/v5/trade/order"
    with trio.fail_after(10):
        async with open_fake_okx() as fake, running(fake, order_transport=transport) as (venue, sink):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            fake.stall_next(target, 0.0, error_code="50004")
            fake.private_pushes_paused = True
            await venue.place_order(order("t504", OrderType.LIMIT, Side.BUY, 99.0, 0.01))
            acc = await sink.final("t504", OrderStatus.ACCEPTED, OrderStatus.REJECTED)
            assert acc.status is OrderStatus.ACCEPTED and fake.place_count("t504") == 1


class _LosePlaces(httpx.AsyncBaseTransport):
    """Forwards to the fake, except that order placements vanish before reaching it (a timeout)."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.lost = trio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/api/v5/trade/order":
            self.lost.set()
            raise httpx.ReadTimeout("lost on the way", request=request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@needs_fake
async def test_lost_place_is_rejected_once_its_exptime_passed() -> None:
    with trio.fail_after(10):
        async with open_fake_okx() as fake:
            cfg = config(fake, order_transport="rest", exp_time_ms=300)
            transport = _LosePlaces()
            venue = OkxVenue(cfg, SYMBOLS, CREDS, http_transport=transport)
            sink = Collector()
            async with trio.open_nursery() as nursery:
                await nursery.start(venue.run, sink)
                await venue.place_order(order("lost1", OrderType.LIMIT, Side.BUY, 99.0, 0.01))
                await transport.lost.wait()
                await venue.cancel_order("lost1", "BTC-USDT")  # waits for the outcome, then is not sent
                rej = await sink.final("lost1")
                assert rej.status is OrderStatus.REJECTED and rej.error_msg.startswith("51603")
                cf = await sink.until(
                    lambda: next((e for e in sink.of("lost1") if e.kind is EventKind.CANCEL_FAILED), None)
                )
                assert "rejected" in cf.error_msg
                assert fake.place_count("lost1") == 0
                queries = [
                    r for r in fake.requests if r.method == "GET" and r.query.get("clOrdId") == "lost1"
                ]
                assert (
                    len(queries) >= 2 and queries[-1].ts >= queries[0].ts + 300
                )  # asked again after expTime
                assert not [r for r in fake.requests if r.path == "/api/v5/trade/cancel-order"]
                nursery.cancel_scope.cancel()


async def _poll(cond: Callable[[], Any]) -> None:
    """Wait for a condition on the fake's own records (which has no change notification)."""
    while not cond():
        await trio.sleep(0.01)


@needs_fake
async def test_keepalive_pings_and_private_notice() -> None:
    with trio.fail_after(10):
        async with (
            # 1.5 s of silence closes a socket; a ping every 0.15 s keeps both open. The slack between
            # the two must cover a pause of this process on a loaded machine (0.5 s did not: a socket
            # closed and came back); 12 pings on each of the two sockets outlast the idle timeout.
            open_fake_okx(idle_timeout=1.5) as fake,
            running(fake, ping_interval=0.15) as (venue, sink),
        ):
            await _poll(lambda: sum(r.op == "ping" for r in fake.requests) >= 24)
            assert sink.connected == [True]  # pings kept both idle sockets alive
            assert sum(r.op == "login" for r in fake.requests) == 1
            await fake.send_notice(which="private")
            await _poll(lambda: sum(r.op == "login" for r in fake.requests) == 2)
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            await venue.place_order(order("nt1", OrderType.LIMIT, Side.BUY, 99.0, 0.01))
            await sink.final("nt1", OrderStatus.ACCEPTED)


@needs_fake
async def test_dropped_socket_during_place_and_query_apis() -> None:
    with trio.fail_after(15):
        async with open_fake_okx() as fake, running(fake, request_timeout=1.0) as (venue, sink):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            fake.stall_next("order", 0.05, drop=True)
            await venue.place_order(order("drop1", OrderType.LIMIT, Side.BUY, 99.0, 0.02))
            acc = await sink.final("drop1", OrderStatus.ACCEPTED)
            assert fake.place_count("drop1") == 1 and acc.quantity == pytest.approx(0.02)
            q = await venue.query_order("drop1", "BTC-USDT")
            assert q is not None and q.status is OrderStatus.ACCEPTED and q.venue_order_id == "drop1"
            assert await venue.query_order("never1", "BTC-USDT") is None
            opened = await venue.open_orders()
            assert [e.venue_order_id for e in opened] == ["drop1"]


@needs_fake
async def test_cancel_all_after_is_kept_armed() -> None:
    with trio.fail_after(10):
        async with open_fake_okx() as fake, running(fake, cancel_all_after=10.0) as (venue, _sink):
            calls = [r for r in fake.requests if r.path == "/api/v5/trade/cancel-all-after"]
            assert calls and calls[0].body == {"timeOut": "10"}
            state = fake.cancel_all_after_state
            assert state.timeout_s == 10 and state.trigger_time_ms > 0
            await venue.cancel_all_after(0)
            assert fake.cancel_all_after_state.trigger_time_ms == 0
            assert [r.body for r in fake.requests if r.path == "/api/v5/trade/cancel-all-after"][-1] == {
                "timeOut": "0"
            }


# ----------------------------------------------------------------------------- OKX demo trading

LIVE_KEYS = all(os.environ.get(k) for k in ("OKX_API_KEY", "OKX_SECRET_KEY", "OKX_PASSPHRASE"))


@pytest.mark.live
@pytest.mark.skipif(not LIVE_KEYS, reason="needs OKX_API_KEY, OKX_SECRET_KEY, OKX_PASSPHRASE (demo keys)")
async def test_live_demo_post_only_far_from_market() -> None:
    cfg = OkxConfig(demo=True)
    venue = OkxVenue(cfg, ["BTC-USDT"], OkxCredentials.from_env(cfg, os.environ))
    sink = Collector()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(venue.run, sink)
            tick = await sink.until(
                lambda: next((m for m in sink.market if isinstance(m, Ticker) and m.bid_price > 0), None)
            )
            inst = venue.instruments["BTC-USDT"]
            vid = f"st{int(time.time() * 1000)}"
            price = round(tick.bid_price * 0.8 / inst.tick_size) * inst.tick_size
            await venue.place_order(
                order(vid, OrderType.POST_ONLY, Side.BUY, price, max(inst.min_size, 0.0001))
            )
            acc = await sink.final(vid, OrderStatus.ACCEPTED, OrderStatus.REJECTED)
            assert acc.status is OrderStatus.ACCEPTED, acc.error_msg
            await venue.cancel_order(vid, "BTC-USDT")
            assert (await sink.final(vid)).status is OrderStatus.CANCELLED
            nursery.cancel_scope.cancel()
