"""The fill model's faster book and trade handling (seqtrade.fill_model: a book read once per side and
price its resting orders sit on, ``advance`` skipped when nothing arrives, ``_available`` without a sum
when no level is at the price) fills exactly as the rules did before: hand-built books, and seeded
random sessions played through the model and through the implementation it replaced (kept below as
the reference), event for event and order state for order state."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from seqtrade import fill_model
from seqtrade.fill_model import _EPS, ConstantLatency, Fees, Fill, FillModel, SimOrder, _size_at

S = "X"
MS = 1_000_000


def _available_before(levels: Sequence[Sequence[float]], limit: float | None, buy: bool) -> float:
    """``fill_model._available`` as it was."""
    if limit is None:
        return sum(float(s) for _, s in levels)
    if buy:
        top = limit + _EPS
        return sum(float(s) for p, s in levels if float(p) <= top)
    bottom = limit - _EPS
    return sum(float(s) for p, s in levels if float(p) >= bottom)


class Before(FillModel):
    """The model with ``on_book`` and ``on_trade`` as they were (every order reads the book itself)."""

    def on_book(self, symbol: str, bids: Sequence[Sequence[float]], asks: Sequence[Sequence[float]],
                ts_ns: int) -> list[Any]:  # fmt: skip
        out = self.advance(ts_ns)
        self._raw[symbol] = (bids, asks)
        self.books.pop(symbol, None)
        resting = self.resting.get(symbol)
        if not resting:
            return out
        for o in list(resting):
            assert o.price is not None
            buy = o.side == "buy"
            o.ahead = min(o.ahead, _size_at(bids if buy else asks, o.price))
            through = _available_before(asks if buy else bids, o.price, buy)
            if through > _EPS:
                self._fill(o, ts_ns, o.price, min(o.remaining, through), maker=True, out=out)
                if o.remaining <= _EPS:
                    self._done(o, ts_ns, "filled", "", out)
        return out

    def on_trade(self, symbol: str, price: float, size: float, side: str, ts_ns: int) -> list[Any]:
        out = self.advance(ts_ns)
        if self.queue == "none":
            self._trade_first_at_level(symbol, price, size, side, ts_ns, out)
            return out
        passive = "sell" if side == "buy" else "buy"
        for o in list(self.resting.get(symbol, [])):
            if o.side != passive:
                continue
            assert o.price is not None
            buy = passive == "buy"
            if abs(price - o.price) <= _EPS * max(1.0, abs(price)):
                q = min(o.remaining, max(0.0, size - o.ahead))
                o.ahead = max(0.0, o.ahead - size)
            elif fill_model._better_or_equal(o.price, price, not buy):
                q = min(o.remaining, size)
                o.ahead = 0.0
            else:
                continue
            if q > _EPS:
                self._fill(o, ts_ns, o.price, q, maker=True, out=out)
                if o.remaining <= _EPS:
                    self._done(o, ts_ns, "filled", "", out)
        return out


def test_available_adds_the_levels_at_the_price_or_better_wherever_they_are_in_the_list() -> None:
    asks = [[101.0, 1.0], [99.0, 2.0], [100.0, 4]]  # out of order, an integer size
    assert fill_model._available(asks, 100.0, True) == 6.0
    assert fill_model._available(asks, 98.0, True) == 0
    assert fill_model._available([[99, 1], [101, 2]], 100.0, False) == 2.0
    assert fill_model._available([[99.0, 1.0]], 100.0, False) == 0
    assert fill_model._available(asks, None, True) == 7.0
    for levels, limit, buy in ((asks, 100.0, True), (asks, 98.0, True), ([[99, 1], [101, 2]], 100.0, False)):
        assert fill_model._available(levels, limit, buy) == _available_before(levels, limit, buy)


def test_orders_at_one_price_each_meet_the_whole_book_there() -> None:
    """Two of our buys at 100 behind 5 lots: a book with 3 lots there moves both up to 3; a book whose ask
    comes down to 100 (2 lots) fills each of them from those 2 (the book's fills take nothing from it)."""
    m = FillModel(Fees(0.0, 0.0), ConstantLatency(0))
    m.on_book(S, [[100.0, 5.0]], [[101.0, 4.0]], 1 * MS)
    a, b, c = SimOrder("a", S, "buy", "limit", 100.0, 1.5), SimOrder("b", S, "buy", "limit", 100.0, 3.0), None
    m.submit(a, 2 * MS)
    m.submit(b, 2 * MS)
    c = SimOrder("c", S, "sell", "limit", 100.5, 1.0)  # the other side, near: read on its own side
    m.submit(c, 2 * MS)
    m.advance(3 * MS)
    assert (a.ahead, b.ahead, c.ahead) == (5.0, 6.5, 0.0)
    assert m.on_book(S, [[100.0, 3.0]], [[101.0, 4.0]], 4 * MS) == []
    assert (a.ahead, b.ahead) == (3.0, 3.0)
    events = m.on_book(S, [[99.0, 1.0]], [[100.0, 2.0], [100.5, 7.0]], 5 * MS)
    assert [(e.order_id, e.price, e.quantity) for e in events if isinstance(e, Fill)] == [
        ("a", 100.0, 1.5),
        ("b", 100.0, 2.0),
    ]
    assert (a.status, b.status, c.status) == ("filled", "open", "open")


def _session(rng: random.Random, queue: str) -> list[tuple[Any, ...]]:
    """A random session: books (sometimes out of order, integer values, crossing our prices), trades,
    orders of every type at a few prices (so that several rest at one price), cancels and amends."""
    prices = [99.0, 99.5, 100.0, 100.5, 101.0]
    steps: list[tuple[Any, ...]] = []
    ids: list[str] = []
    t = 0
    for i in range(400):
        t += rng.choice((0, 1, 1, 2)) * MS // 2
        r = rng.random()
        if r < 0.45:
            mid = rng.choice(prices)
            bids = [[mid - 0.5 * (k + 1), rng.choice((1.0, 2.0, 3, 0.5))] for k in range(rng.randint(0, 4))]
            asks = [[mid + 0.5 * k, rng.choice((1.0, 2.0, 4, 0.25))] for k in range(rng.randint(0, 4))]
            if rng.random() < 0.1:
                rng.shuffle(asks)
            steps.append(("book", bids, asks, t))
        elif r < 0.7:
            steps.append(
                ("trade", rng.choice(prices), rng.choice((0.5, 1.0, 3.0)), rng.choice(("buy", "sell")), t)
            )
        elif r < 0.87 or not ids:
            oid = f"o{i}"
            ids.append(oid)
            kind = rng.choice(("limit", "limit", "limit", "post_only", "market", "ioc", "fok"))
            price = None if kind == "market" else rng.choice(prices)
            steps.append(
                ("new", oid, rng.choice(("buy", "sell")), kind, price, rng.choice((0.5, 1.0, 2.5)), t)
            )
        elif r < 0.94:
            steps.append(("cancel", rng.choice(ids), t))
        else:
            price = rng.choice((None, *prices))
            quantity = rng.choice((None, 0.25, 1.0, 3.0))
            steps.append(("amend", rng.choice(ids), price, quantity, t))
    steps.append(("advance", t + 10 * MS))
    return steps


def _play(m: FillModel, steps: list[tuple[Any, ...]]) -> list[Any]:
    out: list[Any] = []
    for step in steps:
        kind, *args = step
        if kind == "book":
            out += m.on_book(S, *args)
        elif kind == "trade":
            out += m.on_trade(S, *args)
        elif kind == "new":
            oid, side, otype, price, qty, t = args
            m.submit(SimOrder(oid, S, side, otype, price, qty), t)
        elif kind == "cancel":
            m.cancel(args[0], args[1])
        elif kind == "amend":
            m.amend(*args)
        else:
            out += m.advance(args[0])
    orders = [
        (o.order_id, o.status, o.filled, o.notional, o.fee, o.ahead, o.price, o.quantity)
        for o in m.orders.values()
    ]
    return [out, orders, m.position, m.cash, m.fees_paid]


@pytest.mark.parametrize("queue", ["book", "none"])
def test_random_sessions_fill_exactly_as_before(queue: str) -> None:
    fills = 0
    for seed in range(60):
        steps = _session(random.Random(seed), queue)
        latency = ConstantLatency(random.Random(seed).choice((0, MS // 2, MS)))
        got = _play(FillModel(Fees(0.0002, 0.0005), latency, queue=queue), steps)
        want = _play(Before(Fees(0.0002, 0.0005), latency, queue=queue), steps)
        assert got == want, f"seed {seed}"
        fills += sum(isinstance(e, Fill) and e.maker for e in got[0])
    assert fills > 100  # the sessions do fill resting orders (not only takers)
