"""The client side of the wire protocol (docs/protocol.md) as one sans-io object.

:class:`ClientProtocol` holds every rule a strategy process follows on the report and market-data
channels: the join handshake (hello with a fresh nonce and this process's session, re-sent every 100 ms
until the welcome with that nonce; the welcome names the server's last seq and the reports up to it
follow, the join complete once we hold it), report de-duplication by seq, a hello on a report gap, after a stall of the loop, after the report socket reconnected, after a
server restart (the status seq going backwards) and every :data:`SYNC_INTERVAL` seconds, a heartbeat
every second, following a server whose journal is behind us, market-data seq gaps counted per
topic, a server that fell silent (:class:`ServerLost`, then a re-join) and a refusal of our session
(:class:`Refused`). It owns no socket, reads no clock and starts no thread: frames and the time go in, events and
requests come out. The blocking loop in :mod:`seqtrade.client.runner`, the test peer and the unit
tests all drive this same object.

How it is driven (all times are one monotonic clock, in seconds, chosen by the caller)::

    proto = ClientProtocol("s1")
    proto.hello(now)                          # start the join
    for msg in proto.requests_to_send():      # Hello / Heartbeat models: encode and PUSH them
        ...
    ev = proto.receive_report_frame(frame, now)   # Report | Synced | Refused | None
    md = proto.receive_md_frame(frame)            # Ticker | Book | Trade | VenueStatus | None
    w = proto.receive_window_frame(frame)         # a backtest's window/ frame: its Window
    proto.start(now)                          # the strategy started: heartbeats, sync and stall from here
    lost = proto.tick(now, wall_ms)           # due hellos and heartbeats; ServerLost | None
    proto.reconnected(now)                    # the report socket (re)connected
    proto.goodbye()                           # leaving cleanly: queue the goodbye

One frame is one message, so each ``receive_*`` call returns at most one event and the caller
dispatches the return value directly: no event queue sits on the market-data path, whose latency is
the strategy's product. For the same reason :meth:`receive_md_frame` takes no time; a re-join it
decides on (server restart) is sent by the next :meth:`tick`. Requests are queued in order and taken
with :meth:`requests_to_send` (cheap to call when nothing is queued).

Events:

- :class:`Report`: the next report in seq order, each seq exactly once. ``joining`` is True while
  the first join is in progress: the report is part of the replay that rebuilds the strategy's state
  and is not news to it (no ``on_order``). ``synced`` is set on the report that completes a join
  (we now hold the welcome's last seq).
- :class:`Synced`: a join complete: a welcome with our nonce and every report up to its
  ``last_seq`` handled (returned by itself when the welcome needs no report, else as
  ``Report.synced``). The open orders are those of ``welcome.open_orders``. ``first`` is True for
  the join that started the strategy, ``back`` for one that ends a :class:`ServerLost`.
- :class:`Refused`: the server refused our hello (another live process owns the strategy id).
  ``first`` on the first one: we keep asking (a hello a second), and once the refusal's
  ``retry_after`` has passed (when that process could be taken over if it is gone, killed without a
  goodbye) we say hello with a fresh nonce: its answer decides. A welcome lets us in; a refusal of
  that hello means the owner heartbeated after it could have been taken over, so it is live: then
  :attr:`ClientProtocol.gave_up` is True and nothing more is sent. Never given up on a timer: a
  hello that leaves late (a loaded machine) would find the owner not yet free and the timer run out
  before the next one.
- :class:`ServerLost` (from :meth:`ClientProtocol.tick`): nothing heard from the server for
  :data:`SERVER_SILENT` seconds while running; the protocol re-joins by itself.
- Market data: the decoded model itself (a ticker frame built like the server's template is
  unpacked by :class:`~seqtrade.tickerframes.TickerDecoder`, any other through :mod:`seqtrade.wire`:
  the same :class:`Ticker` either way); for the full-depth books (``depth``, ``fullbook``) the
  strategy's own copy, kept by :class:`~seqtrade.client.book.BookCopies` (``proto.books``), when it
  changed and is valid; ``book_status`` as decoded, after it was applied to the copy.
  :attr:`ClientProtocol.candles` is the join of history and live candles
  (:class:`~seqtrade.candles.CandleJoin`), which the shell applies.
- :class:`~seqtrade.candles.History`: the answer to a ``history_request`` (not numbered).
- A backtest's :class:`~seqtrade.vclock.Window` (its market data and its sync in one frame) comes
  back as decoded; the shell hands each of its messages to :meth:`ClientProtocol.window_md`, which
  gives what :meth:`ClientProtocol.receive_md_frame` gives for the same message in its own frame.

Catching up (docs/protocol.md, "Joining"): after the welcome, a report beyond the next seq but not
beyond the welcome's ``last_seq`` is a gap in the replay (reports lost on the way): we drop what
follows and ask again with a fresh nonce, which the server answers when the replay in flight has
ended. A report beyond the welcome's ``last_seq`` is a live report the replay will bring again in
order: dropped silently.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .. import wire
from ..candles import Candle, CandleJoin, History
from ..errors import WireError
from ..feedhealth import FeedsStatus
from ..instruments import Instrument
from ..models import (
    PROTOCOL_VERSION,
    AccountEvent,
    Book,
    BookStatus,
    BookUpdate,
    Depth,
    FundingRate,
    Goodbye,
    Heartbeat,
    Hello,
    MarkPrice,
    OrderReport,
    PriceLimit,
    Refusal,
    Ticker,
    Trade,
    VenueStatus,
    Welcome,
)
from ..tickerframes import TickerDecoder
from ..vclock import Sync, Window
from .book import BookCopies, LocalBook

__all__ = [
    "ClientProtocol",
    "Report",
    "Synced",
    "Refused",
    "ServerLost",
    "HELLO_INTERVAL",
    "LOST_HELLO_INTERVAL",
    "SERVER_SILENT",
    "CATCHUP_STALL",
    "TAKEOVER_MARGIN",
    "HEARTBEAT_INTERVAL",
    "SYNC_INTERVAL",
    "STALL",
]

log = logging.getLogger("seqtrade.client")
# The market-data types keyed by symbol whose only rule is the seq gap (window_events' short path).
_PER_SYMBOL = (Ticker, Book, Trade, MarkPrice, FundingRate, PriceLimit)
_decode_ticker = wire.decode_ticker_frame
_decode_report = wire.decode_report_frame

HELLO_INTERVAL = 0.1  # re-send hello every 100 ms until the welcome
HEARTBEAT_INTERVAL = 1.0  # a heartbeat every second
# A hello now and then, even with no gap in sight: a report the server's PUB dropped at the end of a
# burst leaves no gap until the next report arrives. The welcome's last_seq shows it, and the server
# replays it. One journal query per strategy per interval on the server.
SYNC_INTERVAL = 5.0
STALL = 1.0  # ticks this far apart (SIGSTOP, a slow callback): re-join, the tail may have been dropped
# Nothing from the server (no status message, which comes every second, and no report) for this
# long while running: the server is gone. Re-join, with a hello every LOST_HELLO_INTERVAL (a PUSH
# socket queues what it cannot deliver: a long outage must not leave thousands of hellos queued).
SERVER_SILENT = 5.0
LOST_HELLO_INTERVAL = 1.0
CATCHUP_STALL = 3.0  # catching up and no report for this long: the replay was lost; ask again
# Refused: the deciding hello leaves this long after the refusal's retry_after has passed, so that the
# server surely finds the owner's silence past its limit if the owner is gone (the server's time and
# ours differ by the frames' delays, which only add to this).
TAKEOVER_MARGIN = 0.25


@dataclass(frozen=True, slots=True)
class Synced:
    """A welcome with our nonce, and every report up to its ``last_seq`` handled."""

    welcome: Welcome
    first: bool  # this welcome completes the join
    back: bool = False  # this join ends a ServerLost


@dataclass(frozen=True, slots=True)
class Report:
    """The next report of this strategy, in seq order, each seq once."""

    report: OrderReport | AccountEvent  # an account_event shares the order reports' seq
    joining: bool  # arrived before the first join completed: state to rebuild, not news for on_order
    synced: Synced | None = None  # this report completes a join


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused our hello: another live process owns this strategy id."""

    refusal: Refusal
    first: bool  # the first refusal of this join


@dataclass(frozen=True, slots=True)
class ServerLost:
    """Nothing heard from the server for ``silent`` seconds while running."""

    silent: float


def new_nonce() -> str:
    return secrets.token_hex(8)


class ClientProtocol:
    """The protocol state of one strategy id: see the module docstring for how it is driven.

    ``last_seq`` is the seq of the last report handled (0: none). ``nonce`` is the nonce of the join
    in progress ("" when none is: the strategy is in sync as far as it knows); ``target`` is None
    while its hello waits for the welcome, then the welcome's last seq while we catch up to it.
    ``session`` names this process to the server (one live session per strategy id). ``md_gaps``
    counts market data messages dropped on the way; ``report_gaps`` the report gaps seen (each
    answered by a hello).
    """

    def __init__(
        self,
        strategy_id: str,
        *,
        last_seq: int = 0,
        nonce_factory: Callable[[], str] = new_nonce,
        session: str | None = None,
    ) -> None:
        self.strategy_id = strategy_id
        self.last_seq = last_seq
        self.nonce: str = ""
        self.target: int | None = None
        self.session = session if session is not None else new_nonce()
        self.joined = False  # the first join completed
        self.lost = False  # the server fell silent; cleared by the join that follows
        self.refused: Refusal | None = None  # the last refusal of the join in progress
        self.gave_up = False  # refused after the owner could have been taken over: it is live
        self._decide_at = 0.0  # refused: when the deciding hello leaves
        self._deciding = False  # the deciding hello (the current nonce) has left
        self._welcome: Welcome | None = None  # the welcome we catch up to
        self._progress = 0.0  # when the catch-up last advanced
        self._heard = False  # something came from the server since the last tick
        self._last_heard = 0.0
        self.running = False  # start() was called: heartbeats, periodic sync and stall detection
        self.md_gaps = 0
        self.report_gaps = 0
        self._new_nonce = nonce_factory
        self._requests: list[Hello | Heartbeat | Goodbye] = []
        self._next_hello = 0.0
        self._next_sync = 0.0
        self._next_heartbeat = 0.0
        self._last_tick = 0.0
        self._rejoin = False  # decided where no time was given: the next tick() sends the hello
        self._status_seq = 0
        self._md_seq: dict[str, dict[str, int]] = {}  # per kind (class name, "candle"), per key: the last seq
        self.instruments: dict[str, Instrument] = {}  # from the newest welcome (empty: an older server)
        self._ticker_seq: dict[str, int] = {}  # the ticker path's own seq per symbol
        self._template_ticker = TickerDecoder().decode  # the template's frames (None: decode_message's)
        # A backtest's windows (window_events): per per-symbol message class, per symbol, False (not
        # subscribed) or the dict its last seq is kept in (by symbol); per (class, topic key) of the
        # other types, whether it is subscribed to.
        self._window_routes: dict[type, dict[str, Any]] = {c: {} for c in _PER_SYMBOL}
        self._window_others: dict[tuple[type, str], bool] = {}
        self.candles = CandleJoin()  # per candle stream, the newest closed bar handed to the strategy
        # Dispatch by message type, checked against the codec's tables (a new type needs a handler).
        self._report_handlers: dict[type, Callable[[Any, float], ReportEvent]] = wire.dispatch_table(
            wire.REPORT_TYPES,
            {OrderReport: self._on_report, Welcome: self._on_welcome, Refusal: self._on_refusal,
             History: self._on_history, AccountEvent: self._on_report},
        )  # fmt: skip
        self.books = BookCopies()  # the full-depth books the strategy asked for (client/book.py)
        self._md_handlers: dict[type, Callable[[Any], MdEvent]] = wire.dispatch_table(
            wire.MARKET_DATA_TYPES,
            {Ticker: self._ticker_via_table, Book: self._book_or_trade, Trade: self._book_or_trade,
             VenueStatus: self._status, Candle: self._candle, FeedsStatus: self._feeds,
             MarkPrice: self._book_or_trade, FundingRate: self._book_or_trade,
             PriceLimit: self._book_or_trade, Sync: self._feeds, Depth: self.books.on_depth,
             BookUpdate: self.books.on_fullbook, BookStatus: self.books.on_status, Window: self._feeds},
        )  # fmt: skip

    # ------------------------------------------------------------------ requests out

    def requests_to_send(self) -> list[Hello | Heartbeat | Goodbye]:
        """The requests queued since the last call, oldest first."""
        out = self._requests
        if out:
            self._requests = []
        return out

    def hello(self, now: float) -> None:
        """Start a (re-)join: a hello with a fresh nonce and our last seq, re-sent until the welcome."""
        self.nonce = self._new_nonce()
        self.target = None
        self._welcome = None
        self._requests.append(self._hello_msg())
        self._next_hello = now + self._hello_interval()

    def _hello_msg(self) -> Hello:
        return Hello(self.strategy_id, self.last_seq, self.nonce, session=self.session)

    def _hello_interval(self) -> float:
        return LOST_HELLO_INTERVAL if self.lost or self.refused is not None else HELLO_INTERVAL

    def goodbye(self) -> None:
        """We leave cleanly: queue a goodbye (the server applies its dead-strategy policy at once)."""
        self._requests.append(Goodbye(self.strategy_id, self.session))

    def start(self, now: float) -> None:
        """The strategy is running (its ``on_start`` returned): from now on :meth:`tick` also sends a
        heartbeat every second (the first at once), a hello every SYNC_INTERVAL and one after a stall."""
        self.running = True
        self._last_tick = now
        self._last_heard = now
        self._next_sync = now + SYNC_INTERVAL
        self._next_heartbeat = now

    def tick(self, now: float, wall_ms: int) -> ServerLost | None:
        """What is due at ``now``; ``wall_ms`` (epoch milliseconds) stamps a heartbeat. Returns
        :class:`ServerLost` once when the server falls silent while running."""
        lost = None
        if self.running:
            if now - self._last_tick > STALL:
                self._last_heard = now  # we were not listening: no verdict on the server from that
                if not self.nonce:
                    # Reports dropped at the PUB high-water mark while we were not reading leave no
                    # gap if nothing follows them: ask for everything after the last one we handled.
                    log.info("event loop stalled for %.1f s: re-joining from seq %d", now - self._last_tick,
                             self.last_seq)  # fmt: skip
                    self.hello(now)
            self._last_tick = now
            if self._heard:
                self._heard = False
                self._last_heard = now
            elif not self.lost and now - self._last_heard > SERVER_SILENT:
                self.lost = True
                self._status_seq = 0  # a server that comes back may be a new one, counting from 0
                lost = ServerLost(now - self._last_heard)
                log.warning("no word from the server for %.1f s (no status, no report): it is gone or "
                            "unreachable; re-joining, a hello every %.0f s", lost.silent, LOST_HELLO_INTERVAL)  # fmt: skip
                self.hello(now)
            if now >= self._next_sync:
                if not self.nonce:
                    self.hello(now)
                self._next_sync = now + SYNC_INTERVAL
            if now >= self._next_heartbeat:
                self._requests.append(Heartbeat(self.strategy_id, wall_ms, self.session))
                self._next_heartbeat = now + HEARTBEAT_INTERVAL
        if self._rejoin:
            self._rejoin = False
            if not self.nonce:
                self.hello(now)
        if self.refused is not None and self.nonce and not self._deciding and now >= self._decide_at:
            # the owner could be taken over now if it is gone: a fresh nonce, whose answer decides
            self.hello(now)
            self._deciding = True
        if self.nonce and self.target is None and now >= self._next_hello:
            # The same nonce: a welcome for any of these hellos will do; the newest last_seq matters.
            self._requests.append(self._hello_msg())
            self._next_hello = now + self._hello_interval()
        elif self.target is not None and now - self._progress > CATCHUP_STALL:
            log.info("catching up: no report for %.1f s at seq %d of %d: asking again", now - self._progress,
                     self.last_seq, self.target)  # fmt: skip
            self.hello(now)
        return lost

    def next_wakeup(self) -> float | None:
        """The latest time :meth:`tick` must be called at (None: nothing is scheduled; 0.0: at once,
        a re-join was decided where no time was given)."""
        if self._rejoin:
            return 0.0
        times = []
        if self.nonce and self.target is None:
            times.append(self._next_hello)
            if self.refused is not None and not self._deciding:
                times.append(self._decide_at)  # the deciding hello (tick)
        elif self.target is not None:
            times.append(self._progress + CATCHUP_STALL)
        if self.running:
            times += (self._next_heartbeat, self._next_sync)
        return min(times) if times else None

    def reconnected(self, now: float) -> None:
        """The report socket (re)connected: reports published while it was down never arrive."""
        if not self.nonce:
            log.info("report channel (re)connected: re-joining from seq %d", self.last_seq)
            self.hello(now)

    # ------------------------------------------------------------------ reports in

    def receive_report_frame(self, frame: bytes, now: float) -> ReportEvent:
        """One frame from ``report/<strategy_id>/``; a bad frame is logged and dropped."""
        msg: Any = _decode_report(frame)  # an order report, most of the traffic (None: anything else)
        if msg is None:
            try:
                msg = wire.decode_message(frame)
            except WireError as exc:
                log.warning("dropped a bad report frame: %s", exc)
                return None
        return self.receive_report(msg, now)

    def receive_report(self, msg: Any, now: float) -> ReportEvent:
        """One decoded message from the report channel."""
        self._heard = True
        handler = self._report_handlers.get(type(msg))
        return handler(msg, now) if handler is not None else None

    def _on_report(self, msg: OrderReport | AccountEvent, now: float) -> Report | None:
        if msg.seq <= self.last_seq:
            return None  # a duplicate: already handled
        if msg.seq != self.last_seq + 1:
            target = self.target
            if target is not None:
                if msg.seq <= target:
                    # A gap in the replay we catch up with: lost on the way. What follows is of no
                    # use; ask again from where we are (answered once that replay has ended).
                    self.report_gaps += 1
                    log.info("report gap while catching up: have %d, got %d (of %d): asking again",
                             self.last_seq, msg.seq, target)  # fmt: skip
                    self.hello(now)
                # else a live report beyond the welcome's last seq: the replay brings it in order
            elif not self.nonce and not self.gave_up:  # given up: the id's reports are another's
                # A gap: something was dropped on the way. Ask again from where we are.
                self.report_gaps += 1
                log.info("report gap: have %d, got %d: re-joining", self.last_seq, msg.seq)
                self.hello(now)
            return None
        self.last_seq = msg.seq
        self._progress = now
        joining = not self.joined
        if self.target is not None and msg.seq >= self.target:
            assert self._welcome is not None
            return Report(msg, joining, self._synced(self._welcome))
        return Report(msg, joining)

    def _on_history(self, msg: History, now: float) -> History:
        return msg

    def _on_refusal(self, msg: Refusal, now: float) -> Refused | None:
        if msg.session != self.session or not self.nonce or self.gave_up:
            return None  # another process's hello was refused, not ours (or we stopped asking)
        first = self.refused is None
        if first:
            # The owner may be a process killed without a goodbye: ask again, a hello a second, and
            # once it could have been taken over, a deciding hello (tick).
            self._decide_at = now + msg.retry_after + TAKEOVER_MARGIN
            self._deciding = False
            self._next_hello = now + LOST_HELLO_INTERVAL
        elif self._deciding and msg.nonce == self.nonce:
            # refused after the owner could have been taken over: it heartbeats, it is live
            log.error("still refused after the owner's heartbeats could have stopped: giving up")
            self.nonce = ""
            self.gave_up = True
        self.refused = msg
        return Refused(msg, first)

    def _on_welcome(self, msg: Welcome, now: float) -> Synced | None:
        if not (self.nonce and msg.nonce == self.nonce):
            return None  # a welcome for another hello (ours or not)
        if msg.instruments:  # before the replay that follows: its fills need the contract facts
            self.instruments = {i.symbol: i for i in msg.instruments}
        if self.refused is not None:
            log.info("the id's previous process is gone: joining in its place")
            self.refused = None
            self._deciding = False
        if self.target is not None:
            # A repeated welcome for the hello we catch up with (the server answers a repeat of
            # the hello with its welcome again): the replay goes on to the newer seq.
            if msg.last_seq > self.target:
                self.target, self._welcome = msg.last_seq, msg
            return None
        if msg.last_seq > self.last_seq:
            # The reports up to msg.last_seq follow: catch up.
            self._progress = now
            self.target = msg.last_seq
            self._welcome = msg
            return None
        return self._synced(msg)

    def _synced(self, msg: Welcome) -> Synced:
        self.nonce = ""
        self.target = None
        self._welcome = None
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
        back, self.lost = self.lost, False
        return Synced(msg, first, back)

    # ------------------------------------------------------------------ market data in

    def receive_md_frame(self, frame: bytes) -> Ticker | MdEvent:
        """One market-data frame, its seq gap counted; None for a bad frame or an unknown type."""
        # Tickers are most of the traffic: the server's template first (seqtrade.tickerframes), then
        # the specialised decoder, and the gap check inline.
        t = self._template_ticker(frame)
        if t is None:
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

    def receive_window_frame(self, frame: bytes) -> Ticker | MdEvent:
        """A frame of a backtest's ``window/`` topic: what :meth:`receive_md_frame` gives for it (its
        :class:`~seqtrade.vclock.Window`), without first trying it as a ticker."""
        try:
            msg = wire.decode_message(frame)
        except WireError as exc:
            log.warning("dropped a bad market-data frame: %s", exc)
            return None
        return msg if msg.__class__ is Window else self.window_md(msg)

    def _other_md(self, msg: Any) -> MdEvent:
        handler = self._md_handlers.get(type(msg))
        return handler(msg) if handler is not None else None

    def window_md(self, msg: Any) -> Ticker | MdEvent:
        """One market-data message of a backtest's :class:`~seqtrade.vclock.Window`, already decoded: what
        :meth:`receive_md_frame` gives for the same message in its own frame (its seq gap counted)."""
        if msg.__class__ is not Ticker:
            return self._other_md(msg)
        gap = msg.seq - self._ticker_seq.get(msg.symbol, msg.seq - 1) - 1  # the same count as for a frame
        self.md_gaps += max(gap, 0)
        self._ticker_seq[msg.symbol] = msg.seq
        return msg

    def window_events(self, md: list[Any], wants: Callable[[Any], bool]) -> Iterator[Ticker | MdEvent]:
        """A backtest window's messages one by one, as :meth:`window_md` gives them (None skipped), each
        only if ``wants(msg)`` (the topic was subscribed to: asked once per topic, the answer kept). Each
        message's seq gap is counted when the message is reached, just before it is handed over: what a
        callback sees is what it would see had every message come in its own frame. A generator: the
        caller calls the strategy's callback for each event before asking for the next.

        The per-symbol topics (tickers, books, trades, mark, funding, price limits: most of a window)
        take a short path here, with the same seq bookkeeping as :meth:`receive_md_frame` and
        :meth:`window_md`; the others go through :meth:`window_md`."""
        routes, others = self._window_routes, self._window_others
        for msg in md:
            cls = msg.__class__
            topics = routes.get(cls)
            if topics is not None:
                sym = msg.symbol
                try:
                    seqs = topics[sym]
                except KeyError:  # the topic's first message
                    seqs = topics[sym] = self._window_route(cls, msg, wants)
                if seqs is False:
                    continue
                seq = msg.seq  # the same rule as receive_md_frame's and _seq_gap's
                last = seqs.get(sym)
                if last is not None and seq > last + 1:
                    self.md_gaps += seq - last - 1
                seqs[sym] = seq
                yield msg
            else:
                k = (cls, getattr(msg, wire.CODECS[cls].key))
                ok = others.get(k)
                if ok is None:
                    ok = others[k] = wants(msg)
                if ok:
                    ev = self.window_md(msg)
                    if ev is not None:
                        yield ev

    def _window_route(
        self, cls: type, msg: Any, wants: Callable[[Any], bool]
    ) -> dict[str, int] | Literal[False]:
        """A per-symbol topic of a window: False (not subscribed), else the dict of its kind's last seqs
        by symbol (the ticker path's, or the one :meth:`_seq_gap` keeps for the kind)."""
        if not wants(msg):
            return False
        if cls is Ticker:
            return self._ticker_seq
        return self._md_seq.setdefault(cls.__name__, {})

    def _ticker_via_table(self, msg: Ticker) -> None:
        raise AssertionError("tickers take the fast path in receive_md_frame")  # pragma: no cover

    def _book_or_trade(self, msg: Book | Trade | MarkPrice | FundingRate | PriceLimit) -> Any:
        """Any per-symbol message but the ticker and candles: its seq gap counted per topic."""
        self._seq_gap(msg.__class__.__name__, msg.symbol, msg.seq)
        return msg

    def _candle(self, msg: Candle) -> Candle:
        self._seq_gap("candle", msg.stream, msg.seq)
        return msg

    def _seq_gap(self, kind: str, key: str, seq: int) -> None:
        seqs = self._md_seq.get(kind)
        if seqs is None:
            seqs = self._md_seq[kind] = {}
        last = seqs.get(key)
        if last is not None and seq > last + 1:
            self.md_gaps += seq - last - 1
        seqs[key] = seq

    def _feeds(self, msg: FeedsStatus | Sync | Window) -> FeedsStatus | Sync | Window:
        return msg

    def _status(self, msg: VenueStatus) -> VenueStatus:
        self._heard = True
        if msg.seq < self._status_seq and not self.nonce:
            # The server restarted: re-join so nothing published before we reconnected is lost.
            log.info("server restarted: re-joining from seq %d", self.last_seq)
            self._rejoin = True
        self._status_seq = msg.seq
        return msg


ReportEvent = Report | Synced | Refused | History | None
"""What one report-channel frame gives: an event for the shell, or nothing."""
MdEvent = (
    Book
    | Trade
    | VenueStatus
    | Candle
    | FeedsStatus
    | MarkPrice
    | FundingRate
    | PriceLimit
    | Sync
    | Window
    | LocalBook
    | BookStatus
    | None
)
"""What one market-data frame other than a ticker gives; a full-depth book comes as the strategy's
own copy (a LocalBook), and only when it changed and is valid (client/book.py)."""
