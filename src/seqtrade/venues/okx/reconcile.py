"""OKX reconciliation: every order change missed while the private socket was down, reported once.

The orders channel sends no snapshot (§5.6), so after every (re)connect :meth:`Reconciler.run` reads
the open orders (§2.7), queries each order we think open but OKX does not list (§2.6) and pages the
fills of the gap (§2.8, :class:`~.tracking.FillPager`); the :class:`~.tracking.OrderTracker` turns all
of it into events, each change once. :class:`OrderReads` are the REST reads of order state, under
the governor's query limit, shared with order entry and the venue's ``query_order``/``open_orders``.
"""

from __future__ import annotations

import logging
from collections.abc import Container
from typing import cast

from ...errors import VenueError
from ..base import OrderEvent
from . import messages as m
from .entry import Emit, Request
from .errors import QueryResult, query_result
from .governor import Governor, Op, RateWindow, take_slot
from .messages import OkxFill, OkxOrder
from .rest import OkxRestClient
from .tracking import FillPager, OrderTracker

__all__ = ["OrderReads", "Reconciler", "MAX_FILL_PAGES", "FILL_GAP_MARGIN_MS"]

log = logging.getLogger(__name__)

# Reconcile reads at most this many pages of missed fills (100 each); beyond, it logs an ERROR and
# reports the orders' cumulative state from snapshots instead (totals right, fills not one by one).
MAX_FILL_PAGES = 30
# Read fills from this long before the private stream was last known good: 5 s, plus 30 s because
# our estimate of the exchange clock (which that moment is taken from) can be up to 30 s off without
# OKX refusing anything (50102), so without a re-sync until the periodic one.
FILL_GAP_MARGIN_MS = 35_000
FILLS_PER_2S, FILLS_HISTORY_PER_2S = 60, 10  # docs/okx.md §7, per account
PENDING_PAGE = 100  # rows per page of orders-pending (§2.7)


class OrderReads:
    """REST reads of the account's orders: one by clOrdId (under the governor's query limit), and
    every open one."""

    def __init__(self, rest: OkxRestClient, governor: Governor[Request], inst_type: str) -> None:
        self._rest = rest
        self._governor = governor
        self._inst_type = inst_type

    async def one(self, venue_order_id: str, symbol: str) -> OkxOrder | None:
        """The OKX order fields, None for 51603; VenueError for anything else."""
        await self._governor.acquire(Op.QUERY, symbol)
        env = await self._rest.request(
            "GET", m.PATH_ORDER, params={"instId": symbol, "clOrdId": venue_order_id}
        )
        data = env.get("data") or []
        found = query_result(env.get("code"), data)
        if found is QueryResult.NOT_FOUND:
            return None
        if found is QueryResult.ERROR:
            raise VenueError(f"OKX order query {venue_order_id}: {env.get('code')} {env.get('msg', '')}")
        return cast(OkxOrder, dict(data[0]))

    async def pending(self) -> list[OkxOrder]:
        """Every live/partially filled order of ``inst_type`` (orders-pending, paged)."""
        out: list[OkxOrder] = []
        params = {"limit": str(PENDING_PAGE)}
        if self._inst_type:  # "" for symbols of several kinds: every kind
            params["instType"] = self._inst_type
        while True:
            page = await self._rest.checked("GET", m.PATH_PENDING, params=params)
            out.extend(page)
            if len(page) < PENDING_PAGE:
                return out
            params = params | {"after": str(page[-1].get("ordId", ""))}


class Reconciler:
    """The private stream's gap and how it is covered.

    ``resolving``: orders whose place is still queued or in flight (order entry settles those itself).
    The adapter calls :meth:`stream_lost` when the private socket goes down after it was subscribed,
    :meth:`on_orders` with every orders push, and :meth:`run` after each (re)subscribe.
    """

    def __init__(
        self,
        rest: OkxRestClient,
        tracker: OrderTracker,
        reads: OrderReads,
        emit: Emit,
        resolving: Container[str],
        *,
        inst_type: str,
        ping_interval: float,
        rate_period: float,
        max_fill_pages: int = MAX_FILL_PAGES,
    ) -> None:
        self._rest = rest
        self._clock = rest.clock
        self._tracker = tracker
        self._reads = reads
        self._emit = emit
        self._resolving = resolving
        self._inst_type = inst_type
        self._ping_interval = ping_interval
        self.max_fill_pages = max_fill_pages  # bound of one reconcile's fills reads (tests lower it)
        self._fills_windows = {
            m.PATH_FILLS: RateWindow(FILLS_PER_2S, rate_period),
            m.PATH_FILLS_HISTORY: RateWindow(FILLS_HISTORY_PER_2S, rate_period),
        }
        self._gap_since_ms: int | None = None  # exchange ms the private stream is not known good from
        self._held_pushes: list[OkxOrder] | None = None  # orders pushes kept back during a reconcile

    def stream_lost(self) -> None:
        """The subscribed private socket is down: its gap starts when it may have gone silent."""
        if self._gap_since_ms is None:
            # a dead connection is noticed within two ping intervals of silence (ws.read_loop)
            silent_ms = int(2 * self._ping_interval * 1000) + FILL_GAP_MARGIN_MS
            self._gap_since_ms = self._clock.now_ms() - silent_ms

    async def on_orders(self, items: tuple[OkxOrder, ...]) -> None:
        """An orders push: its changes, or kept back while a reconcile runs (applied after its fills)."""
        if self._held_pushes is not None:
            self._held_pushes.extend(items)
            return
        for d in items:
            await self._emit(self._tracker.on_order(d))

    async def run(self) -> None:
        """Emit every order change missed while the private socket was down (each once).

        Open orders (orders-pending), each order we think is open but OKX does not list (GET
        trade/order by clOrdId) and the fills of the gap (:meth:`_missed_fills`); fills go first so
        that each missed fill is reported with its own quantity and price, then the snapshots bring
        every order to its current state.

        Orders pushes that arrive meanwhile are kept back and applied after the missed fills: a push
        carries the cumulative fill, and applied first it would fold the missed fills into one jump.
        """
        gap_since = self._gap_since_ms
        events: list[OrderEvent] = []
        held: list[OkxOrder] = []
        self._held_pushes = held
        try:
            pending = await self._reads.pending()
            listed = {str(d.get("clOrdId", "")) for d in pending}
            snapshots: list[OkxOrder] = list(pending)
            for vid in self._tracker.open_ids():
                if vid in listed or vid in self._resolving:
                    continue
                raw = await self._reads.one(vid, self._tracker.symbol(vid) or "")
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
        finally:  # the pushes kept back are reported whatever happened (shielded, see the emitter)
            self._held_pushes = None
            for d in held:
                events += self._tracker.on_order(d)
            await self._emit(events)
        if self._gap_since_ms == gap_since:
            self._gap_since_ms = None  # covered

    async def _missed_fills(self, gap_since: int | None) -> list[OkxFill]:
        """The fills since the private stream was last known good, oldest first, every page of them.

        Covers back to ``gap_since`` (None: the first connect), but no further than the oldest open
        order we track was created. Paged with ``after`` = billId, from trade/fills and, for a gap
        older than its 3 days, trade/fills-history, each under its rate limit. Past ``max_fill_pages``
        pages: an ERROR and no fills (the snapshots that follow still report the right totals).
        """
        oldest = self._tracker.oldest_open_ms()
        since = 0 if gap_since is None else gap_since
        if oldest is not None:
            since = max(since, oldest - FILL_GAP_MARGIN_MS)
        pager = FillPager(self._inst_type, since, self._clock.now_ms(), self.max_fill_pages)
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
