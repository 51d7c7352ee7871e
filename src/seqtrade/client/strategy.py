"""The ``Strategy`` base class: callbacks, order helpers, timers and local state.

A strategy subclasses :class:`Strategy`, overrides the callbacks it needs, and is run by
:func:`seqtrade.client.run` (or ``seqtrade run file.py``). Callbacks run one at a time on the
strategy's own thread; order helpers never block (they queue a frame on the order socket).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..ids import base36
from ..models import (
    OPEN_STATUSES,
    AmendRequest,
    Book,
    CancelAll,
    CancelRequest,
    OrderReport,
    OrderRequest,
    OrderType,
    Side,
    Ticker,
    Trade,
    VenueStatus,
)
from ..positions import FeeLedger, apply_fill

if TYPE_CHECKING:
    from .protocol import ClientProtocol
    from .runner import Connection

__all__ = ["Strategy", "Position", "OrderIdGenerator"]


class OrderIdGenerator:
    """client_order_ids that never repeat, also across restarts: start time in µs (base 36) + counter."""

    def __init__(self) -> None:
        self.prefix = base36(time.time_ns() // 1000)
        self._n = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}-{next(self._n)}"


@dataclass(slots=True)
class Position:
    """Net position of one symbol, from this strategy's own fills."""

    quantity: float = 0.0  # + long, - short
    avg_price: float = 0.0  # average entry price of the open quantity
    realized_pnl: float = 0.0  # gross of fees
    fees: float = 0.0

    def apply_fill(self, side: str, qty: float, price: float) -> None:
        """Apply one fill (the maths the server's accounts use too: :mod:`seqtrade.positions`)."""
        self.quantity, self.avg_price, pnl = apply_fill(self.quantity, self.avg_price, side, qty, price)
        self.realized_pnl += pnl


@dataclass(order=True, slots=True)
class _Timer:
    when: float
    seq: int
    interval: float = field(compare=False)
    callback: Callable[[], Any] = field(compare=False)
    repeat: bool = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class Strategy:
    """Base class of a strategy. Override the ``on_*`` callbacks you need.

    Class attributes:
        symbols: the symbols whose market data this strategy receives (empty: none).
        Book and trade data are subscribed to only when ``on_book``/``on_trade`` are overridden.

    State the strategy can read at any time: :attr:`open_orders` (client_order_id -> latest report),
    :meth:`position`, :attr:`realized_pnl`, :attr:`fees`, :attr:`positions`.
    """

    symbols: Sequence[str] = ()

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = dict(params)
        self.strategy_id: str = ""
        self.log = logging.getLogger(f"seqtrade.strategy.{type(self).__name__}")
        self.open_orders: dict[str, OrderReport] = {}
        self.orders: dict[str, OrderReport] = {}  # every order's latest report
        self.positions: dict[str, Position] = {}
        self._conn: Connection | None = None
        self._protocol: ClientProtocol | None = None
        self._ids = OrderIdGenerator()
        self._timers: list[_Timer] = []
        self._timer_seq = itertools.count()
        self._fees = FeeLedger()  # cumulative fee per order: a report's fee becomes its delta
        self._stop = False

    # ------------------------------------------------------------------ callbacks

    def on_start(self) -> None:
        """Called once, after the join handshake: open orders and positions are up to date."""

    def on_ticker(self, ticker: Ticker) -> None:
        """A ticker of a subscribed symbol."""

    def on_book(self, book: Book) -> None:
        """A 5-level book of a subscribed symbol."""

    def on_trade(self, trade: Trade) -> None:
        """A public trade of a subscribed symbol."""

    def on_order(self, report: OrderReport) -> None:
        """A report on one of this strategy's orders (state already applied)."""

    def on_status(self, status: VenueStatus) -> None:
        """Venue connectivity: ``status.connected`` False means market data is stale."""

    def on_stop(self) -> None:
        """Called once when the strategy stops (signal, ``stop()``, or server gone)."""

    # ------------------------------------------------------------------ orders

    def _send(self, msg: Any) -> None:
        if self._conn is None:
            raise RuntimeError("the strategy is not connected: call order helpers from callbacks or timers")
        self._conn.send(msg)

    def _order(
        self, symbol: str, side: Side, order_type: OrderType, price: float | None, quantity: float
    ) -> str:
        coid = self._ids.next()
        self._send(
            OrderRequest(
                self.strategy_id, coid, symbol, side, order_type, price, quantity, time.time_ns() // 1_000_000
            )
        )
        return coid

    def buy_limit(self, symbol: str, price: float, quantity: float, *, order_type: str = "limit") -> str:
        """Buy at ``price`` or better. ``order_type``: limit, post_only, ioc or fok. Returns the client_order_id."""
        return self._order(symbol, Side.BUY, OrderType(order_type), price, quantity)

    def sell_limit(self, symbol: str, price: float, quantity: float, *, order_type: str = "limit") -> str:
        """Sell at ``price`` or better. ``order_type``: limit, post_only, ioc or fok. Returns the client_order_id."""
        return self._order(symbol, Side.SELL, OrderType(order_type), price, quantity)

    def buy_market(self, symbol: str, quantity: float) -> str:
        """Buy ``quantity`` (base units) at the market. Returns the client_order_id."""
        return self._order(symbol, Side.BUY, OrderType.MARKET, None, quantity)

    def sell_market(self, symbol: str, quantity: float) -> str:
        """Sell ``quantity`` (base units) at the market. Returns the client_order_id."""
        return self._order(symbol, Side.SELL, OrderType.MARKET, None, quantity)

    def cancel_order(self, client_order_id: str) -> str:
        """Request a cancel; the outcome arrives in ``on_order``. Returns the client_order_id."""
        self._send(CancelRequest(self.strategy_id, client_order_id))
        return client_order_id

    def amend_order(
        self, client_order_id: str, *, price: float | None = None, quantity: float | None = None
    ) -> str:
        """Change price and/or total quantity; the outcome arrives in ``on_order``."""
        if price is None and quantity is None:
            raise ValueError("amend_order needs a price and/or a quantity")
        self._send(AmendRequest(self.strategy_id, client_order_id, price, quantity))
        return client_order_id

    def cancel_all(self, symbol: str | None = None) -> None:
        """Cancel every open order of this strategy (of one symbol if given)."""
        self._send(CancelAll(self.strategy_id, symbol))

    # ------------------------------------------------------------------ timers and control

    def set_timer(self, interval: float, callback: Callable[[], Any], *, repeat: bool = True) -> _Timer:
        """Call ``callback`` after ``interval`` seconds (and every ``interval`` if ``repeat``)."""
        t = _Timer(time.monotonic() + interval, next(self._timer_seq), interval, callback, repeat)
        heapq.heappush(self._timers, t)
        return t

    @staticmethod
    def cancel_timer(timer: _Timer) -> None:
        timer.cancelled = True

    def stop(self) -> None:
        """Stop after the current callback (``on_stop`` is called). Thread-safe."""
        self._stop = True

    # ------------------------------------------------------------------ state

    @property
    def md_gaps(self) -> int:
        """Market-data messages dropped on the way (seen as seq jumps), since the strategy started."""
        return self._protocol.md_gaps if self._protocol is not None else 0

    def position(self, symbol: str) -> float:
        p = self.positions.get(symbol)
        return p.quantity if p else 0.0

    def avg_price(self, symbol: str) -> float:
        p = self.positions.get(symbol)
        return p.avg_price if p else 0.0

    @property
    def realized_pnl(self) -> float:
        return sum(p.realized_pnl for p in self.positions.values())

    @property
    def fees(self) -> float:
        return sum(p.fees for p in self.positions.values())

    def _apply_report(self, r: OrderReport) -> None:
        """Update local state from one report (each report is applied once, in seq order)."""
        coid = r.client_order_id
        self.orders[coid] = r
        if r.status in OPEN_STATUSES:
            self.open_orders[coid] = r
        else:
            self.open_orders.pop(coid, None)
        if r.symbol:
            pos = self.positions.get(r.symbol)
            if pos is None and (r.last_fill_quantity > 0 or r.fee != 0):
                pos = self.positions[r.symbol] = Position()
            if pos is not None:
                if r.last_fill_quantity > 0:
                    pos.apply_fill(r.side, r.last_fill_quantity, r.last_fill_price)
                pos.fees += self._fees.change(coid, r.fee)  # reports come in seq order (rebates < 0)

    def _reset_open_orders(self, open_orders: Mapping[str, OrderReport]) -> None:
        self.open_orders = dict(open_orders)

    def _run_due_timers(self, now: float, call: Callable[[Callable[[], Any]], None]) -> float | None:
        """Run the timers that are due, each through ``call`` (the runner's guard, which logs an
        exception and goes on); the time of the next one."""
        timers = self._timers
        while timers and timers[0].when <= now:
            t = heapq.heappop(timers)
            if t.cancelled:
                continue
            if t.repeat:
                t.when = max(t.when + t.interval, now)
                heapq.heappush(timers, t)
            call(t.callback)
            if self._stop:
                break
        while timers and timers[0].cancelled:
            heapq.heappop(timers)
        return timers[0].when if timers else None
