"""Backtest results (seqtrade.backtest_results): hand-computed cases for every figure."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrade.backtest_results import (
    CURVE_BUCKETS,
    FundingRecord,
    Mark,
    Tally,
    progress_line,
    results,
    split_funding,
    to_json,
)
from seqtrade.backtest_results import FillRecord as F

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


# --- bounded results: the curve's buckets, drawdown at full resolution, many symbols, batches ---------


def test_a_drawdown_inside_one_bucket_is_counted_in_full_though_the_curve_keeps_four_points():
    # long 1 @100; the price goes 110, 95, 120, 112, 125: the equity 0, 10, -5, 20, 12, 25
    fills = [F(0, "a", "X", "buy", 100.0, 1.0, 0.0)]
    prices = [(1, 110.0), (2, 95.0), (3, 120.0), (4, 112.0), (5, 125.0)]
    marks = [Mark(t * S, "X", p) for t, p in prices]
    a = results(fills, marks=marks, end_ns=6 * S, curve_buckets=1).strategies["a"]
    # the worst fall from a running peak: from 10 to -5 (from 20 to 12 is only 8)
    assert a.max_drawdown == 15.0
    # one bucket (the smallest power of two above 5 s): its first, lowest, highest (= last) point, then the end
    assert a.equity_bucket_ns == 2**33
    assert a.equity == [(0, 0.0), (2 * S, -5.0), (5 * S, 25.0), (6 * S, 25.0)]
    # (those points alone would say a drawdown of 5: the figure is not taken from the curve)
    full = results(fills, marks=marks, end_ns=6 * S).strategies["a"]
    assert full.equity_bucket_ns == 1 and full.max_drawdown == 15.0
    assert full.equity == [(0, 0.0), *((t * S, p - 100.0) for t, p in prices), (6 * S, 25.0)]
    assert a.unrealised_pnl == full.unrealised_pnl == 25.0


def test_fills_inside_one_bucket_all_count():
    fills = [
        F(0, "a", "X", "buy", 100.0, 1.0, 0.5),
        F(1 * S, "a", "X", "sell", 104.0, 1.0, 0.5),  # a trade of 4 - 1 = 3: won
        F(2 * S, "a", "X", "buy", 104.0, 2.0, 1.0),
        F(3 * S, "a", "X", "sell", 103.0, 2.0, 1.0),  # a trade of -2 - 2 = -4: lost
    ]
    a = results(fills, end_ns=40 * S, curve_buckets=1).strategies["a"]
    assert (a.fills, a.trades, a.wins, a.win_rate) == (4, 2, 1, 0.5)
    assert (a.realised_pnl, a.fees, a.net_pnl) == (2.0, 3.0, -1.0)
    # the equity after each fill: -0.5, 3, 2, -1; the bucket keeps first, highest, lowest = last
    assert a.equity == [(0, -0.5), (1 * S, 3.0), (3 * S, -1.0), (40 * S, -1.0)]
    assert a.max_drawdown == 4.0  # from 3 to -1
    assert a.max_notional == 208.0  # 2 @104
    assert a.exposure == pytest.approx((1 + 1) / 40)  # held 0-1 s and 2-3 s


def test_many_symbols_and_two_strategies():
    fills = [
        F(0, "a", "X", "buy", 100.0, 1.0, 0.0),
        F(0, "a", "Y", "sell", 50.0, 2.0, 0.0),
        F(1 * S, "b", "Z", "buy", 1.0, 10.0, 0.0),
        F(4 * S, "b", "Z", "sell", 1.5, 10.0, 0.0),  # b flat from 4 s: +5 realised
        F(6 * S, "b", "X", "sell", 102.0, 1.0, 0.0),  # b short X: the account is flat in X
    ]
    marks = [Mark(2 * S, "X", 101.0), Mark(2 * S, "Y", 49.0), Mark(3 * S, "Z", 2.0), Mark(8 * S, "X", 103.0)]
    r = results(fills, marks=marks, end_ns=10 * S)
    a, b, acct = r.strategies["a"], r.strategies["b"], r.account
    assert a.positions == {"X": 1.0, "Y": -2.0} and b.positions == {"X": -1.0}
    assert acct.positions == {"Y": -2.0}
    # a: X 1 x (103 - 100) + Y -2 x (49 - 50) = 5; b: X -1 x (103 - 102) = -1, Z +5 realised
    assert (a.unrealised_pnl, b.unrealised_pnl, b.realised_pnl) == (5.0, -1.0, 5.0)
    # the account: X closed at 102 (+2 realised), Z +5, Y +2 unrealised
    assert (acct.realised_pnl, acct.unrealised_pnl, acct.net_pnl) == (7.0, 2.0, 9.0)
    # b's equity from the start: +10 at Z's mark of 2 (3 s), 5 once sold at 1.5, 6 short X at 102 with
    # X's mark at 101 (6 s), 4 at X's 103 (8 s)
    assert b.equity == [(0, 0.0), (3 * S, 10.0), (4 * S, 5.0), (6 * S, 6.0), (8 * S, 4.0), (10 * S, 4.0)]
    assert b.max_drawdown == 6.0  # from 10 to 4
    assert b.max_notional == 103.0  # the short X at 103 (10 Z at 2 were 20)
    assert b.exposure == pytest.approx((3 + 4) / 10)  # Z 1-4 s, X 6-10 s
    # the account: 3 at 2 s (X +1, Y +2), 13 with Z at 2, 8, 9 (+2 realised in X, X's mark no longer counts)
    assert acct.equity == [(0, 0.0), (2 * S, 3.0), (3 * S, 13.0), (4 * S, 8.0), (6 * S, 9.0), (10 * S, 9.0)]
    assert (acct.max_drawdown, acct.max_notional) == (5.0, 101.0 + 98.0 + 20.0)
    assert (acct.trades, acct.wins) == (2, 2)  # Z, and X between a and b
    assert a.exposure == 1.0 and acct.exposure == 1.0
    assert a.max_notional == 103.0 + 98.0  # X at 103 and 2 Y at 49


def _naive(fills, funding, marks, start, end, period_s, cap):
    """docs/backtesting.md's definitions ("Results") the plain way: every book sees every event in time
    order (marks, then fills, then funding at one time), the whole curve kept, then reduced."""
    tagged = [(m.ts_ns, 0, i, m) for i, m in enumerate(marks)]
    tagged += [(f.ts_ns, 1, i, f) for i, f in enumerate(fills)] + [
        (f.ts_ns, 2, i, f) for i, f in enumerate(funding)
    ]
    events = [e for *_, e in sorted(tagged, key=lambda t: t[:3])]
    names = sorted({f.strategy for f in fills} | {f.strategy for f in funding})
    mine = {n: [e for e in events if isinstance(e, Mark) or e.strategy == n] for n in names}
    return {**{n: _naive_book(evs, start, end, period_s, cap) for n, evs in mine.items()},
            "": _naive_book(events, start, end, period_s, cap)}  # fmt: skip


def _naive_book(events, start, end, period_s, cap):
    qty, avg, trip, px, recorded = {}, {}, {}, {}, set()
    out = dict(realised=0.0, fees=0.0, funding=0.0, fills=0, trades=0, wins=0, dd=0.0, notional=0.0)
    peak, held, last, holding, after = 0.0, 0, start, False, []
    for e in events:
        held += e.ts_ns - last if holding else 0
        last = e.ts_ns
        if isinstance(e, Mark):
            px[e.symbol] = e.price
            recorded.add(e.symbol)
        elif isinstance(e, FundingRecord):
            out["funding"] += e.amount
        else:
            out["fills"] += 1
            out["fees"] += e.fee
            if e.symbol not in recorded:
                px[e.symbol] = e.price
            q, a = qty.setdefault(e.symbol, 0.0), avg.get(e.symbol, 0.0)
            signed = e.quantity if e.side == "buy" else -e.quantity
            closing = min(abs(signed), abs(q)) if q and (q > 0) != (signed > 0) else 0.0
            if closing > 0:
                pnl = closing * (e.price - a) * (1.0 if q > 0 else -1.0)
                out["realised"] += pnl
                trip[e.symbol] = trip.get(e.symbol, 0.0) + pnl - e.fee * closing / e.quantity
                q += math.copysign(closing, signed)
                if abs(q) < 1e-9:
                    q = 0.0
                    out["trades"] += 1
                    out["wins"] += trip[e.symbol] > 0
                    trip[e.symbol] = 0.0
            opening = abs(signed) - closing
            if opening > 1e-9:
                new = q + math.copysign(opening, signed)
                avg[e.symbol] = (a * abs(q) + e.price * opening) / abs(new)
                q = new
                trip[e.symbol] = trip.get(e.symbol, 0.0) - e.fee * opening / e.quantity
            qty[e.symbol] = q
        holding = any(qty.values())
        unreal = sum(q * (px[s] - avg[s]) for s, q in qty.items() if q)
        eq = out["realised"] + unreal - out["fees"] + out["funding"]
        after.append((e.ts_ns, eq))
        peak = max(peak, eq)
        out["dd"] = max(out["dd"], peak - eq)
        out["notional"] = max(out["notional"], sum(abs(q) * px[s] for s, q in qty.items() if q))
    out["unrealised"] = sum(q * (px[s] - avg[s]) for s, q in qty.items() if q)
    out["exposure"] = (held + (end - last if holding else 0)) / (end - start) if end > start else 0.0
    # the Sharpe: samples every period from the start, the last value at or before each
    step, samples, t = int(period_s * 1e9), [], start
    while t <= end:
        samples.append(([0.0] + [v for ts, v in after if ts <= t])[-1])
        t += step
    d = [b - a for a, b in zip(samples, samples[1:], strict=False)]
    mean = sum(d) / len(d) if d else 0.0
    var = sum((x - mean) ** 2 for x in d) / (len(d) - 1) if len(d) > 1 else 0.0
    out["sharpe"] = mean / math.sqrt(var) * math.sqrt(365 * 86400 / period_s) if var > 0 else None
    # the curve: a point per time the equity changed (its value after that time), from (start, 0)
    full = [(start, 0.0)]
    for ts, v in after:
        if ts == full[-1][0]:
            full[-1] = (ts, v)
        elif v != full[-1][1]:
            full.append((ts, v))
    full = [p for i, p in enumerate(full) if i == 0 or p[1] != full[i - 1][1]]
    k = 0
    while len({(ts - start) >> k for ts, _ in full}) > cap:
        k += 1
    kept = []
    for _, group in itertools.groupby(full, key=lambda p: (p[0] - start) >> k):
        g = list(group)
        kept += sorted({g[0], min(g, key=lambda p: p[1]), max(g, key=lambda p: p[1]), g[-1]})
    if end > kept[-1][0]:
        kept.append((end, full[-1][1]))
    out["curve"], out["bucket"] = kept, 1 << k
    return out


_times = st.integers(0, 40).map(lambda q: q * S // 4)
_sym = st.sampled_from(["X", "Y", "Z"])
_fill = st.builds(F, _times, st.sampled_from(["a", "b"]), _sym, st.sampled_from(["buy", "sell"]),
                  st.integers(180, 220).map(lambda p: p / 2), st.sampled_from([0.5, 1.0, 1.5, 2.0]),
                  st.integers(0, 8).map(lambda f: f / 16))  # fmt: skip
_mark = st.builds(Mark, _times, _sym, st.integers(180, 220).map(lambda p: p / 2))
_funding = st.builds(
    FundingRecord, _times, st.sampled_from(["a", "b"]), _sym, st.integers(-8, 8).map(lambda a: a / 8)
)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(st.lists(_fill, max_size=12), st.lists(_funding, max_size=3), st.lists(_mark, max_size=30),
       st.sampled_from([1, 2, 3, 500]), st.sampled_from([1.0, 3.0]), st.integers(0, 3))  # fmt: skip
def test_the_figures_are_the_definitions_computed_the_plain_way(fills, funding, marks, cap, period, extra):
    fills = sorted(fills, key=lambda f: f.ts_ns)  # as the fill model makes them
    end = 10 * S + extra * S
    r = results(fills, funding, marks, start_ns=0, end_ns=end, period_s=period, curve_buckets=cap)
    want = _naive(fills, funding, marks, 0, end, period, cap)
    for name, s in [*r.strategies.items(), ("", r.account)]:
        w = want[name]
        assert (s.realised_pnl, s.unrealised_pnl, s.fees, s.funding) == (
            w["realised"],
            w["unrealised"],
            w["fees"],
            w["funding"],
        )
        assert (s.fills, s.trades, s.wins) == (w["fills"], w["trades"], w["wins"])
        assert (s.max_drawdown, s.max_notional, s.exposure) == (w["dd"], w["notional"], w["exposure"])
        assert s.equity == w["curve"] and s.equity_bucket_ns == w["bucket"]
        assert len(s.equity) <= 4 * cap + 1
        if w["sharpe"] is None or s.sharpe is None:  # (a two-pass variance of equal increments may be ~0)
            assert w["sharpe"] is None or abs(w["sharpe"]) > 1e6 or s.sharpe is not None
        else:
            assert s.sharpe == pytest.approx(w["sharpe"], rel=1e-9)


@settings(max_examples=100, derandomize=True, deadline=None)
@given(st.lists(_fill, max_size=12), st.lists(_mark, max_size=30), st.lists(_times, max_size=5),
       st.sampled_from([1, 2, 500]))  # fmt: skip
def test_a_tally_fed_in_batches_gives_the_same_bytes_as_all_at_once(fills, marks, cuts, cap):
    fills = sorted(fills, key=lambda f: f.ts_ns)
    funding = [FundingRecord(f.ts_ns, "", f.symbol, -0.25) for f in fills[::3]]  # account-wide: split
    whole = Tally(0, 2.0, ["a", "b"], curve_buckets=cap)
    whole.add([(m.ts_ns, m.symbol, m.price) for m in marks], fills, funding)
    parts = Tally(0, 2.0, ["a", "b"], curve_buckets=cap)
    edges = [0, *sorted(cuts), 11 * S]
    for lo, hi in zip(edges, edges[1:], strict=False):
        parts.add([(m.ts_ns, m.symbol, m.price) for m in marks if lo <= m.ts_ns < hi],
                  [f for f in fills if lo <= f.ts_ns < hi], [f for f in funding if lo <= f.ts_ns < hi])  # fmt: skip
        parts.results(hi)  # asked on the way (the dashboard): changes nothing
    assert to_json(parts.results(11 * S)) == to_json(whole.results(11 * S))
    # account-wide funding split as split_funding does it
    split = results(fills, split_funding(funding, fills), marks, strategies=["a", "b"], start_ns=0, end_ns=11 * S,
                    period_s=2.0, curve_buckets=cap)  # fmt: skip
    assert to_json(whole.results(11 * S)) == to_json(split)


def test_a_curve_stays_bounded_over_a_long_run():
    t = Tally(0, 60.0, ["a"])
    t.add(fills=[F(0, "a", "X", "buy", 100.0, 1.0, 0.0)])
    for i in range(1, 200_000):  # a price change every 10 ms for 2000 s
        t.mark(i * 10_000_000, "X", 100.0 + (i * 7919 % 201 - 100) / 10)
    a = t.results(2000 * S).strategies["a"]
    assert len(a.equity) <= 4 * CURVE_BUCKETS + 1
    assert a.equity_bucket_ns == 2**32  # 2000 s in at most 500 buckets of a power of two ns
    assert min(v for _, v in a.equity) == -10.0 and max(v for _, v in a.equity) == 10.0  # the extremes kept
    assert a.max_drawdown == 20.0


def test_one_time_is_one_point_of_the_curve_but_every_event_counts_for_the_drawdown():
    # X recorded at 101; at 2 s a buy at 100 (+1 at once), then funding of -1 at that time: back to 0
    fills = [F(2 * S, "a", "X", "buy", 100.0, 1.0, 0.0)]
    funding = [FundingRecord(2 * S, "a", "X", -1.0)]
    marks = [Mark(0, "X", 101.0), Mark(3 * S, "X", 103.0)]
    a = results(fills, funding, marks, end_ns=4 * S).strategies["a"]
    assert a.equity == [
        (0, 0.0),
        (3 * S, 2.0),
        (4 * S, 2.0),
    ]  # nothing at 2 s: the equity ended there as it was
    assert a.max_drawdown == 1.0  # from the 1 between the fill and the funding, back to 0


def test_the_results_module_is_pure():
    from .test_layout import IO_LIBS, loaded_after_import

    loaded = loaded_after_import("seqtrade.backtest_results")
    assert not [m for m in IO_LIBS if m in loaded]
