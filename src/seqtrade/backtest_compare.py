"""Live versus replay: which of a session's real fills a replay of it reproduced, missed or invented.

Pure: no I/O, no clock. The caller passes the orders of both runs as :class:`OrderFills` (the live
session's from its journal, the replay's from the backtest's), each with a ``key`` that names the same
decision in both runs (the strategy and its client order id when the strategy makes them
deterministically, or the strategy and the order's ordinal), and gets back one :class:`OrderComparison`
per key and a :class:`Comparison` with the counts and the sentence the report prints.

Per order (docs/backtesting.md, "Live versus replay"):

- **reproduced**: filled in both runs; ``price_diff`` is the replay's average fill price minus the live
  one, ``time_diff_ns`` the replay's first fill time minus the live one, ``qty_diff`` the replay's
  filled quantity minus the live one; **same price** when the average prices agree within
  ``price_tolerance`` (relative, default 1e-9: equal prices).
- **missed**: filled live, not in the replay (no fill, or no such order).
- **invented**: filled in the replay, not live.
- orders filled in neither run are counted (``unfilled``) and listed, not judged.

The headline is the share of live-filled orders the replay reproduced at the same price; a replay is
trusted when that share is at least ``threshold`` (default 95 %).

Keys (:func:`align`): never the client order ids (live ones are made from the wall clock), but each
strategy's orders in the order it sent them, ``<strategy>:<n>``. The replay starts at the start of the
recording, the live strategy maybe later (it joined a running server), so the n-th orders are
counted from an **anchor**: the replay order of the strategy that stands for its first live order, the
one sent nearest in time to it among those with the same symbol, side and type (the nearest of all
when none has; at equal distance, the one with the same price and quantity). Replay orders sent before the anchor were sent while the strategy was
not trading live: counted as ``before_live``, not judged; likewise the replay orders beyond the live
ones' number that were sent after the strategy's last live order (the live session had ended):
``after_live``.

:func:`report` gives the whole comparison as a JSON-ready dict (the headline, counts, percentiles of
the price, fill-time and send-time differences, per strategy, and every order), :func:`report_text`
its readable summary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["OrderFills", "OrderComparison", "Comparison", "compare", "align", "report", "report_text"]


@dataclass(frozen=True)
class OrderFills:
    key: str  # names the same order in both runs
    symbol: str
    side: str
    fills: tuple[tuple[int, float, float], ...] = ()  # (ts_ns, price, quantity), in time order
    strategy: str = ""
    order_type: str = ""
    price: float | None = None  # the order's limit price (None: market)
    quantity: float = 0.0  # the order's quantity
    sent_ns: int = 0  # when it was sent (0: not known)

    @property
    def filled(self) -> float:
        return sum(q for _, _, q in self.fills)

    @property
    def avg_price(self) -> float:
        q = self.filled
        return sum(p * x for _, p, x in self.fills) / q if q > 0 else 0.0

    @property
    def first_ns(self) -> int:
        return self.fills[0][0] if self.fills else 0


@dataclass(frozen=True)
class OrderComparison:
    key: str
    outcome: str  # "reproduced" | "missed" | "invented" | "unfilled"
    live_qty: float = 0.0
    replay_qty: float = 0.0
    live_price: float = 0.0
    replay_price: float = 0.0
    price_diff: float = 0.0
    time_diff_ns: int = 0
    qty_diff: float = 0.0
    same_price: bool = False
    sent_diff_ns: int | None = None  # the replay's send time minus the live one (None: not known)


@dataclass
class Comparison:
    orders: list[OrderComparison] = field(default_factory=list)
    live_filled: int = 0
    reproduced: int = 0
    same_price: int = 0
    missed: int = 0
    invented: int = 0
    unfilled: int = 0
    threshold: float = 0.95

    @property
    def same_price_share(self) -> float | None:
        """Live-filled orders reproduced at the same price, as a fraction (None: nothing filled live)."""
        return self.same_price / self.live_filled if self.live_filled else None

    @property
    def trusted(self) -> bool:
        share = self.same_price_share
        return share is not None and share >= self.threshold

    def summary(self) -> str:
        share = self.same_price_share
        pct = "n/a" if share is None else f"{100 * share:.1f} %"
        verdict = "meets" if self.trusted else "does NOT meet"
        return (
            f"live vs replay: {self.live_filled} orders filled live; the replay reproduced {self.reproduced}, "
            f"{self.same_price} at the same price ({pct}; {verdict} the {100 * self.threshold:g} % bar); "
            f"{self.missed} missed, {self.invented} invented"
        )


def compare(live: Sequence[OrderFills], replay: Sequence[OrderFills], *, price_tolerance: float = 1e-9,
            threshold: float = 0.95) -> Comparison:  # fmt: skip
    """Order by order, by ``key`` (live orders first in their order, then replay-only ones)."""
    by_key = {o.key: o for o in replay}
    if len(by_key) != len(replay) or len({o.key for o in live}) != len(live):
        raise ValueError("compare: each key must name one order per run")
    keys = [o.key for o in live] + [o.key for o in replay if o.key not in {x.key for x in live}]
    live_by_key = {o.key: o for o in live}
    out = Comparison(threshold=threshold)
    for key in keys:
        lo, ro = live_by_key.get(key), by_key.get(key)
        lq = lo.filled if lo is not None else 0.0
        rq = ro.filled if ro is not None else 0.0
        if lq > 0:
            out.live_filled += 1
        if lq > 0 and rq > 0:
            assert lo is not None and ro is not None
            lp, rp = lo.avg_price, ro.avg_price
            same = abs(rp - lp) <= price_tolerance * max(1.0, abs(lp))
            out.reproduced += 1
            out.same_price += same
            out.orders.append(OrderComparison(key, "reproduced", lq, rq, lp, rp, rp - lp,
                                              ro.first_ns - lo.first_ns, rq - lq, same, _sent(lo, ro)))  # fmt: skip
        elif lq > 0:
            assert lo is not None
            out.missed += 1
            out.orders.append(OrderComparison(key, "missed", lq, 0.0, lo.avg_price, qty_diff=-lq,
                                              sent_diff_ns=_sent(lo, ro)))  # fmt: skip
        elif rq > 0:
            assert ro is not None
            out.invented += 1
            out.orders.append(OrderComparison(key, "invented", 0.0, rq, replay_price=ro.avg_price, qty_diff=rq,
                                              sent_diff_ns=_sent(lo, ro)))  # fmt: skip
        else:
            out.unfilled += 1
            out.orders.append(OrderComparison(key, "unfilled", sent_diff_ns=_sent(lo, ro)))
    return out


def _sent(lo: OrderFills | None, ro: OrderFills | None) -> int | None:
    if lo is None or ro is None or not lo.sent_ns or not ro.sent_ns:
        return None
    return ro.sent_ns - lo.sent_ns


# ---------------------------------------------------------------------- keys


def align(live: Sequence[OrderFills], replay: Sequence[OrderFills]) -> tuple[list[OrderFills], list[OrderFills], dict[str, tuple[int, int]]]:  # fmt: skip
    """Both runs' orders keyed ``<strategy>:<n>`` (see the module docstring), each strategy's in the
    order given (the order it sent them); and per strategy the replay orders left out, (``before_live``,
    ``after_live``)."""
    strategies = list(dict.fromkeys([o.strategy for o in live] + [o.strategy for o in replay]))
    lk: list[OrderFills] = []
    rk: list[OrderFills] = []
    left_out: dict[str, tuple[int, int]] = {}
    for sid in strategies:
        lo = [o for o in live if o.strategy == sid]
        ro = [o for o in replay if o.strategy == sid]
        start = _anchor(lo[0], ro) if lo and ro else 0
        ro = ro[start:]
        end = len(ro)
        if lo and lo[-1].sent_ns:
            while end > len(lo) and ro[end - 1].sent_ns > lo[-1].sent_ns:
                end -= 1
        left_out[sid] = (start, len(ro) - end)
        lk += [replace(o, key=f"{sid}:{i + 1}") for i, o in enumerate(lo)]
        rk += [replace(o, key=f"{sid}:{i + 1}") for i, o in enumerate(ro[:end])]
    return lk, rk, left_out


def _anchor(first: OrderFills, replay: list[OrderFills]) -> int:
    """The index of the replay order that stands for the first live order."""
    if not first.sent_ns or not any(o.sent_ns for o in replay):
        return 0

    kind = (first.symbol, first.side, first.order_type)
    candidates = [i for i, o in enumerate(replay) if (o.symbol, o.side, o.order_type) == kind]
    return min(candidates or range(len(replay)), key=lambda i: (
        abs(replay[i].sent_ns - first.sent_ns), (replay[i].price, replay[i].quantity) != (first.price, first.quantity), i))  # fmt: skip


# ---------------------------------------------------------------------- the report


def _stats(values: Sequence[float]) -> dict[str, Any]:
    """Count, mean (signed: a bias) and percentiles of the absolute values (nearest rank)."""
    if not values:
        return {"n": 0}
    absolute = sorted(abs(v) for v in values)

    def pct(q: float) -> float:
        return absolute[max(0, math.ceil(q * len(absolute)) - 1)]

    return {"n": len(values), "mean": sum(values) / len(values), "p50": pct(0.5), "p90": pct(0.9),
            "p99": pct(0.99), "max": absolute[-1]}  # fmt: skip


def _section(c: Comparison) -> dict[str, Any]:
    share = c.same_price_share
    reproduced = [o for o in c.orders if o.outcome == "reproduced"]
    sent = [o.sent_diff_ns / 1e6 for o in c.orders if o.sent_diff_ns is not None]
    return {
        "live_filled": c.live_filled,
        "reproduced": c.reproduced,
        "reproduced_pct": None if not c.live_filled else round(100 * c.reproduced / c.live_filled, 3),
        "same_price": c.same_price,
        "same_price_pct": None if share is None else round(100 * share, 3),
        "missed": c.missed,
        "invented": c.invented,
        "unfilled": c.unfilled,
        "meets_bar": c.trusted,
        "price_diff": _stats([o.price_diff for o in reproduced]),
        "fill_time_diff_ms": _stats([o.time_diff_ns / 1e6 for o in reproduced]),
        "sent_time_diff_ms": _stats(sent),
    }


def report(live: Sequence[OrderFills], replay: Sequence[OrderFills], *, price_tolerance: float = 1e-9,
           threshold: float = 0.95) -> dict[str, Any]:  # fmt: skip
    """The live-vs-replay report as a JSON-ready dict: :func:`align`, then :func:`compare` over all
    strategies and over each; ``orders`` lists every order compared."""
    lk, rk, left_out = align(live, replay)
    whole = compare(lk, rk, price_tolerance=price_tolerance, threshold=threshold)
    out: dict[str, Any] = {"threshold_pct": 100 * threshold, "summary": whole.summary(), **_section(whole)}
    out["strategies"] = {}
    for sid, (before, after) in left_out.items():
        c = compare([o for o in lk if o.strategy == sid], [o for o in rk if o.strategy == sid],
                    price_tolerance=price_tolerance, threshold=threshold)  # fmt: skip
        out["strategies"][sid] = {**_section(c), "live_orders": sum(o.strategy == sid for o in lk),
                                  "replay_orders": sum(o.strategy == sid for o in rk),
                                  "before_live": before, "after_live": after}  # fmt: skip
    out["orders"] = [
        {"key": o.key, "outcome": o.outcome, "live_qty": o.live_qty, "replay_qty": o.replay_qty,
         "live_price": o.live_price, "replay_price": o.replay_price, "price_diff": o.price_diff,
         "fill_time_diff_ms": o.time_diff_ns / 1e6, "sent_time_diff_ms": None if o.sent_diff_ns is None
         else o.sent_diff_ns / 1e6, "same_price": o.same_price}
        for o in whole.orders
    ]  # fmt: skip
    return out


def report_text(r: dict[str, Any]) -> str:
    """The readable summary of :func:`report`: the headline, then one block per strategy."""

    def fmt(st: dict[str, Any], unit: str) -> str:
        if not st.get("n"):
            return "none"
        return (f"p50 {st['p50']:.6g}{unit}, p90 {st['p90']:.6g}{unit}, p99 {st['p99']:.6g}{unit}, "
                f"max {st['max']:.6g}{unit} (mean {st['mean']:+.6g}{unit})")  # fmt: skip

    lines = [r["summary"]]
    for sid, st in r["strategies"].items():
        pct = "n/a" if st["same_price_pct"] is None else f"{st['same_price_pct']:.1f} %"
        lines.append(
            f"  {sid}: {st['live_orders']} orders live, {st['replay_orders']} in the replay"
            f" ({st['before_live']} before and {st['after_live']} after the live session, left out);"
            f" {st['live_filled']} filled live:"
            f" {st['reproduced']} reproduced, {st['same_price']} at the same price ({pct}),"
            f" {st['missed']} missed, {st['invented']} invented"
        )
        lines.append(f"    |price diff| {fmt(st['price_diff'], '')}")
        lines.append(f"    |fill time diff| {fmt(st['fill_time_diff_ms'], ' ms')}")
        lines.append(f"    |send time diff| {fmt(st['sent_time_diff_ms'], ' ms')}")
    return "\n".join(lines)
