"""A second reader's probes of the streaming results (seqtrade.backtest_results.Tally and the running
backtest's results): every figure but the curve and the Sharpe's last digits equal to the implementation
it replaced, whatever the order of events at one time, the symbols, the fills before a symbol's first
recorded price, the account-wide funding split between strategies holding opposite positions, and the
batches the tally is fed in; results asked twice in a row, and after the end, are the same bytes.

The reference is the replaced implementation (a whole list sorted, then every book sees every event),
kept here as small as it goes: :func:`_old_results`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrade.backtest_results import FillRecord as F
from seqtrade.backtest_results import FundingRecord, Mark, Tally, split_funding, to_json
from seqtrade.fill_model import ConstantLatency
from seqtrade.replay_backtest import BacktestVenue

from .test_backtest_results_live import MS, T0, Desk, record
from .test_backtest_results_live import S as SYMBOL

S = 1_000_000_000
_EPS = 1e-9


# ---------------------------------------------------------------------- the replaced implementation


def _old_book(events: list[Any], start: int, end: int, period_s: float) -> dict[str, Any]:
    legs: dict[str, list[float]] = {}  # symbol -> [qty, avg, trip]
    marks: dict[str, float] = {}
    marked: set[str] = set()
    o: dict[str, Any] = dict(realised_pnl=0.0, fees=0.0, funding=0.0, fills=0, trades=0, wins=0,
                             max_drawdown=0.0, max_notional=0.0)  # fmt: skip
    equity: list[tuple[int, float]] = []
    peak, held, last, holding = 0.0, 0, start, False

    def unrealised() -> float:
        return sum(leg[0] * (marks[sym] - leg[1]) for sym, leg in legs.items() if leg[0])

    for e in events:
        if holding:
            held += e.ts_ns - last
        last = e.ts_ns
        if isinstance(e, Mark):
            marks[e.symbol] = e.price
            marked.add(e.symbol)
        elif isinstance(e, F):
            leg = legs.setdefault(e.symbol, [0.0, 0.0, 0.0])
            o["fills"] += 1
            o["fees"] += e.fee
            if e.symbol not in marked:
                marks[e.symbol] = e.price
            signed = e.quantity if e.side == "buy" else -e.quantity
            closing = min(abs(signed), abs(leg[0])) if leg[0] and (leg[0] > 0) != (signed > 0) else 0.0
            opening = abs(signed) - closing
            if closing > 0:
                pnl = closing * (e.price - leg[1]) * (1.0 if leg[0] > 0 else -1.0)
                o["realised_pnl"] += pnl
                leg[2] += pnl - e.fee * closing / e.quantity
                leg[0] += math.copysign(closing, signed)
                if abs(leg[0]) < _EPS:
                    leg[0] = 0.0
                    o["trades"] += 1
                    o["wins"] += leg[2] > 0
                    leg[2] = 0.0
            if opening > _EPS:
                new = leg[0] + math.copysign(opening, signed)
                leg[1] = (leg[1] * abs(leg[0]) + e.price * opening) / abs(new)
                leg[0] = new
                leg[2] -= e.fee * opening / e.quantity
        else:
            o["funding"] += e.amount
        holding = any(leg[0] for leg in legs.values())
        eq = o["realised_pnl"] + unrealised() - o["fees"] + o["funding"]
        if equity and equity[-1][0] == e.ts_ns:
            equity[-1] = (e.ts_ns, eq)
        else:
            equity.append((e.ts_ns, eq))
        peak = max(peak, eq)
        o["max_drawdown"] = max(o["max_drawdown"], peak - eq)
        notional = sum(abs(leg[0]) * marks[sym] for sym, leg in legs.items() if leg[0])
        o["max_notional"] = max(o["max_notional"], notional)
    if holding:
        held += end - last
    o["unrealised_pnl"] = unrealised()
    o["net_pnl"] = o["realised_pnl"] + o["unrealised_pnl"] - o["fees"] + o["funding"]
    o["win_rate"] = o["wins"] / o["trades"] if o["trades"] else None
    o["exposure"] = held / (end - start) if end > start else 0.0
    o["positions"] = {sym: leg[0] for sym, leg in sorted(legs.items()) if leg[0]}
    # the Sharpe, two passes over the samples
    step, samples, i, value, t = int(period_s * 1e9), [], 0, 0.0, start
    while t <= end:
        while i < len(equity) and equity[i][0] <= t:
            value = equity[i][1]
            i += 1
        samples.append(value)
        t += step
    d = [b - a for a, b in zip(samples, samples[1:], strict=False)]
    o["sharpe"] = None
    if len(d) >= 2:
        mean = sum(d) / len(d)
        var = sum((x - mean) ** 2 for x in d) / (len(d) - 1)
        if var > 0:
            o["sharpe"] = mean / math.sqrt(var) * math.sqrt(365 * 86_400 / period_s)
    return o


def _old_results(fills: list[F], funding: list[FundingRecord], marks: list[Mark], strategies: list[str],
                 start: int, end: int, period_s: float) -> dict[str, dict[str, Any]]:  # fmt: skip
    """What the replaced BacktestVenue.results computed: account-wide funding split first, then every
    event sorted (marks, fills, funding at one time, each in the given order)."""
    funding = split_funding(funding, fills)  # (unchanged by res17: the same function)
    tagged = [(e.ts_ns, r, i, e) for r, g in enumerate((marks, fills, funding)) for i, e in enumerate(g)]
    events = [t[3] for t in sorted(tagged, key=lambda t: t[:3])]
    names = sorted({*strategies, *(f.strategy for f in fills), *(f.strategy for f in funding)})
    out = {n: _old_book([e for e in events if isinstance(e, Mark) or e.strategy == n], start, end, period_s)
           for n in names}  # fmt: skip
    out[""] = _old_book(events, start, end, period_s)
    return out


# ---------------------------------------------------------------------- the probes

_FIGURES = ("realised_pnl", "unrealised_pnl", "fees", "funding", "net_pnl", "fills", "trades", "wins",
            "win_rate", "max_drawdown", "exposure", "max_notional", "positions")  # fmt: skip

_t = st.integers(0, 24).map(lambda q: q * S // 2)  # a coarse grid: many events at one time
_sym = st.sampled_from(["X", "Y"])
_fill = st.builds(F, _t, st.sampled_from(["a", "b", "c"]), _sym, st.sampled_from(["buy", "sell"]),
                  st.integers(90, 110).map(float), st.sampled_from([0.5, 1.0, 2.0, 3.0]),
                  st.integers(0, 4).map(lambda f: f / 8))  # fmt: skip
_mark = st.builds(Mark, _t, _sym, st.integers(90, 110).map(float))
_acct_funding = st.builds(FundingRecord, _t, st.just(""), _sym, st.integers(-8, 8).map(lambda a: a / 4))


def _compare(new: Any, old: dict[str, Any]) -> None:
    for name in _FIGURES:
        assert getattr(new, name) == old[name], name
    if old["sharpe"] is None or new.sharpe is None:
        # (a two-pass variance of equal increments may be a rounding error above 0: a huge figure)
        assert (old["sharpe"] is None or abs(old["sharpe"]) > 1e6) == (new.sharpe is None)
    else:
        assert new.sharpe == pytest.approx(old["sharpe"], rel=1e-9, abs=1e-9)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(_fill, max_size=14), st.lists(_acct_funding, max_size=4), st.lists(_mark, max_size=20),
       st.lists(_t, max_size=4), st.sampled_from([0.5, 1.0, 3.0]))  # fmt: skip
def test_every_figure_but_the_curve_equals_the_replaced_implementation(fills, funding, marks, cuts, period):
    """Fills of several strategies and symbols at one time as marks and funding, fills before their
    symbol's first mark, account-wide funding while strategies hold opposite positions (or none), fed
    in batches cut where the running backtest cuts them (at a time: what is before it)."""
    fills = sorted(fills, key=lambda f: f.ts_ns)  # as the fill model makes them
    end = 13 * S
    old = _old_results(fills, funding, marks, ["a", "b", "c"], 0, end, period)
    tally = Tally(0, period, ["a", "b", "c"])
    edges = [0, *sorted(cuts), end + 1]
    for lo, hi in zip(edges, edges[1:], strict=False):
        tally.add([(m.ts_ns, m.symbol, m.price) for m in marks if lo <= m.ts_ns < hi],
                  [f for f in fills if lo <= f.ts_ns < hi], [f for f in funding if lo <= f.ts_ns < hi])  # fmt: skip
        tally.results(hi)
    new = tally.results(end)
    assert sorted(new.strategies) == sorted(n for n in old if n)
    _compare(new.account, old[""])
    for name, s in new.strategies.items():
        _compare(s, old[name])


def test_account_wide_funding_with_opposite_positions_is_split_by_signed_share():
    # a long 3, b short 1: the account holds 2 and pays 2; a pays 3, b receives 1 (as the old split did)
    fills = [F(0, "a", "X", "buy", 100.0, 3.0), F(0, "b", "X", "sell", 100.0, 1.0)]
    funding = [FundingRecord(S, "", "X", -2.0)]
    t = Tally(0, 1.0, ["a", "b"])
    t.add([], fills, funding)
    r = t.results(2 * S)
    assert (r.strategies["a"].funding, r.strategies["b"].funding, r.account.funding) == (-3.0, 1.0, -2.0)
    old = _old_results(fills, funding, [], ["a", "b"], 0, 2 * S, 1.0)
    assert [old[n]["funding"] for n in ("a", "b", "")] == [-3.0, 1.0, -2.0]
    # exactly opposite: the account holds nothing, nothing is paid (the fill model pays none either)
    flat = Tally(0, 1.0, ["a", "b"])
    flat.add([], [F(0, "a", "X", "buy", 100.0, 1.0), F(0, "b", "X", "sell", 100.0, 1.0)], funding)
    assert flat.results(2 * S).account.funding == 0.0


def test_a_fill_before_the_first_mark_is_its_own_mark_until_one_is_recorded():
    t = Tally(0, 1.0, ["a"])
    t.add([], [F(S, "a", "X", "buy", 100.0, 1.0)])
    assert t.results(2 * S).account.unrealised_pnl == 0.0
    t.add([(3 * S, "X", 104.0)], [F(3 * S, "a", "X", "buy", 102.0, 1.0)])  # the mark first at one time
    r = t.results(4 * S)
    assert r.account.unrealised_pnl == 2 * 104.0 - 202.0
    assert r.account.max_notional == 208.0


async def test_results_asked_twice_in_a_row_and_after_the_end_are_the_same_bytes(tmp_path: Path) -> None:
    data = await record(tmp_path / "rec", 12)
    venue = BacktestVenue(data, [SYMBOL], latency=ConstantLatency(MS), lookahead_ns=MS, queue="none")
    pairs: list[tuple[str, str]] = []

    class Twice(Desk):
        async def answer(self, sync: Any, had: int) -> None:
            pairs.append((to_json(self.venue.results()), to_json(self.venue.results())))
            await super().answer(sync, had)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(venue.run, Twice(venue, nursery))
    assert len(pairs) > 5 and all(a == b for a, b in pairs)
    final = to_json(venue.results())
    assert '"fills": 0' not in final.split('"strategies"')[0]  # the account did trade
    assert to_json(venue.results()) == final == to_json(venue.results(venue.period_s))


def test_a_linear_swap_s_pnl_fees_and_funding_are_all_money_in_the_quote_currency():
    """1 BTC-USDT-SWAP contract (0.01 BTC) bought at 50,000 and sold at 51,000: 10 USDT realised;
    a taker fee of 0.1 % is 0.5 USDT a fill; a funding of 0.01 % at a mark of 50,000 is 0.05 USDT paid.
    The three must be in the same unit for net PnL to mean anything."""
    from seqtrade.backtest_results import results
    from seqtrade.fill_model import Contract, Fees
    from seqtrade.models import Book, FundingRate, MarkPrice, OrderType, Side
    from seqtrade.replay_fills import SimExchange
    from seqtrade.venues.base import VenueOrder

    sym, ms = "BTC-USDT-SWAP", 1_000_000
    sim = SimExchange(Fees(maker=0.0, taker=0.001), ConstantLatency(ms), contracts={sym: Contract(0.01)})
    sim.on_market(Book(sym, 0, [[49_999.0, 10.0]], [[50_000.0, 10.0]], 1, 0), 0)
    sim.submit(VenueOrder("v1", sym, Side.BUY, OrderType.MARKET, None, 1.0), 0)
    sim.on_market(MarkPrice(sym, 1, 50_000.0, 50_000.0, 1, 0), 2 * ms)
    sim.on_market(FundingRate(sym, 1, 0.0001, 3, 0, 1, 0), 2 * ms)
    sim.on_market(Book(sym, 4, [[51_000.0, 10.0]], [[51_001.0, 10.0]], 2, 0), 4 * ms)
    sim.submit(VenueOrder("v2", sym, Side.SELL, OrderType.MARKET, None, 1.0), 4 * ms)
    sim.on_market(Book(sym, 6, [[51_000.0, 10.0]], [[51_001.0, 10.0]], 3, 0), 6 * ms)
    assert len(sim.fills) == 2 and [f.amount for f in sim.funding] == [pytest.approx(-0.05)]
    r = results(sim.fills, sim.funding, strategies=[]).account
    assert r.fees == pytest.approx(0.5 + 0.51)
    assert r.realised_pnl == pytest.approx(10.0)


async def _two_symbols(root: Path, ms: int) -> Path:
    """``ms`` ms of BTC-USDT (book 99 / 101+, sell trades at 99) and ETH-USDT (book 199- / 201, buy
    trades at 201), interleaved every 0.05 ms, the mids moving each ms."""
    from seqtrade import wire
    from seqtrade.config import RecorderConfig
    from seqtrade.models import Book, Trade
    from seqtrade.recorder import Recorder

    rec = Recorder(RecorderConfig(enabled=True, queue=100_000), root, "paper")
    for i in range(ms * 20):
        ns = T0 + i * MS // 20
        up = (i // 20) % 3 * 0.5
        eth = i % 2 == 1
        sym, n = ("ETH-USDT" if eth else SYMBOL), i // 2 + 1
        msg: Book | Trade
        if (i // 2) % 2:
            msg = Trade(sym, ns // MS, f"t{i}", 201.0 if eth else 99.0, 1.0, "buy" if eth else "sell", n, ns)
        elif eth:
            msg = Book(sym, ns // MS, [[199.0 - up, 5.0]], [[201.0, 5.0]], n, ns)
        else:
            msg = Book(sym, ns // MS, [[99.0, 5.0]], [[101.0 + up, 5.0]], n, ns)
        rec.md.append(wire.encode_message(msg))
    await rec.close()
    return root


async def test_a_backtest_s_final_figures_equal_the_replaced_implementation(tmp_path: Path) -> None:
    """Two strategies on two symbols (a buys BTC, b sells ETH, resting: filled by the recorded trades),
    windows played ahead: every figure but the curve as the replaced code computed them from the fill
    model's fills and its marks (a recorded price kept unless the same as the last one kept)."""
    from seqtrade.models import Book, OrderType, Side, Trade
    from seqtrade.replay import read_messages
    from seqtrade.vclock import SyncAck
    from seqtrade.venues.base import VenueOrder

    data = await _two_symbols(tmp_path / "rec", 20)
    eth = "ETH-USDT"
    venue = BacktestVenue(data, [SYMBOL, eth], latency=ConstantLatency(MS), lookahead_ns=MS, queue="none",
                          period_s=0.002)  # fmt: skip

    class Two(Desk):
        def __init__(self, venue: BacktestVenue, nursery: trio.Nursery) -> None:
            super().__init__(venue, nursery)
            self.engine.by_vid["v2"] = type(self.engine.by_vid["v1"])("b", "c2")

        def connected_strategies(self) -> set[str]:
            return {"a", "b"}

        async def answer(self, sync: Any, had: int) -> None:
            if sync.step == 1:
                await self.venue.place_order(VenueOrder("v1", SYMBOL, Side.BUY, OrderType.LIMIT, 99.0, 40.0))
                await self.venue.place_order(VenueOrder("v2", eth, Side.SELL, OrderType.LIMIT, 201.0, 60.0))
            for sid in ("a", "b"):
                self.venue.on_sync_ack(SyncAck(sid, sync.t_ns, sync.step, batch=True))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(venue.run, Two(venue, nursery))
    assert venue.ahead > 3  # windows were played ahead
    new = venue.results()
    owner = {"v1": "a", "v2": "b"}
    fills = [
        F(f.ts_ns, owner[f.strategy], f.symbol, f.side, f.price, f.quantity, f.fee) for f in venue.sim.fills
    ]
    assert {f.strategy for f in fills} == {"a", "b"} and len(fills) > 20
    marks: list[Mark] = []
    for ns, msg in read_messages(data, [SYMBOL, eth]):
        price = None
        if isinstance(msg, Trade):
            price = msg.price
        elif isinstance(msg, Book) and msg.bids and msg.asks:
            price = (msg.bids[0][0] + msg.asks[0][0]) / 2
        if price is not None and not (marks and marks[-1].symbol == msg.symbol and marks[-1].price == price):
            marks.append(Mark(ns, msg.symbol, price))
    old = _old_results(fills, [], marks, ["a", "b"], venue.start_ns, venue.end_ns, 0.002)
    assert (new.start_ns, new.end_ns) == (venue.start_ns, venue.end_ns)
    assert sorted(new.strategies) == ["a", "b"]
    _compare(new.account, old[""])
    for name, s in new.strategies.items():
        _compare(s, old[name])
    assert new.strategies["a"].positions == {SYMBOL: 40.0} and new.strategies["b"].positions == {eth: -60.0}
    assert new.account.max_drawdown > 0 and new.account.sharpe is not None
