"""What a venue offers the server, and what the server offers a venue.

The server cannot tell the paper exchange from OKX: both implement :class:`Venue`. A venue never sees
strategy ids or strategy client_order_ids; it sees :class:`VenueOrder` objects keyed by a
``venue_order_id`` that the server generated (1-32 ASCII letters and digits, unique for ever: OKX's
``clOrdId`` rules) and reports back :class:`OrderEvent` objects keyed by the same id.

Contract for implementations:

- ``run`` connects, loads instruments, starts market data, calls ``task_status.started()`` once
  orders may be placed, and runs until cancelled. Market data and order events go to the
  :class:`VenueSink` given to ``run``.
- ``place_order``/``cancel_order``/``amend_order`` hand the request over and return quickly: they must
  not wait a network round trip (hand it to the venue's own tasks). Every outcome, including a
  rejection, arrives later as an :class:`OrderEvent`. They never raise for business errors.
- An order is never sent to the exchange twice. A request whose outcome is unknown (timeout, dropped
  connection) is resolved by ``query_order``, never by sending it again.
- What the server asks of every venue besides orders: its ``positions`` and ``balances`` (None when the
  venue cannot tell), the environment variables that hold its secrets (``secret_env_vars``: the
  supervisor keeps them out of strategy processes), a description for ``seqtrade check`` (``describe``)
  and how long the server keeps its cancel-all-after armed by default (``default_cancel_all_after``).
  The last three are class methods of the venue's config section: ``check`` runs without keys and
  without a connection. Nothing outside ``venues/`` names a venue kind: ``venues.venue_class`` is the
  one ``match`` on it.
- ``VenueSink.account_event`` returns once the event is journaled, not when it is queued (an order
  event needs no such wait: it carries the order's full state, which ``query_order`` tells again
  after a restart; an account event happens once and only its venue can tell it again).
- Every ``OrderEvent`` for one order carries the order's full current state (cumulative fill, average
  price, cumulative fee), so that a duplicate or a late event is harmless: the server applies an event
  only when it moves the order forward.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from ..candles import Candle
from ..config import VenueConfig
from ..feedhealth import FeedHealth
from ..instruments import Instrument
from ..models import (
    AccountEventKind,
    Book,
    BookStatus,
    BookUpdate,
    Depth,
    FundingRate,
    MarkPrice,
    OrderStatus,
    OrderType,
    PriceLimit,
    Side,
    Ticker,
    Trade,
)

__all__ = [
    "Instrument",
    "VenueOrder",
    "VenueAccountEvent",
    "VenuePosition",
    "EventKind",
    "OrderEvent",
    "VenueSink",
    "Venue",
    "MarketData",
]

MarketData = (
    Ticker | Book | Trade | Candle | MarkPrice | FundingRate | PriceLimit | Depth | BookUpdate | BookStatus
)
# Instrument (seqtrade.instruments) is re-exported here: venues build it from the exchange's data.


@dataclass(slots=True)
class VenueOrder:
    venue_order_id: str  # server-generated, 1-32 letters and digits
    symbol: str
    side: Side
    order_type: OrderType
    price: float | None  # None for market orders; already rounded to the tick
    quantity: float  # already rounded to the lot; contracts for swaps and futures
    # Derivatives only. The server decided both against the ACCOUNT's position (server/positions.py):
    # reduce_only is set only when the order reduces the account's net position (net mode), and
    # pos_side is "" (net mode or spot), "long" or "short" (the leg it opens or closes, long/short mode).
    reduce_only: bool = False
    pos_side: str = ""


@dataclass(slots=True)
class VenueAccountEvent:
    """Something the venue did to the account's position (funding, liquidation, ADL, delivery, a
    liquidation warning): an :class:`~seqtrade.models.AccountEvent` before the server attributes it
    to strategies. ``quantity`` is the signed change of the account's position in the instrument's
    unit; ``amount`` the signed money (+ received) in ``currency``; ``event_id`` the venue's id of
    the event (bill, trade or order id), the key that makes applying it idempotent."""

    kind: AccountEventKind
    symbol: str
    event_id: str
    pos_side: str = ""
    quantity: float = 0.0
    price: float = 0.0
    amount: float = 0.0
    currency: str = ""
    ts: int = 0


@dataclass(slots=True)
class VenuePosition:
    """One position of the account as the venue reports it (``Venue.position_details``), for
    ``seqtrade status`` and the long/short legs. ``quantity`` is signed (+ long) in the instrument's
    unit; money figures are in ``currency`` (the settlement currency); 0.0 where the venue gave none."""

    symbol: str
    quantity: float
    pos_side: str = ""  # "" net, "long", "short"
    avg_price: float = 0.0
    mark_price: float = 0.0
    liquidation_price: float = 0.0
    margin_ratio: float = 0.0
    unrealised_pnl: float = 0.0
    funding_paid: float = 0.0  # cumulative funding of the position, + received
    currency: str = ""
    margin_mode: str = ""  # "cross", "isolated" ("" spot)
    leverage: float = 0.0


class EventKind(StrEnum):
    UPDATE = "update"  # the order's state (new, fill, cancel, amend, reject)
    CANCEL_FAILED = "cancel_failed"  # a cancel was refused; the order is as it was
    AMEND_FAILED = "amend_failed"  # an amend was refused; the order is as it was


@dataclass(slots=True)
class OrderEvent:
    venue_order_id: str
    status: OrderStatus
    kind: EventKind = EventKind.UPDATE
    exchange_order_id: str = ""
    price: float | None = None  # current limit price (None: unchanged / market)
    quantity: float | None = None  # current total quantity (None: unchanged)
    filled_quantity: float = 0.0  # cumulative
    avg_price: float = 0.0
    last_fill_quantity: float = 0.0
    last_fill_price: float = 0.0
    fee: float = 0.0  # cumulative, positive = cost
    trade_id: str = ""  # the fill's trade id, when this event reports a fill
    error_msg: str = ""
    ts: int = 0  # venue time, ms


class VenueSink(Protocol):
    """Where a venue delivers what it produces. Implemented by the server."""

    def publish_market(self, msg: MarketData) -> None:
        """Hand over one market-data message. Never blocks: drops (and counts) when the feed lags."""

    async def order_event(self, event: OrderEvent) -> None:
        """Hand over one order event. Never dropped: waits when the server is behind."""

    async def account_event(self, event: VenueAccountEvent) -> None:
        """Hand over one account event (funding, liquidation, ADL, delivery, warning). Never dropped;
        one ``event_id`` handed over twice is applied once.

        Returns only once the event is in the server's journal (written to its log: it survives a
        kill -9 of the server from then on) or was found there already, never when it is merely
        queued. A venue that must not lose an event it made itself (the paper account) marks it
        handed over only after this returns, and hands over again at its next start what it had
        not marked; a call cancelled before it returns hands over nothing the venue may count on."""

    def set_connected(self, connected: bool) -> None:
        """Market data is live (True) or stale (False)."""


class Venue(abc.ABC):
    """An exchange, real or simulated, behind one interface."""

    name: str = "venue"
    # Seconds the server keeps the venue's cancel-all-after armed when ``server.cancel_all_after`` is
    # unset (0: off). The server owns the switch; a venue only arms what it is told (docs/operations.md).
    default_cancel_all_after: float = 0.0
    # A simulated exchange, no money at stake: `seqtrade check` notes missing risk limits in one line
    # instead of a warning block, and `seqtrade reset` deletes its journal without being told twice.
    simulated: bool = False
    # The server's feed health (seqtrade.feedhealth), set by the server before ``run``: a venue tells it
    # the gaps it finds in a feed and the resubscriptions it makes (``on_gap``/``on_resubscribe``).
    feed_health: FeedHealth | None = None

    @classmethod
    def state_files(cls, config: VenueConfig, run_dir: Path) -> list[Path]:
        """Files the venue itself keeps in ``run_dir`` (a simulated account): what ``seqtrade reset``
        deletes besides the journal."""
        return []

    @classmethod
    def describe(cls, config: VenueConfig) -> list[str]:
        """What this venue would do with ``config``, in words (``seqtrade check``), first line ``venue: ...``."""
        return [f"venue: {cls.name}"]

    @classmethod
    def secret_env_vars(cls, config: VenueConfig) -> tuple[str, ...]:
        """The environment variables that hold this venue's secrets (never their values)."""
        return ()

    @property
    @abc.abstractmethod
    def instruments(self) -> dict[str, Instrument]:
        """Instruments of the configured symbols, loaded by ``run`` before it reports started."""

    @abc.abstractmethod
    async def run(self, sink: VenueSink, *, task_status: Any = ...) -> None:
        """Connect and stream until cancelled; ``task_status.started()`` once orders may be placed."""

    @abc.abstractmethod
    async def place_order(self, order: VenueOrder) -> None:
        """Submit a new order; its outcome arrives as OrderEvents."""

    @abc.abstractmethod
    async def cancel_order(self, venue_order_id: str, symbol: str) -> None:
        """Request a cancel; the outcome arrives as an UPDATE (cancelled) or CANCEL_FAILED event."""

    @abc.abstractmethod
    async def amend_order(
        self, venue_order_id: str, symbol: str, price: float | None, quantity: float | None
    ) -> None:
        """Request an amend; the outcome arrives as an UPDATE or AMEND_FAILED event."""

    @abc.abstractmethod
    async def query_order(self, venue_order_id: str, symbol: str) -> OrderEvent | None:
        """The order's current state at the venue, or None if the venue never saw it."""

    @abc.abstractmethod
    async def open_orders(self) -> list[OrderEvent]:
        """Every open order of the account at the venue (for reconciliation)."""

    async def positions(self) -> dict[str, float] | None:
        """Net position per symbol (+ long) in the instrument's unit (base currency for spot,
        contracts for swaps and futures; long/short legs netted) for reconciliation; None: the venue
        cannot tell (the server then skips reconciliation)."""
        return None

    def position_symbols(self) -> set[str] | None:
        """The symbols whose positions :meth:`positions` tells (None: every symbol it trades)."""
        return None

    def account_summary(self) -> dict[str, dict[str, float]] | None:
        """The account per currency as the venue last told it (equity, available, unrealised PnL,
        margins, margin ratio); None: the venue cannot tell."""
        return None

    async def position_details(self) -> list[VenuePosition] | None:
        """The account's derivative positions, one per instrument and leg, with their margin facts;
        None: the venue cannot tell."""
        return None

    async def balances(self) -> dict[str, float] | None:
        """Cash per currency in the account; None: the venue cannot tell."""
        return None

    async def candles(self, symbol: str, bar: str, n: int) -> list[Candle]:
        """The last ``n`` closed bars of ``symbol`` (oldest first, consecutive as the venue has them;
        fewer when it has fewer). Raises ValueError (with a reason for the strategy) for a bar or
        symbol it cannot serve; other errors are the venue's (network, limits)."""
        raise ValueError(f"the {self.name} venue serves no candle history")

    async def cancel_all_after(self, timeout_s: float) -> None:  # pragma: no cover - optional
        """Arm (or with 0, disarm) the venue's dead-man's switch. Optional; called by the server only."""
        return None
