"""``seqtrade backtest``: the server plays a recording to strategy processes, on a virtual clock, and
fills their orders with the fill model.

:class:`BacktestVenue` is a :class:`~seqtrade.replay.ReplayVenue` that trades: orders and cancels go to
a :class:`~seqtrade.replay_fills.SimExchange` (the fill model behind the venue contract) and its
events come back as the venue's order events, through the server's ordinary path (risk gate, accounts,
journal, reports). Time is the recording's (``gw_ns``, the server's receive time), never the wall
clock, and the run goes as fast as the strategies can follow: a conservative discrete-event
simulation with the order latency as its lookahead (docs/backtesting.md, "Backtesting"):

1. A **window** starts at the next recorded message, ``w``, and ends at ``w + lookahead``. Its
   messages are published, each after the fill model has seen it (a trade at ``t`` fills resting orders
   at ``t``); the orders and cancels whose latency has passed by the window's end arrive.
2. Once the window's reports are numbered and its market data is on its way, a ``sync`` (``t`` = the
   window's end, each strategy's last report seq; :mod:`seqtrade.vclock`) follows the market data on
   the market-data socket. Each strategy reads up to it, moves its clock there, runs its timers, and
   answers ``sync_ack`` behind the orders it sent.
   Once every strategy's last ``sync_ack`` said it reads them (``batch``), the window goes out as one
   :class:`~seqtrade.vclock.Window` frame instead: its market data (each message numbered on its
   topic and stamped with its recorded time) and the ``sync``, encoded once for every strategy.
3. When every strategy has answered, the orders, cancels and amends of the window go to the fill model,
   **strategy by strategy** (ids in order; each strategy's own in the order it sent them: the same in
   every run, whatever order the processes' messages reached the server in), **as sent at the
   window's end**. Nothing they do can take effect before one latency later, which is not before the
   next window: that is why no strategy needs to see a message sooner, and why the lookahead must not
   exceed the smallest latency.

Deterministic: the same recording, config and strategy code give the same journal, byte for byte, and
the same results in every run (the strategies read ``Strategy.now()``, not the wall clock). The
server's clock is :attr:`BacktestVenue.clock`, a :class:`~seqtrade.clock.VirtualClock` at the window's
end (its ``gw_ns`` stamps, the time of requests); :attr:`BacktestVenue.sequencer` makes the server read
each window's requests in one order, in one batch (:mod:`seqtrade.sequencer`); the reports the venue
hands over are journaled in the batches it makes (it empties the report queue before it yields in a
window, and nothing else queues reports while it plays one); the journal's index is rewritten in a
content-only form at the end (:func:`seqtrade.server.app.canonical_index`; docs/backtesting.md,
"Determinism").
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import trio

from . import wire
from .backtest_results import FillRecord, Results, Tally
from .clock import VirtualClock
from .errors import SeqtradeError, WireError
from .fill_model import AtLeast, ConstantLatency, Contract, Fees, Latency
from .models import Book, Trade
from .replay import ReplayVenue, read_messages
from .replay_fills import SimExchange
from .sequencer import Classified, WindowSequencer
from .vclock import Sync, SyncAck, Window
from .venues.base import OrderEvent, VenueOrder, VenueSink

__all__ = ["BacktestVenue", "count_rows"]

log = logging.getLogger(__name__)

ACK_TIMEOUT_S = 60.0  # a strategy that does not answer a sync within this (wall) time ends the backtest
SYNC_RESEND_S = 1.0  # a sync not answered by every strategy within this (wall) time is sent again
BACKTEST_GC_THRESHOLD = 35_000  # the cyclic collector's young generation while a backtest runs
WINDOW_PART = 4096  # a window's frame carries at most this many messages (more: in parts)


def count_rows(data: Path, symbols: list[str]) -> int:
    """How many rows the replay will read (Parquet footers only): the progress line's total."""
    import pyarrow.parquet as pq

    from .recorder_rows import RESERVED, safe_key

    keys = {safe_key(s) for s in symbols}
    n = 0
    for f in data.rglob("*.parquet"):
        table, key = f.parts[-4], f.parts[-2]
        if table not in RESERVED and (table == "status" or key in keys):
            n += pq.ParquetFile(f).metadata.num_rows
    return n


@dataclass(slots=True)
class _Window:
    """A window read ahead: its end, its (recorded ns, message or connection change), the maps of its
    market data when it goes out as one frame (None: a frame per message), those rows packed when the
    whole window goes out in one frame (:func:`seqtrade.wire.pack_rows`; None: packed at the send), and
    what the fill model made of it when it played it ahead."""

    end: int
    items: list[tuple[int, Any]]
    bodies: list[list[Any]] | None
    packed: bytes | None = None
    # what the fill model produced per message when it played the window ahead (None: not played yet)
    ahead: list[tuple[list[OrderEvent], list[Any]] | None] | None = None


class BacktestVenue(ReplayVenue):
    """A recording that trades (see the module docstring). ``lookahead_ns`` must not exceed the smallest
    latency ``latency`` can give (1 ms by default, the default constant latency)."""

    name = "backtest"

    def __init__(self, data: Path, symbols: list[str], *, fees: Fees | None = None,
                 latency: Latency | None = None, lookahead_ns: int = 1_000_000, wait_for: int = 0,
                 grace: float = 0.5, progress: Callable[[int, int], None] | None = None,
                 period_s: float = 60.0, hold: bool = False, queue: str = "book",
                 contracts: Mapping[str, Contract] | None = None, play_ahead: bool = True) -> None:  # fmt: skip
        super().__init__(data, symbols, speed=0, wait_for=wait_for, grace=grace, stop_at_end=False)
        latency = latency or ConstantLatency(lookahead_ns)
        if isinstance(latency, ConstantLatency) and latency.ns < lookahead_ns:
            raise SeqtradeError(
                f"backtest: the lookahead ({lookahead_ns} ns) exceeds the latency ({latency.ns} ns)"
            )
        if lookahead_ns <= 0:
            raise SeqtradeError("backtest: the lookahead must be > 0 ns")
        self.sim = SimExchange(fees, latency, queue=queue, contracts=contracts)
        # no request arrives sooner than this after it is sent (0: the fill model plays no window ahead)
        self._floor_ns = _latency_floor(latency) if play_ahead else 0
        self.ahead = 0  # windows the fill model played ahead (:meth:`_play_ahead`)
        self._left: list[Any] = []  # funding the fill model settled ahead, after its last delivery
        self.lookahead_ns = lookahead_ns
        self.progress = progress
        self.period_s = period_s  # the Sharpe sampling period of :meth:`results`
        self.hold = hold  # at the end, keep the server (and its dashboard) up until stopped
        self.settings: dict[str, Any] = {}  # the run's choices, in its results (seqtrade.cli's [backtest])
        self.total = 0  # the rows the replay reads (with ``progress``): the progress' total
        self.owners: dict[str, tuple[str, str]] = {}  # venue order id -> (strategy id, client order id)
        # venue order id -> (when it was sent, the recording's time; the order as sent, before any amend)
        self.sent: dict[str, tuple[int, VenueOrder]] = {}
        # The results, as they go (seqtrade.backtest_results.Tally, made when the run starts): marks are
        # (ns, symbol, price) of each recorded price change, waiting until the strategies have their
        # window (at most the window played and the one read ahead); the fill model's fills and funding
        # from these indices on are not counted yet.
        self.tally: Tally | None = None
        self._marks: list[tuple[int, str, float]] = []
        self._last_price: dict[str, float] = {}
        self._fills_in = 0
        self._funding_in = 0
        self._shown_ns = 0  # the end of the last window whose sync went out: the results count up to it
        self.steps = 0
        self.framed = 0  # windows whose market data and sync went out as one frame (seqtrade.vclock.Window)
        self.start_ns = 0
        self.end_ns = 0
        self._inbox: list[tuple[str, str, Any]] = []  # (strategy, "new" | "cancel" | "amend", what)
        self._acks: dict[str, int] = {}
        self._ack_lot = trio.lowlevel.ParkingLot()  # _wait_acks parks here until its answers came
        self._awaited = 0  # the step _wait_acks waits for
        self._short = 0  # strategies whose answer to that step has not come yet
        self._watching = False  # the watchdog runs (:meth:`_watch`)
        self._due: tuple[int, bool] | None = None  # the watchdog's word: (step, timed out or resend)
        self._strategies: list[str] = []
        # The server's clock (seqtrade.clock): the recording's time, the end of the window being played.
        self.clock = VirtualClock()
        self.sequencer: WindowSequencer[bytes] | None = None  # the windows' requests in one order
        self._in_window = 0  # messages published since the last sync
        self._batch: dict[str, bool] = {}  # strategy id -> its last sync_ack said it reads Window frames
        self._window: list[Any] = []  # the window's market data, while windows go out as one frame
        # (self._window, its rows packed when the window was read) while self._window is one whole window
        self._packed: tuple[list[Any], bytes] | None = None
        self._topics: dict[tuple[type, str], bytes] = {}
        self._keys: dict[str, list[str]] = {}  # the keys of each type's rows in window frames
        self._md_seqs: dict[bytes, int] | None = None  # the server's per-topic seqs (its feed's)
        self._own_seqs: dict[bytes, int] = {}  # ... or our own, with a sink that has none
        # The server's direct send of a sync or window frame (Gateway.publish_now), if it has one.
        self._publish_now: Callable[[Sync], bool] | None = None

    @property
    def _clock_ns(self) -> int:
        return self.clock.now_ns

    @_clock_ns.setter
    def _clock_ns(self, ns: int) -> None:
        self.clock.now_ns = ns

    # ------------------------------------------------------------------ the run

    async def run(self, sink: VenueSink, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._sink = sink
        msgs = read_messages(self.data, self.symbols)
        nxt = next(msgs, None)
        if nxt is not None:
            self.start_ns = nxt[0]
            self._clock_ns = nxt[0] + self.lookahead_ns  # what strategies send before it: at its end
        if hasattr(sink, "clock_ms"):
            sink.clock_ms = self.clock_ms  # the server's time for requests: the recording's
        self._md_seqs = getattr(sink, "md_seqs", None)
        self._publish_now = getattr(sink, "publish_now", None)
        sink.set_connected(True)
        task_status.started()
        await self._wait_for_strategies(sink)
        connected = getattr(sink, "connected_strategies", None)
        self._strategies = sorted(connected()) if connected is not None else []
        self.sequencer = WindowSequencer(self._strategies, self._classify)
        self.tally = Tally(self.start_ns, self.period_s, self._strategies)
        if hasattr(sink, "sequencer"):
            sink.sequencer = self.sequencer
        log.info("backtest: %s (%s), strategies %s, lookahead %.3f ms", self.data, ", ".join(self.days) or "no data",
                 ", ".join(self._strategies) or "none", self.lookahead_ns / 1e6)  # fmt: skip
        total = self.total = count_rows(self.data, self.symbols) if self.progress is not None else 0
        # What lives from here on (the server, the strategies' state) is never garbage: out of the cyclic
        # collector's sight; and its young generation collected 50 times less often, as a backtest
        # makes and drops millions of small objects (messages, rows, book copies) with no cycles.
        gc.freeze()
        threshold = gc.get_threshold()
        gc.set_threshold(max(threshold[0], BACKTEST_GC_THRESHOLD), *threshold[1:])
        cpu = time.process_time()
        try:
            await self._simulate(sink, nxt, msgs, total)
            self.sequencer.finish()
        finally:
            gc.set_threshold(*threshold)
            gc.unfreeze()
        log.info("backtest finished: %d messages in %d windows (%d in one frame), %d fills; %d played ahead; "
                 "server CPU %.2f s", self.published, self.steps, self.framed, len(self.sim.fills), self.ahead,
                 time.process_time() - cpu)  # fmt: skip
        self.finished.set()
        stop = getattr(sink, "request_stop", None)
        if stop is not None and not self.hold:
            stop()
        await trio.sleep_forever()

    def clock_ms(self) -> int:
        """The server's time while a window is played: its end (what strategies send in it is sent then)."""
        return self._clock_ns // 1_000_000

    async def _simulate(self, sink: VenueSink, nxt: tuple[int, Any] | None, msgs: Iterator[tuple[int, Any]],
                        total: int) -> None:  # fmt: skip
        last_progress = time.monotonic()
        window, nxt = self._read_window(nxt, msgs)
        while window is not None:
            end = self._clock_ns = window.end
            await self._play_window(sink, window)
            leftover, self._left = self._left, []
            self.sim.account_events = leftover + self.sim.account_events
            await self._deliver(sink, self.sim.advance(end))
            sync = await self._end_window(sink, end)
            self._shown_ns = end  # the strategies have the window: the results count up to its end
            await self._settle(sink)  # the feed task sends it now, not after the read below
            self._fold(end)
            # While the strategies work on this window, the next one is read (it does not depend on
            # what they send: only the fill model does, and it sees the next window after their answers)
            # and, when none of their requests can arrive before its last message, the fill model plays
            # its market data (:meth:`_play_ahead`).
            window, nxt = self._read_window(nxt, msgs)
            if window is not None:
                self._play_ahead(window, end)
            await self._after_acks(sink, sync, end)
            if self.progress is not None and time.monotonic() - last_progress >= 1.0:
                last_progress = time.monotonic()
                self.progress(self.published, total)
        # what is still on its way arrives: one more window after the last message
        end = self._clock_ns = self._clock_ns + 2 * self.lookahead_ns + 10 * self._max_latency()
        await self._deliver(sink, self.sim.advance(end))
        self._shown_ns = end  # (nothing is played ahead of this one)
        await self._barrier(sink, end)
        self.end_ns = end
        self._fold(end + 1)
        if self.progress is not None:
            self.progress(self.published, max(total, self.published))

    def _read_window(self, nxt: tuple[int, Any] | None, msgs: Iterator[tuple[int, Any]]
                     ) -> tuple[_Window | None, tuple[int, Any] | None]:  # fmt: skip
        """The window that starts at ``nxt`` (None after the last message) and the message after it.
        What does not depend on the strategies is done here: the marks of the results and, when the
        window goes out as one frame, each message numbered, stamped and encoded, and the rows packed
        (when the window is one frame: no change of the venue's connection, shorter than a part).

        Per message, on the server's critical path (docs/backtesting.md, "How fast"): a book's or a
        trade's mark, topic seq and row are made here inline, by class identity (a subclass, another
        type: :meth:`_mark` and :meth:`_numbered`). Its row takes the message's values as they are,
        levels included: :func:`~seqtrade.replay.read_messages` gives every book fresh level lists of
        floats, every trade a float price and size and a str side, so they are the values
        :func:`seqtrade.wire.window_row` would make (the same bytes packed), without the lists made
        again. Nothing changes them before they are packed: the fill model reads a recorded book's
        levels and copies them before it changes any (``FillModel._book``). A book or trade keeps the
        ``seq`` and ``gw_ns`` it was recorded with (only its row goes out, numbered and stamped)."""
        if nxt is None:
            return None, None
        end = nxt[0] + self.lookahead_ns
        items: list[tuple[int, Any]] = []
        append = items.append
        mark = self._mark
        last = self._last_price
        marks = self._marks
        if not self._batch_mode():
            while nxt is not None and nxt[0] < end:
                append(nxt)
                msg = nxt[1]
                if msg is not True and msg is not False:
                    mark(msg, nxt[0])
                nxt = next(msgs, None)
            return _Window(end, items, None), nxt
        bodies: list[list[Any]] = []
        row = bodies.append
        numbered = self._numbered
        keys = self._keys
        book_topics, trade_topics = _TOPICS[Book], _TOPICS[Trade]
        seqs = self._md_seqs
        if seqs is None:
            seqs = self._own_seqs
        # the frame's keys name a book's and a trade's row as below (else, until they do: _numbered)
        books = keys.get("book") == _BOOK_KEYS
        trades = keys.get("trade") == _TRADE_KEYS
        status = False
        for nxt in chain((nxt,), msgs):  # noqa: B020 - the message after the window is returned
            ns, msg = nxt
            if ns >= end:
                break
            append(nxt)
            cls = msg.__class__
            # its row with its seq (the one before the last value) to come: wire._book_row's and
            # _trade_row's values, the levels as read
            if cls is Book and books:
                bids, asks = msg.bids, msg.asks
                price = (bids[0][0] + asks[0][0]) / 2 if bids and asks else None
                r = ["book", msg.symbol, msg.ts, bids, asks, 0, ns]
                tops = book_topics
            elif cls is Trade and trades:
                price = msg.price
                r = ["trade", msg.symbol, msg.ts, msg.trade_id, price, msg.size, msg.side, 0, ns]
                tops = trade_topics
            elif msg is True or msg is False:
                status = True
                continue
            else:
                mark(msg, ns)
                row(numbered(msg, ns))
                books = keys.get("book") == _BOOK_KEYS
                trades = keys.get("trade") == _TRADE_KEYS
                continue
            sym = r[1]
            if price is not None and last.get(sym) != price:
                last[sym] = price
                marks.append((ns, sym, price))
            t = tops.get(sym)
            if t is None:
                t = tops[sym] = _PLANS[cls][0].topic(msg)
            seq = seqs.get(t, 0) + 1
            seqs[t] = seq
            r[-2] = seq
            row(r)
        else:
            nxt = None
        # packed now, while the strategies work on the window before: not at the send, in the round trip
        packed = wire.pack_rows(bodies) if not status and len(items) < WINDOW_PART else None
        return _Window(end, items, bodies, packed), nxt

    def _play_ahead(self, w: _Window, prev_end: int) -> None:
        """The fill model plays ``w``'s market data now, while the strategies still work on the window that
        ended at ``prev_end``, when that cannot change a fill: every message of ``w`` comes before the
        first moment a request they send can arrive (``prev_end`` + the smallest latency), so the model
        meets each message in the same state as after their requests. What it produces is kept in
        ``w.ahead`` and handed to the server by :meth:`_play_window` in the same order, at the same
        points, as if the messages were played then (after the requests went to the model). Only for a
        window in one frame, shorter than a part, without a change of the venue's connection."""
        items = w.items
        if (
            w.bodies is None
            or len(items) >= WINDOW_PART  # (a full part goes out on its own: played as it comes)
            or items[-1][0] >= prev_end + self._floor_ns
            or any(msg is True or msg is False for _, msg in items)
        ):
            return
        sim = self.sim
        on_market = sim.on_market
        ahead: list[tuple[list[OrderEvent], list[Any]] | None] = []
        for ns, msg in items:
            events = on_market(msg, ns)
            if events:  # delivered with what funding settled so far, as _deliver does
                taken, sim.account_events = sim.account_events, []
                ahead.append((events, taken))
            else:
                ahead.append(None)
        w.ahead = ahead
        self.ahead += 1
        # funding settled after the last delivery: handed over with the window's end, as when played then
        self._left, sim.account_events = sim.account_events, []

    async def _play_window(self, sink: VenueSink, w: _Window) -> None:
        """The window's messages to the fill model (each before its fills) and to the strategies."""
        if w.ahead is not None:
            await self._replay_window(sink, w, w.ahead)
            return
        on_market, deliver = self.sim.on_market, self._deliver
        bodies = w.bodies
        if w.packed is not None and bodies is not None and not self._window:
            # the window in one frame (no status, shorter than a part: no flush): its rows at once
            self._window = bodies
            self._packed = (bodies, w.packed)
            for ns, msg in w.items:
                events = on_market(msg, ns)
                if events:
                    await deliver(sink, events)
                self.published += 1
            return
        j = 0
        for ns, msg in w.items:
            if msg is True or msg is False:
                if bodies is not None:  # the window's market data so far goes out before the status
                    await self._flush_window(sink, w.end)
                sink.set_connected(msg)
            else:
                events = on_market(msg, ns)
                if bodies is None:
                    await self._publish(sink, msg)
                else:
                    self._window.append(bodies[j])
                    j += 1
                    if len(self._window) >= WINDOW_PART:
                        await self._flush_window(sink, w.end)
                if events:
                    await deliver(sink, events)
            self.published += 1

    async def _replay_window(self, sink: VenueSink, w: _Window,
                             ahead: list[tuple[list[OrderEvent], list[Any]] | None]) -> None:  # fmt: skip
        """A window the fill model played ahead (:meth:`_play_ahead`): its market data to the strategies
        and what the model produced to the server, message by message."""
        assert w.bodies is not None
        if w.packed is not None and not self._window:
            self._window = w.bodies
            self._packed = (w.bodies, w.packed)
        else:
            self._window += w.bodies
        for got in ahead:
            if got is not None:
                events, taken = got
                for ev in events:
                    await sink.order_event(ev)
                for ae in taken:
                    await sink.account_event(ae)
        self.published += len(w.items)

    def _batch_mode(self) -> bool:
        """Whether a window goes out as one frame: every strategy's last ``sync_ack`` said it reads
        them (``batch``)."""
        return bool(self._strategies) and all(self._batch.get(s, False) for s in self._strategies)

    def _numbered(self, msg: Any, ns: int) -> list[Any]:
        """``msg``'s row in a window's frame: numbered on its topic as the feed would have (the server's
        per-topic seq) and stamped with its recorded time (``gw_ns``: the backtest's clock)."""
        cls = msg.__class__
        topics = self._topics
        plan = _PLANS.get(cls)
        if plan is None:  # a type of neither: its codec's key and topic
            codec = wire.CODECS[cls]
            key = (cls, getattr(msg, codec.key))
            t = topics.get(key)
            if t is None:
                t = topics[key] = codec.topic(msg)
        else:  # a book or a trade (keyed by symbol): the same, without looking its codec up
            t = topics.get((cls, msg.symbol))
            if t is None:
                t = topics[cls, msg.symbol] = plan[0].topic(msg)
        seqs = self._md_seqs
        if seqs is None:
            seqs = self._own_seqs
        seq = msg.seq = seqs.get(t, 0) + 1
        seqs[t] = seq
        msg.gw_ns = ns
        if plan is not None:
            typ, names, row = plan[1]
            if self._keys.get(typ) == names:
                fast: list[Any] = row(msg)
                return fast
        return wire.window_row(msg, self._keys)

    async def _flush_window(self, sink: VenueSink, end: int) -> None:
        """The window's market data so far, as one frame that is not its end (``step`` 0: no answer)."""
        if self._window:
            md, self._window = self._window, []
            self._packed = None
            await self._publish(sink, Window(self.name, end, 0, {}, md=md, keys=self._keys))

    def _max_latency(self) -> int:
        return max(self.sim.model.latency.max_ns, self.lookahead_ns)

    async def _publish(self, sink: VenueSink, msg: Any) -> None:
        """Publish without ever dropping: every 1,024 messages of a window (the queue is empty at each
        window's start), wait while the server's market-data queue is full. A ``sync`` or window frame
        is sent at once by the server when nothing is queued before it (``publish_now``: no hop to its
        feed task), else queued behind what is."""
        self._in_window += 1
        if isinstance(msg, Sync) and self._publish_now is not None and self._publish_now(msg):
            return
        if self._in_window % 1024 == 0:
            q, limit = getattr(sink, "_md_q", None), getattr(sink, "_md_max", 0)
            # The server's tasks run between these checkpoints (one thread): no event to wait on.
            while q is not None and len(q) >= limit // 2:  # noqa: ASYNC110
                _run_reports(sink)  # the reports so far, journaled now: not at a moment the scheduler picks
                await trio.lowlevel.checkpoint()
        sink.publish_market(msg)

    async def _deliver(self, sink: VenueSink, events: list[OrderEvent]) -> None:
        for ev in events:
            await sink.order_event(ev)
        if self.sim.account_events:  # funding settled: account events, as the venue's live
            taken, self.sim.account_events = self.sim.account_events, []
            for ae in taken:
                await sink.account_event(ae)

    async def _barrier(self, sink: VenueSink, end: int) -> None:
        """The window's end: reports numbered, market data sent, then ``sync`` and every answer; then
        the window's orders go to the fill model, as sent at ``end``."""
        await self._after_acks(sink, await self._end_window(sink, end), end)

    async def _end_window(self, sink: VenueSink, end: int) -> Sync:
        """Once the window's reports are numbered and its market data is sent: its ``sync`` (in the
        window's frame when the window goes out as one)."""
        await self._settle(sink)
        self._in_window = 0
        step = self.steps = self.steps + 1
        seqs = getattr(sink, "seqs", {})
        reports = {s: seqs.get(s, 0) for s in self._strategies}
        if self._window or self._batch_mode():
            md, self._window = self._window, []
            # the rows packed when the window was read, if md is still that whole window, untouched
            packed, self._packed = self._packed, None
            pre = packed[1] if packed is not None and packed[0] is md else None
            sync: Sync = Window(self.name, end, step, reports, 0, 0, md, self._keys, pre)
            self.framed += 1
        else:
            sync = Sync(self.name, end, step, reports)
        if self.sequencer is not None:
            self.sequencer.step = step
        await self._publish(sink, sync)
        return sync

    async def _after_acks(self, sink: VenueSink, sync: Sync, end: int) -> None:
        """Every strategy's answer to ``sync``, then the window's orders to the fill model, sent at ``end``."""
        await self._wait_acks(sink, sync)
        if not self._inbox:  # (most windows: nothing sent)
            return
        inbox, self._inbox = self._inbox, []
        inbox.sort(key=lambda item: item[0])  # stable: each strategy's own in the order it sent them
        for _, what, arg in inbox:
            await self._deliver(sink, self._hand(what, arg, end))

    def _hand(self, what: str, arg: Any, end: int) -> list[OrderEvent]:
        """One request of the window to the fill model, as sent at ``end``."""
        if what == "new":
            self.sent[arg.venue_order_id] = (end, arg)
            return self.sim.submit(arg, end)
        if what == "amend":
            vid, price, quantity = arg
            return self.sim.amend(vid, price, quantity, end)
        return self.sim.cancel(arg, end)

    async def _settle(self, sink: VenueSink) -> None:
        """Until the server has numbered and published every report and sent every market-data message.
        The reports queued so far are journaled and published here, in this task (the server's report
        stage, synchronous: the same batches as its report task would make of the same queue, at no
        scheduler pass); market data queued is waited for (the feed task sends it)."""
        _run_reports(sink)
        report_q = getattr(sink, "_report_q", None)
        md_q = getattr(sink, "_md_q", None)
        while report_q or md_q:  # noqa: ASYNC110 - polled: the server's tasks run between checkpoints
            await trio.lowlevel.checkpoint()

    async def _wait_acks(self, sink: VenueSink, sync: Sync) -> None:
        """Until every strategy answered ``sync``; sent again about every second meanwhile (a
        subscription that reached the server late, a process slow to start: a strategy answers a repeat
        as the first), and the backtest ended after ``ACK_TIMEOUT_S``. The clock of both is the
        watchdog's (:meth:`_watch`): no timer is set or read here, once a window."""
        step = self._awaited = sync.step
        acks = self._acks
        self._short = short = sum(1 for s in self._strategies if acks.get(s, 0) < step)
        if not short:
            return
        if not self._watching:
            self._watching = True
            trio.lowlevel.spawn_system_task(self._watch, name="backtest sync watchdog")
        while self._short:
            await self._ack_lot.park()
            due, self._due = self._due, None
            if due is None or due[0] != step or not self._short:
                continue
            missing = [s for s in self._strategies if acks.get(s, 0) < step]
            if due[1]:
                raise SeqtradeError(
                    f"backtest: {', '.join(missing)} did not answer sync {step} within {ACK_TIMEOUT_S:g} s"
                )
            await self._publish(sink, Sync(sync.venue, sync.t_ns, step, dict(sync.reports)))

    async def _watch(self) -> None:
        """The watchdog of :meth:`_wait_acks`, for the whole run: every quarter of ``SYNC_RESEND_S`` it
        looks at the step being waited for; one waited for since ``SYNC_RESEND_S`` (since its last
        repeat) is sent again, one waited for since ``ACK_TIMEOUT_S`` ends the backtest (it wakes the
        waiting task, which does either). A window answered between two looks costs it nothing."""
        since = sent = 0.0
        seen_step = -1
        while not self.finished.is_set():
            await trio.sleep(SYNC_RESEND_S / 4)
            now = trio.current_time()
            step = self._awaited
            if step != seen_step:
                seen_step, since, sent = step, now, now
                continue
            if not self._short:  # answered: nothing waits
                continue
            if now - since >= ACK_TIMEOUT_S:
                self._due = (step, True)
            elif now - sent >= SYNC_RESEND_S:
                sent = now
                self._due = (step, False)
            else:
                continue
            self._ack_lot.unpark()

    def on_sync_ack(self, ack: SyncAck) -> None:
        """The server hands over a strategy's ``sync_ack``."""
        sid = ack.strategy_id
        self._batch[sid] = ack.batch
        acks = self._acks
        prev = acks.get(sid, 0)
        if ack.step > prev:
            acks[sid] = ack.step
            # the waiting window wakes once, at the last answer it waits for (not at each one)
            if prev < self._awaited <= ack.step and self._short and sid in self._strategies:
                self._short -= 1
                if not self._short:
                    self._ack_lot.unpark()

    def _classify(self, frame: bytes) -> Classified:
        """A request frame's type, strategy and (a ``sync_ack``'s) step, for the sequencer; what it parsed
        is kept for the server's order task (:meth:`WindowSequencer.take`): each frame parsed once."""
        req: Any = wire.parse_sync_ack(frame)  # (the frame of every strategy's every window: its short path)
        if req is None:
            try:
                req = wire.parse_request(frame)
            except WireError:
                return None
        seq = self.sequencer
        if seq is not None:
            seq.parsed[id(frame)] = (frame, req)
        cls = type(req)
        kind = _TYPE_OF.get(cls) or wire.codec_for(cls).type
        return kind, req.strategy_id, req.step if isinstance(req, SyncAck) else 0

    def _mark(self, msg: Any, ns: int) -> None:
        """A recorded price for the results (a trade's, a book's mid), kept until :meth:`_fold` if it
        changed (the same price again moves no equity)."""
        price = None
        if isinstance(msg, Trade):
            price = msg.price
        elif isinstance(msg, Book) and msg.bids and msg.asks:
            price = (msg.bids[0][0] + msg.asks[0][0]) / 2
        if price is not None and self._last_price.get(msg.symbol) != price:
            self._last_price[msg.symbol] = price
            self._marks.append((ns, msg.symbol, price))

    def _fold(self, upto: int) -> None:
        """What happened before ``upto`` (recorded prices, the fill model's fills and funding) into the
        tally; what is at or after it (the window read ahead, what the fill model played ahead) waits."""
        tally = self.tally
        if tally is None:
            return
        marks = self._marks
        if marks and marks[-1][0] >= upto:  # (in time order: the recording's)
            cut = len(marks)
            while cut and marks[cut - 1][0] >= upto:
                cut -= 1
            marks, self._marks = marks[:cut], marks[cut:]
        else:
            self._marks = []
        fills, i = self.sim.fills, self._fills_in
        j = i
        while j < len(fills) and fills[j].ts_ns < upto:  # in time order, as the fill model makes them
            j += 1
        funding, k = self.sim.funding, self._funding_in
        m = k
        while m < len(funding) and funding[m].ts_ns < upto:
            m += 1
        self._fills_in, self._funding_in = j, m
        owners = self.owners
        mine = [
            FillRecord(
                f.ts_ns,
                owners.get(f.strategy, ("?", ""))[0],
                f.symbol,
                f.side,
                f.price,
                f.quantity,
                f.fee,
                f.contract,
            )
            for f in fills[i:j]
        ]
        tally.add(marks, mine, funding[k:m])

    # ------------------------------------------------------------------ orders: to the fill model

    def _owner(self, venue_order_id: str) -> str:
        if venue_order_id not in self.owners:
            rec = getattr(getattr(self._sink, "engine", None), "by_vid", {}).get(venue_order_id)
            self.owners[venue_order_id] = (
                (rec.strategy_id, rec.client_order_id) if rec is not None else ("", "")
            )
        return self.owners[venue_order_id][0]

    async def place_order(self, order: VenueOrder) -> None:
        self._inbox.append((self._owner(order.venue_order_id), "new", order))

    async def cancel_order(self, venue_order_id: str, symbol: str) -> None:
        self._inbox.append((self._owner(venue_order_id), "cancel", venue_order_id))

    async def amend_order(self, venue_order_id: str, symbol: str, price: float | None,
                          quantity: float | None) -> None:  # fmt: skip
        self._inbox.append((self._owner(venue_order_id), "amend", (venue_order_id, price, quantity)))

    async def query_order(self, venue_order_id: str, symbol: str) -> OrderEvent | None:
        return self.sim.query(venue_order_id)

    async def open_orders(self) -> list[OrderEvent]:
        return self.sim.open_orders()

    async def positions(self) -> dict[str, float] | None:
        return None

    # ------------------------------------------------------------------ results

    def results(self, period_s: float | None = None) -> Results:
        """Per strategy and for the account, from the fill model's fills and the recorded prices: while
        it runs, up to the end of the last window the strategies were sent (never what the fill model
        played ahead of them); ``period_s``: the venue's (the Sharpe is sampled as the run goes)."""
        if period_s is not None and period_s != self.period_s:
            raise SeqtradeError(
                f"backtest: the results are sampled every {self.period_s:g} s, not {period_s:g} s"
            )
        if self.tally is None:  # not started: nothing happened yet
            self.tally = Tally(self.start_ns, self.period_s, self._strategies)
        self._fold(self._shown_ns)
        return self.tally.results(max(self._shown_ns, self.start_ns), dict(self.settings))


def _latency_floor(latency: Latency) -> int:
    """The smallest latency ``latency`` can give, as far as its type says (0 when it does not)."""
    if isinstance(latency, ConstantLatency):
        return latency.ns
    if isinstance(latency, AtLeast):
        return max(latency.floor_ns, _latency_floor(latency.inner))
    return 0


def _run_reports(sink: VenueSink) -> None:
    """The server's report stage, now, for what the venue has queued (journaled and published in the
    same batches in every run)."""
    pub = getattr(sink, "_report_pub", None)
    if getattr(sink, "_report_q", None) and pub is not None:
        sink._run_report_stage(pub)  # type: ignore[attr-defined]


_TYPE_OF = {c.model: c.type for c in wire.REQUEST_TYPES.values()}  # request model -> its type
# what :meth:`BacktestVenue._numbered` needs of the most frequent types (keyed by symbol): the codec (its
# topic) and the row built without the map (wire.window_row's own, when the frame's keys name it)
_PLANS: dict[type, tuple[wire.Codec[Any], tuple[str, list[str], Any]]] = {
    cls: (wire.CODECS[cls], fast) for cls, fast in wire._FAST_ROWS.items() if wire.CODECS[cls].key == "symbol"
}
# the keys of a book's and a trade's rows made inline by :meth:`BacktestVenue._read_window` (wire._FAST_ROWS'),
# and their topics by symbol (the codec's topic of a symbol is always the same bytes: kept for any venue)
_TOPICS: dict[type, dict[str, bytes]] = {Book: {}, Trade: {}}
_BOOK_KEYS, _TRADE_KEYS = _PLANS[Book][1][1], _PLANS[Trade][1][1]
