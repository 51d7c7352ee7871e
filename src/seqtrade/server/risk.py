"""The risk gate: pre-trade limits and trading states, checked on every order, amend and cancel.

Pure apart from a clock passed in (``trio.current_time`` in the server, anything in tests): no I/O,
no trio, no sockets. The engine (:mod:`seqtrade.server.engine`, which takes the gate as a constructor
argument) asks :meth:`RiskGate.refusal` about every new order and amend and
:meth:`RiskGate.cancel_refusal` about every cancel, and feeds every journaled report to
:meth:`RiskGate.on_report`, so the gate's view of open orders is always the engine's.

Limits come in layers (docs/risk.md): ``[risk]`` applies to every strategy and symbol,
``[risk.strategies.<id>]`` to one strategy, ``[risk.symbols.<symbol>]`` to one symbol. Layers do not
override each other: an order passes only if every layer that applies lets it through, so no
configuration at one level can loosen another. 0 means "no limit at this layer".

Trading states (active, reducing, halted) are set globally and per strategy; the stricter of the two
applies. Reducing lets through only orders that shrink the strategy's position in the symbol and
cannot flip it, counting its open orders on the same side. Cancels always pass the states.

A refusal is a sentence that names the rule, the layer and the numbers; the server sends it to the
strategy as the ``error_msg`` of a ``rejected`` report (or of the refused amend or cancel).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from ..config import RiskConfig, RiskLimits
from ..instruments import notional, notional_currency
from ..models import (
    OPEN_STATUSES,
    AmendRequest,
    CancelRequest,
    OrderReport,
    OrderRequest,
    OrderType,
    PriceLimit,
    Side,
    Ticker,
)
from ..venues.base import Instrument
from .orders import OrderRecord, round_price, round_quantity

__all__ = ["OrderTerms", "PositionSource", "Quotes", "RiskGate", "TradingState"]

_REL = 1e-9  # relative tolerance: a value "at the limit" passes despite float rounding


class TradingState(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class PositionSource(Protocol):
    """Filled positions in base units (+ long), per strategy and for the whole account."""

    def position(self, strategy_id: str, symbol: str) -> float: ...

    def net(self, symbol: str) -> float: ...


@dataclass(slots=True)
class _Open:
    """What an open (or in-flight) order may still add to a position."""

    strategy_id: str
    side: str
    remaining: float


class Quotes:
    """The newest ticker per symbol, for the mid price the band and notional rules need, and the
    venue's newest price limits of swaps and futures (``limits``)."""

    __slots__ = ("last", "limits", "marks")

    def __init__(self) -> None:
        self.last: dict[str, Ticker] = {}
        self.limits: dict[str, PriceLimit] = {}
        self.marks: dict[str, float] = {}  # the venue's mark price of swaps and futures (status: PnL at mark)

    def outside_limits(self, symbol: str, side: str, price: float | None) -> str:
        """Why a limit price is outside the venue's price limits ("" when inside, or none known)."""
        lim = self.limits.get(symbol)
        if lim is None or price is None:
            return ""
        if side == Side.BUY and lim.buy_limit > 0 and price > lim.buy_limit * (1 + _REL):
            return f"price limit: a buy at {price:g} is above the venue's buy limit {lim.buy_limit:g} for {symbol}"
        if side == Side.SELL and lim.sell_limit > 0 and price < lim.sell_limit * (1 - _REL):
            return f"price limit: a sell at {price:g} is below the venue's sell limit {lim.sell_limit:g} for {symbol}"
        return ""

    def mid(self, symbol: str) -> float | None:
        t = self.last.get(symbol)
        if t is None or t.bid_price <= 0 or t.ask_price <= 0:
            return None
        return (t.bid_price + t.ask_price) / 2


@dataclass(slots=True)
class OrderTerms:
    """The terms of a new order or of an order as an amend would leave it (rounded like the engine)."""

    strategy_id: str
    client_order_id: str
    symbol: str
    side: str
    price: float | None  # None: market
    quantity: float  # total
    remaining: float  # what it may still fill
    is_amend: bool


def _over(value: float, limit: float) -> bool:
    return value > limit * (1 + _REL) + 1e-12


def _signed(side: str, qty: float) -> float:
    return qty if side == Side.BUY else -qty


class RiskGate:
    """Limits, trading states, rate windows and the open-order exposure they need."""

    def __init__(
        self,
        config: RiskConfig,
        *,
        positions: PositionSource,
        mid: Callable[[str], float | None],
        instrument: Callable[[str], Instrument | None],
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self._positions = positions
        self._mid = mid
        self._instrument = instrument
        self._clock = clock
        self.global_state = TradingState.ACTIVE
        self.strategy_states: dict[str, TradingState] = {}
        # symbol -> (strategy_id, client_order_id) -> exposure
        self._open: dict[str, dict[tuple[str, str], _Open]] = {}
        self._orders: dict[tuple[str, str | None], deque[float]] = {}  # (strategy, symbol|None) -> times
        self._cancels: dict[tuple[str, str | None], deque[float]] = {}

    # ------------------------------------------------------------------ trading states

    def set_state(self, state: TradingState, strategy_id: str | None = None) -> None:
        """Set the global state, or one strategy's (ACTIVE removes the strategy's own state)."""
        if strategy_id is None:
            self.global_state = state
        elif state is TradingState.ACTIVE:
            self.strategy_states.pop(strategy_id, None)
        else:
            self.strategy_states[strategy_id] = state

    def state_of(self, strategy_id: str) -> tuple[TradingState, str]:
        """The state that applies to a strategy, and where it comes from (``global`` or ``strategy``)."""
        own = self.strategy_states.get(strategy_id, TradingState.ACTIVE)
        if _SEVERITY[self.global_state] >= _SEVERITY[own]:
            return self.global_state, "global"
        return own, f"strategy {strategy_id}"

    # ------------------------------------------------------------------ open orders

    def seed(self, records: Iterable[OrderRecord]) -> None:
        """Start from the orders the engine holds as open (restart)."""
        for rec in records:
            if rec.is_open:
                self._track(rec.strategy_id, rec.client_order_id, rec.symbol, rec.side,
                            rec.quantity - rec.filled_quantity)  # fmt: skip

    def on_report(self, rec: OrderRecord | None, report: OrderReport) -> None:
        """Follow an order's remaining quantity from its journaled reports, in seq order."""
        if rec is None:
            return  # a reject of something that is not an order of ours
        key = (rec.strategy_id, rec.client_order_id)
        if report.status in OPEN_STATUSES:
            self._track(*key, rec.symbol, rec.side, max(report.quantity - report.filled_quantity, 0.0))
        else:
            self._open.get(rec.symbol, {}).pop(key, None)

    def _track(self, sid: str, coid: str, symbol: str, side: str, remaining: float) -> None:
        self._open.setdefault(symbol, {})[(sid, coid)] = _Open(sid, side, remaining)

    def _open_on_side(self, symbol: str, side: str, sid: str | None, exclude: tuple[str, str]) -> float:
        return sum(
            o.remaining
            for k, o in self._open.get(symbol, {}).items()
            if o.side == side and (sid is None or o.strategy_id == sid) and k != exclude
        )

    def _open_count(self, sid: str, symbol: str | None) -> int:
        books = [self._open.get(symbol, {})] if symbol is not None else list(self._open.values())
        return sum(1 for book in books for o in book.values() if o.strategy_id == sid)

    # ------------------------------------------------------------------ the checks

    def check(self, req: OrderRequest | AmendRequest, rec: OrderRecord | None) -> str | None:
        """Every rule at once: None lets the order (or amend) through, else the refusal.

        For a request on its own (the engine calls :meth:`refusal` with the terms it rounded). An order that passes is counted at once
        (rate windows, open exposure), before the venue has acknowledged it, so a burst of orders is
        checked as a whole.
        """
        order = self._terms(req, rec)
        if order is None:
            return None  # the engine rejects it for its own reasons
        return self.refusal(order)

    def refusal(self, o: OrderTerms) -> str | None:
        """The rules, in order: the trading state, then per layer (``[risk]``, the strategy's, the
        symbol's) the order's size and notional, the price band, the worst-case positions (strategy and
        account) and the counts (open orders, orders per window). None: it passes, and is counted."""
        reason = self.check_state(o)
        if reason:
            return reason
        for name, lim, symbol in self.layers(o.strategy_id, o.symbol):
            reason = (
                self.check_size(o, name, lim)
                or self.check_band(o, name, lim)
                or self.check_positions(o, name, lim)
                or self.check_counts(o, name, lim, symbol)
            )
            if reason:
                return reason
        self.admit(o)
        return None

    def check_cancel(self, req: CancelRequest, rec: OrderRecord) -> str | None:
        """Only the cancel rate applies to a cancel (cancels pass every trading state)."""
        return self.cancel_refusal(rec)

    def terms(
        self,
        rec: OrderRecord,
        *,
        price: float | None = None,
        quantity: float | None = None,
        amend: bool = False,
    ) -> OrderTerms:
        """The terms of a new order's record (already rounded), or of ``rec`` as an amend to the
        (rounded) ``price`` and ``quantity`` would leave it."""
        p = price if price is not None else rec.price
        q = quantity if quantity is not None else rec.quantity
        remaining = max(q - rec.filled_quantity, 0.0) if amend else q
        return OrderTerms(rec.strategy_id, rec.client_order_id, rec.symbol, rec.side, p, q, remaining, amend)

    def cancel_refusal(self, rec: OrderRecord) -> str | None:
        """The cancel rate of every layer; a cancel that passes is counted."""
        now = self._clock()
        for name, lim, symbol in self.layers(rec.strategy_id, rec.symbol):
            if lim.max_cancels_per_window:
                n = self._count(self._cancels, (rec.strategy_id, symbol), now)
                if n + 1 > lim.max_cancels_per_window:
                    return (f"max_cancels_per_window ({name}): {n} cancels in the last "
                            f"{self.config.rate_window:g} s{_in(symbol)}, limit {lim.max_cancels_per_window}")  # fmt: skip
        self._stamp(self._cancels, rec.strategy_id, rec.symbol, now)
        return None

    def _terms(self, req: OrderRequest | AmendRequest, rec: OrderRecord | None) -> OrderTerms | None:
        if isinstance(req, OrderRequest):
            inst = self._instrument(req.symbol)
            if inst is None:
                return None
            price = None
            if req.order_type is not OrderType.MARKET and req.price is not None:
                price = round_price(req.price, inst, req.side)
            qty = round_quantity(req.quantity, inst)
            return OrderTerms(
                req.strategy_id, req.client_order_id, req.symbol, str(req.side), price, qty, qty, False
            )
        assert rec is not None
        inst = self._instrument(rec.symbol)
        if inst is None:
            return None
        price = round_price(req.price, inst, Side(rec.side)) if req.price is not None else rec.price
        qty = round_quantity(req.quantity, inst) if req.quantity is not None else rec.quantity
        remaining = max(qty - rec.filled_quantity, 0.0)
        return OrderTerms(
            rec.strategy_id, rec.client_order_id, rec.symbol, rec.side, price, qty, remaining, True
        )

    def layers(self, sid: str, symbol: str) -> list[tuple[str, RiskLimits, str | None]]:
        """(name, limits, the symbol its counts are scoped to or None for all) of every layer that applies."""
        out: list[tuple[str, RiskLimits, str | None]] = [("risk", self.config, None)]
        if (lim := self.config.strategies.get(sid)) is not None:
            out.append((f"risk.strategies.{sid}", lim, None))
        if (lim := self.config.symbols.get(symbol)) is not None:
            out.append((f"risk.symbols.{symbol}", lim, symbol))
        return out

    def check_state(self, o: OrderTerms) -> str | None:
        state, scope = self.state_of(o.strategy_id)
        if state is TradingState.HALTED:
            return f"trading is halted ({scope}): new orders and amends are refused, cancels pass"
        if state is TradingState.REDUCING:
            pos = self._positions.position(o.strategy_id, o.symbol)
            same_side = self._open_on_side(
                o.symbol, o.side, o.strategy_id, (o.strategy_id, o.client_order_id)
            )
            after = pos + _signed(o.side, same_side + o.remaining)
            opposite = _signed(o.side, 1.0) * pos < 0
            reduces = opposite and (after >= -1e-12 if pos > 0 else after <= 1e-12)
            if not reduces:
                return (f"trading is reducing ({scope}): a {o.side} of {o.remaining:g} would not reduce the position "
                        f"{pos:g} in {o.symbol} (open {o.side}s {same_side:g}); only orders that shrink it pass")  # fmt: skip
        return None

    def check_size(self, o: OrderTerms, name: str, lim: RiskLimits) -> str | None:
        if lim.max_order_quantity and _over(o.quantity, lim.max_order_quantity):
            return f"max_order_quantity ({name}): quantity {o.quantity:g} is over the limit {lim.max_order_quantity:g}"
        if lim.max_order_notional:
            price = o.price if o.price is not None else self._mid(o.symbol)
            if price is None:
                return (
                    f"max_order_notional ({name}): no market price for {o.symbol} yet to value a market order"
                )
            inst = self._instrument(o.symbol)
            value = notional(inst, o.quantity, price) if inst is not None else price * o.quantity
            if _over(value, lim.max_order_notional):
                how = f"{o.quantity:g} x {price:g}"
                if inst is not None and inst.is_derivative:
                    how = (f"{o.quantity:g} contracts x {inst.contract_value:g}"
                           + ("" if inst.inverse else f" x {price:g}"))  # fmt: skip
                ccy = notional_currency(inst) if inst is not None else ""
                return (f"max_order_notional ({name}): {how} = {value:g}{' ' + ccy if ccy else ''} is over the limit "
                        f"{lim.max_order_notional:g}")  # fmt: skip
        return None

    def check_band(self, o: OrderTerms, name: str, lim: RiskLimits) -> str | None:
        if not lim.price_band_bps or o.price is None:
            return None
        mid = self._mid(o.symbol)
        if mid is None or mid <= 0:
            return f"price_band_bps ({name}): no mid price for {o.symbol} yet"
        bps = abs(o.price - mid) / mid * 10_000
        if _over(bps, lim.price_band_bps):
            return (f"price_band_bps ({name}): price {o.price:g} is {bps:.1f} bps from the mid {mid:g}, "
                    f"band {lim.price_band_bps:g} bps")  # fmt: skip
        return None

    def check_positions(self, o: OrderTerms, name: str, lim: RiskLimits) -> str | None:
        key = (o.strategy_id, o.client_order_id)
        checks = (
            ("max_position", lim.max_position, o.strategy_id, "position"),
            ("max_account_position", lim.max_account_position, None, "account position"),
        )
        for rule, limit, sid, what in checks:
            if not limit:
                continue
            pos = self._positions.position(o.strategy_id, o.symbol) if sid else self._positions.net(o.symbol)
            open_side = self._open_on_side(o.symbol, o.side, sid, key)
            worst = pos + _signed(o.side, open_side + o.remaining)
            if _over(abs(worst), limit) and abs(worst) > abs(pos) - 1e-12:
                return (f"{rule} ({name}): worst-case {what} in {o.symbol} would be {worst:g} "
                        f"({what} {pos:g}, open {o.side}s {open_side:g}, this order {_signed(o.side, o.remaining):+g}), "
                        f"limit {limit:g}")  # fmt: skip
        return None

    def check_counts(self, o: OrderTerms, name: str, lim: RiskLimits, symbol: str | None) -> str | None:
        if lim.max_open_orders and not o.is_amend:
            n = self._open_count(o.strategy_id, symbol)
            if n + 1 > lim.max_open_orders:
                return f"max_open_orders ({name}): {n} orders already open{_in(symbol)}, limit {lim.max_open_orders}"
        if lim.max_orders_per_window:
            n = self._count(self._orders, (o.strategy_id, symbol), self._clock())
            if n + 1 > lim.max_orders_per_window:
                return (f"max_orders_per_window ({name}): {n} orders and amends in the last "
                        f"{self.config.rate_window:g} s{_in(symbol)}, limit {lim.max_orders_per_window}")  # fmt: skip
        return None

    def _count(
        self, windows: dict[tuple[str, str | None], deque[float]], key: tuple[str, str | None], now: float
    ) -> int:
        times = windows.get(key)
        if times is None:
            return 0
        horizon = now - self.config.rate_window
        while times and times[0] <= horizon:
            times.popleft()
        return len(times)

    def _stamp(
        self, windows: dict[tuple[str, str | None], deque[float]], sid: str, symbol: str, now: float
    ) -> None:
        """Count one request in the strategy's windows (all symbols, and this one); old times drop out."""
        horizon = now - self.config.rate_window
        for key in ((sid, None), (sid, symbol)):
            times = windows.get(key)
            if times is None:
                windows[key] = deque((now,))
                continue
            while times and times[0] <= horizon:  # what _count drops
                times.popleft()
            times.append(now)

    def admit(self, o: OrderTerms) -> None:
        self._stamp(self._orders, o.strategy_id, o.symbol, self._clock())
        book = self._open.setdefault(o.symbol, {})
        key = (o.strategy_id, o.client_order_id)
        known = book.get(key)
        # An amend counts at the larger of old and new until the venue answers.
        remaining = max(o.remaining, known.remaining) if o.is_amend and known is not None else o.remaining
        book[key] = _Open(o.strategy_id, o.side, remaining)


def _in(symbol: str | None) -> str:
    return f" in {symbol}" if symbol is not None else ""
