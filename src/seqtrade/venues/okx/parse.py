"""Pure conversions between OKX v5 JSON and seqtrade models (docs/okx.md §2-§6).

No I/O, no trio/httpx. Two parts:

- market data and instruments: ``*_from_okx`` functions (:data:`MARKET_CHANNELS` by channel);
- order entry: request arguments formatted exactly on the tick/lot grid (Decimal, never float text).

The per-order state built from these (:class:`.tracking.OrderTracker`) and the paging of missed fills
(:class:`.tracking.FillPager`) are in :mod:`.tracking`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from ...instruments import InstrumentKind
from ...models import Book, OrderStatus, OrderType, Side, Ticker, Trade
from ..base import Instrument, OrderEvent, VenueOrder
from .messages import OkxBook, OkxBooksItem, OkxInstrument, OkxOrder, OkxTicker, OkxTrade, write_answer

__all__ = [
    "InstrumentSpec",
    "instrument_from_okx",
    "ticker_from_okx",
    "book_from_okx",
    "trade_from_okx",
    "BooksPush",
    "books_push_from_okx",
    "MARKET_CHANNELS",
    "status_from_okx",
    "cancel_reason",
    "order_event_from_okx",
    "fee_cost",
    "format_on_grid",
    "check_order",
    "place_args",
    "cancel_args",
    "amend_args",
    "write_error",
    "dumps",
    "decimal_of",
    "int_of",
    "ZERO",
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

_STATUS = {
    "live": OrderStatus.ACCEPTED,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "mmp_canceled": OrderStatus.CANCELLED,
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
ZERO = Decimal(0)


def dumps(obj: Any) -> str:
    """Compact JSON exactly as sent (and signed)."""
    return json.dumps(obj, separators=(",", ":"))


def decimal_of(value: Any) -> Decimal:
    """An OKX numeric string as Decimal; ``""``/None/garbage -> 0."""
    if value is None or value == "":
        return ZERO
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return ZERO
    return d if d.is_finite() else ZERO


def _f(value: Any) -> float:
    return float(decimal_of(value))


def int_of(value: Any) -> int:
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
    # kind, currencies, linear or inverse, max leverage, expiry: the rest of the venue's facts
    facts: Instrument | None = None
    td_mode: str = ""  # the trade mode of its orders ("": OkxConfig.td_mode); a derivative's margin mode
    net_mode: bool = True  # derivatives: the account's position mode is net (else long/short)

    def to_instrument(self) -> Instrument:
        base = self.facts or Instrument(self.symbol, 0.0, 0.0, 0.0)
        return dataclasses.replace(
            base,
            tick_size=float(self.tick),
            lot_size=float(self.lot),
            min_size=float(self.min_size),
            code=self.code,
            contract_value=float(self.contract_value),
        )


def instrument_from_okx(d: OkxInstrument) -> InstrumentSpec:
    """One item of GET /api/v5/public/instruments (§2.11)."""
    code = d.get("instIdCode")
    ct_val = decimal_of(d.get("ctVal"))
    symbol = str(d["instId"])
    inst_type = str(d.get("instType", "SPOT"))
    kind = {"SWAP": InstrumentKind.SWAP, "FUTURES": InstrumentKind.FUTURES}.get(
        inst_type, InstrumentKind.SPOT
    )
    # Spot rows carry baseCcy/quoteCcy; derivative rows leave them "" and name the family instead
    # (BTC-USDT, BTC-USD, BTC-USD_UM): the base is its first part, the quote the second.
    family = str(d.get("instFamily") or d.get("uly") or "")
    fam_base, _, fam_quote = family.partition("-")
    base = str(d.get("baseCcy") or fam_base or symbol.split("-")[0])
    quote = str(d.get("quoteCcy") or fam_quote.split("_")[0] or (symbol.split("-") + [""])[1])
    inverse = str(d.get("ctType", "")) == "inverse"
    derivative = kind is not InstrumentKind.SPOT
    contract_value = ct_val if derivative and ct_val > 0 else Decimal(1)  # an empty ctVal is 1, as spot
    facts = Instrument(
        symbol,
        0.0,
        0.0,
        0.0,
        kind=kind,
        contract_currency=str(d.get("ctValCcy") or "") if derivative else base,
        settle_currency=str(d.get("settleCcy") or "") if derivative else quote,
        base_currency=base,
        quote_currency=quote,
        inverse=inverse,
        max_leverage=_f(d.get("lever")) if derivative else 0.0,
        expiry_ms=int_of(d.get("expTime")) if kind is InstrumentKind.FUTURES else 0,
    )
    return InstrumentSpec(
        symbol=symbol,
        inst_type=inst_type,
        tick=decimal_of(d.get("tickSz")),
        lot=decimal_of(d.get("lotSz")),
        min_size=decimal_of(d.get("minSz")),
        code=int(code) if isinstance(code, (int, str)) and str(code).lstrip("-").isdigit() else None,
        contract_value=contract_value,
        facts=facts,
    )


def ticker_from_okx(d: OkxTicker) -> Ticker:
    """One ``tickers`` push item (§5.1)."""
    return Ticker(
        symbol=str(d.get("instId", "")),
        ts=int_of(d.get("ts")),
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


def book_from_okx(d: OkxBook, symbol: str) -> Book:
    """One ``books5`` push item (§5.2); ``symbol`` comes from the push ``arg`` when the item lacks it."""
    return Book(
        symbol=str(d.get("instId") or symbol),
        ts=int_of(d.get("ts")),
        bids=_levels(d.get("bids")),
        asks=_levels(d.get("asks")),
    )


@dataclass(frozen=True, slots=True)
class BooksPush:
    """One ``books`` push item (§5.3), checked for shape: what :class:`seqtrade.books.BookKeeper` takes."""

    bids: list[list[str]]
    asks: list[list[str]]
    prev_seq: int
    seq: int
    checksum: int
    ts: int
    snapshot: bool


def _raw_levels(raw: Any) -> list[list[str]] | None:
    if not isinstance(raw, list):
        return None
    for level in raw:
        if (
            not isinstance(level, list)
            or len(level) < 2
            or not isinstance(level[0], str)
            or not isinstance(level[1], str)
        ):
            return None
    return raw


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def books_push_from_okx(d: OkxBooksItem, action: str) -> BooksPush | None:
    """A ``books`` push item, or None when it is malformed (levels not string pairs, ids not integers)."""
    bids, asks = _raw_levels(d.get("bids", [])), _raw_levels(d.get("asks", []))
    prev, seq, checksum = _int(d.get("prevSeqId")), _int(d.get("seqId")), _int(d.get("checksum", 0))
    if bids is None or asks is None or prev is None or seq is None or checksum is None:
        return None
    return BooksPush(bids, asks, prev, seq, checksum, int_of(d.get("ts")), action == "snapshot")


def trade_from_okx(d: OkxTrade) -> Trade:
    """One ``trades`` push item (§5.4); ``side`` is the taker's."""
    return Trade(
        symbol=str(d.get("instId", "")),
        ts=int_of(d.get("ts")),
        trade_id=str(d.get("tradeId", "")),
        price=_f(d.get("px")),
        size=_f(d.get("sz")),
        side=str(d.get("side", "")),
    )


# The public channels (§5.1, §5.2, §5.4): one push item and the push's instId -> a market model.
MARKET_CHANNELS: dict[str, Callable[[Any, str], Ticker | Book | Trade]] = {
    "tickers": lambda d, _inst_id: ticker_from_okx(d),
    "books5": book_from_okx,
    "trades": lambda d, _inst_id: trade_from_okx(d),
}


def status_from_okx(state: str) -> OrderStatus | None:
    return _STATUS.get(state)


def cancel_reason(d: Mapping[str, Any]) -> str:
    src = str(d.get("cancelSource") or "")
    if not src or src == "1":
        return ""
    return f"cancelSource {src}: {_CANCEL_SOURCES.get(src, 'canceled by the exchange')}"


def _base_ccy(d: Mapping[str, Any]) -> str:
    """The base currency of a spot/margin order or fill (``BTC`` of ``BTC-USDT``); "" otherwise."""
    if str(d.get("instType") or "SPOT") not in ("SPOT", "MARGIN"):
        return ""  # swaps and futures: fees are in the settlement currency already
    return str(d.get("instId") or "").split("-")[0]


def fee_cost(d: Mapping[str, Any], price: Decimal) -> Decimal:
    """The fee of an OKX order/fill as a positive cost in the quote currency.

    OKX charges spot buys in the base currency (``feeCcy`` BTC for BTC-USDT) and sells in the quote:
    a base-currency fee is converted at ``price`` (the fill price for one fill, ``avgPx`` for the
    cumulative fee of an order), so that every :attr:`OrderEvent.fee` of a venue is in one currency.
    Known limitation: the base actually received on such a buy is smaller than the filled quantity by
    the fee, so a position built from fills differs from the account balance by it.
    """
    fee = -decimal_of(d.get("fee"))
    ccy = str(d.get("feeCcy") or "")
    if fee and ccy and ccy == _base_ccy(d) and price > 0:
        fee *= price
    return fee


def order_event_from_okx(d: OkxOrder) -> OrderEvent | None:
    """A stateless event from one OKX order (REST order/pending item); None if unparseable.

    A snapshot reports the order's state, not a fill: ``trade_id`` and ``last_fill_*`` stay empty even
    when the item carries its last fill's fields (the receiver derives fills from the cumulative ones).
    """
    status = status_from_okx(str(d.get("state", "")))
    if status is None:
        return None
    px = decimal_of(d.get("px"))
    return OrderEvent(
        venue_order_id=str(d.get("clOrdId", "")),
        status=status,
        exchange_order_id=str(d.get("ordId", "")),
        price=float(px) if px > 0 else None,
        quantity=_f(d.get("sz")) or None,
        filled_quantity=_f(d.get("accFillSz")),
        avg_price=_f(d.get("avgPx")),
        fee=float(fee_cost(d, decimal_of(d.get("avgPx")))),
        error_msg=cancel_reason(d) if status is OrderStatus.CANCELLED else "",
        ts=int_of(d.get("uTime")) or int_of(d.get("cTime")),
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
        tdMode=spec.td_mode or td_mode,
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
    if spec.inst_type in ("SWAP", "FUTURES"):
        # posSide: never sent in net mode (OKX's default "net"); the leg in long/short mode, where it
        # is mandatory (51000 otherwise). reduceOnly only in net mode, only when the server judged the
        # order reduce-only for the account (server/positions.py).
        if not spec.net_mode:
            args["posSide"] = order.pos_side or ("long" if order.side is Side.BUY else "short")
        elif order.reduce_only:
            args["reduceOnly"] = True
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
    """``"<sCode> <sMsg>"`` of a failed single write (place/cancel/amend), or None when it succeeded
    (:meth:`.messages.WriteAnswer.error`)."""
    return write_answer(envelope).error()
