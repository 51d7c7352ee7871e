"""Plain data shared by the wire codec, the server, the venues and the client.

Pure: no I/O, no trio, no zmq. Field names follow docs/protocol.md exactly, so that
``dataclasses.asdict``-style conversion in :mod:`seqtrade.wire` is a straight copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "Side",
    "OrderType",
    "OrderStatus",
    "TERMINAL_STATUSES",
    "OPEN_STATUSES",
    "Ticker",
    "Book",
    "Trade",
    "VenueStatus",
    "OrderRequest",
    "CancelRequest",
    "AmendRequest",
    "CancelAll",
    "Hello",
    "Heartbeat",
    "OrderReport",
    "Welcome",
    "PROTOCOL_VERSION",
]

PROTOCOL_VERSION = 1


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"
    POST_ONLY = "post_only"
    IOC = "ioc"
    FOK = "fok"


class OrderStatus(StrEnum):
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


TERMINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})
OPEN_STATUSES = frozenset({OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})


# --------------------------------------------------------------------------- market data


@dataclass(slots=True)
class Ticker:
    symbol: str
    ts: int
    last_price: float
    bid_price: float
    ask_price: float
    bid_size: float
    ask_size: float
    volume_24h: float
    seq: int = 0
    gw_ns: int = 0


@dataclass(slots=True)
class Book:
    symbol: str
    ts: int
    bids: list[list[float]]
    asks: list[list[float]]
    seq: int = 0
    gw_ns: int = 0


@dataclass(slots=True)
class Trade:
    symbol: str
    ts: int
    trade_id: str
    price: float
    size: float
    side: str  # the taker's side
    seq: int = 0
    gw_ns: int = 0


@dataclass(slots=True)
class VenueStatus:
    venue: str
    connected: bool
    symbols: list[str]
    ts: int
    seq: int = 0
    gw_ns: int = 0


# --------------------------------------------------------------------------- strategy -> server


@dataclass(slots=True)
class OrderRequest:
    strategy_id: str
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    price: float | None
    quantity: float
    timestamp: int  # ms since the epoch, the strategy's clock when it sent the request


@dataclass(slots=True)
class CancelRequest:
    strategy_id: str
    client_order_id: str


@dataclass(slots=True)
class AmendRequest:
    strategy_id: str
    client_order_id: str
    price: float | None = None
    quantity: float | None = None  # the new total quantity


@dataclass(slots=True)
class CancelAll:
    strategy_id: str
    symbol: str | None = None


@dataclass(slots=True)
class Hello:
    strategy_id: str
    last_seq: int
    nonce: str | int
    protocol: int = PROTOCOL_VERSION


@dataclass(slots=True)
class Heartbeat:
    strategy_id: str
    timestamp: int


# --------------------------------------------------------------------------- server -> strategy


@dataclass(slots=True)
class OrderReport:
    seq: int
    client_order_id: str
    exchange_order_id: str
    strategy_id: str
    symbol: str
    side: str
    order_type: str
    price: float
    quantity: float
    status: OrderStatus
    filled_quantity: float = 0.0  # cumulative
    filled_price: float = 0.0  # average price of all fills so far
    last_fill_quantity: float = 0.0
    last_fill_price: float = 0.0
    fee: float = 0.0  # cumulative cost paid for this order, positive
    error_msg: str = ""
    timestamp: int = 0  # ms since the epoch
    gw_ns: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(slots=True)
class Welcome:
    strategy_id: str
    nonce: str | int
    last_seq: int
    open_orders: list[OrderReport] = field(default_factory=list)
    protocol: int = PROTOCOL_VERSION
    gw_ns: int = 0
