"""``OkxVenue``: the OKX v5 exchange behind the :class:`~seqtrade.venues.base.Venue` interface.

Composition (docs/okx.md section numbers in brackets):

- REST (:mod:`.rest`): clock sync against ``public/time`` [2.12], instruments [2.11], order queries
  [2.6-2.8], the dead man's switch [2.13], and order entry when ``order_transport = "rest"`` [2.1-2.5];
- the public socket (:mod:`.ws`): ``tickers``, ``books5``, ``trades`` [5.1-5.4] to ``sink.publish_market``;
- the private socket: login [4.3], the ``orders`` channel [5.6], and WS trading ops [6] when
  ``order_transport = "ws"`` (the default); after every (re)connect: login, subscribe, reconcile;
- :class:`.governor.Governor`: place/cancel/amend rate limits per instrument [7];
- :class:`.parse.OrderTracker`: turns pushes, REST snapshots and REST fills into each change once.

Tasks (all in the nursery of :meth:`OkxVenue.run`): the governor's release loop, one send task per
released request, the public and private reconnect loops, the clock sync loop and, when configured,
the cancel-all-after refresher. Clock re-syncs run in the REST client's nursery (same lifetime).

The exchange clock: measured at start and every CLOCK_SYNC_INTERVAL s, and at once whenever OKX
says a request was signed off its clock -- a REST ``50102`` on any request, a place/amend dropped
for its expTime (``50102`` on the WS too), a WS login refused for its timestamp (60004/60006). Requests
safe to repeat (queries, pending lists, cancels, cancel-all-after refreshes) are sent once more after
the re-sync; places and amends never are (reported as refused: nothing was done at OKX). A WS login
refused for its timestamp is followed by OKX closing the socket (4001): its re-sync outlives that
session and the next login waits for it. Reconnect delays are in :attr:`OkxVenue.socket_stats`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from ...config import OkxConfig, VenueConfig
from ...errors import VenueAuthError, VenueError
from ...models import OrderStatus
from ..base import EventKind, Instrument, OrderEvent, Venue, VenueOrder, VenueSink
from . import messages as m
from .account import PATH_BALANCE, balances_from_okx
from .auth import OkxCredentials, ws_login_args
from .governor import Governor, Op, RateWindow, take_slot
from .parse import (
    FillPager,
    InstrumentSpec,
    OrderTracker,
    amend_args,
    book_from_okx,
    cancel_args,
    check_order,
    instrument_from_okx,
    order_event_from_okx,
    place_args,
    ticker_from_okx,
    trade_from_okx,
    write_error,
)
from .rest import ExchangeClock, OkxRestClient, open_rest_client
from .ws import Backoff, SocketStats, WsSession, run_reconnecting

__all__ = ["OkxVenue"]

log = logging.getLogger(__name__)

CLOCK_SYNC_INTERVAL = 60.0  # seconds between public/time checks
EXP_GRACE_MS = 1_000  # an order still unknown this long after its expTime was never placed
CAA_MIN_INTERVAL = 1.05  # cancel-all-after: 1 request per second
# Reconcile reads at most this many pages of missed fills (100 each); beyond, it logs an ERROR and
# reports the orders' cumulative state from snapshots instead (totals right, fills not one by one).
MAX_FILL_PAGES = 30
# Read fills from this long before the private stream was last known good: 5 s, plus 30 s because
# our estimate of the exchange clock (which that moment is taken from) can be up to 30 s off without
# OKX refusing anything (50102), so without a re-sync until the periodic one.
FILL_GAP_MARGIN_MS = 35_000
FILLS_PER_2S, FILLS_HISTORY_PER_2S = 60, 10  # docs/okx.md §7, per account
# new WS connections: 3 per second per IP, both sockets together (docs/okx.md §4.5); 0.1 s margin
WS_CONNECTS, WS_CONNECTS_PERIOD = 3, 1.1
_CLOCK_LOGIN_CODES = {"60004", "60006"}  # WS login timestamp invalid / expired (§4.3): re-sync, retry


@dataclass(slots=True)
class _Request:
    op: Op
    symbol: str
    venue_order_id: str
    order: VenueOrder | None = None
    price: float | None = None
    quantity: float | None = None
    holds_slot: bool = False  # released by the governor; its rate slot is ours until _slot_done


def _raise_single(eg: BaseExceptionGroup[Any]) -> None:
    """Re-raise a lone VenueError out of a task group as itself (the server expects the plain error)."""
    match, rest = eg.split(VenueError)
    if match is not None and rest is None:
        leaf: BaseException = match
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None


class OkxVenue(Venue):
    """OKX v5 spot (or ``cfg.inst_type``) trading for ``symbols`` with the given credentials.

    ``http_transport`` replaces httpx's network transport (tests only).
    """

    name = "okx"
    default_cancel_all_after = 60.0  # the server keeps OKX's switch armed unless server.cancel_all_after says

    @classmethod
    def describe(cls, config: VenueConfig) -> list[str]:
        o = config.okx
        return [f"venue: okx ({'demo' if o.demo else 'LIVE'} trading)",
                f"okx: rest {o.rest_url}, orders over {o.order_transport}, keys from ${o.api_key_env}, "
                f"${o.secret_key_env}, ${o.passphrase_env}"]  # fmt: skip

    @classmethod
    def secret_env_vars(cls, config: VenueConfig) -> tuple[str, ...]:
        return (config.okx.api_key_env, config.okx.secret_key_env, config.okx.passphrase_env)

    async def balances(self) -> dict[str, float]:
        """Cash per currency, from ``GET /api/v5/account/balance`` (docs/okx.md §2.9)."""
        assert self._rest is not None, "run() first"
        return balances_from_okx(await self._rest.checked("GET", PATH_BALANCE))

    def __init__(
        self,
        cfg: OkxConfig,
        symbols: Sequence[str],
        credentials: OkxCredentials,
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
        max_queue: int = 60,
    ) -> None:
        self._cfg = cfg
        self._symbols = list(dict.fromkeys(symbols))
        self._creds = credentials
        self._http_transport = http_transport
        self._specs: dict[str, InstrumentSpec] = {}
        self._instruments: dict[str, Instrument] = {}
        self._tracker = OrderTracker()
        self._governor: Governor[_Request] = Governor(max_queue=max_queue, count_until_done=True)
        self._clock = ExchangeClock()
        self._rest: OkxRestClient | None = None
        self._sink: VenueSink | None = None
        self._nursery: trio.Nursery | None = None
        self._private: WsSession | None = None
        self._private_ready = trio.Event()
        self._md_connected = False
        self._unresolved: dict[str, trio.Event] = {}  # place queued or in flight, outcome not known yet
        self._deferred: dict[str, list[_Request]] = {}  # cancels/amends waiting for their place, in order
        self._order_chain: dict[str, trio.Event] = {}  # per order: done-event of its last cancel/amend
        self._private_gen = 0  # +1 each time the orders channel is (re)subscribed
        self._gap_since_ms: int | None = None  # exchange ms the private stream is not known good from
        self._held_pushes: list[dict[str, Any]] | None = None  # orders pushes kept back during a reconcile
        self.max_fill_pages = MAX_FILL_PAGES  # bound of one reconcile's fills reads (tests lower it)
        self._fills_windows = {
            m.PATH_FILLS: RateWindow(FILLS_PER_2S, self._governor.period),
            m.PATH_FILLS_HISTORY: RateWindow(FILLS_HISTORY_PER_2S, self._governor.period),
        }
        self._stopping = False
        self._shields: set[trio.CancelScope] = set()
        self._req_ids = itertools.count(1)
        self._caa_lock = trio.Lock()
        self._caa_last = float("-inf")
        self.socket_stats = {"public": SocketStats(), "private": SocketStats()}  # reconnects, for status
        self._ws_connects = RateWindow(WS_CONNECTS, WS_CONNECTS_PERIOD)
        self.rest_url = cfg.rest_url
        self.ws_public_url = cfg.ws_public_url or (m.DEMO_WS_PUBLIC if cfg.demo else m.LIVE_WS_PUBLIC)
        self.ws_private_url = cfg.ws_private_url or (m.DEMO_WS_PRIVATE if cfg.demo else m.LIVE_WS_PRIVATE)

    def __repr__(self) -> str:
        return f"OkxVenue(demo={self._cfg.demo}, symbols={self._symbols!r}, credentials={self._creds!r})"

    @property
    def instruments(self) -> dict[str, Instrument]:
        return self._instruments

    @property
    def clock_offset_ms(self) -> float:
        """The measured offset of OKX's clock to ours (ms), for status."""
        return self._clock.offset_ms

    @property
    def clock_syncs(self) -> int:
        """How many times the exchange clock was measured since start (at least once once running)."""
        return self._clock.syncs

    # ------------------------------------------------------------------ run

    async def run(self, sink: VenueSink, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, load instruments, stream and trade until cancelled.

        Owns the REST connection pool, both sockets and every task listed in the module docstring.
        Reports started once the private socket is logged in, subscribed and reconciled. Cancelling
        it closes everything; requests still queued in the governor are dropped unsent. Raises
        :class:`VenueError` for an unknown symbol and :class:`VenueAuthError` for refused keys.
        """
        self._sink = sink
        try:
            async with open_rest_client(
                self.rest_url,
                self._creds,
                self._clock,
                demo=self._cfg.demo,
                timeout=self._cfg.request_timeout,
                transport=self._http_transport,
            ) as rest:
                self._rest = rest
                await rest.sync_clock()
                await self._load_instruments()
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._unshield_on_stop)
                    await nursery.start(self._governor.run, self._dispatch)
                    nursery.start_soon(self._clock_task)
                    nursery.start_soon(self._public_task)
                    nursery.start_soon(self._private_task)
                    await self._private_ready.wait()
                    if self._cfg.cancel_all_after > 0:
                        await self.cancel_all_after(self._cfg.cancel_all_after)
                        nursery.start_soon(self._cancel_all_after_task)
                    log.info(
                        "OKX venue ready (%s, %s)",
                        "demo" if self._cfg.demo else "LIVE",
                        ", ".join(self._symbols),
                    )
                    task_status.started()
        except BaseExceptionGroup as eg:
            _raise_single(eg)
            raise
        finally:
            self._nursery = None
            self._private = None

    async def _load_instruments(self) -> None:
        assert self._rest is not None
        for symbol in self._symbols:
            env = await self._rest.request(
                "GET",
                m.PATH_INSTRUMENTS,
                params={"instType": self._cfg.inst_type, "instId": symbol},
                private=False,
            )
            data = env.get("data") or []
            if env.get("code") != "0" or not data:
                raise VenueError(
                    f"OKX has no {self._cfg.inst_type} instrument {symbol!r} "
                    f"({env.get('code')} {env.get('msg', '')})".rstrip()
                )
            spec = instrument_from_okx(data[0])
            if spec.code is None and self._cfg.order_transport == "ws":
                log.warning("OKX %s has no instIdCode yet: its orders go over REST", symbol)
            self._specs[symbol] = spec
            self._instruments[symbol] = spec.to_instrument()

    # ------------------------------------------------------------------ order entry (callers)

    async def place_order(self, order: VenueOrder) -> None:
        """Queue ``order`` for sending; returns at once. Outcome: ACCEPTED/REJECTED/... events."""
        vid = order.venue_order_id
        reason = check_order(order, self._specs.get(order.symbol))
        if reason is None and vid in self._tracker:
            reason = f"venue_order_id {vid} was already used: an order is never sent twice"
        if reason is not None:
            await self._emit(
                [OrderEvent(vid, OrderStatus.REJECTED, error_msg=reason, ts=self._clock.now_ms())]
            )
            return
        self._tracker.track(order, self._clock.now_ms())
        self._unresolved[vid] = trio.Event()
        refused = self._governor.submit(
            Op.PLACE, order.symbol, _Request(Op.PLACE, order.symbol, vid, order=order)
        )
        if refused is not None:
            self._resolved(vid)
            await self._emit(self._tracker.rejected(vid, refused, self._clock.now_ms()))

    async def cancel_order(self, venue_order_id: str, symbol: str) -> None:
        """Queue a cancel (cancels go before new orders); returns at once."""
        if symbol not in self._specs:
            await self._fail(venue_order_id, EventKind.CANCEL_FAILED, f"unknown symbol {symbol!r}")
            return
        queued = self._governor.remove(Op.PLACE, symbol, lambda r: r.venue_order_id == venue_order_id)
        if queued is not None:  # never left us: nothing to cancel at the exchange
            self._resolved(venue_order_id)
            await self._emit(self._tracker.cancelled_unsent(venue_order_id, self._clock.now_ms()))
            return
        await self._submit_after_place(_Request(Op.CANCEL, symbol, venue_order_id))

    async def amend_order(
        self, venue_order_id: str, symbol: str, price: float | None, quantity: float | None
    ) -> None:
        """Queue an amend (new price and/or new total quantity); returns at once."""
        if symbol not in self._specs or (price is None and quantity is None):
            why = f"unknown symbol {symbol!r}" if symbol not in self._specs else "nothing to amend"
            await self._fail(venue_order_id, EventKind.AMEND_FAILED, why)
            return
        await self._submit_after_place(
            _Request(Op.AMEND, symbol, venue_order_id, price=price, quantity=quantity)
        )

    async def _submit_after_place(self, req: _Request) -> None:
        vid = req.venue_order_id
        pending = self._unresolved.get(vid)
        waiting = self._deferred.get(vid)
        if waiting is not None:  # earlier requests of this order still wait: keep the order
            waiting.append(req)
            return
        if pending is not None:
            # the place is queued or in flight: a cancel/amend sent now could overtake it
            assert self._nursery is not None
            self._deferred[vid] = [req]
            self._nursery.start_soon(self._submit_when_resolved, vid, pending)
            return
        await self._submit(req)

    async def _submit_when_resolved(self, vid: str, pending: trio.Event) -> None:
        await pending.wait()
        reqs = self._deferred.pop(vid, [])
        rejected = self._tracker.status(vid) is OrderStatus.REJECTED
        failures: list[tuple[_Request, str]] = []
        for req in reqs:  # submitted in the order they were asked for, without a checkpoint between
            why = "the order was rejected" if rejected else self._governor.submit(req.op, req.symbol, req)
            if why is not None:
                failures.append((req, why))
        for req, why in failures:
            await self._fail(vid, self._failed_kind(req), why)

    @staticmethod
    def _failed_kind(req: _Request) -> EventKind:
        return EventKind.CANCEL_FAILED if req.op is Op.CANCEL else EventKind.AMEND_FAILED

    async def _submit(self, req: _Request) -> None:
        refused = self._governor.submit(req.op, req.symbol, req)
        if refused is not None:
            await self._fail(req.venue_order_id, self._failed_kind(req), refused)

    def _dispatch(self, op: Op, req: _Request) -> None:
        """Called by the governor for each released request: send it in a task of its own.

        Cancels and amends of one order are sent one at a time, in the order released (each after
        the previous one's answer): two tasks started together may run in either order, and OKX
        applies two amends of one order in the order it receives them.
        """
        assert self._nursery is not None
        req.holds_slot = self._governor.count_until_done
        if op is Op.PLACE:
            self._nursery.start_soon(self._send_place, req)
            return
        vid = req.venue_order_id
        previous = self._order_chain.get(vid)
        done = trio.Event()
        self._order_chain[vid] = done
        self._nursery.start_soon(self._send_in_turn, req, previous, done)

    async def _send_in_turn(self, req: _Request, previous: trio.Event | None, done: trio.Event) -> None:
        try:
            if previous is not None:
                await previous.wait()
            await (self._send_cancel if req.op is Op.CANCEL else self._send_amend)(req)
        finally:
            self._slot_done(req)
            done.set()
            if self._order_chain.get(req.venue_order_id) is done:
                del self._order_chain[req.venue_order_id]

    # ------------------------------------------------------------------ order entry (send tasks)

    def _use_ws(self, spec: InstrumentSpec) -> WsSession | None:
        session = self._private
        if (
            self._cfg.order_transport == "ws"
            and spec.code is not None
            and session is not None
            and session.ready
        ):
            return session
        return None

    async def _write(
        self,
        ws_op: str,
        path: str,
        build: Callable[[bool], dict[str, Any]],
        spec: InstrumentSpec,
        exp_time_ms: int | None,
        req: _Request | None = None,
        *,
        retry_on_clock: bool = False,
    ) -> dict[str, Any]:
        """One write over the private socket or REST. Raises VenueError when the outcome is unknown
        (no answer, lost connection, or an answer such as 50004 that does not say).

        ``req``'s rate slot is given back as soon as the answer (or the failure) is in.
        ``retry_on_clock`` (cancels only): sent once more after a REST ``50102``, see
        :meth:`OkxRestClient.request` (within the same held slot). A ``50102`` anywhere in the answer
        (REST auth, or an item dropped for its expTime on either transport: the expTime came from a
        clock that is off) re-syncs the clock.
        """
        assert self._rest is not None
        clock_gen = self._clock.syncs  # the expTime (if any) was computed just before, with this clock
        session = self._use_ws(spec)
        try:
            if session is not None:
                env = await session.op(ws_op, [build(True)], self._cfg.request_timeout, exp_time_ms)
            else:
                headers = {"expTime": str(exp_time_ms)} if exp_time_ms is not None else None
                env = dict(
                    await self._rest.request(
                        "POST", path, body=build(False), headers=headers, retry_on_clock=retry_on_clock
                    )
                )
        finally:
            if req is not None:
                self._slot_done(req)
        code = str(env.get("code", ""))
        items = [d for d in env.get("data") or () if isinstance(d, dict) and "sCode" in d]
        if m.CODE_TIMESTAMP_EXPIRED in (code, *(str(d.get("sCode", "")) for d in items)):
            self._rest.resync_soon(since=clock_gen)
        if code in m.OUTCOME_UNKNOWN_CODES and not items:
            raise VenueError(f"OKX {ws_op}: {code} {env.get('msg', '')} (outcome unknown)")
        for d in items:
            s_code = str(d.get("sCode", ""))
            if s_code in m.OUTCOME_UNKNOWN_CODES:  # e.g. 50004 endpoint timeout: it may have been done
                raise VenueError(f"OKX {ws_op}: {s_code} {d.get('sMsg', '')} (outcome unknown)")
        return env

    async def _send_place(self, req: _Request) -> None:
        order = req.order
        assert order is not None
        vid = order.venue_order_id
        spec = self._specs[order.symbol]
        exp = self._clock.now_ms() + self._cfg.exp_time_ms
        session = self._private
        gen = self._private_gen if session is not None and session.ready else None
        try:
            await self._send_place_once(req, order, spec, exp)
        finally:
            self._slot_done(req)
        if gen is None or gen != self._private_gen:
            await self._recheck_after_gap(vid, order.symbol)

    async def _recheck_after_gap(self, vid: str, symbol: str) -> None:
        """Query a placed order once when the orders channel was down or resubscribed meanwhile.

        Its pushes may have been lost, and the reconnect's reconcile skipped it (not resolved yet).
        """
        if self._tracker.status(vid) not in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED):
            return
        try:
            raw = await self._query_raw(vid, symbol)
        except VenueError as exc:
            log.warning("OKX query %s after a private socket gap failed: %s", vid, exc)
            return
        if raw is not None:
            await self._emit(self._tracker.on_order(raw))

    async def _send_place_once(
        self, req: _Request, order: VenueOrder, spec: InstrumentSpec, exp: int
    ) -> None:
        vid = order.venue_order_id
        try:
            env = await self._write(
                "order",
                m.PATH_PLACE,
                lambda ws: place_args(order, spec, self._cfg.td_mode, ws=ws),
                spec,
                exp,
                req,
            )
        except VenueError as exc:
            log.warning("OKX place %s: %s; resolving by query", vid, exc)
            await self._resolve_unknown_place(vid, order.symbol, exp)
            return
        err = write_error(env)
        data = env.get("data") or [{}]
        ts = int(data[0].get("ts") or 0) or self._clock.now_ms()
        if err is None:
            events = self._tracker.placed(vid, str(data[0].get("ordId", "")), ts)
        else:  # a 50102 (clock off) too: refused before processing, so surely not placed; never re-sent
            events = self._tracker.rejected(vid, err, ts)
        self._resolved(vid)
        await self._emit(events)

    async def _resolve_unknown_place(self, vid: str, symbol: str, exp_time_ms: int) -> None:
        """Settle a place whose answer never came: query by clOrdId until found or surely never placed.

        Never re-sends. A 51603 once the exchange clock is past expTime (plus a grace) means the
        exchange dropped it: REJECTED. That is judged by a measurement of the exchange clock taken
        after its answer was given up on (one is taken, and the order queried again, before
        concluding): our estimate may be ahead of the exchange by up to 30 s without OKX refusing
        anything, and OKX still places the order until *its* clock passes expTime. Query failures
        are retried with backoff.
        """
        assert self._rest is not None
        backoff = Backoff(0.1, 2.0)
        clock_gen = self._clock.syncs
        measured = False
        try:
            while self._tracker.status(vid) is None:
                try:
                    await self._governor.acquire(Op.QUERY, symbol)
                    env = await self._rest.request(
                        "GET", m.PATH_ORDER, params={"instId": symbol, "clOrdId": vid}
                    )
                except VenueError as exc:
                    log.warning("OKX query %s failed (%s); retrying", vid, exc)
                    await trio.sleep(backoff.next())
                    continue
                data = env.get("data") or []
                if env.get("code") == "0" and data:
                    events = self._tracker.on_order(data[0])
                    if self._tracker.status(vid) is None:  # an unexpected state: take it as placed
                        events += self._tracker.placed(
                            vid, str(data[0].get("ordId", "")), self._clock.now_ms()
                        )
                    await self._emit(events)
                elif env.get("code") in (m.CODE_ORDER_NOT_FOUND, "0"):
                    now = self._clock.now_ms()
                    deadline = exp_time_ms + EXP_GRACE_MS
                    if now >= deadline and not measured:
                        await self._rest.resync_clock(since=clock_gen)  # then query again
                        measured = True  # (a failed measurement is logged: judge by the clock we have)
                    elif now >= deadline:
                        reason = f"{m.CODE_ORDER_NOT_FOUND} not at OKX after its expTime passed: never placed"
                        await self._emit(self._tracker.rejected(vid, reason, now))
                    else:
                        await trio.sleep((deadline - now) / 1000)
                else:
                    log.warning("OKX query %s: %s %s; retrying", vid, env.get("code"), env.get("msg"))
                    await trio.sleep(backoff.next())
        finally:
            self._resolved(vid)

    async def _send_cancel(self, req: _Request) -> None:
        spec = self._specs[req.symbol]
        vid = req.venue_order_id
        try:
            env = await self._write(
                "cancel-order",
                m.PATH_CANCEL,
                lambda ws: cancel_args(vid, spec, ws=ws),
                spec,
                None,
                req,
                retry_on_clock=True,  # refused before processing, and a cancel is safe to repeat
            )
        except VenueError as exc:
            log.warning("OKX cancel %s: %s; checking the order", vid, exc)
            await self._settle_unknown(req, EventKind.CANCEL_FAILED, str(exc))
            return
        err = write_error(env)
        if err is not None:
            await self._fail(vid, EventKind.CANCEL_FAILED, err)
        # success = accepted only; the cancel itself arrives on the orders channel (or via reconcile)

    async def _send_amend(self, req: _Request) -> None:
        spec = self._specs[req.symbol]
        vid = req.venue_order_id
        req_id = f"a{next(self._req_ids)}"
        exp = self._clock.now_ms() + self._cfg.exp_time_ms
        try:
            env = await self._write(
                "amend-order",
                m.PATH_AMEND,
                lambda ws: amend_args(vid, spec, req.price, req.quantity, req_id, ws=ws),
                spec,
                exp,
                req,
            )
        except VenueError as exc:
            log.warning("OKX amend %s: %s; checking the order", vid, exc)
            await self._settle_unknown(req, EventKind.AMEND_FAILED, str(exc))
            return
        err = write_error(env)
        if err is not None:
            await self._fail(vid, EventKind.AMEND_FAILED, err)

    async def _settle_unknown(self, req: _Request, kind: EventKind, why: str) -> None:
        """A cancel/amend with no answer: report the order's state; if unchanged, that it failed."""
        try:
            raw = await self._query_raw(req.venue_order_id, req.symbol)
        except VenueError as exc:
            log.warning("OKX query %s failed: %s", req.venue_order_id, exc)
            raw = None
        if raw is not None:
            events = self._tracker.on_order(raw)
            await self._emit(events)
            if events:
                return
        await self._fail(req.venue_order_id, kind, f"outcome unknown ({why}); order unchanged at OKX")

    # ------------------------------------------------------------------ queries

    async def query_order(self, venue_order_id: str, symbol: str) -> OrderEvent | None:
        """GET trade/order by clOrdId; None when OKX does not know it (51603)."""
        raw = await self._query_raw(venue_order_id, symbol)
        return order_event_from_okx(raw) if raw is not None else None

    async def _query_raw(self, venue_order_id: str, symbol: str) -> dict[str, Any] | None:
        """The OKX order fields, None for 51603; VenueError for anything else."""
        assert self._rest is not None, "run() first"
        await self._governor.acquire(Op.QUERY, symbol)
        env = await self._rest.request(
            "GET", m.PATH_ORDER, params={"instId": symbol, "clOrdId": venue_order_id}
        )
        data = env.get("data") or []
        if env.get("code") == m.CODE_ORDER_NOT_FOUND or (env.get("code") == "0" and not data):
            return None
        if env.get("code") != "0":
            raise VenueError(f"OKX order query {venue_order_id}: {env.get('code')} {env.get('msg', '')}")
        return dict(data[0])

    async def open_orders(self) -> list[OrderEvent]:
        """Every live/partially filled order of the account for ``cfg.inst_type`` (paged)."""
        return [e for d in await self._pending_raw() if (e := order_event_from_okx(d)) is not None]

    async def _pending_raw(self) -> list[dict[str, Any]]:
        assert self._rest is not None, "run() first"
        out: list[dict[str, Any]] = []
        params = {"instType": self._cfg.inst_type, "limit": "100"}
        while True:
            page = await self._rest.checked("GET", m.PATH_PENDING, params=params)
            out.extend(page)
            if len(page) < 100:
                return out
            params = params | {"after": str(page[-1].get("ordId", ""))}

    async def cancel_all_after(self, timeout_s: float) -> None:
        """Arm (``timeout_s`` 10..120) or disarm (0) OKX's cancel-all-after [2.13]. Logs failures.

        Calls are spaced at least 1 s apart (OKX allows 1 per second), a call sent again after a
        ``50102`` (clock re-synced, see :meth:`OkxRestClient.request`) included.
        """
        assert self._rest is not None, "run() first"
        async with self._caa_lock:
            await trio.sleep_until(self._caa_last + CAA_MIN_INTERVAL)
            self._caa_last = trio.current_time()
            try:
                await self._cancel_all_after_call(timeout_s)
            finally:  # the call may have been sent twice: space the next from the later one
                self._caa_last = trio.current_time()

    async def _cancel_all_after_call(self, timeout_s: float) -> None:
        assert self._rest is not None
        try:
            data = await self._rest.checked(
                "POST",
                m.PATH_CANCEL_ALL_AFTER,
                body={"timeOut": str(int(timeout_s))},
                retry_on_clock=True,  # arming again is harmless; a missed refresh cancels every order
                retry_spacing=CAA_MIN_INTERVAL,
            )
            log.debug("OKX cancel-all-after %s s armed: %s", int(timeout_s), data)
        except VenueAuthError:
            raise
        except VenueError as exc:
            log.warning("OKX cancel-all-after(%s) failed: %s", timeout_s, exc)

    # ------------------------------------------------------------------ background tasks

    async def _clock_task(self) -> None:
        """Re-measure the exchange clock offset every CLOCK_SYNC_INTERVAL s. Cancelled with run().

        Between these, any request OKX refuses for its timestamp re-syncs at once (module docstring).
        """
        assert self._rest is not None
        while True:
            await trio.sleep(CLOCK_SYNC_INTERVAL)
            await self._rest.resync_clock()  # shared with a re-sync in flight; failures are logged

    async def _cancel_all_after_task(self) -> None:
        """Keep the dead man's switch armed: refresh every timeout/3 s. Cancelled with run()."""
        period = self._cfg.cancel_all_after / 3
        while True:
            await trio.sleep(period)
            await self.cancel_all_after(self._cfg.cancel_all_after)

    async def _public_task(self) -> None:
        """The public socket for ever: subscribe, publish market data, reconnect. Never blocks on the sink."""
        await run_reconnecting(
            self.ws_public_url,
            name="public",
            on_open=self._public_open,
            on_message=self._public_message,
            on_down=self._public_down,
            backoff=Backoff(self._cfg.reconnect_min, self._cfg.reconnect_max),
            ping_interval=self._cfg.ping_interval,
            connect_timeout=max(self._cfg.request_timeout, 1.0),
            stats=self.socket_stats["public"],
            connects=self._ws_connects,
        )

    async def _private_task(self) -> None:
        """The private socket for ever: login, orders channel, reconcile, WS trading ops, reconnect.

        Waits on ``sink.order_event`` (backpressure: the socket is not read meanwhile).
        """
        await run_reconnecting(
            self.ws_private_url,
            name="private",
            on_open=self._private_open,
            on_message=self._private_message,
            on_down=self._private_down,
            backoff=Backoff(self._cfg.reconnect_min, self._cfg.reconnect_max),
            ping_interval=self._cfg.ping_interval,
            connect_timeout=max(self._cfg.request_timeout, 1.0),
            stats=self.socket_stats["private"],
            connects=self._ws_connects,
        )

    # ------------------------------------------------------------------ public socket

    async def _public_open(self, session: WsSession) -> None:
        args = [{"channel": ch, "instId": s} for s in self._symbols for ch in m.PUBLIC_CHANNELS]
        await session.send({"op": "subscribe", "args": args})
        session.ready = True

    def _public_down(self, reason: str) -> None:
        if self._md_connected and self._sink is not None:
            self._sink.set_connected(False)
        self._md_connected = False

    async def _public_message(self, session: WsSession, msg: dict[str, Any]) -> None:
        if "event" in msg:
            self._on_event(session, msg)
            if msg["event"] == "subscribe" and not self._md_connected and self._sink is not None:
                self._md_connected = True
                self._sink.set_connected(True)
            return
        arg = msg.get("arg") or {}
        channel = arg.get("channel")
        sink = self._sink
        assert sink is not None
        for d in msg.get("data") or ():
            if channel == "tickers":
                sink.publish_market(ticker_from_okx(d))
            elif channel == "books5":
                sink.publish_market(book_from_okx(d, str(arg.get("instId", ""))))
            elif channel == "trades":
                sink.publish_market(trade_from_okx(d))

    def _on_event(self, session: WsSession, msg: dict[str, Any]) -> None:
        event = msg.get("event")
        if event == "error":
            log.error("OKX %s socket error %s: %s", session.name, msg.get("code"), msg.get("msg"))
        elif event == "notice":
            log.warning("OKX %s socket notice %s: %s", session.name, msg.get("code"), msg.get("msg"))
            if msg.get("code") == m.NOTICE_SERVICE_UPGRADE:
                session.end(f"notice {m.NOTICE_SERVICE_UPGRADE}: service upgrade")
        elif event == "channel-conn-count":
            log.info("OKX %s connections on channel %s", msg.get("connCount"), msg.get("channel"))
        elif event == "channel-conn-count-error":
            log.error(
                "OKX %s socket: channel %s refused, over its connection limit (%s); reconnecting",
                session.name,
                msg.get("channel"),
                msg.get("connCount"),
            )
            if session.name == "private":  # no orders channel: the session is useless, retry later
                session.end(f"channel-conn-count-error on {msg.get('channel')}")
        else:
            log.debug("OKX %s socket event %s", session.name, event)

    # ------------------------------------------------------------------ private socket

    async def _private_open(self, session: WsSession) -> None:
        """Log in, subscribe to ``orders``, reconcile; then the session is ready.

        A login refused for its timestamp (60004/60006) starts a clock re-sync that outlives this
        session (OKX closes it with 4001 right after the refusal); the next login waits for the
        re-sync in flight before signing, so it signs with the corrected clock.
        """
        assert self._rest is not None
        timeout = self._cfg.request_timeout
        await self._rest.clock_settled()
        clock_gen = self._clock.syncs
        answer = await session.call(
            {"op": "login", "args": [ws_login_args(self._creds, self._clock.now_ms() // 1000)]},
            lambda msg: msg.get("event") in ("login", "error"),
            timeout,
        )
        if answer.get("event") != "login" or str(answer.get("code", "0")) != "0":
            code = str(answer.get("code"))
            why = f"OKX login refused: {code} {answer.get('msg', '')}"
            if code in _CLOCK_LOGIN_CODES:
                self._rest.resync_soon(since=clock_gen)  # in the REST client's nursery, not this session's
                raise VenueError(f"{why}; re-syncing the clock")
            raise VenueAuthError(why)
        answer = await session.call(
            {"op": "subscribe", "args": [{"channel": "orders", "instType": self._cfg.inst_type}]},
            lambda msg: msg.get("event") in ("subscribe", "error"),
            timeout,
        )
        if answer.get("event") != "subscribe":
            raise VenueError(f"OKX orders subscribe refused: {answer.get('code')} {answer.get('msg', '')}")
        self._private = session
        self._private_gen += 1
        session.ready = True
        await self._reconcile()
        if session.alive:
            self._private_ready.set()

    def _private_down(self, reason: str) -> None:
        if self._private is not None and self._gap_since_ms is None:
            # a dead connection is noticed within two ping intervals of silence (ws.read_loop)
            silent_ms = int(2 * self._cfg.ping_interval * 1000) + FILL_GAP_MARGIN_MS
            self._gap_since_ms = self._clock.now_ms() - silent_ms
        self._private = None

    async def _private_message(self, session: WsSession, msg: dict[str, Any]) -> None:
        if "event" in msg:
            self._on_event(session, msg)
            return
        if (msg.get("arg") or {}).get("channel") == "orders":
            if self._held_pushes is not None:  # after the reconcile's missed fills (see _reconcile)
                self._held_pushes.extend(msg.get("data") or ())
                return
            for d in msg.get("data") or ():
                await self._emit(self._tracker.on_order(d))

    async def _reconcile(self) -> None:
        """Emit every order change missed while the private socket was down (each once).

        The orders channel sends no snapshot, so: open orders (orders-pending), each order we think
        is open but OKX does not list (GET trade/order by clOrdId) and the fills of the gap
        (:meth:`_missed_fills`); fills go first so that each missed fill is reported with its own
        quantity and price, then the snapshots bring every order to its current state.

        Orders pushes that arrive meanwhile are kept back and applied after the missed fills: a push
        carries the cumulative fill, and applied first it would fold the missed fills into one jump.
        """
        assert self._rest is not None
        gap_since = self._gap_since_ms
        events: list[OrderEvent] = []
        held: list[dict[str, Any]] = []
        self._held_pushes = held
        try:
            pending = await self._pending_raw()
            listed = {str(d.get("clOrdId", "")) for d in pending}
            snapshots: list[dict[str, Any]] = list(pending)
            for vid in self._tracker.open_ids():
                if vid in listed or vid in self._unresolved:
                    continue
                raw = await self._query_raw(vid, self._tracker.symbol(vid) or "")
                if raw is not None:
                    snapshots.append(raw)
                else:
                    log.warning("OKX reconcile: order %s we took for open is unknown to OKX", vid)
            fills = await self._missed_fills(gap_since) if self._tracker.open_ids() else []
            for f in fills:
                events += self._tracker.on_fill(f)
            for d in snapshots:
                events += self._tracker.on_order(d)
            if events:
                log.info("OKX reconcile: %d missed order changes", len(events))
        finally:  # the pushes kept back are reported whatever happened (shielded, see _emit)
            self._held_pushes = None
            for d in held:
                events += self._tracker.on_order(d)
            await self._emit(events)
        if self._gap_since_ms == gap_since:
            self._gap_since_ms = None  # covered

    async def _missed_fills(self, gap_since: int | None) -> list[dict[str, Any]]:
        """The fills since the private stream was last known good, oldest first, every page of them.

        Covers back to ``gap_since`` (None: the first connect), but no further than the oldest open
        order we track was created. Paged with ``after`` = billId, from trade/fills and, for a gap
        older than its 3 days, trade/fills-history, each under its rate limit. Past ``max_fill_pages``
        pages: an ERROR and no fills (the snapshots that follow still report the right totals).
        """
        assert self._rest is not None
        oldest = self._tracker.oldest_open_ms()
        since = 0 if gap_since is None else gap_since
        if oldest is not None:
            since = max(since, oldest - FILL_GAP_MARGIN_MS)
        pager = FillPager(self._cfg.inst_type, since, self._clock.now_ms(), self.max_fill_pages)
        while (req := pager.request()) is not None:
            path, params = req
            await take_slot(self._fills_windows[path])
            pager.feed(await self._rest.checked("GET", path, params=params))
        if pager.exceeded:
            log.error(
                "OKX reconcile: more than %d pages of fills since %d; reporting the orders' state "
                "from snapshots (totals right, missed fills not one by one)",
                self.max_fill_pages,
                since,
            )
            return []
        return pager.fills()

    # ------------------------------------------------------------------ helpers

    def _slot_done(self, req: _Request) -> None:
        """Give ``req``'s rate slot back to the governor, once (it then counts for one more period)."""
        if req.holds_slot:
            req.holds_slot = False
            self._governor.done(req.op, req.symbol)

    def _resolved(self, venue_order_id: str) -> None:
        pending = self._unresolved.pop(venue_order_id, None)
        if pending is not None:
            pending.set()

    async def _fail(self, venue_order_id: str, kind: EventKind, reason: str) -> None:
        await self._emit(self._tracker.request_failed(venue_order_id, kind, reason, self._clock.now_ms()))

    async def _emit(self, events: list[OrderEvent]) -> None:
        """Hand ``events`` to the sink; the tracker already counts them as reported.

        Shielded: the end of a socket session (which cancels its tasks) must not drop an event the
        sink is still taking (backpressure). Only stopping the whole venue cancels a delivery.
        """
        sink = self._sink
        assert sink is not None
        if not events:
            return
        with trio.CancelScope(shield=not self._stopping) as cs:
            self._shields.add(cs)
            try:
                for event in events:
                    await sink.order_event(event)
            finally:
                self._shields.discard(cs)

    async def _unshield_on_stop(self) -> None:
        """Runs as long as the venue: when run() is cancelled, let pending deliveries be cancelled too."""
        try:
            await trio.sleep_forever()
        finally:
            self._stopping = True
            for cs in list(self._shields):
                cs.shield = False
