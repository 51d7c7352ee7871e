"""The gateway: the server's tasks around the engine, and the state only they need.

The rules (validation, rounding, risk, idempotency, seqs, replays, recovery decisions) are in
:mod:`seqtrade.server.engine` and :mod:`seqtrade.server.recovery`, which do no I/O; this module owns
the sockets, the journal, the venue and the clock, and performs what the engine decides: *persist,
then send* (an order row is persisted before the order goes to the venue, a report before it is
published); the journal's SQLite index follows after the sends, in pieces of a transaction
(:meth:`Journal.index_step`).

Tasks (all children of one nursery in :func:`seqtrade.server.app.serve`):

- ``feed_task`` owns the market-data PUB socket: venue market data -> frames. Never blocks: the venue's
  queue drops (and counts) when full, and PUB drops at its high-water mark (strategies see the gap in
  the per-topic ``seq``).
- ``order_task`` owns the order PULL socket: frames -> engine -> journal, report stage, venue. A bad
  frame is dropped or answered with a ``rejected`` report; it never ends the task. After each batch
  it runs the report stage itself for what the batch queued (the paper venue's events come during
  ``place_order``), so those reports need no hop to the report task.
- ``report_task`` owns the report PUB socket: venue events and the order task's replies -> reports with
  a per-strategy seq, journaled before they are published; the welcome of a ``hello``. The report
  stage is synchronous, so whichever of the two tasks runs it keeps the queue's order; nobody waits on
  the report socket's FD (sends are NOBLOCK), so the order task's sends on it consume no edge. A
  venue's hand-over of an account event (``account_event``) runs the stage too, in the venue's task,
  and returns once the event is journaled, so that a venue marks it handed over only then.
- ``replay_task`` sends the replays the welcomes announced, a bounded chunk a step between the other
  tasks' work (it publishes on the report task's socket, between two of its batches).
- ``monitor_task``: venue status once a second, the status line, dead strategies, feed health (the
  ``feed_status`` message; a feed that goes stale or recovers is logged once).
- ``history_task``: answers ``history_request``s with the venue's closed bars (a few at a time,
  bounded queue), on the report socket: not numbered, not journaled.

All of them run on one Trio thread and share the state below without locks: every state change
happens between two awaits.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
import zmq

from .. import trace, wire
from ..bus import TrioSocket
from ..candles import History, HistoryRequest
from ..clock import WALL, Clock
from ..config import Config
from ..errors import WireError
from ..feedhealth import Feed, FeedHealth, FeedsStatus
from ..models import AccountEvent, MarkPrice, OrderReport, PriceLimit, Ticker, VenueStatus
from ..sequencer import WindowSequencer
from ..tickerframes import TickerEncoder
from ..vclock import Sync, Window
from ..venues.base import MarketData, OrderEvent, Venue, VenueAccountEvent
from . import recovery
from .engine import (
    RECOVERED,
    Amend,
    Cancel,
    Commit,
    Counters,
    Engine,
    Output,
    Pending,
    Place,
    Replay,
    Reply,
    ReportItem,
)
from .joins import REPLAY_SLICE_S, REPLAY_STEP_MAX
from .journal import Journal
from .orders import OrderRecord
from .risk import Quotes

if TYPE_CHECKING:
    from ..recorder import Recorder

__all__ = ["Gateway", "Counters"]

# Frames the order task reads and decides before it performs them: a valid order that arrives
# behind a flood of garbage waits for the batch being decided (about 10 us a frame) and its own.
# 1,024 made that 10-20 ms and a p99 of 20-60 ms under a flood; 128 keeps it near 1-2 ms and
# still shares one journal commit among up to 128 new orders (bench/abuse.py, docs/operations.md).
ORDER_BATCH = 128
HISTORY_QUEUE = 64  # history requests waiting; beyond, answered at once with an error
HISTORY_PARALLEL = 4  # history requests fetched from the venue at the same time
HISTORY_TIMEOUT = 30.0  # seconds a venue may take to answer one

log = logging.getLogger(__name__)


def _trace_key(r: OrderReport | AccountEvent) -> str:
    return f"{r.client_order_id}:{r.status}" if isinstance(r, OrderReport) else f"event:{r.event_id}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class StrategyInfo:
    strategy_id: str
    last_seen: float  # trio.current_time()
    alive: bool = True
    left: bool = False  # said goodbye: not alive, and not silent either


class Gateway:
    """The shell around one :class:`Engine`. Built by ``serve``; tests may drive it the same way."""

    def __init__(
        self, config: Config, venue: Venue, journal: Journal, engine: Engine, quotes: Quotes
    ) -> None:
        self.config = config
        self.venue = venue
        self.journal = journal
        self.engine = engine
        self.quotes = quotes  # the newest ticker per symbol (the risk gate's mid)
        self.strategies: dict[str, StrategyInfo] = {}
        self.venue_connected = False
        self.accepting = trio.Event()  # set once every recovery event is applied
        self.stop_requested = trio.Event()
        self._reports_flushed = trio.Event()  # set after every journal commit of reports
        # What the engine is told the time is for requests: a backtest's venue sets the recording's.
        self.clock_ms: Callable[[], int] = now_ms
        engine.clock_ms = lambda: self.clock_ms()  # (its own replies' times)
        # The time the server stamps on what it publishes (gw_ns, status, report publication): the
        # venue's clock (seqtrade.clock), set by ``serve``; timers stay on Trio's clock.
        self.clock: Clock = WALL
        # A backtest's venue puts the order of its windows' requests here (seqtrade.sequencer).
        self.sequencer: WindowSequencer[bytes] | None = None
        # The feed's queue (venue -> feed task): a deque and a parking lot, not a memory channel, whose
        # send and receive cost a few µs per message at 100k messages/s.
        self._md_q: deque[MarketData | VenueStatus | FeedsStatus] = deque()
        self._md_max = config.bus.md_queue
        self._md_lot = trio.lowlevel.ParkingLot()
        self._md_pub: TrioSocket | None = None  # the feed task's socket, once it runs (publish_now)
        self._now_topics: dict[tuple[type, str], bytes] = {}  # publish_now's topics
        # The report stage's queue: items in the order they must be numbered, journaled and published.
        # Whichever task drains it does so synchronously (``_run_report_stage``), so the order is kept
        # whether the report task or the order task (inline, for events a venue produced during a
        # request) gets there first.
        self._report_q: deque[ReportItem] = deque()
        self._report_max = config.bus.event_queue
        self._report_lot = trio.lowlevel.ParkingLot()  # the report task waits here for items
        self._room_lot = trio.lowlevel.ParkingLot()  # producers wait here while the queue is full
        self._report_ready = trio.Event()  # set once the report task has its socket (_report_pub)
        self._report_pub: TrioSocket | None = None
        # The order task runs the report stage itself after each batch: the venue events it queues
        # wake nobody (the report task would wake to an empty queue), unless it must wait for room
        # (_queue_report) or call the venue again (perform).
        self._order_task: trio.lowlevel.Task | None = None
        self._md_seq: dict[bytes, int] = {}
        self.journal_commit_s = 0.0  # for the metrics endpoint (seqtrade.server.metrics)
        self.journal_lag_s = 0.0
        self._trace_wake = 0  # seqtrade.trace: when the report task last woke
        self._replay_wake = trio.Event()  # set when a replay starts
        self.feed_health = FeedHealth(config.feeds.stale_after)
        venue.feed_health = self.feed_health  # the venue reports its gaps and resubscriptions
        self._history_send, self._history_recv = trio.open_memory_channel[HistoryRequest](HISTORY_QUEUE)
        self.recorder: Recorder | None = None  # [recorder]: what the feed publishes, order latencies
        self.dashboard_url = ""  # the dashboard's address once it listens (seqtrade.server.dashboard)
        # Read-only observers of committed reports (the dashboard's collector): each is handed the
        # commit's pending list after it is published, and must only keep it (an O(1) append).
        self.report_taps: list[Callable[[list[Pending]], None]] = []

    @property
    def counters(self) -> Counters:
        return self.engine.counters

    @property
    def seqs(self) -> dict[str, int]:
        return self.engine.seqs

    @property
    def by_key(self) -> dict[tuple[str, str], OrderRecord]:
        return self.engine.by_key

    def open_records(self, strategy_id: str | None = None) -> list[OrderRecord]:
        return self.engine.open_records(strategy_id)

    @property
    def md_seqs(self) -> dict[bytes, int]:
        """The last seq per market-data topic (read by the dashboard for message rates)."""
        return self._md_seq

    # ================================================================== venue sink

    def publish_market(self, msg: MarketData) -> None:
        if type(msg) is Ticker:
            self.quotes.last[msg.symbol] = msg
            if trace.ON:  # the tick-to-trade clock starts here; feed_task marks it before its own stamp
                msg.gw_ns = time.time_ns()
        elif type(msg) is PriceLimit:  # the risk gate refuses an order outside them (engine.check_order)
            self.quotes.limits[msg.symbol] = msg
        elif type(msg) is MarkPrice:  # status: unrealised PnL at mark
            self.quotes.marks[msg.symbol] = msg.mark_price
            if trace.ON:  # the tick-to-trade clock starts here; feed_task marks it before its own stamp
                msg.gw_ns = time.time_ns()
        self._md_put(msg)

    def publish_now(self, msg: Sync) -> bool:
        """A backtest's ``sync`` or window frame sent now, in the caller's task, when the feed has
        nothing queued (everything published before it is sent): the same frame, topic seq, stamp and
        count as the feed task would give it, without the hop to that task (a wake-up and a pass of the
        scheduler on the serial part of every window's round trip). False, and nothing done, when it
        cannot (something queued, the feed task not running yet, a recorder on): the caller publishes
        it with :meth:`publish_market` instead. Only a backtest's venue calls it
        (:mod:`seqtrade.replay_backtest`); live market data always goes through the feed task.

        The feed task owns the socket, but nobody waits on a PUB socket's FD (its sends never block:
        it drops at its high-water mark), and this runs between two of the feed task's batches (one
        thread, no await here), so no edge is consumed and no batch is cut."""
        pub = self._md_pub
        if pub is None or self._md_q or self.recorder is not None:
            return False
        cls = type(msg)
        key = (cls, msg.venue)
        t = self._now_topics.get(key)
        if t is None:
            t = self._now_topics[key] = wire.CODECS[cls].topic(msg)
        seqs = self._md_seq
        msg.seq = seqs[t] = seqs.get(t, 0) + 1
        msg.gw_ns = self.clock.time_ns()
        # (a window frame: its encoder at once, not after encode_message's table has no entry for it)
        frame = wire._encode_window(msg) if cls is Window else wire.encode_message(msg)  # type: ignore[arg-type]
        _zmq_send(pub.sock, frame, _NOBLOCK)
        self.counters.md_out += 1
        return True

    def _md_put(self, msg: MarketData | VenueStatus | FeedsStatus) -> None:
        """Queue for the feed task (dropped and counted when the queue is full); the feed task only
        parks on an empty queue, so only the first message after it empties wakes it."""
        q = self._md_q
        n = len(q)
        if n >= self._md_max:
            self.counters.md_dropped += 1
            return
        q.append(msg)
        if not n:
            self._md_lot.unpark()

    async def order_event(self, event: OrderEvent) -> None:
        if self.recorder is not None:
            self.recorder.order_event(event)
        # No checkpoint while there is room: the events a venue produces inline for one request
        # (accepted, then fills) reach the report stage together and share one journal commit. Those
        # wake nobody: the order task runs the report stage itself after its batch.
        await self._queue_report(event, wake=trio.lowlevel.current_task() is not self._order_task)

    async def account_event(self, event: VenueAccountEvent) -> None:
        """The same report stage as order events: numbered, journaled (idempotent by event id),
        published. Returns only once the event is journaled: this task runs the report stage itself
        right after queueing it (the stage is synchronous and takes the whole queue in order, as the
        order task does after a batch), so when it returns :meth:`Journal.add_reports` has written
        the event's rows and its applied id to the journal's log (they survive a kill -9), or the
        event was found applied before (its id is journaled). A venue may therefore mark an event
        handed over when this returns (venues/base.py, :meth:`VenueSink.account_event`)."""
        await self._queue_report(event)
        if self._report_pub is None:  # before the report task started: its socket
            await self._report_ready.wait()
        assert self._report_pub is not None
        self._run_report_stage(self._report_pub)  # no checkpoint since the queueing (while room)

    async def _queue_report(self, item: ReportItem, *, wake: bool = True) -> None:
        """Queue one item for the report stage; waits (a checkpoint) only while the queue is full.
        ``wake`` False: the caller runs the report stage itself soon (the order task's events)."""
        q = self._report_q
        while len(q) >= self._report_max:
            self._report_lot.unpark()  # the queue may be full of items nobody was woken for
            await self._room_lot.park()
        q.append(item)
        if wake:
            self._report_lot.unpark()

    def set_connected(self, connected: bool) -> None:
        if connected != self.venue_connected:
            log.info("venue %s %s", self.venue.name, "connected" if connected else "disconnected")
        self.venue_connected = connected
        self._publish_status()

    def _publish_status(self) -> None:
        self._md_put(
            VenueStatus(
                self.venue.name, self.venue_connected, list(self.config.venue.symbols), self.clock.time_ms()
            )
        )

    def _check_feeds(self) -> None:
        """Feed health once a second: log each feed that went stale or recovered (once), publish
        every feed's status (``feed_status``)."""
        fh = self.feed_health
        t = trio.current_time()
        for tr in fh.check(t):
            if tr.stale:
                log.warning("feed %s %s stale: no message for %.1f s", tr.channel, tr.symbol, tr.silent_s)
            else:
                log.info("feed %s %s recovered", tr.channel, tr.symbol)
        feeds = FeedsStatus(self.venue.name, self.clock.time_ms(), fh.snapshot(t))
        if feeds.feeds:
            self._md_put(feeds)

    # ================================================================== feed

    async def feed_task(self, md_pub: TrioSocket, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Own the market-data PUB socket; publish every message the venue produced, in batches.

        Per message only what raw pyzmq does too (a seq, a stamp, an encode, a send) and what the
        recorder needs (one ``deque.append`` of the frame); tickers are encoded from a prebuilt
        template (:mod:`seqtrade.tickerframes`, the same bytes as :mod:`seqtrade.wire`). The topic's
        seq as the dashboard reads it and feed health's counts are handed over once per batch (no
        await inside a batch, so no reader sees one half done).

        Cancelled with the server. Backpressure: none upstream (the venue's queue drops when full);
        PUB drops at its high-water mark and strategies see it as a jump of ``seq``.
        """
        task_status.started()
        self._md_pub = md_pub  # (publish_now: a backtest's windows, sent from its venue's task)
        q = self._md_q
        lot = self._md_lot
        seqs = self._md_seq
        topics: dict[tuple[type, str], bytes] = {}
        feeds: dict[tuple[type, str], Feed | None] = {}  # feed health's handle (None: server messages)
        keys = {cls: c.key for cls, c in wire.CODECS.items()}
        # The bulk of the traffic: one dict lookup per ticker for its stream (topic, seq, encoder, feed
        # health's handle and the batch's counts for it).
        streams: dict[str, _TickerStream] = {}
        touched: list[_TickerStream] = []  # the streams of this batch's tickers
        sock = md_pub.sock
        sock_send = _zmq_send  # PUB never blocks (it drops at its high-water mark)
        noblock = zmq.NOBLOCK
        feed_health = self.feed_health
        counters = self.counters
        encode = wire.encode_message
        time_ns = self.clock.time_ns  # the venue's clock (seqtrade.clock): wall time live
        tracing = trace.ON
        rec = self.recorder
        gw_ns = 0
        while True:
            if not q:
                await lot.park()
            n = min(len(q), 4096)
            now = trio.current_time()
            record = rec.md.append if rec is not None else None
            for _ in range(n):
                msg = q.popleft()
                if type(msg) is Ticker:
                    st = streams.get(msg.symbol)
                    if st is None:
                        st = streams[msg.symbol] = _TickerStream(
                            TickerEncoder(msg.symbol), feed_health.feed("ticker", msg.symbol), seqs
                        )
                    seq = st.seq + 1
                    st.seq = msg.seq = seq
                    ts = msg.ts
                    if not st.n:
                        touched.append(st)
                        st.min_ts = ts
                    elif ts < st.min_ts:
                        st.min_ts = ts
                    st.n += 1
                    st.last_ts = ts
                    if tracing:
                        trace.mark(f"{msg.symbol}#{seq}", "v_tick", msg.gw_ns)
                    gw_ns = msg.gw_ns = time_ns()
                    # A prebuilt template for tickers (seqtrade.tickerframes), same frames.
                    frame = st.encode(msg)
                    sock_send(sock, frame, noblock)
                    if record is not None:
                        record(frame)  # a deque.append: bounded by rec.trim() below (seqtrade.recorder)
                    continue
                cls = type(msg)
                key = (cls, getattr(msg, keys[cls]))
                known = topics.get(key)
                if known is None:
                    known = topics[key] = wire.CODECS[cls].topic(msg)
                    channel = _feed_channel(msg)
                    feeds[key] = feed_health.feed(channel, msg.symbol) if channel else None  # type: ignore[union-attr]
                t = known
                seq = seqs.get(t, 0) + 1
                seqs[t] = seq
                msg.seq = seq
                gw_ns = msg.gw_ns = time_ns()
                feed = feeds[key]
                if feed is not None:
                    feed.seen(msg.ts, gw_ns // 1_000_000, now)
                frame = encode(msg)
                sock_send(sock, frame, noblock)
                if record is not None:
                    record(frame)
            if touched:  # per batch, not per ticker: seqs for the readers, feed health's counts
                for st in touched:
                    st.flush(gw_ns // 1_000_000, now)
                touched.clear()
            if rec is not None:
                rec.trim()
            counters.md_out += n
            if q:  # more came while we sent: let the other tasks run first
                await trio.lowlevel.checkpoint()

    # ================================================================== orders

    async def order_task(self, pull: TrioSocket, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Own the order PULL socket: parse every request, let the engine decide, perform its output.

        Cancelled with the server. A malformed frame never ends it. Backpressure: when the report queue
        is full the task waits, and requests queue in the socket up to its high-water mark.
        """
        task_status.started()
        await self.accepting.wait()
        self._order_task = trio.lowlevel.current_task()
        max_bytes = self.config.bus.max_frame_bytes
        engine = self.engine
        journal = self.journal
        tracing = trace.ON  # fixed at import (SEQTRADE_TRACE): not looked up per frame
        while True:
            # The wall clock; a backtest's venue sets the recording's (one read a batch).
            clock = self.clock_ms
            # recv_batch yields without taking a cancellation while frames are ready (it never drops
            # what it read): without this, a flood that never lets the socket empty would keep the
            # task, and the server's stop, going until the flood ends.
            await trio.lowlevel.checkpoint_if_cancelled()
            frames = await pull.recv_batch(ORDER_BATCH)
            take = None
            if self.sequencer is not None:  # a backtest: each window's requests in one order, in one batch
                frames = self.sequencer(frames)
                take = self.sequencer.take  # what it parsed already: not parsed twice
                if not frames and not self._report_q and not journal.due():  # held: nothing to do yet
                    continue
            if tracing:
                t_wake = time.time_ns()
            # The engine decides on the whole batch first, so that its new orders share one journal
            # commit; then, in the batch's order, replies and venue commands (persist, then send).
            decided: list[tuple[Any, Output]] = []
            for frame in frames:
                req = take(frame) if take is not None else None
                if req is None or len(frame) > max_bytes:  # (the limit: parse_request says it)
                    try:
                        req = wire.parse_request(frame, max_bytes=max_bytes)
                    except WireError as exc:
                        decided.append((None, engine.on_bad_frame(exc, clock())))
                        continue
                if tracing:
                    coid = getattr(req, "client_order_id", "")
                    trace.mark(coid, "s_wake", t_wake)
                    trace.mark(coid, "s_decoded")
                try:
                    out = engine.on_request(req, clock())
                except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
                    out = self._internal_error(req, exc)
                if tracing:
                    trace.mark(coid, "s_checked")
                if out.strategy is not None:
                    self._seen(out.strategy)
                decided.append((req, out))
            self._journal_new_orders([row for _, out in decided for row in out.journal])
            for req, out in decided:
                try:
                    await self.perform(out, journaled=True)
                except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
                    if req is None:
                        raise
                    await self.perform(self._internal_error(req, exc))
                if tracing and req is not None:
                    trace.mark(getattr(req, "client_order_id", ""), "s_placed")
            # What the batch's requests produced (replies, and the events a venue like the paper one
            # answers with at once) is journaled and published here, without a hop to the report task.
            if self._report_q and self._report_pub is not None:
                self._run_report_stage(self._report_pub)
            elif self._report_q:
                self._report_lot.unpark()
            if journal.due():  # the SQLite index follows the log: a piece after the batch's sends
                journal.index_step()

    def _internal_error(self, req: Any, exc: Exception) -> Output:
        # A bug must not let one strategy's message kill the server for everyone.
        log.exception("internal error handling %s from %s", type(req).__name__, req.strategy_id)
        return self.engine.on_internal_error(req, exc, self.clock_ms())

    def _journal_new_orders(self, rows: list[tuple[OrderRecord, bool]]) -> None:
        """Commit new order rows (one transaction for all of them) before any of them is sent."""
        if rows:
            self.journal.add_records(rows)
            if trace.ON:
                for rec, _ in rows:
                    trace.mark(rec.client_order_id, "s_journaled")

    async def perform(self, out: Output, *, journaled: bool = False) -> None:
        """Do what the engine decided: journal new orders (unless ``journaled``: the caller did), then
        queue replies, then call the venue."""
        if not journaled:
            self._journal_new_orders(out.journal)
        if out.departed is not None:
            self._departed(out.departed)
        if out.history is not None:
            self._queue_history(out.history)
        if out.synced is not None:  # a backtest's clock (seqtrade.vclock): only its venue takes it
            getattr(self.venue, "on_sync_ack", _ignore)(out.synced)
        for item in out.replies:
            await self._queue_report(item)
        venue = self.venue
        for cmd in out.venue:
            if self._report_q:  # a venue call may wait (a REST round trip): what is queued goes out meanwhile
                self._report_lot.unpark()
            if isinstance(cmd, Place):
                if self.recorder is not None:
                    self.recorder.order_sent(cmd.order)
                await venue.place_order(cmd.order)
            elif isinstance(cmd, Cancel):
                await venue.cancel_order(cmd.venue_order_id, cmd.symbol)
            elif isinstance(cmd, Amend):
                await venue.amend_order(cmd.venue_order_id, cmd.symbol, cmd.price, cmd.quantity)

    def _seen(self, sid: str) -> None:
        info = self.strategies.get(sid)
        t = trio.current_time()
        if info is None:
            self.strategies[sid] = StrategyInfo(sid, t)
            self.engine.rate_log("connected", now_ms(), logging.INFO, "strategy %s connected", sid)
        else:
            if not info.alive:
                log.info("strategy %s is back", sid)
            info.last_seen = t
            info.alive = True
            info.left = False

    # ================================================================== reports

    async def report_task(self, pub: TrioSocket, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Own the report PUB socket: number, journal, then publish every report; answer hellos.

        Cancelled with the server. Processes what is ready in batches: one journal commit per batch.
        Backpressure: a full PUB queue drops a report on the wire only; it is in the journal, and the
        strategy sees the gap in its seq and asks for it again with a ``hello``.
        """
        self._report_pub = pub
        self._report_ready.set()
        task_status.started()
        q = self._report_q
        journal = self.journal
        while True:
            while not q:
                await self._report_lot.park()
            self._run_report_stage(pub)
            if journal.due():
                journal.index_step()

    def _run_report_stage(self, pub: TrioSocket) -> None:
        """Everything queued for the report stage, in order, in batches: synchronous (no await), so
        two tasks calling it never interleave."""
        q = self._report_q
        engine = self.engine
        if trace.ON:
            self._trace_wake = time.time_ns()
        while q:
            n = min(len(q), 1024)
            batch = [q.popleft() for _ in range(n)]
            for step in engine.report_steps(batch):
                if isinstance(step, Commit):
                    self._flush(pub, step)
                elif isinstance(step, Reply):
                    assert step.report is not None
                    self._send_report(pub, step.report)
                elif isinstance(step, Replay):
                    self._replay(pub, step)
                else:
                    self.accepting.set()  # RECOVERED: every recovery event before it is applied
        if self._room_lot:  # producers waiting for room (rare: unpark_all costs a µs even when none)
            self._room_lot.unpark_all()

    def _flush(self, pub: TrioSocket, commit: Commit) -> None:
        """Journal, then publish, then let the engine follow (all of it before the next await, so no
        request is checked before the accounts and the risk gate have followed these reports)."""
        t0 = time.perf_counter()
        bodies = self.journal.add_reports(commit.rows, commit.fills)  # built once: journal, then wire
        self.journal_commit_s = time.perf_counter() - t0  # metrics: the last commit's duration ...
        pending = commit.pending
        tracing = trace.ON
        if tracing:
            for _, r, _ in pending:
                trace.mark(_trace_key(r), "r_wake", self._trace_wake)
                trace.mark(_trace_key(r), "r_committed")
        send, encode, clock_ns = pub.send_nowait, wire.encode_stored_report, self.clock.time_ns
        for (_, r, _), body in zip(pending, bodies, strict=True):
            r.gw_ns = clock_ns()
            send(encode(r, body))
            self.counters.reports_out += 1
            if tracing:
                trace.mark(_trace_key(r), "r_published")
        self._reports_flushed.set()
        for tap in self.report_taps:
            tap(pending)
        self.engine.committed(commit)
        self.journal_lag_s = max(
            0.0, self.clock.time_ms() / 1000 - min(r.timestamp for _, r, _ in pending) / 1000
        )  # ... event -> commit
        if self.config.server.log_fills and log.isEnabledFor(logging.INFO):
            self._log_fills(pending)

    def _log_fills(self, pending: list[Pending]) -> None:
        for _, r, _ in pending:
            if type(r) is OrderReport and r.last_fill_quantity > 0:
                log.info("fill %s %s %s %s %g @ %g (%s, fee %g)", r.strategy_id, r.client_order_id, r.symbol,
                         r.side, r.last_fill_quantity, r.last_fill_price, r.status, r.fee)  # fmt: skip

    def _send_report(self, pub: TrioSocket, r: OrderReport | AccountEvent) -> None:
        r.gw_ns = self.clock.time_ns()
        pub.send_nowait(wire.encode_message(r))
        self.counters.reports_out += 1

    # ================================================================== joins and replays

    def _replay(self, pub: TrioSocket, step: Replay) -> None:
        """A hello in the report stage: its refusal, or its welcome (the replay follows, paced by
        ``replay_task``), or nothing (coalesced into the replay in flight)."""
        if step.refusal is not None:
            pub.send_nowait(wire.encode_message(step.refusal))
            return
        self._seen(step.hello.strategy_id)
        welcome = self.engine.on_hello(step.hello, time.time_ns())
        if welcome is not None:
            pub.send_nowait(wire.encode_message(welcome))
        if self.engine.replays.active:
            self._replay_wake.set()

    async def replay_task(self, pub: TrioSocket, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Send the replays in flight, a short step at a time (:meth:`replay_step`) with a checkpoint
        between steps, so that orders and reports of other strategies are handled between them; a
        step is skipped while the report stage has work queued (at most 8 in a row, so a replay
        always moves on). Publishes on the report task's socket: every report it reads was committed
        before (commits happen between the report task's awaits)."""
        task_status.started()
        engine = self.engine
        queued = self._report_q
        while True:
            await self._replay_wake.wait()
            self._replay_wake = trio.Event()
            deferred = 0
            while engine.replays.active:
                if deferred < 8 and queued:
                    deferred += 1
                else:
                    deferred = 0
                    self.replay_step(pub)
                await trio.lowlevel.checkpoint()

    def replay_step(self, pub: TrioSocket) -> int:
        """One step of the replays in flight: passes of ``joins.REPLAY_STEP`` reports over every
        strategy catching up, until ``REPLAY_SLICE_S`` has passed or ``REPLAY_STEP_MAX`` reports were
        sent. Returns the number sent."""
        n = 0
        t = now_ms()
        end = time.perf_counter() + REPLAY_SLICE_S
        engine = self.engine
        while n < REPLAY_STEP_MAX:
            chunks = engine.replay_chunks()
            if not chunks:
                break
            for sid, after, limit in chunks:
                reports = self.journal.reports_after(sid, after, limit)
                for r in reports:
                    self._send_report(pub, r)
                engine.replayed(sid, after, limit, reports, t)
                n += len(reports)
            if time.perf_counter() >= end:
                break
        return n

    def _departed(self, sid: str) -> None:
        """A strategy said goodbye: not alive, and not to be taken for dead later."""
        info = self.strategies.get(sid)
        if info is not None:
            info.alive, info.left = False, True

    # ================================================================== history

    def _queue_history(self, req: HistoryRequest) -> None:
        try:
            self._history_send.send_nowait(req)
        except trio.WouldBlock:
            self._send_history(History(req.strategy_id, req.request_id, req.symbol, req.bar,
                                       error=f"too many history requests waiting ({HISTORY_QUEUE}): ask again"))  # fmt: skip

    async def history_task(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Answer history requests: the venue's closed bars, :data:`HISTORY_PARALLEL` at a time, each
        within :data:`HISTORY_TIMEOUT`; an answer the venue cannot give says why in ``error``."""
        limiter = trio.CapacityLimiter(HISTORY_PARALLEL)
        task_status.started()
        async with trio.open_nursery() as nursery:
            async for req in self._history_recv:
                token = object()
                await limiter.acquire_on_behalf_of(token)
                nursery.start_soon(self._answer_history, req, limiter, token)

    async def _answer_history(
        self, req: HistoryRequest, limiter: trio.CapacityLimiter, token: object
    ) -> None:
        answer = History(req.strategy_id, req.request_id, req.symbol, req.bar)
        try:
            if req.symbol not in self.venue.instruments:
                raise ValueError(
                    f"symbol {req.symbol} is not served (it serves {', '.join(sorted(self.venue.instruments))})"
                )
            with trio.fail_after(HISTORY_TIMEOUT):
                answer.candles = await self.venue.candles(req.symbol, req.bar, req.n)
            if len(answer.candles) < req.n:
                answer.error = f"the venue has {len(answer.candles)} closed bars of the {req.n} asked for"
        except ValueError as exc:  # the venue cannot serve it: the reason is for the strategy
            answer.error = str(exc)
        except trio.TooSlowError:
            answer.error = f"the venue did not answer within {HISTORY_TIMEOUT:g} s"
        except Exception as exc:  # noqa: BLE001 - a boundary: a venue error is answered, never fatal
            log.warning("history %s %s for %s failed: %s", req.symbol, req.bar, req.strategy_id, exc)
            answer.error = f"the venue failed: {type(exc).__name__}: {exc}"
        finally:
            limiter.release_on_behalf_of(token)
        self._send_history(answer)

    def _send_history(self, answer: History) -> None:
        pub = self._report_pub
        if pub is None:
            return
        answer.gw_ns = self.clock.time_ns()
        pub.send_nowait(wire.encode_message(answer))

    # ================================================================== recovery and monitoring

    async def recover(self) -> None:
        """Before accepting orders: bring every order the journal holds as open up to date
        (:mod:`seqtrade.server.recovery` decides); returns once the report task has applied it all."""
        to_query = recovery.to_query(self.engine.open_records())
        for rec in to_query:
            answer = await self.venue.query_order(rec.venue_order_id, rec.symbol)
            await self._queue_report(recovery.resolve(rec, answer))
        await self._queue_report(RECOVERED)
        await self.accepting.wait()
        if to_query:
            log.info("recovery: reconciled %d open orders with the venue", len(to_query))

    def connected_strategies(self) -> list[str]:
        timeout = self.config.server.heartbeat_timeout
        t = trio.current_time()
        return sorted(s.strategy_id for s in self.strategies.values() if t - s.last_seen <= timeout)

    async def monitor_task(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Venue status once a second; a status line every ``status_interval``; dead strategies.

        Cancelled with the server.
        """
        task_status.started()
        interval = self.config.server.status_interval
        timeout = self.config.server.heartbeat_timeout
        next_line = trio.current_time() + interval
        last_md = self.counters.md_out
        last_t = trio.current_time()
        last_pending = -1
        while True:
            await trio.sleep(1.0)
            self._publish_status()
            self._check_feeds()
            # What a quiet second left pending (a restart replays less log). While orders flow, the
            # order path indexes each slice as it fills, in pieces: indexing a partial one here (1-2
            # ms at once) would fall on an order, so only a second with no write does it.
            pending = self.journal.pending
            if pending and pending == last_pending:
                self.journal.index()
            last_pending = self.journal.pending
            t = trio.current_time()
            for info in list(self.strategies.values()):
                if info.alive and t - info.last_seen > timeout:
                    info.alive = False
                    self.engine.rate_log(
                        "dead" if self.engine.open_records(info.strategy_id) == [] else f"dead:{info.strategy_id}",
                        now_ms(), logging.WARNING,
                        "strategy %s silent for %.1f s: taken for dead", info.strategy_id, t - info.last_seen,
                    )  # fmt: skip
                    await self.perform(self.engine.on_strategy_dead(info.strategy_id))
            self._prune_strategies(t)
            if interval > 0 and t >= next_line:
                rate = (self.counters.md_out - last_md) / max(t - last_t, 1e-9)
                last_md, last_t = self.counters.md_out, t
                next_line = t + interval
                log.info("%s", self.status_line(rate))

    def _prune_strategies(self, t: float) -> None:
        """Forget strategies dead for a while and holding no open order (they come back as new when
        they talk again): the monitor's scan is over the strategies seen lately, not ever."""
        keep = max(60.0, 10 * self.config.server.heartbeat_timeout)
        gone = [
            sid
            for sid, info in self.strategies.items()
            if not info.alive and t - info.last_seen > keep and not self.engine.open_records(sid)
        ]
        for sid in gone:
            del self.strategies[sid]
            self.engine.callback_errors.pop(sid, None)

    def status_line(self, md_rate: float) -> str:
        c = self.counters
        open_n = len(self.open_records())
        strategies = self.connected_strategies()
        return (
            f"venue={self.venue.name} {'up' if self.venue_connected else 'DOWN'} "
            f"symbols={len(self.config.venue.symbols)} md={md_rate:,.0f}/s dropped={c.md_dropped} "
            f"orders={c.orders_in} open={open_n} rejected={c.rejected} reports={c.reports_out} "
            f"bad_frames={c.bad_frames} strategies={len(strategies)}"
            + (f" ({','.join(strategies)})" if strategies else "")
        )

    def status(self) -> dict[str, Any]:
        """The gateway's part of the ``status`` command."""
        return {
            "venue": self.venue.name,
            "connected": self.venue_connected,
            "symbols": list(self.config.venue.symbols),
            "counters": {k: v for k, v in vars(self.counters).items()},
            "feeds": [f.row() for f in self.feed_health.snapshot(trio.current_time())],
            "strategies": {
                sid: {
                    "alive": info.alive,
                    "left": info.left,  # not alive because it said goodbye
                    "heartbeat_age": round(trio.current_time() - info.last_seen, 3),
                    "last_seq": self.seqs.get(sid, 0),
                    "open_orders": len(self.open_records(sid)),
                    "errors": self.engine.callback_errors.get(sid, {}),  # callback -> times raised
                }
                for sid, info in sorted(self.strategies.items())
            },
        }

    def request_stop(self) -> None:
        """Ask ``serve`` to stop cleanly (applies the shutdown policy first)."""
        self.stop_requested.set()

    async def shutdown(self, timeout: float = 5.0) -> None:
        """The shutdown policy: cancel every open order and wait for the venue to confirm, or leave them."""
        if self.config.server.shutdown_policy != "cancel":
            n = len(self.open_records())
            if n:
                log.info("leaving %d open orders at the venue (server.shutdown_policy = 'leave')", n)
            return
        n = await self.cancel_open_orders()
        if not n:
            return
        log.info("cancelling %d open orders before stopping", n)
        with trio.move_on_after(timeout):
            while self.open_records():
                self._reports_flushed = trio.Event()
                await self._reports_flushed.wait()
        left = self.open_records()
        if left:
            log.warning("%d orders still open after %.0f s: %s", len(left), timeout,
                        ", ".join(r.venue_order_id for r in left))  # fmt: skip

    async def cancel_open_orders(self, strategy_id: str | None = None) -> int:
        out = self.engine.cancel_open(strategy_id)
        await self.perform(out)
        return len(out.venue)


class _TickerStream:
    """The feed task's state for one symbol's tickers: topic, seq, encoder, feed health's handle, and
    what the batch being published counted for it (handed over once per batch by :meth:`flush`)."""

    __slots__ = ("topic", "seq", "encode", "feed", "seqs", "n", "min_ts", "last_ts")

    def __init__(self, encoder: TickerEncoder, feed: Feed, seqs: dict[bytes, int]) -> None:
        self.topic = encoder.topic
        self.encode = encoder.encode
        self.feed = feed
        self.seqs = seqs  # the gateway's last seq per topic (read by the dashboard between batches)
        self.seq = seqs.get(self.topic, 0)
        self.n = 0
        self.min_ts = 0
        self.last_ts = 0

    def flush(self, recv_ms: int, now: float) -> None:
        """The batch's tickers to the readers: the topic's seq, and feed health's count and delays
        (``recv_ms``: the batch's last stamp, within a batch's sending time of each ticker's own)."""
        self.seqs[self.topic] = self.seq
        self.feed.seen_many(self.n, self.min_ts, self.last_ts, recv_ms, now)
        self.n = 0


# The send of pyzmq's compiled socket: the Python-level ``Socket.send`` only adds the keyword
# arguments of DRAFT sockets, and costs about 0.2 µs a call (a third of a ticker's encoding).
_zmq_send: Callable[[zmq.Socket[bytes], bytes, int], None] = zmq.backend.Socket.send
_NOBLOCK = int(zmq.NOBLOCK)  # (an int: zmq.NOBLOCK is an enum member, looked up on the zmq module)


def _ignore(_: Any) -> None:
    return None


def _feed_channel(msg: Any) -> str:
    """The feed-health channel of a market-data message: its kind (``candle:<bar>`` for candles);
    "" for the server's own messages (status, feed status, a backtest's sync)."""
    if isinstance(msg, VenueStatus | FeedsStatus | Sync):
        return ""
    kind = wire.CODECS[type(msg)].kind
    return f"candle:{msg.bar}" if kind == "candle" else kind
