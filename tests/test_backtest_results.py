"""Backtest results (seqtrade.backtest_results): hand-computed cases for every figure."""

from __future__ import annotations

import json
import math

import pytest

from seqtrade.backtest_results import FillRecord as F
from seqtrade.backtest_results import FundingRecord, Mark, progress_line, results, to_json

S = 1_000_000_000  # one second in ns


def test_long_round_trip_realised_fees_drawdown_exposure_sharpe():
    # buy 2 @100, sell 1 @110 a minute later, sell 1 @90 a minute after that; fees 0.1 % of notional
    fills = [
        F(0, "a", "X", "buy", 100.0, 2.0, 0.2),
        F(60 * S, "a", "X", "sell", 110.0, 1.0, 0.11),
        F(120 * S, "a", "X", "sell", 90.0, 1.0, 0.09),
    ]
    r = results(fills)
    a = r.strategies["a"]
    assert a.realised_pnl == pytest.approx(10.0 - 10.0)
    assert a.unrealised_pnl == 0.0
    assert a.fees == pytest.approx(0.4)
    assert a.net_pnl == pytest.approx(-0.4)
    assert (a.fills, a.trades, a.wins, a.win_rate) == (3, 1, 0, 0.0)  # one round trip, lost 0.4
    # equity: -0.2 (fee), then +10 realised +10 unrealised (mark 110) -0.31 fees, then -0.4
    assert [e for _, e in a.equity] == pytest.approx([-0.2, 19.69, -0.4])
    assert a.max_drawdown == pytest.approx(19.69 + 0.4)
    assert a.max_notional == pytest.approx(200.0)
    assert a.exposure == pytest.approx(1.0)  # held from the first to the last event
    # minute samples -0.2, 19.69, -0.4: increments 19.89 and -20.09
    mean, sd = -0.1, math.sqrt(2 * 19.99**2)
    assert a.sharpe == pytest.approx(mean / sd * math.sqrt(365 * 86400 / 60))
    assert a.positions == {}
    assert r.account.net_pnl == pytest.approx(a.net_pnl)


def test_short_flip_counts_two_trades_and_shares_the_fee():
    fills = [
        F(0, "a", "X", "sell", 100.0, 1.0, 0.0),
        F(10 * S, "a", "X", "buy", 90.0, 2.0, 0.2),  # closes the short (+10), opens 1 long at 90
        F(20 * S, "a", "X", "sell", 89.0, 1.0, 0.0),  # -1 on the long: 1 - 0.1 fee share: a loss
    ]
    a = results(fills, end_ns=40 * S).strategies["a"]
    assert a.realised_pnl == pytest.approx(10.0 - 1.0)
    assert (a.trades, a.wins, a.win_rate) == (2, 1, 0.5)  # 9.9 won, -1.1 lost
    assert a.exposure == pytest.approx(0.5)  # held 0..20 s of 0..40 s
    assert a.sharpe is None  # a minute period over 40 s: no increment


def test_unrealised_at_the_last_mark_funding_and_the_account_nets_strategies():
    fills = [F(0, "a", "X", "buy", 100.0, 1.0, 0.0), F(0, "b", "X", "sell", 100.0, 1.0, 0.0)]
    marks = [Mark(5 * S, "X", 103.0), Mark(10 * S, "X", 105.0)]
    funding = [FundingRecord(8 * S, "a", "X", -1.0), FundingRecord(8 * S, "b", "X", 1.0)]
    r = results(fills, funding, marks)
    a, b, acct = r.strategies["a"], r.strategies["b"], r.account
    assert (a.unrealised_pnl, b.unrealised_pnl) == (5.0, -5.0)
    assert (a.funding, b.funding) == (-1.0, 1.0)
    assert a.net_pnl == 4.0 and b.net_pnl == -4.0
    assert a.positions == {"X": 1.0} and b.positions == {"X": -1.0}
    assert a.trades == 0 and a.win_rate is None
    assert acct.funding == 0.0 and acct.net_pnl == 0.0 and acct.positions == {}
    # b: 0, -3 at the first mark, -2 after +1 funding, -4 at the last mark: the worst is 4 below 0
    assert [e for _, e in b.equity] == [0.0, -3.0, -2.0, -4.0]
    assert b.max_drawdown == 4.0


def test_drawdown_of_the_short_side_is_its_lowest_equity():
    fills = [F(0, "b", "X", "sell", 100.0, 1.0, 0.0)]
    marks = [Mark(5 * S, "X", 103.0), Mark(10 * S, "X", 105.0), Mark(12 * S, "X", 101.0)]
    b = results(fills, marks=marks).strategies["b"]
    assert [e for _, e in b.equity] == [0.0, -3.0, -5.0, -1.0]
    assert b.max_drawdown == 5.0
    assert b.unrealised_pnl == -1.0


def test_account_of_opposite_strategies_is_flat():
    fills = [F(0, "a", "X", "buy", 100.0, 1.0, 0.0), F(0, "b", "X", "sell", 100.0, 1.0, 0.0)]
    r = results(fills, marks=[Mark(10 * S, "X", 105.0)])
    assert r.account.positions == {} and r.account.unrealised_pnl == 0.0
    assert r.account.trades == 1  # flat -> long -> flat in one book
    assert r.account.exposure == 0.0


def test_json_is_stable_and_readable():
    fills = [F(0, "a", "X", "buy", 100.0, 1.0, 0.1), F(S, "a", "X", "sell", 101.0, 1.0, 0.1)]
    text = to_json(results(fills, strategies=["idle"]))
    assert text == to_json(results(list(fills), strategies=["idle"]))
    doc = json.loads(text)
    assert doc["strategies"]["a"]["realised_pnl"] == pytest.approx(1.0)
    assert doc["strategies"]["idle"]["fills"] == 0
    assert doc["account"]["net_pnl"] == pytest.approx(0.8)
    assert doc["strategies"]["a"]["equity"][-1] == [S, pytest.approx(0.8)]


def test_progress_line_rate_and_eta():
    assert progress_line(250, 1000, 5.0) == "backtest  25.0%  250/1,000 events  50 events/s  ETA 0:00:15"
    assert progress_line(0, 10, 0.0).endswith("ETA ?")
    assert progress_line(10, 10, 2.0).endswith("ETA 0:00:00")
    assert "ETA 1:00:00" in progress_line(1, 3601, 1.0)


def test_results_are_written_as_json_and_an_equity_plot(tmp_path):
    from seqtrade.backtest_report import write_results

    fills = [F(0, "a", "X", "buy", 100.0, 1.0, 0.1), F(90 * S, "a", "X", "sell", 101.0, 1.0, 0.1)]
    r = results(fills, marks=[Mark(30 * S, "X", 99.0)])
    paths = write_results(r, tmp_path / "out")
    assert [p.name for p in paths] == ["results.json", "equity.png"]
    assert json.loads(paths[0].read_text())["account"]["fills"] == 2
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_funding_is_split_between_strategies_by_their_share_of_the_position_then() -> None:
    from seqtrade.backtest_results import split_funding

    fills = [
        F(1, "a", "S", "buy", 100.0, 3.0, 0.0),
        F(2, "b", "S", "sell", 100.0, 1.0, 0.0),
        F(3, "c", "T", "buy", 10.0, 5.0, 0.0),  # another symbol: no share
        F(9, "b", "S", "buy", 100.0, 5.0, 0.0),  # after the payment: does not count
    ]
    got = split_funding([FundingRecord(5, "", "S", -0.2)], fills)
    assert [(f.strategy, f.symbol, f.ts_ns) for f in got] == [("a", "S", 5), ("b", "S", 5)]
    assert [f.amount for f in got] == pytest.approx([-0.3, 0.1])  # net +2: a holds 3/2, b -1/2
    assert sum(f.amount for f in got) == pytest.approx(-0.2)
    assert split_funding([FundingRecord(5, "", "X", -0.2)], fills) == []  # nobody holds X
