"""The backtest's venue side (seqtrade.replay_fills.SimExchange): venue orders in, venue order events out,
decided by the fill model against recorded books and trades; every event carries the cumulative state."""

from __future__ import annotations

import pytest

from seqtrade.fill_model import ConstantLatency, Fees
from seqtrade.models import Book, OrderStatus, OrderType, Side, Trade
from seqtrade.replay_fills import SimExchange
from seqtrade.venues.base import EventKind, VenueOrder

S = "BTC-USDT"
MS = 1_000_000


def exchange() -> SimExchange:
    return SimExchange(Fees(maker=0.001, taker=0.002), ConstantLatency(1 * MS))


def book(ms: int, bids: list[list[float]], asks: list[list[float]]) -> Book:
    return Book(S, ms, bids, asks)


def trade(ms: int, price: float, size: float, side: str) -> Trade:
    return Trade(S, ms, f"t{ms}", price, size, side)


def summary(events):  # (status, kind, filled, last fill qty, ts ms)
    return [(str(e.status), str(e.kind), e.filled_quantity, e.last_fill_quantity, e.ts) for e in events]


def test_a_resting_limit_is_accepted_after_the_latency_and_fills_from_trades_at_its_price():
    x = exchange()
    assert x.on_market(book(10, [[100.0, 3.0]], [[101.0, 1.0]]), 10 * MS) == []
    assert x.submit(VenueOrder("v1", S, Side.BUY, OrderType.LIMIT, 100.0, 2.0), 10 * MS) == []
    # the order reaches the model 1 ms after it was sent: accepted then, behind the 3 lots resting
    ev = x.on_market(trade(12, 100.0, 4.0, "sell"), 12 * MS)
    assert summary(ev) == [("accepted", "update", 0.0, 0.0, 11), ("partially_filled", "update", 1.0, 1.0, 12)]
    ev = x.on_market(trade(13, 100.0, 5.0, "sell"), 13 * MS)
    assert summary(ev) == [("filled", "update", 2.0, 1.0, 13)]
    last = ev[-1]
    assert last.avg_price == 100.0 and last.fee == pytest.approx(200.0 * 0.001)
    assert last.last_fill_price == 100.0 and last.trade_id
    assert [(f.strategy, f.price, f.quantity) for f in x.fills] == [("v1", 100.0, 1.0), ("v1", 100.0, 1.0)]
    assert x.open_orders() == []


def test_a_market_order_walks_three_levels_as_a_taker():
    x = exchange()
    x.on_market(book(1, [[99.0, 1.0]], [[101.0, 1.0], [102.0, 1.0], [103.0, 5.0]]), 1 * MS)
    x.submit(VenueOrder("m1", S, Side.BUY, OrderType.MARKET, None, 3.0), 1 * MS)
    ev = x.advance(3 * MS)
    assert summary(ev) == [
        ("partially_filled", "update", 1.0, 1.0, 2),
        ("partially_filled", "update", 2.0, 1.0, 2),
        ("filled", "update", 3.0, 1.0, 2),
    ]
    assert [e.last_fill_price for e in ev] == [101.0, 102.0, 103.0]
    assert ev[-1].avg_price == pytest.approx(102.0)
    assert ev[-1].fee == pytest.approx(306.0 * 0.002)


def test_cancels_unknown_orders_late_cancels_amends_duplicates_and_post_only():
    x = exchange()
    x.on_market(book(1, [[99.0, 1.0]], [[101.0, 1.0]]), 1 * MS)
    x.submit(VenueOrder("r1", S, Side.BUY, OrderType.LIMIT, 98.0, 1.0), 1 * MS)
    assert summary(x.advance(3 * MS)) == [("accepted", "update", 0.0, 0.0, 2)]
    assert [str(e.status) for e in x.open_orders()] == ["accepted"]
    x.cancel("r1", 3 * MS)
    assert summary(x.advance(5 * MS)) == [("cancelled", "update", 0.0, 0.0, 4)]
    x.cancel("r1", 5 * MS)  # the order ended before this cancel arrived
    late = x.advance(7 * MS)
    assert [(str(e.status), str(e.kind)) for e in late] == [("cancelled", "cancel_failed")]
    unknown = x.cancel("nope", 7 * MS)
    assert unknown[0].kind is EventKind.CANCEL_FAILED and unknown[0].error_msg == "unknown order"
    unknown = x.amend("nope", 99.0, None, 7 * MS)
    assert unknown[0].kind is EventKind.AMEND_FAILED and unknown[0].error_msg == "unknown order"
    assert x.amend("r1", 99.0, None, 7 * MS) == []  # it reaches the model one latency later, and fails
    (amend,) = x.advance(8 * MS + 1)
    assert amend.kind is EventKind.AMEND_FAILED and amend.error_msg == "order is already cancelled"
    assert amend.status is OrderStatus.CANCELLED  # the order as it is
    dup = x.submit(VenueOrder("r1", S, Side.BUY, OrderType.LIMIT, 98.0, 1.0), 7 * MS)
    assert dup[0].status is OrderStatus.REJECTED and "duplicate" in dup[0].error_msg
    x.submit(VenueOrder("p1", S, Side.BUY, OrderType.POST_ONLY, 101.0, 1.0), 7 * MS)
    rej = x.advance(9 * MS)
    assert [(e.venue_order_id, str(e.status)) for e in rej] == [("p1", "rejected")]
    assert "post_only" in rej[0].error_msg
    assert x.query("p1") is not None and x.query("zzz") is None


def test_a_limit_that_takes_some_at_once_then_rests_reports_its_fill_not_a_step_back():
    x = exchange()
    x.on_market(book(1, [[99.0, 1.0]], [[101.0, 1.0], [102.0, 1.0]]), 1 * MS)
    x.submit(VenueOrder("l1", S, Side.BUY, OrderType.LIMIT, 101.0, 3.0), 1 * MS)
    ev = x.advance(3 * MS)
    assert summary(ev) == [("partially_filled", "update", 1.0, 1.0, 2)]  # no "accepted" with a fill
    assert [str(e.status) for e in x.open_orders()] == ["partially_filled"]
    assert x.open_orders()[0].filled_quantity == 1.0


def test_an_amend_reports_the_new_price_and_size_then_fills_there():
    x = exchange()
    x.on_market(book(1, [[99.0, 1.0]], [[101.0, 1.0]]), 1 * MS)
    x.submit(VenueOrder("a1", S, Side.BUY, OrderType.LIMIT, 98.0, 2.0), 1 * MS)
    x.advance(3 * MS)
    x.amend("a1", 99.0, 1.0, 3 * MS)
    (ev,) = x.advance(5 * MS)
    assert (str(ev.status), str(ev.kind), ev.price, ev.quantity, ev.ts) == (
        "accepted",
        "update",
        99.0,
        1.0,
        4,
    )
    # behind the 1 lot at 99 (the back of the queue at its new price): 1.5 lots traded fill 0.5
    assert summary(x.on_market(trade(6, 99.0, 1.5, "sell"), 6 * MS)) == [
        ("partially_filled", "update", 0.5, 0.5, 6)
    ]
    x.amend("a1", 101.0, None, 6 * MS)  # crosses the ask: the rest fills at once, as a taker
    ev = x.advance(8 * MS)
    assert [(str(e.status), e.filled_quantity, e.last_fill_price) for e in ev] == [
        ("partially_filled", 0.5, 0.0),
        ("filled", 1.0, 101.0),
    ]
    assert ev[-1].fee == pytest.approx(99.0 * 0.5 * 0.001 + 101.0 * 0.5 * 0.002)


async def test_a_sync_not_answered_is_sent_again_every_second_until_it_is(autojump_clock, tmp_path):
    import trio

    from seqtrade.replay_backtest import BacktestVenue
    from seqtrade.vclock import Sync, SyncAck

    (tmp_path / "book" / "2026-11-30" / S).mkdir(parents=True)
    venue = BacktestVenue(tmp_path, [S])
    venue._strategies = ["a", "b"]
    sent: list = []

    class Sink:
        def publish_market(self, msg) -> None:
            sent.append(msg)

    sync = Sync("backtest", 5 * MS, 1, {"a": 0, "b": 3})
    async with trio.open_nursery() as n:
        n.start_soon(venue._wait_acks, Sink(), sync)
        await trio.sleep(0.5)
        venue.on_sync_ack(SyncAck("a", 5 * MS, 1))
        await trio.sleep(2.2)  # b answers only after two repeats
        assert [(m.t_ns, m.step, m.reports) for m in sent] == [(5 * MS, 1, {"a": 0, "b": 3})] * 2
        venue.on_sync_ack(SyncAck("b", 5 * MS, 1))
        venue.on_sync_ack(SyncAck("b", 5 * MS, 1))  # a repeat's answer: harmless
    assert len(sent) == 2
