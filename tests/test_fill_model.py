"""The backtest's fill model (seqtrade.fill_model), with hand-built books and trades: queue position from
the book and trades (not fills on touch), market orders walking the book, latency, fees, funding."""

from __future__ import annotations

import math

import pytest

from seqtrade.fill_model import (
    AtLeast,
    ConstantLatency,
    EmpiricalLatency,
    Fees,
    Fill,
    FillModel,
    Funding,
    LogNormalLatency,
    SimOrder,
    Status,
)

S = "BTC-USDT-SWAP"
MS = 1_000_000


def model(latency_ms: int = 0) -> FillModel:
    return FillModel(Fees(maker=0.0002, taker=0.0005), ConstantLatency(latency_ms * MS))


def fills(events: list) -> list[tuple[str, float, float, bool]]:
    return [(e.order_id, e.price, e.quantity, e.maker) for e in events if isinstance(e, Fill)]


def statuses(events: list) -> list[tuple[str, str]]:
    return [(e.order_id, e.status) for e in events if isinstance(e, Status)]


def resting_buy_behind_five() -> tuple[FillModel, SimOrder]:
    m = model()
    m.on_book(S, [[100.0, 5.0], [99.0, 8.0]], [[101.0, 4.0]], 1 * MS)
    o = SimOrder("b1", S, "buy", "limit", 100.0, 2.0)
    m.submit(o, 2 * MS)
    assert statuses(m.advance(3 * MS)) == [("b1", "accepted")]
    assert o.ahead == 5.0
    return m, o


def test_a_limit_at_the_back_of_five_lots_fills_only_after_five_lots_traded_at_its_price() -> None:
    m, o = resting_buy_behind_five()
    assert fills(m.on_trade(S, 100.0, 2.0, "sell", 4 * MS)) == []
    assert fills(m.on_trade(S, 101.0, 9.0, "buy", 5 * MS)) == []  # the other side: not our queue
    assert fills(m.on_trade(S, 100.0, 3.0, "sell", 6 * MS)) == []  # 5 lots traded: now at the front
    assert o.ahead == 0.0 and o.filled == 0.0
    ev = m.on_trade(S, 100.0, 1.5, "sell", 7 * MS)
    assert fills(ev) == [("b1", 100.0, 1.5, True)]
    ev = m.on_trade(S, 100.0, 4.0, "sell", 8 * MS)
    assert fills(ev) == [("b1", 100.0, 0.5, True)] and statuses(ev) == [("b1", "filled")]
    assert o.fee == pytest.approx(100.0 * 2.0 * 0.0002) and m.position[S] == 2.0


def test_touching_the_price_is_not_a_fill() -> None:
    m, o = resting_buy_behind_five()
    # The best bid stays at our price, the ask comes down to one tick above: no trade, no fill.
    assert m.on_book(S, [[100.0, 5.0]], [[100.1, 1.0]], 4 * MS) == []
    assert o.filled == 0.0 and o.status == "open"


def test_a_cancel_ahead_moves_it_up() -> None:
    m, o = resting_buy_behind_five()
    assert m.on_book(S, [[100.0, 3.0], [99.0, 8.0]], [[101.0, 4.0]], 4 * MS) == []  # 2 lots cancelled
    assert o.ahead == 3.0
    # Size joining behind us does not push us back.
    m.on_book(S, [[100.0, 9.0], [99.0, 8.0]], [[101.0, 4.0]], 5 * MS)
    assert o.ahead == 3.0
    assert fills(m.on_trade(S, 100.0, 3.0, "sell", 6 * MS)) == []
    assert fills(m.on_trade(S, 100.0, 1.0, "sell", 7 * MS)) == [
        ("b1", 100.0, 1.0, True)
    ]  # after 3 lots, not 5


def test_a_market_order_walks_three_levels() -> None:
    m = model()
    m.on_book(S, [[99.0, 1.0]], [[101.0, 2.0], [102.0, 2.0], [103.0, 5.0], [104.0, 1.0]], 1 * MS)
    o = SimOrder("m1", S, "buy", "market", None, 6.0)
    m.submit(o, 2 * MS)
    ev = m.advance(3 * MS)
    assert fills(ev) == [("m1", 101.0, 2.0, False), ("m1", 102.0, 2.0, False), ("m1", 103.0, 2.0, False)]
    assert statuses(ev) == [("m1", "filled")]
    assert o.avg_price == pytest.approx((202 + 204 + 206) / 6)
    assert o.fee == pytest.approx(612.0 * 0.0005) and m.cash == pytest.approx(-612.0 - 612.0 * 0.0005)
    # The liquidity taken is gone until the next recorded book: a second order finds 3 at 103, then 104.
    o2 = SimOrder("m2", S, "buy", "market", None, 10.0)
    m.submit(o2, 3 * MS)
    ev = m.advance(4 * MS)
    assert fills(ev) == [("m2", 103.0, 3.0, False), ("m2", 104.0, 1.0, False)]
    assert statuses(ev) == [("m2", "cancelled")] and o2.filled == 4.0  # the depth ran out


def test_latency_delays_arrival_and_the_book_it_meets() -> None:
    m = model(latency_ms=5)
    m.on_book(S, [[99.0, 1.0]], [[100.0, 1.0]], 0)
    o = SimOrder("m1", S, "buy", "market", None, 1.0)
    m.submit(o, 1 * MS)  # arrives at 6 ms
    assert m.on_book(S, [[104.0, 1.0]], [[105.0, 1.0]], 3 * MS) == []  # not there yet
    # It arrives at 6 ms: a book recorded at that very time came without it (conservative), and is
    # the book it meets.
    assert m.on_book(S, [[109.0, 1.0]], [[110.0, 1.0]], 6 * MS) == []
    assert fills(m.advance(6 * MS + 1)) == [("m1", 110.0, 1.0, False)]
    c = SimOrder("b1", S, "buy", "limit", 100.0, 1.0)
    m.submit(c, 10 * MS)
    m.cancel("b1", 12 * MS)  # effective at 17 ms
    assert statuses(m.advance(16 * MS)) == [("b1", "accepted")]
    assert statuses(m.advance(18 * MS)) == [("b1", "cancelled")]
    m.cancel("b1", 20 * MS)
    assert statuses(m.advance(30 * MS)) == [("b1", "cancel_failed")]


def test_order_types_at_arrival() -> None:
    m = model()
    m.on_book(S, [[99.0, 1.0]], [[100.0, 1.0], [101.0, 1.0]], 0)
    orders = [SimOrder("po", S, "buy", "post_only", 100.0, 1.0), SimOrder("fok", S, "buy", "fok", 100.0, 2.0),
              SimOrder("ioc", S, "buy", "ioc", 100.0, 2.0), SimOrder("lim", S, "buy", "limit", 101.0, 2.0)]  # fmt: skip
    for o in orders:
        m.submit(o, 1)
    ev = m.advance(10)
    assert statuses(ev) == [
        ("po", "rejected"),
        ("fok", "cancelled"),
        ("ioc", "cancelled"),
        ("lim", "accepted"),
    ]
    assert fills(ev) == [("ioc", 100.0, 1.0, False), ("lim", 101.0, 1.0, False)]
    assert orders[3].status == "open" and orders[3].ahead == 0.0  # its rest joins an empty level


def test_a_trade_through_the_price_fills_and_funding_is_paid_at_the_recorded_rate() -> None:
    m, o = resting_buy_behind_five()
    ev = m.on_trade(S, 99.5, 10.0, "sell", 4 * MS)  # sold through 100: the whole level went
    assert fills(ev) == [("b1", 100.0, 2.0, True)]
    ev = m.on_funding(S, 0.0001, 100.0, 5 * MS)
    assert ev == [Funding(S, 5 * MS, 0.0001, -2.0 * 100.0 * 0.0001)]  # long pays a positive rate
    assert m.funding_paid == pytest.approx(0.02)
    assert m.on_funding("ETH-USDT-SWAP", 0.0001, 10.0, 6 * MS) == []  # no position, nothing


def test_latency_distributions_are_seeded() -> None:
    a = [LogNormalLatency(1 * MS, 0.5, seed=3).sample() for _ in range(1)]
    b = LogNormalLatency(1 * MS, 0.5, seed=3)
    assert [b.sample()] == a and b.sample() > 0
    e1, e2 = EmpiricalLatency([1, 2, 3], seed=9), EmpiricalLatency([1, 2, 3], seed=9)
    draws = [e1.sample() for _ in range(50)]
    assert draws == [e2.sample() for _ in range(50)] and set(draws) == {1, 2, 3}
    with pytest.raises(ValueError):
        EmpiricalLatency([])


def test_the_backtest_command_chooses_the_latency_and_floors_draws_at_the_lookahead(tmp_path) -> None:
    from seqtrade.cli import _backtest_latency, build_parser

    def latency(*opts: str):
        return _backtest_latency(build_parser().parse_args(["backtest", "--data", str(tmp_path), *opts]))

    assert latency() == ConstantLatency(1 * MS)  # the default: 1 ms
    assert latency("--latency-ms", "5", "--lookahead-ms", "2") == ConstantLatency(5 * MS)
    lognormal = latency(
        "--latency", "lognormal", "--latency-ms", "2", "--latency-sigma", "1.5", "--latency-seed", "7"
    )
    assert isinstance(lognormal, AtLeast) and lognormal.inner == LogNormalLatency(2 * MS, 1.5, 7)
    draws = [lognormal.sample() for _ in range(200)]
    assert min(draws) == 1 * MS < max(draws)  # some drawn below the 1 ms lookahead: raised to it
    assert lognormal.max_ns == int(2 * MS * math.exp(9.0))
    floored = AtLeast(EmpiricalLatency([10, 3 * MS], seed=1), 1 * MS)
    assert {floored.sample() for _ in range(50)} == {1 * MS, 3 * MS} and floored.max_ns == 3 * MS
    from seqtrade.errors import SeqtradeError

    with pytest.raises(SeqtradeError, match="no measured order latency"):
        latency("--latency", "recorded")  # an empty directory: nothing recorded


@pytest.mark.parametrize("module", ["seqtrade.fill_model", "seqtrade.recorder_rows"])
def test_the_rules_are_pure(module: str) -> None:
    from .test_layout import IO_LIBS, loaded_after_import

    loaded = loaded_after_import(module)
    assert not [m for m in (*IO_LIBS, "pyarrow") if m in loaded]


def test_an_amend_that_only_shrinks_keeps_its_place_one_that_grows_goes_to_the_back() -> None:
    m, o = resting_buy_behind_five()
    m.on_trade(S, 100.0, 2.0, "sell", 4 * MS)  # 3 left ahead of us
    assert o.ahead == 3.0
    m.amend("b1", None, 1.0, 5 * MS)
    assert statuses(m.advance(6 * MS)) == [("b1", "amended")]
    assert (o.quantity, o.ahead) == (1.0, 3.0)  # smaller: same place
    m.on_book(S, [[100.0, 6.0], [99.0, 8.0]], [[101.0, 4.0]], 7 * MS)  # the level is 6 lots now
    m.amend("b1", None, 2.0, 8 * MS)
    assert statuses(m.advance(9 * MS)) == [("b1", "amended")]
    assert (o.quantity, o.ahead) == (2.0, 6.0)  # larger: behind everything at the price
    # 6 lots must trade before it fills at all
    assert fills(m.on_trade(S, 100.0, 6.0, "sell", 10 * MS)) == []
    assert fills(m.on_trade(S, 100.0, 1.0, "sell", 11 * MS)) == [("b1", 100.0, 1.0, True)]


def test_an_amended_price_goes_to_the_back_there_and_refusals_leave_the_order_as_it_was() -> None:
    m, o = resting_buy_behind_five()
    m.amend("b1", 99.0, None, 3 * MS)
    assert statuses(m.advance(4 * MS)) == [("b1", "amended")]
    assert (o.price, o.ahead) == (99.0, 8.0)  # behind the 8 lots at 99
    assert m.resting[S] == [o]
    m.amend("b1", None, None, 4 * MS)
    assert [(e.status, e.reason) for e in m.advance(5 * MS)] == [("amend_failed", "nothing to amend")]
    p = SimOrder("p1", S, "buy", "post_only", 98.0, 1.0)
    m.submit(p, 5 * MS)
    m.advance(6 * MS)
    m.amend("p1", 101.0, None, 6 * MS)  # would cross the ask: a post_only refuses it
    (ev,) = m.advance(7 * MS)
    assert (ev.status, p.price, p.status) == ("amend_failed", 98.0, "open")
    assert "post_only" in ev.reason
    m.on_trade(S, 99.0, 9.0, "sell", 8 * MS)  # 1 of b1's 2 filled
    m.amend("b1", None, 0.5, 8 * MS)  # at or below what has filled: the order ends filled
    assert statuses(m.advance(9 * MS)) == [("b1", "filled")]
    assert (o.quantity, o.filled, o.status) == (1.0, 1.0, "filled")
    m.amend("b1", 98.0, None, 9 * MS)
    assert [(e.status, e.reason) for e in m.advance(10 * MS)] == [("amend_failed", "order is already filled")]


def test_queue_none_is_the_paper_venues_rule_first_at_the_level_trades_shared_in_priority() -> None:
    m = FillModel(Fees(maker=0.0002, taker=0.0005), ConstantLatency(0), queue="none")
    m.on_book(S, [[100.0, 5.0], [99.0, 8.0]], [[101.0, 4.0]], 1 * MS)
    a, b, c = (SimOrder(i, S, "buy", "limit", p, 1.0) for i, p in (("a", 100.0), ("b", 100.0), ("c", 99.0)))
    for x in (a, b, c):
        m.submit(x, 2 * MS)
    m.advance(3 * MS)
    assert a.ahead == 0.0 and b.ahead == 1.0  # nothing of the book ahead; our own earlier order is
    assert fills(m.on_trade(S, 100.0, 3.0, "buy", 4 * MS)) == []  # a buying taker at our price: not us
    # a selling taker at 100: a, then b (time priority), limited by the trade's 1.5
    assert fills(m.on_trade(S, 100.0, 1.5, "sell", 5 * MS)) == [
        ("a", 100.0, 1.0, True),
        ("b", 100.0, 0.5, True),
    ]
    # a trade below every price: the best price first (b at 100), then c at 99, each at its own price
    assert fills(m.on_trade(S, 98.0, 1.0, "buy", 6 * MS)) == [("b", 100.0, 0.5, True), ("c", 99.0, 0.5, True)]
    with pytest.raises(ValueError, match="queue"):
        FillModel(queue="fifo")
