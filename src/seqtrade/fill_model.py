"""How a backtest fills orders against a recording: a queue model over recorded books and trades.

Pure: no I/O, no clock, no trio. The caller feeds the recording in time order (:meth:`FillModel.on_book`,
:meth:`FillModel.on_trade`, :meth:`FillModel.on_funding`), submits and cancels simulated orders
(:meth:`FillModel.submit`, :meth:`FillModel.cancel`), and gets back what happened as events
(:class:`Fill`, :class:`Status`, :class:`Funding`). Times are ns since the epoch, the recording's.

The rules (docs/backtesting.md, "The fill model"):

- **Latency.** An order or a cancel takes effect one latency after it was sent (:class:`ConstantLatency`,
  :class:`LogNormalLatency`, or :class:`EmpiricalLatency` drawing from the latencies the recorder
  measured live). A market event at exactly the arrival time happened without it (conservative).
- **Market orders walk the book**: level by level from the best price, as far as the recorded depth
  goes; what the depth cannot fill is cancelled (as the paper exchange does). The liquidity taken is
  gone from the model's copy of the book until the next recorded book replaces it.
- **Limit orders** take what they cross at once (taker), then rest. A resting order joins the queue
  **behind the size already at its price** (from the last recorded book) and behind our own earlier
  orders there, and fills only as trades at its price consume that queue: a trade of ``q`` at the
  order's price first takes the ``ahead`` in front of it, then the order. A recorded book whose level
  shrank without trades means cancels; they are assumed to have been behind us (conservative) unless
  the level is now smaller than our ``ahead``, which then shrinks to it: a cancel ahead moves us up.
  A trade through the price (a sell below our buy) or a book crossing it fills the order at its price.
  ``post_only`` that would cross is rejected; ``ioc`` cancels what it did not take at once; ``fok``
  takes all at once or nothing.
- **The queue is a choice** (``queue``): ``"book"`` (the default) is the rule above; ``"none"`` is the
  paper venue's own rule (:mod:`seqtrade.venues.matching`): an order is taken to be first at its level,
  so a trade at its price with the opposite taker side fills it at once, and every trade's size is
  shared by the resting orders it reaches in price-time priority. Use ``"none"`` to replay a session
  recorded on the paper venue (live versus replay with the same matching rules both ways).
- **Amends** take effect one latency after they were sent, as the exchanges do: a new price or a larger
  size sends the order to the back of the queue at its (new) price; a smaller size only keeps its
  place. A size at or below what has filled ends the order ``filled``; a new price that crosses fills
  at once as a taker (a ``post_only`` order refuses such an amend); an order that is not open refuses
  it (``amend_failed``).
- **Fees**: ``maker`` on resting fills, ``taker`` on fills at arrival, a fraction of the notional, in
  the settlement currency: ``rate x quantity x price`` (spot); a swap's quantity is in contracts
  (:class:`Contract`): ``rate x contracts x contract value x price`` (linear, quote currency),
  ``rate x contracts x contract value / price`` (inverse, coins), as the paper venue charges.
- **Funding** (swaps): at each funding settlement, a long pays ``position value x rate`` (receives
  when the rate is negative), a short the opposite. The position value at the mark price is
  ``contracts x contract value x mark`` for a linear swap, ``contracts x contract value / mark`` for an
  inverse one (:class:`Contract`; a symbol without one counts its position in base units, value 1).

Not modelled: our own orders' effect on later recorded data (the market does not react to us) and
hidden liquidity.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .instruments import Instrument, InstrumentKind, fee_amount, notional

__all__ = [
    "Latency",
    "ConstantLatency",
    "LogNormalLatency",
    "EmpiricalLatency",
    "AtLeast",
    "Fees",
    "Contract",
    "contract_instrument",
    "SimOrder",
    "Fill",
    "Status",
    "Funding",
    "Event",
    "FillModel",
    "QUEUES",
]

_EPS = 1e-12
QUEUES = ("book", "none")  # FillModel(queue=...): behind the book's size at the price, or first there


class Latency(Protocol):
    """Where an order's latency comes from: ``sample()`` ns, drawn once per order, cancel or amend;
    ``max_ns`` the largest it gives (or about: a distribution's far tail)."""

    def sample(self) -> int: ...

    @property
    def max_ns(self) -> int: ...


@dataclass(frozen=True)
class ConstantLatency:
    """Every order and cancel takes ``ns``."""

    ns: int = 1_000_000

    def sample(self) -> int:
        return self.ns

    @property
    def max_ns(self) -> int:
        return self.ns


@dataclass
class LogNormalLatency:
    """A log-normal distribution: ``median_ns``, and ``sigma`` the log's standard deviation; seeded."""

    median_ns: int = 1_000_000
    sigma: float = 0.5
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def sample(self) -> int:
        return int(self.median_ns * math.exp(self._rng.gauss(0.0, self.sigma)))

    @property
    def max_ns(self) -> int:
        return int(self.median_ns * math.exp(6 * self.sigma))  # six sigmas: about never beyond


@dataclass
class EmpiricalLatency:
    """Draws from latencies measured live (the recording's ``orders.latency_ns``); seeded."""

    samples: Sequence[int]
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError("EmpiricalLatency needs at least one measured latency")
        self._rng = random.Random(self.seed)

    def sample(self) -> int:
        return int(self._rng.choice(self.samples))

    @property
    def max_ns(self) -> int:
        return int(max(self.samples))


@dataclass
class AtLeast:
    """``inner``'s latencies, raised to ``floor_ns`` when below it (a backtest's lookahead)."""

    inner: Latency
    floor_ns: int

    def sample(self) -> int:
        return max(self.floor_ns, self.inner.sample())

    @property
    def max_ns(self) -> int:
        return max(self.floor_ns, self.inner.max_ns)


@dataclass(frozen=True)
class Contract:
    """A swap's contract, for funding: ``value`` base coins (linear) or quote units (``inverse``) per
    contract; ``currency`` the settlement currency the payments are in."""

    value: float = 1.0
    inverse: bool = False
    currency: str = ""


def contract_instrument(symbol: str, c: Contract) -> Instrument:
    """``symbol``'s facts as :mod:`seqtrade.instruments`' formulas (notional, fee, PnL) take them: a
    swap of contract ``c`` (the paper venue's own formulas, so a backtest's money is the venue's)."""
    return Instrument(symbol, 0.0, 1.0, 1.0, contract_value=c.value, kind=InstrumentKind.SWAP,
                      settle_currency=c.currency, inverse=c.inverse)  # fmt: skip


@dataclass(frozen=True)
class Fees:
    """Fractions of the notional: ``maker`` for resting fills, ``taker`` for fills at arrival."""

    maker: float = 0.0008
    taker: float = 0.001


@dataclass
class SimOrder:
    """One simulated order. ``side`` is ``"buy"``/``"sell"``; ``order_type`` one of ``limit``, ``market``,
    ``post_only``, ``ioc``, ``fok``; ``price`` None for a market order. The model keeps its state."""

    order_id: str
    symbol: str
    side: str
    order_type: str
    price: float | None
    quantity: float
    filled: float = 0.0
    notional: float = 0.0  # sum of price x quantity of its fills
    fee: float = 0.0
    status: str = "pending"  # pending -> open -> filled | cancelled | rejected
    ahead: float = 0.0  # the size in front of it in the queue at its price
    arrive_ns: int = 0
    seq: int = 0  # arrival order among orders arriving at the same time

    @property
    def remaining(self) -> float:
        return self.quantity - self.filled

    @property
    def avg_price(self) -> float:
        return self.notional / self.filled if self.filled > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Fill:
    order_id: str
    ts_ns: int
    price: float
    quantity: float
    fee: float
    maker: bool


@dataclass(frozen=True, slots=True)
class Status:
    """An order's new status: ``accepted`` (it rests), ``filled``, ``cancelled``, ``rejected``,
    ``cancel_failed`` (the cancel came after the order ended), ``amended`` (its price or size changed:
    the order's state is the new one) or ``amend_failed`` (refused, the order is as it was)."""

    order_id: str
    ts_ns: int
    status: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Funding:
    symbol: str
    ts_ns: int
    rate: float
    amount: float  # + received, - paid


Event = Fill | Status | Funding


@dataclass
class _Book:
    bids: list[list[float]] = field(default_factory=list)  # [[price, size], ...], best first
    asks: list[list[float]] = field(default_factory=list)


class FillModel:
    """Simulated orders against a recorded market; see the module docstring for the rules."""

    def __init__(self, fees: Fees | None = None, latency: Latency | None = None, *, queue: str = "book",
                 contracts: Mapping[str, Contract] | None = None) -> None:  # fmt: skip
        if queue not in QUEUES:
            raise ValueError(f"queue must be one of {', '.join(QUEUES)}, not {queue!r}")
        self.fees = fees or Fees()
        self.latency: Latency = latency or ConstantLatency()
        self.queue = queue  # "book": behind the size at the price; "none": first at its level (paper)
        self.contracts: dict[str, Contract] = dict(contracts or {})
        self._swaps = {sym: contract_instrument(sym, c) for sym, c in self.contracts.items()}
        # symbol -> the book orders meet: a copy of the last recorded one (as floats), made when an order
        # first needs it after that book came; liquidity an order takes leaves the copy
        self.books: dict[str, _Book] = {}
        self._raw: dict[
            str, tuple[Sequence[Sequence[float]], Sequence[Sequence[float]]]
        ] = {}  # not copied yet
        self.orders: dict[str, SimOrder] = {}
        self.resting: dict[str, list[SimOrder]] = {}  # symbol -> open orders, in arrival order
        self.position: dict[str, float] = {}
        # Money moved, - paid, + received: spot, the quote currency paid for buys (received for sells);
        # a swap, the settlement currency: the position's value at the fill price paid for a linear
        # buy (received for a sell), received for an inverse buy (paid for a sell), so that its PnL is
        # cash + value (linear) or cash - value (inverse) at the mark; fees and funding either way
        self.cash = 0.0
        self.fees_paid = 0.0
        self.funding_paid = 0.0
        # (arrive_ns, seq, "new" | "cancel" | "amend", order, (price, quantity) of an amend)
        self._pending: list[tuple[int, int, str, SimOrder, tuple[float | None, float | None]]] = []
        self._seq = 0

    # ------------------------------------------------------------------ orders

    def submit(self, order: SimOrder, now_ns: int) -> None:
        """``order`` sent at ``now_ns``: it takes effect one latency later."""
        if order.order_id in self.orders:
            raise ValueError(f"order {order.order_id} submitted twice")
        self.orders[order.order_id] = order
        order.arrive_ns = now_ns + self.latency.sample()
        self._queue(order.arrive_ns, "new", order)

    def cancel(self, order_id: str, now_ns: int) -> None:
        """A cancel sent at ``now_ns``, effective one latency later."""
        self._queue(now_ns + self.latency.sample(), "cancel", self.orders[order_id])

    def amend(self, order_id: str, price: float | None, quantity: float | None, now_ns: int) -> None:
        """An amend sent at ``now_ns`` (``None``: unchanged), effective one latency later."""
        self._queue(now_ns + self.latency.sample(), "amend", self.orders[order_id], (price, quantity))

    def _queue(self, at: int, what: str, order: SimOrder,
               change: tuple[float | None, float | None] = (None, None)) -> None:  # fmt: skip
        self._seq += 1
        self._pending.append((at, self._seq, what, order, change))
        self._pending.sort(key=lambda p: (p[0], p[1]))

    def advance(self, now_ns: int) -> list[Event]:
        """Everything that arrives strictly before ``now_ns``, in arrival order, against the book as it is."""
        out: list[Event] = []
        while self._pending and self._pending[0][0] < now_ns:
            at, seq, what, order, change = self._pending.pop(0)
            if what == "new":
                order.seq = seq
                self._arrive(order, at, out)
            elif what == "amend":
                self._amend(order, at, seq, *change, out)
            elif order.status in ("open", "pending"):
                self._done(order, at, "cancelled", "cancelled", out)
            else:
                out.append(Status(order.order_id, at, "cancel_failed", f"order already {order.status}"))
        return out

    def _arrive(self, o: SimOrder, ts: int, out: list[Event]) -> None:
        if o.status != "pending":  # cancelled before it arrived
            return
        book = self._book(o.symbol)
        buy = o.side == "buy"
        opposite = book.asks if buy else book.bids
        limit = o.price if o.order_type != "market" else None
        crosses = bool(opposite) and (limit is None or _better_or_equal(opposite[0][0], limit, buy))
        if o.order_type == "post_only" and crosses:
            self._done(o, ts, "rejected", "post_only order would take liquidity", out)
            return
        if o.order_type == "fok" and _available(opposite, limit, buy) < o.quantity - _EPS:
            self._done(o, ts, "cancelled", "fok: not enough at once", out)
            return
        if crosses:
            self._take(o, opposite, limit, buy, ts, out)
        if o.remaining <= _EPS:
            self._done(o, ts, "filled", "", out)
        elif o.order_type in ("market", "ioc", "fok"):
            self._done(o, ts, "cancelled", "not fillable at once", out)
        else:
            self._rest(o)
            out.append(Status(o.order_id, ts, "accepted"))

    def _rest(self, o: SimOrder) -> None:
        """``o`` joins the queue at its price: behind what rests there (``queue`` "book") and behind our
        own earlier orders there."""
        assert o.price is not None
        book = self._book(o.symbol)
        same = book.bids if o.side == "buy" else book.asks
        own = sum(
            r.remaining for r in self.resting.get(o.symbol, []) if r.side == o.side and r.price == o.price
        )
        o.ahead = (_size_at(same, o.price) if self.queue == "book" else 0.0) + own
        o.status = "open"
        self.resting.setdefault(o.symbol, []).append(o)

    def _amend(self, o: SimOrder, ts: int, seq: int, price: float | None, quantity: float | None,
               out: list[Event]) -> None:  # fmt: skip
        """An amend arrives (see the module docstring for the rules)."""
        reason = ""
        if o.status != "open":
            reason = f"order is {'not open yet' if o.status == 'pending' else 'already ' + o.status}"
        elif price is None and quantity is None:
            reason = "nothing to amend"
        elif quantity is not None and quantity <= 0:
            reason = "quantity must be > 0"
        buy = o.side == "buy"
        book = self._book(o.symbol)
        opposite = book.asks if buy else book.bids
        new_price = o.price if price is None else price
        assert new_price is not None or reason
        crosses = (
            bool(opposite) and new_price is not None and _better_or_equal(opposite[0][0], new_price, buy)
        )
        if not reason and o.order_type == "post_only" and crosses:
            reason = f"post_only order would cross the book at {opposite[0][0]}"
        if reason:
            out.append(Status(o.order_id, ts, "amend_failed", reason))
            return
        new_qty = o.quantity if quantity is None else quantity
        if new_qty <= o.filled + _EPS:
            o.quantity = o.filled
            self._done(o, ts, "filled", "", out)
            return
        requeue = new_price != o.price or new_qty > o.quantity + _EPS  # loses its place in the queue
        if requeue:
            self.resting[o.symbol].remove(o)
        o.price, o.quantity = new_price, new_qty
        out.append(Status(o.order_id, ts, "amended"))
        if crosses:
            self._take(o, opposite, new_price, buy, ts, out)
            if o.remaining <= _EPS:
                if not requeue:
                    self.resting[o.symbol].remove(o)
                o.status = "filled"
                out.append(Status(o.order_id, ts, "filled"))
                return
        if requeue:
            o.seq = seq
            self._rest(o)

    def _take(self, o: SimOrder, levels: list[list[float]], limit: float | None, buy: bool, ts: int,
              out: list[Event]) -> None:  # fmt: skip
        """Walk ``levels`` (best first) up to ``limit``: taker fills; consumed liquidity leaves the copy."""
        swap = self._swaps.get(o.symbol)
        while levels and o.remaining > _EPS:
            price, size = levels[0]
            if limit is not None and not _better_or_equal(price, limit, buy):
                break
            if price <= 0.0 and swap is not None and swap.inverse:
                break  # a recorded level at 0 or below: an inverse contract has no coin value there
            q = min(size, o.remaining)
            self._fill(o, ts, price, q, maker=False, out=out)
            if size - q <= _EPS:
                levels.pop(0)
            else:
                levels[0] = [price, size - q]

    def _fill(self, o: SimOrder, ts: int, price: float, q: float, *, maker: bool, out: list[Event]) -> None:
        rate = self.fees.maker if maker else self.fees.taker
        sign = 1.0 if o.side == "buy" else -1.0
        swap = self._swaps.get(o.symbol)
        if swap is None:  # spot: quantities in base units
            fee = price * q * rate
            self.cash -= sign * price * q + fee
        else:  # contracts: the paper venue's formulas, money in the settlement currency
            fee = fee_amount(swap, q, price, rate)
            value = notional(swap, q, price)
            if swap.inverse:  # in coins, received for a buy (a price of 0: none, as fee_amount has it)
                value = -value / price if price > 0 else 0.0
            self.cash -= sign * value + fee
        o.filled += q
        o.notional += price * q
        o.fee += fee
        self.position[o.symbol] = self.position.get(o.symbol, 0.0) + sign * q
        self.fees_paid += fee
        out.append(Fill(o.order_id, ts, price, q, fee, maker))

    def _done(self, o: SimOrder, ts: int, status: str, reason: str, out: list[Event]) -> None:
        if o.status == "open":
            self.resting[o.symbol].remove(o)
        o.status = status
        out.append(Status(o.order_id, ts, status, reason))

    # ------------------------------------------------------------------ the recording

    def on_book(self, symbol: str, bids: Sequence[Sequence[float]], asks: Sequence[Sequence[float]],
                ts_ns: int) -> list[Event]:  # fmt: skip
        """A recorded full book (levels best first). Resting orders: the queue ahead shrinks to the level
        (cancels ahead), and a book that crosses an order's price fills it there."""
        pending = self._pending  # (most books come with nothing arriving: no call for nothing)
        out = self.advance(ts_ns) if pending and pending[0][0] < ts_ns else []
        # No copy of the book here (most books meet no order): the levels are kept as recorded, and
        # copied when an order arrives, rests or is amended on this symbol (:meth:`_book`).
        self._raw[symbol] = (bids, asks)
        self.books.pop(symbol, None)
        resting = self.resting.get(symbol)
        if not resting:
            return out
        # The book is read once per (side, price) our orders rest at, not once per order: the same
        # levels give the same answers, and nothing in this loop changes them (these fills take
        # nothing from the book).
        seen: dict[tuple[bool, float], tuple[float, float]] = {}
        for o in list(resting):
            price = o.price
            assert price is not None
            buy = o.side == "buy"
            key = (buy, price)
            at = seen.get(key)
            if at is None:
                at = seen[key] = (
                    _size_at(bids if buy else asks, price),
                    _available(asks if buy else bids, price, buy),
                )
            size, through = at
            o.ahead = min(o.ahead, size)
            if through > _EPS:
                self._fill(o, ts_ns, price, min(o.remaining, through), maker=True, out=out)
                if o.remaining <= _EPS:
                    self._done(o, ts_ns, "filled", "", out)
        return out

    def _book(self, symbol: str) -> _Book:
        """The book orders on ``symbol`` meet: the last recorded one, copied at its first use."""
        book = self.books.get(symbol)
        if book is None:
            raw = self._raw.pop(symbol, None)
            book = self.books[symbol] = (
                _Book([[float(p), float(s)] for p, s in raw[0]], [[float(p), float(s)] for p, s in raw[1]])
                if raw is not None
                else _Book()
            )
        return book

    def on_trade(self, symbol: str, price: float, size: float, side: str, ts_ns: int) -> list[Event]:
        """A recorded public trade; ``side`` is the taker's. It consumes the queue on the passive side."""
        pending = self._pending
        out = self.advance(ts_ns) if pending and pending[0][0] < ts_ns else []
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
            elif _better_or_equal(o.price, price, not buy):  # traded through our price: the level is gone
                q = min(o.remaining, size)
                o.ahead = 0.0
            else:
                continue
            if q > _EPS:
                self._fill(o, ts_ns, o.price, q, maker=True, out=out)
                if o.remaining <= _EPS:
                    self._done(o, ts_ns, "filled", "", out)
        return out

    def _trade_first_at_level(self, symbol: str, price: float, size: float, side: str, ts_ns: int,
                              out: list[Event]) -> None:  # fmt: skip
        """The paper venue's rule: a trade better than an order's price, or at it with the opposite taker
        side, fills it; the trade's size is shared in price-time priority (buys first, then sells)."""
        left = size
        for our_side in ("buy", "sell"):
            sign = 1.0 if our_side == "buy" else -1.0
            orders = [o for o in self.resting.get(symbol, []) if o.side == our_side]
            orders.sort(key=lambda o: (-sign * (o.price or 0.0), o.seq))
            for o in orders:
                if left <= _EPS:
                    return
                assert o.price is not None
                diff = sign * (o.price - price)  # > 0: the trade is better than our price
                tol = _EPS * max(1.0, abs(price))
                if diff < -tol or (diff <= tol and side == our_side):
                    continue
                q = min(o.remaining, left)
                left -= q
                self._fill(o, ts_ns, o.price, q, maker=True, out=out)
                if o.remaining <= _EPS:
                    self._done(o, ts_ns, "filled", "", out)

    def on_funding(self, symbol: str, rate: float, mark_price: float, ts_ns: int) -> list[Event]:
        """A funding settlement of a swap: longs pay ``position value x rate``, shorts receive it."""
        out = self.advance(ts_ns)
        pos = self.position.get(symbol, 0.0)
        if pos and mark_price > 0:
            c = self.contracts.get(symbol, Contract())
            value = pos * c.value / mark_price if c.inverse else pos * c.value * mark_price
            amount = -value * rate
            self.cash += amount
            self.funding_paid -= amount
            out.append(Funding(symbol, ts_ns, rate, amount))
        return out


def _better_or_equal(price: float, limit: float, buy: bool) -> bool:
    """``price`` is at ``limit`` or better for a buyer (lower) or a seller (higher)."""
    return price <= limit + _EPS if buy else price >= limit - _EPS


def _size_at(levels: Sequence[Sequence[float]], price: float) -> float:
    tol = _EPS * max(1.0, abs(price))
    for p, s in levels:
        if abs(float(p) - price) <= tol:
            return float(s)
    return 0.0


def _available(levels: Sequence[Sequence[float]], limit: float | None, buy: bool) -> float:
    """Size on the opposite side at ``limit`` or better (all of it for a market order); levels as
    recorded or copied (their values taken as floats either way)."""
    if limit is None:
        return sum(float(s) for _, s in levels)
    # _better_or_equal, inlined; most often no level is (the book is on the other side of our price):
    # 0 then, as the sum of nothing, without the sum
    if buy:
        top = limit + _EPS
        for p, _ in levels:
            if float(p) <= top:
                return sum(float(s) for p, s in levels if float(p) <= top)
        return 0
    bottom = limit - _EPS
    for p, _ in levels:
        if float(p) >= bottom:
            return sum(float(s) for p, s in levels if float(p) >= bottom)
    return 0
