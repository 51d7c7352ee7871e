"""The benchmark's market feed: the paper venue publishing tickers at a set rate (``seqtrade bench``).

``venue.paper.bench_rate != 0`` selects :class:`BenchPaperVenue` (see ``venues.venue_from_config``):
the paper venue with its market loop replaced. Only tickers are published, ``bench_rate`` per second
in total across the symbols, round robin (``< 0``: as fast as possible), from a ring of precomputed
market states, so that the cost measured is the gateway's and not the random walk's. The matching
engine sees every state while orders rest (so they fill as they would), and each symbol's last state
of a batch when none does (a market order meets the book as it stands between batches).
"""

from __future__ import annotations

import trio

from ..models import Ticker
from ..venues.base import VenueSink
from ..venues.paper import PaperVenue, _now_ms

__all__ = ["BenchPaperVenue"]

_BENCH_RING = 1024  # precomputed market states per symbol that bench mode cycles through
_BENCH_WAKE = 0.001  # seconds between bench batches
_BENCH_YIELD_EVERY = 256  # messages between checkpoints when bench_rate < 0
_BENCH_CHUNK = 1024  # at most this many tickers handed over between two checkpoints (after a stall)


# symbol, last, bid, ask, bid size, ask size, volume, bids, asks
_BenchState = tuple[str, float, float, float, float, float, float, list[list[float]], list[list[float]]]


class BenchPaperVenue(PaperVenue):
    """The paper venue in bench mode: tickers at ``bench_rate`` per second (``bench_pacing``).

    Owns what :class:`PaperVenue` owns. Its market loop reports started at once (no snapshot) and runs
    until cancelled; ``sink.publish_market`` drops when the feed lags, so the loop never blocks on it.
    """

    async def _run_market(self, sink: VenueSink, task_status: trio.TaskStatus[None]) -> None:
        ring = self._bench_ring()
        task_status.started()
        await self._run_bench(sink, ring)

    def _bench_ring(self) -> list[_BenchState]:
        """Precomputed market states, interleaved so that walking the list is the round robin over
        the symbols; the engine's book starts at each symbol's first state."""
        per_symbol = []
        for walk in self._walks.values():
            states = []
            for _ in range(_BENCH_RING):
                walk.step()
                bids, asks = walk.book()
                walk.maybe_trade(bids, asks)
                states.append(
                    (
                        walk.symbol,
                        walk.last,
                        bids[0][0],
                        asks[0][0],
                        bids[0][1],
                        asks[0][1],
                        walk.volume,
                        bids,
                        asks,
                    )
                )
            self._engine.set_book(walk.symbol, states[0][7], states[0][8], _now_ms())
            per_symbol.append(states)
        return [states[i] for i in range(_BENCH_RING) for states in per_symbol]

    async def _run_bench(self, sink: VenueSink, ring: list[_BenchState]) -> None:
        size = len(ring)
        n_symbols = len(self._walks)
        publish = sink.publish_market
        engine = self._engine
        set_book = engine.set_book
        rate = self._cfg.bench_rate
        pos = 0
        sent = 0
        start = trio.current_time()
        spin = rate > 0 and self._cfg.bench_pacing == "spin"
        while True:
            if spin:
                # Each tick at its own time: yield (so the feed task publishes the previous one at
                # once) until it is due. Trio's timers are millisecond-grained, so sleeping cannot.
                next_at = start + (sent + 1) / rate
                while trio.current_time() < next_at:
                    await trio.lowlevel.checkpoint()
                due = 1
            elif rate > 0:
                await trio.sleep(_BENCH_WAKE)
                due = int((trio.current_time() - start) * rate) - sent
            else:
                await trio.lowlevel.checkpoint()
                due = _BENCH_YIELD_EVERY
            ts = _now_ms()
            while due > 0:
                # A chunk at a time, the feed task's turn between two (a stall's backlog is sent late,
                # as a raw publisher sends it, not dropped at the server's queue bound).
                n = min(due, _BENCH_CHUNK)
                # Orders rest: the engine sees every state (each may fill some). Nothing rests, and
                # nothing can come to rest before the next await: only the book a market order meets
                # after this chunk matters, each symbol's last state.
                every = bool(engine.open_orders())
                for _ in range(n):
                    sym, last, bid, ask, bid_size, ask_size, volume, bids, asks = ring[pos]
                    pos += 1
                    if pos == size:
                        pos = 0
                    publish(Ticker(sym, ts, last, bid, ask, bid_size, ask_size, volume))
                    if every:
                        events = set_book(sym, bids, asks, ts)
                        if events:
                            await self._deliver(events)
                if not every:
                    for back in range(1, min(n, n_symbols) + 1):
                        state = ring[pos - back]  # the ring is the round robin: the last n_symbols states
                        set_book(state[0], state[7], state[8], ts)
                sent += n
                due -= n
                if due > 0:
                    await trio.lowlevel.checkpoint()
