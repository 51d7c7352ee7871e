"""A running backtest's results (seqtrade.replay_backtest.BacktestVenue.results; docs/backtesting.md,
"Results"): while it runs they count only what happened up to the end of the last window the strategies
were sent, never the fills the fill model made playing the next window ahead; at the end they are the
results of everything at once.

The venue plays a real recording (written by the recorder) to a desk: the server's side of the venue
contract, holding one strategy that answers each window's sync (after asking for the results, as the
dashboard may at that moment) and rests a buy order that the recorded sell trades fill, window after
window."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from seqtrade import wire
from seqtrade.backtest_results import FillRecord, Mark, results, to_json
from seqtrade.config import RecorderConfig
from seqtrade.fill_model import ConstantLatency
from seqtrade.models import Book, OrderType, Side, Trade
from seqtrade.recorder import Recorder
from seqtrade.replay import read_messages
from seqtrade.replay_backtest import BacktestVenue
from seqtrade.vclock import Sync, SyncAck
from seqtrade.venues.base import OrderEvent, VenueOrder

S = "BTC-USDT"
T0 = 1_790_000_000_000_000_000
MS = 1_000_000


async def record(root: Path, ms: int) -> Path:
    """``ms`` ms of a book (99 / 101) and a sell trade at 99 every 0.1 ms, the mid moving each ms."""
    rec = Recorder(RecorderConfig(enabled=True, queue=100_000), root, "paper")
    for i in range(ms * 10):
        ns = T0 + i * MS // 10
        up = (i // 10) % 3 * 0.5
        msg: Book | Trade
        if i % 2:
            msg = Trade(S, ns // MS, f"t{i}", 99.0, 1.0, "sell", i + 1, ns)
        else:
            msg = Book(S, ns // MS, [[99.0, 5.0]], [[101.0 + up, 5.0]], i + 1, ns)
        rec.md.append(wire.encode_message(msg))
    await rec.close()
    return root


@dataclass
class _Record:
    strategy_id: str
    client_order_id: str


class Engine:
    def __init__(self) -> None:
        self.by_vid = {"v1": _Record("a", "c1")}


class Desk:
    """The server's side for the venue: strategy ``a`` answers every sync once the venue waits for it."""

    def __init__(self, venue: BacktestVenue, nursery: trio.Nursery) -> None:
        self.venue, self.nursery = venue, nursery
        self.engine = Engine()
        self.fills = 0  # fill reports handed over to the server (and so to the strategy)
        # per sync: (fills the strategy had, the results' fills then, the fill model's fills then, results' end, t)
        self.seen: list[tuple[int, int, int, int, int]] = []

    def connected_strategies(self) -> set[str]:
        return {"a"}

    def set_connected(self, connected: bool) -> None:
        pass

    def publish_market(self, msg: Any) -> None:
        if isinstance(msg, Sync) and msg.step:  # a window's end (a Window frame is one too)
            self.nursery.start_soon(self.answer, msg, self.fills)

    async def order_event(self, ev: OrderEvent) -> None:
        if ev.last_fill_quantity:
            self.fills += 1

    async def account_event(self, ev: Any) -> None:
        pass

    def request_stop(self) -> None:
        self.nursery.cancel_scope.cancel()

    async def answer(self, sync: Sync, had: int) -> None:
        # runs once the venue waits for this answer: it has read the next window and played it ahead
        r = self.venue.results()
        self.seen.append((had, r.account.fills, len(self.venue.sim.fills), r.end_ns, sync.t_ns))
        if sync.step == 1:
            await self.venue.place_order(VenueOrder("v1", S, Side.BUY, OrderType.LIMIT, 99.0, 1000.0))
        self.venue.on_sync_ack(SyncAck("a", sync.t_ns, sync.step, batch=True))


async def test_results_mid_run_count_only_what_the_strategies_were_sent(tmp_path: Path) -> None:
    data = await record(tmp_path / "rec", 30)
    venue = BacktestVenue(data, [S], latency=ConstantLatency(MS), lookahead_ns=MS, queue="none")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            desk = Desk(venue, nursery)
            await nursery.start(venue.run, desk)
    assert venue.finished.is_set() and venue.ahead > 10  # windows were played ahead
    # Not trivial: at some syncs the fill model had filled more than the strategy had been sent
    assert any(model > had for had, _, model, _, _ in desk.seen)
    for had, counted, _, end, t in desk.seen:
        assert counted == had  # the results count the fills the strategy has, not those played ahead
        assert end == t  # ... up to the end of its window
    # At the end: everything, the same as the results of all of it at once
    final = venue.results()
    assert final.account.fills == len(venue.sim.fills) == desk.fills > 20
    fills = [FillRecord(f.ts_ns, "a", f.symbol, f.side, f.price, f.quantity, f.fee) for f in venue.sim.fills]
    marks = [_mark(ns, msg) for ns, msg in read_messages(data, [S])]
    whole = results(fills, marks=[m for m in marks if m is not None], strategies=["a"],
                    start_ns=venue.start_ns, end_ns=venue.end_ns)  # fmt: skip
    assert to_json(final) == to_json(whole)
    assert final.strategies["a"].positions == {S: sum(f.quantity for f in fills)}


def _mark(ns: int, msg: Any) -> Mark | None:
    if isinstance(msg, Trade):
        return Mark(ns, msg.symbol, msg.price)
    if isinstance(msg, Book) and msg.bids and msg.asks:
        return Mark(ns, msg.symbol, (msg.bids[0][0] + msg.asks[0][0]) / 2)
    return None
