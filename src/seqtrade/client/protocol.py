"""The client side of the wire protocol (docs/protocol.md) as one sans-io object.

:class:`ClientProtocol` holds every rule a strategy process follows on the report and market-data
channels: the join handshake (hello with a fresh nonce, re-sent every 100 ms until the welcome with
that nonce, the welcome accepted only once the replay before it reached us), report de-duplication by
seq, a hello on a report gap, after a stall of the loop, after the report socket reconnected, after a
server restart (the status seq going backwards) and every :data:`SYNC_INTERVAL` seconds, a heartbeat
every second, following a server whose journal is behind us, and market-data seq gaps counted per
topic. It owns no socket, reads no clock and starts no thread: frames and the time go in, events and
requests come out. The blocking loop in :mod:`seqtrade.client.runner`, the test peer and the unit
tests all drive this same object.

How it is driven (all times are one monotonic clock, in seconds, chosen by the caller)::

    proto = ClientProtocol("s1")
    proto.hello(now)                          # start the join
    for msg in proto.requests_to_send():      # Hello / Heartbeat models: encode and PUSH them
        ...
    ev = proto.receive_report_frame(frame, now)   # Report | Synced | None
    md = proto.receive_md_frame(frame)            # Ticker | Book | Trade | VenueStatus | None
    proto.start(now)                          # the strategy started: heartbeats, sync and stall from here
    proto.tick(now, wall_ms)                  # due hellos and heartbeats; call by proto.next_wakeup()
    proto.reconnected(now)                    # the report socket (re)connected

One frame is one message, so each ``receive_*`` call returns at most one event and the caller
dispatches the return value directly: no event queue sits on the market-data path, whose latency is
the strategy's product. For the same reason :meth:`receive_md_frame` takes no time; a re-join it
decides on (server restart) is sent by the next :meth:`tick`. Requests are queued in order and taken
with :meth:`requests_to_send` (cheap to call when nothing is queued).

Events:

- :class:`Report`: the next report in seq order, each seq exactly once. ``joining`` is True while
  the first join is in progress: the report is part of the replay that rebuilds the strategy's state
  and is not news to it (no ``on_order``).
- :class:`Synced`: a welcome with our nonce after we had every report it counts: the open orders
  are those of ``welcome.open_orders``. ``first`` is True for the welcome that completes the join.
- Market data: the decoded model itself.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import wire
from ..errors import WireError
from ..models import (
    PROTOCOL_VERSION,
    Book,
    Heartbeat,
    Hello,
    OrderReport,
    Ticker,
    Trade,
    VenueStatus,
    Welcome,
)

__all__ = [
    "ClientProtocol",
    "Report",
    "Synced",
    "HELLO_INTERVAL",
    "HEARTBEAT_INTERVAL",
    "SYNC_INTERVAL",
    "STALL",
]

log = logging.getLogger("seqtrade.client")
_decode_ticker = wire.decode_ticker_frame

HELLO_INTERVAL = 0.1  # re-send hello every 100 ms until the welcome
HEARTBEAT_INTERVAL = 1.0  # a heartbeat every second
# A hello now and then, even with no gap in sight: a report the server's PUB dropped at the end of a
# burst leaves no gap until the next report arrives. The welcome's last_seq shows it, and the server
# replays it. One journal query per strategy per interval on the server.
SYNC_INTERVAL = 5.0
STALL = 1.0  # ticks this far apart (SIGSTOP, a slow callback): re-join, the tail may have been dropped


@dataclass(frozen=True, slots=True)
class Report:
    """The next report of this strategy, in seq order, each seq once."""

    report: OrderReport
    joining: bool  # arrived before the first welcome: state to rebuild, not news for on_order


@dataclass(frozen=True, slots=True)
class Synced:
    """A welcome with our nonce, and every report up to its ``last_seq`` handled."""

    welcome: Welcome
    first: bool  # this welcome completes the join


def new_nonce() -> str:
    return secrets.token_hex(8)


class ClientProtocol:
    """The protocol state of one strategy id: see the module docstring for how it is driven.

    ``last_seq`` is the seq of the last report handled (0: none). ``nonce`` is the nonce of the hello
    in flight ("" when none is: the strategy is in sync as far as it knows). ``md_gaps`` counts market
    data messages dropped on the way; ``report_gaps`` the report gaps seen (each answered by a hello).
    """

    def __init__(
        self, strategy_id: str, *, last_seq: int = 0, nonce_factory: Callable[[], str] = new_nonce
    ) -> None:
        self.strategy_id = strategy_id
        self.last_seq = last_seq
        self.nonce: str = ""
        self.joined = False  # the first welcome arrived
        self.running = False  # start() was called: heartbeats, periodic sync and stall detection
        self.md_gaps = 0
        self.report_gaps = 0
        self._new_nonce = nonce_factory
        self._requests: list[Hello | Heartbeat] = []
        self._next_hello = 0.0
        self._next_sync = 0.0
        self._next_heartbeat = 0.0
        self._last_tick = 0.0
        self._rejoin = False  # decided where no time was given: the next tick() sends the hello
        self._status_seq = 0
        self._md_seq: dict[tuple[str, str], int] = {}
        self._ticker_seq: dict[str, int] = {}  # the ticker path's own seq per symbol
        # Dispatch by message type, checked against the codec's tables (a new type needs a handler).
        self._report_handlers: dict[type, Callable[[Any, float], Report | Synced | None]] = (
            wire.dispatch_table(wire.REPORT_TYPES, {OrderReport: self._on_report, Welcome: self._on_welcome})
        )
        self._md_handlers: dict[type, Callable[[Any], Book | Trade | VenueStatus | None]] = wire.dispatch_table(
            wire.MARKET_DATA_TYPES,
            {Ticker: self._ticker_via_table, Book: self._book_or_trade, Trade: self._book_or_trade,
             VenueStatus: self._status},
        )  # fmt: skip

    # ------------------------------------------------------------------ requests out

    def requests_to_send(self) -> list[Hello | Heartbeat]:
        """The requests queued since the last call, oldest first."""
        out = self._requests
        if out:
            self._requests = []
        return out

    def hello(self, now: float) -> None:
        """Start a (re-)join: a hello with a fresh nonce and our last seq, re-sent until the welcome."""
        self.nonce = self._new_nonce()
        self._requests.append(Hello(self.strategy_id, self.last_seq, self.nonce))
        self._next_hello = now + HELLO_INTERVAL

    def start(self, now: float) -> None:
        """The strategy is running (its ``on_start`` returned): from now on :meth:`tick` also sends a
        heartbeat every second (the first at once), a hello every SYNC_INTERVAL and one after a stall."""
        self.running = True
        self._last_tick = now
        self._next_sync = now + SYNC_INTERVAL
        self._next_heartbeat = now

    def tick(self, now: float, wall_ms: int) -> None:
        """What is due at ``now``; ``wall_ms`` (epoch milliseconds) stamps a heartbeat."""
        if self.running:
            if now - self._last_tick > STALL and not self.nonce:
                # Reports dropped at the PUB high-water mark while we were not reading leave no gap
                # if nothing follows them: ask for everything after the last one we handled.
                log.info("event loop stalled for %.1f s: re-joining from seq %d", now - self._last_tick,
                         self.last_seq)  # fmt: skip
                self.hello(now)
            self._last_tick = now
            if now >= self._next_sync:
                if not self.nonce:
                    self.hello(now)
                self._next_sync = now + SYNC_INTERVAL
            if now >= self._next_heartbeat:
                self._requests.append(Heartbeat(self.strategy_id, wall_ms))
                self._next_heartbeat = now + HEARTBEAT_INTERVAL
        if self._rejoin:
            self._rejoin = False
            if not self.nonce:
                self.hello(now)
        if self.nonce and now >= self._next_hello:
            # The same nonce: a welcome for any of these hellos will do; the newest last_seq matters.
            self._requests.append(Hello(self.strategy_id, self.last_seq, self.nonce))
            self._next_hello = now + HELLO_INTERVAL

    def next_wakeup(self) -> float | None:
        """The latest time :meth:`tick` must be called at (None: nothing is scheduled)."""
        times = []
        if self.nonce:
            times.append(self._next_hello)
        if self.running:
            times += (self._next_heartbeat, self._next_sync)
        return min(times) if times else None

    def reconnected(self, now: float) -> None:
        """The report socket (re)connected: reports published while it was down never arrive."""
        if not self.nonce:
            log.info("report channel (re)connected: re-joining from seq %d", self.last_seq)
            self.hello(now)

    # ------------------------------------------------------------------ reports in

    def receive_report_frame(self, frame: bytes, now: float) -> Report | Synced | None:
        """One frame from ``report/<strategy_id>/``; a bad frame is logged and dropped."""
        try:
            msg = wire.decode_message(frame)
        except WireError as exc:
            log.warning("dropped a bad report frame: %s", exc)
            return None
        return self.receive_report(msg, now)

    def receive_report(self, msg: Any, now: float) -> Report | Synced | None:
        """One decoded message from the report channel."""
        handler = self._report_handlers.get(type(msg))
        return handler(msg, now) if handler is not None else None

    def _on_report(self, msg: OrderReport, now: float) -> Report | None:
        if msg.seq <= self.last_seq:
            return None  # a duplicate: already handled
        if msg.seq != self.last_seq + 1:
            # A gap: something was dropped on the way (or our subscription went live in the
            # middle of a replay). Ask again from where we are, unless a hello is in flight.
            if not self.nonce:
                self.report_gaps += 1
                log.info("report gap: have %d, got %d: re-joining", self.last_seq, msg.seq)
                self.hello(now)
            return None
        self.last_seq = msg.seq
        return Report(msg, not self.joined)

    def _on_welcome(self, msg: Welcome, now: float) -> Synced | None:
        if not (self.nonce and msg.nonce == self.nonce):
            return None  # a welcome for another hello (ours or not)
        if msg.last_seq > self.last_seq:
            # Part of the replay was dropped on the way (PUB high-water mark, or a subscription
            # that went live mid-replay): the welcome proves nothing yet. Ask again.
            log.info("welcome at seq %d but we have %d: re-joining", msg.last_seq, self.last_seq)
            self.hello(now)
            return None
        self.nonce = ""
        if msg.last_seq < self.last_seq:
            # The server's journal is behind us (an OS crash with synchronous=normal, or a reset):
            # its next reports reuse seqs we saw. Follow the server, or we would drop them as
            # duplicates.
            log.error("server holds reports up to seq %d but we handled %d: following the server",
                      msg.last_seq, self.last_seq)  # fmt: skip
            self.last_seq = msg.last_seq
        first = not self.joined
        if first and msg.protocol != PROTOCOL_VERSION:
            # A change a client of our version could misread bumps the number (docs/protocol.md).
            log.warning("the server speaks protocol %s, this client %d", msg.protocol, PROTOCOL_VERSION)
        self.joined = True
        return Synced(msg, first)

    # ------------------------------------------------------------------ market data in

    def receive_md_frame(self, frame: bytes) -> Ticker | Book | Trade | VenueStatus | None:
        """One market-data frame, its seq gap counted; None for a bad frame or an unknown type."""
        # Tickers are most of the traffic: the specialised decoder and the gap check inline.
        t = _decode_ticker(frame)
        if t is None:
            try:
                msg = wire.decode_message(frame)
            except WireError as exc:
                log.warning("dropped a bad market-data frame: %s", exc)
                return None
            if not isinstance(msg, Ticker):
                return self._other_md(msg)
            t = msg
        seqs = self._ticker_seq
        last = seqs.get(t.symbol)
        if last is not None and t.seq > last + 1:
            self.md_gaps += t.seq - last - 1
        seqs[t.symbol] = t.seq
        return t

    def _other_md(self, msg: Any) -> Book | Trade | VenueStatus | None:
        handler = self._md_handlers.get(type(msg))
        return handler(msg) if handler is not None else None

    def _ticker_via_table(self, msg: Ticker) -> None:
        raise AssertionError("tickers take the fast path in receive_md_frame")  # pragma: no cover

    def _book_or_trade(self, msg: Book | Trade) -> Book | Trade:
        key = ("book" if type(msg) is Book else "trade", msg.symbol)
        last = self._md_seq.get(key)
        if last is not None and msg.seq > last + 1:
            self.md_gaps += msg.seq - last - 1
        self._md_seq[key] = msg.seq
        return msg

    def _status(self, msg: VenueStatus) -> VenueStatus:
        if msg.seq < self._status_seq and not self.nonce:
            # The server restarted: re-join so nothing published before we reconnected is lost.
            log.info("server restarted: re-joining from seq %d", self.last_seq)
            self._rejoin = True
        self._status_seq = msg.seq
        return msg
