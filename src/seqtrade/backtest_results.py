"""A backtest's results: PnL, fees, funding, trades, win rate, drawdown, exposure, Sharpe; progress lines.

Pure: no I/O, no clock, no trio. The caller passes what happened (fills, funding payments and mark
prices, each with its time in ns since the epoch: the recording's time in a backtest) and gets back one
:class:`Summary` per strategy and one for the account (every strategy's fills in one book, so opposite
positions of two strategies net out, as they do on the exchange). :func:`to_json` gives the
machine-readable form, :func:`progress_line` the line a running backtest prints.

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
  peak starts at 0), in the quote currency.
- **Exposure**: the fraction of the run's span (first to last event of the whole run) during which a
  position was held in any symbol; ``max_notional`` the largest ``sum |position| x mark`` seen.
- **Sharpe**: the equity sampled every ``period_s`` from the run's start (the last value at or before
  each sample time), its increments' mean over their sample standard deviation, annualised by
  ``sqrt(seconds per year / period_s)`` (markets trade every day: 365 days). None with fewer than two
  increments or when they do not vary. The equity is in money, not in returns: this is the Sharpe of
  the PnL per unit of its own risk, the same as that of the returns on any constant capital.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "FillRecord",
    "FundingRecord",
    "Mark",
    "Summary",
    "Results",
    "summarise",
    "split_funding",
    "results",
    "to_json",
    "progress_line",
]

_EPS = 1e-9
YEAR_S = 365 * 86_400


@dataclass(frozen=True, slots=True)
class FillRecord:
    ts_ns: int
    strategy: str
    symbol: str
    side: str  # "buy" | "sell"
    price: float
    quantity: float
    fee: float = 0.0  # paid, positive


@dataclass(frozen=True, slots=True)
class FundingRecord:
    ts_ns: int
    strategy: str
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
    equity: list[tuple[int, float]] = field(default_factory=list)  # (ns, equity), one point per time


@dataclass
class Results:
    strategies: dict[str, Summary]
    account: Summary
    start_ns: int
    end_ns: int
    period_s: float
    settings: dict[str, Any] = field(default_factory=dict)  # the run's [backtest] choices (the CLI's)


@dataclass
class _Leg:
    """One symbol's position: quantity (signed), average entry, and the open round trip's PnL."""

    qty: float = 0.0
    avg: float = 0.0
    trip: float = 0.0


class _Book:
    def __init__(self) -> None:
        self.legs: dict[str, _Leg] = {}
        self.marks: dict[str, float] = {}
        self.marked: set[str] = set()  # symbols with a mark price given: fills no longer mark them
        self.s = Summary()

    def fill(self, f: FillRecord) -> None:
        s, leg = self.s, self.legs.setdefault(f.symbol, _Leg())
        s.fills += 1
        s.fees += f.fee
        if f.symbol not in self.marked:
            self.marks[f.symbol] = f.price
        signed = f.quantity if f.side == "buy" else -f.quantity
        closing = 0.0
        if leg.qty and (leg.qty > 0) != (signed > 0):
            closing = min(abs(signed), abs(leg.qty))
        opening = abs(signed) - closing
        if closing > 0:
            direction = 1.0 if leg.qty > 0 else -1.0
            pnl = closing * (f.price - leg.avg) * direction
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
            leg.avg = (leg.avg * abs(leg.qty) + f.price * opening) / abs(new_qty)
            leg.qty = new_qty
            leg.trip -= f.fee * opening / f.quantity

    def unrealised(self) -> float:
        return sum(leg.qty * (self.marks[sym] - leg.avg) for sym, leg in self.legs.items() if leg.qty)

    def notional(self) -> float:
        return sum(abs(leg.qty) * self.marks[sym] for sym, leg in self.legs.items() if leg.qty)

    def holding(self) -> bool:
        return any(leg.qty for leg in self.legs.values())

    def equity(self) -> float:
        s = self.s
        return s.realised_pnl + self.unrealised() - s.fees + s.funding


Event = FillRecord | FundingRecord | Mark


def _ordered(fills: Iterable[FillRecord], funding: Iterable[FundingRecord],
             marks: Iterable[Mark]) -> list[Event]:  # fmt: skip
    """All events by time; at one time marks first, then fills, then funding (each in the given order)."""
    tagged: list[tuple[int, int, int, Event]] = []
    groups: tuple[Iterable[Event], ...] = (marks, fills, funding)
    for rank, events in enumerate(groups):
        tagged.extend((e.ts_ns, rank, i, e) for i, e in enumerate(events))
    tagged.sort(key=lambda t: (t[0], t[1], t[2]))
    return [t[3] for t in tagged]


def summarise(events: Sequence[Event], start_ns: int, end_ns: int, period_s: float) -> Summary:
    """One book's summary over ``events`` (in time order), for a run from ``start_ns`` to ``end_ns``."""
    book = _Book()
    s = book.s
    peak = 0.0
    held_ns = 0
    last_ns = start_ns
    holding = False
    for e in events:
        if holding:
            held_ns += e.ts_ns - last_ns
        last_ns = e.ts_ns
        if isinstance(e, Mark):
            book.marks[e.symbol] = e.price
            book.marked.add(e.symbol)
        elif isinstance(e, FillRecord):
            book.fill(e)
        else:
            s.funding += e.amount
        holding = book.holding()
        eq = book.equity()
        if s.equity and s.equity[-1][0] == e.ts_ns:
            s.equity[-1] = (e.ts_ns, eq)
        else:
            s.equity.append((e.ts_ns, eq))
        peak = max(peak, eq)
        s.max_drawdown = max(s.max_drawdown, peak - eq)
        s.max_notional = max(s.max_notional, book.notional())
    if holding:
        held_ns += end_ns - last_ns
    s.unrealised_pnl = book.unrealised()
    s.net_pnl = s.realised_pnl + s.unrealised_pnl - s.fees + s.funding
    s.win_rate = s.wins / s.trades if s.trades else None
    s.exposure = held_ns / (end_ns - start_ns) if end_ns > start_ns else 0.0
    s.positions = {sym: leg.qty for sym, leg in sorted(book.legs.items()) if leg.qty}
    s.sharpe = _sharpe(s.equity, start_ns, end_ns, period_s)
    return s


def _sharpe(equity: list[tuple[int, float]], start_ns: int, end_ns: int, period_s: float) -> float | None:
    step = int(period_s * 1e9)
    if step <= 0:
        return None
    samples: list[float] = []
    i, value = 0, 0.0
    t = start_ns
    while t <= end_ns:
        while i < len(equity) and equity[i][0] <= t:
            value = equity[i][1]
            i += 1
        samples.append(value)
        t += step
    diffs = [b - a for a, b in zip(samples, samples[1:], strict=False)]
    if len(diffs) < 2:
        return None
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(YEAR_S / period_s)


def split_funding(funding: Iterable[FundingRecord], fills: Sequence[FillRecord]) -> list[FundingRecord]:
    """Account-wide funding payments (``strategy`` unset) split between the strategies by their share
    of the account's position in the symbol at the payment's time (the server's rule for account
    events): ``amount x strategy position / account position``, from ``fills`` (``strategy`` set)."""
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
            period_s: float = 60.0, settings: dict[str, Any] | None = None) -> Results:  # fmt: skip
    """Per-strategy and account summaries. ``strategies`` names ones to report even without a fill;
    the run's span defaults to the first and last event given; ``settings``: the run's choices, kept
    as they are (results.json's ``settings``)."""
    events = _ordered(fills, funding, marks)
    start = start_ns if start_ns is not None else (events[0].ts_ns if events else 0)
    end = end_ns if end_ns is not None else (events[-1].ts_ns if events else start)
    names = sorted({*strategies, *(f.strategy for f in fills), *(f.strategy for f in funding)})
    per = {
        name: summarise(
            [e for e in events if isinstance(e, Mark) or e.strategy == name], start, end, period_s
        )
        for name in names
    }
    return Results(per, summarise(events, start, end, period_s), start, end, period_s, dict(settings or {}))


def to_json(r: Results) -> str:
    """The results as JSON (sorted keys: the same results give the same bytes)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    doc = {
        "start_ns": r.start_ns,
        "end_ns": r.end_ns,
        "sharpe_period_s": r.period_s,
        "account": clean(asdict(r.account)),
        "strategies": {k: clean(asdict(v)) for k, v in r.strategies.items()},
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
