"""A backtest's results: PnL, fees, funding, trades, win rate, drawdown, exposure, Sharpe; progress lines.

Pure: no I/O, no clock, no trio. The caller passes what happened (fills, funding payments and mark
prices, each with its time in ns since the epoch: the recording's time in a backtest) and gets back one
:class:`Summary` per strategy and one for the account (every strategy's fills in one book, so opposite
positions of two strategies net out, as they do on the exchange). :func:`to_json` gives the
machine-readable form, :func:`progress_line` the line a running backtest prints.

Streaming and bounded: a :class:`Tally` takes what happened in batches, in time order (a running
backtest hands it each window as the strategies get it) and keeps only what the figures need: per book
its positions, its sums and extremes, the Sharpe's running moments and its equity curve reduced to at
most :data:`CURVE_BUCKETS` buckets. Its memory depends on the symbols and strategies, never on the
length of the run; :func:`results` is a tally of lists given at once.

The definitions (docs/backtesting.md, "Results"):

- **Realised PnL**: per symbol, positions carry their average entry price; a fill that reduces a
  position realises ``closed quantity x (exit - average entry)`` (a short the opposite). A fill that
  flips a position closes it first, then opens the rest at the fill's price.
- **Unrealised PnL** at the end: ``position x (last mark - average entry)``; the last mark is the last
  mark price given for the symbol, or the last fill price when none was given.
- **Fees** paid (positive numbers) and **funding** received (negative when paid); **net PnL** is
  ``realised + unrealised - fees + funding``.
- **Trades**: round trips, from flat back to flat (a flip ends one and starts the next). A trade's PnL is
  its realised PnL less the fees of its fills (a flipping fill's fee is shared by quantity); a **win**
  is a trade with a PnL above zero; the **win rate** is wins / trades (None without a trade). Funding is
  not attributed to trades. ``fills`` counts the fills.
- **Equity** after each event: ``realised + unrealised(at the last marks) - fees + funding``, starting at
  0 before the first event. **Max drawdown**: the largest fall of the equity from its running peak (the
  peak starts at 0), in the money's currency: computed event by event, at full resolution, whatever the
  curve keeps. At one time, marks come first, then fills, then funding.
- **The equity curve** (``Summary.equity``): the full curve has a point per time the equity changed
  (the value after that time's events), from ``(start, 0.0)``. Cut into buckets of ``2**k`` ns from the
  start (``k`` the smallest that leaves at most :data:`CURVE_BUCKETS` buckets with a point;
  ``Summary.equity_bucket_ns``), each bucket keeps its first, lowest, highest and last point (the
  earliest of equals), in time order; then ``(end, the last equity)``. A curve of at most
  :data:`CURVE_BUCKETS` points is kept whole; drawn as steps, the kept points give every bucket's
  extremes where they happened.
- **Exposure**: the fraction of the run's span (first to last event of the whole run) during which a
  position was held in any symbol; ``max_notional`` the largest ``sum |position| x mark`` seen.
- **Sharpe**: the equity sampled every ``period_s`` from the run's start (the last value at or before
  each sample time), its increments' mean over their sample standard deviation, annualised by
  ``sqrt(seconds per year / period_s)`` (markets trade every day: 365 days). None with fewer than two
  increments or when they do not vary. The equity is in money, not in returns: this is the Sharpe of
  the PnL per unit of its own risk, the same as that of the returns on any constant capital. The
  increments' mean and variance are kept in one pass (Welford's; a run of equal samples merged at
  once): the two-pass figure to within rounding.
- **Swaps** (a symbol given a :class:`~seqtrade.fill_model.Contract`): quantities are contracts and
  money is in the settlement currency, as docs/derivatives.md and the paper venue have it (the
  formulas of :mod:`seqtrade.instruments`): PnL linear ``(exit - entry) x contracts x contract value``,
  inverse ``(1/entry - 1/exit) x contracts x contract value`` (coins; an inverse position's average
  entry is the contract-weighted harmonic mean of its fill prices); the notional is the position
  value, linear ``|contracts| x contract value x mark``, inverse ``|contracts| x contract value /
  mark`` (coins). Fees and funding come in that currency already (the fill model's).
- **Funding** given without a strategy (``strategy`` ""; the fill model's, account-wide) is split
  between the strategies by their share of the account's position in the symbol then (fills at or
  before its time): ``amount x strategy position / account position`` (the server's rule for account
  events; nobody holding it: dropped).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from operator import itemgetter
from typing import Any

from .fill_model import Contract, contract_instrument
from .instruments import Instrument, notional, unrealised_pnl

__all__ = [
    "CURVE_BUCKETS",
    "SCHEMA",
    "FillRecord",
    "FundingRecord",
    "Mark",
    "Summary",
    "Results",
    "Tally",
    "split_funding",
    "results",
    "to_json",
    "progress_line",
]

_EPS = 1e-9
YEAR_S = 365 * 86_400
CURVE_BUCKETS = 500  # an equity curve keeps at most 4 points in each of at most this many buckets (+ its end)
SCHEMA = 2  # results.json's "schema": 2 = bounded equity curves (equity_bucket_ns); before: a point per event


@dataclass(frozen=True, slots=True)
class FillRecord:
    ts_ns: int
    strategy: str
    symbol: str
    side: str  # "buy" | "sell"
    price: float
    quantity: float
    fee: float = 0.0  # paid, positive
    contract: Contract | None = None  # a swap's (quantity in contracts, money in its currency); None: spot


@dataclass(frozen=True, slots=True)
class FundingRecord:
    ts_ns: int
    strategy: str  # "" : account-wide, split between the strategies by position (see the module docstring)
    symbol: str
    amount: float  # + received, - paid


@dataclass(frozen=True, slots=True)
class Mark:
    ts_ns: int
    symbol: str
    price: float


@dataclass
class Summary:
    realised_pnl: float = 0.0
    unrealised_pnl: float = 0.0
    fees: float = 0.0
    funding: float = 0.0
    net_pnl: float = 0.0
    fills: int = 0
    trades: int = 0
    wins: int = 0
    win_rate: float | None = None
    max_drawdown: float = 0.0
    exposure: float = 0.0
    max_notional: float = 0.0
    sharpe: float | None = None
    positions: dict[str, float] = field(default_factory=dict)
    # (ns, equity): the curve reduced to its buckets' first, lowest, highest and last points, then its end
    equity: list[tuple[int, float]] = field(default_factory=list)
    equity_bucket_ns: int = 1  # the width of the curve's buckets (1: every change kept)


@dataclass
class Results:
    strategies: dict[str, Summary]
    account: Summary
    start_ns: int
    end_ns: int
    period_s: float
    settings: dict[str, Any] = field(default_factory=dict)  # the run's [backtest] choices (the CLI's)


@dataclass(slots=True)
class _Leg:
    """One symbol's position: quantity (signed), average entry, and the open round trip's PnL."""

    qty: float = 0.0
    avg: float = 0.0
    trip: float = 0.0


_Point = tuple[int, float]


class _Curve:
    """An equity curve in at most ``cap`` buckets of ``2**shift`` ns from ``start``: per bucket
    [index, first, lowest, highest, last] of the points committed (a point per time the value changed)."""

    __slots__ = ("start", "cap", "shift", "buckets", "cur", "last_v")

    def __init__(self, start: int, cap: int) -> None:
        self.start, self.cap, self.shift = start, cap, 0
        self.buckets: list[list[Any]] = []
        self.cur: _Point = (start, 0.0)  # the latest point: its time's events may still change it
        self.last_v: float | None = None  # the last committed value

    def add(self, ts: int, v: float) -> None:
        cur = self.cur
        if ts == cur[0]:
            self.cur = (ts, v)
        elif v != cur[1]:
            self._commit(cur)
            self.cur = (ts, v)

    def _commit(self, p: _Point) -> None:
        if p[1] == self.last_v:
            return
        self.last_v = p[1]
        _put(self.buckets, max(p[0] - self.start, 0) >> self.shift, p)
        while len(self.buckets) > self.cap:
            self.shift += 1
            self.buckets = _halved(self.buckets)

    def points(self, end: int) -> tuple[list[_Point], int]:
        """The kept points with the latest one and ``(end, value)``; the bucket width (ns)."""
        buckets, shift = [list(b) for b in self.buckets], self.shift
        p = self.cur
        if p[1] != self.last_v:
            _put(buckets, max(p[0] - self.start, 0) >> shift, p)
            while len(buckets) > self.cap:
                shift += 1
                buckets = _halved(buckets)
        out: list[_Point] = []
        for b in buckets:
            for q in sorted({b[1], b[2], b[3], b[4]}):
                out.append(q)
        if end > out[-1][0]:
            out.append((end, p[1]))
        return out, 1 << shift


def _put(buckets: list[list[Any]], idx: int, p: _Point) -> None:
    if buckets and buckets[-1][0] == idx:
        _widen(buckets[-1], p, p, p)
    else:
        buckets.append([idx, p, p, p, p])


def _widen(b: list[Any], lo: _Point, hi: _Point, last: _Point) -> None:
    """Bucket ``b`` ([idx, first, lowest, highest, last]) takes in later points: their lowest, highest, last."""
    if lo[1] < b[2][1]:
        b[2] = lo
    if hi[1] > b[3][1]:
        b[3] = hi
    b[4] = last


def _halved(buckets: list[list[Any]]) -> list[list[Any]]:
    """The buckets at twice the width: pairs merged (first of the first, the extremes, last of the last)."""
    out: list[list[Any]] = []
    for idx, first, lo, hi, last in buckets:
        idx >>= 1
        if out and out[-1][0] == idx:
            _widen(out[-1], lo, hi, last)
        else:
            out.append([idx, first, lo, hi, last])
    return out


class _Moments:
    """The Sharpe's samples: the equity at ``start + k x step`` (the value after the events at or before
    it), their increments' count, mean and sum of squared deviations (Welford's, one pass)."""

    __slots__ = ("step", "next_t", "prev", "n", "mean", "m2")

    def __init__(self, start: int, step: int) -> None:
        self.step, self.next_t = step, start
        self.prev: float | None = None
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def until(self, ts: int, v: float) -> None:
        """The samples before ``ts``, at the value ``v`` (the equity before ``ts``'s events)."""
        if ts > self.next_t and self.step > 0:
            self._emit((ts - self.next_t + self.step - 1) // self.step, v)

    def _emit(self, count: int, v: float) -> None:
        self.next_t += count * self.step
        if self.prev is not None:  # (the first sample has no increment)
            self._one(v - self.prev)
        self.prev = v
        self._zeros(count - 1)

    def _one(self, d: float) -> None:
        self.n += 1
        delta = d - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (d - self.mean)

    def _zeros(self, m: int) -> None:
        """``m`` increments of 0 at once (Chan et al.'s merge of two groups' moments)."""
        if m <= 0:
            return
        n = self.n + m
        delta = -self.mean
        self.m2 += delta * delta * self.n * m / n
        self.mean += delta * m / n
        self.n = n

    def sharpe(self, end: int, v: float, period_s: float) -> float | None:
        if self.step <= 0:
            return None
        t = _Moments(0, self.step)
        t.next_t, t.prev, t.n, t.mean, t.m2 = self.next_t, self.prev, self.n, self.mean, self.m2
        if end >= t.next_t:
            t._emit((end - t.next_t) // t.step + 1, v)
        if t.n < 2:
            return None
        var = t.m2 / (t.n - 1)
        if var <= 0:
            return None
        return t.mean / math.sqrt(var) * math.sqrt(YEAR_S / period_s)


class _Book:
    """One book (a strategy's, or the account's): its legs and running figures."""

    def __init__(self, start: int, step: int, prices: dict[str, float], cap: int,
                 swaps: dict[str, Instrument]) -> None:  # fmt: skip
        self.legs: dict[str, _Leg] = {}
        self.swaps = swaps  # symbol -> its contract's facts (shared by every book; spot: absent)
        self.prices = prices  # the recorded marks (shared by every book)
        self.fill_px: dict[str, float] = {}  # a symbol's mark while none was recorded: its last fill here
        self.s = Summary()
        self.peak = 0.0
        self.held_ns = 0
        self.last_ns = start
        self.holding = False
        self.eq = 0.0
        self.curve = _Curve(start, cap)
        self.moments = _Moments(start, step)

    def before(self, ts: int) -> None:
        if self.holding:
            self.held_ns += ts - self.last_ns
        self.last_ns = ts
        if ts > self.moments.next_t:
            self.moments.until(ts, self.eq)

    def after(self, ts: int) -> None:
        self.holding = any(leg.qty for leg in self.legs.values())
        self._moved(ts)

    def on_mark(self, ts: int) -> None:
        """A recorded price of a symbol this book holds: positions (and so whether one is held, the
        exposure's clock) do not change; the equity and the notional do."""
        if ts > self.moments.next_t:
            self.moments.until(ts, self.eq)
        self._moved(ts)

    def _moved(self, ts: int) -> None:
        s = self.s
        unrealised, notional = self.open_values()
        eq = s.realised_pnl + unrealised - s.fees + s.funding
        if eq != self.eq:  # (else nothing to add: the curve, peak and drawdown stand)
            self.eq = eq
            self.curve.add(ts, eq)
            if eq > self.peak:
                self.peak = eq
            elif self.peak - eq > s.max_drawdown:
                s.max_drawdown = self.peak - eq
        if notional > s.max_notional:
            s.max_notional = notional

    def fill(self, f: FillRecord) -> None:
        s, leg = self.s, self.legs.setdefault(f.symbol, _Leg())
        s.fills += 1
        s.fees += f.fee
        self.fill_px[f.symbol] = f.price
        signed = f.quantity if f.side == "buy" else -f.quantity
        closing = 0.0
        if leg.qty and (leg.qty > 0) != (signed > 0):
            closing = min(abs(signed), abs(leg.qty))
        opening = abs(signed) - closing
        swap = self.swaps.get(f.symbol)
        if closing > 0:
            direction = 1.0 if leg.qty > 0 else -1.0
            if swap is None:
                pnl = closing * (f.price - leg.avg) * direction
            else:
                pnl = unrealised_pnl(swap, closing * direction, leg.avg, f.price)
            s.realised_pnl += pnl
            leg.trip += pnl - f.fee * closing / f.quantity
            leg.qty += math.copysign(closing, signed)
            if abs(leg.qty) < _EPS:
                leg.qty = 0.0
                s.trades += 1
                s.wins += leg.trip > 0
                leg.trip = 0.0
        if opening > _EPS:
            new_qty = leg.qty + math.copysign(opening, signed)
            kept = abs(leg.qty)
            if swap is not None and swap.inverse:  # the harmonic mean (the venue's) of the lots with
                # a price (one of 0, bad data, has no value in coins: left out, not a crash)
                n = (kept if leg.avg > 0 else 0.0) + (opening if f.price > 0 else 0.0)
                inv = (kept / leg.avg if leg.avg > 0 else 0.0) + (opening / f.price if f.price > 0 else 0.0)
                leg.avg = (n / inv if inv > 0 else 0.0) if kept else f.price
            else:
                leg.avg = (leg.avg * kept + f.price * opening) / abs(new_qty)
            leg.qty = new_qty
            leg.trip -= f.fee * opening / f.quantity

    def open_values(self) -> tuple[float, float]:
        """(unrealised PnL, notional) of the positions held, at the last marks (symbols in the order
        first traded)."""
        unrealised = value = 0.0
        prices, swaps = self.prices, self.swaps
        for sym, leg in self.legs.items():
            q = leg.qty
            if q:
                p = prices.get(sym)
                if p is None:
                    p = self.fill_px[sym]
                swap = swaps.get(sym)
                if swap is None:
                    unrealised += q * (p - leg.avg)
                    value += abs(q) * p
                else:
                    unrealised += unrealised_pnl(swap, q, leg.avg, p)
                    if not swap.inverse:
                        value += notional(swap, q, p)
                    elif p > 0:  # in coins (a price of 0: none, as fee_amount has it)
                        value += notional(swap, q, p) / p
        return unrealised, value

    def summary(self, start: int, end: int, period_s: float) -> Summary:
        s = self.s
        out = Summary(**{f.name: getattr(s, f.name) for f in fields(Summary)})
        out.unrealised_pnl = self.open_values()[0]
        out.net_pnl = out.realised_pnl + out.unrealised_pnl - out.fees + out.funding
        out.win_rate = out.wins / out.trades if out.trades else None
        held = self.held_ns + (end - self.last_ns if self.holding else 0)
        out.exposure = held / (end - start) if end > start else 0.0
        out.positions = {sym: leg.qty for sym, leg in sorted(self.legs.items()) if leg.qty}
        out.sharpe = self.moments.sharpe(end, self.eq, period_s)
        out.equity, out.equity_bucket_ns = self.curve.points(end)
        return out


_MARK, _FILL, _FUNDING = 0, 1, 2  # at one time: marks first, then fills, then funding


class Tally:
    """The results of a run that goes on (see the module docstring): :meth:`add` what happened, in
    batches in time order (every event of a batch at or after every event of the batches before it),
    :meth:`results` at any point (the tally goes on). ``strategies``: reported even without a fill;
    ``contracts``: the swaps' contracts (quantities in contracts; a symbol without one, nor one on its
    fills' :attr:`FillRecord.contract`: spot)."""

    def __init__(self, start_ns: int, period_s: float = 60.0, strategies: Iterable[str] = (), *,
                 curve_buckets: int = CURVE_BUCKETS,
                 contracts: Mapping[str, Contract] | None = None) -> None:  # fmt: skip
        self.start_ns, self.period_s = start_ns, period_s
        self._step = int(period_s * 1e9)
        self._cap = max(curve_buckets, 1)
        self.prices: dict[str, float] = {}  # the last recorded mark of each symbol
        self.swaps = {sym: contract_instrument(sym, c) for sym, c in (contracts or {}).items()}
        self.account = self._book()
        self.books: dict[str, _Book] = {name: self._book() for name in strategies}
        self._all = [self.account, *self.books.values()]
        self._pos: dict[str, dict[str, float]] = {}  # symbol -> strategy -> position (the funding split)

    def _book(self) -> _Book:
        return _Book(self.start_ns, self._step, self.prices, self._cap, self.swaps)

    def _strategy(self, name: str) -> _Book:
        book = self.books.get(name)
        if book is None:
            book = self.books[name] = self._book()
            self._all.append(book)
        return book

    def add(self, marks: Iterable[tuple[int, str, float]] = (), fills: Sequence[FillRecord] = (),
            funding: Sequence[FundingRecord] = ()) -> None:  # fmt: skip
        """One batch: marks as ``(ns, symbol, price)``, fills, funding; ordered here by time, and at one
        time marks, fills, funding, each in the order given."""
        if not fills and not funding:
            for ns, symbol, price in sorted(marks, key=itemgetter(0)):
                self.mark(ns, symbol, price)
            return
        tagged: list[tuple[int, int, int, Any]] = [(m[0], _MARK, i, m) for i, m in enumerate(marks)]
        tagged += [(f.ts_ns, _FILL, i, f) for i, f in enumerate(fills)]
        tagged += [(f.ts_ns, _FUNDING, i, f) for i, f in enumerate(funding)]
        tagged.sort(key=lambda t: (t[0], t[1], t[2]))
        for _, rank, _, e in tagged:
            if rank == _MARK:
                self.mark(*e)
            elif rank == _FILL:
                self.fill(e)
            else:
                self.funding(e)

    def mark(self, ns: int, symbol: str, price: float) -> None:
        """A recorded price: only the books holding the symbol see their equity move."""
        self.prices[symbol] = price
        for book in self._all:
            leg = book.legs.get(symbol)
            if leg is not None and leg.qty:
                book.on_mark(ns)

    def fill(self, f: FillRecord) -> None:
        if f.contract is not None and f.symbol not in self.swaps:
            self.swaps[f.symbol] = contract_instrument(f.symbol, f.contract)
        pos = self._pos.setdefault(f.symbol, {})
        pos[f.strategy] = pos.get(f.strategy, 0.0) + (f.quantity if f.side == "buy" else -f.quantity)
        for book in (self._strategy(f.strategy), self.account):
            book.before(f.ts_ns)
            book.fill(f)
            book.after(f.ts_ns)

    def funding(self, f: FundingRecord) -> None:
        if f.strategy:
            parts = [f]
        else:  # the account's: split by the strategies' positions now
            pos = self._pos.get(f.symbol, {})
            total = sum(pos.values())
            if abs(total) <= _EPS:
                return
            parts = [
                FundingRecord(f.ts_ns, sid, f.symbol, f.amount * q / total)
                for sid, q in sorted(pos.items())
                if q
            ]
        for p in parts:
            for book in (self._strategy(p.strategy), self.account):
                book.before(p.ts_ns)
                book.s.funding += p.amount
                book.after(p.ts_ns)

    def results(self, end_ns: int, settings: dict[str, Any] | None = None) -> Results:
        """The figures as of ``end_ns`` (the run's end, or how far it got), without ending the tally."""
        start, end, period = self.start_ns, end_ns, self.period_s
        per = {name: self.books[name].summary(start, end, period) for name in sorted(self.books)}
        return Results(
            per, self.account.summary(start, end, period), start, end, period, dict(settings or {})
        )


def split_funding(funding: Iterable[FundingRecord], fills: Sequence[FillRecord]) -> list[FundingRecord]:
    """Account-wide funding payments (``strategy`` unset) split between the strategies by their share
    of the account's position in the symbol at the payment's time (the server's rule for account
    events): ``amount x strategy position / account position``, from ``fills`` (``strategy`` set).
    (:class:`Tally` does the same as it goes.)"""
    out = []
    for f in funding:
        pos: dict[str, float] = {}
        for x in fills:
            if x.symbol == f.symbol and x.ts_ns <= f.ts_ns:
                pos[x.strategy] = pos.get(x.strategy, 0.0) + (x.quantity if x.side == "buy" else -x.quantity)
        total = sum(pos.values())
        if abs(total) > _EPS:
            out += [
                FundingRecord(f.ts_ns, sid, f.symbol, f.amount * q / total)
                for sid, q in sorted(pos.items())
                if q
            ]
    return out


def results(fills: Sequence[FillRecord], funding: Sequence[FundingRecord] = (), marks: Sequence[Mark] = (),
            *, strategies: Iterable[str] = (), start_ns: int | None = None, end_ns: int | None = None,
            period_s: float = 60.0, settings: dict[str, Any] | None = None,
            curve_buckets: int = CURVE_BUCKETS,
            contracts: Mapping[str, Contract] | None = None) -> Results:  # fmt: skip
    """Per-strategy and account summaries of everything at once (a :class:`Tally` of one batch).
    ``strategies`` names ones to report even without a fill; the run's span defaults to the first and
    last event given; ``settings``: the run's choices, kept as they are (results.json's ``settings``);
    ``contracts``: the swaps' (see :class:`Tally`)."""
    times = [e.ts_ns for group in (fills, funding, marks) for e in group]
    start = start_ns if start_ns is not None else (min(times) if times else 0)
    end = end_ns if end_ns is not None else (max(times) if times else start)
    names = {*strategies, *(f.strategy for f in fills), *(f.strategy for f in funding if f.strategy)}
    tally = Tally(start, period_s, sorted(names), curve_buckets=curve_buckets, contracts=contracts)
    tally.add([(m.ts_ns, m.symbol, m.price) for m in marks], fills, funding)
    return tally.results(end, settings)


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _summary_doc(s: Summary) -> dict[str, Any]:
    doc = {
        f.name: _clean(getattr(s, f.name)) for f in fields(Summary) if f.name not in ("positions", "equity")
    }
    doc["positions"] = {k: _clean(v) for k, v in s.positions.items()}
    doc["equity"] = [[t, _clean(v)] for t, v in s.equity]
    return doc


def to_json(r: Results) -> str:
    """The results as JSON (sorted keys: the same results give the same bytes)."""
    doc = {
        "schema": SCHEMA,
        "start_ns": r.start_ns,
        "end_ns": r.end_ns,
        "sharpe_period_s": r.period_s,
        "account": _summary_doc(r.account),
        "strategies": {k: _summary_doc(v) for k, v in r.strategies.items()},
    }
    if r.settings:
        doc["settings"] = r.settings
    return json.dumps(doc, sort_keys=True, indent=1) + "\n"


def progress_line(done: int, total: int, elapsed_s: float) -> str:
    """``backtest  42.0%  420,000/1,000,000 events  35,000 events/s  ETA 0:00:17``: the rate so far,
    and the time the rest takes at that rate (``?`` before anything was done)."""
    pct = 100.0 * done / total if total else 100.0
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    if done >= total:
        eta = "0:00:00"
    elif rate > 0:
        left = int(math.ceil((total - done) / rate))
        eta = f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"
    else:
        eta = "?"
    return f"backtest {pct:5.1f}%  {done:,}/{total:,} events  {rate:,.0f} events/s  ETA {eta}"
