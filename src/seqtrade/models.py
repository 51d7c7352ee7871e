"""Plain data shared by the wire codec, the server, the venues and the client.

Pure: no I/O, no trio, no zmq. Field names follow docs/protocol.md exactly, so that
``dataclasses.asdict``-style conversion in :mod:`seqtrade.wire` is a straight copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .instruments import Instrument

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
    "Depth",
    "BookUpdate",
    "BookStatus",
    "MarkPrice",
    "FundingRate",
    "PriceLimit",
    "AccountEventKind",
    "AccountEvent",
    "OrderRequest",
    "CancelRequest",
    "AmendRequest",
    "CancelAll",
    "Hello",
    "Heartbeat",
    "Goodbye",
    "OrderReport",
    "Welcome",
    "Refusal",
    "PROTOCOL_VERSION",
]

PROTOCOL_VERSION = 1


class Side(StrEnum):
    """An order's side. A ``StrEnum``: each member equals its string (``Side.BUY == "buy"``)."""

    BUY = "buy"
    """``"buy"``"""
    SELL = "sell"
    """``"sell"``"""


class OrderType(StrEnum):
    """An order's type: the ``order_type`` of a request and of its reports."""

    LIMIT = "limit"
    """``"limit"``: trades at the limit price or better; the rest rests in the book until cancelled."""
    MARKET = "market"
    """``"market"``: trades at once at the best prices available; no price."""
    POST_ONLY = "post_only"
    """``"post_only"``: a limit order that only adds liquidity; rejected if it would trade at once."""
    IOC = "ioc"
    """``"ioc"``, immediate or cancel: trades what it can at once, the rest is cancelled."""
    FOK = "fok"
    """``"fok"``, fill or kill: trades its whole quantity at once, or nothing and is cancelled."""


class OrderStatus(StrEnum):
    """The status of an order in an [`OrderReport`][seqtrade.client.OrderReport].

    A ``StrEnum``: ``report.status == "filled"`` works. An order starts ``accepted`` or ``rejected``
    (every order gets exactly one of the two first), may go ``partially_filled``, and ends
    ``filled``, ``cancelled`` or ``rejected``; an order that ended never opens again.
    """

    ACCEPTED = "accepted"
    """``"accepted"``: the venue took the order; open, nothing filled (or the fill is on its way)."""
    PARTIALLY_FILLED = "partially_filled"
    """``"partially_filled"``: open, part of the quantity filled."""
    FILLED = "filled"
    """``"filled"``: done, the whole quantity filled."""
    CANCELLED = "cancelled"
    """``"cancelled"``: done, cancelled (by a request, ``ioc``/``fok`` rules, or the server's policy); may have filled in part."""
    REJECTED = "rejected"
    """``"rejected"``: refused by the server (rounding, risk limits, a stale request) or the venue; ``error_msg`` says why."""


TERMINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})
OPEN_STATUSES = frozenset({OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})


# --------------------------------------------------------------------------- market data


@dataclass(slots=True)
class Ticker:
    """The best bid and ask and the last trade of one symbol (``on_ticker``).

    Attributes:
        symbol: The instrument, e.g. ``"BTC-USDT"``.
        ts: The venue's time of this data, in ms since the epoch.
        last_price: Price of the last trade.
        bid_price: Best bid (the highest price someone buys at).
        ask_price: Best ask (the lowest price someone sells at).
        bid_size: Quantity at the best bid, in the instrument's unit (base units; contracts for swaps
            and futures).
        ask_size: Quantity at the best ask, in the same unit.
        volume_24h: Volume traded in the last 24 hours, as the venue reports it (base units on spot,
            contracts on swaps and futures).
        seq: Counts messages of this topic (kind and symbol), 1, 2, 3, ...; a jump means messages
            were dropped on the way.
        gw_ns: The server's ``time.time_ns()`` when it sent the message (compare with yours for the
            latency from the server, on the same host).
    """

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
    """The top of the order book of one symbol, up to 5 levels a side (``on_book``).

    Attributes:
        symbol: The instrument.
        ts: The venue's time of this snapshot, in ms since the epoch.
        bids: ``[[price, size], ...]``, best (highest) first, sizes in the instrument's unit (base
            units; contracts for swaps and futures).
        asks: ``[[price, size], ...]``, best (lowest) first.
        seq: Counts messages of this topic (kind and symbol), 1, 2, 3, ...; a jump means messages
            were dropped on the way.
        gw_ns: The server's ``time.time_ns()`` when it sent the message (compare with yours for the
            latency from the server, on the same host).
    """

    symbol: str
    ts: int
    bids: list[list[float]]
    asks: list[list[float]]
    seq: int = 0
    gw_ns: int = 0


@dataclass(slots=True)
class Trade:
    """One public trade of one symbol on the venue, anyone's (``on_trade``).

    Attributes:
        symbol: The instrument.
        ts: The venue's time of the trade, in ms since the epoch.
        trade_id: The venue's id of the trade (a string).
        price: The trade's price.
        size: The trade's quantity, in the instrument's unit (base units; contracts for derivatives).
        side: The taker's side, ``"buy"`` or ``"sell"``.
        seq: Counts messages of this topic (kind and symbol), 1, 2, 3, ...; a jump means messages
            were dropped on the way.
        gw_ns: The server's ``time.time_ns()`` when it sent the message (compare with yours for the
            latency from the server, on the same host).
    """

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
    """The server's connection to its venue, once a second and on every change (``on_status``).

    Attributes:
        venue: The venue's kind, ``"paper"`` or ``"okx"``.
        connected: False while the server has lost the venue: market data is stale, and orders wait
            or fail.
        symbols: The symbols the server serves.
        ts: The server's time, in ms since the epoch.
        seq: Counts status messages; a seq lower than the last one means the server restarted.
        gw_ns: The server's ``time.time_ns()`` when it sent the message.
    """

    venue: str
    connected: bool
    symbols: list[str]
    ts: int
    seq: int = 0
    gw_ns: int = 0


@dataclass(slots=True)
class MarkPrice:
    """The mark and index price of a swap or future (``on_mark``, topic ``mark/<symbol>/``).

    Attributes:
        symbol: The instrument, e.g. ``"BTC-USDT-SWAP"``.
        ts: The venue's time of this data, in ms since the epoch.
        mark_price: The venue's mark price (what unrealised PnL, margin and liquidation use).
        index_price: The index price of the underlying (0.0 when the venue has not said yet).
        seq: Counts messages of this topic; a jump means messages were dropped on the way.
        gw_ns: The server's ``time.time_ns()`` when it sent the message.
    """

    symbol: str
    ts: int
    mark_price: float
    index_price: float = 0.0
    seq: int = 0
    gw_ns: int = 0


@dataclass(slots=True)
class FundingRate:
    """The funding rate of a perpetual swap (``on_funding``, topic ``funding/<symbol>/``).

    Attributes:
        symbol: The instrument.
        ts: The venue's time of this data, in ms since the epoch.
        funding_rate: The rate applied at ``next_funding_time`` (> 0: longs pay shorts), a fraction
            of the position's value.
        next_funding_time: When funding is next settled, ms since the epoch.
        interval_ms: Time between two settlements, ms (0: the venue did not say).
        seq: Counts messages of this topic; a jump means messages were dropped on the way.
        gw_ns: The server's ``time.time_ns()`` when it sent the message.
    """

    symbol: str
    ts: int
    funding_rate: float
    next_funding_time: int
    interval_ms: int = 0
    seq: int = 0
    gw_ns: int = 0


@dataclass(slots=True)
class PriceLimit:
    """The venue's price limits of a swap or future (``on_price_limit``, topic ``price_limit/<symbol>/``).

    A buy above ``buy_limit`` or a sell below ``sell_limit`` is refused (the server's risk gate refuses
    it before the venue does).

    Attributes:
        symbol: The instrument.
        ts: The venue's time of this data, in ms since the epoch.
        buy_limit: The highest price a buy may have (0.0: no limit in force).
        sell_limit: The lowest price a sell may have (0.0: no limit in force).
        seq: Counts messages of this topic; a jump means messages were dropped on the way.
        gw_ns: The server's ``time.time_ns()`` when it sent the message.
    """

    symbol: str
    ts: int
    buy_limit: float
    sell_limit: float
    seq: int = 0
    gw_ns: int = 0


@dataclass(slots=True)
class Depth:
    """The top levels of a verified full-depth book, sent on every change of them (``depth/<symbol>/``).

    Attributes:
        symbol: The instrument.
        ts: The venue's time of the change, in ms since the epoch.
        bids: ``[[price, size], ...]``, best (highest) first, up to 25 levels.
        asks: ``[[price, size], ...]``, best (lowest) first, up to 25 levels.
        book_seq: The version of the server's book this is the top of (see ``BookUpdate``).
        seq: Counts messages of this topic; a jump means messages were dropped on the way.
        gw_ns: The server's ``time.time_ns()`` when it sent the message.
    """

    symbol: str
    ts: int
    bids: list[list[float]]
    asks: list[list[float]]
    book_seq: int
    seq: int = 0
    gw_ns: int = 0


@dataclass(slots=True)
class BookUpdate:
    """A snapshot of, or a change to, a verified full-depth book (``fullbook/<symbol>/``).

    Attributes:
        symbol: The instrument.
        ts: The venue's time of the book, in ms since the epoch.
        snapshot: True: ``bids``/``asks`` are the whole book, as of ``book_seq``. False: they are the
            levels that changed (size 0: the level is gone), turning version ``prev_book_seq`` into
            ``book_seq``.
        book_seq: The book's version after this message; versions count 1, 2, 3, ... per symbol.
        prev_book_seq: The version a delta applies to (``book_seq - 1``); -1 on a snapshot.
        bids: ``[[price, size], ...]``, best first.
        asks: ``[[price, size], ...]``, best first.
        seq: Counts messages of this topic; a jump means messages were dropped on the way.
        gw_ns: The server's ``time.time_ns()`` when it sent the message.
    """

    symbol: str
    ts: int
    snapshot: bool
    book_seq: int
    prev_book_seq: int
    bids: list[list[float]]
    asks: list[list[float]]
    seq: int = 0
    gw_ns: int = 0


@dataclass(slots=True)
class BookStatus:
    """A change of state of a symbol's full-depth book in the server (``book_status/<symbol>/``).

    Attributes:
        symbol: The instrument.
        state: ``"valid"``, ``"invalid"`` (a gap, a bad checksum, a lost connection: no levels until
            the next snapshot) or ``"stale"`` (no update from the venue for the configured time).
        reason: Why, in words ("" when valid).
        book_seq: The last version published before the change.
        ts: The venue's (or, when it fell silent, the server's) time, in ms since the epoch.
        seq: Counts messages of this topic; a jump means messages were dropped on the way.
        gw_ns: The server's ``time.time_ns()`` when it sent the message.
    """

    symbol: str
    state: str
    reason: str
    book_seq: int
    ts: int
    seq: int = 0
    gw_ns: int = 0


# --------------------------------------------------------------------------- strategy -> server


@dataclass(slots=True)
class OrderRequest:
    """A new order, strategy -> server (``order_request`` in docs/protocol.md); the order helpers make it."""

    strategy_id: str
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    price: float | None
    quantity: float
    timestamp: int  # ms since the epoch, the strategy's clock when it sent the request
    # Extension: sent only if it reduces the ACCOUNT's position (docs/protocol.md). Not in the repr,
    # so that the decode outcomes pinned for version-1 frames stay as they were.
    reduce_only: bool = field(default=False, repr=False)


@dataclass(slots=True)
class CancelRequest:
    """Cancel one order, strategy -> server (``cancel_request``)."""

    strategy_id: str
    client_order_id: str


@dataclass(slots=True)
class AmendRequest:
    """Change an order's price and/or total quantity, strategy -> server (``amend_request``)."""

    strategy_id: str
    client_order_id: str
    price: float | None = None
    quantity: float | None = None  # the new total quantity


@dataclass(slots=True)
class CancelAll:
    """Cancel a strategy's open orders, of one symbol or all, strategy -> server (``cancel_all``)."""

    strategy_id: str
    symbol: str | None = None


@dataclass(slots=True)
class Hello:
    """Join or re-join: "a welcome with this nonce, then every report after ``last_seq``".

    ``session`` names the strategy process (the same for every hello and heartbeat it sends; "" for
    a client that does not say): the server refuses a second live session for one strategy id.
    """

    strategy_id: str
    last_seq: int
    nonce: str | int
    protocol: int = PROTOCOL_VERSION
    session: str = ""


@dataclass(slots=True)
class Heartbeat:
    """A strategy's sign of life, every second; without them the server takes it for dead.

    ``errors``: optional, how many times each callback of the strategy raised since the process
    started (callback name -> count); the server keeps the last map per strategy for ``seqtrade
    status`` and ``seqtrade strategies``. None: not sent (the field is an optional extension).
    """

    strategy_id: str
    timestamp: int
    session: str = ""  # the sending process's session, as in its hello
    errors: dict[str, int] | None = None


@dataclass(slots=True)
class Goodbye:
    """A strategy leaves cleanly (``goodbye``): the server applies its dead-strategy policy at once."""

    strategy_id: str
    session: str = ""


# --------------------------------------------------------------------------- server -> strategy


@dataclass(slots=True)
class OrderReport:
    """What became of an order: one per change, to the strategy that owns it (``on_order``).

    Every order gets ``accepted`` or ``rejected`` first, then a report for each fill, for its end
    and for each failed cancel or amend. A strategy's reports are numbered by ``seq`` with no gap,
    across restarts of the server and of the strategy, and each is handed to ``on_order`` once.

    Attributes:
        seq: This report's number among the strategy's reports: 1, 2, 3, ... with no gap.
        client_order_id: The order's id, as the order helper returned it (empty in the rejection of
            a request so malformed that it could not be read).
        exchange_order_id: The venue's id of the order (empty until the venue has one).
        strategy_id: The strategy that owns the order.
        symbol: The instrument.
        side: ``"buy"`` or ``"sell"``.
        order_type: ``"limit"``, ``"market"``, ``"post_only"``, ``"ioc"`` or ``"fok"``.
        price: The limit price after rounding to the tick (0.0 for a market order).
        quantity: The order's total quantity after rounding to the lot, in the instrument's unit: base
            units for spot, contracts for swaps and futures (the new total after an amend).
        status: The order's status: ``accepted``, ``partially_filled``, ``filled``, ``cancelled``
            or ``rejected`` ([`OrderStatus`][seqtrade.client.OrderStatus]). A failed cancel or
            amend leaves it as it was.
        filled_quantity: Quantity filled so far, cumulative.
        filled_price: Average price of all fills so far (0.0 before the first).
        last_fill_quantity: The fill this report announces, in the instrument's unit; 0.0 if it
            announces none.
            After a venue reconnect, fills missed meanwhile may arrive as one report whose last fill
            is their sum.
        last_fill_price: The price of that fill (such that ``filled_price`` stays right).
        fee: Fees paid on this order so far, **cumulative**, in the instrument's settlement currency
            (the quote currency for spot, USDT for a linear USDT swap, BTC for ``BTC-USD-SWAP``),
            positive (a rebate is negative). One fill's fee is the difference from the order's previous report.
        error_msg: Why an order was rejected, or why a cancel or amend failed (``"amend failed:
            ..."``); empty otherwise.
        timestamp: The time of the event it reports (the venue's if it gave one, else the
            server's), in ms since the epoch.
        gw_ns: The server's ``time.time_ns()`` when it sent the report.
    """

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
        """True while the order is open: status ``accepted`` or ``partially_filled``."""
        return self.status in OPEN_STATUSES


@dataclass(slots=True)
class Welcome:
    """The server's answer to a hello, before the replay (``welcome``): the server holds reports up
    to ``last_seq``; the ones after the hello's ``last_seq`` follow in order. ``open_orders`` are as
    of ``last_seq``; ``symbols`` are the symbols the server serves (empty from an older server)."""

    strategy_id: str
    nonce: str | int
    last_seq: int
    open_orders: list[OrderReport] = field(default_factory=list)
    protocol: int = PROTOCOL_VERSION
    gw_ns: int = 0
    symbols: list[str] = field(default_factory=list)
    # Extension: the facts of each served instrument (kind, contract value, currencies, ...). Not in
    # the repr, so that the decode outcomes pinned for version-1 frames stay as they were.
    instruments: list[Instrument] = field(default_factory=list, repr=False)


class AccountEventKind(StrEnum):
    """What happened to a position without an order of the strategy (``AccountEvent.kind``)."""

    FUNDING = "funding"
    """``"funding"``: a funding fee paid (``amount`` < 0) or received; ``quantity`` 0."""
    LIQUIDATION = "liquidation"
    """``"liquidation"``: the venue closed (part of) the position; ``quantity`` is the change."""
    ADL = "adl"
    """``"adl"``: auto-deleveraging closed (part of) the position; ``quantity`` is the change."""
    DELIVERY = "delivery"
    """``"delivery"``: a dated future (or a delisted swap) was delivered; the position is gone."""
    LIQUIDATION_WARNING = "liquidation_warning"
    """``"liquidation_warning"``: the position is close to liquidation; nothing changed yet."""
    ADJUSTMENT = "adjustment"
    """``"adjustment"``: a position seqtrade did not open (traded by hand or by another program),
    taken into the ``external`` account; strategies never get one."""


@dataclass(slots=True)
class AccountEvent:
    """Something the venue did to a position (``on_account_event``, report type ``account_event``).

    Numbered by ``seq`` in the strategy's report stream exactly like an ``order_report`` (the same
    counter, no gap, journaled, replayed). An event that touches a position several strategies hold is
    split between them by their share of the account's position; what belongs to no strategy goes to
    the ``external`` account.

    Attributes:
        strategy_id: The strategy this share of the event belongs to.
        seq: This report's number among the strategy's reports.
        kind: ``funding``, ``liquidation``, ``adl``, ``delivery`` or ``liquidation_warning``
            (``adjustment`` only on the ``external`` account).
        symbol: The instrument.
        pos_side: ``""`` (net position), ``"long"`` or ``"short"`` (long/short mode).
        quantity: The signed change of the strategy's position, in the instrument's unit
            (contracts): a liquidated long of 2 contracts is -2.0. 0.0 for funding and warnings.
        price: The price of the event (the liquidation, ADL or delivery price; the mark price for
            funding and warnings), 0.0 if the venue gave none.
        amount: The signed money this share moved, in ``currency``: + received, - paid (a funding
            fee paid is negative; a liquidation's realised PnL and penalty).
        currency: The currency of ``amount``: the instrument's settlement currency.
        event_id: The venue's id of the event (a bill, trade or order id): one event is applied once.
        ts: The venue's time of the event, ms since the epoch.
        gw_ns: The server's ``time.time_ns()`` when it sent the report.
    """

    strategy_id: str
    seq: int
    kind: AccountEventKind
    symbol: str
    pos_side: str = ""
    quantity: float = 0.0
    price: float = 0.0
    amount: float = 0.0
    currency: str = ""
    event_id: str = ""
    ts: int = 0
    gw_ns: int = 0

    @property
    def timestamp(self) -> int:
        """``ts``, under the name an order report gives its time."""
        return self.ts


@dataclass(slots=True)
class Refusal:
    """The server's answer to a hello it will not serve (``refusal``), for the process whose hello
    had this ``nonce`` and ``session``: another live session owns the strategy id. ``retry_after``:
    seconds until the owner may be taken over if it stays silent from now."""

    strategy_id: str
    nonce: str | int
    session: str
    reason: str
    retry_after: float = 0.0
