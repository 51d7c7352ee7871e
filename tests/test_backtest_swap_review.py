"""Second reading of a backtest's money on swaps (docs/derivatives.md, docs/backtesting.md "Units on
swaps"): positions that flip in one fill, partial closes, an inverse position's unrealised PnL at the
end, maker and taker fees, inverse funding in coins, and spot beside a swap in one account. Every
figure is computed by hand from the definitions (linear PnL ``(exit - entry) x contracts x contract
value``, inverse ``(1/entry - 1/exit) x contracts x contract value`` in coins with the harmonic mean as
the average entry; fees ``rate x contracts x contract value x price`` or ``/ price``), not from the
code."""

from __future__ import annotations

import pytest

from seqtrade.backtest_results import FillRecord, FundingRecord, Mark, results
from seqtrade.fill_model import ConstantLatency, Contract, Fees, FillModel, SimOrder
from seqtrade.models import Book, FundingRate, MarkPrice, OrderType, Side
from seqtrade.replay_fills import SimExchange
from seqtrade.venues.base import VenueOrder

MS = 1_000_000
LIN, INV, SPOT = "BTC-USDT-SWAP", "BTC-USD-SWAP", "BTC-USDT"
LIN_C, INV_C = Contract(0.01, False, "USDT"), Contract(100.0, True, "BTC")


def _trade(m: FillModel, symbol: str, oid: str, side: str, qty: float, px: float, now: int) -> None:
    """A market order of ``qty`` against a book whose best level on the other side is ``px`` (deep)."""
    m.on_book(
        symbol, [[px - 1.0, 10_000.0]], [[px, 10_000.0]] if side == "buy" else [[px + 1.0, 10_000.0]], now
    )
    if side == "sell":
        m.on_book(symbol, [[px, 10_000.0]], [[px + 1.0, 10_000.0]], now)
    m.submit(SimOrder(oid, symbol, side, "market", None, qty), now)
    m.advance(now + 2 * MS)


def test_a_linear_long_3_flipped_short_2_in_one_fill() -> None:
    """Buy 3 contracts (0.01 BTC) at 100, sell 5 at 110: 3 close, (110 - 100) x 3 x 0.01 = 0.3 USDT
    realised, a short of 2 opens at 110; at a last mark of 105 it has (105 - 110) x -2 x 0.01 = 0.1
    unrealised. Taker 0.1 %: fees 0.001 x 3 x 0.01 x 100 = 0.003 and 0.001 x 5 x 0.01 x 110 = 0.0055.
    The model's cash: -3 x 0.01 x 100 + 5 x 0.01 x 110 - fees = 2.5 - 0.0085; PnL = cash + signed value
    at the mark, 2.5 - 2 x 0.01 x 105 - 0.0085 = 0.4 - 0.0085."""
    m = FillModel(Fees(maker=0.0, taker=0.001), ConstantLatency(MS), contracts={LIN: LIN_C})
    _trade(m, LIN, "b", "buy", 3.0, 100.0, 0)
    _trade(m, LIN, "s", "sell", 5.0, 110.0, 10 * MS)
    assert m.position[LIN] == pytest.approx(-2.0)
    assert (m.orders["b"].fee, m.orders["s"].fee) == (pytest.approx(0.003), pytest.approx(0.0055))
    assert m.cash == pytest.approx(2.5 - 0.0085)
    assert m.cash + m.position[LIN] * 0.01 * 105.0 == pytest.approx(0.4 - 0.0085)

    fills = [FillRecord(1, "a", LIN, "buy", 100.0, 3.0, 0.003, LIN_C),
             FillRecord(2, "a", LIN, "sell", 110.0, 5.0, 0.0055, LIN_C)]  # fmt: skip
    r = results(fills, marks=[Mark(3, LIN, 105.0)]).strategies["a"]
    assert r.realised_pnl == pytest.approx(0.3)
    assert r.unrealised_pnl == pytest.approx(0.1)
    assert r.fees == pytest.approx(0.0085)
    assert r.net_pnl == pytest.approx(0.4 - 0.0085)
    assert r.positions == {LIN: -2.0}
    # the closed round trip: 0.3 less the fee of the buy and the closing 3/5 of the sell's fee
    assert r.trades == 1 and r.wins == 1
    # the largest position value: 3 x 0.01 x 100 = 3 (at the buy) vs 2 x 0.01 x 110 = 2.2, 2 x 0.01 x 105
    assert r.max_notional == pytest.approx(3.0)


def test_an_inverse_long_300_flipped_short_200_in_one_fill() -> None:
    """Buy 300 contracts (100 USD) at 50,000, sell 500 at 40,000: 300 close at
    (1/50,000 - 1/40,000) x 300 x 100 = -0.15 BTC, a short of 200 opens at 40,000 (the fill's price, not
    a mean with the closed lot); at a last mark of 50,000: (1/40,000 - 1/50,000) x -200 x 100 = -0.1 BTC.
    The model's cash: + 300 x 100 / 50,000 - 500 x 100 / 40,000 = 0.6 - 1.25 = -0.65 BTC; PnL = cash -
    signed value = -0.65 + 200 x 100 / 50,000 = -0.25 = -0.15 - 0.1. Taker 0.05 %: fees
    0.0005 x 30,000 / 50,000 = 0.0003 and 0.0005 x 50,000 / 40,000 = 0.000625 BTC."""
    m = FillModel(Fees(maker=0.0, taker=0.0005), ConstantLatency(MS), contracts={INV: INV_C})
    _trade(m, INV, "b", "buy", 300.0, 50_000.0, 0)
    _trade(m, INV, "s", "sell", 500.0, 40_000.0, 10 * MS)
    assert m.position[INV] == pytest.approx(-200.0)
    assert m.orders["b"].fee == pytest.approx(0.0003, abs=1e-15)
    assert m.orders["s"].fee == pytest.approx(0.000625, abs=1e-15)
    assert m.cash == pytest.approx(-0.65 - 0.000925, abs=1e-12)
    assert m.cash - m.position[INV] * 100.0 / 50_000.0 == pytest.approx(-0.25 - 0.000925, abs=1e-12)

    fills = [FillRecord(1, "a", INV, "buy", 50_000.0, 300.0, 0.0003),
             FillRecord(2, "a", INV, "sell", 40_000.0, 500.0, 0.000625)]  # fmt: skip
    r = results(fills, marks=[Mark(3, INV, 50_000.0)], contracts={INV: INV_C}).strategies["a"]
    assert r.realised_pnl == pytest.approx(-0.15, abs=1e-12)
    assert r.unrealised_pnl == pytest.approx(-0.1, abs=1e-12)
    assert r.fees == pytest.approx(0.000925, abs=1e-15)
    assert r.net_pnl == pytest.approx(-0.25 - 0.000925, abs=1e-12)
    assert r.trades == 1 and r.wins == 0
    # position values in coins: 300 x 100 / 50,000 = 0.6 at the buy, 200 x 100 / 40,000 = 0.5, then 0.4
    assert r.max_notional == pytest.approx(0.6)


def test_an_inverse_position_partly_closed_then_valued_at_the_last_mark() -> None:
    """Buy 100 at 50,000 and 100 at 40,000 (average 1/entry = (100/50,000 + 100/40,000) / 200 =
    0.0000225); sell 50 at 60,000: (0.0000225 - 1/60,000) x 50 x 100 = 0.0291666.. BTC realised, the
    average unchanged; the 150 left at a last mark of 30,000: (0.0000225 - 1/30,000) x 150 x 100 =
    -0.1625 BTC; a later close of the 150 at 30,000 realises exactly that."""
    inv_avg = 0.0000225
    fills = [FillRecord(1, "a", INV, "buy", 50_000.0, 100.0), FillRecord(2, "a", INV, "buy", 40_000.0, 100.0),
             FillRecord(3, "a", INV, "sell", 60_000.0, 50.0)]  # fmt: skip
    r = results(fills, marks=[Mark(4, INV, 30_000.0)], contracts={INV: INV_C}).account
    assert r.realised_pnl == pytest.approx((inv_avg - 1 / 60_000) * 5_000, rel=1e-12)
    assert r.realised_pnl == pytest.approx(0.0291667, abs=1e-7)
    assert r.unrealised_pnl == pytest.approx((inv_avg - 1 / 30_000) * 15_000, rel=1e-12)
    assert r.unrealised_pnl == pytest.approx(-0.1625, abs=1e-12)
    assert r.positions == {INV: 150.0}
    closed = results([*fills, FillRecord(5, "a", INV, "sell", 30_000.0, 150.0)], contracts={INV: INV_C})
    assert closed.account.realised_pnl == pytest.approx(0.0291666666 - 0.1625, abs=1e-9)
    assert closed.account.unrealised_pnl == 0.0 and closed.account.positions == {}


def test_a_linear_short_partly_closed_keeps_its_entry() -> None:
    """Sell 4 at 200, buy 1 at 190: (190 - 200) x -1 x 0.01 = 0.1 USDT; the 3 left at a mark of 210:
    (210 - 200) x -3 x 0.01 = -0.3."""
    fills = [
        FillRecord(1, "a", LIN, "sell", 200.0, 4.0, 0.0, LIN_C),
        FillRecord(2, "a", LIN, "buy", 190.0, 1.0),
    ]
    r = results(fills, marks=[Mark(3, LIN, 210.0)]).account
    assert r.realised_pnl == pytest.approx(0.1)
    assert r.unrealised_pnl == pytest.approx(-0.3)
    assert r.positions == {LIN: -3.0}


def test_maker_and_taker_fees_on_an_inverse_swap() -> None:
    """Maker 0.02 %, taker 0.05 %. A limit buy of 100 contracts at 50,000 resting below the ask, then
    filled when a book crosses it: maker, 0.0002 x 100 x 100 / 50,000 = 0.00004 BTC; a market sell of
    100 at the bid 52,000: taker, 0.0005 x 10,000 / 52,000 BTC. A maker rebate (-0.01 %) is money
    received: -0.0001 x 10,000 / 50,000 = -0.00002 BTC."""
    for maker_rate, want_maker in ((0.0002, 0.00004), (-0.0001, -0.00002)):
        m = FillModel(Fees(maker=maker_rate, taker=0.0005), ConstantLatency(MS), contracts={INV: INV_C})
        m.on_book(INV, [[49_990.0, 1_000.0]], [[50_010.0, 1_000.0]], 0)
        m.submit(SimOrder("b", INV, "buy", "limit", 50_000.0, 100.0), 0)
        m.advance(2 * MS)
        assert m.orders["b"].filled == 0.0  # resting
        m.on_book(INV, [[49_980.0, 1_000.0]], [[49_990.0, 1_000.0]], 3 * MS)  # the ask crosses 50,000
        assert m.orders["b"].filled == 100.0
        assert m.orders["b"].fee == pytest.approx(want_maker, abs=1e-15)
        _trade(m, INV, "s", "sell", 100.0, 52_000.0, 10 * MS)
        assert m.orders["s"].fee == pytest.approx(0.0005 * 10_000 / 52_000, abs=1e-15)
        assert m.fees_paid == pytest.approx(want_maker + 0.0005 * 10_000 / 52_000, abs=1e-15)
        # cash in coins: + 10,000 / 50,000 for the buy, - 10,000 / 52,000 for the sell, - fees
        want_pnl = 10_000 * (1 / 50_000 - 1 / 52_000)
        assert m.cash == pytest.approx(want_pnl - m.fees_paid, abs=1e-12)


def test_inverse_funding_is_in_coins_beside_the_fees() -> None:
    """Long 200 inverse contracts (100 USD) at 40,000; a funding of 0.01 % at a mark of 40,000: the
    position's value is 200 x 100 / 40,000 = 0.5 BTC, the long pays 0.00005 BTC; at a rate of -0.02 %
    and a mark of 50,000 (value 0.4 BTC) it receives 0.00008 BTC. Short the same: the opposite signs.
    Taker 0.05 %: the buy's fee 0.0005 x 20,000 / 40,000 = 0.00025 BTC; the results' net adds funding and
    takes fees, both coins."""
    for side, sign in (("buy", 1.0), ("sell", -1.0)):
        sim = SimExchange(Fees(maker=0.0, taker=0.0005), ConstantLatency(MS), contracts={INV: INV_C})
        sim.on_market(Book(INV, 0, [[40_000.0, 1_000.0]], [[40_000.0, 1_000.0]], 1, 0), 0)
        s = Side.BUY if side == "buy" else Side.SELL
        sim.submit(VenueOrder("v1", INV, s, OrderType.MARKET, None, 200.0), 0)
        sim.on_market(MarkPrice(INV, 2, 40_000.0, 40_000.0, 1, 0), 2 * MS)
        sim.on_market(FundingRate(INV, 2, 0.0001, 3, 0, 1, 0), 2 * MS)
        sim.on_market(MarkPrice(INV, 4, 50_000.0, 50_000.0, 2, 0), 4 * MS)
        sim.on_market(FundingRate(INV, 4, -0.0002, 5, 0, 2, 0), 4 * MS)
        sim.on_market(MarkPrice(INV, 6, 50_000.0, 50_000.0, 3, 0), 6 * MS)
        assert [f.fee for f in sim.fills] == [pytest.approx(0.00025, abs=1e-15)]
        assert [f.amount for f in sim.funding] == [
            pytest.approx(-sign * 0.00005, abs=1e-15),
            pytest.approx(sign * 0.00008, abs=1e-15),
        ]
        marks = [Mark(2 * MS, INV, 40_000.0), Mark(4 * MS, INV, 50_000.0)]
        r = results(sim.fills, sim.funding, marks).account
        assert r.funding == pytest.approx(sign * 0.00003, abs=1e-15)
        assert r.fees == pytest.approx(0.00025, abs=1e-15)
        # unrealised at 50,000: (1/40,000 - 1/50,000) x +-200 x 100 = +-0.1 BTC
        assert r.unrealised_pnl == pytest.approx(sign * 0.1, abs=1e-12)
        assert r.net_pnl == pytest.approx(sign * 0.1 + sign * 0.00003 - 0.00025, abs=1e-12)


def test_account_funding_split_between_strategies_in_contracts() -> None:
    """Account-wide funding (strategy "") split by contracts held: a long 300 and b long 100 of the
    inverse swap; 0.0004 BTC paid splits 0.0003 / 0.0001."""
    fills = [FillRecord(1, "a", INV, "buy", 50_000.0, 300.0, 0.0, INV_C),
             FillRecord(1, "b", INV, "buy", 50_000.0, 100.0, 0.0, INV_C)]  # fmt: skip
    r = results(fills, [FundingRecord(2, "", INV, -0.0004)])
    assert r.strategies["a"].funding == pytest.approx(-0.0003)
    assert r.strategies["b"].funding == pytest.approx(-0.0001)
    assert r.account.funding == pytest.approx(-0.0004)


def test_spot_beside_a_linear_swap_in_one_account_both_usdt() -> None:
    """Spot BTC-USDT (coins, USDT) and the linear swap (contracts, USDT) in one account: the account's
    figures are the sums, one currency. Spot: 0.5 BTC from 50,000 to 52,000 = 1,000 USDT; swap: 10
    contracts (0.01 BTC) from 50,000 to 49,000 = -100 USDT; account 900. Each symbol's own contract
    (the spot none) applies to its own fills only."""
    fills = [FillRecord(1, "s", SPOT, "buy", 50_000.0, 0.5, 25.0),
             FillRecord(1, "w", LIN, "buy", 50_000.0, 10.0, 0.5, LIN_C),
             FillRecord(2, "s", SPOT, "sell", 52_000.0, 0.5, 26.0),
             FillRecord(2, "w", LIN, "sell", 49_000.0, 10.0, 0.49, LIN_C)]  # fmt: skip
    r = results(fills)
    assert r.strategies["s"].realised_pnl == pytest.approx(1_000.0)
    assert r.strategies["w"].realised_pnl == pytest.approx(-100.0)
    assert r.account.realised_pnl == pytest.approx(900.0)
    assert r.account.fees == pytest.approx(51.99)
    # the largest simultaneous value: 0.5 x 50,000 + 10 x 0.01 x 50,000 = 30,000 USDT
    assert r.account.max_notional == pytest.approx(30_000.0)


def test_spot_beside_an_inverse_swap_each_strategy_keeps_its_own_currency() -> None:
    """Spot in USDT and the inverse swap in BTC, one strategy each: each strategy's figures are right
    in its own currency (1,000 USDT; 10,000 x (1/50,000 - 1/40,000) = -0.05 BTC). The account's sum
    adds USDT and BTC (999.95): not money in any currency; the review's report says so."""
    fills = [FillRecord(1, "s", SPOT, "buy", 50_000.0, 0.5),
             FillRecord(1, "w", INV, "buy", 50_000.0, 100.0, 0.0, INV_C),
             FillRecord(2, "s", SPOT, "sell", 52_000.0, 0.5),
             FillRecord(2, "w", INV, "sell", 40_000.0, 100.0, 0.0, INV_C)]  # fmt: skip
    r = results(fills)
    assert r.strategies["s"].realised_pnl == pytest.approx(1_000.0)
    assert r.strategies["w"].realised_pnl == pytest.approx(-0.05, abs=1e-12)
    assert r.account.realised_pnl == pytest.approx(1_000.0 - 0.05)  # USDT + BTC: see the report


def test_an_inverse_swap_s_equity_and_drawdown_are_in_coins() -> None:
    """Long 100 inverse contracts (100 USD) at 50,000, fee 0.0002 BTC: the equity right after is -0.0002
    (marked at the fill's price); at a mark of 40,000 it is 10,000 x (1/50,000 - 1/40,000) - 0.0002 =
    -0.0502 BTC (the drawdown from the peak 0), then at 60,000 10,000 x (1/50,000 - 1/60,000) - 0.0002 =
    0.0331333.. BTC. Position values: 0.2, 0.25, 0.1666.. BTC."""
    fills = [FillRecord(1, "a", INV, "buy", 50_000.0, 100.0, 0.0002, INV_C)]
    marks = [Mark(2, INV, 40_000.0), Mark(3, INV, 60_000.0)]
    r = results(fills, marks=marks, start_ns=0, curve_buckets=1_000).account
    assert r.max_drawdown == pytest.approx(0.0502, abs=1e-12)
    assert r.max_notional == pytest.approx(0.25, abs=1e-12)
    assert r.unrealised_pnl == pytest.approx(10_000 * (1 / 50_000 - 1 / 60_000), abs=1e-12)
    assert r.net_pnl == pytest.approx(10_000 * (1 / 50_000 - 1 / 60_000) - 0.0002, abs=1e-12)
    assert [p[1] for p in r.equity] == pytest.approx(
        [
            0.0,
            -0.0002,
            10_000 * (1 / 50_000 - 1 / 40_000) - 0.0002,
            10_000 * (1 / 50_000 - 1 / 60_000) - 0.0002,
        ]
    )


def test_two_strategies_whose_fills_flip_the_account_add_up_to_it() -> None:
    """a buys 3 linear contracts at 100, b sells 5 at 110: the account (one book) closes 3 for
    (110 - 100) x 3 x 0.01 = 0.3 and is short 2 from 110, (105 - 110) x -2 x 0.01 = 0.1 at a mark of 105;
    a holds (105 - 100) x 3 x 0.01 = 0.15, b (105 - 110) x -5 x 0.01 = 0.25 unrealised: the strategies'
    nets add up to the account's (0.4 less the fees). The same with the inverse swap: a buys 300 at
    50,000, b sells 500 at 40,000, mark 50,000: the account -0.15 realised and -0.1 unrealised; a 0,
    b (1/40,000 - 1/50,000) x -500 x 100 = -0.25."""
    for sym, c, (pa, pb, mark), (qa, qb), (want_a, want_b) in (
        (LIN, LIN_C, (100.0, 110.0, 105.0), (3.0, 5.0), (0.15, 0.25)),
        (INV, INV_C, (50_000.0, 40_000.0, 50_000.0), (300.0, 500.0), (0.0, -0.25)),
    ):
        fills = [
            FillRecord(1, "a", sym, "buy", pa, qa, 0.001, c),
            FillRecord(2, "b", sym, "sell", pb, qb, 0.002, c),
        ]
        r = results(fills, marks=[Mark(3, sym, mark)])
        a, b, acc = r.strategies["a"], r.strategies["b"], r.account
        assert (a.unrealised_pnl, b.unrealised_pnl) == (
            pytest.approx(want_a, abs=1e-12),
            pytest.approx(want_b, abs=1e-12),
        )
        assert acc.realised_pnl + acc.unrealised_pnl == pytest.approx(want_a + want_b, abs=1e-12)
        assert acc.net_pnl == pytest.approx(a.net_pnl + b.net_pnl, abs=1e-12)
        assert acc.fees == pytest.approx(0.003) and acc.positions == {sym: qa - qb}


def test_an_inverse_level_at_a_price_of_zero_is_not_taken_and_moves_no_coins() -> None:
    """A recorded book level at 0 (bad data) met by a market sell of an inverse swap: the fill's value
    in coins (contracts x contract value / price) has no meaning; the model takes nothing there (the
    market order's rest is cancelled), moves no coins and goes on (it raised ZeroDivisionError)."""
    m = FillModel(Fees(maker=0.0, taker=0.001), ConstantLatency(MS), contracts={INV: INV_C})
    m.on_book(INV, [[0.0, 10.0]], [[1.0, 10.0]], 0)
    m.submit(SimOrder("s", INV, "sell", "market", None, 2.0), 0)
    m.advance(2 * MS)
    assert m.position.get(INV, 0.0) == 0.0 and m.orders["s"].status == "cancelled"
    assert (m.cash, m.fees_paid, m.orders["s"].fee) == (0.0, 0.0, 0.0)


def test_inverse_fills_at_a_price_of_zero_do_not_stop_the_results() -> None:
    """The same bad data reaching the results: a short of 2 inverse contracts opened at 0 is worth no
    coins (no notional, no PnL), and a lot at 0 added to a long from 50,000 leaves the average at
    50,000 (it has no 1/price): 2 contracts (100 USD) at a mark of 40,000 hold
    (1/50,000 - 1/40,000) x 2 x 100 = -0.001 BTC. (Both raised ZeroDivisionError.)"""
    r = results([FillRecord(1, "a", INV, "sell", 0.0, 2.0, 0.0, INV_C)]).account
    assert (r.positions, r.unrealised_pnl, r.max_notional) == ({INV: -2.0}, 0.0, 0.0)
    fills = [
        FillRecord(1, "a", INV, "buy", 50_000.0, 1.0, 0.0, INV_C),
        FillRecord(2, "a", INV, "buy", 0.0, 1.0),
    ]
    r = results(fills, marks=[Mark(3, INV, 40_000.0)]).account
    assert r.positions == {INV: 2.0}
    assert r.unrealised_pnl == pytest.approx(200 * (1 / 50_000 - 1 / 40_000), abs=1e-15)
