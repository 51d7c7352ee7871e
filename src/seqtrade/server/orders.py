"""Order book-keeping: the server's record of every order, and the pure rules it applies.

No I/O: the gateway owns the sockets, the journal and the venue; this module turns requests and venue
events into records and reports. Every function here is synchronous, so the engine can call it
between two awaits and nobody sees a half-updated record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from ..ids import base36
from ..models import OPEN_STATUSES, OrderReport, OrderStatus, OrderType, Side
from ..venues.base import EventKind, Instrument, OrderEvent

_SNAP = Decimal("1e-9")

__all__ = ["OrderRecord", "IdGenerator", "round_price", "round_quantity", "apply_event", "report_for"]


class IdGenerator:
    """Venue order ids: 1-32 letters and digits, never repeated (also across restarts).

    A session prefix from the start time in milliseconds (base 36) plus a counter; two servers cannot
    share a run directory (lock), and a restart cannot happen within the same millisecond as its start.
    ``start_ms`` is the server's clock at its start (``serve`` passes it: a backtest's virtual clock
    reads 0 then, so its ids are ``s0x1``, ``s0x2``, ... in every run); None: the wall clock's.
    """

    def __init__(self, start_ms: int | None = None) -> None:
        self.prefix = "s" + base36(start_ms if start_ms is not None else time.time_ns() // 1_000_000)
        self.counter = 0

    def next(self) -> str:
        self.counter += 1
        return f"{self.prefix}x{base36(self.counter)}"


@dataclass(slots=True)
class OrderRecord:
    venue_order_id: str
    strategy_id: str
    client_order_id: str
    symbol: str
    side: str
    order_type: str
    price: float | None
    quantity: float
    created_ms: int
    status: OrderStatus | None = None  # None: sent, nothing heard yet
    exchange_order_id: str = ""
    filled_quantity: float = 0.0
    avg_price: float = 0.0
    fee: float = 0.0
    last_report: OrderReport | None = None
    trade_ids: set[str] = field(default_factory=set)
    retiring: bool = False  # closed, and queued to leave memory (the journal keeps it)
    # Refusals of a cancel/amend that came before the venue acknowledged the order: (why, ts), told
    # right after its first report (accepted or rejected), never before it. At most MAX_HELD.
    held: list[tuple[str, int]] = field(default_factory=list)
    # Swaps and futures: sent reduce-only (net mode) or closing a leg (long/short mode). Journaled with
    # the order, so that the account-level reduce-only judgment counts it after a restart too.
    closing: bool = False

    @property
    def is_open(self) -> bool:
        """Open or in flight: may still fill."""
        return self.status is None or self.status in OPEN_STATUSES


def _quotient(value: float, step: float) -> Decimal:
    """value / step, exactly (from the floats' shortest reprs), snapped to a whole number of steps
    when it is within 1e-9 of one (so 0.1 + 0.2 on a 0.1 tick is 3 steps, not 3.0000000000000004)."""
    q = Decimal(repr(value)) / Decimal(repr(step))
    r = q.to_integral_value(ROUND_HALF_EVEN)
    return r if abs(q - r) <= _SNAP else q


def _on_grid(steps: Decimal, step: float) -> float:
    return float(steps * Decimal(repr(step)))


def round_price(price: float, inst: Instrument, side: Side) -> float:
    """Round to the tick, never to a worse price for us: buys down, sells up."""
    key = (price, inst.tick_size, side is Side.BUY)
    got = _ROUNDED.get(key)
    if got is None:
        got = _round_price(price, inst.tick_size, side)
        _remember(key, got)
    return got


def round_quantity(quantity: float, inst: Instrument) -> float:
    """Round down to the lot (never more than asked for)."""
    key = (quantity, inst.lot_size, None)
    got = _ROUNDED.get(key)
    if got is None:
        got = _round_quantity(quantity, inst.lot_size)
        _remember(key, got)
    return got


def _round_price(price: float, tick: float, side: Side) -> float:
    steps = _quotient(price, tick).to_integral_value(ROUND_FLOOR if side is Side.BUY else ROUND_CEILING)
    return _on_grid(steps, tick)


def _round_quantity(quantity: float, lot: float) -> float:
    return _on_grid(_quotient(quantity, lot).to_integral_value(ROUND_FLOOR), lot)


# What the two functions above answered lately, by (value, step, rounding): a strategy sends the same
# sizes and prices again and again, and the exact rounding (``Decimal``) costs a few µs where a dict
# lookup costs a tenth of one. The answer is the exact rounding's, computed once for that key; a zero
# is never remembered (0.0 and -0.0 are one key and two answers). Bounded: emptied when full.
_ROUNDED: dict[tuple[float, float, bool | None], float] = {}
_ROUNDED_MAX = 4096


def _remember(key: tuple[float, float, bool | None], value: float) -> None:
    if key[0] == 0.0 or key[0] != key[0]:  # a zero (two signs, one key) or a NaN: never remembered
        return
    if len(_ROUNDED) >= _ROUNDED_MAX:
        _ROUNDED.clear()
    _ROUNDED[key] = value


def report_for(
    rec: OrderRecord,
    status: OrderStatus,
    *,
    last_fill_quantity: float = 0.0,
    last_fill_price: float = 0.0,
    error_msg: str = "",
    timestamp: int = 0,
) -> OrderReport:
    """A report (seq still 0) carrying the record's current state; ``timestamp`` (epoch ms) is the
    caller's time for it (the server's callers always give one; 0: the wall clock's now)."""
    return OrderReport(
        seq=0,
        client_order_id=rec.client_order_id,
        exchange_order_id=rec.exchange_order_id,
        strategy_id=rec.strategy_id,
        symbol=rec.symbol,
        side=rec.side,
        order_type=rec.order_type,
        price=rec.price if rec.price is not None else 0.0,
        quantity=rec.quantity,
        status=status,
        filled_quantity=rec.filled_quantity,
        filled_price=rec.avg_price,
        last_fill_quantity=last_fill_quantity,
        last_fill_price=last_fill_price,
        fee=rec.fee,
        error_msg=error_msg,
        timestamp=timestamp or time.time_ns() // 1_000_000,
    )


_EPS = 1e-12


def apply_event(rec: OrderRecord, ev: OrderEvent) -> OrderReport | None:
    """Apply a venue event to a record; the report to send, or None if the event changes nothing.

    Events carry the order's full state, so a duplicate, a late or an out-of-order event is ignored:
    fills only move forward, a terminal order stays terminal, a trade id is applied once. Fills missed
    while disconnected (reconciliation) arrive as one jump of the cumulative quantity; the report then
    carries the jump as its last fill, at the price that makes the average come out right.
    """
    if ev.kind is not EventKind.UPDATE:
        # A refused cancel or amend: the order is as it was; say why.
        status = rec.status if rec.status is not None else OrderStatus.ACCEPTED
        if rec.status is None and ev.status is OrderStatus.REJECTED:
            status = OrderStatus.REJECTED
        return report_for(rec, status, error_msg=ev.error_msg or f"{ev.kind} by the venue", timestamp=ev.ts)
    if rec.status is not None and rec.status not in OPEN_STATUSES:
        return None  # terminal already
    if ev.trade_id and ev.trade_id in rec.trade_ids:
        return None  # this fill was applied
    if ev.filled_quantity < rec.filled_quantity - _EPS:
        return None  # stale: older than what we have
    delta = ev.filled_quantity - rec.filled_quantity
    changed = (
        delta > _EPS
        or ev.status != rec.status
        or (ev.price is not None and ev.price != rec.price)
        or (ev.quantity is not None and ev.quantity != rec.quantity)
    )
    if not changed:
        return None
    last_qty = last_px = 0.0
    if delta > _EPS:
        if abs(delta - ev.last_fill_quantity) <= 1e-9 * max(1.0, delta) and ev.last_fill_price > 0:
            last_qty, last_px = ev.last_fill_quantity, ev.last_fill_price
        else:
            last_qty = delta
            last_px = (ev.avg_price * ev.filled_quantity - rec.avg_price * rec.filled_quantity) / delta
        if ev.trade_id:
            rec.trade_ids.add(ev.trade_id)
    rec.filled_quantity = max(rec.filled_quantity, ev.filled_quantity)
    if ev.filled_quantity > 0:
        rec.avg_price = ev.avg_price
    if delta > _EPS or ev.fee > rec.fee:
        # The venue's cumulative fee. A fill may lower it (a maker rebate is a negative cost); without
        # a fill it only grows, so an event that leaves the fee out cannot erase what was charged.
        rec.fee = ev.fee
    if ev.exchange_order_id:
        rec.exchange_order_id = ev.exchange_order_id
    if ev.price is not None and rec.order_type != OrderType.MARKET:
        rec.price = ev.price
    if ev.quantity is not None:
        rec.quantity = ev.quantity
    status = ev.status
    if status is OrderStatus.ACCEPTED and rec.filled_quantity > _EPS:
        status = OrderStatus.PARTIALLY_FILLED
    rec.status = status
    return report_for(
        rec,
        status,
        last_fill_quantity=last_qty,
        last_fill_price=last_px,
        error_msg=ev.error_msg,
        timestamp=ev.ts,
    )
