"""The paper exchange: a venue with a synthetic market and a local matching engine.

No network, no keys. :class:`PaperVenue` implements :class:`~seqtrade.venues.base.Venue`, so the
server cannot tell it from OKX. The market is a seeded random walk per symbol (repeatable runs); the
matching lives in the pure :mod:`seqtrade.venues.matching`.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

import trio

from ..config import PaperConfig, VenueConfig
from ..models import Book, Side, Ticker, Trade
from .base import Instrument, OrderEvent, Venue, VenueOrder, VenueSink
from .matching import MatchingEngine
from .paper_account import Balance
from .paper_book import PaperDepth
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

    def __init__(self, symbol: str, index: int, cfg: PaperConfig) -> None:
        self.symbol = symbol
        self.rng = random.Random(cfg.seed * 1_000_003 + index)
        self.tick = cfg.tick_size
        self.lot = cfg.lot_size
        self.price_dp = _decimals(cfg.tick_size)
        self.size_dp = _decimals(cfg.lot_size)
        self.volatility = cfg.volatility
        self.spread = max(1, cfg.spread_ticks)
        self.level_size = cfg.level_size
        self.trade_probability = cfg.trade_probability
        self.mid = cfg.start_prices.get(symbol, _default_start_price(symbol))
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

    def __init__(self, cfg: PaperConfig, symbols: list[str], *, state_path: Path | None = None) -> None:
        self._cfg = cfg
        # The account on disk (orders, fills, positions, id counters), loaded by run(); None: in memory.
        self._state_path = state_path
        self._store: PaperStore | None = None
        self._instruments = {
            sym: Instrument(sym, cfg.tick_size, cfg.lot_size, cfg.min_size, code=None) for sym in symbols
        }
        self._engine = MatchingEngine(
            self._instruments, maker_fee=cfg.maker_fee, taker_fee=cfg.taker_fee, balances=cfg.balances
        )
        self._walks = {sym: _Walk(sym, i, cfg) for i, sym in enumerate(symbols)}
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
        self._outbox: deque[OrderEvent] = deque()
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
        return [
            "venue: paper",
            f"paper account (simulated: no keys, no network): starts with {balances} ({kept}; `seqtrade reset` starts over);"
            " buys need the quote currency, sells the coins",
        ]

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
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._run_dead_mans_switch)
                sink.set_connected(True)
                await self._run_market(sink, task_status)
        finally:
            sink.set_connected(False)

    async def _run_market(self, sink: VenueSink, task_status: trio.TaskStatus[None]) -> None:
        """The market loop: one snapshot of every symbol, ``started``, then a random-walk step of every
        symbol each ``tick_interval``. (The benchmark's feed, :mod:`seqtrade.bench.feed`, replaces it.)"""
        ts = _now_ms()
        for walk in self._walks.values():
            await self._publish_walk(sink, walk, ts)
        task_status.started()
        await self._run_walk(sink)

    async def _run_walk(self, sink: VenueSink) -> None:
        interval = self._cfg.tick_interval
        wake = trio.current_time()
        while True:
            wake = max(wake + interval, trio.current_time())  # after a stall: no burst to catch up
            await trio.sleep_until(wake)
            ts = _now_ms()
            for walk in self._walks.values():
                walk.step()
                await self._publish_walk(sink, walk, ts)
            if self._outbox:  # left behind by a caller that was cancelled while delivering
                await self._deliver(())

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
                for msg in depth.trade(str(side), size, ts, trio.current_time()):
                    sink.publish_market(msg)
        if events:
            await self._deliver(events)

    async def _run_dead_mans_switch(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._dms_deadline) as scope:
                self._dms_scope = scope
                await trio.sleep_forever()
            self._dms_scope = None
            self._dms_deadline = math.inf
            log.warning("cancel-all-after triggered: cancelling every open order")
            await self._deliver(self._engine.cancel_all(_now_ms(), reason="cancel-all-after triggered"))

    async def _deliver(self, events: Iterable[OrderEvent], submitted: str = "") -> None:
        """Queue ``events`` and deliver the queue in order, unless another task is delivering it.

        With a persistent account the state ``events`` describe is committed first (``submitted``: the
        id of an order just submitted, counted)."""
        if self._store is not None and (events or submitted):
            events = list(events)
            self._store.save(events, submitted)
        sink = self._require_sink()
        self._outbox.extend(events)
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._outbox:
                # popped only once delivered: an event re-sent after a cancellation is harmless
                await sink.order_event(self._outbox[0])
                self._outbox.popleft()
        finally:
            self._delivering = False

    # ------------------------------------------------------------------ orders

    async def place_order(self, order: VenueOrder) -> None:
        await self._deliver(self._engine.submit(order, _now_ms()), order.venue_order_id)

    async def cancel_order(self, venue_order_id: str, symbol: str) -> None:
        await self._deliver((self._engine.cancel(venue_order_id, _now_ms()),))

    async def amend_order(
        self, venue_order_id: str, symbol: str, price: float | None, quantity: float | None
    ) -> None:
        await self._deliver(self._engine.amend(venue_order_id, price, quantity, _now_ms()))

    async def query_order(self, venue_order_id: str, symbol: str) -> OrderEvent | None:
        return self._engine.query(venue_order_id)

    async def open_orders(self) -> list[OrderEvent]:
        return self._engine.open_orders()

    async def positions(self) -> dict[str, float]:
        """Net position per symbol in base units (+ bought), for reconciliation."""
        return self._engine.positions()

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

        The book becomes ``bid``/``ask`` with the given sizes (default ``level_size``) at the top and
        four more levels a tick apart of ``level_size`` each; a ticker and the book are published. The
        random walk continues from this mid at its next step.
        """
        if not bid < ask:
            raise ValueError(f"set_market: bid {bid} must be below ask {ask}")
        walk = self._walks[symbol]
        size = self._cfg.level_size
        bids = [[bid, size if bid_size is None else bid_size]]
        asks = [[ask, size if ask_size is None else ask_size]]
        for i in range(1, BOOK_DEPTH):
            asks.append([round(ask + i * walk.tick, walk.price_dp), size])
            below = round(bid - i * walk.tick, walk.price_dp)
            if below > 0:
                bids.append([below, size])
        walk.mid = (bid + ask) / 2
        ts = _now_ms()
        events = self._engine.set_book(symbol, bids, asks, ts)
        sink = self._require_sink()
        sink.publish_market(Ticker(symbol, ts, walk.last, bid, ask, bids[0][1], asks[0][1], walk.volume))
        sink.publish_market(Book(symbol, ts, bids, asks))
        self._publish_depth(symbol, bids, asks, ts)
        await self._deliver(events)

    def _publish_depth(self, symbol: str, bids: list[list[float]], asks: list[list[float]], ts: int) -> None:
        """The full-depth book follows the new top (its own messages: docs/books.md)."""
        depth = self._depths.get(symbol)
        if depth is not None:
            sink = self._require_sink()
            for msg in depth.step(bids, asks, ts, trio.current_time()):
                sink.publish_market(msg)

    async def print_trade(self, symbol: str, price: float, size: float, side: Side) -> None:
        """Test hook: a public trade of ``size`` at ``price`` with taker ``side``; fills the resting
        orders it prints through and publishes the trade."""
        walk = self._walks[symbol]
        walk.last = price
        walk.volume += size
        ts = _now_ms()
        events = self._engine.on_trade(symbol, price, size, side, ts)
        self._require_sink().publish_market(
            Trade(symbol, ts, self._engine.next_trade_id(), price, size, str(side))
        )
        await self._deliver(events)

    def _require_sink(self) -> VenueSink:
        if self._sink is None:
            raise RuntimeError("PaperVenue.run has not started")
        return self._sink
