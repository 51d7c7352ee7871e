"""``OkxVenue``: the OKX v5 exchange behind the :class:`~seqtrade.venues.base.Venue` interface.

Composition only (docs/okx.md section numbers in brackets); the parts:

- REST (:mod:`.rest`): clock sync against ``public/time`` [2.12], instruments [2.11], order queries
  [2.6-2.8], the dead man's switch [2.13], and order entry when ``order_transport = "rest"`` [2.1-2.5];
- order entry (:mod:`.entry`): place, cancel and amend through the :class:`.governor.Governor` [7],
  over the private socket's trading ops [6] (the default) or REST;
- reconciliation (:mod:`.reconcile`): after every (re)connect, the order changes missed meanwhile;
- order tracking (:mod:`.tracking`): turns pushes, REST snapshots and REST fills into each change once;
- the public socket (:mod:`.ws`): ``tickers``, ``books5``, ``trades`` [5.1-5.4] to ``sink.publish_market``;
  with ``books = true`` (the default) also ``books`` [5.3], the full-depth book, verified by a
  :class:`seqtrade.books.BookKeeper` per symbol (seqId chain, checksum when not 0, staleness):
  a push that makes a book invalid resubscribes the channel for that symbol (a fresh snapshot), and
  strategies get ``book_status``, ``fullbook`` and ``depth`` messages (docs/books.md). The counters of
  each book are :attr:`OkxVenue.book_counters`;
- the private socket: login [4.3], the ``orders`` channel [5.6]; after every (re)connect: login,
  subscribe, reconcile. With swaps or futures also ``positions`` (the live legs over a REST snapshot
  taken first), ``balance_and_position``, ``account`` and ``liquidation-warning``, and the bills [11.5]. Frames arrive decoded into the typed messages of :mod:`.messages`; OKX codes
  are classified by the one table of :mod:`.errors`.

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

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import trio

from ...books import BookCounters, BookKeeper, BookMessage, BookState, Outcome
from ...candles import Candle, bar_ms, merge_pages
from ...config import DerivativesConfig, OkxConfig, VenueConfig
from ...errors import VenueAuthError, VenueError
from ...instruments import InstrumentKind, kind_of
from ...models import AccountEventKind, BookStatus, FundingRate, MarkPrice
from ..base import Instrument, OrderEvent, Venue, VenueAccountEvent, VenueOrder, VenuePosition, VenueSink
from . import candles as k
from . import messages as m
from .account import PATH_BALANCE, account_from_okx, balances_from_okx
from .auth import OkxCredentials, ws_login_args
from .derivs import (
    BILL_TYPES,
    DERIVATIVE_CHANNELS,
    LivePositions,
    event_from_bill,
    external_bill_fill,
    external_fill,
    funding_leg,
    leverage_calls,
    net_positions,
    position_from_okx,
    position_mode_problem,
)
from .entry import CancelAllAfter, OrderEntry, PrivateLink, Request
from .errors import SUCCESS, CodeClass, code_class
from .governor import Governor, RateWindow, take_slot
from .messages import WsEvent, WsMessage, WsPush
from .parse import (
    MARKET_CHANNELS,
    InstrumentSpec,
    books_push_from_okx,
    decimal_of,
    instrument_from_okx,
    order_event_from_okx,
)
from .reconcile import MAX_FILL_PAGES, OrderReads, Reconciler
from .rest import ExchangeClock, OkxRestClient, open_rest_client
from .tracking import OrderTracker
from .ws import Backoff, MessageHandler, OpenHandler, SocketStats, WsSession, run_reconnecting

__all__ = ["OkxVenue"]

log = logging.getLogger(__name__)

CLOCK_SYNC_INTERVAL = 60.0  # seconds between public/time checks
PATH_ACCOUNT_CONFIG = "/api/v5/account/config"
PATH_SET_LEVERAGE = "/api/v5/account/set-leverage"
PATH_POSITIONS = "/api/v5/account/positions"
PATH_BILLS = "/api/v5/account/bills"
BILLS_LOOKBACK_MS = 24 * 3600 * 1000  # at start and after a reconnect: the account events of the last day
TRADE_BILLS_MARGIN_MS = 60_000  # trade bills read from this long before the private socket was lost
MAX_TRADE_BILL_PAGES = 20  # of 100 trade bills each, after one reconnect (bills: 5 requests/s)
# balance_and_position events whose bills say what happened to a position (D§5.2)
_EVENT_TYPES = frozenset({"funding_fee", "liquidation", "adl", "delivered", "claw_back", "settlement"})
_OKX_INST_TYPE = {InstrumentKind.SWAP: "SWAP", InstrumentKind.FUTURES: "FUTURES"}
INDEX_CHANNEL = "index-tickers"  # the index price of a derivative's underlying (docs/okx.md §11.6)
# new WS connections: 3 per second per IP, both sockets together (docs/okx.md §4.5); 0.1 s margin
WS_CONNECTS, WS_CONNECTS_PERIOD = 3, 1.1
# seconds without the snapshot a books (re)subscription asked for before asking again (at most
# book_stale_after, the silence a feed is allowed)
BOOKS_RETRY = 5.0


def _raise_single(eg: BaseExceptionGroup[Any]) -> None:
    """Re-raise a lone VenueError out of a task group as itself (the server expects the plain error)."""
    match, rest = eg.split(VenueError)
    if match is not None and rest is None:
        leaf: BaseException = match
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None


class _Emitter:
    """Hands order events to the sink; the tracker already counts them as reported.

    Shielded: the end of a socket session (which cancels its tasks) must not drop an event the
    sink is still taking (backpressure). Only stopping the whole venue cancels a delivery.
    """

    def __init__(self, sink: VenueSink) -> None:
        self._sink = sink
        self._stopping = False
        self._shields: set[trio.CancelScope] = set()

    async def __call__(self, events: list[OrderEvent]) -> None:
        if not events:
            return
        with trio.CancelScope(shield=not self._stopping) as cs:
            self._shields.add(cs)
            try:
                for event in events:
                    await self._sink.order_event(event)
            finally:
                self._shields.discard(cs)

    async def unshield_on_stop(self) -> None:
        """Runs as long as the venue: when run() is cancelled, let pending deliveries be cancelled too."""
        try:
            await trio.sleep_forever()
        finally:
            self._stopping = True
            for cs in list(self._shields):
                cs.shield = False


class OkxVenue(Venue):
    """OKX v5 spot (or ``cfg.inst_type``) trading for ``symbols`` with the given credentials.

    ``http_transport`` replaces httpx's network transport (tests only).
    """

    name = "okx"
    default_cancel_all_after = 60.0  # the server keeps OKX's switch armed unless server.cancel_all_after says

    @classmethod
    def describe(cls, config: VenueConfig) -> list[str]:
        o = config.okx
        lines = [f"venue: okx ({'demo' if o.demo else 'LIVE'} trading)",
                 f"okx: rest {o.rest_url}, orders over {o.order_transport}, keys from ${o.api_key_env}, "
                 f"${o.secret_key_env}, ${o.passphrase_env}"]  # fmt: skip
        derivs = [s for s in config.symbols if kind_of(s) is not InstrumentKind.SPOT]
        if derivs:
            d = config.derivatives
            each = ", ".join(
                f"{s} {d.setup(s).margin_mode}"
                + (
                    f" {d.setup(s).leverage:g}x"
                    if d.setup(s).leverage
                    else " (leverage as the account has it)"
                )
                for s in derivs
            )
            lines.append(f"okx derivatives: position mode {d.position_mode} (checked at start); {each}")
        return lines

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
        bars: Sequence[str] = (),
        derivatives: DerivativesConfig | None = None,
    ) -> None:
        self._cfg = cfg
        self._bars = list(dict.fromkeys(bars))  # candle channels on the business socket
        self._business_opens = 0
        self._candle_rates = {k.PATH_CANDLES: RateWindow(*k.CANDLES_RATE),
                              k.PATH_HISTORY_CANDLES: RateWindow(*k.HISTORY_RATE)}  # fmt: skip
        self._symbols = list(dict.fromkeys(symbols))
        self._deriv = derivatives or DerivativesConfig()
        self._deriv_symbols = [s for s in self._symbols if kind_of(s) is not InstrumentKind.SPOT]
        types = {_OKX_INST_TYPE.get(kind_of(s), cfg.inst_type) for s in self._symbols}
        self._inst_type = types.pop() if len(types) == 1 else ""  # "": several kinds, read them all
        self._seen_bills: set[str] = set()
        self._live = LivePositions(self._deriv_symbols)  # the legs: REST at each (re)connect, then pushes
        self._down_at = 0  # ms: when the private socket was last lost (0: not yet in this run)
        self._rates: dict[str, float] = {}  # the last funding rate published per swap (funding_leg)
        self._account: dict[str, dict[str, float]] = {}  # per currency: the account channel's view
        self._index_of: dict[str, str] = {}  # derivative symbol -> its index (BTC-USDT, BTC-USD)
        self._index_px: dict[str, float] = {}
        self._creds = credentials
        self._http_transport = http_transport
        self._specs: dict[str, InstrumentSpec] = {}
        self._instruments: dict[str, Instrument] = {}
        self._tracker = OrderTracker()
        self._governor: Governor[Request] = Governor(max_queue=max_queue, count_until_done=True)
        self._clock = ExchangeClock()
        self._link = PrivateLink()
        self._private_ready = trio.Event()
        self._md_connected = False
        self._max_fill_pages = MAX_FILL_PAGES
        # the parts that need the REST client and the nursery: made by run()
        self._rest: OkxRestClient | None = None
        self._sink: VenueSink | None = None
        self._entry: OrderEntry | None = None
        self._reads: OrderReads | None = None
        self._reconciler: Reconciler | None = None
        self._cancel_all_after: CancelAllAfter | None = None
        self.socket_stats = {"public": SocketStats(), "private": SocketStats()}  # reconnects, for status
        self._public_session: WsSession | None = None
        self._books_asked: dict[str, float] = {}  # symbol -> when its books snapshot was last asked for
        self._books: dict[str, BookKeeper] = (
            {s: BookKeeper(s, stale_after=cfg.book_stale_after, snapshot_interval=cfg.book_snapshot_interval)
             for s in self._symbols}
            if cfg.books else {}
        )  # fmt: skip
        if self._bars:
            self.socket_stats["business"] = SocketStats()  # only with candles: the third socket
        self._ws_connects = RateWindow(WS_CONNECTS, WS_CONNECTS_PERIOD)
        self.rest_url = cfg.rest_url
        self.ws_public_url = cfg.ws_public_url or (m.DEMO_WS_PUBLIC if cfg.demo else m.LIVE_WS_PUBLIC)
        self.ws_private_url = cfg.ws_private_url or (m.DEMO_WS_PRIVATE if cfg.demo else m.LIVE_WS_PRIVATE)
        self.ws_business_url = cfg.ws_business_url or (k.DEMO_WS_BUSINESS if cfg.demo else k.LIVE_WS_BUSINESS)

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

    @property
    def max_fill_pages(self) -> int:
        """Bound of one reconcile's fills reads (tests lower it)."""
        return self._max_fill_pages

    @max_fill_pages.setter
    def max_fill_pages(self, pages: int) -> None:
        self._max_fill_pages = pages
        if self._reconciler is not None:
            self._reconciler.max_fill_pages = pages

    # ------------------------------------------------------------------ run

    async def run(self, sink: VenueSink, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, load instruments, stream and trade until cancelled.

        Owns the REST connection pool, both sockets and every task listed in the module docstring.
        Reports started once the private socket is logged in, subscribed and reconciled. Cancelling
        it closes everything; requests still queued in the governor are dropped unsent. Raises
        :class:`VenueError` for an unknown symbol and :class:`VenueAuthError` for refused keys.
        """
        self._sink = sink
        emit = _Emitter(sink)
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
                await self._load_instruments(rest)
                async with trio.open_nursery() as nursery:
                    if self._deriv_symbols:
                        await self._setup_account(rest)
                    reads = self._reads = OrderReads(rest, self._governor, self._inst_type)
                    entry = self._entry = OrderEntry(
                        self._cfg,
                        self._specs,
                        self._tracker,
                        self._governor,
                        rest,
                        self._link,
                        emit,
                        reads.one,
                        nursery,
                    )
                    self._reconciler = Reconciler(
                        rest,
                        self._tracker,
                        reads,
                        emit,
                        entry.unresolved,
                        inst_type=self._inst_type,
                        ping_interval=self._cfg.ping_interval,
                        rate_period=self._governor.period,
                        max_fill_pages=self._max_fill_pages,
                    )
                    self._cancel_all_after = CancelAllAfter(rest)
                    nursery.start_soon(emit.unshield_on_stop)
                    await nursery.start(self._governor.run, entry.dispatch)
                    nursery.start_soon(self._clock_task, rest)
                    nursery.start_soon(self._public_task)
                    if self._books:
                        nursery.start_soon(self._books_clock_task)
                    nursery.start_soon(self._private_task)
                    if self._bars:
                        nursery.start_soon(self._business_task)
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
            self._link.session = None

    async def _load_instruments(self, rest: OkxRestClient) -> None:
        for symbol in self._symbols:
            inst_type = _OKX_INST_TYPE.get(kind_of(symbol), self._cfg.inst_type)  # the kind from the symbol
            env = await rest.request(
                "GET",
                m.PATH_INSTRUMENTS,
                params={"instType": inst_type, "instId": symbol},
                private=False,
            )
            data = env.get("data") or []
            if env.get("code") != SUCCESS or not data:
                raise VenueError(
                    f"OKX has no {inst_type} instrument {symbol!r} "
                    f"({env.get('code')} {env.get('msg', '')})".rstrip()
                )
            spec = instrument_from_okx(data[0])
            if spec.inst_type in ("SWAP", "FUTURES"):
                spec = dataclasses.replace(spec, td_mode=self._deriv.setup(symbol).margin_mode,
                                           net_mode=self._deriv.position_mode == "net")  # fmt: skip
                uly = str(data[0].get("uly") or "")
                if uly:
                    self._index_of[symbol] = uly
            if spec.code is None and self._cfg.order_transport == "ws":
                log.warning("OKX %s has no instIdCode yet: its orders go over REST", symbol)
            self._specs[symbol] = spec
            self._instruments[symbol] = spec.to_instrument()

    async def _setup_account(self, rest: OkxRestClient) -> None:
        """Swaps and futures: the account's position mode must be the configured one (refused with
        the reason, never switched); leverage set per configured instrument (the refusal named)."""
        data = await rest.checked("GET", PATH_ACCOUNT_CONFIG)
        problem = position_mode_problem(self._deriv, data[0] if data else {})
        if problem:
            raise VenueError(problem)
        for body in leverage_calls(self._deriv, self._deriv_symbols):
            env = await rest.request("POST", PATH_SET_LEVERAGE, body=body)
            if env.get("code") != SUCCESS:
                side = f" {body['posSide']}" if "posSide" in body else ""
                raise VenueError(
                    f"OKX refused leverage {body['lever']}x for {body['instId']}{side} ({body['mgnMode']} margin): "
                    f"{env.get('code')} {env.get('msg', '')}".rstrip()
                )
            log.info(
                "OKX leverage %sx set for %s (%s margin)", body["lever"], body["instId"], body["mgnMode"]
            )

    async def _position_rows(self) -> list[VenuePosition]:
        assert self._rest is not None, "run() first"
        rows = await self._rest.checked("GET", PATH_POSITIONS)
        return [position_from_okx(d) for d in rows if str(d.get("instId") or "") in self._deriv_symbols]

    def live_positions(self) -> list[VenuePosition] | None:
        """The account's legs as the ``positions`` channel keeps them (over the REST snapshot taken at
        every private (re)connect), no REST call; None while the private socket is down (until the
        next snapshot). They name the leg of a funding bill in long/short mode."""
        return self._live.rows() if self._live.fresh else None

    async def positions(self) -> dict[str, float] | None:
        """Net contracts per configured swap and future (long/short legs netted); None without any.
        A REST snapshot: reconciliation compares with the exchange's position as of now (the channel's
        pushes come ~50 ms after the fills, in no guaranteed order with the orders channel)."""
        if not self._deriv_symbols:
            return None
        return net_positions(await self._position_rows(), self._deriv_symbols)

    def position_symbols(self) -> set[str] | None:
        """Only swaps and futures have positions at OKX (spot holdings are balances)."""
        return set(self._deriv_symbols)

    def account_summary(self) -> dict[str, dict[str, float]] | None:
        """Per settlement currency: equity, available, unrealised PnL, margins and margin ratio (REST
        at every private (re)connect, then the ``account`` channel); None without swaps or futures."""
        return dict(self._account) if self._deriv_symbols else None

    async def position_details(self) -> list[VenuePosition] | None:
        """One row per leg with its margin facts: a REST snapshot, the same truth reconciliation
        compares with (:meth:`live_positions`: the channel's view)."""
        return await self._position_rows() if self._deriv_symbols else None

    async def _read_bills(self, *, trades: bool = False) -> None:
        """The account events of the last day (bills of types 8, 5, 9, 3), oldest first, each handed
        to the server once per run (the server applies each bill id once, also across restarts).
        ``trades`` (after every private reconnect): also the trade bills (type 2) since the socket was
        lost, for fills made outside seqtrade meanwhile (they go to the external account)."""
        assert self._rest is not None and self._sink is not None
        since = self._clock.now_ms() - BILLS_LOOKBACK_MS
        found: list[dict[str, Any]] = []
        # not at start: a position opened by hand before seqtrade ran is taken whole at the first
        # reconciliation (as external), which a part of its history read here would prevent
        types = list(BILL_TYPES) + (["2"] if trades and self._down_at else [])
        for bill_type in types:
            begin = self._down_at - TRADE_BILLS_MARGIN_MS if bill_type == "2" else since
            params = {"type": bill_type, "begin": str(begin), "limit": "100"}
            for _ in range(MAX_TRADE_BILL_PAGES if bill_type == "2" else 1_000_000):
                page = await self._rest.checked("GET", PATH_BILLS, params=params)
                found += page
                if len(page) < 100:
                    break
                params = params | {"after": str(page[-1].get("billId", ""))}
            else:
                log.error("OKX: more than %d pages of trade bills since %d: fills made outside seqtrade "
                          "before the newest of them are not looked for", MAX_TRADE_BILL_PAGES, begin)  # fmt: skip
        for bill in sorted(found, key=lambda b: int(b.get("billId") or 0)):
            event = event_from_bill(bill) or external_bill_fill(bill)
            if event is None or event.event_id in self._seen_bills or event.symbol not in self._deriv_symbols:
                continue
            if self._deriv.position_mode == "long_short":  # a funding bill names no leg: find it
                rate = self._rates.get(event.symbol, 0.0)
                leg = funding_leg(event, bill, self._live.leg_sizes(event.symbol), rate)
                event = dataclasses.replace(event, pos_side=leg)
            await self._sink.account_event(event)  # returns once journaled: only then taken as seen
            self._seen_bills.add(event.event_id)

    # ------------------------------------------------------------------ the Venue interface

    def _running(self) -> OrderEntry:
        assert self._entry is not None, "run() first"
        return self._entry

    async def place_order(self, order: VenueOrder) -> None:
        """Queue ``order`` for sending; returns at once. Outcome: ACCEPTED/REJECTED/... events."""
        await self._running().place(order)

    async def cancel_order(self, venue_order_id: str, symbol: str) -> None:
        """Queue a cancel (cancels go before new orders); returns at once."""
        await self._running().cancel(venue_order_id, symbol)

    async def amend_order(
        self, venue_order_id: str, symbol: str, price: float | None, quantity: float | None
    ) -> None:
        """Queue an amend (new price and/or new total quantity); returns at once."""
        await self._running().amend(venue_order_id, symbol, price, quantity)

    async def query_order(self, venue_order_id: str, symbol: str) -> OrderEvent | None:
        """GET trade/order by clOrdId; None when OKX does not know it (51603)."""
        assert self._reads is not None, "run() first"
        raw = await self._reads.one(venue_order_id, symbol)
        return order_event_from_okx(raw) if raw is not None else None

    async def open_orders(self) -> list[OrderEvent]:
        """Every live/partially filled order of the account for ``cfg.inst_type`` (paged)."""
        assert self._reads is not None, "run() first"
        return [e for d in await self._reads.pending() if (e := order_event_from_okx(d)) is not None]

    async def cancel_all_after(self, timeout_s: float) -> None:
        """Arm (``timeout_s`` 10..120) or disarm (0) OKX's cancel-all-after [2.13]. Logs failures.

        Calls are spaced at least 1 s apart (:class:`.entry.CancelAllAfter`).
        """
        assert self._cancel_all_after is not None, "run() first"
        await self._cancel_all_after(timeout_s)

    # ------------------------------------------------------------------ background tasks

    async def _clock_task(self, rest: OkxRestClient) -> None:
        """Re-measure the exchange clock offset every CLOCK_SYNC_INTERVAL s. Cancelled with run().

        Between these, any request OKX refuses for its timestamp re-syncs at once (module docstring).
        """
        while True:
            await trio.sleep(CLOCK_SYNC_INTERVAL)
            await rest.resync_clock()  # shared with a re-sync in flight; failures are logged

    async def _cancel_all_after_task(self) -> None:
        """Keep the dead man's switch armed: refresh every timeout/3 s. Cancelled with run()."""
        period = self._cfg.cancel_all_after / 3
        while True:
            await trio.sleep(period)
            await self.cancel_all_after(self._cfg.cancel_all_after)

    async def _public_task(self) -> None:
        """The public socket for ever: subscribe, publish market data, reconnect. Never blocks on the sink."""
        await self._reconnecting("public", self.ws_public_url, self._public_open, self._public_message,
                                 self._public_down)  # fmt: skip

    async def _private_task(self) -> None:
        """The private socket for ever: login, orders channel, reconcile, WS trading ops, reconnect.

        Waits on ``sink.order_event`` (backpressure: the socket is not read meanwhile).
        """
        await self._reconnecting("private", self.ws_private_url, self._private_open, self._private_message,
                                 self._private_down)  # fmt: skip

    async def _reconnecting(
        self,
        name: str,
        url: str,
        on_open: OpenHandler,
        on_message: MessageHandler,
        on_down: Callable[[str], None],
    ) -> None:
        await run_reconnecting(
            url,
            name=name,
            on_open=on_open,
            on_message=on_message,
            on_down=on_down,
            backoff=Backoff(self._cfg.reconnect_min, self._cfg.reconnect_max),
            ping_interval=self._cfg.ping_interval,
            connect_timeout=max(self._cfg.request_timeout, 1.0),
            stats=self.socket_stats[name],
            connects=self._ws_connects,
        )

    # ------------------------------------------------------------------ public socket

    async def _public_open(self, session: WsSession) -> None:
        args = [{"channel": ch, "instId": s} for s in self._symbols for ch in m.PUBLIC_CHANNELS]
        args += [{"channel": ch, "instId": s} for s in self._deriv_symbols for ch in DERIVATIVE_CHANNELS
                 if ch != "funding-rate" or kind_of(s) is InstrumentKind.SWAP]  # fmt: skip
        args += [{"channel": INDEX_CHANNEL, "instId": i} for i in sorted(set(self._index_of.values()))]
        args += [{"channel": m.BOOKS_CHANNEL, "instId": s} for s in self._books]
        self._public_session = session
        now = trio.current_time()
        for s in self._books:
            self._books_asked[s] = now
        await session.send({"op": "subscribe", "args": args})
        session.ready = True

    def _public_down(self, reason: str) -> None:
        if self._md_connected and self._sink is not None:
            self._sink.set_connected(False)
        self._md_connected = False
        if self._sink is not None:
            ts = self._clock.now_ms()
            for keeper in self._books.values():
                self._publish_books(keeper.disconnected(ts, f"public socket lost: {reason}"))

    # ------------------------------------------------------------------ full-depth books

    @property
    def book_counters(self) -> dict[str, BookCounters]:
        """Per symbol, what its ``books`` feed saw: snapshots, updates, heartbeats, seq resets, gaps,
        checksum errors, stale periods, resubscriptions and retries (for feed health, status and tests)."""
        return {s: k.feed.counters for s, k in self._books.items()}

    def book_state(self, symbol: str) -> BookKeeper | None:
        """The verified book of ``symbol`` (its feed and publisher), None when books are off."""
        return self._books.get(symbol)

    def _publish_books(self, msgs: list[BookMessage]) -> None:
        sink = self._sink
        assert sink is not None
        for msg in msgs:
            sink.publish_market(msg)

    async def _on_books(self, session: WsSession, msg: WsPush) -> None:
        keeper = self._books.get(msg.inst_id)
        if keeper is None:
            return
        now = trio.current_time()
        for d in msg.data:
            push = books_push_from_okx(d, msg.action)  # type: ignore[arg-type]
            if push is None:
                keeper.feed.counters.malformed += 1
                keeper.feed.counters.resubscribes += 1
                self._publish_books(keeper.disconnected(self._clock.now_ms(), "malformed push"))
                outcome = Outcome.INVALID
            else:
                was = keeper.feed.state
                outcome, out = keeper.push(
                    bids=push.bids, asks=push.asks, prev_seq=push.prev_seq, seq=push.seq,
                    checksum=push.checksum, ts=push.ts, now=now, snapshot=push.snapshot,
                )  # fmt: skip
                self._publish_books(out)
                if was is not BookState.VALID and keeper.feed.valid:
                    log.info("OKX books %s: valid (seqId %d)", msg.inst_id, push.seq)
            if outcome is Outcome.INVALID:
                log.warning(
                    "OKX books %s: %s: subscribing again for a fresh snapshot",
                    msg.inst_id,
                    keeper.feed.reason,
                )
                health = getattr(self, "feed_health", None)  # the server's feed health, when it keeps one
                if health is not None:
                    health.on_gap("book", msg.inst_id)
                try:
                    await self._resubscribe_books(session, msg.inst_id)
                except VenueError as exc:  # the socket is going down: the reconnect subscribes again
                    log.info("OKX books %s: %s", msg.inst_id, exc)
                return  # the rest of this push belongs to the book given up

    async def _resubscribe_books(self, session: WsSession, symbol: str) -> None:
        """Unsubscribe and subscribe ``books`` of ``symbol``: OKX answers with a fresh snapshot."""
        health = getattr(self, "feed_health", None)
        if health is not None:
            health.on_resubscribe("book", symbol)
        self._books_asked[symbol] = trio.current_time()
        arg = {"channel": m.BOOKS_CHANNEL, "instId": symbol}
        await session.send({"op": "unsubscribe", "args": [arg]})
        await session.send({"op": "subscribe", "args": [arg]})

    async def _books_clock_task(self) -> None:
        """Staleness and the periodic whole-book snapshots, a few times a second."""
        period = min(0.25, self._cfg.book_stale_after / 4, self._cfg.book_snapshot_interval / 2)
        retry = min(BOOKS_RETRY, self._cfg.book_stale_after)
        while True:
            await trio.sleep(period)
            if self._sink is None:
                continue
            now = trio.current_time()
            session = self._public_session
            for symbol, keeper in self._books.items():
                msgs = keeper.tick(now, keeper.feed.ts)
                if msgs and isinstance(msgs[0], BookStatus):
                    log.warning("OKX books %s: stale: %s", symbol, keeper.feed.reason)
                self._publish_books(msgs)
                if (
                    keeper.feed.state is BookState.INVALID
                    and session is not None
                    and session.alive
                    and session.ready
                    and now - self._books_asked.get(symbol, now) >= retry
                ):  # asked for a snapshot and none came (an error answer, a lost message): ask again
                    log.warning("OKX books %s: no snapshot %.1f s after asking: asking again", symbol, retry)
                    keeper.feed.counters.retries += 1
                    try:
                        await self._resubscribe_books(session, symbol)
                    except VenueError as exc:  # the socket went down meanwhile: the reconnect subscribes
                        log.info("OKX books %s: %s", symbol, exc)

    async def _public_message(self, session: WsSession, msg: WsMessage) -> None:
        sink = self._sink
        assert sink is not None
        if isinstance(msg, WsEvent):
            self._on_event(session, msg)
            if msg.event == "subscribe" and not self._md_connected:
                self._md_connected = True
                sink.set_connected(True)
        elif isinstance(msg, WsPush) and (convert := MARKET_CHANNELS.get(msg.channel)) is not None:
            for d in msg.data:
                sink.publish_market(convert(d, msg.inst_id))
        elif isinstance(msg, WsPush) and msg.channel == m.BOOKS_CHANNEL:
            await self._on_books(session, msg)
        elif isinstance(msg, WsPush) and (deriv := DERIVATIVE_CHANNELS.get(msg.channel)) is not None:
            for d in msg.data:
                md = deriv(d, msg.inst_id)
                if isinstance(md, MarkPrice):  # the index of its underlying, from index-tickers
                    md.index_price = self._index_px.get(self._index_of.get(md.symbol, ""), 0.0)
                elif isinstance(md, FundingRate):
                    self._rates[md.symbol] = md.funding_rate
                sink.publish_market(md)
        elif isinstance(msg, WsPush) and msg.channel == INDEX_CHANNEL:
            for d in msg.data:
                self._index_px[str(d.get("instId") or msg.inst_id)] = float(decimal_of(d.get("idxPx")))

    def _on_event(self, session: WsSession, msg: WsEvent) -> None:
        if msg.event == "error":
            log.error("OKX %s socket error %s: %s", session.name, msg.code, msg.msg)
        elif msg.event == "notice":
            log.warning("OKX %s socket notice %s: %s", session.name, msg.code, msg.msg)
            if code_class(msg.code) is CodeClass.RETRIABLE:  # 64008: the connection closes soon
                session.end(f"notice {msg.code}: service upgrade")
        elif msg.event == "channel-conn-count":
            log.info("OKX %s connections on channel %s", msg.conn_count, msg.channel)
        elif msg.event == "channel-conn-count-error":
            log.error(
                "OKX %s socket: channel %s refused, over its connection limit (%s); reconnecting",
                session.name,
                msg.channel,
                msg.conn_count,
            )
            if session.name == "private":  # no orders channel: the session is useless, retry later
                session.end(f"channel-conn-count-error on {msg.channel}")
        else:
            log.debug("OKX %s socket event %s", session.name, msg.event)

    # ------------------------------------------------------------------ business socket: candles

    async def _business_task(self) -> None:
        """The business socket for ever: the candle channels of ``bars`` for every symbol."""
        await self._reconnecting("business", self.ws_business_url, self._business_open,
                                 self._business_message, lambda reason: None)  # fmt: skip

    async def _business_open(self, session: WsSession) -> None:
        args = [{"channel": k.candle_channel(b), "instId": s} for s in self._symbols for b in self._bars]
        await session.send({"op": "subscribe", "args": args})
        self._business_opens += 1
        if self._business_opens > 1 and self.feed_health is not None:
            for s in self._symbols:
                for b in self._bars:
                    self.feed_health.on_resubscribe(f"candle:{b}", s)
        session.ready = True

    async def _business_message(self, session: WsSession, msg: WsMessage) -> None:
        sink = self._sink
        assert sink is not None
        if isinstance(msg, WsEvent):
            self._on_event(session, msg)
        elif isinstance(msg, WsPush) and (bar := k.bar_of_channel(msg.channel)) is not None:
            for d in msg.data:
                try:
                    candle = k.candle_from_row(d, msg.inst_id, bar)
                except (KeyError, ValueError, TypeError):
                    log.warning("OKX %s push with a malformed row: %r", msg.channel, d)
                    continue
                sink.publish_market(candle)

    async def candles(self, symbol: str, bar: str, n: int) -> list[Candle]:
        """The last ``n`` closed bars from REST: ``market/candles`` (newest 1,440, 300 a page), then
        ``market/history-candles`` (100 a page) further back, each under its rate limit."""
        bar_ms(bar)  # ValueError for a bar not served
        if symbol not in self._instruments:
            raise ValueError(f"symbol {symbol} is not served")
        rest = self._rest
        if rest is None:
            raise ValueError("the OKX venue is not connected yet")
        history = bar == "1s"  # only history-candles serves 1 s bars
        pages: list[list[Candle]] = []
        after: int | None = None
        reached = 0
        for _ in range(n // k.HISTORY_PAGE + 20):  # bounded: every page moves back or ends the loop
            path = k.PATH_HISTORY_CANDLES if history else k.PATH_CANDLES
            page = k.HISTORY_PAGE if history else k.CANDLES_PAGE
            params = {"instId": symbol, "bar": bar, "limit": str(page)}
            if after is not None:
                params["after"] = str(after)
            await take_slot(self._candle_rates[path])
            rows = await rest.checked("GET", path, params=params, private=False)
            got = [k.candle_from_row(r, symbol, bar) for r in rows]
            pages.append(got)
            if len(merge_pages(pages, n)) >= n:
                break
            if got:
                after = min(c.ts for c in got)
                reached += len(got)
            if not history and (len(got) < page or reached >= k.CANDLES_REACH):
                history = True  # market/candles reaches no further back
            elif history and not got:
                break  # OKX has nothing older
        return merge_pages(pages, n)

    # ------------------------------------------------------------------ private socket

    async def _private_open(self, session: WsSession) -> None:
        """Log in, subscribe to ``orders``, reconcile; then the session is ready.

        A login refused for its timestamp (60004/60006) starts a clock re-sync that outlives this
        session (OKX closes it with 4001 right after the refusal); the next login waits for the
        re-sync in flight before signing, so it signs with the corrected clock.
        """
        assert self._rest is not None and self._reconciler is not None
        timeout = self._cfg.request_timeout
        await self._rest.clock_settled()
        clock_gen = self._clock.syncs
        answer = await session.call(
            {"op": "login", "args": [ws_login_args(self._creds, self._clock.now_ms() // 1000)]},
            lambda msg: isinstance(msg, WsEvent) and msg.event in ("login", "error"),
            timeout,
        )
        assert isinstance(answer, WsEvent)
        if answer.event != "login" or answer.code != SUCCESS:
            why = f"OKX login refused: {answer.code} {answer.msg}"
            if code_class(answer.code) is CodeClass.CLOCK:
                self._rest.resync_soon(since=clock_gen)  # in the REST client's nursery, not this session's
                raise VenueError(f"{why}; re-syncing the clock")
            raise VenueAuthError(why)
        answer = await session.call(
            {
                "op": "subscribe",
                "args": [{"channel": m.ORDERS_CHANNEL, "instType": self._inst_type or "ANY"}],
            },
            lambda msg: isinstance(msg, WsEvent) and msg.event in ("subscribe", "error"),
            timeout,
        )
        assert isinstance(answer, WsEvent)
        if answer.event != "subscribe":
            raise VenueError(f"OKX orders subscribe refused: {answer.code} {answer.msg}")
        if self._deriv_symbols:
            # positions, balances and the exchange's own events (funding, liquidation, ADL, delivery):
            # the legs from REST first, then the positions channel (its snapshot is newer) keeps them
            self._live.reset(await self._position_rows())
            args = [
                {"channel": "positions", "instType": "ANY"},
                {"channel": "balance_and_position"},
                {"channel": "liquidation-warning", "instType": "ANY"},
                {"channel": "account"},
            ]
            await session.send({"op": "subscribe", "args": args})
            await self._read_bills(trades=True)  # what happened while the socket was down (or the server was)
            self._account = account_from_okx(await self._rest.checked("GET", PATH_BALANCE))  # then the pushes
        self._link.session = session
        self._link.generation += 1
        session.ready = True
        await self._reconciler.run()
        if session.alive:
            self._private_ready.set()

    async def _liquidation_warning(self, items: Sequence[Any]) -> None:
        assert self._sink is not None
        for d in items:
            p = position_from_okx(d)
            if p.symbol not in self._deriv_symbols:
                continue
            event_id = (
                f"warn:{p.symbol}:{p.pos_side}:{d.get('uTime') or d.get('pTime') or self._clock.now_ms()}"
            )
            await self._sink.account_event(
                VenueAccountEvent(
                    AccountEventKind.LIQUIDATION_WARNING,
                    p.symbol,
                    event_id,
                    pos_side=p.pos_side,
                    price=p.mark_price,
                    currency=p.currency,
                    ts=self._clock.now_ms(),
                )  # fmt: skip
            )

    def _private_down(self, reason: str) -> None:
        self._down_at = self._clock.now_ms()  # the trade bills from here are read after the reconnect
        self._live.lost()  # pushes may be missed until the next REST snapshot
        if self._link.session is not None and self._reconciler is not None:
            self._reconciler.stream_lost()
        self._link.session = None

    async def _private_message(self, session: WsSession, msg: WsMessage) -> None:
        if isinstance(msg, WsEvent):
            self._on_event(session, msg)
        elif isinstance(msg, WsPush) and msg.channel == m.ORDERS_CHANNEL:
            assert self._reconciler is not None and self._sink is not None
            await self._reconciler.on_orders(msg.orders())
            for d in msg.data:
                event = external_fill(d)  # an order placed outside seqtrade: the external account's
                if event is not None and event.symbol in self._deriv_symbols:
                    await self._sink.account_event(event)
        elif isinstance(msg, WsPush) and msg.channel == "positions":
            self._live.on_push(msg.event_type, msg.data, msg.cur_page, msg.last_page)
        elif isinstance(msg, WsPush) and msg.channel == "balance_and_position":
            if any(str(d.get("eventType") or "") in _EVENT_TYPES for d in msg.data):
                await self._read_bills()
        elif isinstance(msg, WsPush) and msg.channel == "liquidation-warning":
            await self._liquidation_warning(msg.data)
        elif isinstance(msg, WsPush) and msg.channel == "account":
            self._account.update(account_from_okx(msg.data))
