"""The fake OKX's matching engine and account state -- pure, synchronous, no trio.

Everything that touches the outside world goes through ``Sink`` (pushes, timers), and the two
clocks are injected: ``now_ms()`` = exchange wall clock (wall + offset), ``mono()`` = trio time
(rate-limit windows).  The transports (``rest.py``, ``ws.py``) turn the results into envelopes.

Section numbers refer to docs/okx.md.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, Protocol

from .instruments import Instrument, instrument_from_dict

__all__ = [
    "CANCEL_SOURCE_REASONS",
    "DEFAULT_MESSAGES",
    "Exchange",
    "OkxError",
    "Order",
    "Sink",
    "fmt",
]

D0 = Decimal(0)

# §3.5: clOrdId 1-32 letters/digits; tag 1-16; reqId / WS id <= 32.
_CL_ORD_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_TAG = re.compile(r"^[A-Za-z0-9]{1,16}$")
_NUM = re.compile(r"^\d+(\.\d+)?$")

# Default wire messages.  §9: the real `msg` strings often differ from the docs table; clients must
# key on codes only, so every text here is configurable through ``Exchange.messages``.
DEFAULT_MESSAGES: dict[str, str] = {
    "1": "All operations failed",  # observed wire text (§2.0); docs say "Operation failed."
    "2": "Batch operation partially succeeded",  # not captured; chosen here
    "50000": "Body for POST request cannot be empty.",
    "50002": "JSON syntax error",
    "50004": "Endpoint request timeout (does not indicate success or failure of order, "
    "please check order status).",
    "50011": "Too Many Requests",  # observed (§2.0)
    "50101": "APIKey does not match current environment.",
    "50102": "Timestamp request expired",  # observed (§1.5)
    "50103": 'Request header "OK-ACCESS-KEY" cannot be empty.',
    "50104": 'Request header "OK-ACCESS-PASSPHRASE" cannot be empty.',
    "50105": 'Request header "OK-ACCESS-PASSPHRASE" incorrect.',
    "50106": 'Request header "OK-ACCESS-SIGN" cannot be empty.',
    "50107": 'Request header "OK-ACCESS-TIMESTAMP" cannot be empty.',
    "50111": "Invalid OK-ACCESS-KEY",
    "50112": "Invalid OK-ACCESS-TIMESTAMP",
    "50113": "Invalid Sign",  # observed (§1.6); docs "Invalid signature."
    "51001": "Instrument ID, Instrument ID code or Spread ID doesn't exist.",
    "51006": "Order price is not within the price limit",
    "51008": "Order failed. Insufficient {ccy} balance in account",
    "51016": "Duplicated client order ID",
    "51020": "Your order should meet or exceed the minimum order amount.",
    "51071": "You've reached the maximum limit for tag level cancel all after timers.",
    "51111": "Maximum {n} orders can be placed in bulk.",
    "51406": "Canceled order count exceeds the limit {n}.",
    "51501": "Maximum {n} orders can be modified.",
    "51121": "Order quantity must be a multiple of the lot size.",
    "51400": "Cancellation failed as the order has been filled, canceled or does not exist.",
    "51503": "Order modification failed as the order has been filled, canceled or does not exist.",
    "51513": "Number of modification requests that are currently in progress for an order cannot exceed 3.",
    "51603": "Order does not exist",
    "place_ok": "Order placed",  # §2.0: success items can carry a non-empty sMsg
    "ws_place_ok": "Order successfully placed.",  # ccxt/ccxt#27805 (demo WS wire)
    "cancel_ok": "",
    "amend_ok": "",
    "exp_time": "Request timeout",  # expTime drop (§1.2): code/msg not in the sheet, chosen here
}

# §3.2 cancelSource codes; the reason texts are not in the sheet (our wording).
CANCEL_SOURCE_REASONS: dict[str, str] = {
    "0": "Order canceled by system",
    "1": "Order canceled by user",
    "13": "FOK order canceled as it could not be fully filled",
    "14": "IOC order remainder canceled",
    "20": "Cancel all after triggered",
    "31": "Post only order canceled as it would take liquidity",
}

_ORD_TYPES = ("market", "limit", "post_only", "fok", "ioc")
_OPEN_STATES = ("live", "partially_filled")


class OkxError(Exception):
    """An error reported as a code/msg pair: top level for REST, sCode/sMsg per item on WS."""

    def __init__(self, code: str, msg: str, sub_code: str = "") -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.sub_code = sub_code


class Sink(Protocol):
    """Where the exchange sends what it produces (implemented by the I/O shell)."""

    def order_update(self, push: dict[str, Any]) -> None: ...

    def public_trade(self, inst_id: str, trade: dict[str, Any]) -> None: ...

    def market_update(self, inst_id: str) -> None: ...

    def balance_update(self) -> None: ...

    def schedule(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` a little later (acceptance is asynchronous: §2.3, §8.7)."""
        ...


def fmt(value: Decimal) -> str:
    """Decimal -> OKX-style plain decimal string (no exponent, no trailing zeros)."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def _dec(value: Any, name: str, *, strict: bool) -> Decimal:
    """Parse a request number.  §3.3: request sizes/prices are strings; ``strict`` enforces it."""
    if isinstance(value, str):
        if not _NUM.match(value):
            raise OkxError("51000", f"Parameter {name} error")
        return Decimal(value)
    if not strict and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            pass
    raise OkxError("51000", f"Parameter {name} error")


@dataclass
class Fill:
    trade_id: str
    px: Decimal
    sz: Decimal
    fee: Decimal
    fee_ccy: str
    exec_type: str
    time_ms: int


@dataclass
class Order:
    ord_id: str
    cl_ord_id: str
    tag: str
    inst: Instrument
    side: str
    ord_type: str
    td_mode: str
    px: Decimal | None
    px_str: str
    sz: Decimal
    sz_str: str
    tgt_ccy: str  # "" for non-market orders; effective value for market (§3.4)
    reduce_only: bool
    stp_mode: str
    c_time: int
    u_time: int
    seq: int  # time priority
    state: str = "live"
    acc_fill_sz: Decimal = D0  # base currency, always (§3.4)
    notional: Decimal = D0  # sum(fillPx * fillSz), quote
    fee: Decimal = D0  # accumulated, negative = paid (§3.6)
    fee_ccy: str = ""
    rebate_ccy: str = ""
    last_fill: Fill | None = None
    cancel_source: str = ""
    frozen: Decimal = D0  # amount of balance reserved (quote for buys, base for sells)
    amends_in_flight: int = 0
    cancel_pending: bool = False

    @property
    def quote_mode(self) -> bool:
        """Spot market order whose sz is a quote amount (§3.4)."""
        return self.ord_type == "market" and self.tgt_ccy == "quote_ccy"

    @property
    def is_open(self) -> bool:
        return self.state in _OPEN_STATES

    @property
    def avg_px(self) -> Decimal | None:
        if self.acc_fill_sz <= 0:
            return None
        return (self.notional / self.acc_fill_sz).quantize(Decimal("1e-12"), rounding=ROUND_DOWN)

    @property
    def remaining(self) -> Decimal:
        """Unfilled quantity (base) of a base-sized order."""
        return self.sz - self.acc_fill_sz


@dataclass
class Market:
    """Top of book set by ``set_market`` plus what our own taker orders have consumed of it."""

    bid: Decimal | None = None
    ask: Decimal | None = None
    bid_sz: Decimal = D0
    ask_sz: Decimal = D0
    bid_left: Decimal = D0
    ask_left: Decimal = D0
    last_px: Decimal | None = None
    last_sz: Decimal = D0
    high: Decimal | None = None
    low: Decimal | None = None
    open: Decimal | None = None
    vol: Decimal = D0
    vol_ccy: Decimal = D0
    book_seq: int = 0
    trade_seq: int = 0
    ts: int = 0


@dataclass
class CancelAllAfter:
    """State of one dead man's switch (§2.13); ``tag`` "" = account level."""

    tag: str
    timeout_s: int = 0
    trigger_time_ms: int = 0  # exchange ms when it fires; 0 = disabled
    set_at_ms: int = 0
    deadline: float | None = None  # trio time when it fires; None = disabled
    fired_count: int = 0
    last_fired_ms: int = 0


@dataclass
class Balance:
    cash: Decimal = D0
    frozen: Decimal = D0
    u_time: int = 0

    @property
    def avail(self) -> Decimal:
        return self.cash - self.frozen


@dataclass
class AmendRequest:
    new_sz: Decimal | None
    new_px: Decimal | None
    new_px_str: str
    new_sz_str: str
    req_id: str
    cxl_on_fail: bool


class Exchange:
    """One spot-mode sub-account on a fake OKX: instruments, markets, orders, fills, balances."""

    def __init__(
        self,
        instruments: list[dict[str, Any]],
        balances: dict[str, str],
        *,
        uid: str,
        now_ms: Callable[[], int],
        mono: Callable[[], float],
        sink: Sink,
    ) -> None:
        self.uid = uid
        self.now_ms = now_ms
        self.mono = mono
        self.sink = sink
        self.instruments: dict[str, Instrument] = {}
        self.by_code: dict[int, Instrument] = {}
        for raw in instruments:
            inst = instrument_from_dict(raw)
            self.instruments[inst.inst_id] = inst
            if inst.inst_id_code is not None:
                self.by_code[inst.inst_id_code] = inst
        self.markets: dict[str, Market] = {i: Market() for i in self.instruments}
        self.orders: dict[str, Order] = {}
        self.pending_by_cl: dict[str, str] = {}
        self.latest_by_cl: dict[str, str] = {}
        self.place_counts: Counter[str] = Counter()
        self.fills: list[dict[str, Any]] = []
        self.balances: dict[str, Balance] = {k: Balance(Decimal(v)) for k, v in balances.items()}
        self.caa: dict[str, CancelAllAfter] = {"": CancelAllAfter(tag="")}
        self._caa_last_call: dict[str, float] = {}
        self.messages = dict(DEFAULT_MESSAGES)

        # knobs (all documented in README.md)
        self.rate_limit_per_2s = 60  # §7: place / cancel / amend, UID + instId, REST+WS shared
        self.rate_limit_batch_per_2s = 300  # §7: orders in batch requests
        self.maker_fee_rate = Decimal("0.0008")
        self.taker_fee_rate = Decimal("0.001")
        self.price_limit_pct: Decimal | None = Decimal("0.05")  # 51006 band around the touch
        self.market_reserve = Decimal("1.05")  # §3.2: market orders reserve +5% quote
        self.strict_string_numbers = True  # §3.3: sz/px must be JSON strings
        self.market_zero_fill_push = True  # §5.6 (2), §8.8: quote-sized market -> final filled, fillSz "0"
        self.trade_fill_inclusive = True  # print_trade fills resting orders AT the print price too
        self.caa_times_in_ms = False  # §2.13 / §9: triggerTime/ts units unverified; docs show seconds
        self.exp_time_code = "50102"  # §1.2: code of an expTime drop is not in the sheet
        self.max_amends_in_flight = 3  # §2.5: 51513
        # §5.6 shows `live` first only for a resting order ("IOC partial: partially_filled push(es)
        # then canceled"; a market order may arrive as `filled`): False pushes `live` only for an
        # order that rests unfilled after its first match, so an order that trades at once is first
        # seen filled / partially filled / canceled.
        self.push_live_first = True
        # §2.8 / §7: GET trade/fills covers the last 3 days (60 req / 2 s per UID); fills-history
        # 3 months (10 req / 2 s per UID, instType required). Both newest first, <= 100 rows.
        self.fills_recent_ms = 3 * 24 * 3600 * 1000
        self.fills_history_ms = 90 * 24 * 3600 * 1000
        self.query_rate_limits = {"fills": 60, "fills-history": 10}  # per 2 s per UID

        self._rl: dict[tuple[str, str], deque[float]] = {}
        self.rate_limited: list[tuple[str, str, float]] = []  # observation: (kind, key, time) refused
        self._next_ord = 2896576259728695296  # §3.3: IDs exceed 2^53
        self._next_trade = 9007199254740993  # 2^53 + 1: a float parse would corrupt it
        self._next_bill = 9007199254740993 * 7
        self._seq = 0

    # ------------------------------------------------------------------ ids, clock, helpers

    def _ord_id(self) -> str:
        self._next_ord += 1713
        return str(self._next_ord)

    def _trade_id(self) -> str:
        self._next_trade += 2
        return str(self._next_trade)

    def _bill_id(self) -> str:
        self._next_bill += 3
        return str(self._next_bill)

    def msg(self, code: str, **kw: Any) -> str:
        text = self.messages.get(code, "")
        return text.format(**kw) if kw else text

    def err(self, code: str, **kw: Any) -> OkxError:
        return OkxError(code, self.msg(code, **kw))

    def balance(self, ccy: str) -> Balance:
        return self.balances.setdefault(ccy, Balance())

    def inst_by_code(self, code: int) -> Instrument | None:
        return self.by_code.get(code)

    # ------------------------------------------------------------------ rate limits (§7, §8.14)

    def rate_limit_ok(self, kind: str, inst_id: str, n: int = 1) -> bool:
        """Count ``n`` orders in the (kind, instId) bucket; False when the 2 s window is full.

        ``kind`` is one of place / cancel / amend / batch-place / batch-cancel / batch-amend
        (independent buckets, §7).  REST and WS share them.
        """
        limit = self.rate_limit_batch_per_2s if kind.startswith("batch") else self.rate_limit_per_2s
        now = self.mono()
        window = self._rl.setdefault((kind, inst_id), deque())
        while window and window[0] <= now - 2.0:
            window.popleft()
        if len(window) + n > limit:
            self.rate_limited.append((kind, inst_id, now))
            return False
        window.extend([now] * n)
        return True

    def query_rate_ok(self, kind: str) -> bool:
        """Count one read request of ``kind`` (a ``query_rate_limits`` key) for the account (UID)."""
        limit = self.query_rate_limits.get(kind)
        return limit is None or self.window_ok(kind, limit, 2.0)

    def window_ok(self, kind: str, limit: int, seconds: float) -> bool:
        """Count one request in the account-wide ``kind`` bucket: at most ``limit`` per ``seconds``."""
        now = self.mono()
        window = self._rl.setdefault((kind, ""), deque())
        while window and window[0] <= now - seconds:
            window.popleft()
        if len(window) >= limit:
            self.rate_limited.append((kind, "", now))
            return False
        window.append(now)
        return True

    # ------------------------------------------------------------------ place (§2.1, §3)

    def validate_place(self, req: Any) -> dict[str, Any]:
        """Check the shape of one place-order argument; raise OkxError (51000 / 50014 family).

        Returns a normalised spec.  Business checks (instrument, balance, lot size...) come later in
        ``place`` so that they are per-item (sCode) results.
        """
        if not isinstance(req, dict):
            raise OkxError("50002", self.msg("50002"))
        for name in ("instId", "tdMode", "side", "ordType", "sz"):
            value = req.get(name)
            if value is None or value == "":
                raise OkxError("50014", f"Parameter {name} can not be empty")
        cl = req.get("clOrdId", "")
        # §3.5: "Empty string is not a valid id" -- we read "" as "no clOrdId" (REST responses show
        # "clOrdId":"" for orders without one); anything else must be 1-32 alphanumerics.
        if cl != "" and (not isinstance(cl, str) or not _CL_ORD_ID.match(cl)):
            raise OkxError("51000", "Parameter clOrdId  error")  # observed text, two spaces (§2.14)
        tag = req.get("tag", "")
        if tag != "" and (not isinstance(tag, str) or not _TAG.match(tag)):
            raise OkxError("51000", "Parameter tag error")
        if req["side"] not in ("buy", "sell"):
            raise OkxError("51000", "Parameter side error")
        if req["ordType"] not in _ORD_TYPES:
            # optimal_limit_ioc / mmp / elp are not spot-cash order types in this fake
            raise OkxError("51000", "Parameter ordType error")
        # The fake account is a spot-mode account: SPOT trades with tdMode "cash" only (§3.2).
        if req["tdMode"] != "cash":
            raise OkxError("51000", "Parameter tdMode error")
        strict = self.strict_string_numbers
        sz = _dec(req["sz"], "sz", strict=strict)
        if sz <= 0:
            raise OkxError("51000", "Parameter sz error")
        px: Decimal | None = None
        if req["ordType"] != "market":
            if req.get("px") in (None, ""):
                raise OkxError("50014", "Parameter px can not be empty")
            px = _dec(req["px"], "px", strict=strict)
            if px <= 0:
                raise OkxError("51000", "Parameter px error")
        inst = self.instruments.get(req["instId"])
        if px is not None and inst is not None and px % inst.tick_sz != 0:
            # §2.11 "px should be a multiple of tickSz"; the code is not in the sheet (chosen: 51000,
            # a parameter error -- top level on REST like the other 51000s).
            raise OkxError("51000", "Parameter px error")
        tgt = req.get("tgtCcy", "")
        if tgt not in ("", "base_ccy", "quote_ccy"):
            raise OkxError("51000", "Parameter tgtCcy error")
        reduce_only = req.get("reduceOnly", False)
        if not isinstance(reduce_only, bool):
            raise OkxError("51000", "Parameter reduceOnly error")
        stp = req.get("stpMode", "") or "cancel_maker"
        if stp not in ("cancel_maker", "cancel_taker", "cancel_both"):
            raise OkxError("51000", "Parameter stpMode error")
        if stp == "cancel_both" and req["ordType"] == "fok":
            raise OkxError("50016", "Parameter stpMode does not match ordType")
        return {
            "instId": req["instId"],
            "clOrdId": cl,
            "tag": tag,
            "side": req["side"],
            "ordType": req["ordType"],
            "tdMode": req["tdMode"],
            "sz": sz,
            "sz_str": req["sz"] if isinstance(req["sz"], str) else fmt(sz),
            "px": px,
            "px_str": (req["px"] if isinstance(req.get("px"), str) else fmt(px)) if px is not None else "",
            "tgtCcy": tgt,
            "reduceOnly": reduce_only,
            "stpMode": stp,
        }

    def place(self, spec: dict[str, Any], *, taken_cl_ids: set[str] | None = None) -> dict[str, Any]:
        """Business checks + acceptance of one validated order; returns the result item.

        Per-item failures (HTTP 200, sCode != 0, §8.3): 51001, 51016, 51121, 51020, 51006, 51008.
        """
        cl = spec["clOrdId"]
        now = self.now_ms()
        base_item = {"clOrdId": cl, "ordId": "", "tag": spec["tag"], "ts": str(now), "subCode": ""}
        try:
            order = self._accept(spec, now, taken_cl_ids)
        except OkxError as exc:
            return {**base_item, "sCode": exc.code, "sMsg": exc.msg, "subCode": exc.sub_code}
        item = {**base_item, "ordId": order.ord_id, "sCode": "0", "sMsg": self.msg("place_ok")}
        # Matching runs right away, before the transport sends the answer: the live/fill pushes may
        # reach the client before the REST/WS response -- as on the real venue (adapters must
        # correlate by clOrdId, not wait for the ordId).
        self._after_accept(order)
        return item

    def _accept(self, spec: dict[str, Any], now: int, taken_cl_ids: set[str] | None) -> Order:
        inst = self.instruments.get(spec["instId"])
        if inst is None:
            raise self.err("51001")
        cl = spec["clOrdId"]
        # §3.5/§8.6: unique among *pending* orders (and within one batch request).
        if cl and (cl in self.pending_by_cl or (taken_cl_ids is not None and cl in taken_cl_ids)):
            raise self.err("51016")
        side, ord_type, sz, px = spec["side"], spec["ordType"], spec["sz"], spec["px"]
        tgt = spec["tgtCcy"]
        if ord_type == "market":
            # §3.4/§8.9: spot market buy defaults to quote_ccy (sz = quote amount), sell to base_ccy.
            tgt = tgt or ("quote_ccy" if side == "buy" else "base_ccy")
        else:
            tgt = ""
        market = self.markets[inst.inst_id]
        quote_sized = ord_type == "market" and tgt == "quote_ccy"
        if not quote_sized:
            # §2.11: sz >= minSz and a multiple of lotSz, else 51121.
            if sz < inst.min_sz or sz % inst.lot_sz != 0:
                raise self.err("51121")
        ref = market.ask if side == "buy" else market.bid
        if quote_sized and ref is not None and sz / ref < inst.min_sz:
            # §3.4: a quote amount worth less than minSz of base (e.g. a base size sent without
            # tgtCcy) -> 51020 below minimum order amount.
            raise self.err("51020")
        if px is not None and self.price_limit_pct is not None:
            if side == "buy" and market.ask is not None and px > market.ask * (1 + self.price_limit_pct):
                raise self.err("51006")
            if side == "sell" and market.bid is not None and px < market.bid * (1 - self.price_limit_pct):
                raise self.err("51006")
        # §2.14 / §8.10: insufficient balance 51008 with subCode 1000.
        need_ccy = inst.quote_ccy if side == "buy" else inst.base_ccy
        if ord_type == "market":
            if quote_sized:
                need = sz if side == "buy" else (sz / ref if ref else D0)
            else:
                need = (
                    sz * ref * self.market_reserve
                    if side == "buy" and ref
                    else (sz if side == "sell" else D0)
                )
            frozen = D0
        else:
            assert px is not None
            need = px * sz if side == "buy" else sz
            frozen = need
        if need > self.balance(need_ccy).avail:
            raise OkxError("51008", self.msg("51008", ccy=need_ccy), "1000")
        self._seq += 1
        order = Order(
            ord_id=self._ord_id(),
            cl_ord_id=cl,
            tag=spec["tag"],
            inst=inst,
            side=side,
            ord_type=ord_type,
            td_mode=spec["tdMode"],
            px=px,
            px_str=spec["px_str"],
            sz=sz,
            sz_str=spec["sz_str"],
            tgt_ccy=tgt,
            reduce_only=spec["reduceOnly"],
            stp_mode=spec["stpMode"],
            c_time=now,
            u_time=now,
            seq=self._seq,
            fee_ccy=inst.base_ccy if side == "buy" else inst.quote_ccy,
            rebate_ccy=inst.quote_ccy if side == "buy" else inst.base_ccy,
            frozen=frozen,
        )
        bal = self.balance(need_ccy)
        bal.frozen += frozen
        bal.u_time = now
        self._register(order, taken_cl_ids)
        return order

    def _register(self, order: Order, taken_cl_ids: set[str] | None) -> None:
        """Keep an accepted order; its clOrdId is now pending (and taken within the batch)."""
        self.orders[order.ord_id] = order
        cl = order.cl_ord_id
        if cl:
            self.pending_by_cl[cl] = order.ord_id
            self.latest_by_cl[cl] = order.ord_id
            self.place_counts[cl] += 1
            if taken_cl_ids is not None:
                taken_cl_ids.add(cl)

    def _after_accept(self, order: Order) -> None:
        if self.push_live_first:
            self._push(order)  # state live (§5.6 lifecycle)
        self.sink.balance_update()
        self._match_taker(order)
        if not self.push_live_first and order.state == "live":
            self._push(order)  # it rests untouched: its first push is `live`

    # ------------------------------------------------------------------ matching

    def _crosses(self, order: Order, market: Market) -> bool:
        if order.px is None:  # market order: anything on the other side
            if order.side == "buy":
                return market.ask is not None and market.ask_left > 0
            return market.bid is not None and market.bid_left > 0
        if order.side == "buy":
            return market.ask is not None and market.ask_left > 0 and order.px >= market.ask
        return market.bid is not None and market.bid_left > 0 and order.px <= market.bid

    def _match_taker(self, order: Order) -> None:
        """Match a newly accepted (or re-priced) order against the market top of book."""
        market = self.markets[order.inst.inst_id]
        crosses = self._crosses(order, market)
        if order.ord_type == "post_only":
            if crosses:  # §3.2: canceled, not rejected at submit
                self._terminate(order, "canceled", "31")
            return
        if order.ord_type == "fok":
            avail = market.ask_left if order.side == "buy" else market.bid_left
            if not crosses or avail < order.remaining:
                self._terminate(order, "canceled", "13")
                return
        if crosses:
            self._take(order, market)
        if not order.is_open:
            return
        if order.ord_type in ("ioc", "fok", "market"):
            # §3.2: IOC remainder canceled with cancelSource 14.  A market order whose remainder
            # cannot fill is treated the same way (cancelSource for that case not in the sheet).
            self._terminate(order, "canceled", "14")

    def _take(self, order: Order, market: Market) -> None:
        lot = order.inst.lot_sz
        if order.side == "buy":
            price, avail = market.ask, market.ask_left
        else:
            price, avail = market.bid, market.bid_left
        assert price is not None
        if order.quote_mode:
            remaining_quote = order.sz - order.notional
            qty = (remaining_quote / price / lot).to_integral_value(ROUND_DOWN) * lot
            qty = min(qty, (avail / lot).to_integral_value(ROUND_DOWN) * lot)
            if qty <= 0:
                return
            exhausted = order.sz - order.notional - qty * price < price * lot
            if exhausted and self.market_zero_fill_push:
                self._fill(order, qty, price, "T", "partially_filled")
                # §5.6 (2) / §8.8: SPOT market order completes with a `filled` push that has
                # fillSz "0" and no tradeId.
                self._terminate(order, "filled", "")
            else:
                self._fill(order, qty, price, "T", "filled" if exhausted else "partially_filled")
        else:
            qty = min(order.remaining, avail)
            if qty <= 0:
                return
            self._fill(order, qty, price, "T", "filled" if qty == order.remaining else "partially_filled")
        if order.side == "buy":
            market.ask_left -= qty
        else:
            market.bid_left -= qty
        self._public_print(order.inst.inst_id, price, qty, order.side)
        self.sink.market_update(order.inst.inst_id)  # the touch size shrank

    def _public_print(self, inst_id: str, px: Decimal, sz: Decimal, side: str) -> None:
        market = self.markets[inst_id]
        market.trade_seq += 1
        market.last_px, market.last_sz = px, sz
        market.high = px if market.high is None else max(market.high, px)
        market.low = px if market.low is None else min(market.low, px)
        market.open = market.open if market.open is not None else px
        market.vol += sz
        market.vol_ccy += sz * px
        trade = {
            "instId": inst_id,
            "tradeId": self._trade_id(),
            "px": fmt(px),
            "sz": fmt(sz),
            "side": side,  # §5.4: taker side
            "ts": str(self.now_ms()),
            "count": "1",
            "source": "0",
            "seqId": market.trade_seq,  # §3.3: integer
        }
        self.sink.public_trade(inst_id, trade)

    def _resting(self, inst_id: str, side: str) -> list[Order]:
        """Open orders of one side in price-time priority."""
        orders = [
            o for o in self.orders.values() if o.is_open and o.inst.inst_id == inst_id and o.side == side
        ]
        if side == "buy":
            orders.sort(key=lambda o: (-(o.px or D0), o.seq))
        else:
            orders.sort(key=lambda o: (o.px or D0, o.seq))
        return orders

    def _fill_resting(
        self, inst_id: str, maker_side: str, limit_px: Decimal, qty: Decimal, inclusive: bool
    ) -> Decimal:
        """Fill resting ``maker_side`` orders priced through ``limit_px`` (as makers, at their own
        price) up to ``qty``; returns the quantity used."""
        used = D0
        for order in self._resting(inst_id, maker_side):
            assert order.px is not None
            if maker_side == "buy":
                through = order.px > limit_px or (inclusive and order.px == limit_px)
            else:
                through = order.px < limit_px or (inclusive and order.px == limit_px)
            if not through or used >= qty:
                break
            take = min(order.remaining, qty - used)
            if take <= 0:
                continue
            self._fill(
                order, take, order.px, "M", "filled" if take == order.remaining else "partially_filled"
            )
            used += take
        return used

    # ------------------------------------------------------------------ fills, pushes, terminal

    def _fill(self, order: Order, qty: Decimal, px: Decimal, exec_type: str, state: str) -> None:
        now = self.now_ms()
        inst = order.inst
        rate = self.maker_fee_rate if exec_type == "M" else self.taker_fee_rate
        # §3.6: fee negative; a buy pays in the received (base) currency, a sell in quote.
        if order.side == "buy":
            fee = -(qty * rate)
            fee_ccy = inst.base_ccy
        else:
            fee = -(qty * px * rate)
            fee_ccy = inst.quote_ccy
        fill = Fill(self._trade_id(), px, qty, fee, fee_ccy, exec_type, now)
        order.acc_fill_sz += qty
        order.notional += qty * px
        order.fee += fee
        order.last_fill = fill
        order.state = state
        order.u_time = now
        base, quote = self.balance(inst.base_ccy), self.balance(inst.quote_ccy)
        if order.side == "buy":
            if order.px is not None and order.ord_type != "market":
                release = min(order.frozen, order.px * qty)
                order.frozen -= release
                quote.frozen -= release
            quote.cash -= px * qty
            base.cash += qty + fee
        else:
            if order.ord_type != "market":
                release = min(order.frozen, qty)
                order.frozen -= release
                base.frozen -= release
            base.cash -= qty
            quote.cash += px * qty + fee
        base.u_time = quote.u_time = now
        if not order.is_open:
            self._release(order)
        self.fills.append(
            {
                "instType": "SPOT",
                "instId": inst.inst_id,
                "tradeId": fill.trade_id,
                "ordId": order.ord_id,
                "clOrdId": order.cl_ord_id,
                "billId": self._bill_id(),
                "subType": "1" if order.side == "buy" else "2",
                "tag": order.tag,
                "fillPx": fmt(px),
                "fillSz": fmt(qty),
                "fillIdxPx": "",
                "fillPnl": "0",
                "fillPxVol": "",
                "fillPxUsd": "",
                "fillMarkVol": "",
                "fillFwdPx": "",
                "fillMarkPx": "",
                "side": order.side,
                "posSide": "net",
                "execType": exec_type,
                "feeCcy": fee_ccy,
                "fee": fmt(fee),
                "ts": str(now),
                "fillTime": str(now),
                "feeRate": fmt(-rate),
                "tradeQuoteCcy": inst.quote_ccy,
            }
        )
        self._push(order, fill=fill)
        self.sink.balance_update()

    def _release(self, order: Order) -> None:
        """Order became terminal: unfreeze what is left and free its clOrdId (§3.5)."""
        if order.frozen:
            ccy = order.inst.quote_ccy if order.side == "buy" else order.inst.base_ccy
            self.balance(ccy).frozen -= order.frozen
            order.frozen = D0
        if order.cl_ord_id and self.pending_by_cl.get(order.cl_ord_id) == order.ord_id:
            del self.pending_by_cl[order.cl_ord_id]

    def _terminate(self, order: Order, state: str, cancel_source: str, **push_kw: Any) -> None:
        order.state = state
        order.cancel_source = cancel_source
        order.u_time = self.now_ms()
        self._release(order)
        self._push(order, **push_kw)
        self.sink.balance_update()

    def _push(
        self,
        order: Order,
        *,
        fill: Fill | None = None,
        req_id: str = "",
        amend_result: str = "",
        code: str = "0",
        msg: str = "",
    ) -> None:
        self.sink.order_update(self.order_push(order, fill, req_id, amend_result, code, msg))

    # ------------------------------------------------------------------ wire shapes

    def order_rest(self, order: Order) -> dict[str, Any]:
        """§2.6 item: fill fields describe the LAST fill; avgPx/fillPx "" before any fill."""
        lf = order.last_fill
        avg = order.avg_px
        return {
            "instType": "SPOT",
            "instId": order.inst.inst_id,
            "tgtCcy": order.tgt_ccy,
            "ccy": "",
            "ordId": order.ord_id,
            "clOrdId": order.cl_ord_id,
            "tag": order.tag,
            "px": order.px_str,
            "pxUsd": "",
            "pxVol": "",
            "pxType": "",
            "sz": order.sz_str,
            "pnl": "0",
            "ordType": order.ord_type,
            "side": order.side,
            "posSide": "net",
            "tdMode": order.td_mode,
            "accFillSz": fmt(order.acc_fill_sz),
            "fillPx": fmt(lf.px) if lf else "",
            "tradeId": lf.trade_id if lf else "",
            "fillSz": fmt(lf.sz) if lf else "0",
            "fillTime": str(lf.time_ms) if lf else "",
            "avgPx": fmt(avg) if avg is not None else "",
            "state": order.state,
            "stpId": "",
            "stpMode": order.stp_mode,
            "lever": "",
            "attachAlgoClOrdId": "",
            "tpTriggerPx": "",
            "tpTriggerPxType": "",
            "tpOrdPx": "",
            "slTriggerPx": "",
            "slTriggerPxType": "",
            "slOrdPx": "",
            "attachAlgoOrds": [],
            "linkedAlgoOrd": {"algoId": ""},
            "feeCcy": order.fee_ccy,
            "fee": fmt(order.fee),
            "rebateCcy": order.rebate_ccy,
            "rebate": "0",
            "source": "",
            "category": "normal",
            "reduceOnly": "true" if order.reduce_only else "false",  # §3.3: string in responses
            "isTpLimit": "false",
            "cancelSource": order.cancel_source,
            "cancelSourceReason": CANCEL_SOURCE_REASONS.get(order.cancel_source, "")
            if order.cancel_source
            else "",
            "quickMgnType": "",
            "algoClOrdId": "",
            "algoId": "",
            "uTime": str(order.u_time),
            "cTime": str(order.c_time),
            "tradeQuoteCcy": order.inst.quote_ccy,
            "outcome": "",
        }

    def order_push(
        self,
        order: Order,
        fill: Fill | None = None,
        req_id: str = "",
        amend_result: str = "",
        code: str = "0",
        msg: str = "",
    ) -> dict[str, Any]:
        """§5.6 item: fill fields describe THIS update's fill; avgPx "0" before any fill."""
        avg = order.avg_px
        market = self.markets[order.inst.inst_id]
        return {
            "instType": "SPOT",
            "instId": order.inst.inst_id,
            "tgtCcy": order.tgt_ccy,
            "ccy": "",
            "ordId": order.ord_id,
            "clOrdId": order.cl_ord_id,
            "tag": order.tag,
            "px": order.px_str,
            "pxUsd": "",
            "pxVol": "",
            "pxType": "",
            "sz": order.sz_str,
            "notionalUsd": fmt(order.notional),
            "ordType": order.ord_type,
            "side": order.side,
            "posSide": "",  # docs push example shows "" for spot
            "tdMode": order.td_mode,
            "fillPx": fmt(fill.px) if fill else "",
            "tradeId": fill.trade_id if fill else "",
            "fillSz": fmt(fill.sz) if fill else "0",
            "fillPnl": "0",
            "fillTime": str(fill.time_ms) if fill else "",
            "fillFee": fmt(fill.fee) if fill else "0",
            "fillFeeCcy": fill.fee_ccy if fill else "",
            "fillPxVol": "",
            "fillPxUsd": "",
            "fillMarkVol": "",
            "fillFwdPx": "",
            "fillMarkPx": "",
            "fillIdxPx": "",
            "execType": fill.exec_type if fill else "",
            "accFillSz": fmt(order.acc_fill_sz),
            "fillNotionalUsd": fmt(fill.px * fill.sz) if fill else "",
            "avgPx": fmt(avg) if avg is not None else "0",
            "state": order.state,
            "lever": "",
            "attachAlgoClOrdId": "",
            "tpTriggerPx": "",
            "tpTriggerPxType": "",
            "tpOrdPx": "",
            "slTriggerPx": "",
            "slTriggerPxType": "",
            "slOrdPx": "",
            "attachAlgoOrds": [],
            "linkedAlgoOrd": {"algoId": ""},
            "stpId": "",
            "stpMode": order.stp_mode,
            "feeCcy": order.fee_ccy,
            "fee": fmt(order.fee),
            "rebateCcy": order.rebate_ccy,
            "rebate": "0",
            "pnl": "0",
            "source": "",
            "cancelSource": order.cancel_source,
            "cancelSourceReason": CANCEL_SOURCE_REASONS.get(order.cancel_source, "")
            if order.cancel_source
            else "",
            "amendSource": "",
            "category": "normal",
            "isTpLimit": "false",
            "uTime": str(order.u_time),
            "cTime": str(order.c_time),
            "reqId": req_id,
            "amendResult": amend_result,
            "reduceOnly": "true" if order.reduce_only else "false",
            "quickMgnType": "",
            "algoClOrdId": "",
            "algoId": "",
            "lastPx": fmt(market.last_px) if market.last_px is not None else "",
            "code": code,
            "msg": msg,
            "tradeQuoteCcy": order.inst.quote_ccy,
            "outcome": "",
        }

    # ------------------------------------------------------------------ cancel (§2.3, §2.4)

    def validate_ref(self, req: Any) -> tuple[str, str, str]:
        """instId + (ordId | clOrdId) of a cancel/amend argument; raises 50014/50015."""
        if not isinstance(req, dict):
            raise OkxError("50002", self.msg("50002"))
        inst_id = req.get("instId")
        if not inst_id:
            raise OkxError("50014", "Parameter instId can not be empty")
        ord_id = req.get("ordId") or ""
        cl = req.get("clOrdId") or ""
        if not ord_id and not cl:
            raise OkxError("50015", "Either parameter ordId or clOrdId is required.")
        if not isinstance(ord_id, str) or not isinstance(cl, str):
            raise OkxError("51000", "Parameter ordId error")
        return str(inst_id), ord_id, cl

    def find(self, inst_id: str, ord_id: str, cl: str) -> Order | None:
        """ordId wins if both are given (§2.3); clOrdId -> the latest order with it (§2.6)."""
        oid = ord_id or self.latest_by_cl.get(cl, "")
        order = self.orders.get(oid)
        if order is None or order.inst.inst_id != inst_id:
            return None
        return order

    def cancel(self, inst_id: str, ord_id: str, cl: str) -> tuple[dict[str, Any], Order | None]:
        """Accept a cancel (sCode 0 = accepted only, §2.3); the effect comes later via ``schedule``."""
        now = self.now_ms()
        order = self.find(inst_id, ord_id, cl)
        if order is None or not order.is_open:
            item = {
                "clOrdId": cl,
                "ordId": ord_id,
                "ts": str(now),
                "sCode": "51400",
                "sMsg": self.msg("51400"),
            }
            return item, order
        order.cancel_pending = True
        item = {
            "clOrdId": order.cl_ord_id,
            "ordId": order.ord_id,
            "ts": str(now),
            "sCode": "0",
            "sMsg": self.msg("cancel_ok"),
        }
        self.sink.schedule(lambda: self.apply_cancel(order.ord_id, "1"))
        return item, order

    def apply_cancel(self, ord_id: str, source: str) -> None:
        order = self.orders[ord_id]
        order.cancel_pending = False
        if order.is_open:  # may have filled in the meantime: then the cancel simply did nothing
            self._terminate(order, "canceled", source)

    # ------------------------------------------------------------------ amend (§2.5)

    def validate_amend(self, req: dict[str, Any], inst: Instrument | None) -> AmendRequest:
        new_sz_raw, new_px_raw = req.get("newSz", ""), req.get("newPx", "")
        if new_sz_raw in (None, "") and new_px_raw in (None, ""):
            raise OkxError("50015", "Either parameter newSz or newPx is required.")
        strict = self.strict_string_numbers
        new_sz = _dec(new_sz_raw, "newSz", strict=strict) if new_sz_raw not in (None, "") else None
        new_px = _dec(new_px_raw, "newPx", strict=strict) if new_px_raw not in (None, "") else None
        if new_sz is not None and new_sz <= 0:
            raise OkxError("51000", "Parameter newSz error")
        if new_px is not None and new_px <= 0:
            raise OkxError("51000", "Parameter newPx error")
        req_id = req.get("reqId", "") or ""
        if req_id and (not isinstance(req_id, str) or not _CL_ORD_ID.match(req_id)):
            raise OkxError("51000", "Parameter reqId error")
        cxl = req.get("cxlOnFail", False)
        if not isinstance(cxl, bool):
            raise OkxError("51000", "Parameter cxlOnFail error")
        return AmendRequest(
            new_sz=new_sz,
            new_px=new_px,
            new_px_str=new_px_raw if isinstance(new_px_raw, str) else (fmt(new_px) if new_px else ""),
            new_sz_str=new_sz_raw if isinstance(new_sz_raw, str) else (fmt(new_sz) if new_sz else ""),
            req_id=req_id,
            cxl_on_fail=cxl,
        )

    def amend(
        self, inst_id: str, ord_id: str, cl: str, amend: AmendRequest
    ) -> tuple[dict[str, Any], Order | None]:
        now = self.now_ms()
        order = self.find(inst_id, ord_id, cl)
        base = {"clOrdId": cl, "ordId": ord_id, "ts": str(now), "reqId": amend.req_id, "subCode": ""}
        if order is None:
            # Unknown order: 51603 (the sheet only gives 51503 for filled/canceled; chosen here).
            return {**base, "sCode": "51603", "sMsg": self.msg("51603")}, None
        base.update(clOrdId=order.cl_ord_id, ordId=order.ord_id)
        if not order.is_open or order.ord_type == "market":
            return {**base, "sCode": "51503", "sMsg": self.msg("51503")}, order
        if amend.new_sz is not None and amend.new_sz % order.inst.lot_sz != 0:
            return {**base, "sCode": "51121", "sMsg": self.msg("51121")}, order
        if amend.new_px is not None and amend.new_px % order.inst.tick_sz != 0:
            return {**base, "sCode": "51000", "sMsg": "Parameter newPx error"}, order
        if order.amends_in_flight >= self.max_amends_in_flight:
            return {**base, "sCode": "51513", "sMsg": self.msg("51513")}, order
        order.amends_in_flight += 1
        self.sink.schedule(lambda: self.apply_amend(order.ord_id, amend))
        return {**base, "sCode": "0", "sMsg": self.msg("amend_ok")}, order

    def apply_amend(self, ord_id: str, amend: AmendRequest) -> None:
        order = self.orders[ord_id]
        order.amends_in_flight -= 1
        rid = amend.req_id
        if not order.is_open:
            # §2.5: outcome via the orders channel amendResult; -1 = failed.
            self._push(order, req_id=rid, amend_result="-1", code="51503", msg=self.msg("51503"))
            return
        new_px = amend.new_px if amend.new_px is not None else order.px
        new_sz = amend.new_sz if amend.new_sz is not None else order.sz
        assert new_px is not None
        market = self.markets[order.inst.inst_id]
        fail: tuple[str, str] | None = None
        if order.ord_type == "post_only":
            probe_cross = (order.side == "buy" and market.ask is not None and new_px >= market.ask) or (
                order.side == "sell" and market.bid is not None and new_px <= market.bid
            )
            if probe_cross:
                fail = ("51000", "Post only order would take liquidity")
        if fail is None and new_sz > order.acc_fill_sz:
            fail = self._amend_funds_fail(order, new_px, new_sz)
        if fail is not None:
            if amend.cxl_on_fail:
                # amendResult 1 = auto-cancel after a failed amend (§2.5); cancelSource for this case
                # is not in the sheet ("0" system chosen).
                self._terminate(
                    order, "canceled", "0", req_id=rid, amend_result="1", code=fail[0], msg=fail[1]
                )
            else:
                self._push(order, req_id=rid, amend_result="-1", code=fail[0], msg=fail[1])
            return
        price_changed = new_px != order.px
        size_up = new_sz > order.sz
        if amend.new_px is not None:
            order.px, order.px_str = new_px, amend.new_px_str
        if amend.new_sz is not None:
            order.sz, order.sz_str = new_sz, amend.new_sz_str
        if price_changed or size_up:
            self._seq += 1
            order.seq = self._seq  # loses time priority
        order.u_time = self.now_ms()
        if new_sz <= order.acc_fill_sz:
            # §2.5: newSz <= filled on a partially filled order -> the order becomes filled.
            self._terminate(order, "filled", "", req_id=rid, amend_result="0")
            return
        self._refreeze(order, new_px)
        self._push(order, req_id=rid, amend_result="0")
        self.sink.balance_update()
        if self._crosses(order, market):
            self._take(order, market)

    def _amend_funds_fail(self, order: Order, new_px: Decimal, new_sz: Decimal) -> tuple[str, str] | None:
        """51008 when the balance cannot cover the amended order (a hook: derivatives check margin)."""
        remaining = new_sz - order.acc_fill_sz
        need = new_px * remaining if order.side == "buy" else remaining
        ccy = order.inst.quote_ccy if order.side == "buy" else order.inst.base_ccy
        if need - order.frozen > self.balance(ccy).avail:
            return ("51008", self.msg("51008", ccy=ccy))
        return None

    def _refreeze(self, order: Order, new_px: Decimal) -> None:
        """Freeze what the amended order needs (a hook: derivative orders freeze no spot balance)."""
        ccy = order.inst.quote_ccy if order.side == "buy" else order.inst.base_ccy
        need = new_px * order.remaining if order.side == "buy" else order.remaining
        self.balance(ccy).frozen += need - order.frozen
        order.frozen = need

    # ------------------------------------------------------------------ market data

    def set_market(self, inst_id: str, bid: Decimal, ask: Decimal, bid_sz: Decimal, ask_sz: Decimal) -> None:
        market = self.markets[inst_id]
        market.bid, market.ask = bid, ask
        market.bid_sz = market.bid_left = bid_sz
        market.ask_sz = market.ask_left = ask_sz
        market.book_seq += 1
        market.ts = self.now_ms()
        if market.last_px is None:
            market.last_px = (bid + ask) / 2
        # Resting orders crossed by the new touch fill as makers at their own price, limited by the
        # size available at the crossing level.
        used = self._fill_resting(inst_id, "buy", ask, ask_sz, inclusive=True)
        if used:
            market.ask_left -= used
            self._public_print(inst_id, ask, used, "sell")
        used = self._fill_resting(inst_id, "sell", bid, bid_sz, inclusive=True)
        if used:
            market.bid_left -= used
            self._public_print(inst_id, bid, used, "buy")
        self.sink.market_update(inst_id)

    def print_trade(self, inst_id: str, px: Decimal, sz: Decimal, side: str) -> None:
        if side not in ("buy", "sell"):
            raise ValueError("side must be 'buy' or 'sell'")
        self._public_print(inst_id, px, sz, side)
        # A taker buy at px lifts resting sells priced at/below px; a taker sell hits bids at/above px.
        maker_side = "sell" if side == "buy" else "buy"
        self._fill_resting(inst_id, maker_side, px, sz, inclusive=self.trade_fill_inclusive)
        self.sink.market_update(inst_id)

    def ticker(self, inst_id: str) -> dict[str, Any] | None:
        m = self.markets[inst_id]
        if m.bid is None or m.ask is None:
            return None
        last = m.last_px if m.last_px is not None else m.bid
        return {
            "instType": "SPOT",
            "instId": inst_id,
            "last": fmt(last),
            "lastSz": fmt(m.last_sz),
            "askPx": fmt(m.ask),
            "askSz": fmt(m.ask_left),
            "bidPx": fmt(m.bid),
            "bidSz": fmt(m.bid_left),
            "open24h": fmt(m.open if m.open is not None else last),
            "high24h": fmt(m.high if m.high is not None else last),
            "low24h": fmt(m.low if m.low is not None else last),
            "volCcy24h": fmt(m.vol_ccy),
            "vol24h": fmt(m.vol),
            "sodUtc0": fmt(m.open if m.open is not None else last),
            "sodUtc8": fmt(m.open if m.open is not None else last),
            "ts": str(m.ts or self.now_ms()),
        }

    def books5(self, inst_id: str) -> dict[str, Any] | None:
        """§5.2: 5-level snapshot; levels [px, sz, "0", numOrders].  Only the top level is real
        liquidity; levels 2-5 are cosmetic (one tick apart, same size)."""
        m = self.markets[inst_id]
        if m.bid is None or m.ask is None:
            return None
        tick = self.instruments[inst_id].tick_sz
        asks = [[fmt(m.ask), fmt(m.ask_left), "0", "1"]] if m.ask_left > 0 else []
        bids = [[fmt(m.bid), fmt(m.bid_left), "0", "1"]] if m.bid_left > 0 else []
        for k in range(1, 6):
            if len(asks) >= 5:
                break
            asks.append([fmt(m.ask + tick * k), fmt(m.ask_sz), "0", "1"])
        for k in range(1, 6):
            if len(bids) >= 5:
                break
            if m.bid - tick * k <= 0:
                break
            bids.append([fmt(m.bid - tick * k), fmt(m.bid_sz), "0", "1"])
        return {
            "asks": asks,
            "bids": bids,
            "instId": inst_id,
            "ts": str(m.ts or self.now_ms()),
            "seqId": m.book_seq,
        }

    # ------------------------------------------------------------------ queries

    def pending(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """§2.7 orders-pending with instType/instId/ordType/state/after/before/limit filters."""
        orders = [o for o in self.orders.values() if o.is_open]
        if params.get("instType"):
            orders = [o for o in orders if o.inst.record["instType"] == params["instType"]]
        if params.get("instId"):
            orders = [o for o in orders if o.inst.inst_id == params["instId"]]
        if params.get("ordType"):
            wanted = set(params["ordType"].split(","))
            orders = [o for o in orders if o.ord_type in wanted]
        if params.get("state"):
            orders = [o for o in orders if o.state == params["state"]]
        if params.get("after"):
            orders = [o for o in orders if int(o.ord_id) < int(params["after"])]
        if params.get("before"):
            orders = [o for o in orders if int(o.ord_id) > int(params["before"])]
        orders.sort(key=lambda o: int(o.ord_id), reverse=True)  # newest first
        return [self.order_rest(o) for o in orders[: _limit(params)]]

    def fills_query(self, params: dict[str, str], *, history: bool = False) -> list[dict[str, Any]]:
        """§2.8 fills (last 3 days; ``history``: fills-history, 3 months) with
        instType/instId/ordId/after/before (billId cursors)/begin/end (ms on ts)/limit (<= 100)."""
        oldest = self.now_ms() - (self.fills_history_ms if history else self.fills_recent_ms)
        fills = [f for f in self.fills if int(f["ts"]) >= oldest]
        if params.get("instType"):
            fills = [f for f in fills if f["instType"] == params["instType"]]
        for key in ("instId", "ordId"):
            if params.get(key):
                fills = [f for f in fills if f[key] == params[key]]
        if params.get("after"):
            fills = [f for f in fills if int(f["billId"]) < int(params["after"])]
        if params.get("before"):
            fills = [f for f in fills if int(f["billId"]) > int(params["before"])]
        if params.get("begin"):
            fills = [f for f in fills if int(f["ts"]) > int(params["begin"])]
        if params.get("end"):
            fills = [f for f in fills if int(f["ts"]) < int(params["end"])]
        fills.sort(key=lambda f: int(f["billId"]), reverse=True)
        return fills[: _limit(params)]

    def balance_record(self, ccys: list[str] | None = None) -> dict[str, Any]:
        """§2.9: one object; details only for non-zero currencies."""
        now = self.now_ms()
        details = []
        total = D0
        for ccy, bal in sorted(self.balances.items()):
            if ccys and ccy not in ccys:
                continue
            if bal.cash == 0 and bal.frozen == 0:
                continue
            usd = self._usd(ccy)
            eq_usd = bal.cash * usd if usd is not None else None
            if eq_usd is not None:
                total += eq_usd
            details.append(_balance_detail(ccy, bal, eq_usd, now))
        return {
            "uTime": str(now),
            "totalEq": fmt(total),
            "isoEq": "0",
            "adjEq": "",
            "availEq": "",
            "ordFroz": "",
            "imr": "",
            "mmr": "",
            "borrowFroz": "",
            "mgnRatio": "",
            "notionalUsd": "",
            "notionalUsdForBorrow": "",
            "notionalUsdForSwap": "",
            "notionalUsdForFutures": "",
            "notionalUsdForOption": "",
            "upl": "",
            "delta": "",
            "deltaLever": "",
            "deltaNeutralStatus": "",
            "details": details,
        }

    def _usd(self, ccy: str) -> Decimal | None:
        if ccy in ("USDT", "USDC", "USD"):
            return Decimal(1)
        for inst in self.instruments.values():
            m = self.markets[inst.inst_id]
            if inst.base_ccy == ccy and inst.quote_ccy == "USDT" and m.bid is not None and m.ask is not None:
                return (m.bid + m.ask) / 2
        return None

    def age_fills(self, ms: int) -> None:
        """Test helper: make every fill so far ``ms`` older (``ts``/``fillTime``), as after a long outage."""
        for f in self.fills:
            f["ts"] = str(int(f["ts"]) - ms)
            f["fillTime"] = str(int(f["fillTime"]) - ms)

    # ------------------------------------------------------------------ cancel-all-after (§2.13)

    def set_cancel_all_after(self, timeout_s: int, tag: str) -> CancelAllAfter:
        now = self.now_ms()
        if (
            tag
            and tag not in self.caa
            and sum(1 for k, v in self.caa.items() if k and v.deadline is not None) >= 20
        ):
            raise self.err("51071")
        caa = self.caa.setdefault(tag, CancelAllAfter(tag=tag))
        caa.timeout_s = timeout_s
        caa.set_at_ms = now
        if timeout_s == 0:
            caa.trigger_time_ms = 0
            caa.deadline = None
        else:
            caa.trigger_time_ms = now + timeout_s * 1000
            caa.deadline = self.mono() + timeout_s
        return caa

    def caa_rate_ok(self, tag: str) -> bool:
        """§2.13 / §7: 1 request per second per UID + tag."""
        now = self.mono()
        last = self._caa_last_call.get(tag)
        if last is not None and now - last < 1.0:
            return False
        self._caa_last_call[tag] = now
        return True

    def fire_cancel_all_after(self, tag: str) -> int:
        """The switch expired: cancel pending orders (tag-scoped if ``tag``) with cancelSource 20."""
        caa = self.caa[tag]
        caa.deadline = None
        caa.trigger_time_ms = 0
        caa.fired_count += 1
        caa.last_fired_ms = self.now_ms()
        victims = [o for o in self.orders.values() if o.is_open and (not tag or o.tag == tag)]
        for order in victims:  # order by order (§2.13)
            self._terminate(order, "canceled", "20")
        return len(victims)


def _limit(params: dict[str, str]) -> int:
    try:
        return max(1, min(100, int(params.get("limit") or 100)))
    except ValueError:
        return 100


def _balance_detail(ccy: str, bal: Balance, eq_usd: Decimal | None, now: int) -> dict[str, Any]:
    detail: dict[str, Any] = {
        k: ""
        for k in (
            "isoEq disEq fixedBal liab upl uplLiab crossLiab rewardBal isoLiab mgnRatio imr mmr interest "
            "twap "
            "frpType maxLoan borrowFroz notionalLever stgyEq isoUpl spotInUseAmt clSpotInUseAmt maxSpotInUse "
            "spotIsoBal smtSyncEq spotCopyTradingEq spotBal openAvgPx accAvgPx spotUpl spotUplRatio totalPnl "
            "totalPnlRatio colRes colBorrAutoConversion autoLendStatus autoLendMtAmt"
        ).split()
    }
    detail.update(
        {
            "ccy": ccy,
            "eq": fmt(bal.cash),
            "cashBal": fmt(bal.cash),
            "uTime": str(bal.u_time or now),
            "availEq": fmt(bal.avail),
            "availBal": fmt(bal.avail),
            "frozenBal": fmt(bal.frozen),
            "ordFrozen": fmt(bal.frozen),
            "eqUsd": fmt(eq_usd) if eq_usd is not None else "",
            "collateralEnabled": False,  # §3.3: booleans
            "collateralRestrict": False,
        }
    )
    return detail
