"""The paper exchange's full-depth book: many levels with realistic sizes around its random walk
(pure: no I/O; the venue gives it the time).

The top levels are the walk's (the same five the matching engine trades against and ``book/`` frames
show); below them, down to ``levels`` a side, resting liquidity that grows with the distance from the
touch, remembered per price so that it stays put while the mid moves, and changes now and then. A
public trade walks the book: it takes the sizes of the opposite side level by level from the best.
Every change is published like a verified venue book (:class:`seqtrade.books.BookPublisher`): a
snapshot first, then deltas, ``depth`` frames when the top changes, and a periodic snapshot.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..books import BookMessage, BookPublisher, Levels, OrderBook

__all__ = ["PaperDepth", "DEFAULT_LEVELS"]

DEFAULT_LEVELS = 200


class PaperDepth:
    """One symbol's full book on the paper venue."""

    def __init__(
        self,
        symbol: str,
        *,
        tick: float,
        price_dp: int,
        lot: float,
        size_dp: int,
        level_size: float,
        rng: random.Random,
        levels: int = DEFAULT_LEVELS,
        snapshot_interval: float = 1.0,
    ) -> None:
        self.symbol = symbol
        self.tick, self.price_dp, self.lot, self.size_dp = tick, price_dp, lot, size_dp
        self.level_size = level_size
        self.levels = levels
        self.rng = rng
        self.book = OrderBook()
        self.publisher = BookPublisher(symbol, snapshot_interval=snapshot_interval)
        self._resting: dict[int, float] = {}  # price in ticks -> the deep size remembered there
        self._started = False

    def _price(self, ticks: int) -> float:
        return round(ticks * self.tick, self.price_dp)

    def _deep(self, ticks: int, distance: int) -> float:
        size = self._resting.get(ticks)
        if size is None or self.rng.random() < 0.02:
            lots = self.level_size / self.lot * (1.0 + distance / 25.0) * self.rng.uniform(0.3, 1.7)
            size = round(max(1, int(lots)) * self.lot, self.size_dp)
            self._resting[ticks] = size
        return size

    def _side(self, top: Sequence[Sequence[float]], sign: int) -> dict[float, float]:
        want = {float(p): float(s) for p, s in top}
        if not top:
            return want
        edge = round(float(top[-1][0]) / self.tick)
        for i in range(1, self.levels - len(top) + 1):
            t = edge + sign * i
            if t <= 0:
                break
            want[self._price(t)] = self._deep(t, len(top) + i)
        return want

    @staticmethod
    def _diff(levels: Levels, want: dict[float, float]) -> list[list[float]]:
        have = levels.sizes
        out = [[p, 0.0] for p in have if p not in want]
        out += [[p, s] for p, s in want.items() if have.get(p) != s]
        return out

    def step(
        self, bids: Sequence[Sequence[float]], asks: Sequence[Sequence[float]], ts: int, now: float
    ) -> list[BookMessage]:
        """The walk's new top (best first); the book follows, and what to publish."""
        want_b, want_a = self._side(bids, -1), self._side(asks, 1)
        db, da = self._diff(self.book.bids, want_b), self._diff(self.book.asks, want_a)
        self.book.apply(db, da)
        if len(self._resting) > 8 * self.levels:  # forget liquidity far from where the market is
            lo, hi = min(want_b, default=0.0), max(want_a, default=0.0)
            self._resting = {t: s for t, s in self._resting.items() if lo <= t * self.tick <= hi}
        if not self._started:
            self._started = True
            return self.publisher.snapshot(self.book, ts, now)
        if not db and not da:
            return []
        return self.publisher.delta(self.book, db, da, ts, now)

    def trade(self, taker: str, size: float, ts: int, now: float) -> list[BookMessage]:
        """A public trade of ``size`` with ``taker`` side ``"buy"``/``"sell"`` walks the opposite side."""
        side = self.book.asks if taker == "buy" else self.book.bids
        left = size
        changed: list[list[float]] = []
        for price, have in side.top(None):
            if left <= 0:
                break
            take = min(have, left)
            left -= take
            rest = round(have - take, self.size_dp)
            changed.append([price, rest if rest > 0 else 0.0])
            t = round(price / self.tick)
            if t in self._resting:
                self._resting[t] = rest
        if not changed:
            return []
        if taker == "buy":
            self.book.apply([], changed)
            return self.publisher.delta(self.book, [], changed, ts, now)
        self.book.apply(changed, [])
        return self.publisher.delta(self.book, changed, [], ts, now)
