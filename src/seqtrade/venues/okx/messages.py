"""Payload shapes and constants of the OKX v5 API (docs/okx.md §2, §4-§6).

Pure: no I/O. ``TypedDict`` shapes document what the adapter reads; every OKX number is a string
(§3.3) except the few noted. Nothing here validates: :mod:`.parse` converts defensively.
"""

from __future__ import annotations

from typing import Any, Final, TypedDict

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
    "CODE_ORDER_NOT_FOUND",
    "CODE_TIMESTAMP_EXPIRED",
    "CODE_RATE_LIMIT",
    "CODE_CANCEL_FAILED",
    "NOTICE_SERVICE_UPGRADE",
    "OUTCOME_UNKNOWN_CODES",
    "Envelope",
    "WriteResult",
    "OkxInstrument",
    "OkxTicker",
    "OkxBook",
    "OkxTrade",
    "OkxOrder",
    "OkxFill",
    "WsEvent",
    "WsPush",
    "WsOpResponse",
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

CODE_ORDER_NOT_FOUND: Final = "51603"
CODE_TIMESTAMP_EXPIRED: Final = "50102"
CODE_RATE_LIMIT: Final = "50011"
CODE_CANCEL_FAILED: Final = "51400"
NOTICE_SERVICE_UPGRADE: Final = "64008"
# top-level answers that do not say whether a write was carried out (§2.14): resolve by query
OUTCOME_UNKNOWN_CODES: Final = frozenset({"50001", "50004", "50013", "50026"})


class Envelope(TypedDict, total=False):
    """Every REST response and WS op response: string ``code``, ``msg``, ``data`` list (§2.0)."""

    code: str
    msg: str
    data: list[Any]
    inTime: str
    outTime: str
    id: str  # WS op responses only
    op: str  # WS op responses only


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


class WsEvent(TypedDict, total=False):
    event: str  # subscribe | unsubscribe | login | error | notice | channel-conn-count(-error)
    code: str
    msg: str
    arg: dict[str, Any]
    channel: str
    connCount: str
    connId: str
    id: str


class WsPush(TypedDict, total=False):
    arg: dict[str, Any]
    action: str
    data: list[Any]


class WsOpResponse(TypedDict, total=False):
    id: str
    op: str
    code: str
    msg: str
    data: list[WriteResult]
    inTime: str
    outTime: str
