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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["OrderFills", "OrderComparison", "Comparison", "compare"]


@dataclass(frozen=True)
class OrderFills:
    key: str  # names the same order in both runs
    symbol: str
    side: str
    fills: tuple[tuple[int, float, float], ...] = ()  # (ts_ns, price, quantity), in time order

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
                                              ro.first_ns - lo.first_ns, rq - lq, same))  # fmt: skip
        elif lq > 0:
            assert lo is not None
            out.missed += 1
            out.orders.append(OrderComparison(key, "missed", lq, 0.0, lo.avg_price, qty_diff=-lq))
        elif rq > 0:
            assert ro is not None
            out.invented += 1
            out.orders.append(
                OrderComparison(key, "invented", 0.0, rq, replay_price=ro.avg_price, qty_diff=rq)
            )
        else:
            out.unfilled += 1
            out.orders.append(OrderComparison(key, "unfilled"))
    return out
