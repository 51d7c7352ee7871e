"""The dashboard's view of the server: sampled from memory, fed from the journal, never on the order path.

:class:`Collector` reads what the server keeps anyway, between two awaits of its own task (no lock, no
hook in the order path): the gateway's strategies, counters and last tickers, the guard's trading
states and accounts, the supervisor's processes. Reports (fills, rejections, acknowledgements, the
equity curve from the first report on) come from two places: at start, the journal's history, read on
a read-only connection of its own in a worker thread (:class:`~.journal_view.JournalView`); then each
batch the gateway commits, which it hands to the collector's tap (``Gateway.report_taps``: one append,
the only thing the dashboard adds to the report path). The collector applies them at its next sample,
a slice at a time with checkpoints between (orders and reports are handled in between); if more
batches came than it keeps, the oldest are read back from the journal (a gap in a strategy's seqs).

Each sample becomes the ``state`` the page shows, as named panels (:data:`PANELS`): a panel is a
function of the collector that returns JSON-able data, so new ones (margin and liquidation prices,
account events, feed and book health) slot in with one entry; the page draws a panel it has no
renderer for as a table. Series (equity curves, prices, the reconciliation difference) are larger and
change slowly: they are published apart, every ``SERIES_EVERY`` seconds, as what they gained since
the last time (a page takes them whole once, from ``/api/series``): encoding every series at every
publication would hold the server's thread for milliseconds.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from ...config import Config
from ...errors import JournalError, VenueError
from ...instruments import unrealised_pnl
from ...models import OPEN_STATUSES, AccountEvent, OrderReport, OrderStatus, Ticker
from ..accounts import Accounts
from ..engine import Pending
from .journal_view import JournalView, fill_row
from .model import Histogram, Series, reconciliation, rule_of

if TYPE_CHECKING:
    from ..gateway import Gateway
    from ..guard import Guard
    from ..supervisor import Supervisor

__all__ = ["Collector", "PANELS"]

log = logging.getLogger(__name__)

SERIES_EVERY = 1.0  # seconds between two publications of the series
PRICE_EVERY = 1.0  # seconds between two points of a price series
RECENT_FILLS = 200
OPEN_ORDERS_SHOWN = 200
JOURNAL_PAGE = 5000  # reports per strategy per journal read (the first reads catch up a long journal)
SLICE = 256  # reports applied between two checkpoints (the order path runs in between)
# Committed batches kept between two samples; beyond, the oldest go (and are read back from the journal).
TAP_BATCHES = 16384


@dataclass(slots=True)
class _Feed:
    seq: int = 0
    rate: float = 0.0
    last_change: float = 0.0  # trio.current_time() when its seq last moved


@dataclass(slots=True)
class _Equity:
    """One strategy's books replayed from the journal, for its equity curve."""

    marks: dict[str, float] = field(default_factory=dict)  # the last fill price per symbol
    series: Series = field(default_factory=lambda: Series(limit=1000))


class Collector:
    """Samples the server every ``config.dashboard.interval`` s; :meth:`run` is its task."""

    def __init__(
        self,
        config: Config,
        gw: Gateway,
        guard: Guard,
        supervisor: Supervisor | None,
        *,
        tap_batches: int = TAP_BATCHES,
    ) -> None:
        self.config = config
        self.gw = gw
        self.guard = guard
        self.supervisor = supervisor
        self.view = JournalView(config.journal_path)
        self.version = 0
        self.series_version = 0
        self.state_json = b"{}"
        self.series_json = b"{}"
        self._changed = trio.Event()
        self._feeds: dict[str, _Feed] = {}
        self._last_sample = 0.0
        self._ticks_seen: dict[str, int] = {}
        self.tick_delay = Histogram()
        self.order_ack = Histogram()
        self.rejections: dict[str, int] = {}
        self.last_error: dict[str, tuple[int, str]] = {}  # strategy -> (ts, error_msg)
        self.fills: deque[dict[str, Any]] = deque(maxlen=RECENT_FILLS)
        self.account_events: deque[dict[str, Any]] = deque(maxlen=RECENT_FILLS)
        self._new_fills: list[dict[str, Any]] = []  # since the last series delta
        self._new_fills_lost = False
        self._seqs: dict[str, int] = {}  # the last seq applied per strategy
        self._taken: deque[list[Pending]] = deque(maxlen=tap_batches)
        self._caught_up = False
        self._acked: set[tuple[str, str]] = set()  # open orders whose acknowledgement was counted
        self._accounts = Accounts()  # the journal replayed (the equity curve's books)
        self._equity: dict[str, _Equity] = {}
        self.prices: dict[str, Series] = {}
        self._price_t = 0.0
        self.recon_rows: list[dict[str, Any]] = []
        self.recon_ms = 0
        self.recon_history: dict[str, Series] = {}
        self._series_t = -math.inf
        self._broken: set[str] = set()  # panels whose error was logged
        self.viewers = 0  # event streams open (the web side counts them)
        self.now: dict[str, Any] = {}  # what publish() read of the server, for its panels
        self.ready = trio.Event()  # set after the first sample with the journal read to its end

    # ------------------------------------------------------------------ the task

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Sample, read the journal's new reports, publish; every ``dashboard.interval`` s.

        Owns the journal view's connection (closed when cancelled). Cancelled with the server.
        Backpressure: none toward the server (it reads what is there); a slow journal read delays the
        next sample only.
        """
        interval = self.config.dashboard.interval
        recon_every = self.config.dashboard.reconcile_interval
        next_recon = trio.current_time()
        self._accounts.instrument = self.gw.engine.accounts.instrument  # contract values, inverse
        self.gw.report_taps.append(self._tap)  # before the history is read: nothing falls between the two
        task_status.started()
        try:
            while True:
                if recon_every > 0 and trio.current_time() >= next_recon:
                    next_recon = trio.current_time() + recon_every
                    await self._reconcile()
                try:
                    await self.refresh(publish=self.viewers > 0)
                except JournalError as exc:  # a read of the journal failed: the next sample tries again
                    log.warning("dashboard: %s", exc)
                await trio.sleep(interval)
        finally:
            self.gw.report_taps.remove(self._tap)
            self.view.close()

    async def refresh(self, *, publish: bool = True) -> None:
        """Apply the reports committed since the last time, sample, and (``publish``) build the state.

        Nobody watching (no event stream open), the state is not built: a server left alone for weeks
        pays for the reports and a few samples only; ``/api/state`` then builds it when asked.
        """
        await self._read_journal()
        self.observe()
        if publish:
            self.publish()
        self.ready.set()

    async def wait_changed(self, version: int) -> int:
        """Wait until the state's version differs from ``version``; the new version."""
        while self.version == version:
            await self._changed.wait()
        return self.version

    # ------------------------------------------------------------------ the journal

    def _tap(self, pending: list[Pending]) -> None:
        """The gateway hands every committed batch here (an append: nothing else on its path)."""
        self._taken.append(pending)

    async def _read_journal(self) -> None:
        """Bring the view up to date: from the journal what it has not seen (its history at start, a
        gap if the tap's queue overflowed), else from the batches the tap kept, a slice at a time."""
        if not self._caught_up:
            await self._from_journal({sid: n for sid, n in self.gw.seqs.items()})
            self._caught_up = True
        n = 0
        while self._taken:
            for rec, r, _ in self._taken.popleft():
                last = self._seqs.get(r.strategy_id, 0)
                if r.seq <= last:
                    continue  # read from the journal already
                if r.seq > last + 1:  # reports the queue dropped: the journal has them
                    await self._from_journal({r.strategy_id: r.seq - 1})
                if isinstance(r, AccountEvent):
                    self._apply_event(r)
                else:
                    created = {(r.strategy_id, r.client_order_id): rec.created_ms} if rec is not None else {}
                    self._apply(r, created)
                n += 1
            if n >= SLICE:  # let the order and report tasks run between two slices
                n = 0
                await trio.lowlevel.checkpoint()

    def index_journal(self) -> None:
        """Before the dashboard's own connection reads the journal: the server's journal takes what its
        log holds into the SQLite index (as every read of its own does first), on this thread."""
        if self.gw.journal.pending:
            self.gw.journal.index()

    async def _from_journal(self, upto: dict[str, int]) -> None:
        """Read and apply each strategy's journaled reports after the last seen, up to ``upto``."""
        after = {sid: self._seqs.get(sid, 0) for sid, n in upto.items() if n > self._seqs.get(sid, 0)}
        if after:
            self.index_journal()
        while after:
            reports = await trio.to_thread.run_sync(self.view.reports_after, after, JOURNAL_PAGE)
            if not reports:
                return
            reports = [r for r in reports if r.seq <= upto[r.strategy_id]]
            acks = [(r.strategy_id, r.client_order_id) for r in reports
                    if isinstance(r, OrderReport) and r.status is OrderStatus.ACCEPTED]  # fmt: skip
            created = await trio.to_thread.run_sync(self.view.created_ms, acks) if acks else {}
            for i, r in enumerate(reports):
                if isinstance(r, AccountEvent):
                    self._apply_event(r)
                else:
                    self._apply(r, created)
                if i % SLICE == SLICE - 1:
                    await trio.lowlevel.checkpoint()
            after = {sid: self._seqs.get(sid, 0) for sid in after if upto[sid] > self._seqs.get(sid, 0)}
            await trio.lowlevel.checkpoint()

    def _apply(self, r: OrderReport, created: dict[tuple[str, str], int]) -> None:
        """One journaled report, in its strategy's seq order."""
        self._seqs[r.strategy_id] = r.seq
        self._accounts.apply(r)
        if r.status is OrderStatus.REJECTED or r.error_msg:
            self.last_error[r.strategy_id] = (r.timestamp, r.error_msg)
        if r.status is OrderStatus.REJECTED:
            rule = rule_of(r.error_msg)
            self.rejections[rule] = self.rejections.get(rule, 0) + 1
        key = (r.strategy_id, r.client_order_id)
        if r.status is OrderStatus.ACCEPTED and key not in self._acked:
            # an order's first report only (an amend or a failed cancel reports "accepted" again)
            self._acked.add(key)
            t0 = created.get(key)
            if t0 is not None:
                self.order_ack.add(float(r.timestamp - t0))
        if r.status not in OPEN_STATUSES:
            self._acked.discard(key)  # only open orders are remembered
        if r.last_fill_quantity > 0:
            row = fill_row(r)
            self.fills.append(row)
            if len(self._new_fills) < RECENT_FILLS:
                self._new_fills.append(row)
            else:
                self._new_fills_lost = True
            eq = self._equity.setdefault(r.strategy_id, _Equity())
            eq.marks[r.symbol] = r.last_fill_price
            eq.series.add(
                r.timestamp / 1000, self._equity_of(r.strategy_id, eq.marks), 1 if r.side == "buy" else -1
            )

    def _apply_event(self, ev: AccountEvent) -> None:
        """One journaled account event (funding, liquidation, ADL, delivery, warning), in seq order."""
        self._seqs[ev.strategy_id] = ev.seq
        self._accounts.apply_event(ev)
        self.account_events.append({"strategy": ev.strategy_id, "seq": ev.seq, "kind": str(ev.kind),
                                    "symbol": ev.symbol, "quantity": ev.quantity, "price": ev.price,
                                    "amount": ev.amount, "currency": ev.currency, "ts": ev.ts})  # fmt: skip
        if ev.kind in ("liquidation", "adl", "delivery") or ev.amount:
            eq = self._equity.setdefault(ev.strategy_id, _Equity())
            if ev.price:
                eq.marks[ev.symbol] = ev.price
            eq.series.add(ev.ts / 1000, self._equity_of(ev.strategy_id, eq.marks))

    def _equity_of(self, sid: str, marks: dict[str, float]) -> float:
        """Realised PnL net of fees, plus account events' money, plus the open positions at ``marks``
        (each book in its own currency: a chart of a strategy trading in two currencies mixes them)."""
        total = 0.0
        instrument = self._accounts.instrument
        for (s, sym), b in self._accounts.books.items():
            if s == sid:
                mark = marks.get(sym, b.avg_price)
                inst = instrument(sym)
                if inst is not None and b.position and mark:
                    open_pnl = unrealised_pnl(inst, b.position, b.avg_price, mark)
                else:
                    open_pnl = b.position * (mark - b.avg_price)
                total += b.realized_pnl - b.fees + b.funding + open_pnl
        return total

    # ------------------------------------------------------------------ the venue

    async def _reconcile(self) -> None:
        try:
            positions = await self.gw.venue.positions()
        except (OSError, ValueError, KeyError, RuntimeError, VenueError) as exc:  # a venue call: the boundary
            log.warning("dashboard: the venue's positions could not be read: %s", exc)
            return
        self.recon_rows = reconciliation(positions, self.gw.engine.accounts.nets(),
                                         self.config.risk.reconcile_tolerance or 1e-9)  # fmt: skip
        self.recon_ms = time.time_ns() // 1_000_000
        now = time.time()
        for row in self.recon_rows:
            if row["external"] is not None:
                self.recon_history.setdefault(row["symbol"], Series(limit=300)).add(now, row["external"])

    # ------------------------------------------------------------------ sampling

    def observe(self) -> None:
        """What must be sampled even when nobody watches: message rates, tick delays, prices."""
        t = trio.current_time()
        dt = t - self._last_sample if self._last_sample else 0.0
        self._last_sample = t
        for topic_b, seq in self.gw.md_seqs.items():
            topic = topic_b.decode(errors="replace")
            f = self._feeds.setdefault(topic, _Feed(seq=seq, last_change=t))
            if seq != f.seq:
                if dt > 0:
                    f.rate = (seq - f.seq) / dt
                f.seq, f.last_change = seq, t
            elif dt > 0 and t - f.last_change > 2 * dt:
                f.rate = 0.0
        now = time.time()
        for sym, tk in self.gw.quotes.last.items():
            if tk.seq != self._ticks_seen.get(sym) and tk.gw_ns:
                self._ticks_seen[sym] = tk.seq
                self.tick_delay.add(tk.gw_ns / 1e6 - tk.ts)
            if now - self._price_t >= PRICE_EVERY:
                self.prices.setdefault(sym, Series(limit=900)).add(now, _mid(tk))
        if now - self._price_t >= PRICE_EVERY:
            self._price_t = now

    def publish(self) -> None:
        """Build the state (and the series, at most every ``SERIES_EVERY`` s) from the server's state
        now: synchronous, so one consistent view."""
        t = trio.current_time()
        now = time.time()
        # the gateway's and the guard's status, read once for every panel (each costs ~100 us)
        self.now = {"gateway": self.gw.status(), "guard": self.guard.status()}
        panels = ",".join(
            f"{json.dumps(name)}:{self._encode(name, functools.partial(panel, self))}"
            for name, panel in PANELS.items()
        )
        self.state_json = (
            f'{{"version":{self.version + 1},"now_ms":{int(now * 1000)},"panels":{{{panels}}}}}'.encode()
        )
        if t - self._series_t >= SERIES_EVERY:  # what the series gained since the last time
            self._series_t = t
            self.series_version += 1
            body = self._encode("series", self.series_delta)
            self.series_json = f'{{"version":{self.series_version},"from":{self.series_version - 1},"delta":{body}}}'.encode()
        self.version += 1
        self._changed.set()
        self._changed = trio.Event()

    def _encode(self, name: str, build: Callable[[], Any]) -> str:
        """One panel as JSON; a bug in it shows as an error in that panel, never stops the server."""
        try:
            return json.dumps(build(), separators=(",", ":"), allow_nan=False, default=_not_json)
        except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
            if name not in self._broken:  # once per panel: a broken panel would log at every sample
                self._broken.add(name)
                log.exception("dashboard: the panel %r could not be built", name)
            return json.dumps({"error": f"{type(exc).__name__}: {exc}"})

    def status(self) -> dict[str, Any]:
        """What ``seqtrade status`` answers, from the same objects."""
        return {**self.gw.status(), **self.guard.status()}

    def series_full(self) -> bytes:
        """Every series whole (a page that has none: ``/api/series``), at the current series version;
        the next delta may repeat its newest points (the page keeps a point once)."""
        body = self._encode("series", self.series)
        return f'{{"version":{self.series_version},"data":{body}}}'.encode()

    def series_delta(self) -> dict[str, Any] | None:
        """The points each series gained and the fills since the last call; None when some were not
        kept (nobody took them for a while): a page then takes the whole series again."""
        complete = True
        out: dict[str, dict[str, Any]] = {"equity": {}, "prices": {}, "reconciliation": {}}
        for name, group in (("equity", {sid: eq.series for sid, eq in self._equity.items()}),
                            ("prices", self.prices), ("reconciliation", self.recon_history)):  # fmt: skip
            for key, series in sorted(group.items()):
                new = series.take_new()
                if new is None:
                    complete = False
                elif new["t"]:
                    out[name][key] = new
        fills, lost = self._new_fills, self._new_fills_lost
        self._new_fills, self._new_fills_lost = [], False
        for f in fills:
            row = out["prices"].setdefault(f["symbol"], {"t": [], "v": [], "marks": []})
            row.setdefault("fills", []).append(_marker(f))
        return out if complete and not lost else None

    def series(self) -> dict[str, Any]:
        recent: dict[str, list[dict[str, Any]]] = {}
        for f in self.fills:
            recent.setdefault(f["symbol"], []).append(_marker(f))
        return {
            "equity": {sid: eq.series.to_json() for sid, eq in sorted(self._equity.items())},
            "prices": {
                sym: {**s.to_json(), "fills": recent.get(sym, [])} for sym, s in sorted(self.prices.items())
            },
            "reconciliation": {sym: s.to_json() for sym, s in sorted(self.recon_history.items())},
        }

    def mids(self) -> dict[str, float]:
        return {sym: _mid(tk) for sym, tk in self.gw.quotes.last.items()}


def _marker(f: dict[str, Any]) -> dict[str, Any]:
    """A fill as a price chart draws it (``key``: the page keeps each once)."""
    return {"t": f["ts"] / 1000, "price": f["price"], "side": f["side"], "strategy": f["strategy"],
            "key": f"{f['strategy']}:{f['seq']}"}  # fmt: skip


def _mid(tk: Ticker) -> float:
    if tk.bid_price > 0 and tk.ask_price > 0:
        return (tk.bid_price + tk.ask_price) / 2
    return tk.last_price


def _not_json(value: Any) -> Any:
    raise TypeError(f"not JSON: {type(value).__name__}")


def _clean(x: float | None) -> float | None:
    """JSON has no NaN or infinity: None instead."""
    return None if x is None or not math.isfinite(x) else x


# ---------------------------------------------------------------------------------------- panels


def _venue(c: Collector) -> dict[str, Any]:
    gw = c.gw
    st = c.now["guard"]
    reconnects = getattr(gw.venue, "reconnects", None)
    return {
        "name": gw.venue.name,
        "connected": gw.venue_connected,
        "reconnects": reconnects if isinstance(reconnects, int) else None,
        "symbols": list(c.config.venue.symbols),
        "counters": dict(vars(gw.counters)),
        "trading": st["trading"],
        "cancel_all_after": st["cancel_all_after"],
        "journal_commit_ms": gw.journal_commit_s * 1000,
        "journal_lag_ms": gw.journal_lag_s * 1000,
    }


def _strategies(c: Collector) -> list[dict[str, Any]]:
    status = c.now["gateway"]["strategies"]
    accounts = c.now["guard"]["accounts"]["strategies"]
    trading = c.now["guard"]["trading"]["strategies"]
    supervised = {e.id: e for e in c.supervisor.entries} if c.supervisor is not None else {}
    mids = c.mids()
    rows = []
    for sid in sorted(set(status) | set(accounts) | set(supervised)):
        st = status.get(sid, {})
        books = []
        realized = fees = unrealized = 0.0
        for sym, b in sorted(accounts.get(sid, {}).items()):
            mark = mids.get(sym)
            u = b.get("unrealised_pnl")  # at the mark price, per contract value (the server's)
            if u is None:
                u = b["position"] * (mark - b["avg_price"]) if mark is not None and b["position"] else 0.0
            books.append({"symbol": sym, "position": b["position"], "avg_price": b["avg_price"],
                          "realized_pnl": b["realized_pnl"], "fees": b["fees"], "fills": b["fills"],
                          "funding": b.get("funding", 0.0), "currency": b.get("currency", ""),
                          "mark": mark, "unrealized_pnl": u})  # fmt: skip
            realized += b["realized_pnl"] + b.get("funding", 0.0)
            fees += b["fees"]
            unrealized += u
        e = supervised.get(sid)
        err = c.last_error.get(sid)
        rows.append({
            "id": sid,
            "alive": st.get("alive", False),
            "left": st.get("left", False),
            "heartbeat_age": st.get("heartbeat_age"),
            "last_seq": st.get("last_seq", c._seqs.get(sid, 0)),
            "open_orders": st.get("open_orders", 0),
            "callback_errors": st.get("errors", {}),
            "trading": trading.get(sid, "(global)"),
            "supervised": None if e is None else {"state": e.state, "pid": e.pid, "restarts": e.restarts,
                                                  "last_error": e.last_error},
            "books": books,
            "realized_pnl": realized, "fees": fees, "unrealized_pnl": unrealized,
            "net_pnl": realized - fees + unrealized,
            "last_error": None if err is None else {"ts": err[0], "message": err[1]},
        })  # fmt: skip
    return rows


def _account(c: Collector) -> dict[str, Any]:
    return {"net": c.now["guard"]["accounts"]["account"], "reconciliation": c.recon_rows,
            "reconciled_ms": c.recon_ms or None}  # fmt: skip


def _feeds(c: Collector) -> list[dict[str, Any]]:
    t = trio.current_time()
    now_ms = time.time() * 1000
    last = c.gw.quotes.last
    rows = []
    for topic, f in sorted(c._feeds.items()):
        kind, _, key = topic.rstrip("/").partition("/")
        tk = last.get(key) if kind == "ticker" else None
        rows.append({"topic": topic, "kind": kind, "key": key, "rate": round(f.rate, 2), "seq": f.seq,
                     "last_update_age_s": round(t - f.last_change, 3),
                     "venue_age_s": None if tk is None else _clean(round((now_ms - tk.ts) / 1000, 3))})  # fmt: skip
    return rows


def _latency(c: Collector) -> dict[str, Any]:
    return {"order_ack": c.order_ack.to_json(), "tick_delay": c.tick_delay.to_json()}


def _rejections(c: Collector) -> dict[str, int]:
    return dict(sorted(c.rejections.items()))


def _open_orders(c: Collector) -> list[dict[str, Any]]:
    recs = sorted(c.gw.open_records(), key=lambda r: r.created_ms, reverse=True)[:OPEN_ORDERS_SHOWN]
    return [{"strategy": r.strategy_id, "client_order_id": r.client_order_id, "symbol": r.symbol, "side": r.side,
             "order_type": r.order_type, "price": r.price, "quantity": r.quantity, "filled": r.filled_quantity,
             "status": str(r.status) if r.status is not None else "sent", "created_ms": r.created_ms}
            for r in recs]  # fmt: skip


def _fills(c: Collector) -> list[dict[str, Any]]:
    return list(reversed(c.fills))[:50]


def _account_events(c: Collector) -> list[dict[str, Any]]:
    """The newest account events (funding, liquidations, ADL, deliveries, warnings), newest first."""
    return list(reversed(c.account_events))[:50]


def _venue_positions(c: Collector) -> list[dict[str, Any]]:
    """The venue's own positions (derivatives: margin, liquidation price, mark), as the guard read them."""
    rows = c.now["guard"].get("venue_details", [])
    return [{k: _clean(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def _feed_health(c: Collector) -> list[dict[str, Any]]:
    """Each market-data feed's health as the server judges it (seqtrade.feedhealth): rate, age,
    delay, gaps, resubscriptions, stale."""
    rows = []
    for f in c.gw.feed_health.snapshot(trio.current_time()):
        row = f.row()
        rows.append({k: _clean(v) if isinstance(v, float) else v for k, v in row.items()})
    return rows


# The live state's panels, in the page's order. A new panel: a name and a function of the collector.
PANELS: dict[str, Callable[[Collector], Any]] = {
    "venue": _venue,
    "strategies": _strategies,
    "account": _account,
    "feeds": _feeds,
    "feed_health": _feed_health,
    "venue_positions": _venue_positions,
    "account_events": _account_events,
    "latency": _latency,
    "rejections": _rejections,
    "open_orders": _open_orders,
    "fills": _fills,
}
