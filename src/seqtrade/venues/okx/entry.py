"""OKX order entry: place, cancel and amend, from the caller's request to the reported outcome.

Requests are checked, queued in the :class:`~.governor.Governor` (rate limits per instrument, §7) and,
when it releases them, each is sent in a task of its own over the private socket (WS trading ops,
§6) or REST (§2.1-§2.5). The rules kept here:

- an order is never sent twice: a place whose answer never came is settled by querying it
  (:meth:`OrderEntry._resolve_unknown_place`), a 50102 place/amend is a rejection, never re-sent;
- a cancel or amend of an order whose place is still queued or in flight waits for it, and the
  cancels and amends of one order go out one at a time, in the order asked (§2.5: OKX applies two
  amends of one order in the order it receives them);
- a released request holds its rate slot until its answer is in (:meth:`.Governor.done`).

Talks to the rest of the adapter through what it is given: the REST client (and its exchange
clock), the governor, the :class:`~.tracking.OrderTracker`, a :class:`PrivateLink` (the private
session to send WS ops on), ``emit`` (events to the sink) and ``query`` (one order by clOrdId).
:class:`CancelAllAfter` keeps the exchange's dead man's switch (§2.13).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from ...config import OkxConfig
from ...errors import VenueAuthError, VenueError
from ...models import OrderStatus
from ..base import EventKind, OrderEvent, VenueOrder
from . import messages as m
from .errors import ORDER_NOT_FOUND, QueryResult, is_clock, is_outcome_unknown, query_result
from .governor import Governor, Op
from .messages import OkxOrder, WriteAnswer, write_answer
from .parse import InstrumentSpec, amend_args, cancel_args, check_order, place_args
from .rest import OkxRestClient
from .tracking import OrderTracker
from .ws import Backoff, WsSession

__all__ = [
    "CancelAllAfter",
    "Emit",
    "ModifyOp",
    "MODIFY_OPS",
    "OrderEntry",
    "PrivateLink",
    "Query",
    "Request",
]

log = logging.getLogger(__name__)

EXP_GRACE_MS = 1_000  # an order still unknown this long after its expTime was never placed
CAA_MIN_INTERVAL = 1.05  # cancel-all-after: 1 request per second

Emit = Callable[[list[OrderEvent]], Awaitable[None]]
Query = Callable[[str, str], Awaitable[OkxOrder | None]]  # (clOrdId, symbol) -> the order, None: unknown


@dataclass(slots=True)
class PrivateLink:
    """The private socket as order entry sees it. Set by the adapter's socket handlers."""

    session: WsSession | None = None  # logged in and subscribed to orders; None while down
    generation: int = 0  # +1 each time the orders channel is (re)subscribed

    def ready(self) -> WsSession | None:
        s = self.session
        return s if s is not None and s.ready else None


@dataclass(frozen=True, slots=True)
class ModifyOp:
    """How one kind of request on an existing order is sent and what its failure is reported as."""

    ws_op: str  # the WS trading op (§6)
    path: str  # the REST endpoint
    failed: EventKind
    retry_on_clock: bool  # sent once more after a REST 50102 (refused before processing)
    exp_time: bool  # carries an expTime (dropped by OKX past it)


MODIFY_OPS: dict[Op, ModifyOp] = {
    # refused before processing, and a cancel is safe to repeat
    Op.CANCEL: ModifyOp("cancel-order", m.PATH_CANCEL, EventKind.CANCEL_FAILED, True, False),
    Op.AMEND: ModifyOp("amend-order", m.PATH_AMEND, EventKind.AMEND_FAILED, False, True),  # never re-sent
}


@dataclass(slots=True)
class Request:
    op: Op
    symbol: str
    venue_order_id: str
    order: VenueOrder | None = None
    price: float | None = None
    quantity: float | None = None
    holds_slot: bool = False  # released by the governor; its rate slot is ours until _slot_done


class OrderEntry:
    """Place, cancel and amend for one venue; ``dispatch`` is the governor's release callback."""

    def __init__(
        self,
        cfg: OkxConfig,
        specs: Mapping[str, InstrumentSpec],
        tracker: OrderTracker,
        governor: Governor[Request],
        rest: OkxRestClient,
        link: PrivateLink,
        emit: Emit,
        query: Query,
        nursery: trio.Nursery,
    ) -> None:
        self._cfg = cfg
        self._specs = specs
        self._tracker = tracker
        self._governor = governor
        self._rest = rest
        self._clock = rest.clock
        self._link = link
        self._emit = emit
        self._query = query
        self._nursery = nursery
        self._unresolved: dict[str, trio.Event] = {}  # place queued or in flight, outcome not known yet
        self._deferred: dict[str, list[Request]] = {}  # cancels/amends waiting for their place, in order
        self._order_chain: dict[str, trio.Event] = {}  # per order: done-event of its last cancel/amend
        self._req_ids = itertools.count(1)

    @property
    def unresolved(self) -> Container[str]:
        """Orders whose place is queued or in flight (the reconcile leaves them to their sender)."""
        return self._unresolved.keys()

    # ------------------------------------------------------------------ callers

    async def place(self, order: VenueOrder) -> None:
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
            Op.PLACE, order.symbol, Request(Op.PLACE, order.symbol, vid, order=order)
        )
        if refused is not None:
            self._resolved(vid)
            await self._emit(self._tracker.rejected(vid, refused, self._clock.now_ms()))

    async def cancel(self, venue_order_id: str, symbol: str) -> None:
        """Queue a cancel (cancels go before new orders); returns at once."""
        if symbol not in self._specs:
            await self._fail(venue_order_id, EventKind.CANCEL_FAILED, f"unknown symbol {symbol!r}")
            return
        queued = self._governor.remove(Op.PLACE, symbol, lambda r: r.venue_order_id == venue_order_id)
        if queued is not None:  # never left us: nothing to cancel at the exchange
            self._resolved(venue_order_id)
            await self._emit(self._tracker.cancelled_unsent(venue_order_id, self._clock.now_ms()))
            return
        await self._submit_after_place(Request(Op.CANCEL, symbol, venue_order_id))

    async def amend(
        self, venue_order_id: str, symbol: str, price: float | None, quantity: float | None
    ) -> None:
        """Queue an amend (new price and/or new total quantity); returns at once."""
        if symbol not in self._specs or (price is None and quantity is None):
            why = f"unknown symbol {symbol!r}" if symbol not in self._specs else "nothing to amend"
            await self._fail(venue_order_id, EventKind.AMEND_FAILED, why)
            return
        await self._submit_after_place(
            Request(Op.AMEND, symbol, venue_order_id, price=price, quantity=quantity)
        )

    async def _submit_after_place(self, req: Request) -> None:
        vid = req.venue_order_id
        pending = self._unresolved.get(vid)
        waiting = self._deferred.get(vid)
        if waiting is not None:  # earlier requests of this order still wait: keep the order
            waiting.append(req)
            return
        if pending is not None:
            # the place is queued or in flight: a cancel/amend sent now could overtake it
            self._deferred[vid] = [req]
            self._nursery.start_soon(self._submit_when_resolved, vid, pending)
            return
        await self._submit(req)

    async def _submit_when_resolved(self, vid: str, pending: trio.Event) -> None:
        await pending.wait()
        reqs = self._deferred.pop(vid, [])
        rejected = self._tracker.status(vid) is OrderStatus.REJECTED
        failures: list[tuple[Request, str]] = []
        for req in reqs:  # submitted in the order they were asked for, without a checkpoint between
            why = "the order was rejected" if rejected else self._governor.submit(req.op, req.symbol, req)
            if why is not None:
                failures.append((req, why))
        for req, why in failures:
            await self._fail(vid, MODIFY_OPS[req.op].failed, why)

    async def _submit(self, req: Request) -> None:
        refused = self._governor.submit(req.op, req.symbol, req)
        if refused is not None:
            await self._fail(req.venue_order_id, MODIFY_OPS[req.op].failed, refused)

    def dispatch(self, op: Op, req: Request) -> None:
        """Called by the governor for each released request: send it in a task of its own.

        Cancels and amends of one order are sent one at a time, in the order released (each after
        the previous one's answer): two tasks started together may run in either order, and OKX
        applies two amends of one order in the order it receives them.
        """
        req.holds_slot = self._governor.count_until_done
        if op is Op.PLACE:
            self._nursery.start_soon(self._send_place, req)
            return
        vid = req.venue_order_id
        previous = self._order_chain.get(vid)
        done = trio.Event()
        self._order_chain[vid] = done
        self._nursery.start_soon(self._send_in_turn, req, previous, done)

    async def _send_in_turn(self, req: Request, previous: trio.Event | None, done: trio.Event) -> None:
        try:
            if previous is not None:
                await previous.wait()
            await self._send_modify(req)
        finally:
            self._slot_done(req)
            done.set()
            if self._order_chain.get(req.venue_order_id) is done:
                del self._order_chain[req.venue_order_id]

    # ------------------------------------------------------------------ send tasks

    def _use_ws(self, spec: InstrumentSpec) -> WsSession | None:
        if self._cfg.order_transport == "ws" and spec.code is not None:
            return self._link.ready()
        return None

    async def _write(
        self,
        ws_op: str,
        path: str,
        build: Callable[[bool], dict[str, Any]],
        spec: InstrumentSpec,
        exp_time_ms: int | None,
        req: Request | None = None,
        *,
        retry_on_clock: bool = False,
    ) -> WriteAnswer:
        """One write over the private socket or REST. Raises VenueError when the outcome is unknown
        (no answer, lost connection, or an answer such as 50004 that does not say).

        ``req``'s rate slot is given back as soon as the answer (or the failure) is in.
        ``retry_on_clock`` (cancels only): sent once more after a REST ``50102``, see
        :meth:`OkxRestClient.request` (within the same held slot). A ``50102`` anywhere in the answer
        (REST auth, or an item dropped for its expTime on either transport: the expTime came from a
        clock that is off) re-syncs the clock.
        """
        clock_gen = self._clock.syncs  # the expTime (if any) was computed just before, with this clock
        session = self._use_ws(spec)
        try:
            if session is not None:
                answer = await session.op(ws_op, [build(True)], self._cfg.request_timeout, exp_time_ms)
            else:
                headers = {"expTime": str(exp_time_ms)} if exp_time_ms is not None else None
                answer = write_answer(
                    await self._rest.request(
                        "POST", path, body=build(False), headers=headers, retry_on_clock=retry_on_clock
                    )
                )
        finally:
            if req is not None:
                self._slot_done(req)
        items = answer.items
        if any(is_clock(c) for c in (answer.code, *(str(d.get("sCode", "")) for d in items))):
            self._rest.resync_soon(since=clock_gen)
        if is_outcome_unknown(answer.code) and not items:
            raise VenueError(f"OKX {ws_op}: {answer.code} {answer.msg} (outcome unknown)")
        for d in items:
            s_code = str(d.get("sCode", ""))
            if is_outcome_unknown(s_code):  # e.g. 50004 endpoint timeout: it may have been done
                raise VenueError(f"OKX {ws_op}: {s_code} {d.get('sMsg', '')} (outcome unknown)")
        return answer

    async def _send_place(self, req: Request) -> None:
        order = req.order
        assert order is not None
        vid = order.venue_order_id
        spec = self._specs[order.symbol]
        exp = self._clock.now_ms() + self._cfg.exp_time_ms
        gen = self._link.generation if self._link.ready() is not None else None
        try:
            await self._send_place_once(req, order, spec, exp)
        finally:
            self._slot_done(req)
        if gen is None or gen != self._link.generation:
            await self._recheck_after_gap(vid, order.symbol)

    async def _recheck_after_gap(self, vid: str, symbol: str) -> None:
        """Query a placed order once when the orders channel was down or resubscribed meanwhile.

        Its pushes may have been lost, and the reconnect's reconcile skipped it (not resolved yet).
        """
        if self._tracker.status(vid) not in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED):
            return
        try:
            raw = await self._query(vid, symbol)
        except VenueError as exc:
            log.warning("OKX query %s after a private socket gap failed: %s", vid, exc)
            return
        if raw is not None:
            await self._emit(self._tracker.on_order(raw))

    async def _send_place_once(self, req: Request, order: VenueOrder, spec: InstrumentSpec, exp: int) -> None:
        vid = order.venue_order_id
        try:
            answer = await self._write(
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
        err = answer.error()
        first = answer.first
        ts = int(first.get("ts") or 0) or self._clock.now_ms()
        if err is None:
            events = self._tracker.placed(vid, str(first.get("ordId", "")), ts)
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
                found = query_result(env.get("code"), data)
                if found is QueryResult.FOUND:
                    events = self._tracker.on_order(data[0])
                    if self._tracker.status(vid) is None:  # an unexpected state: take it as placed
                        events += self._tracker.placed(
                            vid, str(data[0].get("ordId", "")), self._clock.now_ms()
                        )
                    await self._emit(events)
                elif found is QueryResult.NOT_FOUND:
                    now = self._clock.now_ms()
                    deadline = exp_time_ms + EXP_GRACE_MS
                    if now >= deadline and not measured:
                        await self._rest.resync_clock(since=clock_gen)  # then query again
                        measured = True  # (a failed measurement is logged: judge by the clock we have)
                    elif now >= deadline:
                        reason = f"{ORDER_NOT_FOUND} not at OKX after its expTime passed: never placed"
                        await self._emit(self._tracker.rejected(vid, reason, now))
                    else:
                        await trio.sleep((deadline - now) / 1000)
                else:
                    log.warning("OKX query %s: %s %s; retrying", vid, env.get("code"), env.get("msg"))
                    await trio.sleep(backoff.next())
        finally:
            self._resolved(vid)

    def _modify_args(self, req: Request, spec: InstrumentSpec) -> Callable[[bool], dict[str, Any]]:
        vid = req.venue_order_id
        if req.op is Op.CANCEL:
            return lambda ws: cancel_args(vid, spec, ws=ws)
        req_id = f"a{next(self._req_ids)}"
        return lambda ws: amend_args(vid, spec, req.price, req.quantity, req_id, ws=ws)

    async def _send_modify(self, req: Request) -> None:
        """Send one cancel or amend (:data:`MODIFY_OPS`). Success = accepted only: the change itself
        arrives on the orders channel (or via the reconcile)."""
        op = MODIFY_OPS[req.op]
        spec = self._specs[req.symbol]
        vid = req.venue_order_id
        build = self._modify_args(req, spec)
        exp = self._clock.now_ms() + self._cfg.exp_time_ms if op.exp_time else None
        try:
            answer = await self._write(
                op.ws_op, op.path, build, spec, exp, req, retry_on_clock=op.retry_on_clock
            )
        except VenueError as exc:
            log.warning("OKX %s %s: %s; checking the order", req.op, vid, exc)
            await self._settle_unknown(req, op.failed, str(exc))
            return
        err = answer.error()
        if err is not None:
            await self._fail(vid, op.failed, err)

    async def _settle_unknown(self, req: Request, kind: EventKind, why: str) -> None:
        """A cancel/amend with no answer: report the order's state; if unchanged, that it failed."""
        try:
            raw = await self._query(req.venue_order_id, req.symbol)
        except VenueError as exc:
            log.warning("OKX query %s failed: %s", req.venue_order_id, exc)
            raw = None
        if raw is not None:
            events = self._tracker.on_order(raw)
            await self._emit(events)
            if events:
                return
        await self._fail(req.venue_order_id, kind, f"outcome unknown ({why}); order unchanged at OKX")

    # ------------------------------------------------------------------ helpers

    def _slot_done(self, req: Request) -> None:
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


class CancelAllAfter:
    """OKX's dead man's switch (§2.13): arm, refresh, disarm; calls spaced 1 s apart."""

    def __init__(self, rest: OkxRestClient) -> None:
        self._rest = rest
        self._lock = trio.Lock()
        self._last = float("-inf")

    async def __call__(self, timeout_s: float) -> None:
        """Arm (``timeout_s`` 10..120) or disarm (0). Logs failures.

        Calls are spaced at least 1 s apart (OKX allows 1 per second), a call sent again after a
        ``50102`` (clock re-synced, see :meth:`OkxRestClient.request`) included.
        """
        async with self._lock:
            await trio.sleep_until(self._last + CAA_MIN_INTERVAL)
            self._last = trio.current_time()
            try:
                await self._call(timeout_s)
            finally:  # the call may have been sent twice: space the next from the later one
                self._last = trio.current_time()

    async def _call(self, timeout_s: float) -> None:
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
