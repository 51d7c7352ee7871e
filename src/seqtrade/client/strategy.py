"""The ``Strategy`` base class: callbacks, order helpers, timers and local state.

A strategy subclasses :class:`Strategy`, overrides the callbacks it needs, and is run by
:func:`seqtrade.client.run` (or ``seqtrade run file.py``). Callbacks run one at a time on the
strategy's own thread; order helpers never block (they queue a frame on the order socket).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import wire
from ..candles import MAX_HISTORY, Candle, HistoryRequest
from ..errors import SeqtradeError
from ..feedhealth import FeedsStatus
from ..ids import base36
from ..instruments import Instrument, money_currency
from ..models import (
    OPEN_STATUSES,
    AccountEvent,
    AmendRequest,
    Book,
    BookStatus,
    CancelAll,
    CancelRequest,
    FundingRate,
    MarkPrice,
    OrderReport,
    OrderRequest,
    OrderType,
    PriceLimit,
    Side,
    Ticker,
    Trade,
    VenueStatus,
)
from ..positions import FeeLedger, apply_fill, apply_fill_to
from ..vclock import VIRTUAL_CLOCK_ENV
from .orderframes import OrderFrames

if TYPE_CHECKING:
    from .book import LocalBook
    from .protocol import ClientProtocol
    from .runner import Connection

__all__ = ["Strategy", "Position", "OrderIdGenerator"]


def _symbols_from_params(params: Mapping[str, Any]) -> list[str] | None:
    """The symbols the params name (``symbols``: a list or one string; ``symbol``: one), or None."""
    if "symbols" in params:
        value = params["symbols"]
        chosen = [value] if isinstance(value, str) else list(value)
        if "symbol" in params and params["symbol"] not in chosen:
            raise ValueError(f"param symbol={params['symbol']!r} is not in param symbols={chosen!r}")
    elif "symbol" in params:
        chosen = [params["symbol"]]
    else:
        return None
    if not chosen or not all(isinstance(x, str) and x for x in chosen):
        raise ValueError(f"params: symbols must be non-empty strings, got {chosen!r}")
    return chosen


class OrderIdGenerator:
    """client_order_ids that never repeat, also across restarts: start time in µs (base 36) + counter.

    Each strategy object has one. Its prefix is the wall-clock time at which the object was made, in
    microseconds, written in base 36 (``mh4kq2zq5c``); each id adds a counter: ``mh4kq2zq5c-1``,
    ``mh4kq2zq5c-2``, ... A restarted process starts from a later time, so its ids differ from every
    id the previous process used (unless the clock went back), and the server never sends an order
    whose id it already knows: it re-sends that order's latest report instead.
    """

    def __init__(self, *, virtual: bool = False) -> None:
        # A backtest (seqtrade.vclock) starts from an empty journal: ids the same in every run.
        self.prefix = "bt" if virtual else base36(time.time_ns() // 1000)
        self._n = itertools.count(1)

    def next(self) -> str:
        """The next id: ``<prefix>-<counter>``, at most 64 characters of ``[0-9a-z-]``."""
        return f"{self.prefix}-{next(self._n)}"


@dataclass(slots=True)
class Position:
    """Net position of one symbol, from this strategy's own fills (never another strategy's).

    Kept by the strategy from the fills in its reports, at average cost: buying adds to a long
    position at the average price, selling it realises ``(price - avg_price) * quantity``; a trade that
    crosses zero realises the closed part and opens the rest at the trade's price. Fees are kept apart
    from the realised PnL.

    Attributes:
        quantity: Net quantity in the instrument's unit (base currency for spot, contracts for swaps
            and futures): positive long, negative short, 0.0 flat.
        avg_price: Average entry price of the open quantity (0.0 when flat).
        realized_pnl: Profit realised by closing trades, gross of fees, in ``currency``.
        fees: Fees paid on this symbol's orders, in ``currency`` (a rebate counts negative).
        funding: Funding received (+) or paid (-) on this symbol, in ``currency``; liquidation and
            ADL amounts count here too (``account_event`` reports).
        currency: The currency of the money figures: the settlement currency (USDT for a linear
            swap, BTC for ``BTC-USD-SWAP``, the quote currency for spot); "" when not known.
        instrument: The instrument's facts the PnL is computed with (contract value, linear or
            inverse); None when the server did not send them (PnL as for spot).
    """

    quantity: float = 0.0  # + long, - short
    avg_price: float = 0.0  # average entry price of the open quantity
    realized_pnl: float = 0.0  # gross of fees
    fees: float = 0.0
    funding: float = 0.0
    currency: str = ""
    instrument: Instrument | None = field(default=None, repr=False)

    def apply_fill(self, side: str, qty: float, price: float) -> None:
        """Apply one fill of ``qty`` (> 0, the instrument's unit) at ``price``; ``side`` is ``"buy"``
        or ``"sell"``. PnL uses the contract value (and the inverse formula) when the instrument is known.

        The maths the server's accounts use too (``seqtrade.positions``).
        """
        if self.instrument is not None:
            self.quantity, self.avg_price, pnl = apply_fill_to(
                self.instrument, self.quantity, self.avg_price, side, qty, price
            )
        else:
            self.quantity, self.avg_price, pnl = apply_fill(self.quantity, self.avg_price, side, qty, price)
        self.realized_pnl += pnl


@dataclass(order=True, slots=True)
class _Timer:
    when: float
    seq: int
    interval: float = field(compare=False)
    callback: Callable[[], Any] = field(compare=False)
    repeat: bool = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class Strategy:
    """Base class of a strategy. Override the ``on_*`` callbacks you need.

    **When callbacks run.** All on the strategy's own thread, one at a time, never re-entered:

    1. The process connects and joins the server (the *join handshake*, docs/protocol.md). Every
       report the server holds for this strategy id and the process has not seen is replayed first:
       it updates [`orders`][seqtrade.client.Strategy.orders],
       [`open_orders`][seqtrade.client.Strategy.open_orders] and
       ``positions`` *without* calling ``on_order``.
    2. [`on_start`][seqtrade.client.Strategy.on_start], once: state is up to date, order helpers work.
    3. Until the strategy stops: [`on_ticker`][seqtrade.client.Strategy.on_ticker],
       [`on_book`][seqtrade.client.Strategy.on_book], [`on_trade`][seqtrade.client.Strategy.on_trade]
       and [`on_status`][seqtrade.client.Strategy.on_status] as market data arrives,
       [`on_order`][seqtrade.client.Strategy.on_order] for each new report, and timers
       ([`set_timer`][seqtrade.client.Strategy.set_timer]) when due.
    4. [`on_stop`][seqtrade.client.Strategy.on_stop], once, after ``stop()``, SIGINT or SIGTERM.

    If the server falls silent while the strategy runs,
    [`on_server_lost`][seqtrade.client.Strategy.on_server_lost] is called, and
    [`on_server_back`][seqtrade.client.Strategy.on_server_back] once the process has re-joined.

    An exception raised by a callback or a timer never ends the strategy: the first of each callback
    is logged with its traceback, later ones are counted and logged in one line per callback every
    10 s, and the counts are shown by ``seqtrade status`` and ``seqtrade strategies``. Callbacks
    should return quickly: market data that arrives meanwhile queues up.

    **Symbols.** [`symbols`][seqtrade.client.Strategy.symbols] (a class attribute, replaced by a
    ``symbol`` or ``symbols`` param) is what the strategy receives prices for and may trade;
    [`symbol`][seqtrade.client.Strategy.symbol] is the first of them, for a one-symbol strategy.
    ``--param symbol=ETH-USDT`` thus changes both; an order for a symbol outside a non-empty
    ``symbols`` raises ``ValueError`` at the call.

    **Orders.** The order helpers ([`buy_limit`][seqtrade.client.Strategy.buy_limit],
    [`sell_limit`][seqtrade.client.Strategy.sell_limit],
    [`buy_market`][seqtrade.client.Strategy.buy_market],
    [`sell_market`][seqtrade.client.Strategy.sell_market],
    [`cancel_order`][seqtrade.client.Strategy.cancel_order],
    [`amend_order`][seqtrade.client.Strategy.amend_order],
    [`cancel_all`][seqtrade.client.Strategy.cancel_all]) never block and never wait for an answer:
    each queues one request to the server and returns. Every outcome (accepted, filled, cancelled,
    rejected with the reason, a failed cancel or amend) arrives later as an
    [`OrderReport`][seqtrade.client.OrderReport] in ``on_order``. The server rounds prices to the
    instrument's tick (buys down, sells up) and quantities down to its lot, and checks the risk limits
    of its config; an order it refuses gets a ``rejected`` report whose ``error_msg`` says why. The
    helpers raise ``RuntimeError`` when called before the strategy runs (in ``__init__``), and
    ``SeqtradeError`` when the server has not read the strategy's requests for a second.

    **Parameters.** ``Strategy(**params)`` keeps its keyword arguments in
    [`params`][seqtrade.client.Strategy.params]; the runner passes each ``--param KEY=VALUE`` of the
    command line and each entry of ``params = {...}`` in the config's ``[[strategies]]`` table. A
    subclass that defines ``__init__`` must call ``super().__init__(**params)``.

    Attributes:
        positions: symbol -> [`Position`][seqtrade.client.Position], from this strategy's own fills.
            Rebuilt from the replayed reports at every start, so a restarted strategy keeps its
            position; [`position`][seqtrade.client.Strategy.position] and
            [`avg_price`][seqtrade.client.Strategy.avg_price] read it.
    """

    symbols: Sequence[str] = ()
    """The symbols this strategy receives market data for and trades, e.g. ``["BTC-USDT"]``.

    A class attribute gives the default; the params override it: ``symbols`` (a list, or one
    string; ``--param symbols='["BTC-USDT","ETH-USDT"]'``) or ``symbol`` (one:
    ``--param symbol=ETH-USDT``) replace it for this object, so the symbol a strategy is run with is
    the one it receives prices for. Read after ``__init__``: the runner subscribes before
    ``on_start``, so set it in the class or in ``__init__``, not later.

    Tickers are subscribed to for each symbol; books and public trades only when the subclass
    overrides [`on_book`][seqtrade.client.Strategy.on_book] or
    [`on_trade`][seqtrade.client.Strategy.on_trade]. An order helper called for a symbol that is not
    in a non-empty ``symbols`` raises ``ValueError`` naming both: a strategy never trades at a price
    it cannot see. (A strategy with no symbols receives no market data and may order any symbol the
    server serves.)
    """

    book_depth: Mapping[str, int | str] = {}
    """The full-depth order books this strategy keeps, by symbol: ``N`` levels a side (1-25) or ``"full"``.

    ``{"BTC-USDT": 10}`` keeps the top 10 levels, replaced on every change of them;
    ``{"BTC-USDT": "full"}`` keeps the whole book (all the levels the venue sends, 400 a side on
    OKX), from a snapshot and then the deltas the server verified. Read the book with
    [`book`][seqtrade.client.Strategy.book]; [`on_depth`][seqtrade.client.Strategy.on_depth] is called
    after each change and [`on_book_status`][seqtrade.client.Strategy.on_book_status] when the
    server's book goes invalid, stale or valid again (docs/books.md). To trade a symbol, list it in
    [`symbols`][seqtrade.client.Strategy.symbols] too. Read when the strategy starts, like ``symbols``;
    a depth that is neither 1-25 nor ``"full"`` stops the start with a ``ValueError``.
    """

    bars: Sequence[str] = ()
    """The candle bar sizes this strategy receives for each of its symbols, e.g. ``["1m", "5m"]``.

    For each symbol and bar the runner subscribes to ``candle/<symbol>@<bar>/`` and calls
    [`on_candle`][seqtrade.client.Strategy.on_candle]; the server sends only the bars of its
    ``[candles] bars``. Bars are OKX's names (``1s``, ``1m``, ``3m``, ``5m``, ``15m``, ``30m``,
    ``1H``, ``2H``, ``4H``, ``6Hutc``, ``12Hutc``, ``1Dutc``). Warm up with
    [`history`][seqtrade.client.Strategy.history] in ``on_start``: the live bars continue it with no
    bar missing and none twice (docs/candles.md).
    """

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = dict(params)
        """The strategy's parameters, by name (the keyword arguments of ``Strategy(**params)``).

        From ``--param KEY=VALUE`` on the command line, or ``params = {...}`` in the config's
        ``[[strategies]]`` entry. A command-line value is read as a TOML value: ``size=0.01`` is a
        float, ``n=3`` an int, ``on=true`` a bool, ``xs=[1,2]`` a list, ``symbol='"ETH-USDT"'`` a
        string; text that is not valid TOML is kept as a string (``symbol=ETH-USDT``). Read them with
        defaults: ``self.params.get("size", 0.01)``.
        """
        chosen = _symbols_from_params(self.params)
        if chosen is not None:
            self.symbols = chosen
        self.symbol: str = self.symbols[0] if self.symbols else ""
        """The strategy's first (often only) symbol: ``symbols[0]``, or ``""`` when it has none.

        A convenience for a strategy that trades one symbol: ``self.buy_limit(self.symbol, ...)``.
        Follows ``--param symbol=...`` (see [`symbols`][seqtrade.client.Strategy.symbols]); a
        subclass that sets ``symbols`` in its own ``__init__`` sets this too.
        """
        self.strategy_id: str = ""
        """The id this process trades as: ``--id``, or the class name in lower case.

        Set when the strategy starts running (empty in ``__init__``). Reports, positions and the
        journal are kept per id: a process restarted with the same id picks up where the last one
        left off.
        """
        self.log = logging.getLogger(f"seqtrade.strategy.{type(self).__name__}")
        """A ``logging.Logger`` named ``seqtrade.strategy.<ClassName>``.

        ``seqtrade run`` logs INFO and above to standard error (DEBUG with ``-v``); a strategy the
        server starts itself writes to ``<run_dir>/logs/<id>.log``.
        """
        self.open_orders: dict[str, OrderReport] = {}
        """The orders open now (``accepted`` or ``partially_filled``): client_order_id -> latest report.

        Replaced by the server's list at every join, so after a restart it holds the orders the
        previous process left open; then kept up to date by each report, before ``on_order`` is
        called.
        """
        self.orders: dict[str, OrderReport] = {}  # every order's latest report
        """Every order of this strategy id that had a report, open or done: client_order_id -> latest report.

        Includes the history replayed at start-up.
        """
        self.positions: dict[str, Position] = {}
        self.unserved_symbols: list[str] = []
        """The symbols of [`symbols`][seqtrade.client.Strategy.symbols] that the server does not serve
        (from its welcome; logged once as an error at the join): no market data comes for them.
        """
        self._conn: Connection | None = None
        self._protocol: ClientProtocol | None = None
        # The backtest clock (seqtrade.vclock): ns of the recording, 0 until the first sync; None live.
        self._virtual_ns: int | None = 0 if os.environ.get(VIRTUAL_CLOCK_ENV) else None
        self._ids = OrderIdGenerator(virtual=self._virtual_ns is not None)
        self._timers: list[_Timer] = []
        self._timer_seq = itertools.count()
        self._fees = FeeLedger()  # cumulative fee per order: a report's fee becomes its delta
        self._stop = False
        self._held_reports: list[bytes] = []  # report frames read while waiting for a history answer
        self._order_frames: OrderFrames | None = None  # this strategy id's order frames (orderframes.py)
        self._history_n = itertools.count(1)

    # ------------------------------------------------------------------ callbacks

    def on_start(self) -> None:
        """Called once, after the join handshake: open orders and positions are up to date.

        The place to read [`params`][seqtrade.client.Strategy.params], set timers, and pick up what
        a previous process of the same id left: [`open_orders`][seqtrade.client.Strategy.open_orders]
        holds the orders still open at the server, [`position`][seqtrade.client.Strategy.position]
        the position from every fill so far. Reports replayed while joining have been applied
        without ``on_order``.
        """

    def on_ticker(self, ticker: Ticker) -> None:
        """A ticker of a subscribed symbol: best bid and ask and the last trade price.

        Args:
            ticker: The newest [`Ticker`][seqtrade.client.Ticker] of one of
                [`symbols`][seqtrade.client.Strategy.symbols].
        """

    def on_book(self, book: Book) -> None:
        """A 5-level book of a subscribed symbol (subscribed to only if this method is overridden).

        Args:
            book: The newest [`Book`][seqtrade.client.Book] snapshot of one of
                [`symbols`][seqtrade.client.Strategy.symbols].
        """

    def on_trade(self, trade: Trade) -> None:
        """A public trade of a subscribed symbol (subscribed to only if this method is overridden).

        Args:
            trade: One [`Trade`][seqtrade.client.Trade] on the venue, anyone's.
        """

    def on_order(self, report: OrderReport) -> None:
        """A report on one of this strategy's orders (state already applied).

        Called once for every new report, in ``seq`` order, with none skipped: reports missed while
        the process was not reading are replayed by the server. By the time it is called,
        [`orders`][seqtrade.client.Strategy.orders],
        [`open_orders`][seqtrade.client.Strategy.open_orders] and
        ``positions`` already include it. A fill is a report with
        ``last_fill_quantity > 0``; a refused order, cancel or amend has ``error_msg`` set.

        Args:
            report: The [`OrderReport`][seqtrade.client.OrderReport].
        """

    def on_depth(self, book: LocalBook) -> None:
        """A full-depth book of [`book_depth`][seqtrade.client.Strategy.book_depth] changed, and is valid.

        Args:
            book: The strategy's own copy ([`LocalBook`][seqtrade.client.LocalBook]), already
                updated; the same object [`book`][seqtrade.client.Strategy.book] returns.
        """

    def on_book_status(self, status: BookStatus) -> None:
        """The server's full-depth book of a symbol of ``book_depth`` changed state.

        ``status.state`` is ``"invalid"`` (a gap or a bad checksum at the venue, a lost connection:
        the server asked for a fresh snapshot), ``"stale"`` (no update from the venue for the
        configured time) or ``"valid"`` again. Until it is valid,
        [`book`][seqtrade.client.Strategy.book] returns None for that symbol.

        Args:
            status: The [`BookStatus`][seqtrade.client.BookStatus].
        """

    def on_account_event(self, event: AccountEvent) -> None:
        """Something the venue did to this strategy's position: funding, a liquidation, an ADL, a
        delivery or a liquidation warning (state already applied: ``positions`` includes it).

        Numbered with the order reports, called once each, in ``seq`` order, like ``on_order``.

        Args:
            event: The [`AccountEvent`][seqtrade.client.AccountEvent].
        """

    def on_mark(self, mark: MarkPrice) -> None:
        """The mark and index price of a subscribed swap or future (subscribed to only if overridden).

        Args:
            mark: The newest [`MarkPrice`][seqtrade.client.MarkPrice].
        """

    def on_funding(self, funding: FundingRate) -> None:
        """The funding rate and the next funding time of a subscribed swap (only if overridden).

        Args:
            funding: The newest [`FundingRate`][seqtrade.client.FundingRate].
        """

    def on_price_limit(self, limit: PriceLimit) -> None:
        """The venue's price limits of a subscribed swap or future (only if overridden): orders
        outside them are refused.

        Args:
            limit: The newest [`PriceLimit`][seqtrade.client.PriceLimit].
        """

    def on_status(self, status: VenueStatus) -> None:
        """Venue connectivity, once a second and on every change.

        Args:
            status: The [`VenueStatus`][seqtrade.client.VenueStatus]; ``status.connected`` False
                means the server has lost the exchange and market data is stale.
        """

    def on_candle(self, candle: Candle) -> None:
        """A candle of one of [`bars`][seqtrade.client.Strategy.bars] of one of the symbols.

        ``candle.confirm`` False: the bar is still open and this is its state so far (it comes again
        as it changes); True: the bar closed, once per bar, in order. After
        [`history`][seqtrade.client.Strategy.history] no closed bar it returned comes again, and none
        is skipped: a closed bar that would skip some is preceded by the missing ones, fetched from
        the server first.

        Args:
            candle: The [`Candle`][seqtrade.client.Candle].
        """

    def on_feed_status(self, status: FeedsStatus) -> None:
        """The health of every market-data feed, once a second and when one goes stale or recovers.

        Only called when overridden (the runner subscribes to ``feed_status/`` then).

        Args:
            status: The [`FeedsStatus`][seqtrade.client.FeedsStatus]: per channel and symbol the
                message rate, the age of the last message, gaps, resubscriptions, the
                exchange-to-gateway delay and whether the feed is stale.
        """

    def on_server_lost(self) -> None:
        """Called when nothing has come from the server for a few seconds (no status message, which
        it sends every second, and no report): it stopped or cannot be reached.

        Market data and positions are stale from here; orders sent now wait in the order channel and
        may be rejected as stale when they arrive. The process keeps trying to re-join (a notice is
        logged) and calls [`on_server_back`][seqtrade.client.Strategy.on_server_back] when it has.
        """

    def on_server_back(self) -> None:
        """Called when the process has re-joined a server it had lost
        ([`on_server_lost`][seqtrade.client.Strategy.on_server_lost]): reports missed meanwhile have
        been applied (``open_orders`` and ``positions`` are up to date) and market data flows again.
        """

    def on_stop(self) -> None:
        """Called once when the strategy stops: after ``stop()``, SIGINT (Ctrl-C) or SIGTERM.

        Only if ``on_start`` was called. Order helpers still work here, and the requests they queue
        are sent before the process exits: ``self.cancel_all()`` leaves nothing resting. Then the
        process says goodbye to the server, which applies its ``dead_strategy_policy`` to the orders
        left open at once (cancel them, or leave them open at the exchange).
        """

    # ------------------------------------------------------------------ history

    def history(self, symbol: str, bar: str, n: int, *, timeout: float = 30.0) -> list[Candle]:
        """The last ``n`` closed bars of ``symbol`` in ``bar`` (oldest first), from the server.

        Blocks until the server answers (at most ``timeout`` seconds: ``TimeoutError``); reports
        that arrive meanwhile are handled after the callback returns, and live candles that arrive
        meanwhile are handed over afterwards without the bars already returned here. The server gets
        them from the venue (OKX's REST candles; the paper venue's own bars since it started), so
        fewer than ``n`` may come: the server's reason is logged. ``n`` is at most 1440.

        Call it from ``on_start`` to warm up: together with
        [`on_candle`][seqtrade.client.Strategy.on_candle] the bars form one series with no bar
        missing and none twice.
        """
        bars = self._fetch_history(symbol, bar, n, timeout)
        if self._protocol is not None:
            self._protocol.candles.seed(bars)
        return bars

    def _fetch_history(self, symbol: str, bar: str, n: int, timeout: float) -> list[Candle]:
        """Ask the server and wait for its answer, holding back every other report frame."""
        if not 1 <= n <= MAX_HISTORY:
            raise ValueError(f"history: n must be between 1 and {MAX_HISTORY}, got {n}")
        conn = self._conn
        if conn is None:
            raise RuntimeError("the strategy is not connected: call history() from callbacks or timers")
        rid = f"{self._ids.prefix}-h{next(self._history_n)}"
        conn.send(HistoryRequest(self.strategy_id, rid, symbol, bar, n))
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            self._keep_alive(now)
            left = deadline - now
            if left <= 0:
                raise TimeoutError(f"history {symbol} {bar}: no answer from the server within {timeout:g} s")
            if not conn.reports.poll(max(1, int(min(left, 0.5) * 1000))):
                continue
            frame = conn.reports.recv()
            try:
                _, _, body = wire.decode_frame(frame)
            except SeqtradeError:
                continue
            if body.get("type") != "history" or body.get("request_id") != rid:
                self._held_reports.append(frame)
                continue
            answer = wire.decode_message(frame)
            if answer.error:
                self.log.warning("history %s %s: %d of %d bars: %s", symbol, bar, len(answer.candles), n,
                                 answer.error)  # fmt: skip
            candles: list[Candle] = answer.candles
            return candles

    def _keep_alive(self, now: float) -> None:
        """While history() waits: the heartbeats (and any hello) the protocol has due, so that a long
        wait never gets the strategy taken for dead."""
        proto, conn = self._protocol, self._conn
        if proto is None or conn is None or not proto.running:
            return
        proto.tick(now, time.time_ns() // 1_000_000)
        for msg in proto.requests_to_send():
            conn.send(msg)

    # ------------------------------------------------------------------ orders

    def _send(self, msg: Any) -> None:
        if self._conn is None:
            raise RuntimeError("the strategy is not connected: call order helpers from callbacks or timers")
        self._conn.send(msg)

    def _order(
        self,
        symbol: str,
        side: Side,
        order_type: OrderType,
        price: float | None,
        quantity: float,
        reduce_only: bool = False,
    ) -> str:
        if self.symbols and symbol not in self.symbols:
            raise ValueError(
                f"{side} {symbol}: not one of this strategy's symbols ({', '.join(self.symbols)}), so it"
                f" receives no prices for it; add it to `symbols` (or run with --param symbol={symbol})"
            )
        coid = self._ids.next()
        conn = self._conn
        if conn is None:
            raise RuntimeError("the strategy is not connected: call order helpers from callbacks or timers")
        ts = self._now_ns() // 1_000_000
        if symbol.__class__ is str:  # the frame from its prebuilt pieces: encode_message's bytes
            frames = self._order_frames
            if frames is None or frames.strategy_id != self.strategy_id:
                frames = self._order_frames = OrderFrames(self.strategy_id)
            conn.send_frame(
                frames.frame(coid, symbol, side, order_type, price, quantity, ts, reduce_only), coid
            )
        else:  # not a symbol: the codec packs whatever it is, as it always did
            conn.send(
                OrderRequest(
                    self.strategy_id, coid, symbol, side, order_type, price, quantity, ts, reduce_only
                )
            )
        return coid

    def buy_limit(
        self,
        symbol: str,
        price: float,
        quantity: float,
        *,
        order_type: str = "limit",
        reduce_only: bool = False,
    ) -> str:
        """Buy at ``price`` or better. ``order_type``: limit, post_only, ioc or fok. Returns the client_order_id.

        Args:
            symbol: The instrument, e.g. ``"BTC-USDT"``.
            price: The limit price, in quote units; rounded down to the tick.
            quantity: In the instrument's unit: base currency for spot, contracts for swaps and
                futures ([`instrument`][seqtrade.client.Strategy.instrument]); rounded down to the lot.
            order_type: ``"limit"`` (rests until filled or cancelled), ``"post_only"`` (rejected if it
                would trade at once), ``"ioc"`` (fills what it can at once, the rest is cancelled) or
                ``"fok"`` (fills completely at once or is cancelled).
            reduce_only: Swaps and futures: only if it reduces the **account's** position (every
                strategy on the account and positions opened outside seqtrade); otherwise the server
                rejects it with the reason and never sends it ([Derivatives](../derivatives.md)).

        Returns:
            The order's client_order_id, made by this strategy (see
                [how ids are made][seqtrade.client.strategy.OrderIdGenerator]): the key of
                [`orders`][seqtrade.client.Strategy.orders] and of every report on the order.

        Raises:
            ValueError: ``order_type`` is not one of the four, or ``symbol`` is not one of a
                non-empty [`symbols`][seqtrade.client.Strategy.symbols].
            RuntimeError: Called before the strategy runs (e.g. in ``__init__``).
            seqtrade.errors.SeqtradeError: The order channel stayed full for a second: the server is
                not reading requests (is it running?).
        """
        return self._order(symbol, Side.BUY, OrderType(order_type), price, quantity, reduce_only)

    def sell_limit(
        self,
        symbol: str,
        price: float,
        quantity: float,
        *,
        order_type: str = "limit",
        reduce_only: bool = False,
    ) -> str:
        """Sell at ``price`` or better. ``order_type``: limit, post_only, ioc or fok. Returns the client_order_id.

        The mirror of [`buy_limit`][seqtrade.client.Strategy.buy_limit]; the price is rounded up to
        the tick, the quantity down to the lot.

        Args:
            symbol: The instrument, e.g. ``"BTC-USDT"``.
            price: The limit price, in quote units.
            quantity: In the instrument's unit (base currency, or contracts).
            order_type: ``"limit"``, ``"post_only"``, ``"ioc"`` or ``"fok"``.
            reduce_only: Swaps and futures: only if it reduces the **account's** position (every
                strategy on the account and positions opened outside seqtrade); otherwise the server
                rejects it with the reason and never sends it ([Derivatives](../derivatives.md)).

        Returns:
            The order's client_order_id.

        Raises:
            ValueError: ``order_type`` is not one of the four, or ``symbol`` is not one of a
                non-empty [`symbols`][seqtrade.client.Strategy.symbols].
            RuntimeError: Called before the strategy runs.
        """
        return self._order(symbol, Side.SELL, OrderType(order_type), price, quantity, reduce_only)

    def buy_market(self, symbol: str, quantity: float, *, reduce_only: bool = False) -> str:
        """Buy ``quantity`` (base units) at the market. Returns the client_order_id.

        Args:
            symbol: The instrument.
            quantity: In the instrument's unit (base currency for spot, not quote; contracts for
                swaps and futures), rounded down to the lot.
            reduce_only: Swaps and futures: only if it reduces the **account's** position (every
                strategy on the account and positions opened outside seqtrade); otherwise the server
                rejects it with the reason and never sends it ([Derivatives](../derivatives.md)).

        Returns:
            The order's client_order_id.

        Raises:
            ValueError: ``symbol`` is not one of a non-empty
                [`symbols`][seqtrade.client.Strategy.symbols].
        """
        return self._order(symbol, Side.BUY, OrderType.MARKET, None, quantity, reduce_only)

    def sell_market(self, symbol: str, quantity: float, *, reduce_only: bool = False) -> str:
        """Sell ``quantity`` (base units) at the market. Returns the client_order_id.

        Args:
            symbol: The instrument.
            quantity: In the instrument's unit, rounded down to the lot.
            reduce_only: Swaps and futures: only if it reduces the **account's** position (every
                strategy on the account and positions opened outside seqtrade); otherwise the server
                rejects it with the reason and never sends it ([Derivatives](../derivatives.md)).

        Returns:
            The order's client_order_id.

        Raises:
            ValueError: ``symbol`` is not one of a non-empty
                [`symbols`][seqtrade.client.Strategy.symbols].
        """
        return self._order(symbol, Side.SELL, OrderType.MARKET, None, quantity, reduce_only)

    def cancel_order(self, client_order_id: str) -> str:
        """Request a cancel; the outcome arrives in ``on_order``. Returns the client_order_id.

        A cancelled order's report has status ``cancelled`` (it may have filled in part before). A
        cancel that fails (the order filled meanwhile) does not change the order: its report keeps the
        order's status and says why in ``error_msg``. A cancel for an id the server does not know gets
        a ``rejected`` report. Cancels pass every trading state (a halted strategy can still cancel).

        Args:
            client_order_id: The id an order helper returned.

        Returns:
            The same client_order_id.
        """
        self._send(CancelRequest(self.strategy_id, client_order_id))
        return client_order_id

    def amend_order(
        self, client_order_id: str, *, price: float | None = None, quantity: float | None = None
    ) -> str:
        """Change price and/or total quantity; the outcome arrives in ``on_order``.

        The order keeps its client_order_id. If the amend succeeds, the next report on the order shows
        the new ``price`` and ``quantity`` with its status unchanged; if it fails (the order is done,
        the new price would cross the book on a ``post_only`` order, a risk limit), the report keeps
        the old values and its ``error_msg`` starts with ``amend failed:``. An amend is checked against
        the risk limits like a new order and counts towards the order rate limit.

        ``quantity`` is the new **total** quantity, including what has filled already, not the
        remaining quantity: amending an order of 1.0 that has filled 0.4 to ``quantity=0.5`` leaves
        0.1 to fill; a quantity at or below what has filled completes the order as ``filled``. On the
        paper exchange a new price, or a larger quantity, loses the order's place in the queue, and a
        new price that crosses the book trades at once.

        Args:
            client_order_id: The open order to change.
            price: The new limit price, or None to keep it.
            quantity: The new total quantity in base units, or None to keep it.

        Returns:
            The same client_order_id.

        Raises:
            ValueError: Neither ``price`` nor ``quantity`` is given.
        """
        if price is None and quantity is None:
            raise ValueError("amend_order needs a price and/or a quantity")
        self._send(AmendRequest(self.strategy_id, client_order_id, price, quantity))
        return client_order_id

    def cancel_all(self, symbol: str | None = None) -> None:
        """Cancel every open order of this strategy (of one symbol if given).

        Each cancelled order gets its own ``cancelled`` report. Passes every trading state and every
        rate limit: it is the way out.

        Args:
            symbol: Only this symbol's orders; None (the default) for all.
        """
        self._send(CancelAll(self.strategy_id, symbol))

    # ------------------------------------------------------------------ timers and control

    def now(self) -> float:
        """The time, in seconds since the epoch: the wall clock live, the recording's time in a backtest.

        Use it (not ``time.time()``) wherever the strategy's decisions depend on the time: in a
        backtest (`seqtrade backtest`) the wall clock has nothing to do with the market the strategy
        sees, and reading it makes the run differ from one run to the next. In a backtest it moves
        in steps of the lookahead (docs/backtesting.md): during a callback it is the start of the
        window the message belongs to; timers ([`set_timer`][seqtrade.client.Strategy.set_timer])
        run on it too.
        """
        return self._now_ns() / 1e9

    def _now_ns(self) -> int:
        return time.time_ns() if self._virtual_ns is None else self._virtual_ns

    def _advance_clock(self, t_ns: int, call: Callable[[Callable[[], Any]], None]) -> None:
        """A backtest's sync: the clock moves to ``t_ns`` and the timers due by then run. Timers set
        before the first sync (the clock was 0) count from it."""
        if self._virtual_ns == 0:
            for t in self._timers:
                t.when += t_ns / 1e9
            heapq.heapify(self._timers)
        self._virtual_ns = t_ns
        if self._timers:
            self._run_due_timers(t_ns / 1e9, call)

    def set_timer(self, interval: float, callback: Callable[[], Any], *, repeat: bool = True) -> _Timer:
        """Call ``callback`` after ``interval`` seconds (and every ``interval`` if ``repeat``).

        Timers run on the strategy's thread between messages, like the other callbacks, on the
        monotonic clock (in a backtest: the recording's, see `now()`). A repeating timer that fell
        behind (a slow callback) runs once, not once per missed interval. Timers run only while the strategy runs: one set in ``__init__`` fires first
        after ``on_start``.

        Args:
            interval: Seconds until the first call, and between calls if ``repeat``.
            callback: Called with no arguments, e.g. a bound method or a ``lambda``.
            repeat: True (the default): every ``interval`` seconds until cancelled; False: once.

        Returns:
            A handle for [`cancel_timer`][seqtrade.client.Strategy.cancel_timer].
        """
        base = time.monotonic() if self._virtual_ns is None else self._virtual_ns / 1e9
        t = _Timer(base + interval, next(self._timer_seq), interval, callback, repeat)
        heapq.heappush(self._timers, t)
        return t

    @staticmethod
    def cancel_timer(timer: _Timer) -> None:
        """Cancel a timer: its callback is not called again (cancelling it twice is harmless).

        Args:
            timer: What [`set_timer`][seqtrade.client.Strategy.set_timer] returned.
        """
        timer.cancelled = True

    def stop(self) -> None:
        """Stop after the current callback (``on_stop`` is called). Thread-safe.

        The process then leaves: ``on_stop`` runs, the sockets close and
        [`run`][seqtrade.client.run] returns 0. Open orders stay open unless ``on_stop`` cancels them.
        """
        self._stop = True

    # ------------------------------------------------------------------ state

    @property
    def md_gaps(self) -> int:
        """Market-data messages dropped on the way (seen as seq jumps), since the strategy started.

        Market data is never replayed: the server never slows down for a slow reader.
        """
        return self._protocol.md_gaps if self._protocol is not None else 0

    def book(self, symbol: str) -> LocalBook | None:
        """The full-depth book of ``symbol`` (one of [`book_depth`][seqtrade.client.Strategy.book_depth]),
        or None while there is no valid one (not yet received, invalid or stale).

        The book has ``best_bid`` and ``best_ask`` (``(price, size)`` or None), ``mid``, ``spread``,
        ``bids`` and ``asks`` (``[[price, size], ...]``, best first), ``top(n)`` and
        ``size_at(side, price)``. It is the strategy's own copy, kept up to date between callbacks:
        read it, do not change it.
        """
        return self._protocol.books.get(symbol) if self._protocol is not None else None

    def position(self, symbol: str) -> float:
        """This strategy's net position in ``symbol`` (+ long, - short, 0.0 if none), in the
        instrument's unit: base currency for spot, contracts for swaps and futures.

        Counts this strategy's fills only; the same symbol traded by another strategy on the same
        account is not in it (``seqtrade status`` shows every strategy's and the account's net).
        """
        p = self.positions.get(symbol)
        return p.quantity if p else 0.0

    def instrument(self, symbol: str) -> Instrument:
        """The facts of ``symbol`` as the server gave them in its welcome: kind, tick, lot, minimum,
        contract value and currency, linear or inverse, settlement currency, max leverage, expiry.

        Never hard-code a contract size: ``self.instrument("BTC-USDT-SWAP").contract_value`` is 0.01
        (BTC per contract) on OKX today. Raises ``KeyError`` for a symbol the server does not serve
        (or before the join, or from a server too old to send them).
        """
        insts = self._protocol.instruments if self._protocol is not None else {}
        if symbol not in insts:
            raise KeyError(f"no instrument facts for {symbol!r}: the server did not send them")
        return insts[symbol]

    def avg_price(self, symbol: str) -> float:
        """Average entry price of the open position in ``symbol`` (0.0 when flat)."""
        p = self.positions.get(symbol)
        return p.avg_price if p else 0.0

    @property
    def realized_pnl(self) -> float:
        """Realised profit over all symbols, gross of fees (subtract [`fees`][seqtrade.client.Strategy.fees]).

        A plain sum: with instruments settled in different currencies (USDT and BTC) read
        ``positions[symbol].realized_pnl`` and its ``currency`` instead.

        Only closed trades count; the open position's unrealised PnL is not in it.
        """
        return sum(p.realized_pnl for p in self.positions.values())

    @property
    def fees(self) -> float:
        """Fees paid over all symbols, in quote units (positive: paid; a rebate lowers it)."""
        return sum(p.fees for p in self.positions.values())

    def _apply_report(self, r: OrderReport) -> None:
        """Update local state from one report (each report is applied once, in seq order)."""
        coid = r.client_order_id
        self.orders[coid] = r
        if r.status in OPEN_STATUSES:
            self.open_orders[coid] = r
        else:
            self.open_orders.pop(coid, None)
        if r.symbol:
            pos = self.positions.get(r.symbol)
            if pos is None and (r.last_fill_quantity > 0 or r.fee != 0):
                pos = self.positions[r.symbol] = self._new_position(r.symbol)
            if pos is not None:
                if r.last_fill_quantity > 0:
                    pos.apply_fill(r.side, r.last_fill_quantity, r.last_fill_price)
                pos.fees += self._fees.change(coid, r.fee)  # reports come in seq order (rebates < 0)

    def _new_position(self, symbol: str) -> Position:
        inst = self._protocol.instruments.get(symbol) if self._protocol is not None else None
        return Position(currency=money_currency(inst) if inst else "", instrument=inst)

    def _apply_account_event(self, e: AccountEvent) -> None:
        """Update ``positions`` from one account event (each applied once, in seq order)."""
        pos = self.positions.get(e.symbol)
        if pos is None:
            if not e.quantity and not e.amount:
                return
            pos = self.positions[e.symbol] = self._new_position(e.symbol)
        if e.quantity:
            pos.quantity += e.quantity
            if abs(pos.quantity) <= 1e-12:
                pos.quantity, pos.avg_price = 0.0, 0.0
        pos.funding += e.amount

    def _reset_open_orders(self, open_orders: Mapping[str, OrderReport]) -> None:
        self.open_orders = dict(open_orders)

    def _run_due_timers(self, now: float, call: Callable[[Callable[[], Any]], None]) -> float | None:
        """Run the timers that are due, each through ``call`` (the runner's guard, which logs an
        exception and goes on); the time of the next one."""
        timers = self._timers
        while timers and timers[0].when <= now:
            t = heapq.heappop(timers)
            if t.cancelled:
                continue
            if t.repeat:
                t.when = max(t.when + t.interval, now)
                heapq.heappush(timers, t)
            call(t.callback)
            if self._stop:
                break
        while timers and timers[0].cancelled:
            heapq.heappop(timers)
        return timers[0].when if timers else None
