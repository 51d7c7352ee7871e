"""The venue side of a backtest: orders the server sends, filled by the fill model against a recording.

Pure: no I/O, no clock, no trio. :class:`SimExchange` speaks the venue contract's language
(:class:`~seqtrade.venues.base.VenueOrder` in, :class:`~seqtrade.venues.base.OrderEvent` out, every
event carrying the order's full cumulative state, as :mod:`seqtrade.venues.base` requires) and
delegates every decision to :class:`~seqtrade.fill_model.FillModel` (queue position, the book walk,
latency, fees, funding). The caller (a replay venue) passes the recording's market data in time order
(:meth:`SimExchange.on_market`) and the time each order or cancel was sent (the recording's time, in
ns), and hands the returned events to the server.

What it keeps for the results: every fill as a :class:`~seqtrade.backtest_results.FillRecord` (the
``strategy`` field is the venue order id here: the venue never knows strategies; the caller maps it)
and every funding payment.

Funding (swaps): the recorded ``funding`` messages give each swap's rate and its next settlement time,
the recorded ``mark`` messages its mark price. When the recording's time (the receive time ``ns`` of
a message) reaches a settlement time, the position held then pays or receives at the last recorded
rate for that time and the last recorded mark (:meth:`~seqtrade.fill_model.FillModel.on_funding`), once
per symbol and time; each payment is also an account event (:attr:`SimExchange.account_events`, id
``funding-<symbol>-<time ms>``, as the paper venue names them) for the caller to hand to the server.

Amends go to the fill model like cancels (one latency later; its queue rule for them in
:mod:`seqtrade.fill_model`); an amend it refuses comes back as an ``amend_failed`` event with the order
as it was.
"""

from __future__ import annotations

from collections.abc import Mapping

from .backtest_results import FillRecord, FundingRecord
from .fill_model import Contract, Fees, Fill, FillModel, Funding, Latency, SimOrder, Status
from .fill_model import Event as ModelEvent
from .models import AccountEventKind, Book, FundingRate, MarkPrice, OrderStatus, Trade
from .venues.base import EventKind, OrderEvent, VenueAccountEvent, VenueOrder

__all__ = ["SimExchange"]

_FAILED = {"cancel_failed": EventKind.CANCEL_FAILED, "amend_failed": EventKind.AMEND_FAILED}
_STATUS = {
    "accepted": OrderStatus.ACCEPTED,
    "filled": OrderStatus.FILLED,
    "cancelled": OrderStatus.CANCELLED,
    "rejected": OrderStatus.REJECTED,
}


class SimExchange:
    """Simulated orders against a recording (see the module docstring)."""

    def __init__(self, fees: Fees | None = None, latency: Latency | None = None, *, queue: str = "book",
                 contracts: Mapping[str, Contract] | None = None) -> None:  # fmt: skip
        self.model = FillModel(fees, latency, queue=queue, contracts=contracts)
        self.fills: list[FillRecord] = []
        self.funding: list[FundingRecord] = []
        self.account_events: list[VenueAccountEvent] = []  # funding payments not yet taken by the caller
        self._rates: dict[str, tuple[int, float]] = {}  # symbol -> (next settlement ms, its rate)
        self._marks: dict[str, float] = {}
        self._settled: dict[str, int] = {}  # symbol -> the last settlement time paid (ms)
        self._fill_no = 0
        # per order: (filled, notional, fee) as of the events handed out so far (the model's order is
        # already at its state after the whole step; each event must carry the state at its own time)
        self._cum: dict[str, tuple[float, float, float]] = {}
        self._xids: dict[str, str] = {}  # venue order id -> the simulated exchange's order id

    # ------------------------------------------------------------------ orders

    def submit(self, order: VenueOrder, now_ns: int) -> list[OrderEvent]:
        """``order`` sent at ``now_ns``: nothing yet (it arrives one latency later), or a rejection
        of what the model cannot take (an id it has seen: an order is never placed twice)."""
        if order.venue_order_id in self.model.orders:
            return [self._reject(order.venue_order_id, now_ns, "backtest: duplicate venue order id")]
        sim = SimOrder(order.venue_order_id, order.symbol, str(order.side), str(order.order_type),
                       order.price, order.quantity)  # fmt: skip
        self.model.submit(sim, now_ns)
        self._xids[order.venue_order_id] = f"sim{len(self._xids) + 1}"  # by submission: the same every run
        return []

    def cancel(self, venue_order_id: str, now_ns: int) -> list[OrderEvent]:
        """A cancel sent at ``now_ns``; an order the model never saw fails at once."""
        if venue_order_id not in self.model.orders:
            return [OrderEvent(venue_order_id, OrderStatus.REJECTED, EventKind.CANCEL_FAILED,
                               error_msg="unknown order", ts=now_ns // 1_000_000)]  # fmt: skip
        self.model.cancel(venue_order_id, now_ns)
        return []

    def amend(self, venue_order_id: str, price: float | None, quantity: float | None,
              now_ns: int) -> list[OrderEvent]:  # fmt: skip
        """An amend sent at ``now_ns`` (``None``: unchanged); an order the model never saw fails at once."""
        if venue_order_id not in self.model.orders:
            return [OrderEvent(venue_order_id, OrderStatus.REJECTED, EventKind.AMEND_FAILED,
                               error_msg="unknown order", ts=now_ns // 1_000_000)]  # fmt: skip
        self.model.amend(venue_order_id, price, quantity, now_ns)
        return []

    def query(self, venue_order_id: str) -> OrderEvent | None:
        o = self.model.orders.get(venue_order_id)
        if o is None:
            return None
        return self._state(o, _status_of(o), 0)

    def open_orders(self) -> list[OrderEvent]:
        return [self._state(o, _status_of(o), 0) for rs in self.model.resting.values() for o in rs]

    # ------------------------------------------------------------------ the recording

    def advance(self, now_ns: int) -> list[OrderEvent]:
        """What arrives strictly before ``now_ns`` (orders and cancels whose latency has passed)."""
        return self._events(self.model.advance(now_ns))

    def on_market(self, msg: object, ns: int) -> list[OrderEvent]:
        """One recorded market-data message received at ``ns``: books and trades move the model;
        anything else only lets time pass."""
        out = self._settle(ns) if self._rates else []
        if isinstance(msg, Book):
            got = self.model.on_book(msg.symbol, msg.bids, msg.asks, ns)
            # (most books and trades move nothing: no event to convert, no list to join)
            return (out + self._events(got) if out else self._events(got)) if got else out
        if isinstance(msg, Trade):
            got = self.model.on_trade(msg.symbol, msg.price, msg.size, msg.side, ns)
            return (out + self._events(got) if out else self._events(got)) if got else out
        if isinstance(msg, FundingRate):
            if msg.next_funding_time > self._settled.get(msg.symbol, 0):
                self._rates[msg.symbol] = (msg.next_funding_time, msg.funding_rate)
        elif isinstance(msg, MarkPrice):
            self._marks[msg.symbol] = msg.mark_price
        return out + self.advance(ns)

    def _settle(self, ns: int) -> list[OrderEvent]:
        """The funding due by ``ns`` (see the module docstring)."""
        out: list[OrderEvent] = []
        for sym, (at_ms, rate) in list(self._rates.items()):
            if ns >= at_ms * 1_000_000 and sym in self._marks:
                del self._rates[sym]
                self._settled[sym] = at_ms
                out += self.on_funding(sym, rate, self._marks[sym], ns, at_ms)
        return out

    def on_funding(
        self, symbol: str, rate: float, mark_price: float, ns: int, at_ms: int = 0
    ) -> list[OrderEvent]:
        """A funding settlement (time ``at_ms``, the event's id) paid at ``ns``."""
        events = self.model.on_funding(symbol, rate, mark_price, ns)
        c = self.model.contracts.get(symbol, Contract())
        for e in events:
            if isinstance(e, Funding):
                self.account_events.append(
                    VenueAccountEvent(
                        AccountEventKind.FUNDING,
                        symbol,
                        f"funding-{symbol}-{at_ms or ns // 1_000_000}",
                        "",
                        0.0,
                        mark_price,
                        e.amount,
                        c.currency,
                        ns // 1_000_000,
                    )  # fmt: skip
                )
        return self._events(events)

    # ------------------------------------------------------------------ model events -> venue events

    def _events(self, events: list[ModelEvent]) -> list[OrderEvent]:
        out: list[OrderEvent] = []
        for e in events:
            if isinstance(e, Funding):
                self.funding.append(FundingRecord(e.ts_ns, "", e.symbol, e.amount))
            elif isinstance(e, Fill):
                o = self.model.orders[e.order_id]
                self._fill_no += 1
                self.fills.append(
                    FillRecord(
                        e.ts_ns,
                        o.order_id,
                        o.symbol,
                        o.side,
                        e.price,
                        e.quantity,
                        e.fee,
                        self.model.contracts.get(o.symbol),
                    )
                )
                filled, notional, fee = self._cum.get(o.order_id, (0.0, 0.0, 0.0))
                filled, notional, fee = filled + e.quantity, notional + e.price * e.quantity, fee + e.fee
                self._cum[o.order_id] = (filled, notional, fee)
                status = OrderStatus.FILLED if o.quantity - filled <= 1e-12 else OrderStatus.PARTIALLY_FILLED
                ev = self._state(o, status, e.ts_ns)
                ev.filled_quantity, ev.avg_price, ev.fee = filled, notional / filled, fee
                ev.last_fill_quantity, ev.last_fill_price = e.quantity, e.price
                ev.trade_id = f"bt{self._fill_no}"
                out.append(ev)
            elif e.status in _FAILED:
                o = self.model.orders[e.order_id]
                ev = self._state(o, _status_of(o), e.ts_ns)
                ev.kind, ev.error_msg = _FAILED[e.status], e.reason
                out.append(ev)
            elif e.status == "amended":  # open at that time (the model may have filled it since)
                o = self.model.orders[e.order_id]
                partly = self._cum.get(o.order_id, (0.0,))[0] > 0
                out.append(
                    self._state(o, OrderStatus.PARTIALLY_FILLED if partly else OrderStatus.ACCEPTED, e.ts_ns)
                )
            elif e.status == "filled" or (e.status == "accepted" and e.order_id in self._cum):
                continue  # its fills said so already (a limit that took some at once, then rested)
            else:
                out.append(self._status(e))
        return out

    def _status(self, e: Status) -> OrderEvent:
        o = self.model.orders[e.order_id]
        ev = self._state(o, _STATUS[e.status], e.ts_ns)
        ev.error_msg = e.reason if e.status != "accepted" else ""
        return ev

    def _state(self, o: SimOrder, status: OrderStatus, ts_ns: int) -> OrderEvent:
        """The order's event with its cumulative fill as of the events handed out so far."""
        filled, notional, fee = self._cum.get(o.order_id, (0.0, 0.0, 0.0))
        return OrderEvent(o.order_id, status, exchange_order_id=self._xids[o.order_id], price=o.price, quantity=o.quantity,
                          filled_quantity=filled, avg_price=notional / filled if filled else 0.0, fee=fee,
                          ts=ts_ns // 1_000_000)  # fmt: skip

    @staticmethod
    def _reject(venue_order_id: str, ts_ns: int, reason: str) -> OrderEvent:
        return OrderEvent(venue_order_id, OrderStatus.REJECTED, error_msg=reason, ts=ts_ns // 1_000_000)


def _status_of(o: SimOrder) -> OrderStatus:
    if o.status in ("pending", "open"):
        return OrderStatus.PARTIALLY_FILLED if o.filled > 0 else OrderStatus.ACCEPTED
    return _STATUS[o.status]
