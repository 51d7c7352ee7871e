"""The gateway engine: every order and report rule of the server, as a state machine without I/O.

No Trio, no ZeroMQ, no SQLite: requests, venue events and the time go in; plain data comes out, which
the shell (:mod:`seqtrade.server.gateway`) performs. The engine decides; the shell does.

Two stages, as in the server's two tasks:

- **Requests** (:meth:`Engine.on_request`, :meth:`Engine.on_bad_frame`, ...) give an :class:`Output`:
  new orders to journal, items for the report stage, venue commands. The shell performs them in that
  order (*persist, then send*: an order row is committed before the order goes to the venue).
- **Joins** (:meth:`Engine.on_hello`): a welcome first, then the replay it announces, in paced
  chunks (:meth:`Engine.replay_chunks`), at most one per strategy; sessions, goodbyes and the budget
  for new strategy ids are :mod:`seqtrade.server.joins`'s rules.
- **Reports** run in one place so that seqs are given in the order reports are journaled and
  published. The report stage takes the items of the request stage (:class:`Reply`, :class:`Replay`),
  venue events and the end of recovery (:data:`RECOVERED`), each turned into :class:`Pending` reports
  (:meth:`Engine.on_venue_event`, :meth:`Engine.on_reply`); :meth:`Engine.number` gives them their
  per-strategy seqs and the journal rows; the shell commits the rows, tells :meth:`Engine.committed`
  (the risk gate and the accounts follow the reports there), and only then publishes.

Swaps and futures: :meth:`Engine.check_order` also refuses a price outside the venue's price limits
and decides each order's ``pos_side`` and ``reduce_only`` against the ACCOUNT's position
(:mod:`seqtrade.server.positions`); venue account events (funding, liquidation, ADL, delivery, warnings,
adjustments) are split between the holders of the position (:meth:`Engine.on_account_event`) and
numbered, journaled and published with the order reports, each event id once.

The risk gate and the accounts are constructor arguments; :meth:`Engine.check_order` and
:meth:`Engine.check_amend` list every check an order or an amend passes, in order. Orders that left
memory are read back through ``find_order`` (the journal, read-only).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .. import wire
from ..candles import HistoryRequest
from ..clock import WALL
from ..config import Config
from ..errors import WireError
from ..models import (
    OPEN_STATUSES,
    AccountEvent,
    AccountEventKind,
    AmendRequest,
    CancelAll,
    CancelRequest,
    Goodbye,
    Heartbeat,
    Hello,
    OrderReport,
    OrderRequest,
    OrderStatus,
    OrderType,
    Refusal,
    Side,
    Welcome,
)
from ..vclock import SyncAck
from ..venues.base import EventKind, Instrument, OrderEvent, VenueAccountEvent, VenueOrder
from .accounts import Accounts
from .bounded import Budget, KeyFilter, RateLimitedLog
from .joins import NEW_IDS_PER_WINDOW, KeyedRateLog, Replays, Sessions
from .orders import IdGenerator, OrderRecord, apply_event, report_for, round_price, round_quantity
from .positions import EXTERNAL, PositionEffect, attribute, position_effect
from .risk import Quotes, RiskGate, TradingState

__all__ = [
    "Engine",
    "Counters",
    "Output",
    "Place",
    "Cancel",
    "Amend",
    "VenueCommand",
    "Reply",
    "Replay",
    "RECOVERED",
    "Pending",
    "Commit",
    "ReportItem",
    "ReportStep",
    "MAX_VALUE",
]

log = logging.getLogger("seqtrade.server.gateway")

MAX_VALUE = 1e15  # a price or quantity above this is a mistake, whatever the instrument
MAX_HELD = 16  # refusals kept per order until the venue acknowledges it (OrderRecord.held)
NEW_IDS_PEER = "(new ids)"  # not a valid strategy id: the bad-frame budget of ids never admitted


def _closes(side: Side, pos_side: str) -> bool:
    """In long/short mode, an order of ``side`` on leg ``pos_side`` closes it (sell long, buy short)."""
    return (side is Side.SELL) == (pos_side == "long")


def _out_of_range(price: float | None, quantity: float | None) -> str:
    """Why a price or quantity is beyond any sane value ("" when it is not)."""
    for name, v in (("price", price), ("quantity", quantity)):
        if v is not None and v > MAX_VALUE:
            return f"{name} {v:g} is out of range (> {MAX_VALUE:g})"
    return ""


@dataclass
class Counters:
    md_out: int = 0
    md_dropped: int = 0
    orders_in: int = 0
    orders_sent: int = 0
    rejected: int = 0
    bad_frames: int = 0
    bad_frames_dropped: int = 0  # over a peer's budget: dropped unanswered
    reports_out: int = 0
    replays: int = 0  # replays started
    hellos_coalesced: int = 0  # hellos answered by the replay in flight
    hellos_throttled: int = 0  # hellos from new strategy ids over the budget, dropped
    refused: int = 0  # hellos refused: another live session owns the strategy id
    by_kind: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- outputs


@dataclass(slots=True)
class Place:
    """Send a new order (its record is in the same output's ``journal``: commit it first)."""

    order: VenueOrder


@dataclass(slots=True)
class Cancel:
    venue_order_id: str
    symbol: str


@dataclass(slots=True)
class Amend:
    venue_order_id: str
    symbol: str
    price: float | None
    quantity: float | None


VenueCommand = Place | Cancel | Amend


@dataclass(slots=True)
class Reply:
    """A report the request stage wants sent (a reject, a refused cancel, a re-sent report).

    ``report`` None: a report on ``record`` as it stands when the report stage gets to it, with
    ``error_msg``. It must be built there, after every venue event queued before it was applied: a
    snapshot taken at the request could be older than the order's newest report.
    """

    report: OrderReport | None
    record: OrderRecord | None = None
    resend: bool = False  # already journaled with its seq: publish as it was
    error_msg: str = ""


@dataclass(slots=True)
class Replay:
    """A hello: welcome it, then replay the strategy's reports after ``hello.last_seq`` (paced, see
    :meth:`Engine.on_hello`); or, with ``refusal``, refuse it."""

    hello: Hello
    refusal: Refusal | None = None


class _Recovered:
    """The end of start-up recovery: every event queued before it has been applied."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "RECOVERED"


RECOVERED: Final = _Recovered()

# what the report stage is fed, in order
ReportItem = OrderEvent | VenueAccountEvent | Reply | Replay | _Recovered


@dataclass(slots=True)
class Output:
    """What one request asks of the shell, performed in this order.

    ``journal``: new orders to commit first ((record, sent): sent False for a local reject);
    ``replies``: items for the report stage; ``venue``: commands for the venue.
    ``strategy``: the strategy id, when the request came from a strategy allowed to trade (the shell
    marks it alive).
    """

    strategy: str | None = None
    departed: str | None = None  # a strategy that said goodbye (the shell stops watching it)
    journal: list[tuple[OrderRecord, bool]] = field(default_factory=list)
    replies: list[Reply | Replay] = field(default_factory=list)
    venue: list[VenueCommand] = field(default_factory=list)
    history: HistoryRequest | None = None  # bars asked for (the shell fetches them from the venue)
    synced: SyncAck | None = None  # a backtest's clock acknowledgement (the shell tells the venue)


# (record, report, trade id of its fill or ""); an account event has no record, and its event id
Pending = tuple[OrderRecord | None, OrderReport | AccountEvent, str]
ACCOUNT_EVENTS = "@account"  # the journal's fills key of applied account events (event ids)


@dataclass(slots=True)
class Commit:
    """Numbered reports: journal ``rows`` and ``fills`` in one transaction, then publish ``reports``."""

    pending: list[Pending]
    rows: list[tuple[str, OrderReport | AccountEvent, bool]]  # (venue_order_id, report, order still open)
    fills: list[tuple[str, str]]  # (venue_order_id, trade_id) applied

    @property
    def reports(self) -> list[OrderReport | AccountEvent]:
        return [r for _, r, _ in self.pending]


ReportStep = Commit | Reply | Replay | _Recovered  # Reply: a re-send


# ---------------------------------------------------------------------------------------- the engine


class Engine:
    """The server's order book-keeping and rules. Synchronous: call it between two awaits."""

    def __init__(
        self,
        config: Config,
        *,
        instruments: Callable[[], Mapping[str, Instrument]],
        risk: RiskGate,
        accounts: Accounts,
        find_order: Callable[[str, str], OrderRecord | None],
        seqs: Mapping[str, int] = {},
        known_keys: Iterable[tuple[str, str]] = (),
        open_orders: Iterable[OrderRecord] = (),
        ids: IdGenerator | None = None,
        key_filter: KeyFilter | None = None,
    ) -> None:
        """``seqs``, ``known_keys`` and ``open_orders``: what the journal holds (restart, see
        :func:`seqtrade.server.recovery.restore`). Open orders are known before the venue starts, so
        that the events it sends for them while starting are applied, not dropped."""
        self.config = config
        self.instruments = instruments
        self.risk = risk
        self.accounts = accounts
        self._find_order = find_order
        self.ids = ids if ids is not None else IdGenerator()
        # The time of its own replies (the shell sets the server's clock).
        self.clock_ms: Callable[[], int] = WALL.time_ms
        self.counters = Counters()
        self.by_key: dict[tuple[str, str], OrderRecord] = {}
        self.by_vid: dict[str, OrderRecord] = {}
        self.seqs: dict[str, int] = dict(seqs)
        self.callback_errors: dict[str, dict[str, int]] = {}  # the last heartbeat's 'errors', per strategy
        self._init_bounded(key_filter, known_keys)
        # None: any strategy id may trade; else only these (server.allow_unknown_strategies = false)
        self.allowed: frozenset[str] | None = (
            None if config.server.allow_unknown_strategies else frozenset(s.id for s in config.strategies)
        )
        self._closed: deque[OrderRecord] = deque()  # closed orders, oldest first
        self.by_sid: dict[str, dict[str, OrderRecord]] = {}  # the records in memory, by strategy
        self.sessions = Sessions(int(config.server.heartbeat_timeout * 1000), set(self.seqs))
        self.replays = Replays()
        self.rate_log = KeyedRateLog(log)
        self._reduce_only: set[str] = set()  # open orders sent reduce-only / closing (OrderRecord.closing)
        opened = [rec for rec in open_orders]
        for rec in opened:
            self._register(rec)
        risk.seed(opened)
        self.quotes: Quotes | None = None  # the shell's market data (price limits), set by the shell
        self._effects: dict[str, PositionEffect] = {}  # check_order -> _new_order, for one request
        self._events_in_flight: set[str] = set()  # account event ids numbered, not yet committed

    # ------------------------------------------------------------------ the order book

    # Bounded state (docs/operations.md, "Memory"): in memory are the open orders, the newest
    # ``server.closed_orders_in_memory`` closed ones, a fixed-size filter of every key the journal
    # holds, and the open orders indexed by strategy; anything older is read from the journal.

    def _init_bounded(self, key_filter: KeyFilter | None, known_keys: Iterable[tuple[str, str]]) -> None:
        server = self.config.server
        self.known = key_filter if key_filter is not None else KeyFilter(server.key_filter_bytes)
        for sid, coid in known_keys:
            self.known.add(sid, coid)
        self._open_by_sid: dict[str, dict[str, OrderRecord]] = {}  # strategy -> vid -> open record
        self.bad_frame_budget = Budget(server.bad_frame_rate, server.bad_frame_burst)
        self._dropped_log = RateLimitedLog(
            log, "bad frames dropped (over a peer's budget, or naming no strategy that may trade)"
        )
        self._refused_log = RateLimitedLog(log, "requests refused (allow_unknown_strategies = false)")

    def _register(self, rec: OrderRecord) -> None:
        key = (rec.strategy_id, rec.client_order_id)
        self.known.add(*key)
        self.by_key[key] = rec
        self.by_vid[rec.venue_order_id] = rec
        self.by_sid.setdefault(rec.strategy_id, {})[rec.venue_order_id] = rec
        if rec.is_open:
            self._open_by_sid.setdefault(rec.strategy_id, {})[rec.venue_order_id] = rec
            if rec.closing:  # counted by the account-level reduce-only judgment (also after a restart)
                self._reduce_only.add(rec.venue_order_id)

    def _retire(self, rec: OrderRecord) -> None:
        """A record closed: out of the open index, queued to leave memory."""
        rec.retiring = True
        self._closed.append(rec)
        mine = self._open_by_sid.get(rec.strategy_id)
        if mine is not None:
            mine.pop(rec.venue_order_id, None)
            if not mine:
                del self._open_by_sid[rec.strategy_id]

    def _forget(self, rec: OrderRecord) -> None:
        """Drop a closed order from memory; ``lookup`` finds it in the journal if it is asked about."""
        key = (rec.strategy_id, rec.client_order_id)
        if self.by_key.get(key) is rec:
            del self.by_key[key]
        if self.by_vid.get(rec.venue_order_id) is rec:
            del self.by_vid[rec.venue_order_id]
        mine = self.by_sid.get(rec.strategy_id)
        if mine is not None and mine.get(rec.venue_order_id) is rec:
            del mine[rec.venue_order_id]
            if not mine:
                del self.by_sid[rec.strategy_id]

    def lookup(self, sid: str, coid: str) -> OrderRecord | None:
        """The record of (strategy, client_order_id), from memory or from the journal.

        ``known`` (a :class:`KeyFilter`) holds every key the journal has, so a new id (the common case
        on the order path) costs a few hash probes instead of a read; a hit is confirmed in the journal
        (one SELECT on its unique index). A record read back is closed (open ones never leave
        memory): it joins the closed orders that leave memory in turn.
        """
        rec = self.by_key.get((sid, coid))
        if rec is None and (sid, coid) in self.known:
            rec = self._find_order(sid, coid)
            if rec is not None:
                self._register(rec)
                if not rec.is_open and not rec.retiring:
                    self._retire(rec)
        return rec

    def open_records(self, strategy_id: str | None = None) -> list[OrderRecord]:
        """Open orders (of one strategy): O(open orders), from the index by strategy."""
        if strategy_id is not None:
            return [r for r in self._open_by_sid.get(strategy_id, {}).values() if r.is_open]
        return [r for mine in self._open_by_sid.values() for r in mine.values() if r.is_open]

    def bad_frame_allowed(self, sid: str | None, now_ms: int) -> bool:
        """Charge a bad frame to its peer's budget (``server.bad_frame_rate``/``bad_frame_burst``);
        False: drop it unanswered, counted and logged at most once per interval. Frames naming no
        strategy that may trade share one budget. O(1).

        Ids the server has never admitted (no hello let in, no history) share one budget too: a
        bucket per id would answer (journal, publish, log) ``bad_frame_burst`` frames of every fresh
        id, so a flood naming a new id in each frame would be answered frame by frame."""
        peer = ""
        if sid is not None and self.strategy_allowed(sid):
            peer = sid if sid in self.sessions.known else NEW_IDS_PEER
        if peer and self.bad_frame_budget.allow(peer, now_ms / 1000):
            return True
        self.counters.bad_frames_dropped += 1
        self._dropped_log.event(now_ms / 1000, peer or "no strategy")
        return False

    def strategy_allowed(self, sid: str) -> bool:
        return self.allowed is None or sid in self.allowed

    # ------------------------------------------------------------------ requests

    def on_request(self, req: wire.Request, now_ms: int) -> Output:
        """One parsed request from a strategy."""
        sid = req.strategy_id
        out = Output()
        if not self.strategy_allowed(sid):
            self.counters.bad_frames += 1
            self._refused_log.event(now_ms / 1000, f"{type(req).__name__} from unknown strategy {sid}")
            return out
        out.strategy = sid
        cls = type(req)
        kind = cls.__name__
        by_kind = self.counters.by_kind
        by_kind[kind] = by_kind.get(kind, 0) + 1
        _HANDLERS[cls](self, req, now_ms, out)
        return out

    def _cancel_all(self, req: CancelAll, now_ms: int, out: Output) -> None:
        for rec in self.open_records(req.strategy_id):
            if req.symbol is None or rec.symbol == req.symbol:
                out.venue.append(Cancel(rec.venue_order_id, rec.symbol))

    def _hello(self, req: Hello, now_ms: int, out: Output) -> None:
        """Admit (new ids within their budget), check the session, then let the report stage answer
        (after what is queued before it). Costs the same whatever the number of orders or ids seen."""
        sid = req.strategy_id
        if not self.sessions.admit_new(sid, now_ms):
            self.counters.hellos_throttled += 1
            out.strategy = None  # not a strategy yet: the shell does not track it
            self.rate_log("new-ids", now_ms, logging.WARNING,
                          "too many new strategy ids (more than %d a second): hello from %s dropped",
                          NEW_IDS_PER_WINDOW, sid)  # fmt: skip
            return
        refusal, note = self.sessions.hello(sid, req.session, now_ms)
        if refusal:
            self.counters.refused += 1
            out.strategy = None  # the owner's liveness is its own heartbeats
            self.rate_log(
                f"refused:{sid}", now_ms, logging.WARNING, "refused a hello from %s: %s", sid, refusal
            )
            retry = self.sessions.retry_after(sid, now_ms)
            out.replies.append(Replay(req, Refusal(sid, req.nonce, req.session, refusal, retry)))
            return
        if note:
            log.info("strategy %s: %s", sid, note)
        out.replies.append(Replay(req))

    def _heartbeat(self, req: Heartbeat, now_ms: int, out: Output) -> None:
        self.sessions.heartbeat(req.strategy_id, req.session, now_ms)  # the shell marks it alive
        # keep its callback error counts for `status`
        if req.errors is not None:
            self.callback_errors[req.strategy_id] = req.errors

    def _history(self, req: HistoryRequest, now_ms: int, out: Output) -> None:
        """Bars for a strategy: fetched by the shell, answered on its report topic (not journaled)."""
        out.history = req

    def _sync_ack(self, req: SyncAck, now_ms: int, out: Output) -> None:
        """A strategy's backtest clock acknowledgement: for the venue (``seqtrade.vclock``)."""
        out.synced = req

    def _goodbye(self, req: Goodbye, now_ms: int, out: Output) -> None:
        """A strategy leaves cleanly: a departure, and ``server.dead_strategy_policy`` at once."""
        sid = req.strategy_id
        out.strategy = None
        if not self.sessions.goodbye(sid, req.session):
            log.info("ignored a goodbye for %s from session %s, which does not own it", sid, req.session)
            return
        out.departed = sid
        self.replays.cancel(sid)
        n = len(self.open_records(sid))
        policy = self.config.server.dead_strategy_policy
        log.info("strategy %s left (goodbye)%s", sid,
                 f": {'cancelling' if policy == 'cancel' else 'leaving'} its {n} open orders "
                 f"(server.dead_strategy_policy = {policy!r})" if n else "")  # fmt: skip
        if n and policy == "cancel":
            out.venue.extend(self.cancel_open(sid).venue)

    def on_bad_frame(self, exc: WireError, now_ms: int) -> Output:
        """A frame that is not a valid request: answered when it names a strategy that may trade."""
        self.counters.bad_frames += 1
        out = Output()
        sid = getattr(exc, "strategy_id", None)
        typ = getattr(exc, "type", None)
        if not self.bad_frame_allowed(sid, now_ms) or sid is None:
            return out
        coid = getattr(exc, "client_order_id", None) or ""
        log.info("rejected %s from %s: %s", typ, sid, exc)
        known = self.lookup(sid, coid) if coid else None
        if known is not None:
            # A malformed request about an order we hold (a duplicate order_request, a bad amend or
            # cancel) must not change that order's story: answer with its status as it is (a failed
            # cancel or amend leaves the status as it was), never with "rejected".
            what = {"amend_request": "amend failed: ", "cancel_request": "cancel failed: "}.get(typ or "", "")
            dup = " (client_order_id already used)" if typ == "order_request" else ""
            out.replies.append(Reply(None, known, error_msg=f"{what}{exc}{dup}"))
        elif typ == "order_request" and coid:
            rec = OrderRecord(self.ids.next(), sid, coid, "", "", "", None, 0.0, now_ms)
            self._reject_record(rec, str(exc), out)
        else:
            self._reject_raw(sid, coid, str(exc), now_ms, out)
        return out

    def on_internal_error(self, req: object, exc: Exception, now_ms: int) -> Output:
        """A bug while handling ``req``: answer with a reject rather than let it end the server."""
        self.counters.bad_frames += 1
        out = Output()
        sid = getattr(req, "strategy_id", "")
        coid = getattr(req, "client_order_id", "")
        known = self.by_key.get((sid, coid)) if coid else None
        if known is not None and known.status is not None and not isinstance(req, OrderRequest):
            # A cancel/amend of an order the venue acknowledged: the order is as it was; say so rather
            # than tell the strategy a live order was "rejected".
            out.replies.append(Reply(None, known, error_msg=f"internal error: {exc}"))
            return out
        self._reject_raw(sid, coid, f"internal error: {exc}", now_ms, out)
        return out

    def _reject_raw(self, sid: str, coid: str, msg: str, now_ms: int, out: Output) -> None:
        """A rejected report for something that is not (or not yet) an order of ours."""
        self.counters.rejected += 1
        report = OrderReport(
            seq=0, client_order_id=coid, exchange_order_id="", strategy_id=sid, symbol="", side="",
            order_type="", price=0.0, quantity=0.0, status=OrderStatus.REJECTED, error_msg=msg,
            timestamp=now_ms,
        )  # fmt: skip
        out.replies.append(Reply(report))

    def _reject_record(self, rec: OrderRecord, msg: str, out: Output) -> None:
        """Reject a new order: remember its id (a re-send gets the same answer), never send it."""
        self.counters.rejected += 1
        out.journal.append((rec, False))
        rec.status = OrderStatus.REJECTED
        self._register(rec)
        out.replies.append(
            Reply(report_for(rec, OrderStatus.REJECTED, error_msg=msg, timestamp=rec.created_ms), rec)
        )

    def _new_order(self, req: OrderRequest, now_ms: int, out: Output) -> None:
        """A new order: idempotency first, then :meth:`check_order`, then persist and send."""
        self.counters.orders_in += 1
        existing = self.lookup(req.strategy_id, req.client_order_id)
        if existing is not None:
            # Idempotency: never send again; re-send the latest report as it was (original seq).
            if existing.last_report is not None:
                out.replies.append(Reply(existing.last_report, existing, resend=True))
            return
        rec = OrderRecord(
            self.ids.next(), req.strategy_id, req.client_order_id, req.symbol, str(req.side),
            str(req.order_type), req.price, req.quantity, now_ms,
        )  # fmt: skip
        reason = self.check_order(req, rec, now_ms)
        effect = self._effects.pop(rec.venue_order_id, None)
        if reason is not None:
            self._reject_record(rec, reason, out)
            return
        order = VenueOrder(rec.venue_order_id, rec.symbol, req.side, req.order_type, rec.price, rec.quantity)
        if effect is not None and (effect.pos_side or effect.reduce_only):
            order.pos_side, order.reduce_only = effect.pos_side, effect.reduce_only
            rec.closing = effect.reduce_only or (
                effect.pos_side in ("long", "short") and _closes(req.side, effect.pos_side)
            )
        # Persist (with ``closing``: it outlives a restart), then send.
        out.journal.append((rec, True))
        self._register(rec)
        self.counters.orders_sent += 1
        out.venue.append(Place(order))

    def _position_effect(self, req: OrderRequest, rec: OrderRecord) -> PositionEffect | None:
        """The pos_side and reduce_only of a derivative order, judged against the ACCOUNT's position
        (:func:`seqtrade.server.positions.position_effect`); None for spot."""
        inst = self.instruments().get(rec.symbol)
        if inst is None or not inst.is_derivative:
            if req.reduce_only:
                return PositionEffect(
                    refusal=f"reduce_only applies to swaps and futures, not to {rec.symbol}"
                )
            return None
        return self._effect_of(rec, rec.quantity, req.reduce_only)

    def _effect_of(self, rec: OrderRecord, quantity: float, reduce_only: bool) -> PositionEffect:
        """:func:`position_effect` of ``quantity`` (still to fill) of ``rec``'s side, counting the
        account's other open reduce-only / closing orders (not ``rec`` itself: an amend's)."""
        mode = self.config.venue.derivatives.position_mode
        sid = rec.strategy_id
        pending = 0.0
        for vid in self._reduce_only:
            o = self.by_vid.get(vid)
            if o is None or o is rec or not o.is_open or o.symbol != rec.symbol or o.side != rec.side:
                continue
            if mode == "net" or o.strategy_id == sid:
                pending += max(o.quantity - o.filled_quantity, 0.0)
        return position_effect(
            mode=mode, symbol=rec.symbol, side=rec.side, quantity=quantity, reduce_only=reduce_only,
            strategy_position=self.accounts.position(sid, rec.symbol),
            account_position=self.accounts.net(rec.symbol), pending_reduce=pending,
        )  # fmt: skip

    def check_order(self, req: OrderRequest, rec: OrderRecord, now_ms: int) -> str | None:
        """Every check a new order passes, in order: None lets it through, else why not.

        Rounds ``rec``'s price and quantity on the way; an order that passes is counted by the risk
        gate at once (rate windows, open exposure). Idempotency comes before (:meth:`on_request`).
        """
        if req.strategy_id == EXTERNAL:
            return f"strategy id {EXTERNAL!r} is reserved for positions opened outside seqtrade"
        orders = self.config.orders
        age = now_ms - req.timestamp
        if age > orders.max_age_ms:
            return f"stale order request: {age} ms old (limit {orders.max_age_ms} ms)"
        if -age > orders.max_future_ms:
            return f"order timestamp is {-age} ms in the future: check the strategy's clock"
        too_big = _out_of_range(req.price, req.quantity)
        if too_big:
            return too_big
        instruments = self.instruments()
        inst = instruments.get(req.symbol)
        if inst is None:
            return f"unknown symbol {req.symbol!r} (this server trades {', '.join(sorted(instruments))})"
        if req.order_type is not OrderType.MARKET:
            assert req.price is not None
            rec.price = round_price(req.price, inst, req.side)
            if rec.price <= 0:
                return f"price {req.price} rounds to 0 at tick {inst.tick_size}"
        else:
            rec.price = None
        rec.quantity = round_quantity(req.quantity, inst)
        if rec.quantity < inst.min_size - 1e-12:
            return f"quantity {req.quantity} is below the minimum {inst.min_size} after rounding to the lot {inst.lot_size}"
        if self.quotes is not None and (why := self.quotes.outside_limits(rec.symbol, rec.side, rec.price)):
            return why  # refused before the venue refuses it (OKX 51006)
        effect = self._position_effect(req, rec)
        if effect is not None:
            if effect.refusal:
                return effect.refusal
            self._effects[rec.venue_order_id] = effect
        # The risk gate (docs/risk.md): trading state; per layer size and notional, price band,
        # worst-case positions, open orders and order rate. What passes is counted at once.
        return self.risk.refusal(self.risk.terms(rec))

    def _cancel(self, req: CancelRequest, now_ms: int, out: Output) -> None:
        rec = self.lookup(req.strategy_id, req.client_order_id)
        if rec is None:
            msg = f"cancel failed: unknown client_order_id {req.client_order_id!r}"
            self._reject_raw(req.strategy_id, req.client_order_id, msg, now_ms, out)
        elif not rec.is_open:
            out.replies.append(Reply(None, rec, error_msg=f"cancel failed: order is already {rec.status}"))
        elif reason := self.risk.cancel_refusal(rec):
            out.replies.append(Reply(None, rec, error_msg=f"cancel failed: {reason}"))
        else:
            out.venue.append(Cancel(rec.venue_order_id, rec.symbol))

    def _amend(self, req: AmendRequest, now_ms: int, out: Output) -> None:
        rec = self.lookup(req.strategy_id, req.client_order_id)
        if rec is None:
            msg = f"amend failed: unknown client_order_id {req.client_order_id!r}"
            self._reject_raw(req.strategy_id, req.client_order_id, msg, now_ms, out)
            return
        result = self.check_amend(req, rec)
        if isinstance(result, Amend):
            out.venue.append(result)
        else:
            out.replies.append(Reply(None, rec, error_msg=f"amend failed: {result}" if result else ""))

    def check_amend(self, req: AmendRequest, rec: OrderRecord) -> Amend | str:
        """Every check an amend passes, in order: the venue command, or why not ("": nothing changes
        after rounding, so the amend succeeds as it stands and the venue is not asked)."""
        if not rec.is_open:
            return f"order is already {rec.status}"
        if rec.order_type == OrderType.MARKET:
            return "a market order cannot be amended"
        instruments = self.instruments()
        inst = instruments.get(rec.symbol)
        if inst is None:  # left open by a run that traded it (a restart with another symbol list)
            return f"unknown symbol {rec.symbol!r} (this server trades {', '.join(sorted(instruments))})"
        too_big = _out_of_range(req.price, req.quantity)
        if too_big:
            return too_big
        price = round_price(req.price, inst, Side(rec.side)) if req.price is not None else None
        qty = round_quantity(req.quantity, inst) if req.quantity is not None else None
        if (price is None or price == rec.price) and (qty is None or qty == rec.quantity):
            return ""
        if price is not None and price <= 0:
            return f"price {req.price} rounds to 0 at tick {inst.tick_size}"
        if qty is not None and qty < inst.min_size - 1e-12:
            return f"quantity {req.quantity} is below the minimum {inst.min_size}"
        if price is not None and self.quotes is not None:
            if why := self.quotes.outside_limits(rec.symbol, rec.side, price):
                return why  # refused before the venue refuses it (OKX 51006)
        if rec.closing and qty is not None and qty > rec.quantity:
            # a reduce-only / closing order grows: still reduce-only for the ACCOUNT (or the leg)?
            effect = self._effect_of(rec, max(qty - rec.filled_quantity, 0.0), True)
            if effect.refusal:
                return effect.refusal
        reason = self.risk.refusal(self.risk.terms(rec, price=price, quantity=qty, amend=True))
        if reason:
            return reason
        return Amend(rec.venue_order_id, rec.symbol, price, qty)

    def cancel_open(self, strategy_id: str | None = None) -> Output:
        """Cancel every open order (of one strategy): shutdown, a dead strategy."""
        out = Output()
        out.venue.extend(Cancel(rec.venue_order_id, rec.symbol) for rec in self.open_records(strategy_id))
        return out

    def on_strategy_dead(self, strategy_id: str) -> Output:
        """A strategy's heartbeats stopped: ``server.dead_strategy_policy`` says what happens to its orders."""
        n = len(self.open_records(strategy_id))
        if not n:
            return Output()
        if self.config.server.dead_strategy_policy == "cancel":
            log.warning("strategy %s is dead: cancelling its %d open orders (server.dead_strategy_policy = 'cancel')",
                        strategy_id, n)  # fmt: skip
            return self.cancel_open(strategy_id)
        log.warning("strategy %s is dead: leaving its %d open orders (server.dead_strategy_policy = 'leave')",
                    strategy_id, n)  # fmt: skip
        return Output()

    # ------------------------------------------------------------------ reports

    def report_steps(self, batch: Iterable[ReportItem]) -> Iterator[ReportStep]:
        """The report stage for a batch of items, as steps for the shell to perform in order.

        A :class:`Commit` (journal its rows, then :meth:`committed`, then publish), a :class:`Reply`
        to re-send as it was, a :class:`Replay` to answer, :data:`RECOVERED` (open the order
        channel). Reports are gathered into as few commits as possible; anything that reads the
        journal or depends on what came before (a replay, a re-send, the end of recovery) first
        closes the commit in progress. Resume the iterator only after performing its last step.
        """
        pending: list[Pending] = []
        for item in batch:
            p: Pending | None
            if isinstance(item, OrderEvent):
                pending.extend(self.on_venue_event(item))
                continue
            elif isinstance(item, VenueAccountEvent):
                if pending:  # fills before it are applied first: it is split by the positions after them
                    yield self.number(pending)
                    pending = []
                pending.extend(self.on_account_event(item))
                continue
            elif isinstance(item, Reply):
                if item.report is None and item.record is not None and item.record.status is None:
                    # about an order in flight: told once the venue has acknowledged (or rejected) it
                    self._hold(item.record, item.error_msg, 0)
                    continue
                p = self.on_reply(item)
                if p is None:  # a re-send: published as it was, after everything before it
                    if pending:
                        yield self.number(pending)
                        pending = []
                    yield item
                    continue
            else:
                if pending:
                    yield self.number(pending)
                    pending = []
                yield item
                continue
            if p is not None:
                pending.append(p)
        if pending:
            yield self.number(pending)

    def on_venue_event(self, ev: OrderEvent) -> list[Pending]:
        """Apply a venue event; the reports it makes (none: unknown order, or nothing changes).

        Every order is reported ``accepted`` (or ``rejected``) before anything else, whatever order
        the venue's messages come in (docs/protocol.md): a first event that is already a fill or a
        cancel (a push that overtook the place's answer, a state found by recovery) is preceded by
        an ``accepted`` report with nothing filled.
        """
        rec = self.by_vid.get(ev.venue_order_id)
        if rec is None:
            log.warning("event for an order this server does not know: %s", ev)
            return []
        if rec.status is None and ev.kind is not EventKind.UPDATE:
            # A refused cancel/amend before the order was acknowledged: its status is not known yet,
            # so the refusal is told after the first report, not as a made-up "accepted" now.
            self._hold(rec, ev.error_msg or f"{ev.kind} by the venue", ev.ts)
            return []
        out: list[Pending] = []
        if (
            rec.status is None
            and ev.kind is EventKind.UPDATE
            and ev.status not in (OrderStatus.ACCEPTED, OrderStatus.REJECTED)
        ):
            ack = OrderEvent(
                rec.venue_order_id, OrderStatus.ACCEPTED, exchange_order_id=ev.exchange_order_id, ts=ev.ts
            )
            first = apply_event(rec, ack)
            if first is not None:
                out.append((rec, first, ""))
        report = apply_event(rec, ev)
        if report is not None:
            out.append((rec, report, ev.trade_id if report.last_fill_quantity > 0 else ""))
        if rec.held and rec.status is not None:
            for why, ts in rec.held:
                out.append((rec, report_for(rec, rec.status, error_msg=why, timestamp=ts), ""))
            rec.held.clear()
        return out

    @staticmethod
    def _hold(rec: OrderRecord, why: str, ts: int) -> None:
        if len(rec.held) >= MAX_HELD:
            log.warning("order %s: more than %d refusals before its acknowledgement; dropped: %s",
                        rec.venue_order_id, MAX_HELD, why)  # fmt: skip
            return
        rec.held.append((why, ts))

    def on_account_event(self, ev: VenueAccountEvent) -> list[Pending]:
        """An event on the account's position: one ``account_event`` per holder of the position it
        touched (pro rata, :func:`seqtrade.server.positions.attribute`; the rest to ``external``).
        Applied once per ``event_id``, also across restarts (the journal keeps the applied ids)."""
        if not ev.event_id or ev.event_id in self._events_in_flight or self.accounts.event_seen(ev.event_id):
            return []
        self._events_in_flight.add(ev.event_id)
        inst = self.instruments().get(ev.symbol)
        currency = ev.currency or (inst.settle_currency if inst is not None else "")
        # net mode has one position per instrument: an event naming a leg (a delivery bill does) is
        # on the net, split between every holder by their signed share of it
        leg = ev.pos_side if self.config.venue.derivatives.position_mode == "long_short" else ""
        if ev.kind == AccountEventKind.ADJUSTMENT:
            shares = {EXTERNAL: (ev.quantity, ev.amount)}
        else:
            shares = attribute(self.accounts.holders(ev.symbol), ev.quantity, ev.amount, leg)
        out: list[Pending] = []
        for holder, (qty, amount) in sorted(shares.items()):
            e = AccountEvent(holder, 0, ev.kind, ev.symbol, leg, qty, ev.price, amount, currency,
                             ev.event_id, ev.ts)  # fmt: skip
            out.append((None, e, ev.event_id))
        if ev.kind == AccountEventKind.LIQUIDATION_WARNING:
            owners = [h for h in shares if h != EXTERNAL]
            log.warning("liquidation warning on %s%s at %g: held by %s", ev.symbol,
                        f" {ev.pos_side}" if ev.pos_side else "", ev.price, ", ".join(sorted(shares)))  # fmt: skip
            if self.config.venue.derivatives.on_liquidation_warning == "reducing":
                for sid in owners:
                    self.risk.set_state(TradingState.REDUCING, sid)
        elif ev.kind != AccountEventKind.FUNDING:
            log.warning("%s on %s: %+g contracts at %g, %+g %s (%s)", ev.kind, ev.symbol, ev.quantity, ev.price,
                        ev.amount, currency, ", ".join(f"{h} {q:+g}" for h, (q, _) in sorted(shares.items())))  # fmt: skip
        return out

    def on_reply(self, item: Reply) -> Pending | None:
        """The report of a request-stage reply (None for a re-send: publish ``item.report`` as it is)."""
        if item.resend and item.report is not None:
            return None
        if item.report is None and item.record is not None:
            rec = item.record
            assert rec.status is not None, "held by report_steps until the order is acknowledged"
            return rec, report_for(rec, rec.status, error_msg=item.error_msg, timestamp=self.clock_ms()), ""
        assert item.report is not None
        return item.record, item.report, ""

    def number(self, pending: list[Pending]) -> Commit:
        """Give each report the next seq of its strategy, in order; what to journal."""
        rows: list[tuple[str, OrderReport | AccountEvent, bool]] = []
        fills = []
        seqs = self.seqs
        for rec, r, trade_id in pending:
            seq = seqs.get(r.strategy_id, 0) + 1
            seqs[r.strategy_id] = seq
            r.seq = seq
            if type(r) is AccountEvent:
                rows.append(("", r, False))
                if trade_id:
                    fills.append((ACCOUNT_EVENTS, trade_id))  # its event id: applied once, for ever
                continue
            if rec is not None:
                assert type(r) is OrderReport
                rec.last_report = r
                if trade_id:
                    fills.append((rec.venue_order_id, trade_id))
                if not rec.is_open and not rec.retiring:
                    self._retire(rec)
                rows.append((rec.venue_order_id, r, rec.is_open))
            else:
                rows.append(("", r, False))
        return Commit(pending, rows, fills)

    def committed(self, commit: Commit) -> None:
        """The reports are in the journal: the accounts and the risk gate follow them (in seq order);
        closed orders beyond ``server.closed_orders_in_memory`` leave memory."""
        keep = self.config.server.closed_orders_in_memory
        while len(self._closed) > keep:
            self._forget(self._closed.popleft())
        accounts, risk = self.accounts, self.risk
        for rec, r, _ in commit.pending:
            if type(r) is AccountEvent:
                accounts.apply_event(r)
                self._events_in_flight.discard(r.event_id)
            elif rec is not None:
                assert type(r) is OrderReport
                accounts.apply(r)
                risk.on_report(rec, r)
                if not rec.is_open:
                    self._reduce_only.discard(rec.venue_order_id)

    def on_hello(self, hello: Hello, gw_ns: int) -> Welcome | None:
        """A hello reaches the report stage: the welcome to send now (None: coalesced into the replay
        in flight, nothing to send). The reports after ``hello.last_seq`` follow it, in paced chunks
        (:meth:`replay_chunks`); at most one replay is in flight per strategy (docs/protocol.md)."""
        sid = hello.strategy_id
        last = self.seqs.get(sid, 0)
        started = self.replays.started
        what = self.replays.hello(sid, hello.last_seq, hello.nonce, last, gw_ns // 1_000_000)
        self.counters.replays += self.replays.started - started
        if what == "coalesced":
            self.counters.hellos_coalesced += 1
            return None
        return self.welcome(hello, gw_ns)

    def welcome(self, hello: Hello, gw_ns: int) -> Welcome:
        """The welcome of a hello: the last seq, the open orders (as of that seq) and the symbols served."""
        sid = hello.strategy_id
        open_orders = [
            rec.last_report
            for rec in self.by_sid.get(sid, {}).values()
            if rec.last_report is not None and rec.last_report.status in OPEN_STATUSES
        ]
        open_orders.sort(key=lambda r: r.seq)
        insts = self.instruments()
        return Welcome(sid, hello.nonce, self.seqs.get(sid, 0), open_orders, gw_ns=gw_ns,
                       symbols=sorted(insts) or list(self.config.venue.symbols),
                       instruments=[insts[s] for s in sorted(insts)])  # fmt: skip

    def replay_chunks(self) -> list[tuple[str, int, int]]:
        """The next step of the replays in flight: (strategy, the reports after this seq, at most this
        many). Read them from the journal, publish them, then tell :meth:`replayed`."""
        return self.replays.chunks()

    def replayed(
        self, sid: str, after: int, limit: int, reports: list[OrderReport | AccountEvent], now_ms: int
    ) -> None:
        """A chunk of :meth:`replay_chunks` was sent (``now_ms``: when; a replay that ends starts
        the cooldown before the next one of that strategy)."""
        self.replays.sent(sid, after, limit, reports[-1].seq if reports else None, now_ms)


# A request's handler by its type (the shell has parsed the frame into one of these). Checked against
# the codec's table when the module loads: a request type with no handler here fails at import.
_HANDLERS: dict[type, Callable[[Engine, Any, int, Output], None]] = wire.dispatch_table(
    wire.REQUEST_TYPES,
    {
        OrderRequest: Engine._new_order,
        CancelRequest: Engine._cancel,
        AmendRequest: Engine._amend,
        CancelAll: Engine._cancel_all,
        Hello: Engine._hello,
        Heartbeat: Engine._heartbeat,
        Goodbye: Engine._goodbye,
        HistoryRequest: Engine._history,
        SyncAck: Engine._sync_ack,
    },
)
