"""The paper exchange: a venue with a synthetic market and a local matching engine.

No network, no keys. :class:`PaperVenue` implements :class:`~seqtrade.venues.base.Venue`, so the
server cannot tell it from OKX. The market is a seeded random walk per symbol (repeatable runs); the
matching lives in the pure :mod:`seqtrade.venues.matching`. Candles of the bars asked for
(``[candles] bars``) are built from the venue's own public trades by the pure
:class:`~seqtrade.candles.CandleBuilder`, in OKX's forms (a bar for every interval, the open bar as it
changes, each bar once more when it closes); the last ``keep`` closed bars of each are its history,
in memory (a restarted server starts a new history).
matching lives in the pure :mod:`seqtrade.venues.matching`.

Perpetual swaps (``BTC-USDT-SWAP`` linear, ``BTC-USD-SWAP`` inverse) trade on margin, in contracts, in
**net mode only** (one position per swap; ``venue.derivatives.position_mode = "long_short"`` is refused
at start). Their rules are the pure :mod:`seqtrade.venues.paper_derivs`; this shell feeds them the mark
price (the mid of the swap's own synthetic book, also its index price), settles funding every
``venue.paper.funding_interval`` seconds (at multiples of it since the epoch, as OKX does at 00:00,
08:00 and 16:00 UTC; every time it did not run past, after a stall or a stop, settled when it runs
again, each at its own time and rate: the pure :mod:`seqtrade.venues.paper_funding`) and liquidates a
position whose margin has run out at every market step. Funding
and liquidations reach the server as account events (``VenueSink.account_event``), each committed to
the paper account before it is handed over and marked handed over only when the hand-over returns,
which is once the server has journaled it; what was not marked is handed over again at the next start
(the server applies an event id once).
Dated futures are not simulated.

Its time is :attr:`PaperVenue.clock` (:mod:`seqtrade.clock`): the wall clock, or with ``[venue.paper]
time_scale`` that many times faster from the venue's start, so that a recording covers minutes in
seconds. The market's steps (``tick_interval``), bar closes, funding times, the full books' periodic
snapshots and every ``ts`` it gives follow it; its dead-man's switch stays on Trio's clock. The
server takes the same clock for its stamps.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path

import trio

from ..candles import MAX_HISTORY, Candle, CandleBuilder
from ..clock import Clock
from ..config import DerivativesConfig, PaperConfig, VenueConfig
from ..errors import ConfigError
from ..instruments import InstrumentKind, kind_of
from ..models import AccountEventKind, Book, FundingRate, MarkPrice, PriceLimit, Side, Ticker, Trade
from .base import Instrument, OrderEvent, Venue, VenueAccountEvent, VenueOrder, VenuePosition, VenueSink
from .matching import MatchingEngine
from .paper_account import Balance
from .paper_book import PaperDepth
from .paper_derivs import (
    AccountChange,
    ContractSpec,
    funding_rate,
    liquidation_price,
    margin_ratio,
    next_funding_time,
    unrealised_pnl,
)
from .paper_funding import MAX_FUNDING_CATCH_UP, funding_due
from .paper_store import PaperStore

__all__ = ["PaperVenue"]

log = logging.getLogger(__name__)

BOOK_DEPTH = 5


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _decimals(step: float) -> int:
    """Decimal places needed to print multiples of ``step`` exactly (0.1 -> 1, 0.25 -> 2, 5 -> 0)."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # not NaN or infinity: the config checks step > 0
    return max(0, -exponent)


def paper_instrument(
    symbol: str, cfg: PaperConfig, derivatives: DerivativesConfig | None = None
) -> tuple[Instrument, ContractSpec | None]:
    """The facts of ``symbol`` on the paper venue, and for a swap its terms (None for spot).

    A swap's quote part names its kind: ``USDT``/``USDC`` linear (a contract is ``contract_value``
    base coins, money in the quote), ``USD`` inverse (a contract is ``contract_value`` USD, money in
    the base coin). Defaults: 0.01 BTC, 0.1 ETH, else 1 coin a contract, lot 0.01 (linear); 100 USD
    for BTC, else 10 USD, lot 1 (inverse); ``venue.paper.contracts`` overrides them."""
    parts = symbol.split("-")
    base, quote = parts[0], (parts[1] if len(parts) > 1 else "QUOTE")
    kind = kind_of(symbol)
    if kind is InstrumentKind.SPOT:
        inst = Instrument(symbol, cfg.tick_size, cfg.lot_size, cfg.min_size, kind=kind,
                          contract_currency=base, settle_currency=quote, base_currency=base,
                          quote_currency=quote)  # fmt: skip
        return inst, None
    if kind is not InstrumentKind.SWAP:
        raise ConfigError(
            f"venue.symbols: {symbol} is a dated future; the paper venue trades spot and perpetual swaps"
        )
    inverse = quote == "USD"
    c = cfg.contracts.get(symbol)
    if inverse:
        ct_val, lot = (100.0 if base == "BTC" else 10.0), 1.0
    else:
        ct_val, lot = {"BTC": 0.01, "ETH": 0.1}.get(base, 1.0), 0.01
    if c is not None:
        ct_val, lot = c.contract_value or ct_val, c.lot_size or lot
    min_size = c.min_size if c is not None and c.min_size else lot
    max_lev = c.max_leverage if c is not None else 100.0
    settle = base if inverse else quote
    inst = Instrument(symbol, cfg.tick_size, lot, min_size, contract_value=ct_val, kind=kind,
                      contract_currency="USD" if inverse else base, settle_currency=settle,
                      base_currency=base, quote_currency=quote, inverse=inverse, max_leverage=max_lev)  # fmt: skip
    setup = derivatives.setup(symbol) if derivatives is not None else None
    leverage = setup.leverage if setup is not None and setup.leverage else cfg.leverage
    if leverage > max_lev:
        raise ConfigError(
            f"leverage of {symbol}: {leverage:g}x exceeds the paper venue's maximum {max_lev:g}x"
        )
    spec = ContractSpec(symbol, ct_val, lot, inverse=inverse, settle_currency=settle, leverage=leverage,
                        margin_mode=setup.margin_mode if setup is not None else "cross",
                        maintenance_margin_rate=cfg.maintenance_margin_rate,
                        liquidation_fee_rate=cfg.liquidation_fee_rate)  # fmt: skip
    return inst, spec


def _default_start_price(symbol: str) -> float:
    """Where a symbol's random walk starts when the config names no price."""
    if symbol.startswith("BTC-"):
        return 60_000.0
    if symbol.startswith("ETH-"):
        return 3_000.0
    return 100.0


class _Walk:
    """The synthetic market of one symbol: a random walk of the mid and the book around it."""

    __slots__ = (
        "last",
        "level_size",
        "lot",
        "mid",
        "price_dp",
        "rng",
        "size_dp",
        "spread",
        "symbol",
        "tick",
        "trade_probability",
        "volatility",
        "volume",
    )

    def __init__(self, symbol: str, index: int, cfg: PaperConfig, inst: Instrument | None = None) -> None:
        self.symbol = symbol
        self.rng = random.Random(cfg.seed * 1_000_003 + index)
        self.tick = cfg.tick_size
        self.lot = cfg.lot_size if inst is None else inst.lot_size
        self.price_dp = _decimals(cfg.tick_size)
        self.size_dp = _decimals(self.lot)
        self.volatility = cfg.volatility
        self.spread = max(1, cfg.spread_ticks)
        self.trade_probability = cfg.trade_probability
        self.mid = cfg.start_prices.get(symbol, _default_start_price(symbol))
        # level_size is in base coins: a swap's book shows as many contracts
        self.level_size = cfg.level_size
        if inst is not None and inst.is_derivative:
            coins = inst.contract_value / self.mid if inst.inverse else inst.contract_value
            self.level_size = max(self.lot, round(cfg.level_size / coins / self.lot) * self.lot)
        self.last = self.price(self.mid / self.tick)
        self.volume = 0.0

    def price(self, ticks: float) -> float:
        return round(round(ticks) * self.tick, self.price_dp)

    def size(self, lots: float) -> float:
        return round(max(1, int(lots)) * self.lot, self.size_dp)

    def step(self) -> None:
        self.mid = max(self.mid * (1.0 + self.rng.gauss(0.0, self.volatility)), (self.spread + 1) * self.tick)

    def book(self) -> tuple[list[list[float]], list[list[float]]]:
        """Five levels a side around the mid, ``spread`` ticks wide, sizes about ``level_size``."""
        bid_ticks = max(1, round(self.mid / self.tick - self.spread / 2))
        uniform = self.rng.uniform
        per_level = self.level_size / self.lot
        bids = [
            [self.price(bid_ticks - i), self.size(per_level * uniform(0.5, 1.5))]
            for i in range(BOOK_DEPTH)
            if bid_ticks - i > 0
        ]
        asks = [
            [self.price(bid_ticks + self.spread + i), self.size(per_level * uniform(0.5, 1.5))]
            for i in range(BOOK_DEPTH)
        ]
        return bids, asks

    def maybe_trade(
        self, bids: list[list[float]], asks: list[list[float]]
    ) -> tuple[Side, float, float] | None:
        """A public trade at the touch with ``trade_probability``: (taker side, price, size)."""
        if self.rng.random() >= self.trade_probability:
            return None
        side = Side.BUY if self.rng.random() < 0.5 else Side.SELL
        price = asks[0][0] if side is Side.BUY or not bids else bids[0][0]
        size = self.size(self.level_size / self.lot * self.rng.uniform(0.05, 0.5))
        self.last = price
        self.volume += size
        return side, price, size


class PaperVenue(Venue):
    """The embedded paper exchange: a seeded synthetic market and a matching engine, no network.

    Owns the market simulation of ``symbols``, the paper account's orders, its net positions and its
    balances (``venue.paper.balances`` to start; orders the account cannot pay for are rejected). :meth:`run` is the one long-running task: it publishes market data, fills resting
    orders as the market moves and runs the ``cancel_all_after`` dead-man's switch, until cancelled.
    Order requests are matched inline: ``place_order``/``cancel_order``/``amend_order`` compute their
    events at once and await ``sink.order_event`` for each, in the order they were computed across all
    tasks; a call that finds another task already delivering leaves its events to that task and
    returns. Backpressure: market data is handed to ``sink.publish_market`` (which drops when the feed
    lags, never blocks); order events wait for the sink, which also holds up the market loop.

    Test hooks (public, for deterministic tests): :meth:`set_market` and :meth:`print_trade` force the
    market and run the matching; with a long ``tick_interval`` the random walk stays out of the way.
    """

    name = "paper"

    def __init__(
        self,
        cfg: PaperConfig,
        symbols: list[str],
        *,
        state_path: Path | None = None,
        bars: Sequence[str] = (),
        keep: int = MAX_HISTORY,
        clock: Callable[[], int] | None = None,
        derivatives: DerivativesConfig | None = None,
    ) -> None:
        """``bars``: candle bar sizes built for every symbol, the last ``keep`` closed bars of each kept;
        ``clock``: the venue's time in epoch ms (default :attr:`clock`'s); ``derivatives``: the swaps'
        margin mode and leverage (``[venue.derivatives]``); the paper account runs net mode only and
        refuses ``position_mode = "long_short"``."""
        if derivatives is not None and derivatives.position_mode != "net":
            raise ConfigError(
                "venue.derivatives.position_mode: the paper venue runs net mode only (one position per"
                ' swap); set position_mode = "net"'
            )
        self._cfg = cfg
        # The venue's time (seqtrade.clock): the wall clock, or ``time_scale`` times faster. The server
        # takes it for its own stamps (seqtrade.server.app), so both keep the same time.
        self.clock = Clock(cfg.time_scale)
        self._clock = clock or self.clock.time_ms
        self._candles = CandleBuilder(symbols, bars, keep=keep)
        # The account on disk (orders, fills, positions, id counters), loaded by run(); None: in memory.
        self._state_path = state_path
        self._store: PaperStore | None = None
        facts = {sym: paper_instrument(sym, cfg, derivatives) for sym in symbols}
        self._instruments = {sym: inst for sym, (inst, _) in facts.items()}
        self._specs = {sym: spec for sym, (_, spec) in facts.items() if spec is not None}
        self._engine = MatchingEngine(
            self._instruments,
            maker_fee=cfg.maker_fee,
            taker_fee=cfg.taker_fee,
            balances=cfg.balances,
            contracts=self._specs,
            price_limit_band=cfg.price_limit_band,
            warning_ratio=cfg.liquidation_warning_ratio,
        )
        self._walks = {sym: _Walk(sym, i, cfg, self._instruments[sym]) for i, sym in enumerate(symbols)}
        # the full-depth books (paper_book.py), with random numbers of their own: the walk stays as it was
        self._depths = {
            sym: PaperDepth(
                sym, tick=w.tick, price_dp=w.price_dp, lot=w.lot, size_dp=w.size_dp, level_size=w.level_size,
                rng=random.Random(cfg.seed * 1_000_003 + i + 500_009), levels=cfg.depth_levels,
            )
            for i, (sym, w) in enumerate(self._walks.items())
            if cfg.depth_levels > 0
        }  # fmt: skip
        self._sink: VenueSink | None = None
        self._outbox: deque[OrderEvent | AccountChange] = deque()
        self._funding_interval_ms = max(1, round(cfg.funding_interval * 1000))
        self._funding_ms = 0  # the last funding time settled; set by run()
        self._funding_published = 0  # ms of the last FundingRate published
        self._funding_next = 0  # the next funding time it announced
        self._delivering = False
        self._dms_deadline = math.inf  # trio time at which cancel-all-after fires
        self._dms_scope: trio.CancelScope | None = None

    simulated = True

    @classmethod
    def state_files(cls, config: VenueConfig, run_dir: Path) -> list[Path]:
        path = config.paper.state_path
        return [run_dir / path] if path else []

    @classmethod
    def describe(cls, config: VenueConfig) -> list[str]:
        p = config.paper
        balances = ", ".join(f"{v:g} {k}" for k, v in p.balances.items()) or "nothing"
        kept = f"kept in <run dir>/{p.state_path}" if p.state_path else "in memory, lost on restart"
        lines = [
            "venue: paper",
            f"paper account (simulated: no keys, no network): starts with {balances} ({kept}; `seqtrade reset` starts over);"
            " buys need the quote currency, sells the coins",
        ]
        if p.time_scale != 1.0:
            lines.append(f"paper clock: {p.time_scale:g}x the wall clock (a minute of market every {60 / p.time_scale:.3g} s;"
                         " strategies and the server's timers keep the wall clock)")  # fmt: skip
        swaps = [s for s in config.symbols if kind_of(s) is not InstrumentKind.SPOT]
        if config.derivatives.position_mode != "net":
            lines.append('venue.derivatives.position_mode = "long_short": refused at start: the paper venue runs'
                         " net mode only")  # fmt: skip
        if swaps:
            lines.append(
                f"paper swaps {', '.join(swaps)}: net mode, margin in the settlement currency, funding every"
                f" {p.funding_interval:g} s at {p.funding_rate:g} (+- {p.funding_rate_jitter:g}), liquidation"
                f" below {p.maintenance_margin_rate:g} of the position value"
            )
        return lines

    @property
    def instruments(self) -> dict[str, Instrument]:
        return self._instruments

    # ------------------------------------------------------------------ the task

    async def run(
        self, sink: VenueSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Publish the synthetic market and fill resting orders until cancelled.

        Owns the market loop and the dead-man's switch; reports started (orders may be placed) after
        ``sink.set_connected(True)`` and the first market snapshot. Cancel it to stop; it reports
        ``set_connected(False)`` on the way out.
        """
        self._sink = sink
        if self._state_path is not None and self._store is None:
            self._store = PaperStore.open(self._state_path, self._engine)
            self._funding_ms = self._store.funding_ms
            pending = self._store.pending()
            if pending:
                log.info("paper account: %d account changes not known to be journaled before the server"
                         " stopped: handing them over again (each is applied once)", len(pending))  # fmt: skip
            self._outbox.extend(pending)  # taken by the server only after this start
        if not self._funding_ms:  # a new account: the first funding is the next one due
            self._funding_ms = self._clock() // self._funding_interval_ms * self._funding_interval_ms
            if self._store is not None:  # remembered: a restart settles every time since
                self._store.save((), funding_ms=self._funding_ms)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._run_dead_mans_switch)
                nursery.start_soon(self._run_candles, sink)
                sink.set_connected(True)
                await self._run_market(sink, task_status)
        finally:
            sink.set_connected(False)

    async def _run_market(self, sink: VenueSink, task_status: trio.TaskStatus[None]) -> None:
        """The market loop: one snapshot of every symbol, ``started``, then a random-walk step of every
        symbol each ``tick_interval``. (The benchmark's feed, :mod:`seqtrade.bench.feed`, replaces it.)"""
        ts = self._clock()
        if self._specs:
            # the funding times missed while the venue was stopped, on the positions as they were (before
            # the first book can fill a resting order) at the mark the market opens at; committed now,
            # handed over below with what a restart left to hand over
            for sym in self._specs:
                walk = self._walks[sym]
                self._engine.set_mark(sym, walk.price(walk.mid / walk.tick))
            liquidated, funding, last = self._funding_due(ts)
            self._commit(liquidated, changes=funding, funding_ms=last)
        for walk in self._walks.values():
            self._publish_candles(sink, self._candles.start(walk.symbol, walk.last, ts))
            await self._publish_walk(sink, walk, ts)
        task_status.started()
        await self._run_derivs(ts)  # and what a restart left to hand over
        await self._run_walk(sink)

    async def _run_walk(self, sink: VenueSink) -> None:
        interval = self.clock.wall_seconds(self._cfg.tick_interval)  # tick_interval is the venue's time
        wake = trio.current_time()
        while True:
            wake = max(wake + interval, trio.current_time())  # after a stall: no burst to catch up
            await trio.sleep_until(wake)
            ts = self._clock()
            if self._specs:  # the funding due by now at the marks that held until now, then the step
                await self._settle_funding_due(ts)
            for walk in self._walks.values():
                walk.step()
                await self._publish_walk(sink, walk, ts)
            await self._run_derivs(ts)
            if self._outbox:  # left behind by a caller that was cancelled while delivering
                await self._deliver(())

    async def _run_derivs(self, ts: int) -> None:
        """The swaps' account at one market step: liquidate what has run out of margin, settle the
        funding that is due, and hand both over (committed first)."""
        if not self._specs:
            return
        events, changes = self._engine.liquidations(ts)
        for c in changes:
            log.warning("paper %s %s: %+g contracts at %g, %+.8g %s (%s)",
                        c.kind, c.symbol, c.quantity, c.price, c.amount, c.currency, c.event_id)  # fmt: skip
        await self._settle_funding_due(ts, events, changes)

    async def _settle_funding_due(
        self, now: int, events: Sequence[OrderEvent] = (), changes: Sequence[AccountChange] = ()
    ) -> None:
        """Settle the funding due by ``now`` (:meth:`_funding_due`) and hand it over, committed in one
        transaction with the newest time settled and with ``events``/``changes`` (a liquidation of the
        same step)."""
        liquidated, funding, last = self._funding_due(now)
        await self._deliver([*events, *liquidated], changes=[*changes, *funding], funding_ms=last)

    def _funding_due(self, now: int) -> tuple[list[OrderEvent], list[AccountChange], int | None]:
        """Settle every funding time due by ``now`` (:func:`~seqtrade.venues.paper_funding.funding_due`)
        in the engine: each at the swaps' marks, at the rate announced for it, stamped with its own
        time, oldest first; after a stall or a stop every time missed (up to the cap; logged). After
        each time a position whose margin it used up is liquidated at that time, as OKX would have
        while nobody watched (the later times find it closed; the cash never goes below zero).
        Returns the liquidations' order events, the settlements and liquidations in time order, and
        the newest time settled (None: none due), for the caller to commit."""
        due = funding_due(self._funding_ms, now, self._funding_interval_ms, self._funding_rates)
        events: list[OrderEvent] = []
        changes: list[AccountChange] = []
        funding = 0
        for t, rates in due.settle:
            settled = self._engine.settle_funding(t, rates, t)
            funding += len(settled)
            changes += settled
            if settled:
                cancels, liquidations = self._engine.liquidations(t)
                events += cancels
                changes += liquidations
        if due.skipped:
            log.warning(
                "paper funding: %d funding times missed from %d ms on (the venue did not run for %.0f"
                " intervals) are beyond the cap of %d settled at once: not settled", due.skipped,
                due.skipped_from, (now - self._funding_ms) / self._funding_interval_ms, MAX_FUNDING_CATCH_UP,
            )  # fmt: skip
        if len(due.settle) > 1:
            log.log(
                logging.WARNING if changes else logging.INFO,
                "paper funding: %d funding times due at once (%d to %d ms: the venue did not run past"
                " them), each settled at its own time and rate: %d account events", len(due.settle),
                due.settle[0][0], due.settle[-1][0], funding,
            )  # fmt: skip
        for c in changes:
            log.log(logging.INFO if c.kind == "funding" else logging.WARNING,
                    "paper %s %s: %+g contracts at %g, %+.8g %s (%s)",
                    c.kind, c.symbol, c.quantity, c.price, c.amount, c.currency, c.event_id)  # fmt: skip
        if due.last is not None:
            self._funding_ms = due.last
        return events, changes, due.last

    def _funding_rates(self, funding_ms: int) -> dict[str, float]:
        cfg = self._cfg
        return {
            sym: funding_rate(
                sym, funding_ms, base=cfg.funding_rate, jitter=cfg.funding_rate_jitter, seed=cfg.seed
            )
            for sym in self._specs
        }

    async def _publish_walk(self, sink: VenueSink, walk: _Walk, ts: int) -> None:
        bids, asks = walk.book()
        engine = self._engine
        events = list(engine.set_book(walk.symbol, bids, asks, ts))
        trade = walk.maybe_trade(bids, asks)
        if trade is not None:
            side, price, size = trade
            events.extend(engine.on_trade(walk.symbol, price, size, side, ts))
        sink.publish_market(
            Ticker(walk.symbol, ts, walk.last, bids[0][0], asks[0][0], bids[0][1], asks[0][1], walk.volume)
        )
        sink.publish_market(Book(walk.symbol, ts, bids, asks))
        self._publish_depth(walk.symbol, bids, asks, ts)
        if trade is not None:
            sink.publish_market(Trade(walk.symbol, ts, engine.next_trade_id(), price, size, str(side)))
            depth = self._depths.get(walk.symbol)
            if depth is not None:
                for msg in depth.trade(str(side), size, ts, self._venue_seconds()):
                    sink.publish_market(msg)
            self._publish_candles(sink, self._candles.on_trade(walk.symbol, price, size, ts))
        if walk.symbol in self._specs:
            self._publish_mark(sink, walk, bids[0][0], asks[0][0], ts)
        if events:
            await self._deliver(events)

    async def _run_candles(self, sink: VenueSink) -> None:
        """Close each bar when its time is up, with or without a trade in it."""
        builder = self._candles
        while True:
            due = builder.next_close()
            if due is None:
                await trio.sleep(1.0)
                continue
            await trio.sleep(self.clock.wall_seconds(max(0.0, (due - self._clock()) / 1000)))
            self._publish_candles(sink, builder.advance(self._clock()))

    @staticmethod
    def _publish_candles(sink: VenueSink, candles: list[Candle]) -> None:
        for c in candles:
            sink.publish_market(c)

    async def candles(self, symbol: str, bar: str, n: int) -> list[Candle]:
        """The last ``n`` closed bars the venue built (since the server started, at most ``keep``)."""
        builder = self._candles
        if not builder.serves(symbol, bar):
            served = ", ".join(builder.bars) or "none: [candles] bars is empty"
            raise ValueError(f"bar {bar} of {symbol} is not served (bars served: {served})")
        if self._sink is not None:  # bars whose time is up are closed first (and published)
            self._publish_candles(self._sink, builder.advance(self._clock()))
        return builder.closed(symbol, bar, n)

    def _publish_mark(self, sink: VenueSink, walk: _Walk, bid: float, ask: float, ts: int) -> None:
        """A swap's mark price (the mid of its book; the paper market has no other index) to the
        engine and the bus with its price limits; its funding rate once a second and after each settlement."""
        mark = walk.price((bid + ask) / 2 / walk.tick)
        self._engine.set_mark(walk.symbol, mark)
        sink.publish_market(MarkPrice(walk.symbol, ts, mark, mark))
        limits = self._engine.price_limits(walk.symbol)
        if limits is not None:
            sink.publish_market(PriceLimit(walk.symbol, ts, *limits))
        nxt = next_funding_time(ts, self._funding_interval_ms)
        if ts - self._funding_published >= 1000 or ts < self._funding_published or nxt != self._funding_next:
            # once a second, and at the first mark after a settlement: every funding time is announced
            # before it is due (a backtest settles the times its recording announced, and only those)
            self._funding_published, self._funding_next = ts, nxt
            for sym, rate in self._funding_rates(nxt).items():
                sink.publish_market(FundingRate(sym, ts, rate, nxt, self._funding_interval_ms))

    async def _run_dead_mans_switch(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._dms_deadline) as scope:
                self._dms_scope = scope
                await trio.sleep_forever()
            self._dms_scope = None
            self._dms_deadline = math.inf
            log.warning("cancel-all-after triggered: cancelling every open order")
            await self._deliver(self._engine.cancel_all(self._clock(), reason="cancel-all-after triggered"))

    def _commit(
        self,
        events: Iterable[OrderEvent],
        submitted: str = "",
        *,
        changes: list[AccountChange] | None = None,
        funding_ms: int | None = None,
    ) -> None:
        """Commit the state ``events`` and ``changes`` describe (:meth:`_deliver`) and queue them to be
        handed over, without handing them over."""
        events = list(events)
        if self._store is not None and (events or submitted or changes or funding_ms is not None):
            self._store.save(events, submitted, changes=changes or (), funding_ms=funding_ms)
        self._outbox.extend(events)
        self._outbox.extend(changes or ())

    async def _deliver(
        self,
        events: Iterable[OrderEvent],
        submitted: str = "",
        *,
        changes: list[AccountChange] | None = None,
        funding_ms: int | None = None,
    ) -> None:
        """Queue ``events`` (then ``changes``) and deliver the queue in order, unless another task is
        delivering it.

        With a persistent account the state ``events`` and ``changes`` describe is committed first
        (``submitted``: the id of an order just submitted, counted; ``funding_ms``: a funding time
        settled). An account change is marked delivered in the store once its hand-over returns:
        the server has journaled it then (``VenueSink.account_event``). A kill -9 between the commit
        and that mark leaves it unmarked: handed over again at the next start, applied once."""
        self._commit(events, submitted, changes=changes, funding_ms=funding_ms)
        sink = self._require_sink()
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._outbox:
                # popped only once delivered: an event re-sent after a cancellation is harmless
                item = self._outbox[0]
                if isinstance(item, AccountChange):
                    await sink.account_event(_venue_event(item))  # returns once journaled
                    if self._store is not None:
                        self._store.delivered((item.event_id,))
                else:
                    await sink.order_event(item)
                self._outbox.popleft()
        finally:
            self._delivering = False

    # ------------------------------------------------------------------ orders

    def _funding_before_fills(self, now: int) -> None:
        """Commit and queue (to be handed over first) the funding due by ``now`` before an order can
        fill: a funding time that passed belongs to the position held then, also when the order is
        taken before the market loop's next step (after a stall, the strategies' orders wait)."""
        if self._specs and self._funding_ms:
            liquidated, funding, last = self._funding_due(now)
            if last is not None:
                self._commit(liquidated, changes=funding, funding_ms=last)

    async def place_order(self, order: VenueOrder) -> None:
        now = self._clock()
        self._funding_before_fills(now)
        await self._deliver(self._engine.submit(order, now), order.venue_order_id)

    async def cancel_order(self, venue_order_id: str, symbol: str) -> None:
        await self._deliver((self._engine.cancel(venue_order_id, self._clock()),))

    async def amend_order(
        self, venue_order_id: str, symbol: str, price: float | None, quantity: float | None
    ) -> None:
        now = self._clock()
        self._funding_before_fills(now)
        await self._deliver(self._engine.amend(venue_order_id, price, quantity, now))

    async def query_order(self, venue_order_id: str, symbol: str) -> OrderEvent | None:
        return self._engine.query(venue_order_id)

    async def open_orders(self) -> list[OrderEvent]:
        return self._engine.open_orders()

    async def positions(self) -> dict[str, float]:
        """Net position per symbol (+ bought), for reconciliation: base units for spot, contracts for
        swaps."""
        return self._engine.positions()

    async def position_details(self) -> list[VenuePosition]:
        """Every open swap position (net mode) with its mark, liquidation price, margin ratio,
        unrealised PnL and funding."""
        eng = self._engine
        marks, cash = eng.marks(), eng.balances()
        out = []
        for sym, pos in eng.deriv_positions().items():
            if not pos.quantity:
                continue
            spec = self._specs[sym]
            mark = marks.get(sym, pos.avg_price)
            wallet = cash.get(spec.settle_currency, 0.0)
            ratio = margin_ratio(self._specs, eng.deriv_positions(), {**marks, sym: mark}, cash, sym)
            out.append(VenuePosition(
                sym, pos.quantity, "", pos.avg_price, mark, liquidation_price(spec, pos, wallet) or 0.0,
                0.0 if math.isinf(ratio) else ratio, unrealised_pnl(spec, pos, mark), pos.funding,
                spec.settle_currency, spec.margin_mode, spec.leverage,
            ))  # fmt: skip
        return out

    async def balances(self) -> dict[str, float]:
        """Total per currency (available + frozen by open orders): the starting balances
        (``venue.paper.balances``) plus what was bought and sold, minus fees."""
        return self._engine.balances()

    def account(self) -> dict[str, Balance]:
        """Available and frozen per currency."""
        return self._engine.account()

    async def cancel_all_after(self, timeout_s: float) -> None:
        """Arm the dead-man's switch for ``timeout_s`` seconds from now (re-arming moves it), or
        disarm it with 0. When it fires, every open order is cancelled ("cancel-all-after
        triggered") and the switch disarms."""
        self._dms_deadline = trio.current_time() + timeout_s if timeout_s > 0 else math.inf
        if self._dms_scope is not None:
            self._dms_scope.deadline = self._dms_deadline

    # ------------------------------------------------------------------ test hooks

    async def set_market(
        self,
        symbol: str,
        bid: float,
        ask: float,
        *,
        bid_size: float | None = None,
        ask_size: float | None = None,
    ) -> None:
        """Test hook: force the market of ``symbol`` and match resting orders against it.

        The book becomes ``bid``/``ask`` with the given sizes (default ``level_size``, in contracts for a swap) at the top and
        four more levels a tick apart of ``level_size`` each; a ticker and the book are published. The
        random walk continues from this mid at its next step.
        """
        if not bid < ask:
            raise ValueError(f"set_market: bid {bid} must be below ask {ask}")
        walk = self._walks[symbol]
        size = walk.level_size  # a swap's in contracts
        bids = [[bid, size if bid_size is None else bid_size]]
        asks = [[ask, size if ask_size is None else ask_size]]
        for i in range(1, BOOK_DEPTH):
            asks.append([round(ask + i * walk.tick, walk.price_dp), size])
            below = round(bid - i * walk.tick, walk.price_dp)
            if below > 0:
                bids.append([below, size])
        walk.mid = (bid + ask) / 2
        ts = self._clock()
        self._funding_before_fills(ts)  # and before the new mark
        events = self._engine.set_book(symbol, bids, asks, ts)
        sink = self._require_sink()
        sink.publish_market(Ticker(symbol, ts, walk.last, bid, ask, bids[0][1], asks[0][1], walk.volume))
        sink.publish_market(Book(symbol, ts, bids, asks))
        self._publish_depth(symbol, bids, asks, ts)
        if symbol in self._specs:
            self._publish_mark(sink, walk, bid, ask, ts)
        await self._deliver(events)
        await self._run_derivs(ts)  # a liquidation the new mark causes

    async def settle_funding(self, rate: float | None = None) -> list[AccountChange]:
        """Test hook: a funding settlement now ("funding on demand"), outside the schedule, at each
        swap's mark and ``rate`` (None: the configured model); id ``funding-<symbol>-<now ms>``."""
        ts = self._clock()
        rates = self._funding_rates(ts) if rate is None else dict.fromkeys(self._specs, rate)
        changes = self._engine.settle_funding(ts, rates, ts)
        await self._deliver((), changes=changes)
        return changes

    def _publish_depth(self, symbol: str, bids: list[list[float]], asks: list[list[float]], ts: int) -> None:
        """The full-depth book follows the new top (its own messages: docs/books.md)."""
        depth = self._depths.get(symbol)
        if depth is not None:
            sink = self._require_sink()
            for msg in depth.step(bids, asks, ts, self._venue_seconds()):
                sink.publish_market(msg)

    async def print_trade(self, symbol: str, price: float, size: float, side: Side) -> None:
        """Test hook: a public trade of ``size`` at ``price`` with taker ``side``; fills the resting
        orders it prints through and publishes the trade."""
        walk = self._walks[symbol]
        walk.last = price
        walk.volume += size
        ts = self._clock()
        self._funding_before_fills(ts)
        events = self._engine.on_trade(symbol, price, size, side, ts)
        sink = self._require_sink()
        sink.publish_market(Trade(symbol, ts, self._engine.next_trade_id(), price, size, str(side)))
        self._publish_candles(sink, self._candles.on_trade(symbol, price, size, ts))
        await self._deliver(events)

    def _venue_seconds(self) -> float:
        """Trio's clock at the venue's pace (the full books' periodic snapshots follow the venue's time)."""
        return trio.current_time() * self.clock.scale

    def _require_sink(self) -> VenueSink:
        if self._sink is None:
            raise RuntimeError("PaperVenue.run has not started")
        return self._sink


def _venue_event(c: AccountChange) -> VenueAccountEvent:
    """The account change as the server takes it."""
    return VenueAccountEvent(
        AccountEventKind(c.kind), c.symbol, c.event_id, "", c.quantity, c.price, c.amount, c.currency, c.ts
    )
