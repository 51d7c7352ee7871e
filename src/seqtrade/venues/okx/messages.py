"""Payload shapes and constants of the OKX v5 API (docs/okx.md §2, §4-§6), and the typed messages
of the WebSocket.

Pure: no I/O. ``TypedDict`` shapes document the items the adapter reads (every OKX number is a string,
§3.3, except the few noted); nothing there validates: :mod:`.parse` converts defensively. A WebSocket
frame is decoded once, at the socket boundary (:func:`ws_message`), into one of :class:`WsEvent`,
:class:`WsPush` or :class:`WriteAnswer` (a trading op's answer; the REST answer to a write decodes
into the same, :func:`write_answer`), so that handlers read typed fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypedDict, cast

from .errors import SUCCESS

__all__ = [
    "LIVE_WS_PUBLIC",
    "LIVE_WS_PRIVATE",
    "DEMO_WS_PUBLIC",
    "DEMO_WS_PRIVATE",
    "PATH_TIME",
    "PATH_INSTRUMENTS",
    "PATH_PLACE",
    "PATH_CANCEL",
    "PATH_AMEND",
    "PATH_ORDER",
    "PATH_PENDING",
    "PATH_FILLS",
    "PATH_FILLS_HISTORY",
    "PATH_CANCEL_ALL_AFTER",
    "PUBLIC_CHANNELS",
    "ORDERS_CHANNEL",
    "Envelope",
    "WriteResult",
    "OkxInstrument",
    "OkxTicker",
    "OkxBook",
    "OkxBooksItem",
    "BOOKS_CHANNEL",
    "OkxTrade",
    "OkxOrder",
    "OkxFill",
    "WsEvent",
    "WsPush",
    "WriteAnswer",
    "WsMessage",
    "ws_message",
    "write_answer",
]

LIVE_WS_PUBLIC: Final = "wss://ws.okx.com:8443/ws/v5/public"
LIVE_WS_PRIVATE: Final = "wss://ws.okx.com:8443/ws/v5/private"
DEMO_WS_PUBLIC: Final = "wss://wspap.okx.com:8443/ws/v5/public"
DEMO_WS_PRIVATE: Final = "wss://wspap.okx.com:8443/ws/v5/private"

PATH_TIME: Final = "/api/v5/public/time"
PATH_INSTRUMENTS: Final = "/api/v5/public/instruments"
PATH_PLACE: Final = "/api/v5/trade/order"
PATH_CANCEL: Final = "/api/v5/trade/cancel-order"
PATH_AMEND: Final = "/api/v5/trade/amend-order"
PATH_ORDER: Final = "/api/v5/trade/order"
PATH_PENDING: Final = "/api/v5/trade/orders-pending"
PATH_FILLS: Final = "/api/v5/trade/fills"  # last 3 days, 60 req / 2 s per UID
PATH_FILLS_HISTORY: Final = "/api/v5/trade/fills-history"  # last 3 months, 10 req / 2 s per UID
PATH_CANCEL_ALL_AFTER: Final = "/api/v5/trade/cancel-all-after"

PUBLIC_CHANNELS: Final = ("tickers", "books5", "trades")
BOOKS_CHANNEL: Final = "books"  # 400 levels, snapshot then incremental updates (§5.3), when configured
ORDERS_CHANNEL: Final = "orders"


class Envelope(TypedDict, total=False):
    """Every REST response: string ``code``, ``msg``, ``data`` list (§2.0). (A WS op answer has the
    same fields plus ``id`` and ``op``: decoded into :class:`WriteAnswer`.)"""

    code: str
    msg: str
    data: list[Any]
    inTime: str
    outTime: str


class WriteResult(TypedDict, total=False):
    """One item of a place/cancel/amend answer (§2.1, §2.3, §2.5, §6)."""

    clOrdId: str
    ordId: str
    tag: str
    ts: str
    reqId: str
    sCode: str
    sMsg: str
    subCode: str


class OkxInstrument(TypedDict, total=False):
    instType: str
    instId: str
    tickSz: str
    lotSz: str
    minSz: str
    ctVal: str
    state: str
    instIdCode: int | None  # integer or null (§2.11)
    # derivatives (SWAP, FUTURES): docs/okx.md "Derivatives"
    ctValCcy: str
    ctType: str  # "linear" | "inverse"
    settleCcy: str
    baseCcy: str
    quoteCcy: str
    instFamily: str
    uly: str
    lever: str  # the exchange's maximum leverage
    expTime: str


class OkxTicker(TypedDict, total=False):
    instId: str
    last: str
    lastSz: str
    askPx: str
    askSz: str
    bidPx: str
    bidSz: str
    vol24h: str
    ts: str


class OkxBook(TypedDict, total=False):
    asks: list[list[str]]  # [price, size, "0", numOrders]
    bids: list[list[str]]
    instId: str
    ts: str
    seqId: int


class OkxBooksItem(TypedDict, total=False):
    """One ``books`` push item (§5.3): levels as received, the seqId chain and the checksum."""

    asks: list[list[str]]  # [price, size, "0", numOrders]; size "0" deletes the level
    bids: list[list[str]]
    ts: str
    checksum: int  # signed CRC32 of the top 25 levels; 0 = not sent
    prevSeqId: int  # -1 on a snapshot
    seqId: int


class OkxTrade(TypedDict, total=False):
    instId: str
    tradeId: str
    px: str
    sz: str
    side: str
    ts: str


class OkxOrder(TypedDict, total=False):
    """An order as the orders channel pushes it (§5.6) or GET trade/order returns it (§2.6)."""

    instType: str
    instId: str
    ordId: str
    clOrdId: str
    px: str
    sz: str
    ordType: str
    side: str
    tgtCcy: str
    state: str  # live | partially_filled | filled | canceled | mmp_canceled
    accFillSz: str
    avgPx: str  # "0" (push) or "" (REST) before any fill
    fillPx: str
    fillSz: str
    fillTime: str
    tradeId: str
    fee: str  # cumulative, negative = charged
    feeCcy: str
    fillFee: str
    cancelSource: str
    amendResult: str
    reqId: str
    code: str
    msg: str
    cTime: str
    uTime: str


class OkxFill(TypedDict, total=False):
    """One item of GET trade/fills or trade/fills-history (§2.8), newest first."""

    instId: str
    tradeId: str
    ordId: str
    clOrdId: str
    billId: str  # the paging cursor (after / before)
    fillPx: str
    fillSz: str
    side: str
    fee: str  # this fill's fee, negative = charged
    feeCcy: str
    ts: str
    fillTime: str


# --------------------------------------------------------------------------- WebSocket messages


@dataclass(frozen=True, slots=True)
class WsEvent:
    """An ``event`` message (§4.2-§4.5): subscribe | unsubscribe | login | error | notice |
    channel-conn-count | channel-conn-count-error. ``code`` is ``"0"`` when the message has none."""

    event: str
    code: str = SUCCESS
    msg: str = ""
    channel: str = ""  # channel-conn-count(-error)
    conn_count: str = ""
    id: str = ""  # the request it answers, for errors of trading ops


@dataclass(frozen=True, slots=True)
class WsPush:
    """A channel push (§5): ``arg`` says which channel and instrument, ``data`` holds the items."""

    channel: str
    inst_id: str  # the push's ``arg.instId`` ("" for channels subscribed by instType)
    data: tuple[Mapping[str, Any], ...]
    # the top-level ``eventType`` (``snapshot`` / ``event_update``), ``curPage`` and ``lastPage`` of
    # pushes that have them (positions, account: §5, D§5.1); "" / 1 / True otherwise
    event_type: str = ""
    cur_page: int = 1
    last_page: bool = True
    action: str = ""  # ``books`` (§5.3): "snapshot" or "update"; "" where the channel sends none

    def orders(self) -> tuple[OkxOrder, ...]:
        """The items of an ``orders`` push (§5.6)."""
        return self.data  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class WriteAnswer:
    """The answer to one place, cancel or amend: a REST envelope (§2.0) or a WS op answer (§6).

    ``data`` holds the items as received; :attr:`items` those that carry a per-item ``sCode``.
    """

    code: str
    msg: str = ""
    data: tuple[Any, ...] = ()
    id: str = ""  # WS only: the request id echoed
    op: str = ""  # WS only

    @property
    def items(self) -> list[WriteResult]:
        return [cast(WriteResult, d) for d in self.data if isinstance(d, Mapping) and "sCode" in d]

    @property
    def first(self) -> WriteResult:
        """The first item (a single write has one), or an empty one."""
        return self.data[0] if self.data and isinstance(self.data[0], Mapping) else {}  # type: ignore[return-value]

    def error(self) -> str | None:
        """``"<sCode> <sMsg>"`` of a failed single write, or None when it succeeded.

        The per-item ``sCode`` is the real reason (§2.0); an answer without items (auth, 50011, 60013)
        reports its top-level ``code``/``msg``. A non-empty ``sMsg`` with ``sCode "0"`` is success.
        """
        item = self.first
        if "sCode" in item:
            s_code = str(item.get("sCode", ""))
            if s_code == SUCCESS:
                return None
            return f"{s_code} {item.get('sMsg', '')}".strip()
        if self.code == SUCCESS:
            return None
        return f"{self.code} {self.msg}".strip()


WsMessage = WsEvent | WsPush | WriteAnswer


def _text(d: Mapping[str, Any], key: str, default: str = "") -> str:
    value = d.get(key)
    return default if value is None else str(value)


def write_answer(env: Mapping[str, Any]) -> WriteAnswer:
    """A write's answer (REST envelope or WS op answer) as a :class:`WriteAnswer`."""
    data = env.get("data")
    return WriteAnswer(
        code=_text(env, "code"),
        msg=_text(env, "msg"),
        data=tuple(data) if isinstance(data, list) else (),
        id=_text(env, "id"),
        op=_text(env, "op"),
    )


def ws_message(text: str | bytes) -> WsMessage | None:
    """One WebSocket frame, typed; None for ``pong`` and for anything not a JSON object.

    ``event`` messages are :class:`WsEvent`; messages with an ``id`` (and no ``event``) answer a
    trading op (:class:`WriteAnswer`); the rest are channel pushes (:class:`WsPush`).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if text == "pong":
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    if "event" in obj:
        return WsEvent(
            event=_text(obj, "event"),
            code=_text(obj, "code", SUCCESS),
            msg=_text(obj, "msg"),
            channel=_text(obj, "channel"),
            conn_count=_text(obj, "connCount"),
            id=_text(obj, "id"),
        )
    if "id" in obj:
        return write_answer(obj)
    arg = obj.get("arg")
    if not isinstance(arg, Mapping):
        arg = {}
    data = obj.get("data")
    if isinstance(data, list) and _text(arg, "channel").startswith("candle"):  # rows are arrays (§5.5)
        data = [dict(zip(CANDLE_FIELDS, d, strict=False)) for d in data if isinstance(d, list)]
    items = tuple(d for d in data if isinstance(d, Mapping)) if isinstance(data, list) else ()
    page = obj.get("curPage", 1)
    return WsPush(channel=_text(arg, "channel"), inst_id=_text(arg, "instId"), data=items,
                  event_type=_text(obj, "eventType"), cur_page=page if isinstance(page, int) else 1,
                  last_page=obj.get("lastPage", True) is not False, action=_text(obj, "action"))  # fmt: skip


CANDLE_FIELDS: Final = ("ts", "o", "h", "l", "c", "vol", "volCcy", "volCcyQuote", "confirm")
"""The names of a candle row's columns (§5.5; REST candles alike): a push's rows become maps of them."""
