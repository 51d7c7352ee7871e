"""The gateway: the server's tasks and the state they share.

Tasks (all children of one nursery in :func:`seqtrade.server.app.serve`):

- ``feed_task`` owns the market-data PUB socket: venue market data -> frames. Never blocks: the venue's
  queue drops (and counts) when full, and PUB drops at its high-water mark (strategies see the gap in
  the per-topic ``seq``).
- ``order_task`` owns the order PULL socket: frames -> validation -> venue. A bad frame is dropped or
  answered with a ``rejected`` report; it never ends the task.
- ``report_task`` owns the report PUB socket: venue events and the order task's replies -> reports with
  a per-strategy seq, journaled before they are published; replays on ``hello``.
- ``monitor_task``: venue status once a second, the status line, dead strategies.

All of them run on one Trio thread and share the state below without locks: every state change
happens between two awaits.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from .. import wire
from ..bus import TrioSocket
from ..config import Config
from ..errors import WireError
from ..models import (
    OPEN_STATUSES,
    AmendRequest,
    Book,
    CancelAll,
    CancelRequest,
    Heartbeat,
    Hello,
    OrderReport,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Ticker,
    Trade,
    VenueStatus,
    Welcome,
)
from ..venues.base import MarketData, OrderEvent, Venue, VenueOrder
from .control import ControlCommands
from .journal import Journal
from .orders import IdGenerator, OrderRecord, apply_event, report_for, round_price, round_quantity

__all__ = ["Gateway", "Counters"]

log = logging.getLogger(__name__)

REPLAY_LIMIT = 10_000
MAX_VALUE = 1e15  # a price or quantity above this is a mistake, whatever the instrument


def _out_of_range(price: float | None, quantity: float | None) -> str:
    """Why a price or quantity is beyond any sane value ("" when it is not)."""
    for name, v in (("price", price), ("quantity", quantity)):
        if v is not None and v > MAX_VALUE:
            return f"{name} {v:g} is out of range (> {MAX_VALUE:g})"
    return ""  # reports per hello; a client further behind gets the rest on its next hello


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Counters:
    md_out: int = 0
    md_dropped: int = 0
    orders_in: int = 0
    orders_sent: int = 0
    rejected: int = 0
    bad_frames: int = 0
    reports_out: int = 0
    replays: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class StrategyInfo:
    strategy_id: str
    last_seen: float  # trio.current_time()
    alive: bool = True


@dataclass(slots=True)
class _Reply:
    """A report the order task wants sent (a reject, a refused cancel, a re-sent report).

    ``report`` None: a report on ``record`` as it stands when the report task gets to it, with
    ``error_msg``. It must be built there, after every venue event queued before it was applied: a
    snapshot taken in the order task could be older than the order's newest report.
    """

    report: OrderReport | None
    record: OrderRecord | None = None
    resend: bool = False  # already journaled with its seq: publish as it was
    error_msg: str = ""


@dataclass(slots=True)
class _Replay:
    hello: Hello


ReportItem = OrderEvent | _Reply | _Replay
_MD_KIND: dict[type, str] = {Ticker: "ticker", Book: "book", Trade: "trade", VenueStatus: "status"}


class Gateway:
    """Shared state and the task bodies. Built by ``serve``; tests may drive it the same way."""

    def __init__(self, config: Config, venue: Venue, journal: Journal) -> None:
        self.config = config
        self.venue = venue
        self.journal = journal
        self.counters = Counters()
        self.ids = IdGenerator()
        self.by_key: dict[tuple[str, str], OrderRecord] = {}
        self.by_vid: dict[str, OrderRecord] = {}
        self.seqs: dict[str, int] = journal.last_seqs()
        self.known: set[int] = {hash(k) for k in journal.order_keys()}
        # None: any strategy id may trade; else only these (server.allow_unknown_strategies = false)
        self._allowed: frozenset[str] | None = (
            None if config.server.allow_unknown_strategies else frozenset(s.id for s in config.strategies)
        )
        # Open orders from the journal are known before the venue starts, so that the events it sends
        # for them while starting are applied, not dropped; ``recover`` then queries each one.
        for jo in journal.open_orders():
            self._register(jo)
        self.strategies: dict[str, StrategyInfo] = {}
        self.venue_connected = False
        self.accepting = trio.Event()  # set once restart recovery is done
        self.stop_requested = trio.Event()
        self._closed: deque[OrderRecord] = (
            deque()
        )  # closed orders, oldest first (server.closed_orders_in_memory)
        self._reports_flushed = trio.Event()  # set after every journal commit of reports
        self.md_send, self.md_recv = trio.open_memory_channel[MarketData | VenueStatus](config.bus.md_queue)
        self.ev_send, self.ev_recv = trio.open_memory_channel[ReportItem](config.bus.event_queue)
        self._md_seq: dict[bytes, int] = {}
        self._status_seq = 0
        # Hooks for the risk gate: return a reason to refuse, or None.
        self.pre_trade_checks: list[
            Callable[[OrderRequest | AmendRequest, OrderRecord | None], str | None]
        ] = []
        self.on_strategy_dead: list[Callable[[str], Awaitable[None]]] = []
        self.cancel_checks: list[Callable[[CancelRequest, OrderRecord], str | None]] = []
        # Called for every report once it is journaled (before it is published), in seq order.
        self.on_report: list[Callable[[OrderRecord | None, OrderReport], None]] = []
        self.status_extras: list[Callable[[], dict[str, Any]]] = []  # merged into the status command
        self.last_ticker: dict[str, Ticker] = {}  # the newest ticker per symbol (price band, notional)
        self.journal_commit_s = 0.0  # for the metrics endpoint (seqtrade.server.metrics)
        self.journal_lag_s = 0.0

    # ================================================================== venue sink

    def publish_market(self, msg: MarketData) -> None:
        if type(msg) is Ticker:
            self.last_ticker[msg.symbol] = msg
        try:
            self.md_send.send_nowait(msg)
        except trio.WouldBlock:
            self.counters.md_dropped += 1

    async def order_event(self, event: OrderEvent) -> None:
        # No checkpoint while there is room: the events a venue produces inline for one request
        # (accepted, then fills) reach the report task together and share one journal commit.
        try:
            self.ev_send.send_nowait(event)
        except trio.WouldBlock:
            await self.ev_send.send(event)

    def set_connected(self, connected: bool) -> None:
        if connected != self.venue_connected:
            log.info("venue %s %s", self.venue.name, "connected" if connected else "disconnected")
        self.venue_connected = connected
        self._publish_status()

    def _publish_status(self) -> None:
        st = VenueStatus(self.venue.name, self.venue_connected, list(self.config.venue.symbols), now_ms())
        try:
            self.md_send.send_nowait(st)
        except trio.WouldBlock:
            self.counters.md_dropped += 1

    # ================================================================== feed

    async def feed_task(self, md_pub: TrioSocket, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Own the market-data PUB socket; publish every message the venue produced, in batches.

        Cancelled with the server. Backpressure: none upstream (the venue's queue drops when full);
        PUB drops at its high-water mark and strategies see it as a jump of ``seq``.
        """
        task_status.started()
        recv = self.md_recv
        seqs = self._md_seq
        topics: dict[tuple[type, str], bytes] = {}
        send = md_pub.send_nowait
        counters = self.counters
        encode = wire.encode_message
        encode_ticker = wire.encode_ticker
        time_ns = time.time_ns
        while True:
            batch = [await recv.receive()]
            try:
                while len(batch) < 4096:
                    batch.append(recv.receive_nowait())
            except trio.WouldBlock:
                pass
            for msg in batch:
                cls = type(msg)
                key = (cls, msg.venue if isinstance(msg, VenueStatus) else msg.symbol)
                t = topics.get(key)
                if t is None:
                    t = topics[key] = wire.topic(_MD_KIND[cls], key[1])
                seq = seqs.get(t, 0) + 1
                seqs[t] = seq
                msg.seq = seq
                msg.gw_ns = time_ns()
                # Tickers are the bulk of the traffic: a specialised encoder, same frames.
                send(encode_ticker(t, msg) if isinstance(msg, Ticker) else encode(msg))
            counters.md_out += len(batch)

    # ================================================================== orders

    async def order_task(self, pull: TrioSocket, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Own the order PULL socket: parse, validate and route every request.

        Cancelled with the server. A malformed frame never ends it. Backpressure: when the report queue
        is full the task waits, and requests queue in the socket up to its high-water mark.
        """
        task_status.started()
        await self.accepting.wait()
        max_bytes = self.config.bus.max_frame_bytes
        while True:
            for frame in await pull.recv_batch():
                try:
                    req = wire.parse_request(frame, max_bytes=max_bytes)
                except WireError as exc:
                    await self._bad_frame(exc)
                    continue
                try:
                    await self.handle_request(req)
                except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
                    # A bug must not let one strategy's message kill the server for everyone.
                    log.exception("internal error handling %s from %s", type(req).__name__, req.strategy_id)
                    self.counters.bad_frames += 1
                    await self._reject_raw(
                        req.strategy_id, getattr(req, "client_order_id", ""), f"internal error: {exc}"
                    )

    async def _bad_frame(self, exc: WireError) -> None:
        self.counters.bad_frames += 1
        sid = getattr(exc, "strategy_id", None)
        typ = getattr(exc, "type", None)
        if sid is None or not self.strategy_allowed(sid):
            log.warning("dropped a bad frame: %s", exc)
            return
        coid = getattr(exc, "client_order_id", None) or ""
        log.info("rejected %s from %s: %s", typ, sid, exc)
        known = self.lookup(sid, coid) if coid else None
        if known is not None:
            # A malformed request about an order we hold (a duplicate order_request, a bad amend or
            # cancel) must not change that order's story: answer with its status as it is (PROTOCOL.md:
            # a failed cancel or amend leaves the status as it was), never with "rejected".
            what = {"amend_request": "amend failed: ", "cancel_request": "cancel failed: "}.get(typ or "", "")
            dup = " (client_order_id already used)" if typ == "order_request" else ""
            await self._refuse(known, f"{what}{exc}{dup}")
            return
        if typ == "order_request" and coid:
            rec = OrderRecord(self.ids.next(), sid, coid, "", "", "", None, 0.0, now_ms())
            await self._reject_record(rec, str(exc))
            return
        await self._reject_raw(sid, coid, str(exc))

    async def _reject_raw(self, sid: str, coid: str, msg: str) -> None:
        """A rejected report for something that is not (or not yet) an order of ours."""
        self.counters.rejected += 1
        report = OrderReport(
            seq=0, client_order_id=coid, exchange_order_id="", strategy_id=sid, symbol="", side="",
            order_type="", price=0.0, quantity=0.0, status=OrderStatus.REJECTED, error_msg=msg,
            timestamp=now_ms(),
        )  # fmt: skip
        await self.ev_send.send(_Reply(report))

    async def _reject_record(self, rec: OrderRecord, msg: str) -> None:
        """Reject a new order: remember its id (a re-send gets the same answer), never send it."""
        self.counters.rejected += 1
        self.journal.add_order(
            venue_order_id=rec.venue_order_id, strategy_id=rec.strategy_id, client_order_id=rec.client_order_id,
            symbol=rec.symbol, side=rec.side, order_type=rec.order_type, price=rec.price, quantity=rec.quantity,
            created_ms=rec.created_ms, sent=False,
        )  # fmt: skip
        rec.status = OrderStatus.REJECTED
        self._register(rec)
        await self.ev_send.send(_Reply(report_for(rec, OrderStatus.REJECTED, error_msg=msg), rec))

    def _forget(self, rec: OrderRecord) -> None:
        """Drop a closed order from memory; ``lookup`` finds it in the journal if it is asked about."""
        key = (rec.strategy_id, rec.client_order_id)
        if self.by_key.get(key) is rec:
            del self.by_key[key]
        if self.by_vid.get(rec.venue_order_id) is rec:
            del self.by_vid[rec.venue_order_id]

    def _register(self, rec: OrderRecord) -> None:
        key = (rec.strategy_id, rec.client_order_id)
        self.known.add(hash(key))
        self.by_key[key] = rec
        self.by_vid[rec.venue_order_id] = rec

    def _seen(self, sid: str) -> None:
        info = self.strategies.get(sid)
        t = trio.current_time()
        if info is None:
            self.strategies[sid] = StrategyInfo(sid, t)
            log.info("strategy %s connected", sid)
        else:
            if not info.alive:
                log.info("strategy %s is back", sid)
            info.last_seen = t
            info.alive = True

    def strategy_allowed(self, sid: str) -> bool:
        return self._allowed is None or sid in self._allowed

    def lookup(self, sid: str, coid: str) -> OrderRecord | None:
        """The record of (strategy, client_order_id), from memory or from the journal.

        ``known`` holds a hash of every key the journal has, so a new id (the common case on the
        order path) costs a set lookup instead of a SELECT; a hash hit is confirmed in the journal.
        """
        rec = self.by_key.get((sid, coid))
        if rec is None and hash((sid, coid)) in self.known:
            rec = self.journal.find_order(sid, coid)
            if rec is not None:
                self._register(rec)
        return rec

    async def handle_request(self, req: wire.Request) -> None:
        sid = req.strategy_id
        if not self.strategy_allowed(sid):
            self.counters.bad_frames += 1
            log.warning(
                "refused %s from unknown strategy %s (allow_unknown_strategies = false)",
                type(req).__name__,
                sid,
            )
            return
        self._seen(sid)
        kind = type(req).__name__
        self.counters.by_kind[kind] = self.counters.by_kind.get(kind, 0) + 1
        if isinstance(req, OrderRequest):
            await self._new_order(req)
        elif isinstance(req, CancelRequest):
            await self._cancel(req)
        elif isinstance(req, AmendRequest):
            await self._amend(req)
        elif isinstance(req, CancelAll):
            for rec in [r for r in self.by_key.values() if r.strategy_id == sid and r.is_open]:
                if req.symbol is None or rec.symbol == req.symbol:
                    await self.venue.cancel_order(rec.venue_order_id, rec.symbol)
        elif isinstance(req, Hello):
            await self.ev_send.send(_Replay(req))
        elif isinstance(req, Heartbeat):
            pass

    async def _new_order(self, req: OrderRequest) -> None:
        self.counters.orders_in += 1
        existing = self.lookup(req.strategy_id, req.client_order_id)
        if existing is not None:
            # Idempotency: never send again; re-send the latest report as it was (original seq).
            if existing.last_report is not None:
                await self.ev_send.send(_Reply(existing.last_report, existing, resend=True))
            return
        rec = OrderRecord(
            self.ids.next(), req.strategy_id, req.client_order_id, req.symbol, str(req.side),
            str(req.order_type), req.price, req.quantity, now_ms(),
        )  # fmt: skip
        age = now_ms() - req.timestamp
        if age > self.config.orders.max_age_ms:
            await self._reject_record(
                rec, f"stale order request: {age} ms old (limit {self.config.orders.max_age_ms} ms)"
            )
            return
        if -age > self.config.orders.max_future_ms:
            await self._reject_record(
                rec, f"order timestamp is {-age} ms in the future: check the strategy's clock"
            )
            return
        too_big = _out_of_range(req.price, req.quantity)
        if too_big:
            await self._reject_record(rec, too_big)
            return
        inst = self.venue.instruments.get(req.symbol)
        if inst is None:
            known = ", ".join(sorted(self.venue.instruments))
            await self._reject_record(rec, f"unknown symbol {req.symbol!r} (this server trades {known})")
            return
        if req.order_type is not OrderType.MARKET:
            assert req.price is not None
            rec.price = round_price(req.price, inst, req.side)
            if rec.price <= 0:
                await self._reject_record(rec, f"price {req.price} rounds to 0 at tick {inst.tick_size}")
                return
        else:
            rec.price = None
        rec.quantity = round_quantity(req.quantity, inst)
        if rec.quantity < inst.min_size - 1e-12:
            await self._reject_record(
                rec,
                f"quantity {req.quantity} is below the minimum {inst.min_size} after rounding to the lot {inst.lot_size}",
            )
            return
        for check in self.pre_trade_checks:
            reason = check(req, None)
            if reason:
                await self._reject_record(rec, reason)
                return
        # Persist, then send.
        self.journal.add_order(
            venue_order_id=rec.venue_order_id, strategy_id=rec.strategy_id, client_order_id=rec.client_order_id,
            symbol=rec.symbol, side=rec.side, order_type=rec.order_type, price=rec.price, quantity=rec.quantity,
            created_ms=rec.created_ms, sent=True,
        )  # fmt: skip
        self._register(rec)
        self.counters.orders_sent += 1
        await self.venue.place_order(
            VenueOrder(rec.venue_order_id, rec.symbol, req.side, req.order_type, rec.price, rec.quantity)
        )

    async def _refuse(self, rec: OrderRecord, msg: str) -> None:
        """Answer a request about ``rec`` with the order's state as it is, and why (nothing is sent)."""
        await self.ev_send.send(_Reply(None, rec, error_msg=msg))

    async def _cancel(self, req: CancelRequest) -> None:
        rec = self.lookup(req.strategy_id, req.client_order_id)
        if rec is None:
            await self._reject_raw(
                req.strategy_id,
                req.client_order_id,
                f"cancel failed: unknown client_order_id {req.client_order_id!r}",
            )
        elif not rec.is_open:
            await self._refuse(rec, f"cancel failed: order is already {rec.status}")
        else:
            for check in self.cancel_checks:
                reason = check(req, rec)
                if reason:
                    await self._refuse(rec, f"cancel failed: {reason}")
                    return
            await self.venue.cancel_order(rec.venue_order_id, rec.symbol)

    async def _amend(self, req: AmendRequest) -> None:
        rec = self.lookup(req.strategy_id, req.client_order_id)
        if rec is None:
            await self._reject_raw(
                req.strategy_id,
                req.client_order_id,
                f"amend failed: unknown client_order_id {req.client_order_id!r}",
            )
            return
        if not rec.is_open:
            await self._refuse(rec, f"amend failed: order is already {rec.status}")
            return
        if rec.order_type == OrderType.MARKET:
            await self._refuse(rec, "amend failed: a market order cannot be amended")
            return
        inst = self.venue.instruments[rec.symbol]
        too_big = _out_of_range(req.price, req.quantity)
        if too_big:
            await self._refuse(rec, f"amend failed: {too_big}")
            return
        price = round_price(req.price, inst, Side(rec.side)) if req.price is not None else None
        qty = round_quantity(req.quantity, inst) if req.quantity is not None else None
        if (price is None or price == rec.price) and (qty is None or qty == rec.quantity):
            # Nothing changes after rounding: the amend succeeds as it stands (PROTOCOL.md: reported with
            # the order's current status, price and quantity); the venue is not asked.
            await self.ev_send.send(_Reply(None, rec))
            return
        if price is not None and price <= 0:
            await self._refuse(rec, f"amend failed: price {req.price} rounds to 0 at tick {inst.tick_size}")
            return
        if qty is not None and qty < inst.min_size - 1e-12:
            await self._refuse(
                rec, f"amend failed: quantity {req.quantity} is below the minimum {inst.min_size}"
            )
            return
        for check in self.pre_trade_checks:
            reason = check(req, rec)
            if reason:
                await self._refuse(rec, f"amend failed: {reason}")
                return
        await self.venue.amend_order(rec.venue_order_id, rec.symbol, price, qty)

    # ================================================================== reports

    async def report_task(self, pub: TrioSocket, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Own the report PUB socket: number, journal, then publish every report; answer hellos.

        Cancelled with the server. Processes what is ready in batches: one journal commit per batch.
        Backpressure: a full PUB queue drops a report on the wire only; it is in the journal, and the
        strategy sees the gap in its seq and asks for it again with a ``hello``.
        """
        task_status.started()
        recv = self.ev_recv
        while True:
            batch = [await recv.receive()]
            try:
                while len(batch) < 1024:
                    batch.append(recv.receive_nowait())
            except trio.WouldBlock:
                pass
            out: list[tuple[OrderRecord | None, OrderReport, str]] = []
            for item in batch:
                if isinstance(item, _Replay):
                    self._flush(pub, out)
                    out = []
                    self._replay(pub, item.hello)
                elif isinstance(item, _Reply):
                    if item.resend and item.report is not None:
                        self._flush(pub, out)
                        out = []
                        self._send_report(pub, item.report)
                    elif item.report is None and item.record is not None:
                        rec = item.record
                        status = rec.status if rec.status is not None else OrderStatus.ACCEPTED
                        out.append((rec, report_for(rec, status, error_msg=item.error_msg), ""))
                    elif item.report is not None:
                        out.append((item.record, item.report, ""))
                else:
                    found = self.by_vid.get(item.venue_order_id)
                    if found is None:
                        log.warning("event for an order this server does not know: %s", item)
                        continue
                    report = apply_event(found, item)
                    if report is not None:
                        out.append((found, report, item.trade_id if report.last_fill_quantity > 0 else ""))
            self._flush(pub, out)

    def _flush(self, pub: TrioSocket, out: list[tuple[OrderRecord | None, OrderReport, str]]) -> None:
        if not out:
            return
        rows = []
        fills = []
        for rec, r, trade_id in out:
            seq = self.seqs.get(r.strategy_id, 0) + 1
            self.seqs[r.strategy_id] = seq
            r.seq = seq
            if rec is not None:
                rec.last_report = r
                if trade_id:
                    fills.append((rec.venue_order_id, trade_id))
                if not rec.is_open and not rec.retiring:
                    rec.retiring = True
                    self._closed.append(rec)
            rows.append((rec.venue_order_id if rec is not None else "", r, rec is not None and rec.is_open))
        t0 = time.perf_counter()
        self.journal.add_reports(rows, fills)
        self._reports_flushed.set()
        while len(self._closed) > self.config.server.closed_orders_in_memory:
            self._forget(self._closed.popleft())
        self.journal_commit_s = time.perf_counter() - t0  # metrics: the last commit's duration ...
        self.journal_lag_s = max(
            0.0, time.time() - min(r.timestamp for _, r, _ in out) / 1000
        )  # ... event -> commit
        log_fills = self.config.server.log_fills and log.isEnabledFor(logging.INFO)
        for rec, r, _ in out:
            for hook in self.on_report:
                hook(rec, r)
            self._send_report(pub, r)
            if log_fills and r.last_fill_quantity > 0:
                log.info("fill %s %s %s %s %g @ %g (%s, fee %g)", r.strategy_id, r.client_order_id, r.symbol,
                         r.side, r.last_fill_quantity, r.last_fill_price, r.status, r.fee)  # fmt: skip

    def _send_report(self, pub: TrioSocket, r: OrderReport) -> None:
        r.gw_ns = time.time_ns()
        pub.send_nowait(wire.encode_message(r))
        self.counters.reports_out += 1

    def _replay(self, pub: TrioSocket, hello: Hello) -> None:
        sid = hello.strategy_id
        self._seen(sid)
        self.counters.replays += 1
        reports = self.journal.reports_after(sid, hello.last_seq, REPLAY_LIMIT)
        for r in reports:
            self._send_report(pub, r)
        if len(reports) == REPLAY_LIMIT:
            return  # more to come: the strategy asks again from where it got to
        open_orders = [
            rec.last_report
            for rec in self.by_key.values()
            if rec.strategy_id == sid
            and rec.last_report is not None
            and rec.last_report.status in OPEN_STATUSES
        ]
        welcome = Welcome(sid, hello.nonce, self.seqs.get(sid, 0), open_orders, gw_ns=time.time_ns())
        pub.send_nowait(wire.encode_message(welcome))

    # ================================================================== recovery and monitoring

    async def recover(self) -> None:
        """Before accepting orders: bring every order the journal holds as open up to date.

        Orders that filled or were cancelled while the server was down get their reports; an order
        journaled but never acknowledged is resolved by querying the venue, never by sending it again.
        """
        open_orders = [r for r in self.by_vid.values() if r.is_open]
        for rec in open_orders:
            ev = await self.venue.query_order(rec.venue_order_id, rec.symbol)
            if ev is None:
                if rec.status is None:
                    ev = OrderEvent(rec.venue_order_id, OrderStatus.REJECTED,
                                    error_msg="order never reached the venue (server restarted before it was sent)")  # fmt: skip
                else:
                    ev = OrderEvent(
                        rec.venue_order_id, OrderStatus.CANCELLED, filled_quantity=rec.filled_quantity,
                        avg_price=rec.avg_price, fee=rec.fee,
                        error_msg="the venue no longer knows this order (venue state was lost); taken as cancelled",
                    )  # fmt: skip
            await self.ev_send.send(ev)
        if open_orders:
            log.info("recovery: reconciled %d open orders with the venue", len(open_orders))
        self.accepting.set()

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
        while True:
            await trio.sleep(1.0)
            self._publish_status()
            t = trio.current_time()
            for info in list(self.strategies.values()):
                if info.alive and t - info.last_seen > timeout:
                    info.alive = False
                    log.warning(
                        "strategy %s silent for %.1f s: taken for dead", info.strategy_id, t - info.last_seen
                    )
                    for hook in self.on_strategy_dead:
                        await hook(info.strategy_id)
            if interval > 0 and t >= next_line:
                rate = (self.counters.md_out - last_md) / max(t - last_t, 1e-9)
                last_md, last_t = self.counters.md_out, t
                next_line = t + interval
                log.info("%s", self.status_line(rate))

    def status_line(self, md_rate: float) -> str:
        c = self.counters
        open_n = sum(1 for r in self.by_vid.values() if r.is_open)
        strategies = self.connected_strategies()
        return (
            f"venue={self.venue.name} {'up' if self.venue_connected else 'DOWN'} "
            f"symbols={len(self.config.venue.symbols)} md={md_rate:,.0f}/s dropped={c.md_dropped} "
            f"orders={c.orders_in} open={open_n} rejected={c.rejected} reports={c.reports_out} "
            f"bad_frames={c.bad_frames} strategies={len(strategies)}"
            + (f" ({','.join(strategies)})" if strategies else "")
        )

    def register_commands(self, commands: ControlCommands) -> None:
        """The gateway's control commands: ``status``."""

        async def status(_: dict[str, Any]) -> dict[str, Any]:
            out = {
                "venue": self.venue.name,
                "connected": self.venue_connected,
                "symbols": list(self.config.venue.symbols),
                "counters": {k: v for k, v in vars(self.counters).items()},
                "strategies": {
                    sid: {
                        "alive": info.alive,
                        "heartbeat_age": round(trio.current_time() - info.last_seen, 3),
                        "last_seq": self.seqs.get(sid, 0),
                        "open_orders": len(self.open_records(sid)),
                    }
                    for sid, info in sorted(self.strategies.items())
                },
            }
            for extra in self.status_extras:
                out.update(extra())
            return out

        commands.register("status", status)

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

    def open_records(self, strategy_id: str | None = None) -> list[OrderRecord]:
        return [
            r
            for r in self.by_vid.values()
            if r.is_open and (strategy_id is None or r.strategy_id == strategy_id)
        ]

    async def cancel_open_orders(self, strategy_id: str | None = None) -> int:
        recs = self.open_records(strategy_id)
        for rec in recs:
            await self.venue.cancel_order(rec.venue_order_id, rec.symbol)
        return len(recs)
