"""Pure per-order state of the OKX adapter (docs/okx.md §2.6-§2.8, §5.6).

No I/O. Two parts:

- :class:`OrderTracker`: the per-order state that turns orders-channel pushes, REST order snapshots and
  REST fills (in any order, duplicated or late) into :class:`OrderEvent` objects, each change once;
- :class:`FillPager`: which pages of ``trade/fills`` / ``trade/fills-history`` cover a gap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ...models import OrderStatus
from ..base import EventKind, OrderEvent, VenueOrder
from .messages import PATH_FILLS, PATH_FILLS_HISTORY, OkxFill, OkxOrder
from .parse import ZERO, cancel_reason, decimal_of, fee_cost, int_of, status_from_okx

__all__ = ["OrderTracker", "FillPager", "FILLS_PAGE_LIMIT", "RECENT_FILLS_MS"]

_RANK = {
    None: -1,
    OrderStatus.ACCEPTED: 0,
    OrderStatus.PARTIALLY_FILLED: 1,
    OrderStatus.FILLED: 2,
    OrderStatus.CANCELLED: 2,
    OrderStatus.REJECTED: 2,
}


@dataclass(slots=True)
class _Tracked:
    venue_order_id: str
    symbol: str
    price: Decimal | None = None
    quantity: Decimal | None = None
    status: OrderStatus | None = None  # None: sent (or queued), not acknowledged yet
    exchange_order_id: str = ""
    filled: Decimal = ZERO
    avg_price: Decimal = ZERO
    fee: Decimal = ZERO  # positive = cost
    fill_sum: Decimal = ZERO  # total of the fills known one by one (by tradeId)
    utime: int = 0
    created_ms: int = (
        0  # exchange ms: the earliest of when we sent it, its place answer, its cTime; 0 unknown
    )
    trade_ids: set[str] = field(default_factory=set)
    amend_failures: set[str] = field(default_factory=set)
    emitted: tuple[Any, ...] | None = None  # (status, filled, price, quantity) last reported


class OrderTracker:
    """Known orders and what was last reported for each; every input yields only the changes.

    Inputs may come in any order and more than once (a push and a REST snapshot of the same state, a
    fill seen over REST and later pushed, duplicate pushes): fills are keyed by ``tradeId`` and applied
    once, the cumulative fill and the status only move forward, price/quantity follow ``uTime``.
    Terminal orders are forgotten after ``keep_terminal`` newer ones.

    The first event of every order is ACCEPTED or REJECTED: when the first news of an order is a fill
    or a cancel (OKX pushed it before it answered the place, or a REST fill/snapshot came first), an
    ACCEPTED event with nothing filled goes before it; the place answer then adds nothing.
    """

    def __init__(self, keep_terminal: int = 10_000) -> None:
        self._orders: dict[str, _Tracked] = {}
        self._by_ord_id: dict[str, str] = {}
        self._terminal: deque[str] = deque()
        self._keep_terminal = keep_terminal

    def __contains__(self, venue_order_id: object) -> bool:
        return venue_order_id in self._orders

    def status(self, venue_order_id: str) -> OrderStatus | None:
        o = self._orders.get(venue_order_id)
        return o.status if o else None

    def symbol(self, venue_order_id: str) -> str | None:
        o = self._orders.get(venue_order_id)
        return o.symbol if o else None

    def open_ids(self) -> list[str]:
        """Orders acknowledged by the exchange and not terminal."""
        return [
            o.venue_order_id
            for o in self._orders.values()
            if o.status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)
        ]

    def venue_order_id_of(self, ord_id: str) -> str | None:
        return self._by_ord_id.get(ord_id)

    def oldest_open_ms(self) -> int | None:
        """When the oldest open order was created (exchange ms); None if none is open or one is unknown."""
        times = [self._orders[vid].created_ms for vid in self.open_ids()]
        if not times or 0 in times:
            return None
        return min(times)

    # -- inputs from our own requests

    def track(self, order: VenueOrder, created_ms: int = 0) -> None:
        """A new order about to be sent (``created_ms``: the exchange time now)."""
        self._orders[order.venue_order_id] = _Tracked(
            venue_order_id=order.venue_order_id,
            symbol=order.symbol,
            price=Decimal(str(order.price)) if order.price is not None else None,
            quantity=Decimal(str(order.quantity)),
            created_ms=created_ms,
        )

    def placed(self, venue_order_id: str, ord_id: str, ts: int) -> list[OrderEvent]:
        """The exchange accepted the place (``sCode 0``)."""
        o = self._orders.get(venue_order_id)
        if o is None:
            return []
        if ord_id:
            o.exchange_order_id = ord_id
            self._by_ord_id[ord_id] = venue_order_id
        self._created(o, ts)
        if o.status is None:
            o.status = OrderStatus.ACCEPTED
        return self._emit(o, ts)

    def rejected(self, venue_order_id: str, reason: str, ts: int) -> list[OrderEvent]:
        """The place failed for sure; only an unacknowledged order can be rejected."""
        o = self._orders.get(venue_order_id)
        if o is None or o.status is not None:
            return []
        o.status = OrderStatus.REJECTED
        return self._emit(o, ts, error_msg=reason)

    def cancelled_unsent(self, venue_order_id: str, ts: int) -> list[OrderEvent]:
        """A new order cancelled while still queued here: it never reached the exchange."""
        o = self._orders.get(venue_order_id)
        if o is None or o.status is not None:
            return []
        o.status = OrderStatus.CANCELLED
        return self._emit(o, ts, error_msg="cancelled before it was sent to OKX")

    def request_failed(self, venue_order_id: str, kind: EventKind, reason: str, ts: int) -> list[OrderEvent]:
        """A cancel or amend was refused: the order is as it was."""
        o = self._orders.get(venue_order_id)
        if o is None:
            return [OrderEvent(venue_order_id, OrderStatus.REJECTED, kind=kind, error_msg=reason, ts=ts)]
        return [self._event(o, ts, kind=kind, error_msg=reason)]

    # -- inputs from the exchange

    def on_order(self, d: OkxOrder) -> list[OrderEvent]:
        """An orders-channel push item (§5.6) or a REST order snapshot (§2.6)."""
        vid = str(d.get("clOrdId") or "") or self._by_ord_id.get(str(d.get("ordId", "")), "")
        status = status_from_okx(str(d.get("state", "")))
        if not vid or status is None:
            return []
        o = self._orders.get(vid)
        if o is None:  # an order of ours we did not place in this process (e.g. after a restart)
            o = _Tracked(venue_order_id=vid, symbol=str(d.get("instId", "")))
            self._orders[vid] = o
        ord_id = str(d.get("ordId") or "")
        if ord_id:
            o.exchange_order_id = ord_id
            self._by_ord_id[ord_id] = vid
        self._created(o, int_of(d.get("cTime")))
        ts = int_of(d.get("uTime")) or int_of(d.get("cTime"))
        events: list[OrderEvent] = []

        req_id = str(d.get("reqId") or "")
        if str(d.get("amendResult") or "") == "-1" and req_id not in o.amend_failures:
            o.amend_failures.add(req_id)
            reason = f"{d.get('code', '')} {d.get('msg', '')}".strip() or "amend failed"
            events.append(self._event(o, ts, kind=EventKind.AMEND_FAILED, error_msg=reason))

        if _RANK[o.status] == 2 and o.emitted is not None and o.emitted[0] == o.status:
            return events  # terminal and reported: repeats and late messages change nothing

        trade_id = str(d.get("tradeId") or "")
        fill_sz = decimal_of(d.get("fillSz"))
        new_fill = bool(trade_id) and fill_sz > 0 and trade_id not in o.trade_ids
        if trade_id and trade_id not in o.trade_ids:
            o.trade_ids.add(trade_id)
            o.fill_sum += fill_sz
        acc = decimal_of(d.get("accFillSz"))
        fresh = ts >= o.utime
        if acc > o.filled or (acc == o.filled and fresh):
            if acc > o.filled or decimal_of(d.get("avgPx")) > 0:
                o.avg_price = decimal_of(d.get("avgPx")) or o.avg_price
            o.filled = acc
            o.fee = fee_cost(d, o.avg_price)
        if fresh:
            o.utime = ts
            px = decimal_of(d.get("px"))
            if px > 0:
                o.price = px
            sz = decimal_of(d.get("sz"))
            if sz > 0 and str(d.get("tgtCcy") or "") != "quote_ccy":
                o.quantity = sz
        if _RANK[status] > _RANK[o.status]:
            o.status = status
        if o.status is OrderStatus.ACCEPTED and o.filled > 0:
            o.status = OrderStatus.PARTIALLY_FILLED
        error_msg = cancel_reason(d) if o.status is OrderStatus.CANCELLED else ""
        fill = (fill_sz, decimal_of(d.get("fillPx")), trade_id) if new_fill else None
        events.extend(self._emit(o, ts, fill=fill, error_msg=error_msg))
        return events

    def on_fill(self, d: OkxFill) -> list[OrderEvent]:
        """One GET trade/fills item (§2.8): a fill missed while the private stream was down."""
        vid = str(d.get("clOrdId") or "") or self._by_ord_id.get(str(d.get("ordId", "")), "")
        o = self._orders.get(vid) if vid else None
        trade_id = str(d.get("tradeId") or "")
        sz = decimal_of(d.get("fillSz"))
        if o is None or not trade_id or trade_id in o.trade_ids or sz <= 0:
            return []
        if _RANK[o.status] == 2 and o.emitted is not None and o.emitted[0] == o.status:
            return []
        o.trade_ids.add(trade_id)
        o.fill_sum += sz
        if o.fill_sum <= o.filled:
            return []  # already inside a cumulative fill we reported (its push came, this one did not)
        px = decimal_of(d.get("fillPx"))
        total = o.fill_sum
        o.avg_price = (o.avg_price * o.filled + px * (total - o.filled)) / total
        o.filled = total
        o.fee += fee_cost(d, px)
        if o.quantity is not None and total >= o.quantity:
            o.status = OrderStatus.FILLED
        elif _RANK[o.status] < 1:
            o.status = OrderStatus.PARTIALLY_FILLED
        ts = int_of(d.get("fillTime")) or int_of(d.get("ts"))
        return self._emit(o, ts, fill=(sz, px, trade_id))

    # -- internals

    @staticmethod
    def _created(o: _Tracked, exchange_ms: int) -> None:
        """The earliest creation time known: the exchange's own stamps (the place answer's ``ts``, a
        ``cTime``) beat our estimate of its clock at sending, which may be late by a clock step."""
        if exchange_ms and (not o.created_ms or exchange_ms < o.created_ms):
            o.created_ms = exchange_ms

    def _event(
        self,
        o: _Tracked,
        ts: int,
        *,
        kind: EventKind = EventKind.UPDATE,
        fill: tuple[Decimal, Decimal, str] | None = None,
        error_msg: str = "",
    ) -> OrderEvent:
        status = o.status or OrderStatus.ACCEPTED
        return OrderEvent(
            venue_order_id=o.venue_order_id,
            status=status,
            kind=kind,
            exchange_order_id=o.exchange_order_id,
            price=float(o.price) if o.price is not None else None,
            quantity=float(o.quantity) if o.quantity is not None else None,
            filled_quantity=float(o.filled),
            avg_price=float(o.avg_price),
            last_fill_quantity=float(fill[0]) if fill else 0.0,
            last_fill_price=float(fill[1]) if fill else 0.0,
            fee=float(o.fee),
            trade_id=fill[2] if fill else "",
            error_msg=error_msg,
            ts=ts,
        )

    def _emit(
        self,
        o: _Tracked,
        ts: int,
        *,
        fill: tuple[Decimal, Decimal, str] | None = None,
        error_msg: str = "",
    ) -> list[OrderEvent]:
        if o.status is None:
            return []
        key = (o.status, o.filled, o.price, o.quantity)
        if fill is None and key == o.emitted:
            return []
        out: list[OrderEvent] = []
        if o.emitted is None and o.status not in (OrderStatus.ACCEPTED, OrderStatus.REJECTED):
            out.append(self._accepted_first(o, ts))
        o.emitted = key
        if _RANK[o.status] == 2:
            self._terminal.append(o.venue_order_id)
            self._forget_old()
        out.append(self._event(o, ts, fill=fill, error_msg=error_msg))
        return out

    @staticmethod
    def _accepted_first(o: _Tracked, ts: int) -> OrderEvent:
        """The ACCEPTED event owed before an order's first fill or cancel: nothing filled yet."""
        return OrderEvent(
            venue_order_id=o.venue_order_id,
            status=OrderStatus.ACCEPTED,
            exchange_order_id=o.exchange_order_id,
            price=float(o.price) if o.price is not None else None,
            quantity=float(o.quantity) if o.quantity is not None else None,
            ts=ts,
        )

    def _forget_old(self) -> None:
        while len(self._terminal) > self._keep_terminal:
            vid = self._terminal.popleft()
            o = self._orders.get(vid)
            if o is not None and _RANK[o.status] == 2:
                del self._orders[vid]
                self._by_ord_id.pop(o.exchange_order_id, None)


# --------------------------------------------------------------------------- missed fills

FILLS_PAGE_LIMIT = 100  # rows per page of trade/fills and trade/fills-history (§2.8)
RECENT_FILLS_MS = 3 * 24 * 3600 * 1000  # trade/fills covers the last 3 days; older: fills-history


def _fill_ms(d: Mapping[str, Any]) -> int:
    return int_of(d.get("ts")) or int_of(d.get("fillTime"))


class FillPager:
    """Plans the reads that cover the fills of a gap, from now back to ``since_ms`` (exchange ms).

    Pure: the caller sends each :meth:`request` and hands the page to :meth:`feed` until
    :meth:`request` returns None. Rows come newest first, at most 100 a page; the next (older) page is
    asked for with ``after`` = the billId of the oldest row so far. Once ``trade/fills`` has no more and
    the gap reaches further back than its 3 days, paging goes on in ``trade/fills-history`` from the
    same cursor. It stops when a row older than ``since_ms`` was seen (everything newer is then in
    hand), when the exchange has no more, or after ``max_pages`` pages: then :attr:`exceeded` is True
    and the rows are incomplete (the caller must not rely on them).
    """

    def __init__(
        self,
        inst_type: str,
        since_ms: int,
        now_ms: int,
        max_pages: int,
        *,
        recent_ms: int = RECENT_FILLS_MS,
    ) -> None:
        self.inst_type = inst_type
        self.since_ms = since_ms
        self.now_ms = now_ms
        self.max_pages = max_pages
        self.recent_ms = recent_ms
        self.path = PATH_FILLS
        self.pages = 0
        self.exceeded = False
        self.done = False
        self._after = ""
        self._rows: dict[tuple[str, str, str], OkxFill] = {}

    def request(self) -> tuple[str, dict[str, str]] | None:
        """The next read: (path, query parameters), or None when the gap is covered."""
        if self.done:
            return None
        params = {"limit": str(FILLS_PAGE_LIMIT)}
        if self.inst_type or self.path != PATH_FILLS:  # fills-history needs one; "" = every kind
            params["instType"] = self.inst_type or "SPOT"
        if self._after:
            params["after"] = self._after
        return self.path, params

    def feed(self, page: list[OkxFill]) -> None:
        """The answer to the last :meth:`request` (its ``data``, newest first)."""
        self.pages += 1
        for row in page:
            bill = str(row.get("billId") or "")
            key = (bill, "", "") if bill else ("", str(row.get("tradeId", "")), str(row.get("ordId", "")))
            self._rows[key] = row
        cursor = str(page[-1].get("billId") or "") if page else ""
        if cursor:
            self._after = cursor
        if page and min(_fill_ms(r) for r in page) < self.since_ms:
            self.done = True  # reached back past the start of the gap
            return
        if len(page) < FILLS_PAGE_LIMIT or not cursor:  # this endpoint has no more
            if self.path == PATH_FILLS and self.since_ms < self.now_ms - self.recent_ms:
                self.path = PATH_FILLS_HISTORY
            else:
                self.done = True
                return
        if self.pages >= self.max_pages:
            self.exceeded = self.done = True

    def fills(self) -> list[OkxFill]:
        """Every row read, once, oldest first (by fill time, then tradeId)."""
        return sorted(
            self._rows.values(),
            key=lambda f: (int_of(f.get("fillTime")) or _fill_ms(f), str(f.get("tradeId", ""))),
        )
