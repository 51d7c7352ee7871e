"""The strategy process's I/O shell: its three sockets, the poll loop, the clock and signals.

Every protocol rule (join, de-duplication, gaps, re-joins, heartbeats) lives in
:class:`~seqtrade.client.protocol.ClientProtocol`; this module feeds it frames and the time, sends
the requests it queues and calls the strategy's callbacks for the events it returns. Each callback
(``on_*`` and timers alike) is called through one guard: the first exception of each callback is
logged with its traceback, later ones are counted and summarised in one line per 10 s
(:mod:`seqtrade.client.errorlog`), the counts go to the server with every heartbeat, and the
strategy goes on.

The loop is a plain blocking ``zmq_poll`` loop on the strategy's own thread, not Trio or asyncio:
a strategy's callback latency is the product, and a blocking wait is what raw pyzmq measures (an
async loop adds 20-50 µs per wake-up; bench/README.md). A wake-up polls the two sockets that carry
messages and handles what came; the due work (heartbeats, hellos, timers, the report socket's
reconnections) runs at its deadlines, which bound the poll's timeout (:func:`_run_loop`). A process a
backtest started waits on a blocking receive of its market-data socket instead, a window a wake-up
(:func:`_run_backtest_loop`).
``seqtrade bench`` measures the result against raw pyzmq in the same run; bench/client_wake.py the
strategy process's cost per wake-up.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgpack
import zmq

from .. import trace, wire
from ..candles import MAX_HISTORY, Candle, History
from ..config import Config
from ..errors import SeqtradeError
from ..feedhealth import FeedsStatus
from ..models import (
    AccountEvent,
    Book,
    BookStatus,
    FundingRate,
    Heartbeat,
    MarkPrice,
    PriceLimit,
    Ticker,
    Trade,
    VenueStatus,
)
from ..security import ClientCurve, apply_client_curve, client_curve
from ..vclock import VIRTUAL_CLOCK_ENV, Sync, SyncAck, Window
from .book import FULL, LocalBook
from .errorlog import SUMMARY_INTERVAL, CallbackErrors
from .protocol import HELLO_INTERVAL, ClientProtocol, Refused, Report, ServerLost, Synced
from .strategy import Strategy

__all__ = [
    "Endpoints",
    "Connection",
    "run_strategy",
    "DEFAULT_JOIN_TIMEOUT",
    "EXIT_NO_SERVER",
    "EXIT_REFUSED",
]

log = logging.getLogger("seqtrade.client")

MAX_POLL = 0.25  # the longest the loop sleeps: bounds how late stop() is noticed
SYNC_WAIT_MS = 10_000  # a backtest's sync: how long to wait for the reports it names
# A backtest's receive waits until the due work's time or at most this much after it (its timeout is
# set again only when the due time is this much closer than the timeout set: not once a window).
RECV_SLACK_MS = 10
MD_BATCH = 4096  # market-data frames handled between two looks at the report socket and the clock
BACKTEST_GC_THRESHOLD = 35_000  # the cyclic collector's young generation in a backtest (_backtest_gc)
DEFAULT_JOIN_TIMEOUT = 60.0  # seconds without a welcome before ``seqtrade run`` gives up
WAIT_NOTICE = 5.0  # while waiting for the server: a status line this often
EXIT_NO_SERVER = 2  # the server never answered the join
EXIT_REFUSED = 3  # the server refused the join: another live process trades as this id


@dataclass(frozen=True)
class Endpoints:
    """Where the server's three sockets are: market data, orders, reports (docs/protocol.md)."""

    md: str
    order: str
    report: str
    curve: ClientCurve | None = None  # CurveZMQ keys, required for tcp:// endpoints

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str] | None = None) -> Endpoints:
        """The config's endpoints; for tcp:// ones also the CURVE keys (the secret from the environment)."""
        curve = client_curve(config, os.environ if environ is None else environ)
        return cls(config.endpoint("md"), config.endpoint("order"), config.endpoint("report"), curve)

    @classmethod
    def from_run_dir(cls, run_dir: str | os.PathLike[str]) -> Endpoints:
        d = Path(run_dir).resolve()
        return cls(f"ipc://{d / 'md.ipc'}", f"ipc://{d / 'order.ipc'}", f"ipc://{d / 'report.ipc'}")


class Connection:
    """The strategy's three sockets. Owned by the strategy's thread."""

    def __init__(
        self, endpoints: Endpoints, strategy_id: str, *, context: zmq.Context[Any] | None = None
    ) -> None:
        self.ctx = context or zmq.Context.instance()
        self.strategy_id = strategy_id
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 2000)  # let the last orders/cancels out on stop
        self.push.setsockopt(zmq.SNDHWM, 100_000)
        apply_client_curve(self.push, endpoints.order, endpoints.curve)
        self.push.connect(endpoints.order)
        self.md = self.ctx.socket(zmq.SUB)
        self.md.setsockopt(zmq.RCVHWM, 1_000_000)
        self.md.setsockopt(zmq.LINGER, 0)
        apply_client_curve(self.md, endpoints.md, endpoints.curve)
        self.md.connect(endpoints.md)
        self.reports = self.ctx.socket(zmq.SUB)
        self.reports.setsockopt(zmq.RCVHWM, 1_000_000)
        self.reports.setsockopt(zmq.LINGER, 0)
        self.reports.setsockopt(zmq.SUBSCRIBE, wire.topic("report", strategy_id))
        apply_client_curve(self.reports, endpoints.report, endpoints.curve)
        # (Re)connections of the report socket: reports published while it was disconnected (a server
        # restart) never arrive, so the session re-joins with a hello after each one.
        self.report_events = self.reports.get_monitor_socket(zmq.EVENT_CONNECTED)
        self.reports.connect(endpoints.report)
        self.topics: list[
            bytes
        ] = []  # the market-data subscriptions (a backtest's window is filtered by them)

    def subscribe(self, kind: str, key: str) -> None:
        self.subscribe_prefix(wire.topic(kind, key))

    def subscribe_prefix(self, prefix: bytes) -> None:
        """Subscribe the market-data socket to every topic starting with ``prefix``."""
        self.md.setsockopt(zmq.SUBSCRIBE, prefix)
        self.topics.append(prefix)

    def wants(self, topic: bytes) -> bool:
        """Whether a message of ``topic`` is one this connection subscribed to."""
        return any(topic.startswith(p) for p in self.topics)

    def send(self, msg: Any) -> None:
        """Queue one request frame; raises if the order channel stays full for a second."""
        self.send_frame(wire.encode_message(msg), getattr(msg, "client_order_id", ""))

    def send_frame(self, frame: bytes, client_order_id: str = "") -> None:
        """Queue one encoded request frame (an order's from :class:`~seqtrade.client.orderframes.OrderFrames`)."""
        try:
            self.push.send(frame, zmq.NOBLOCK)
            if trace.ON:
                trace.mark(client_order_id, "c_sent")
        except zmq.Again:
            if not self.push.poll(1000, zmq.POLLOUT):
                raise SeqtradeError(
                    "order channel is full: the server is not reading (is it running?)"
                ) from None
            self.push.send(frame, zmq.NOBLOCK)

    def close(self) -> None:
        self.md.close()
        self.reports.disable_monitor()
        self.report_events.close(linger=0)
        self.reports.close()
        self.push.close()


def _overrides(strategy: Strategy, name: str) -> bool:
    return getattr(type(strategy), name) is not getattr(Strategy, name)


_MD_CALLBACK = {Book: "on_book", Trade: "on_trade", VenueStatus: "on_status", FeedsStatus: "on_feed_status",
                MarkPrice: "on_mark", FundingRate: "on_funding", PriceLimit: "on_price_limit",
                LocalBook: "on_depth", BookStatus: "on_book_status"}  # fmt: skip
# The derivatives topics a strategy is subscribed to when it overrides the callback.
_DERIVATIVE_MD = (("mark", "on_mark"), ("funding", "on_funding"), ("price_limit", "on_price_limit"))


class _Shell:
    """Between the protocol and the strategy: sends what the protocol queues, calls the callbacks."""

    def __init__(self, strategy: Strategy, conn: Connection, proto: ClientProtocol) -> None:
        self.s = strategy
        self.conn = conn
        self.proto = proto
        self.errors = 0  # callbacks that raised
        self.errlog = CallbackErrors()
        self.refused = ""  # why the server refused our session ("": it did not)
        # A backtest's windows: the callback of each event class (built at its first event).
        self._window_calls: dict[type, tuple[str, Callable[[Any], Any]]] = {}
        self._windows = 0  # window frames handled
        self._ack_parts: tuple[str, bytes, bytes, bytes] | None = None  # (session, our sync_ack's parts)
        self.recheck = False  # something came that may change when the due work runs (run loop)
        self.md_burst = True  # the last market-data wake-up brought more than one frame (drain_md)
        self.md_singles = 0  # market-data wake-ups that brought one frame

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call one strategy callback; an exception is logged and counted, never fatal."""
        try:
            fn(*args)
        except Exception as exc:  # a strategy's bug must not end its process silently mid-trade
            self.raised(getattr(fn, "__name__", str(fn)), exc)

    def raised(self, name: str, exc: Exception) -> None:
        """Count one exception of callback ``name`` (called in its ``except`` block): the first of
        each callback is logged with its traceback, the others in the summary lines of ``flush``."""
        self.errors += 1
        if self.errlog.record(name, exc, time.monotonic()):
            log.exception("%s raised (counted from now on: one line per %g s, and in `seqtrade status`)",
                          name, SUMMARY_INTERVAL)  # fmt: skip

    def summarise_errors(self, *, final: bool = False) -> None:
        now = time.monotonic()
        for line in self.errlog.final(now) if final else self.errlog.due(now):
            log.error("%s", line)

    def flush(self) -> None:
        if self.errors:
            self.summarise_errors()
        for msg in self.proto.requests_to_send():
            if isinstance(msg, Heartbeat):
                msg.errors = self.errlog.for_heartbeat()
            self.conn.send(msg)

    def drain_reports(self, sock: zmq.Socket[Any], limit: int = 100_000) -> None:
        receive, s = self.proto.receive_report_frame, self.s
        now = time.monotonic()
        tracing = trace.ON  # fixed at import: not looked up per frame
        held = s._held_reports  # read by history() while it waited: first, in their order
        received = 0  # frames received here (after the first, the socket is asked first: drain_md)
        for _ in range(limit):
            if held:
                frame = held.pop(0)
            else:
                if received and not _readable(sock):
                    break
                try:
                    frame = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                received = 1
            if tracing:
                t_recv = time.time_ns()
            ev = receive(frame, now)
            if ev is None:
                continue
            if isinstance(ev, Report):
                r = ev.report
                if isinstance(r, AccountEvent):
                    s._apply_account_event(r)
                    if not ev.joining:
                        self.call(s.on_account_event, r)
                else:
                    s._apply_report(r)
                    if not ev.joining:
                        if tracing:
                            key = f"{r.client_order_id}:{r.status}"
                            trace.mark(key, "c_recv", t_recv)
                            trace.mark(key, "c_decoded")
                        self.call(s.on_order, r)
                        if tracing:
                            trace.mark(key, "c_done")
                if ev.synced is not None:
                    self.synced(ev.synced)
            elif isinstance(ev, Synced):
                self.synced(ev)
            elif isinstance(ev, History):
                pass  # an answer that came after its history() call gave up waiting
            else:
                self.refuse(ev)
        self.flush()

    def synced(self, ev: Synced) -> None:
        """A join completed: the welcome's open orders are the open orders; the served symbols are
        checked once; a join that ends a lost server is told to the strategy."""
        s = self.s
        s._reset_open_orders({r.client_order_id: r for r in ev.welcome.open_orders})
        served = ev.welcome.symbols
        if ev.first and served:
            unserved = [sym for sym in s.symbols if sym not in served]
            s.unserved_symbols = unserved
            if unserved:
                log.error("the server does not serve %s (it serves %s): no market data will come for %s",
                          ", ".join(unserved), ", ".join(served), "it" if len(unserved) == 1 else "them")  # fmt: skip
        if ev.back:
            log.warning("server back: re-joined as %s at seq %d", self.proto.strategy_id, self.proto.last_seq)
            self.call(s.on_server_back)

    def refuse(self, ev: Refused) -> None:
        """Refused: another live process trades as this id. Said at once; the protocol asks again,
        and gives up only when it is refused after that process could have been taken over (see
        :func:`_join`)."""
        self.refused = ev.refusal.reason
        if ev.first:
            log.error("the server refused to let this process join as %s: %s", self.proto.strategy_id,
                      ev.refusal.reason)  # fmt: skip
            log.info("asking again, and once more in %.1f s when that process could be taken over if it is gone",
                     ev.refusal.retry_after)  # fmt: skip

    def tick(self, now: float) -> None:
        """The protocol's due work; a server that fell silent is told to the strategy."""
        if isinstance(self.proto.tick(now, time.time_ns() // 1_000_000), ServerLost):
            self.call(self.s.on_server_lost)

    def drain_md(self, sock: zmq.Socket[Any], limit: int = MD_BATCH) -> None:
        # The per-message path of the strategy: decode, gap check, callback. Keep it short.
        # After the first frame: at a few thousand messages a second each wake-up brings one, and a
        # receive that finds nothing costs an exception (several µs in pyzmq) and asking the socket a
        # system call, so while wake-ups bring one frame each the loop's next poll finds the next one
        # (the socket is asked every 8th time whether a burst began); in a burst the socket is asked
        # once and the rest received until a receive finds nothing.
        recv, receive, s = sock.recv, self.proto.receive_md_frame, self.s
        noblock, ticker = zmq.NOBLOCK, Ticker
        for i in range(limit):
            if i == 1:
                if not self.md_burst:
                    self.md_singles += 1
                    if self.md_singles & 7:
                        return
                if not _readable(sock):
                    self.md_burst = False
                    return
                self.md_burst = True
            try:
                frame = recv(noblock)
            except zmq.Again:
                return
            msg = receive(frame)
            if msg.__class__ is ticker:
                try:
                    s.on_ticker(msg)
                except Exception as exc:  # a strategy's bug must not end its process silently mid-trade
                    self.raised("on_ticker", exc)
            elif msg is not None:
                self.other_md(msg)

    def other_md(self, msg: Any) -> None:
        """A market-data message other than a ticker (its frame decoded and checked by the protocol)."""
        self.recheck = True  # a status may ask for a re-join (the next tick sends it)
        cls = msg.__class__
        if cls is Candle:
            self.candle(msg)
        elif cls is Sync:
            self.sync(msg)
        elif cls is Window:
            self.window(msg)
        else:
            self.call(getattr(self.s, _MD_CALLBACK[cls]), msg)

    def md_frame(self, frame: bytes) -> None:
        """One frame of a backtest's market-data socket (:func:`_run_backtest_loop`): a window frame
        decoded on the protocol's window path, any other as :meth:`drain_md` handles it."""
        proto = self.proto
        msg = (proto.receive_window_frame if frame.startswith(_WINDOW_TOPIC) else proto.receive_md_frame)(
            frame
        )
        if msg.__class__ is Ticker:
            self.call(self.s.on_ticker, msg)
        elif msg is not None:
            self.other_md(msg)

    def sync(self, msg: Sync) -> None:
        """A backtest's window ended (seqtrade.vclock): read our reports up to the seq it names, move
        the clock to its time (the timers due by then run), then acknowledge behind what we sent."""
        self.reports_up_to(msg)
        self.s._advance_clock(msg.t_ns, self.call)
        self.flush()
        self.conn.send_frame(self._sync_ack(msg.t_ns, msg.step))

    def reports_up_to(self, msg: Sync | Window) -> None:
        """Read our reports up to the seq ``msg`` names (published before it), waiting for them."""
        proto = self.proto
        target = msg.reports.get(proto.strategy_id, 0)
        while proto.last_seq < target:
            held = self.s._held_reports  # read by history() while it waited: not in the socket any more
            if not held and not self.conn.reports.poll(SYNC_WAIT_MS):
                log.warning(
                    "sync %d: reports up to seq %d did not come (at %d)", msg.step, target, proto.last_seq
                )
                break
            self.drain_reports(self.conn.reports)

    def _sync_ack(self, t_ns: int, step: int) -> bytes:
        """The frame of our ``sync_ack`` of window ``step`` (``batch``: we read window frames, the server
        may send the windows so): ``wire.encode_message(SyncAck(...))``'s bytes, built around the two
        numbers that change from one to the next (a MessagePack map is its keys and values one after
        the other; an integer's bytes do not depend on what is around it)."""
        parts = self._ack_parts
        if parts is None or parts[0] != self.proto.session:
            parts = self._ack_parts = (
                self.proto.session,
                *_sync_ack_parts(self.proto.strategy_id, self.proto.session),
            )
        return b"".join((parts[1], _pack(t_ns), parts[2], _pack(step), parts[3]))

    def window(self, w: Window) -> None:
        """A backtest's window in one frame: its market data, each message handed to the strategy as if
        it had come in its own frame (those of topics we subscribed to), then its sync (step > 0)."""
        if not self._windows and os.environ.get(VIRTUAL_CLOCK_ENV):  # a strategy process a backtest started
            _backtest_gc()
        self._windows += 1
        if w.step:  # the reports it names were published before it: read before its market data
            self.reports_up_to(w)
        calls, raised = self._window_calls, self.raised
        for ev in self.proto.window_events(w.md, self._wants):
            try:
                name, fn = calls[ev.__class__]
            except KeyError:  # the class's first event
                name, fn = calls[ev.__class__] = self._window_call(ev.__class__)
            try:
                fn(ev)
            except Exception as exc:  # a strategy's bug must not end its process silently mid-trade
                raised(name, exc)
        if w.step:
            self.sync(w)

    def _wants(self, msg: Any) -> bool:
        """Whether ``msg``'s topic is one we subscribed to (asked once per topic of a window's messages)."""
        return self.conn.wants(wire.codec_for(msg.__class__).topic(msg))

    def _window_call(self, cls: type) -> tuple[str, Callable[[Any], Any]]:
        """(name, callable) handling a market-data event of class ``cls`` as ``drain_md`` does."""
        if cls is Ticker:
            return "on_ticker", self.s.on_ticker
        if cls is Candle:
            return "candle", self.candle
        name = _MD_CALLBACK[cls]
        return name, getattr(self.s, name)

    def candle(self, c: Candle) -> None:
        """One live candle, joined to what the strategy has: a duplicate of a bar handed over is
        dropped; a closed bar that skips some is preceded by the missing ones, asked of the server."""
        join, s = self.proto.candles, self.s
        missing = join.missing(c)
        if missing:
            try:
                fetched = s._fetch_history(c.symbol, c.bar, min(MAX_HISTORY, missing + 2), 10.0)
            except (TimeoutError, SeqtradeError) as exc:
                log.warning("candles %s: %d bars missing and not fetched: %s", c.stream, missing, exc)
            else:
                for bar in join.seed(fetched):
                    self.call(s.on_candle, bar)
        if join.accept(c) is not None:
            self.call(s.on_candle, c)


_pack = msgpack.Packer(use_bin_type=True).pack
_WINDOW_TOPIC = b"window/"  # how a window frame starts (its topic: window/<venue>/)
_T_MARK, _STEP_MARK = 2**64 - 0x5EC7_1A5E, 2**64 - 0x57E9_0A11  # (their packed bytes occur nowhere else)


def _sync_ack_parts(strategy_id: str, session: str) -> tuple[bytes, bytes, bytes]:
    """Our ``sync_ack`` frame cut where its ``t`` and its ``step`` are: (before t, between, after step)."""
    frame = wire.encode_message(SyncAck(strategy_id, _T_MARK, _STEP_MARK, session, True))
    t, step = _pack(_T_MARK), _pack(_STEP_MARK)
    i, j = frame.index(t), frame.index(step)
    assert frame.count(t) == frame.count(step) == 1 and i < j
    return frame[:i], frame[i + len(t) : j], frame[j + len(step) :]


def _backtest_gc() -> None:
    """At a backtest's first window frame: what lives by then (the strategy, the client, their imports)
    is out of the cyclic collector's sight, and its young generation is collected 50 times less often.
    A backtest decodes millions of small objects (rows, levels, models) that hold no cycles: with the
    default threshold the collector walks them every 700 allocations, half of a window's cost."""
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], BACKTEST_GC_THRESHOLD), *threshold[1:])


def run_strategy(
    strategy: Strategy,
    strategy_id: str,
    endpoints: Endpoints,
    *,
    join_timeout: float | None = None,
    context: zmq.Context[Any] | None = None,
) -> int:
    """Run ``strategy`` until it stops; returns a process exit code.

    Joins as docs/protocol.md says (hello every 100 ms until the welcome with our nonce, then the
    reports up to its last seq; every report replayed while joining updates state without calling
    ``on_order``), then calls ``on_start`` and dispatches until ``stop()``, SIGINT or SIGTERM, and
    says goodbye. While waiting for the server it says so at once and every few seconds;
    ``join_timeout`` None waits for ever. Exit codes: 0, :data:`EXIT_NO_SERVER` (no answer within
    ``join_timeout``), :data:`EXIT_REFUSED` (another live process trades as this id).
    """
    if not wire.STRATEGY_ID_RE.match(strategy_id):
        raise SeqtradeError(f"strategy id {strategy_id!r} must match [A-Za-z0-9_-]{{1,32}}")
    conn = Connection(endpoints, strategy_id, context=context)
    proto = ClientProtocol(strategy_id)
    strategy.strategy_id = strategy_id
    strategy._conn = conn
    strategy._protocol = proto
    shell = _Shell(strategy, conn, proto)
    subscribed = []
    for sym in strategy.symbols:
        conn.subscribe("ticker", sym)
        if _overrides(strategy, "on_book"):
            conn.subscribe("book", sym)
        if _overrides(strategy, "on_trade"):
            conn.subscribe("trade", sym)
        for bar in strategy.bars:
            conn.subscribe("candle", f"{sym}@{bar}")
        for kind, callback in _DERIVATIVE_MD:
            if _overrides(strategy, callback):
                conn.subscribe(kind, sym)
        subscribed.append(sym)
    for sym, depth in strategy.book_depth.items():
        proto.books.want(sym, depth)  # ValueError for a bad depth, before anything is sent
        conn.subscribe("fullbook" if depth == FULL else "depth", sym)
        conn.subscribe("book_status", sym)
    conn.subscribe_prefix(b"status/")
    conn.subscribe_prefix(b"sync/")  # a backtest's clock (seqtrade.vclock); never sent live
    conn.md.setsockopt(zmq.SUBSCRIBE, b"window/")  # a backtest's windows in one frame; never sent live
    if _overrides(strategy, "on_feed_status"):
        conn.subscribe_prefix(b"feed_status/")
    events = conn.report_events
    restore = _install_stop_signals(strategy)
    started = False
    try:
        # ---------------------------------------------------------- join
        code = _join(shell, endpoints, join_timeout)
        if code is not None:
            return code
        log.info("%s joined as %s: last seq %d, %d open orders, symbols %s", type(strategy).__name__, strategy_id,
                 proto.last_seq, len(strategy.open_orders), ", ".join(subscribed) or "-")  # fmt: skip
        _drain(events)  # the first connection: the join covered it
        started = True
        shell.call(strategy.on_start)
        # ---------------------------------------------------------- run
        proto.start(time.monotonic())
        _run_loop(shell, events)
        return EXIT_REFUSED if proto.gave_up else 0
    finally:
        if started:
            shell.call(strategy.on_stop)
            _goodbye(shell)
        shell.summarise_errors(final=True)
        restore()
        conn.close()
        strategy._conn = None


def _run_loop(shell: _Shell, events: zmq.Socket[Any]) -> None:
    """Dispatch until ``stop()`` or until another process took the id over (``proto.gave_up``).

    A wake-up costs what raw pyzmq's blocking receive costs plus as little as can be: one clock read,
    one ``zmq_poll`` of the two sockets that carry messages (reports first), the frames. The due work
    (the protocol's heartbeats, hellos and silence checks, the strategy's timers, the queued requests,
    the report socket's reconnections) runs when it is due, not per wake-up: at the protocol's next due
    time (at most :data:`MAX_POLL` apart) and at the first timer's. Reports and market data other than
    tickers may move the protocol's due time (a hello queued on a gap, a re-join asked for by a server
    restart): after them it is asked again (:meth:`ClientProtocol.next_wakeup`, no system call).

    A process a backtest started (the virtual clock) waits in :func:`_run_backtest_loop` instead.
    """
    if shell.s._virtual_ns is not None:
        _run_backtest_loop(shell, events)
        return
    s, conn = shell.s, shell.conn
    rep_sock, md_sock = conn.reports, conn.md
    items = [(rep_sock, zmq.POLLIN), (md_sock, zmq.POLLIN)]
    poll, monotonic = zmq.zmq_poll, time.monotonic
    drain_reports, drain_md = shell.drain_reports, shell.drain_md
    due = 0.0  # when the due work runs next
    while not s._stop:
        now = monotonic()
        timers = s._timers
        if now >= due or (timers and timers[0].when <= now and s._virtual_ns is None):
            next_due = _due_work(shell, events, now)
            if next_due is None:
                return
            due = next_due
            now = monotonic()  # the timers' callbacks took their time: the poll's timeout from now
        wake = due
        if timers and timers[0].when < wake and s._virtual_ns is None:
            wake = timers[0].when
        if s._held_reports:  # read by history() while it waited: handle them first
            drain_reports(rep_sock)
            due = 0.0
            continue
        for sock, _ in poll(items, max(0, int((wake - now) * 1000))):
            if sock is rep_sock:
                drain_reports(rep_sock)
                shell.recheck = True
            else:
                drain_md(md_sock)
        if shell.recheck:  # reports or other market data than tickers may have moved the protocol's due time
            due = _recheck(shell, due)


def _due_work(shell: _Shell, events: zmq.Socket[Any], now: float) -> float | None:
    """The due work at ``now`` (the protocol's tick, the report socket's reconnections, the queued
    requests, live timers): when it is due next, None when the loop stops (``stop()``, or refused)."""
    s, proto = shell.s, shell.proto
    shell.tick(now)
    if _readable(events):  # the report socket (re)connected
        _drain(events)
        proto.reconnected(now)
    shell.flush()
    if proto.gave_up:  # another process took this id over while we were away
        log.error("stopping: strategy id %s belongs to another live process (%s)", proto.strategy_id,
                  shell.refused)  # fmt: skip
        return None
    due = now + MAX_POLL
    timers = s._timers
    if timers and s._virtual_ns is None:  # a backtest's timers run on its syncs
        s._run_due_timers(now, shell.call)
    shell.recheck = False
    wake = proto.next_wakeup()
    if wake is not None and wake < due:
        due = wake
    return None if s._stop else due


def _recheck(shell: _Shell, due: float) -> float:
    """After reports or market data other than tickers: the due time, moved up if the protocol's is sooner."""
    shell.recheck = False
    proto = shell.proto
    wake = proto.next_wakeup()
    if wake is not None and wake < due:
        due = wake
    if proto.gave_up:  # refused for good: the due work stops the loop at once
        due = 0.0
    return due


def _run_backtest_loop(shell: _Shell, events: zmq.Socket[Any]) -> None:
    """:func:`_run_loop` in a process a backtest started: what comes is a window frame a wake-up (or a
    window's frames, then its sync), and the strategy answers each before the next is sent.

    The wait is a blocking receive on the market-data socket (its timeout the due work's time, give or
    take :data:`RECV_SLACK_MS`), not a ``zmq_poll`` of both sockets: libzmq's poll looks at every
    socket before it sleeps and again after: 16 system calls a window with the receive and the
    ``sync_ack``'s send, 9 this way. The reports a window names (``reports``: published before it)
    are read before its market data (:meth:`_Shell.window`), as the poll of both sockets, reports
    first, reads them when they have come by then; other frames of the report socket (a re-join's
    welcome) are read with the due work, at most :data:`MAX_POLL` apart, and whenever a window or
    sync waits for reports; and when the loop stops (the SIGTERM that ends a backtest): the last
    window's reports come with no window behind them."""
    s, conn = shell.s, shell.conn
    rep_sock, md_sock = conn.reports, conn.md
    recv, set_option, monotonic = md_sock.recv, md_sock.setsockopt, time.monotonic
    drain_reports, md_frame = shell.drain_reports, shell.md_frame
    due = 0.0  # when the due work runs next
    timeout = -1  # the receive's timeout set on the socket (ms; -1: none, libzmq's default)
    while not s._stop:
        now = monotonic()
        if now >= due:
            if _readable(rep_sock):
                drain_reports(rep_sock)
            next_due = _due_work(shell, events, now)
            if next_due is None:
                return
            due = next_due
            now = monotonic()
        if s._held_reports:  # read by history() while it waited: handle them first
            drain_reports(rep_sock)
            due = 0.0
            continue
        ms = max(0, int((due - now) * 1000) + 1)
        if not timeout - RECV_SLACK_MS <= ms <= timeout:  # (set less often than a window comes)
            set_option(zmq.RCVTIMEO, ms)
            timeout = ms
        try:
            frame = recv()
        except zmq.Again:  # the due work's time
            continue
        md_frame(frame)
        if shell.recheck:
            due = _recheck(shell, due)
    # Stopped (the SIGTERM that ends a backtest, or stop() in a callback): the reports that came by now
    # are handed over before on_stop, as the poll of both sockets read each when it came.
    if _readable(rep_sock):
        drain_reports(rep_sock)


def _join(shell: _Shell, endpoints: Endpoints, join_timeout: float | None) -> int | None:
    """The join, saying what it waits for; None once joined, else the exit code."""
    proto, strategy, rep_sock = shell.proto, shell.s, shell.conn.reports
    start = now = time.monotonic()
    proto.hello(now)
    shell.flush()
    limit = "waiting for ever" if join_timeout is None else f"giving up after {join_timeout:g} s"
    log.info("joining as %s: waiting for the server at %s (%s)", proto.strategy_id, endpoints.report, limit)
    deadline = None if join_timeout is None else now + join_timeout
    next_notice = now + WAIT_NOTICE
    while not proto.joined and not strategy._stop:
        now = time.monotonic()
        if proto.gave_up:
            log.error("not joined: strategy id %s belongs to another live process (%s)", proto.strategy_id,
                      shell.refused)  # fmt: skip
            return EXIT_REFUSED
        if deadline is not None and now > deadline:
            log.error("no answer from the server at %s within %g s: is it running (seqtrade serve), and is this "
                      "the right --config or --run-dir? (--join-timeout sets how long to wait)",
                      endpoints.report, join_timeout)  # fmt: skip
            return EXIT_NO_SERVER
        if now >= next_notice:
            if proto.target is not None:
                log.info("joining as %s: catching up, at seq %d of %d", proto.strategy_id, proto.last_seq,
                         proto.target)  # fmt: skip
            else:
                log.warning(
                    "still waiting for the server at %s (%.0f s, %s)", endpoints.report, now - start, limit
                )
            next_notice = now + WAIT_NOTICE
        proto.tick(now, time.time_ns() // 1_000_000)
        shell.flush()
        wake = proto.next_wakeup()
        timeout = HELLO_INTERVAL if wake is None else max(0.0, min(wake, next_notice) - now)
        if rep_sock.poll(int(timeout * 1000), zmq.POLLIN):
            shell.drain_reports(rep_sock)
    if strategy._stop:
        return 0
    shell.refused = ""
    return None


def _goodbye(shell: _Shell) -> None:
    """Leaving cleanly: tell the server (its dead-strategy policy applies at once, logged as a departure)."""
    shell.proto.goodbye()
    try:
        shell.flush()
    except SeqtradeError:  # the server is not reading: it will take us for dead instead
        log.warning("could not say goodbye: the server is not reading")


def _readable(sock: zmq.Socket[Any]) -> bool:
    """Whether a frame is ready on ``sock``: ZMQ_EVENTS, level-triggered, one system call and no
    exception (a receive that finds nothing raises ``zmq.Again``, which costs several µs)."""
    return bool(cast(int, sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)


def _drain(sock: zmq.Socket[Any]) -> None:
    """Discard every frame ready on ``sock`` (socket monitor events: only their arrival matters)."""
    while True:
        try:
            sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return


def _install_stop_signals(strategy: Strategy) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        strategy.stop()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore
