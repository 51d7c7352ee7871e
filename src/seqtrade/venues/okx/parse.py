"""Pure conversions between OKX v5 JSON and seqtrade models (docs/okx.md §2-§6).

No I/O, no trio/httpx. Three parts:

- market data and instruments: ``*_from_okx`` functions;
- order entry: request arguments formatted exactly on the tick/lot grid (Decimal, never float text);
- :class:`OrderTracker`: the per-order state that turns orders-channel pushes, REST order snapshots and
  REST fills (in any order, duplicated or late) into :class:`OrderEvent` objects, each change once;
- :class:`FillPager`: which pages of ``trade/fills`` / ``trade/fills-history`` cover a gap.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from ...models import Book, OrderStatus, OrderType, Side, Ticker, Trade
from ..base import EventKind, Instrument, OrderEvent, VenueOrder
from .messages import PATH_FILLS, PATH_FILLS_HISTORY

__all__ = [
    "InstrumentSpec",
    "instrument_from_okx",
    "ticker_from_okx",
    "book_from_okx",
    "trade_from_okx",
    "status_from_okx",
    "order_event_from_okx",
    "fee_cost",
    "format_on_grid",
    "check_order",
    "place_args",
    "cancel_args",
    "amend_args",
    "write_error",
    "dumps",
    "decode_ws",
    "OrderTracker",
    "FillPager",
    "FILLS_PAGE_LIMIT",
    "RECENT_FILLS_MS",
    "CLORDID_RE",
    "ORD_TYPES",
]

CLORDID_RE = re.compile(r"[A-Za-z0-9]{1,32}\Z")

ORD_TYPES: dict[OrderType, str] = {
    OrderType.LIMIT: "limit",
    OrderType.MARKET: "market",
    OrderType.POST_ONLY: "post_only",
    OrderType.IOC: "ioc",
    OrderType.FOK: "fok",
}
_ORD_TYPES_BACK = {v: k for k, v in ORD_TYPES.items()} | {"op_fok": OrderType.FOK}

_STATUS = {
    "live": OrderStatus.ACCEPTED,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "mmp_canceled": OrderStatus.CANCELLED,
}
_RANK = {
    None: -1,
    OrderStatus.ACCEPTED: 0,
    OrderStatus.PARTIALLY_FILLED: 1,
    OrderStatus.FILLED: 2,
    OrderStatus.CANCELLED: 2,
    OrderStatus.REJECTED: 2,
}
_CANCEL_SOURCES = {
    "0": "canceled by the system",
    "13": "FOK order could not be filled in full",
    "14": "IOC order remainder canceled",
    "15": "price beyond the price limit",
    "20": "cancel-all-after triggered",
    "31": "post-only order would have taken liquidity",
    "32": "self-trade prevention",
    "39": "MMP triggered",
}
_ZERO = Decimal(0)


def dumps(obj: Any) -> str:
    """Compact JSON exactly as sent (and signed)."""
    return json.dumps(obj, separators=(",", ":"))


def decode_ws(text: str | bytes) -> dict[str, Any] | None:
    """One WebSocket frame as a JSON object; None for ``pong`` and for anything not an object."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if text == "pong":
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _dec(value: Any) -> Decimal:
    """An OKX numeric string as Decimal; ``""``/None/garbage -> 0."""
    if value is None or value == "":
        return _ZERO
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return _ZERO
    return d if d.is_finite() else _ZERO


def _f(value: Any) -> float:
    return float(_dec(value))


def _i(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# --------------------------------------------------------------------------- instruments, market data


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """An instrument with its grid kept as exact decimals (the float :class:`Instrument` is lossy)."""

    symbol: str
    inst_type: str
    tick: Decimal
    lot: Decimal
    min_size: Decimal
    code: int | None
    contract_value: Decimal = Decimal(1)

    def to_instrument(self) -> Instrument:
        return Instrument(
            symbol=self.symbol,
            tick_size=float(self.tick),
            lot_size=float(self.lot),
            min_size=float(self.min_size),
            code=self.code,
            contract_value=float(self.contract_value),
        )


def instrument_from_okx(d: Mapping[str, Any]) -> InstrumentSpec:
    """One item of GET /api/v5/public/instruments (§2.11)."""
    code = d.get("instIdCode")
    ct_val = _dec(d.get("ctVal"))
    return InstrumentSpec(
        symbol=str(d["instId"]),
        inst_type=str(d.get("instType", "SPOT")),
        tick=_dec(d.get("tickSz")),
        lot=_dec(d.get("lotSz")),
        min_size=_dec(d.get("minSz")),
        code=int(code) if isinstance(code, (int, str)) and str(code).lstrip("-").isdigit() else None,
        contract_value=ct_val if ct_val > 0 else Decimal(1),
    )


def ticker_from_okx(d: Mapping[str, Any]) -> Ticker:
    """One ``tickers`` push item (§5.1)."""
    return Ticker(
        symbol=str(d.get("instId", "")),
        ts=_i(d.get("ts")),
        last_price=_f(d.get("last")),
        bid_price=_f(d.get("bidPx")),
        ask_price=_f(d.get("askPx")),
        bid_size=_f(d.get("bidSz")),
        ask_size=_f(d.get("askSz")),
        volume_24h=_f(d.get("vol24h")),
    )


def _levels(raw: Any) -> list[list[float]]:
    out: list[list[float]] = []
    for level in raw or ():
        if len(level) >= 2:
            out.append([_f(level[0]), _f(level[1])])
    return out


def book_from_okx(d: Mapping[str, Any], symbol: str) -> Book:
    """One ``books5`` push item (§5.2); ``symbol`` comes from the push ``arg`` when the item lacks it."""
    return Book(
        symbol=str(d.get("instId") or symbol),
        ts=_i(d.get("ts")),
        bids=_levels(d.get("bids")),
        asks=_levels(d.get("asks")),
    )


def trade_from_okx(d: Mapping[str, Any]) -> Trade:
    """One ``trades`` push item (§5.4); ``side`` is the taker's."""
    return Trade(
        symbol=str(d.get("instId", "")),
        ts=_i(d.get("ts")),
        trade_id=str(d.get("tradeId", "")),
        price=_f(d.get("px")),
        size=_f(d.get("sz")),
        side=str(d.get("side", "")),
    )


def status_from_okx(state: str) -> OrderStatus | None:
    return _STATUS.get(state)


def _cancel_reason(d: Mapping[str, Any]) -> str:
    src = str(d.get("cancelSource") or "")
    if not src or src == "1":
        return ""
    return f"cancelSource {src}: {_CANCEL_SOURCES.get(src, 'canceled by the exchange')}"


def _base_ccy(d: Mapping[str, Any]) -> str:
    """The base currency of a spot/margin order or fill (``BTC`` of ``BTC-USDT``); "" otherwise."""
    if str(d.get("instType") or "SPOT") not in ("SPOT", "MARGIN"):
        return ""
    return str(d.get("instId") or "").split("-")[0]


def fee_cost(d: Mapping[str, Any], price: Decimal) -> Decimal:
    """The fee of an OKX order/fill as a positive cost in the quote currency.

    OKX charges spot buys in the base currency (``feeCcy`` BTC for BTC-USDT) and sells in the quote:
    a base-currency fee is converted at ``price`` (the fill price for one fill, ``avgPx`` for the
    cumulative fee of an order), so that every :attr:`OrderEvent.fee` of a venue is in one currency.
    Known limitation: the base actually received on such a buy is smaller than the filled quantity by
    the fee, so a position built from fills differs from the account balance by it.
    """
    fee = -_dec(d.get("fee"))
    ccy = str(d.get("feeCcy") or "")
    if fee and ccy and ccy == _base_ccy(d) and price > 0:
        fee *= price
    return fee


def order_event_from_okx(d: Mapping[str, Any]) -> OrderEvent | None:
    """A stateless event from one OKX order (REST order/pending item); None if unparseable.

    A snapshot reports the order's state, not a fill: ``trade_id`` and ``last_fill_*`` stay empty even
    when the item carries its last fill's fields (the receiver derives fills from the cumulative ones).
    """
    status = status_from_okx(str(d.get("state", "")))
    if status is None:
        return None
    px = _dec(d.get("px"))
    return OrderEvent(
        venue_order_id=str(d.get("clOrdId", "")),
        status=status,
        exchange_order_id=str(d.get("ordId", "")),
        price=float(px) if px > 0 else None,
        quantity=_f(d.get("sz")) or None,
        filled_quantity=_f(d.get("accFillSz")),
        avg_price=_f(d.get("avgPx")),
        fee=float(fee_cost(d, _dec(d.get("avgPx")))),
        error_msg=_cancel_reason(d) if status is OrderStatus.CANCELLED else "",
        ts=_i(d.get("uTime")) or _i(d.get("cTime")),
    )


# --------------------------------------------------------------------------- order entry


def format_on_grid(value: float | Decimal | str, step: Decimal) -> str:
    """``value`` rounded to the nearest multiple of ``step``, as plain decimal text.

    ``format_on_grid(0.1 + 0.2, Decimal("0.01")) == "0.3"``: the float's shortest repr is the input,
    so float artefacts vanish, and no exponent notation is ever produced.
    """
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    if step > 0:
        d = (d / step).to_integral_value(rounding=ROUND_HALF_EVEN) * step
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "") else text


def check_order(order: VenueOrder, spec: InstrumentSpec | None) -> str | None:
    """Why ``order`` cannot be sent at all (a local rejection reason), or None."""
    if spec is None:
        return f"unknown symbol {order.symbol!r} (not loaded from OKX)"
    if not CLORDID_RE.match(order.venue_order_id):
        return f"venue_order_id {order.venue_order_id!r} is not 1-32 letters and digits"
    if not order.quantity > 0:
        return f"quantity {order.quantity!r} must be > 0"
    if order.order_type is not OrderType.MARKET and not (order.price is not None and order.price > 0):
        return f"a {order.order_type.value} order needs a price > 0"
    if Decimal(format_on_grid(order.quantity, spec.lot)) <= 0:
        return f"quantity {order.quantity!r} rounds to 0 on the lot size {spec.lot}"
    return None


def _id_arg(spec: InstrumentSpec, ws: bool) -> dict[str, Any]:
    # WS trading ops take the integer instIdCode, REST takes instId (docs/okx.md §0)
    return {"instIdCode": spec.code} if ws else {"instId": spec.symbol}


def place_args(order: VenueOrder, spec: InstrumentSpec, td_mode: str, *, ws: bool) -> dict[str, Any]:
    """Arguments of one place (REST body / WS ``args`` item), prices and sizes on the grid."""
    args = _id_arg(spec, ws)
    args.update(
        tdMode=td_mode,
        clOrdId=order.venue_order_id,
        side=order.side.value,
        ordType=ORD_TYPES[order.order_type],
        sz=format_on_grid(order.quantity, spec.lot),
    )
    if order.order_type is OrderType.MARKET:
        if spec.inst_type == "SPOT" and order.side is Side.BUY:
            # our quantity is in base units; OKX defaults spot market buys to quote (§3.4)
            args["tgtCcy"] = "base_ccy"
    else:
        assert order.price is not None
        args["px"] = format_on_grid(order.price, spec.tick)
    return args


def cancel_args(venue_order_id: str, spec: InstrumentSpec, *, ws: bool) -> dict[str, Any]:
    args = _id_arg(spec, ws)
    args["clOrdId"] = venue_order_id
    return args


def amend_args(
    venue_order_id: str,
    spec: InstrumentSpec,
    price: float | None,
    quantity: float | None,
    req_id: str,
    *,
    ws: bool,
) -> dict[str, Any]:
    args = _id_arg(spec, ws)
    args["clOrdId"] = venue_order_id
    if quantity is not None:
        args["newSz"] = format_on_grid(quantity, spec.lot)
    if price is not None:
        args["newPx"] = format_on_grid(price, spec.tick)
    args["reqId"] = req_id
    return args


def write_error(envelope: Mapping[str, Any]) -> str | None:
    """``"<sCode> <sMsg>"`` of a failed single write (place/cancel/amend), or None when it succeeded.

    The per-item ``sCode`` is the real reason (§2.0); an envelope without items (auth, 50011, 60013)
    reports its top-level ``code``/``msg``. A non-empty ``sMsg`` with ``sCode "0"`` is success.
    """
    data = envelope.get("data") or []
    item = data[0] if data and isinstance(data[0], Mapping) else None
    if item is not None and "sCode" in item:
        s_code = str(item.get("sCode", ""))
        if s_code == "0":
            return None
        return f"{s_code} {item.get('sMsg', '')}".strip()
    code = str(envelope.get("code", ""))
    if code == "0":
        return None
    return f"{code} {envelope.get('msg', '')}".strip()


# --------------------------------------------------------------------------- order state


@dataclass(slots=True)
class _Tracked:
    venue_order_id: str
    symbol: str
    price: Decimal | None = None
    quantity: Decimal | None = None
    status: OrderStatus | None = None  # None: sent (or queued), not acknowledged yet
    exchange_order_id: str = ""
    filled: Decimal = _ZERO
    avg_price: Decimal = _ZERO
    fee: Decimal = _ZERO  # positive = cost
    fill_sum: Decimal = _ZERO  # total of the fills known one by one (by tradeId)
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

    def on_order(self, d: Mapping[str, Any]) -> list[OrderEvent]:
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
        self._created(o, _i(d.get("cTime")))
        ts = _i(d.get("uTime")) or _i(d.get("cTime"))
        events: list[OrderEvent] = []

        req_id = str(d.get("reqId") or "")
        if str(d.get("amendResult") or "") == "-1" and req_id not in o.amend_failures:
            o.amend_failures.add(req_id)
            reason = f"{d.get('code', '')} {d.get('msg', '')}".strip() or "amend failed"
            events.append(self._event(o, ts, kind=EventKind.AMEND_FAILED, error_msg=reason))

        if _RANK[o.status] == 2 and o.emitted is not None and o.emitted[0] == o.status:
            return events  # terminal and reported: repeats and late messages change nothing

        trade_id = str(d.get("tradeId") or "")
        fill_sz = _dec(d.get("fillSz"))
        new_fill = bool(trade_id) and fill_sz > 0 and trade_id not in o.trade_ids
        if trade_id and trade_id not in o.trade_ids:
            o.trade_ids.add(trade_id)
            o.fill_sum += fill_sz
        acc = _dec(d.get("accFillSz"))
        fresh = ts >= o.utime
        if acc > o.filled or (acc == o.filled and fresh):
            if acc > o.filled or _dec(d.get("avgPx")) > 0:
                o.avg_price = _dec(d.get("avgPx")) or o.avg_price
            o.filled = acc
            o.fee = fee_cost(d, o.avg_price)
        if fresh:
            o.utime = ts
            px = _dec(d.get("px"))
            if px > 0:
                o.price = px
            sz = _dec(d.get("sz"))
            if sz > 0 and str(d.get("tgtCcy") or "") != "quote_ccy":
                o.quantity = sz
        if _RANK[status] > _RANK[o.status]:
            o.status = status
        if o.status is OrderStatus.ACCEPTED and o.filled > 0:
            o.status = OrderStatus.PARTIALLY_FILLED
        error_msg = _cancel_reason(d) if o.status is OrderStatus.CANCELLED else ""
        fill = (fill_sz, _dec(d.get("fillPx")), trade_id) if new_fill else None
        events.extend(self._emit(o, ts, fill=fill, error_msg=error_msg))
        return events

    def on_fill(self, d: Mapping[str, Any]) -> list[OrderEvent]:
        """One GET trade/fills item (§2.8): a fill missed while the private stream was down."""
        vid = str(d.get("clOrdId") or "") or self._by_ord_id.get(str(d.get("ordId", "")), "")
        o = self._orders.get(vid) if vid else None
        trade_id = str(d.get("tradeId") or "")
        sz = _dec(d.get("fillSz"))
        if o is None or not trade_id or trade_id in o.trade_ids or sz <= 0:
            return []
        if _RANK[o.status] == 2 and o.emitted is not None and o.emitted[0] == o.status:
            return []
        o.trade_ids.add(trade_id)
        o.fill_sum += sz
        if o.fill_sum <= o.filled:
            return []  # already inside a cumulative fill we reported (its push came, this one did not)
        px = _dec(d.get("fillPx"))
        total = o.fill_sum
        o.avg_price = (o.avg_price * o.filled + px * (total - o.filled)) / total
        o.filled = total
        o.fee += fee_cost(d, px)
        if o.quantity is not None and total >= o.quantity:
            o.status = OrderStatus.FILLED
        elif _RANK[o.status] < 1:
            o.status = OrderStatus.PARTIALLY_FILLED
        ts = _i(d.get("fillTime")) or _i(d.get("ts"))
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
    return _i(d.get("ts")) or _i(d.get("fillTime"))


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
        self._rows: dict[tuple[str, str, str], dict[str, Any]] = {}

    def request(self) -> tuple[str, dict[str, str]] | None:
        """The next read: (path, query parameters), or None when the gap is covered."""
        if self.done:
            return None
        params = {"instType": self.inst_type, "limit": str(FILLS_PAGE_LIMIT)}
        if self._after:
            params["after"] = self._after
        return self.path, params

    def feed(self, page: list[dict[str, Any]]) -> None:
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

    def fills(self) -> list[dict[str, Any]]:
        """Every row read, once, oldest first (by fill time, then tradeId)."""
        return sorted(
            self._rows.values(),
            key=lambda f: (_i(f.get("fillTime")) or _fill_ms(f), str(f.get("tradeId", ""))),
        )
