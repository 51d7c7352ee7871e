"""A backtest's money on swaps (docs/derivatives.md, "Quantities", "Money", "PnL"): quantities are
contracts, fees, PnL and notional use the contract value (linear: quote currency; inverse: coins), as
funding and the paper venue do; spot is unchanged. Every figure below is computed by hand from the
definitions, not from the code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trio

from seqtrade.backtest_results import FillRecord, results
from seqtrade.fill_model import ConstantLatency, Contract, Fees, FillModel, SimOrder
from seqtrade.models import Book, FundingRate, MarkPrice, OrderType, Side
from seqtrade.replay_fills import SimExchange
from seqtrade.venues.base import VenueOrder

MS = 1_000_000
LIN, INV, SPOT = "BTC-USDT-SWAP", "BTC-USD-SWAP", "BTC-USDT"
STRATEGY = Path(__file__).parent / "strategies" / "swap_round_trip.py"


def test_a_linear_swap_s_pnl_fees_and_funding_are_all_money_in_the_quote_currency() -> None:
    """(rvres's case) 1 BTC-USDT-SWAP contract (0.01 BTC) bought at 50,000 and sold at 51,000: 10 USDT
    realised; a taker fee of 0.1 % is 0.5 then 0.51 USDT; a funding of 0.01 % at a mark of 50,000 is
    0.05 USDT paid."""
    sim = SimExchange(Fees(maker=0.0, taker=0.001), ConstantLatency(MS), contracts={LIN: Contract(0.01)})
    reports = sim.on_market(Book(LIN, 0, [[49_999.0, 10.0]], [[50_000.0, 10.0]], 1, 0), 0)
    reports += sim.submit(VenueOrder("v1", LIN, Side.BUY, OrderType.MARKET, None, 1.0), 0)
    reports += sim.on_market(MarkPrice(LIN, 1, 50_000.0, 50_000.0, 1, 0), 2 * MS)
    reports += sim.on_market(FundingRate(LIN, 1, 0.0001, 3, 0, 1, 0), 2 * MS)
    reports += sim.on_market(Book(LIN, 4, [[51_000.0, 10.0]], [[51_001.0, 10.0]], 2, 0), 4 * MS)
    reports += sim.submit(VenueOrder("v2", LIN, Side.SELL, OrderType.MARKET, None, 1.0), 4 * MS)
    reports += sim.on_market(Book(LIN, 6, [[51_000.0, 10.0]], [[51_001.0, 10.0]], 3, 0), 6 * MS)
    assert len(sim.fills) == 2 and [f.amount for f in sim.funding] == [pytest.approx(-0.05)]
    assert [f.fee for f in sim.fills] == [pytest.approx(0.5), pytest.approx(0.51)]
    r = results(sim.fills, sim.funding, strategies=[]).account
    assert r.fees == pytest.approx(0.5 + 0.51)
    assert r.realised_pnl == pytest.approx(10.0)
    assert r.funding == pytest.approx(-0.05)
    assert r.net_pnl == pytest.approx(10.0 - 1.01 - 0.05)
    assert r.max_notional == pytest.approx(500.0)  # 1 x 0.01 x 50,000 at the buy
    # the order reports' fee (cumulative, what the strategy and the journal get)
    fees = [(e.venue_order_id, e.fee) for e in reports if e.status == "filled"]
    assert fees == [("v1", pytest.approx(0.5)), ("v2", pytest.approx(0.51))]


def test_an_inverse_swap_s_pnl_and_fees_are_in_coins() -> None:
    """200 BTC-USD-SWAP contracts (100 USD each) bought at 50,000, sold at 55,000:
    (1/50,000 - 1/55,000) x 200 x 100 = 0.4 - 0.363636.. = 0.0363636.. BTC; fees 0.1 % of the coins:
    0.001 x 20,000 / 50,000 = 0.0004 BTC, then 0.001 x 20,000 / 55,000 = 0.000363636.. BTC."""
    m = FillModel(
        Fees(maker=0.0, taker=0.001), ConstantLatency(MS), contracts={INV: Contract(100.0, True, "BTC")}
    )
    m.on_book(INV, [[49_999.0, 500.0]], [[50_000.0, 500.0]], 0)
    m.submit(SimOrder("b", INV, "buy", "market", None, 200.0), 0)
    m.on_book(INV, [[55_000.0, 500.0]], [[55_001.0, 500.0]], 2 * MS)
    m.submit(SimOrder("s", INV, "sell", "market", None, 200.0), 2 * MS)
    events = m.advance(10 * MS)
    assert m.orders["b"].fee == pytest.approx(0.0004, abs=1e-15)
    assert m.orders["s"].fee == pytest.approx(0.02 / 55, abs=1e-15)
    assert m.fees_paid == pytest.approx(0.0004 + 0.02 / 55, abs=1e-15)
    assert events  # the sell's fill
    fills = [FillRecord(1, "a", INV, "buy", 50_000.0, 200.0, m.orders["b"].fee),
             FillRecord(2, "a", INV, "sell", 55_000.0, 200.0, m.orders["s"].fee)]  # fmt: skip
    r = results(fills, contracts={INV: Contract(100.0, True, "BTC")}).account
    assert r.realised_pnl == pytest.approx(0.4 - 4 / 11, abs=1e-12)
    assert r.realised_pnl == pytest.approx(0.0364, abs=1e-4)
    assert r.fees == pytest.approx(0.0004 + 0.02 / 55, abs=1e-15)
    assert r.max_notional == pytest.approx(0.4)  # 200 x 100 / 50,000 BTC
    # the cash: + the coins' value of a buy (an inverse long is short coins), - fees; PnL = cash - value
    assert m.cash == pytest.approx(0.4 - 4 / 11 - r.fees, abs=1e-12)
    assert r.trades == 1 and r.wins == 1


def test_an_inverse_position_s_average_is_the_harmonic_mean_so_lots_add_up() -> None:
    """100 contracts at 50,000 and 100 at 55,000, all sold at 60,000: the PnL is each lot's,
    100 x 100 x (1/50,000 - 1/60,000) + 100 x 100 x (1/55,000 - 1/60,000)."""
    c = {INV: Contract(100.0, True, "BTC")}
    fills = [FillRecord(1, "a", INV, "buy", 50_000.0, 100.0), FillRecord(2, "a", INV, "buy", 55_000.0, 100.0),
             FillRecord(3, "a", INV, "sell", 60_000.0, 200.0)]  # fmt: skip
    want = 10_000 * (1 / 50_000 - 1 / 60_000) + 10_000 * (1 / 55_000 - 1 / 60_000)
    assert results(fills, contracts=c).account.realised_pnl == pytest.approx(want, rel=1e-12)


def test_unrealised_pnl_and_notional_at_the_end_use_the_contract() -> None:
    """Long 2 linear contracts (0.01 BTC) from 50,000, last mark 49,000: -20 USDT unrealised, notional
    2 x 0.01 x 50,000 = 1,000 USDT at most; short 300 inverse contracts (100 USD) from 40,000, last
    mark 50,000: (1/40,000 - 1/50,000) x -300 x 100 = -0.15 BTC unrealised."""
    from seqtrade.backtest_results import Mark

    fills = [FillRecord(1, "a", LIN, "buy", 50_000.0, 2.0, 1.0, Contract(0.01, False, "USDT")),
             FillRecord(2, "b", INV, "sell", 40_000.0, 300.0, 0.0, Contract(100.0, True, "BTC"))]  # fmt: skip
    marks = [Mark(3, LIN, 49_000.0), Mark(3, INV, 50_000.0)]
    r = results(fills, marks=marks)
    assert r.strategies["a"].unrealised_pnl == pytest.approx(-20.0)
    assert r.strategies["a"].net_pnl == pytest.approx(-21.0)
    assert r.strategies["a"].max_notional == pytest.approx(1_000.0)
    assert r.strategies["b"].unrealised_pnl == pytest.approx(-0.15)
    assert r.strategies["b"].max_notional == pytest.approx(300 * 100 / 40_000)
    assert r.strategies["a"].positions == {LIN: 2.0} and r.strategies["b"].positions == {INV: -300.0}


def test_spot_is_unchanged_quantities_in_coins() -> None:
    """1 BTC of BTC-USDT from 50,000 to 51,000, taker 0.1 %: 1,000 USDT realised, 50 + 51 fees."""
    m = FillModel(Fees(maker=0.0, taker=0.001), ConstantLatency(MS))
    m.on_book(SPOT, [[49_999.0, 5.0]], [[50_000.0, 5.0]], 0)
    m.submit(SimOrder("b", SPOT, "buy", "market", None, 1.0), 0)
    m.on_book(SPOT, [[51_000.0, 5.0]], [[51_001.0, 5.0]], 2 * MS)
    m.submit(SimOrder("s", SPOT, "sell", "market", None, 1.0), 2 * MS)
    m.advance(10 * MS)
    assert (m.orders["b"].fee, m.orders["s"].fee) == (50.0, 51.0)
    assert m.cash == 1_000.0 - 101.0
    fills = [
        FillRecord(1, "a", SPOT, "buy", 50_000.0, 1.0, 50.0),
        FillRecord(2, "a", SPOT, "sell", 51_000.0, 1.0, 51.0),
    ]
    r = results(fills).account
    assert (r.realised_pnl, r.fees, r.net_pnl, r.max_notional) == (1_000.0, 101.0, 899.0, 50_000.0)


async def _swap_recording(root: Path) -> Path:
    """20 ms of BTC-USDT-SWAP books: 99 / 100 for the first 10 ms, then 110 / 111."""
    from seqtrade import wire
    from seqtrade.config import RecorderConfig
    from seqtrade.recorder import Recorder

    t0 = 1_780_000_000_000 * MS
    rec = Recorder(RecorderConfig(enabled=True, queue=10_000), root, "paper")
    for i in range(200):
        ns = t0 + i * MS // 10
        bid, ask = (99.0, 100.0) if i < 100 else (110.0, 111.0)
        rec.md.append(wire.encode_message(Book(LIN, ns // MS, [[bid, 50.0]], [[ask, 50.0]], i + 1, ns)))
    await rec.close()
    return root


async def test_a_swap_backtest_s_order_report_fees_and_results_json_use_the_contract(tmp_path: Path) -> None:
    """``seqtrade backtest`` of a strategy that buys 2 BTC-USDT-SWAP contracts (0.01 BTC each, the paper
    default) at the ask 100 and sells them at the bid 110, taker 0.1 % (the default): fees
    0.001 x 2 x 0.01 x 100 = 0.002 and 0.0022 USDT, in the order reports and results.json; realised
    (110 - 100) x 2 x 0.01 = 0.2 USDT."""
    data = await _swap_recording(tmp_path / "rec")
    out = tmp_path / "trader.jsonl"
    cfg = tmp_path / "bt.toml"
    cfg.write_text(f"""
[server]
run_dir = "run"
status_interval = 0

[venue]
kind = "paper"
symbols = ["{LIN}"]

[[strategies]]
id = "rt"
path = "{STRATEGY}"
restart = "never"
params = {{ size = 2, exit_at = 110, out = "{out}" }}
""")
    with trio.fail_after(120):
        proc = await trio.run_process(
            [sys.executable, "-m", "seqtrade.cli", "backtest", "--data", str(data), "--config", str(cfg),
             "--out", str(tmp_path / "res"), "--no-plot", "--quiet", "--taker-fee", "0.001"],
            capture_stdout=True, capture_stderr=True, check=False, cwd=tmp_path,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    filled = [(d["side"], d["avg"], d["fee"]) for d in lines if d.get("status") == "filled"]
    assert filled == [("buy", 100.0, pytest.approx(0.002)), ("sell", 110.0, pytest.approx(0.0022))], lines
    assert lines[-1] == {"kind": "stop", "position": 0.0}
    doc = json.loads((tmp_path / "res" / "results.json").read_text())
    for s in (doc["account"], doc["strategies"]["rt"]):
        assert s["realised_pnl"] == pytest.approx(0.2)
        assert s["fees"] == pytest.approx(0.0042)
        assert s["net_pnl"] == pytest.approx(0.2 - 0.0042)
        assert s["unrealised_pnl"] == 0.0 and s["positions"] == {}
        assert s["trades"] == 1 and s["wins"] == 1
        # the marks are the books' mids, 99.5 then 110.5: the largest notional 2 x 0.01 x 110.5; the
        # equity after the buy (99.5 - 100) x 0.02 - 0.002 = -0.012, its peak at the mid 110.5
        # (110.5 - 100) x 0.02 - 0.002 = 0.208, then 0.1958 after the sell: a drawdown of 0.0122
        assert s["max_notional"] == pytest.approx(2.21)
        assert s["max_drawdown"] == pytest.approx(0.0122)


def test_an_inverse_swap_s_level_at_a_price_of_zero_is_not_taken() -> None:
    """A recorded book with a level at price 0 (bad data) on an inverse swap: a market order stops there
    (no fill, the rest cancelled) instead of failing on a coin value divided by 0 (seen: ZeroDivisionError
    in the fill model, which would stop the backtest); a linear swap's and spot's arithmetic do not divide."""
    m = FillModel(
        Fees(maker=0.0, taker=0.001), ConstantLatency(1), contracts={"Y": Contract(100.0, inverse=True)}
    )
    m.on_book("Y", [[0.0, 5.0]], [[1.0, 5.0]], 0)
    m.submit(SimOrder("s1", "Y", "sell", "market", None, 2.0), 0)
    events = m.on_book("Y", [[0.0, 5.0]], [[1.0, 5.0]], 10)
    assert m.position.get("Y", 0.0) == 0.0 and m.cash == 0.0 and m.orders["s1"].filled == 0.0
    assert [getattr(e, "status", None) for e in events][-1] == "cancelled"
