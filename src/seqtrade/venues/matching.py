"""The paper exchange's matching engine: our orders against a synthetic public order book.

Pure: no I/O, no clock (every call takes ``ts``, ms), no trio. :class:`MatchingEngine` takes
:class:`~seqtrade.venues.base.VenueOrder` requests and market updates and returns the
:class:`~seqtrade.venues.base.OrderEvent` objects they cause, each carrying the order's full state.

The model, in short:

- The public book is what the market simulation last gave :meth:`MatchingEngine.set_book` (best level
  first). Our taker fills consume the sizes of its levels until the next ``set_book`` replaces it, so
  liquidity is never used twice and partial fills happen.
- Quantities are counted in whole lots internally, so "never fills more than the quantity" holds
  exactly; prices are compared with a tolerance of a millionth of a tick.
- Our own orders never match each other: they only trade with the synthetic book and public trades.
- A resting order fills as maker, at its own limit price, when a later book crosses it (ask <= buy
  price, bid >= sell price; limited by the size at the crossing levels) or when a public trade prints
  through it (a better price, or its price with the opposite taker side; limited by the trade's size).
  Resting orders share that liquidity in price-time priority; an amend of price or a larger quantity
  loses time priority.
- A market order takes the visible book level by level, each level a fill at its own price; what the
  visible depth cannot fill is cancelled (the order ends ``cancelled`` with what it filled), never
  filled at an invented price.
- The account has balances (:mod:`seqtrade.venues.paper_account`): an order the account cannot pay for
  is rejected as an exchange would (a buy needs the quote currency, a sell the base coins), a resting
  order freezes what it may spend, and a cancel releases it.
- Swaps (the symbols given ``contracts``) trade on margin by the rules of
  :mod:`seqtrade.venues.paper_derivs`: quantities in contracts, one net position per symbol, money in
  the settlement currency. An order freezes the initial margin and the fee of the part that opens
  exposure (the part that closes the position needs nothing) out of the free margin; a fill moves the
  realised PnL and the fee into the cash. :meth:`MatchingEngine.set_mark`,
  :meth:`MatchingEngine.settle_funding` and :meth:`MatchingEngine.liquidations` are the venue's hooks
  for the mark price, funding and liquidation.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..config import DEFAULT_PAPER_BALANCES
from ..models import OrderStatus, OrderType, Side
from .base import EventKind, Instrument, OrderEvent, VenueOrder
from .paper_account import (
    INSUFFICIENT_BALANCE,
    Balance,
    base_currency,
    buy_reservation,
    freeze,
    quote_currency,
    release,
    settle_fill,
    totals,
)
from .paper_derivs import (
    AccountChange,
    ContractSpec,
    DerivPosition,
    apply_fill,
    funding_payment,
    initial_margin,
    liquidate,
    margin_ratio,
    to_liquidate,
    unrealised_pnl,
)
from .paper_derivs import fee as contract_fee

__all__ = [
    "MatchingEngine",
    "PaperOrder",
    "check_order",
    "quote_currency",
]  # quote_currency: from paper_account

log = logging.getLogger(__name__)

# Enum members as module constants: in the hot paths, a class attribute lookup of an enum member and
# an enum's hash (``in OPEN_STATUSES``) and ``match`` on enum values cost a noticeable part of a place_order.
_BUY, _SELL = Side.BUY, Side.SELL
_MARKET, _LIMIT, _POST_ONLY, _IOC = OrderType.MARKET, OrderType.LIMIT, OrderType.POST_ONLY, OrderType.IOC
_ACCEPTED, _PARTIALLY_FILLED, _FILLED = OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED
_CANCELLED, _REJECTED = OrderStatus.CANCELLED, OrderStatus.REJECTED
_UPDATE = EventKind.UPDATE

_REL_TOL = 1e-9  # how far off the tick or lot grid a value may be, relative to the value in steps
_MAX_LOTS = 2**53  # beyond this, lots are no longer exact in a float (and overflow SQLite's INTEGER)
_NO_EVENTS: tuple[OrderEvent, ...] = ()


def _is_open(status: OrderStatus) -> bool:
    return status is _ACCEPTED or status is _PARTIALLY_FILLED


def _grid_steps(value: float, step: float) -> int | None:
    """``value / step`` as an integer if ``value`` is on the ``step`` grid, else None."""
    x = value / step
    n = round(x)
    if abs(x - n) > _REL_TOL * max(1.0, abs(x)):
        return None
    return n


def _check_price(price: float | None, inst: Instrument) -> str:
    if price is None:
        return "price is required for this order type"
    if not math.isfinite(price) or price <= 0:
        return f"price {price!r} must be a positive finite number"
    if _grid_steps(price, inst.tick_size) is None:
        return f"price {price!r} is not a multiple of the tick size {inst.tick_size!r}"
    return ""


def _check_quantity(quantity: float, inst: Instrument, *, enforce_min: bool) -> str:
    if not math.isfinite(quantity) or quantity <= 0:
        return f"quantity {quantity!r} must be a positive finite number"
    if quantity / inst.lot_size > _MAX_LOTS:
        return f"quantity {quantity!r} is too large (at most {_MAX_LOTS * inst.lot_size:g})"
    if _grid_steps(quantity, inst.lot_size) is None:
        return f"quantity {quantity!r} is not a multiple of the lot size {inst.lot_size!r}"
    if enforce_min and quantity < inst.min_size * (1 - _REL_TOL):
        return f"quantity {quantity!r} is below the minimum size {inst.min_size!r}"
    return ""


def check_order(order: VenueOrder, inst: Instrument) -> str:
    """Why the venue refuses ``order`` (price off the tick grid, quantity off the lot grid or below
    the minimum, non-positive or non-finite values), or ``""`` if it is acceptable."""
    reason = _check_quantity(order.quantity, inst, enforce_min=True)
    if not reason and order.order_type != _MARKET:
        reason = _check_price(order.price, inst)
    return reason


@dataclass(slots=True)
class PaperOrder:
    """One order's state at the paper venue. Quantities in whole lots (``lots``, ``filled_lots``)."""

    venue_order_id: str
    exchange_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    price: float | None  # None for market orders
    quantity: float  # as reported: lots * lot_size once accepted, the request's value if rejected
    lots: int
    status: OrderStatus
    filled_lots: int = 0
    filled: float = 0.0  # filled_lots * lot_size
    notional: float = 0.0  # sum of fill price * fill quantity
    fee: float = 0.0  # cumulative, positive = cost
    error_msg: str = ""  # why the order was rejected or cancelled
    ts: int = 0  # ms of the last change
    reserved: float = 0.0  # what the order holds frozen: quote for a buy, base for a sell; swaps: margin
    reduce_only: bool = False  # swaps: accepted as reduce-only (in memory: not kept by the store)


class _Level:
    __slots__ = ("lots", "price")

    def __init__(self, price: float, lots: int) -> None:
        self.price = price
        self.lots = lots


class _Symbol:
    """Per-symbol state: the public book (as given, and a working copy our fills deplete) and our
    resting orders per side, insertion-ordered (= time priority)."""

    __slots__ = (
        "asks",
        "base",
        "bids",
        "buy_bound",
        "buys",
        "deriv",
        "eps",
        "inst",
        "lot",
        "quote",
        "sell_bound",
        "sells",
        "src_asks",
        "src_bids",
    )

    def __init__(self, inst: Instrument, deriv: ContractSpec | None = None) -> None:
        self.inst = inst
        self.lot = inst.lot_size
        self.eps = inst.tick_size * 1e-6
        self.deriv = deriv
        # A swap's orders of either side hold margin in its settlement currency
        self.quote = quote_currency(inst.symbol) if deriv is None else deriv.settle_currency
        self.base = base_currency(inst.symbol) if deriv is None else deriv.settle_currency
        self.src_bids: Sequence[Sequence[float]] = ()
        self.src_asks: Sequence[Sequence[float]] = ()
        self.bids: list[_Level] | None = None  # working copies, made on first use after set_book
        self.asks: list[_Level] | None = None
        self.buys: dict[str, PaperOrder] = {}
        self.sells: dict[str, PaperOrder] = {}
        # Bounds: no resting buy is above buy_bound, no resting sell below sell_bound (a cheap test for
        # "may anything cross?"; exact after tighten_bounds).
        self.buy_bound = -math.inf
        self.sell_bound = math.inf

    def levels(self, side: Side) -> list[_Level]:
        """The working copy of the book side that ``side`` orders trade against."""
        if side is _BUY:
            if self.asks is None:
                self.asks = self._copy(self.src_asks)
            return self.asks
        if self.bids is None:
            self.bids = self._copy(self.src_bids)
        return self.bids

    def _copy(self, src: Sequence[Sequence[float]]) -> list[_Level]:
        lot = self.lot
        return [_Level(float(lv[0]), int(lv[1] / lot + 1e-9)) for lv in src]

    def resting(self, side: Side) -> dict[str, PaperOrder]:
        return self.buys if side is _BUY else self.sells

    def rest(self, o: PaperOrder) -> None:
        assert o.price is not None
        if o.side is _BUY:
            self.buys[o.venue_order_id] = o
            self.buy_bound = max(self.buy_bound, o.price)
        else:
            self.sells[o.venue_order_id] = o
            self.sell_bound = min(self.sell_bound, o.price)

    def unrest(self, o: PaperOrder) -> None:
        # O(1): buy_bound/sell_bound stay as bounds (made exact again by the next crossing check)
        if o.side is _BUY:
            self.buys.pop(o.venue_order_id, None)
            if not self.buys:
                self.buy_bound = -math.inf
        else:
            self.sells.pop(o.venue_order_id, None)
            if not self.sells:
                self.sell_bound = math.inf

    def tighten_bounds(self) -> None:
        """Make buy_bound and sell_bound exact again."""
        self.buy_bound = max((o.price for o in self.buys.values() if o.price is not None), default=-math.inf)
        self.sell_bound = min((o.price for o in self.sells.values() if o.price is not None), default=math.inf)


class MatchingEngine:
    """Matches orders of one paper account against the synthetic market of its symbols.

    Every method returns the events it caused, in order (ACCEPTED, fills, terminal), for the caller to
    deliver. Unknown ids and refused requests give CANCEL_FAILED/AMEND_FAILED or REJECTED events, never
    exceptions. Closed orders stay queryable until ``max_closed`` newer ones have closed.
    """

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        *,
        maker_fee: float,
        taker_fee: float,
        max_closed: int = 10_000,  # its memory: about 0.6 kB an order (docs/operations.md, "Memory")
        balances: Mapping[str, float] | None = None,
        contracts: Mapping[str, ContractSpec] | None = None,
        price_limit_band: float = 0.0,
        warning_ratio: float = 0.0,
    ) -> None:
        """``contracts``: the symbols that are swaps, and their terms (the others are spot).
        ``price_limit_band``: a swap's limit prices must lie within this fraction of its mark (0: no
        limit), as OKX's price limits (51006). ``warning_ratio``: a position whose margin ratio falls
        below it gets one liquidation warning (0: none)."""
        self.price_limit_band = price_limit_band
        self.warning_ratio = warning_ratio
        self._warned: set[str] = set()  # swaps warned, until their margin ratio recovers
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self._reserve_fee = max(maker_fee, taker_fee)  # a buy holds its notional and the higher fee
        contracts = contracts or {}
        self._symbols = {sym: _Symbol(inst, contracts.get(sym)) for sym, inst in instruments.items()}
        self._derivs = {sym: DerivPosition(sym) for sym in instruments if sym in contracts}
        self._marks: dict[str, float] = {}
        self._orders: dict[str, PaperOrder] = {}
        self._closed: deque[str] = deque()
        self._max_closed = max_closed
        self._next_order_id = 1
        self._next_trade_id = 1
        self._position_lots: dict[str, int] = dict.fromkeys(instruments, 0)
        start = DEFAULT_PAPER_BALANCES if balances is None else balances
        self._start_balances = dict(start)
        self._account: dict[str, Balance] = {ccy: Balance(float(v)) for ccy, v in start.items()}
        for st in self._symbols.values():
            self._account.setdefault(st.quote, Balance())
            self._account.setdefault(st.base, Balance())

    # ------------------------------------------------------------------ state

    def next_trade_id(self) -> str:
        """A fresh trade id; fills and the simulation's public trades share this counter."""
        n = self._next_trade_id
        self._next_trade_id = n + 1
        return str(n)

    def positions(self) -> dict[str, float]:
        """Net position per symbol, + for bought: base units for spot, contracts for swaps."""
        return {sym: n * self._symbols[sym].lot for sym, n in self._position_lots.items()}

    def deriv_positions(self) -> dict[str, DerivPosition]:
        """The swaps' positions (live objects, not copies): average price, margin, PnL, fees, funding."""
        return self._derivs

    def deriv_state(self) -> dict[str, tuple[float, float, float, float, float, float]]:
        """Per swap: (quantity, avg price, margin, realised PnL, fees, funding), for the store."""
        return {
            sym: (p.quantity, p.avg_price, p.margin, p.realized_pnl, p.fees, p.funding)
            for sym, p in self._derivs.items()
        }

    def contracts(self) -> dict[str, ContractSpec]:
        """The swaps and their terms."""
        return {sym: st.deriv for sym, st in self._symbols.items() if st.deriv is not None}

    def marks(self) -> dict[str, float]:
        """The last mark price of each swap that has one."""
        return dict(self._marks)

    def balances(self) -> dict[str, float]:
        """Total per currency (available + frozen): the starting balances, plus what fills bought and
        sold, minus fees."""
        return totals(self._account)

    def account(self) -> dict[str, Balance]:
        """Available and frozen per currency."""
        return dict(self._account)

    def best_bid(self, symbol: str) -> float | None:
        """The best bid of the working book with size left, or None."""
        return self._best(self._symbols[symbol].levels(_SELL))

    def best_ask(self, symbol: str) -> float | None:
        """The best ask of the working book with size left, or None."""
        return self._best(self._symbols[symbol].levels(_BUY))

    def query(self, venue_order_id: str) -> OrderEvent | None:
        """The order's current state, or None if the engine never saw it (or has forgotten it)."""
        o = self._orders.get(venue_order_id)
        return None if o is None else self._event(o, o.ts, error_msg=o.error_msg)

    def open_orders(self) -> list[OrderEvent]:
        """The current state of every open order."""
        return [
            self._event(o, o.ts)
            for st in self._symbols.values()
            for side in (st.buys, st.sells)
            for o in side.values()
        ]

    # ------------------------------------------------------------------ persistence (venues/paper_store.py)

    def order(self, venue_order_id: str) -> PaperOrder | None:
        """The live state of one order (not a copy), or None if the engine does not know it."""
        return self._orders.get(venue_order_id)

    def account_state(self) -> tuple[dict[str, int], dict[str, float], int, int]:
        """(position lots per symbol, total balance per currency, next exchange order id, next trade id)."""
        return dict(self._position_lots), totals(self._account), self._next_order_id, self._next_trade_id

    def restore(
        self,
        orders: Sequence[PaperOrder],
        position_lots: Mapping[str, int],
        balances: Mapping[str, float] | None,
        next_order_id: int,
        next_trade_id: int,
        derivs: Mapping[str, DerivPosition] | None = None,
    ) -> None:
        """Load a saved account into a fresh engine: ``orders`` oldest first (open ones rest again in
        that order, freezing what they hold); ``balances``: the saved totals per currency (None: a new
        account, the starting balances); ids continue from the saved counters so that none repeats.
        ``derivs``: the swaps' positions (a swap's open orders hold margin for what they would open)."""
        for sym, pos in (derivs or {}).items():
            if sym in self._derivs:
                self._derivs[sym] = pos
                self._position_lots[sym] = round(pos.quantity / self._symbols[sym].lot)
        total = dict(self._start_balances if balances is None else balances)
        frozen: dict[str, float] = {}
        for o in orders:
            self._orders[o.venue_order_id] = o
            st = self._symbols.get(o.symbol)
            if _is_open(o.status) and st is not None and o.price is not None:
                st.rest(o)
                o.reserved = self._reservation(st, o, o.lots, o.price)
                ccy = st.quote if o.side is _BUY else st.base
                frozen[ccy] = frozen.get(ccy, 0.0) + o.reserved
            elif not _is_open(o.status):
                o.reserved = 0.0
                self._remember_closed(o)
            else:  # open, of a symbol no longer served: it cannot fill, but holds its funds until cancelled
                left = max(o.quantity - o.filled, 0.0)
                buy = o.side is _BUY
                o.reserved = buy_reservation(left * (o.price or 0.0), self._reserve_fee) if buy else left
                ccy = quote_currency(o.symbol) if buy else base_currency(o.symbol)
                frozen[ccy] = frozen.get(ccy, 0.0) + o.reserved
                log.warning("paper account: open order %s of %s, which venue.symbols does not serve, holds"
                            " %g %s until it is cancelled", o.venue_order_id, o.symbol, o.reserved, ccy)  # fmt: skip
        for ccy in set(total) | set(frozen) | set(self._account):
            f = frozen.get(ccy, 0.0)
            if f - 1e-9 * max(1.0, f) <= total.get(ccy, 0.0) < f:  # freeze()'s slack: they hold all there is
                f = total.get(ccy, 0.0)
            self._account[ccy] = Balance(total.get(ccy, 0.0) - f, f)
            if total.get(ccy, 0.0) < f - 1e-9 * max(1.0, f):  # open orders from before balances existed
                log.warning("paper account: open orders hold %g %s but the account has %g; cancel them or"
                            " start over with `seqtrade reset`", f, ccy, total.get(ccy, 0.0))  # fmt: skip
        for sym, lots in position_lots.items():
            if sym in self._position_lots and sym not in self._derivs:
                self._position_lots[sym] = lots
        self._next_order_id = max(self._next_order_id, next_order_id)
        self._next_trade_id = max(self._next_trade_id, next_trade_id)

    # ------------------------------------------------------------------ market

    def set_book(
        self, symbol: str, bids: Sequence[Sequence[float]], asks: Sequence[Sequence[float]], ts: int
    ) -> Sequence[OrderEvent]:
        """Replace the public book of ``symbol`` (``[[price, size], ...]``, best first; not mutated, may
        be shared) and fill the resting orders it crosses."""
        st = self._symbols[symbol]
        st.src_bids = bids
        st.src_asks = asks
        st.bids = None
        st.asks = None
        if not (st.buys and asks and st.buy_bound >= asks[0][0] - st.eps) and not (
            st.sells and bids and st.sell_bound <= bids[0][0] + st.eps
        ):
            return _NO_EVENTS
        events: list[OrderEvent] = []
        self._match_resting_on_book(st, _BUY, ts, events)
        self._match_resting_on_book(st, _SELL, ts, events)
        st.tighten_bounds()
        return events

    def on_trade(
        self, symbol: str, price: float, size: float, taker_side: Side, ts: int
    ) -> Sequence[OrderEvent]:
        """A public trade printed: fill the resting orders it prints through, up to its size.

        A buy is printed through by a trade below its price, or at its price with a selling taker
        (queue position is not modelled: our order is taken to be first at its level); sells mirror.
        """
        st = self._symbols[symbol]
        if not (
            (st.buys and st.buy_bound >= price - st.eps) or (st.sells and st.sell_bound <= price + st.eps)
        ):
            return _NO_EVENTS
        left = int(size / st.lot + 1e-9)
        taker = Side(taker_side)  # tolerate a plain "buy"/"sell"
        events: list[OrderEvent] = []
        for side in (_BUY, _SELL):
            sign = 1.0 if side is _BUY else -1.0
            at_price_ok = taker is not side
            for o in self._by_priority(st, side):
                if left <= 0:
                    break
                assert o.price is not None
                diff = sign * (o.price - price)  # > 0: the trade is better than our price
                if diff < -st.eps or (diff <= st.eps and not at_price_ok):
                    continue
                n = min(o.lots - o.filled_lots, left)
                left -= n
                self._fill(st, o, n, o.price, self.maker_fee, ts, events)
        st.tighten_bounds()
        return events

    # ------------------------------------------------------------------ orders

    def submit(self, order: VenueOrder, ts: int) -> list[OrderEvent]:
        """Accept (or reject) a new order and match it at once."""
        oid = order.venue_order_id
        existing = self._orders.get(oid)
        if existing is not None:
            log.warning("order %s submitted twice; repeating its state", oid)
            return [self._event(existing, ts, error_msg=existing.error_msg)]
        st = self._symbols.get(order.symbol)
        side, kind = order.side, order.order_type
        reason = ""
        if side is not _BUY and side is not _SELL or not isinstance(kind, OrderType):
            try:  # a plain string where an enum belongs
                side, kind = Side(side), OrderType(kind)
            except ValueError:
                side, kind = _BUY, _LIMIT  # placeholders: a rejected order's events carry neither
                reason = f"unknown side {order.side!r} or order type {order.order_type!r}"
        o = PaperOrder(  # positional, for speed: the fields in order, up to status
            oid,
            str(self._next_order_id),
            order.symbol,
            side,
            kind,
            None if kind is _MARKET else order.price,
            order.quantity,
            0,
            _ACCEPTED,
        )
        o.ts = ts
        self._next_order_id += 1
        self._orders[oid] = o
        if st is None:
            reason = f"unknown symbol {order.symbol!r}"
        if not reason and st is not None:
            reason = check_order(order, st.inst)
            if not reason and kind is _MARKET and not st.levels(side):
                reason = f"no market data for {order.symbol}"
            if not reason and kind is not _MARKET:
                reason = self._price_limit_refusal(st, side, order.price)
            if not reason and order.reduce_only and st.deriv is not None:
                reason = self._reduce_only_refusal(st, side, order.quantity)
                o.reduce_only = not reason
            elif not reason and (order.pos_side or order.reduce_only):
                reason = "pos_side and reduce_only apply to swaps in net mode only (code 51000)"
        if st is None or reason:
            return [self._close(o, _REJECTED, reason, ts)]
        o.lots = round(order.quantity / st.lot)
        o.quantity = o.lots * st.lot
        levels = st.levels(side)
        if kind is _POST_ONLY:
            assert o.price is not None
            best = self._best(levels)
            if best is not None and self._crosses(side, best, o.price, st.eps):
                return [self._close(o, _REJECTED, f"post_only order would cross the book at {best}", ts)]
        if kind is _MARKET and st.deriv is not None:
            need = self._margin_need(st, side, o.lots, self._sweep_worst(st, levels, o.lots))
        elif kind is _MARKET and side is _BUY:
            need = buy_reservation(self._sweep_cost(st, levels, o.lots), self._reserve_fee)
        else:
            need = self._reservation(st, o, o.lots, o.price)
        refusal = self._freeze(st.quote if side is _BUY else st.base, need, o)
        if refusal:
            return [self._close(o, _REJECTED, refusal, ts)]
        events = [self._event(o, ts)]
        if kind is _MARKET:
            self._take(st, o, levels, None, ts, events)
            if _is_open(o.status):
                msg = (
                    f"market order beyond the visible book: {o.filled:g} filled,"
                    f" the remaining {(o.lots - o.filled_lots) * st.lot:g} cancelled"
                )
                events.append(self._close(o, _CANCELLED, msg, ts))
        elif kind is _LIMIT or kind is _POST_ONLY:
            if kind is _LIMIT:
                self._take(st, o, levels, o.price, ts, events)
            if _is_open(o.status):
                st.rest(o)
        elif kind is _IOC:
            self._take(st, o, levels, o.price, ts, events)
            if _is_open(o.status):
                events.append(self._close(o, _CANCELLED, "IOC remainder cancelled", ts))
        else:  # FOK
            assert o.price is not None
            available = sum(lv.lots for lv in levels if self._crosses(o.side, lv.price, o.price, st.eps))
            if available >= o.lots:
                self._take(st, o, levels, o.price, ts, events)
            else:
                msg = f"FOK not fillable: {available * st.lot:g} available at {o.price} or better"
                events.append(self._close(o, _CANCELLED, msg, ts))
        return events

    def cancel(self, venue_order_id: str, ts: int, *, reason: str = "") -> OrderEvent:
        """Cancel an open order; a CANCEL_FAILED event if it is not open or unknown."""
        o = self._orders.get(venue_order_id)
        if o is None:
            return OrderEvent(
                venue_order_id,
                _REJECTED,
                EventKind.CANCEL_FAILED,
                error_msg="unknown order",
                ts=ts,
            )
        if not _is_open(o.status):
            return self._event(o, ts, kind=EventKind.CANCEL_FAILED, error_msg=f"order is already {o.status}")
        st = self._symbols.get(o.symbol)
        if st is not None:  # None: an order restored for a symbol no longer served
            st.unrest(o)
        return self._close(o, _CANCELLED, reason, ts)

    def cancel_all(self, ts: int, *, reason: str = "") -> list[OrderEvent]:
        """Cancel every open order."""
        ids = [oid for st in self._symbols.values() for side in (st.buys, st.sells) for oid in side]
        return [self.cancel(oid, ts, reason=reason) for oid in ids]

    def amend(
        self, venue_order_id: str, price: float | None, quantity: float | None, ts: int
    ) -> list[OrderEvent]:
        """Change an open order's price and/or total quantity.

        A quantity at or below what has filled closes the order as FILLED; a new price that crosses the
        book fills now as taker (a post_only order refuses such an amend). Refusals are AMEND_FAILED
        events carrying the order's unchanged state.
        """
        o = self._orders.get(venue_order_id)
        if o is None:
            return [
                OrderEvent(
                    venue_order_id,
                    _REJECTED,
                    EventKind.AMEND_FAILED,
                    error_msg="unknown order",
                    ts=ts,
                )
            ]
        st = self._symbols.get(o.symbol)
        if st is None:
            return [self._event(o, ts, kind=EventKind.AMEND_FAILED, error_msg=f"{o.symbol} is not served")]
        reason = self._amend_refusal(o, st, price, quantity)
        if reason:
            return [self._event(o, ts, kind=EventKind.AMEND_FAILED, error_msg=reason)]
        new_lots = o.lots if quantity is None else round(quantity / st.lot)
        if new_lots <= o.filled_lots:
            st.unrest(o)
            o.lots = o.filled_lots
            o.quantity = o.lots * st.lot
            return [self._close(o, _FILLED, "", ts)]
        refusal = self._refreeze(st, o, new_lots, o.price if price is None else price)
        if refusal:
            return [self._event(o, ts, kind=EventKind.AMEND_FAILED, error_msg=refusal)]
        requeue = (price is not None and price != o.price) or new_lots > o.lots  # loses time priority
        if requeue:
            st.unrest(o)
        if price is not None:
            o.price = price
        o.lots = new_lots
        o.quantity = new_lots * st.lot
        o.ts = ts
        events = [self._event(o, ts)]
        if o.order_type is _LIMIT:
            self._take(st, o, st.levels(o.side), o.price, ts, events)
        if requeue and _is_open(o.status):
            st.rest(o)
        return events

    # ------------------------------------------------------------------ internals

    def _amend_refusal(self, o: PaperOrder, st: _Symbol, price: float | None, quantity: float | None) -> str:
        if not _is_open(o.status):
            return f"order is already {o.status}"
        if price is None and quantity is None:
            return "nothing to amend"
        if price is not None:
            if reason := _check_price(price, st.inst) or self._price_limit_refusal(st, o.side, price):
                return reason
            best = self._best(st.levels(o.side))
            if o.order_type is _POST_ONLY and best is not None and self._crosses(o.side, best, price, st.eps):
                return f"post_only order would cross the book at {best}"
        if quantity is not None:
            return _check_quantity(quantity, st.inst, enforce_min=False)
        return ""

    # ------------------------------------------------------------------ the account

    def _reservation(self, st: _Symbol, o: PaperOrder, lots: int, price: float | None) -> float:
        """What ``o`` must hold frozen for ``lots`` total at ``price``: its unfilled part (quote with the
        taker fee for a buy, base coins for a sell; a swap's margin for what it opens)."""
        if st.deriv is not None:
            return self._margin_need(st, o.side, lots - o.filled_lots, price or 0.0)
        left = (lots - o.filled_lots) * st.lot
        if o.side is _SELL:
            return left
        return buy_reservation(left * (price or 0.0), self._reserve_fee)

    def _sweep_cost(self, st: _Symbol, levels: list[_Level], lots: int) -> float:
        """The notional of taking ``lots`` from ``levels`` (as far as they go)."""
        cost = 0.0
        for lv in levels:
            if lots <= 0:
                break
            n = min(lots, max(lv.lots, 0))
            cost += n * st.lot * lv.price
            lots -= n
        return cost

    # ------------------------------------------------------------------ swaps: margin, funding, liquidation

    def _reduce_only_refusal(self, st: _Symbol, side: Side, quantity: float) -> str:
        """Why a reduce-only order of ``quantity`` on ``side`` is refused, as OKX refuses it in net
        mode (no position; the same direction; more than the position with the reduce-only orders
        already resting on that side), or ``""``."""
        pos = self._position_lots[st.inst.symbol]
        if not pos:
            return "reduce-only: no position in this direction to reduce or close (code 51169)"
        if (pos > 0) == (side is _BUY):
            return "reduce-only: the order is in the same direction as the position (code 51170)"
        resting = sum(o.lots - o.filled_lots for o in st.resting(side).values() if o.reduce_only)
        lots = round(quantity / st.lot)
        if lots + resting > abs(pos):
            return (
                f"reduce-only: {quantity:g} with {resting * st.lot:g} reduce-only already resting exceeds"
                f" the position of {abs(pos) * st.lot:g}"
            )
        return ""

    def _margin_need(self, st: _Symbol, side: Side, lots: int, price: float) -> float:
        """The initial margin and fee of the part of ``lots`` on ``side`` that would open exposure
        against the current net position (closing needs no margin)."""
        spec = st.deriv
        assert spec is not None
        pos = self._position_lots[st.inst.symbol]
        if pos and (pos > 0) != (side is _BUY):
            lots = max(0, lots - abs(pos))
        if lots <= 0 or price <= 0:
            return 0.0
        qty = lots * st.lot
        return initial_margin(spec, qty, price) + contract_fee(spec, qty, price, max(self._reserve_fee, 0.0))

    def _sweep_worst(self, st: _Symbol, levels: list[_Level], lots: int) -> float:
        """The price of a market order's sweep that needs the most margin: its deepest level (linear)
        or its best (inverse, where a contract is worth more coins at a lower price)."""
        prices = []
        for lv in levels:
            if lots <= 0:
                break
            if lv.lots > 0:
                prices.append(lv.price)
                lots -= lv.lots
        if not prices:
            return 0.0
        assert st.deriv is not None
        return min(prices) if st.deriv.inverse else max(prices)

    def free_margin(self, currency: str) -> float:
        """What new swap orders settled in ``currency`` may still freeze: the available cash, less the
        initial margin of the cross positions at mark and their unrealised losses (not their gains)."""
        free = self._account.get(currency, Balance()).available
        upl = used = 0.0
        for sym, pos in self._derivs.items():
            spec = self._symbols[sym].deriv
            assert spec is not None
            if pos.quantity and spec.settle_currency == currency and spec.margin_mode == "cross":
                mark = self._marks.get(sym, pos.avg_price)
                upl += unrealised_pnl(spec, pos, mark)
                used += initial_margin(spec, pos.quantity, mark)
        return free + min(upl, 0.0) - used

    def set_mark(self, symbol: str, mark: float) -> None:
        """The swap's mark price (what unrealised PnL, margin, funding and liquidation use)."""
        self._marks[symbol] = mark

    def price_limits(self, symbol: str) -> tuple[float, float] | None:
        """(highest buy price, lowest sell price) of a swap: its mark +- ``price_limit_band``, on the
        tick; None without a band or a mark."""
        mark = self._marks.get(symbol)
        if not self.price_limit_band or mark is None:
            return None
        tick = self._symbols[symbol].inst.tick_size
        up = math.floor(mark * (1 + self.price_limit_band) / tick + 1e-9) * tick
        down = math.ceil(mark * (1 - self.price_limit_band) / tick - 1e-9) * tick
        return round(up, 9), round(down, 9)

    def _price_limit_refusal(self, st: _Symbol, side: Side, price: float | None) -> str:
        limits = None if st.deriv is None or price is None else self.price_limits(st.inst.symbol)
        if limits is None or price is None:
            return ""
        up, down = limits
        if (side is _BUY and price > up + st.eps) or (side is _SELL and price < down - st.eps):
            return (
                f"Order price is not within the price limit (max buy price: {up:g}, min sell price: {down:g})"
                " (code 51006)"
            )
        return ""

    def settle_funding(self, funding_ms: int, rates: Mapping[str, float], ts: int) -> list[AccountChange]:
        """Pay or receive funding on every open swap position at its mark price and ``rates[symbol]``;
        one :class:`AccountChange` each, id ``funding-<symbol>-<funding_ms>``."""
        out = []
        for sym, pos in self._derivs.items():
            spec = self._symbols[sym].deriv
            mark = self._marks.get(sym)
            if spec is None or not pos.quantity or mark is None or sym not in rates:
                continue
            amount = funding_payment(spec, pos.quantity, mark, rates[sym])
            ccy = spec.settle_currency
            b = self._account.get(ccy, Balance())
            self._account[ccy] = Balance(b.available + amount, b.frozen)
            pos.funding += amount
            out.append(
                AccountChange("funding", sym, f"funding-{sym}-{funding_ms}", 0.0, mark, amount, ccy, ts)
            )
        return out

    def liquidations(self, ts: int) -> tuple[list[OrderEvent], list[AccountChange]]:
        """Liquidate every swap position whose margin has run out (equity below the maintenance
        margin, :func:`~seqtrade.venues.paper_derivs.to_liquidate`) at its mark price: first its open
        orders are cancelled (releasing what they hold), then it is closed. The order events and one
        :class:`AccountChange` per position (id ``liquidation-<trade id>``), then the liquidation
        warnings of the positions left (``warning_ratio``)."""
        specs = self.contracts()
        if not any(p.quantity for p in self._derivs.values()):
            return [], []
        syms = to_liquidate(specs, self._derivs, self._marks, totals(self._account))
        events: list[OrderEvent] = []
        changes: list[AccountChange] = []
        for sym in syms:
            st = self._symbols[sym]
            for oid in [*st.buys, *st.sells]:
                events.append(self.cancel(oid, ts, reason="cancelled: the position was liquidated"))
        for sym in syms:
            spec, pos, mark = specs[sym], self._derivs[sym], self._marks[sym]
            ccy = spec.settle_currency
            b = self._account.get(ccy, Balance())
            liq = liquidate(spec, pos, mark, max(b.available, 0.0))
            self._account[ccy] = Balance(b.available + liq.cash_change, b.frozen)
            self._position_lots[sym] = 0
            eid = f"liquidation-{self.next_trade_id()}"
            changes.append(
                AccountChange(
                    "liquidation", sym, eid, liq.quantity, mark, liq.realized_pnl - liq.fee, ccy, ts
                )
            )
        if self.warning_ratio:
            changes += self._warnings(specs, ts)
        return events, changes

    def _warnings(self, specs: Mapping[str, ContractSpec], ts: int) -> list[AccountChange]:
        """One ``liquidation_warning`` per position whose margin ratio has fallen below
        ``warning_ratio``; again only once it has recovered above it."""
        out = []
        cash = totals(self._account)
        for sym, pos in self._derivs.items():
            mark = self._marks.get(sym)
            if not pos.quantity or mark is None:
                self._warned.discard(sym)
                continue
            if margin_ratio(specs, self._derivs, self._marks, cash, sym) >= self.warning_ratio:
                self._warned.discard(sym)
            elif sym not in self._warned:
                self._warned.add(sym)
                eid = f"liquidation_warning-{self.next_trade_id()}"
                out.append(
                    AccountChange(
                        "liquidation_warning", sym, eid, 0.0, mark, 0.0, specs[sym].settle_currency, ts
                    )
                )
        return out

    def _freeze(self, currency: str, amount: float, o: PaperOrder) -> str:
        st = self._symbols.get(o.symbol)
        if st is not None and st.deriv is not None:
            free = self.free_margin(currency)
            if amount > free + _REL_TOL * max(1.0, amount):
                return (
                    f"insufficient {currency} margin (code {INSUFFICIENT_BALANCE}): needed {amount:.8g},"
                    f" available {max(free, 0.0):.8g}"
                )
            b = self._account.get(currency, Balance())
            self._account[currency] = Balance(b.available - amount, b.frozen + amount)
            o.reserved += amount
            return ""
        changed = freeze(self._account, currency, amount)
        if isinstance(changed, str):
            return changed
        before = self._account.get(currency, Balance()).frozen
        self._account.update(changed)
        o.reserved += changed[currency].frozen - before
        return ""

    def _release(self, st: _Symbol | None, o: PaperOrder, amount: float) -> None:
        amount = min(amount, o.reserved)
        if amount <= 0:
            return
        if st is None:  # an order restored for a symbol no longer served
            ccy = quote_currency(o.symbol) if o.side is _BUY else base_currency(o.symbol)
        else:
            ccy = st.quote if o.side is _BUY else st.base
        self._account.update(release(self._account, ccy, amount))
        o.reserved -= amount

    def _refreeze(self, st: _Symbol, o: PaperOrder, lots: int, price: float | None) -> str:
        """Adjust ``o``'s reservation to ``lots`` at ``price`` (an amend), or why the account cannot."""
        need = self._reservation(st, o, lots, price)
        if need > o.reserved:
            return self._freeze(st.quote if o.side is _BUY else st.base, need - o.reserved, o)
        self._release(st, o, o.reserved - need)
        return ""

    # ------------------------------------------------------------------ matching helpers

    @staticmethod
    def _crosses(side: Side, level_price: float, limit: float, eps: float) -> bool:
        """Whether a ``side`` order at ``limit`` trades with a book level at ``level_price``."""
        return level_price <= limit + eps if side is _BUY else level_price >= limit - eps

    @staticmethod
    def _best(levels: list[_Level]) -> float | None:
        for lv in levels:
            if lv.lots > 0:
                return lv.price
        return None

    @staticmethod
    def _by_priority(st: _Symbol, side: Side) -> list[PaperOrder]:
        # sorted() is stable, so equal prices keep insertion (= time) order
        if side is _BUY:
            return sorted(st.buys.values(), key=lambda o: -(o.price or 0.0))
        return sorted(st.sells.values(), key=lambda o: o.price or 0.0)

    def _take(
        self,
        st: _Symbol,
        o: PaperOrder,
        levels: list[_Level],
        limit: float | None,
        ts: int,
        events: list[OrderEvent],
    ) -> None:
        """Fill ``o`` as taker against ``levels`` up to ``limit`` (None: a market order), level by
        level, each a fill at the level's price. Whatever the levels cannot fill is left to the caller."""
        left = o.lots - o.filled_lots
        for lv in levels:
            if left <= 0:
                break
            if limit is not None and not self._crosses(o.side, lv.price, limit, st.eps):
                break
            if lv.lots <= 0:
                continue
            n = min(left, lv.lots)
            lv.lots -= n
            left -= n
            self._fill(st, o, n, lv.price, self.taker_fee, ts, events)

    def _match_resting_on_book(self, st: _Symbol, side: Side, ts: int, events: list[OrderEvent]) -> None:
        if not st.resting(side):
            return
        levels = st.levels(side)
        for o in self._by_priority(st, side):
            assert o.price is not None
            left = o.lots - o.filled_lots
            got = 0
            for lv in levels:
                if got >= left or not self._crosses(side, lv.price, o.price, st.eps):
                    break
                n = min(left - got, lv.lots)
                if n > 0:
                    lv.lots -= n
                    got += n
            if got:
                self._fill(st, o, got, o.price, self.maker_fee, ts, events)

    def _fill(
        self,
        st: _Symbol,
        o: PaperOrder,
        lots: int,
        price: float,
        fee_rate: float,
        ts: int,
        events: list[OrderEvent],
    ) -> None:
        if st.deriv is not None:
            self._fill_contracts(st, st.deriv, o, lots, price, fee_rate)
        else:
            self._fill_spot(st, o, lots, price, fee_rate)
        if o.filled_lots >= o.lots:
            o.status = _FILLED
            st.unrest(o)
            self._remember_closed(o)
        else:
            o.status = _PARTIALLY_FILLED
        o.ts = ts
        qty = lots * st.lot
        events.append(self._event(o, ts, last_qty=qty, last_price=price, trade_id=self.next_trade_id()))

    def _fill_contracts(
        self, st: _Symbol, spec: ContractSpec, o: PaperOrder, lots: int, price: float, fee_rate: float
    ) -> None:
        """A swap's fill: the net position and the cash of its settlement currency (the order gives up
        its reservation in proportion, all of it on its last fill)."""
        qty = lots * st.lot
        left = o.lots - o.filled_lots
        unfreeze = o.reserved if lots >= left else o.reserved * lots / left
        o.reserved -= unfreeze
        o.filled_lots += lots
        o.filled = o.filled_lots * st.lot
        o.notional += qty * price
        buy = o.side is _BUY
        f = apply_fill(spec, self._derivs[o.symbol], buy=buy, quantity=qty, price=price, fee_rate=fee_rate)
        o.fee += f.fee
        ccy = spec.settle_currency
        b = self._account.get(ccy, Balance())
        frozen = b.frozen - unfreeze
        self._account[ccy] = Balance(b.available + unfreeze + f.cash_change, 0.0 if frozen < 1e-9 else frozen)
        self._position_lots[o.symbol] += lots if buy else -lots

    def _fill_spot(self, st: _Symbol, o: PaperOrder, lots: int, price: float, fee_rate: float) -> None:
        qty = lots * st.lot
        notional = qty * price
        fee = notional * fee_rate
        o.filled_lots += lots
        o.filled = o.filled_lots * st.lot
        o.notional += notional
        o.fee += fee
        buy = o.side is _BUY
        if o.filled_lots >= o.lots:
            unfreeze = o.reserved  # the last fill: whatever the order still holds
        elif not buy:
            unfreeze = qty
        elif o.price is None:  # a market buy holds the cost of its sweep
            unfreeze = buy_reservation(notional, self._reserve_fee)
        else:
            unfreeze = buy_reservation(qty * o.price, self._reserve_fee)
        unfreeze = min(unfreeze, o.reserved)
        o.reserved -= unfreeze
        self._account.update(
            settle_fill(
                self._account,
                st.base,
                st.quote,
                buy=buy,
                quantity=qty,
                notional=notional,
                fee=fee,
                unfreeze=unfreeze,
                order_amount=buy_reservation(o.notional + o.quantity * (o.price or 0.0), self._reserve_fee)
                if buy
                else o.quantity,
            )
        )
        self._position_lots[o.symbol] += lots if buy else -lots

    def _close(self, o: PaperOrder, status: OrderStatus, reason: str, ts: int) -> OrderEvent:
        if o.reserved:
            self._release(self._symbols.get(o.symbol), o, o.reserved)
        o.status = status
        o.error_msg = reason
        o.ts = ts
        self._remember_closed(o)
        return self._event(o, ts, error_msg=reason)

    def _remember_closed(self, o: PaperOrder) -> None:
        self._closed.append(o.venue_order_id)
        if len(self._closed) > self._max_closed:
            self._orders.pop(self._closed.popleft(), None)

    def _event(
        self,
        o: PaperOrder,
        ts: int,
        *,
        kind: EventKind = _UPDATE,
        last_qty: float = 0.0,
        last_price: float = 0.0,
        trade_id: str = "",
        error_msg: str = "",
    ) -> OrderEvent:
        filled = o.filled
        # Positional: twice as fast as keywords on this hot path. The order of OrderEvent's fields is
        # pinned by a test.
        return OrderEvent(
            o.venue_order_id,
            o.status,
            kind,
            o.exchange_order_id,
            o.price,
            o.quantity,
            filled,
            o.notional / filled if filled else 0.0,
            last_qty,
            last_price,
            o.fee,
            trade_id,
            error_msg,
            ts,
        )
