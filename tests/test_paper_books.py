"""The paper venue's full-depth book (venues/paper_book.py): many levels with realistic sizes, trades
that walk it, published in the same forms as a verified OKX book (a strategy's copy equals it)."""

from __future__ import annotations

import random

import trio
import trio.testing

from seqtrade import wire
from seqtrade.client.protocol import ClientProtocol
from seqtrade.config import PaperConfig
from seqtrade.models import Book, BookStatus, BookUpdate, Depth, Trade
from seqtrade.venues.base import MarketData
from seqtrade.venues.paper import PaperVenue
from seqtrade.venues.paper_book import PaperDepth
from tests.test_paper_venue import Collector

SYM = "BTC-USDT"


def _depth(levels: int = 50) -> PaperDepth:
    return PaperDepth(
        SYM, tick=0.1, price_dp=1, lot=0.001, size_dp=3, level_size=1.0, rng=random.Random(1), levels=levels
    )


def test_the_walks_top_then_deeper_levels_that_grow_with_the_distance() -> None:
    d = _depth(100)
    top_b = [[100.0 - i / 10, 1.0] for i in range(5)]
    top_a = [[100.2 + i / 10, 1.0] for i in range(5)]
    msgs = d.step(top_b, top_a, 1, 0.0)
    assert [type(m) for m in msgs] == [BookStatus, BookUpdate, Depth]
    bids, asks = d.book.snapshot()
    assert len(bids) == len(asks) == 100
    assert bids[:5] == top_b and asks[:5] == top_a
    assert [p for p, _ in bids] == [round(100.0 - i / 10, 1) for i in range(100)]  # one tick apart
    near = sum(s for _, s in asks[5:30]) / 25
    far = sum(s for _, s in asks[75:100]) / 25
    assert far > 1.5 * near  # more liquidity away from the touch
    # the mid moves a tick: the deep levels stay where they were
    deep_before = dict(map(tuple, asks[10:90]))  # type: ignore[arg-type]
    msgs = d.step([[p + 0.1, s] for p, s in top_b], [[p + 0.1, s] for p, s in top_a], 2, 0.1)
    assert isinstance(msgs[0], BookUpdate) and not msgs[0].snapshot
    after = dict(map(tuple, d.book.asks.top(None)))  # type: ignore[arg-type]
    kept = sum(1 for p, s in deep_before.items() if after.get(p) == s)
    assert kept > 0.8 * len(deep_before)


def test_a_trade_walks_the_book_level_by_level() -> None:
    d = _depth()
    d.step([[100.0, 1.0], [99.9, 2.0]], [[100.2, 1.0], [100.3, 2.0], [100.4, 3.0]], 1, 0.0)
    msgs = d.trade("buy", 2.5, 2, 0.1)
    upd = next(m for m in msgs if isinstance(m, BookUpdate))
    assert upd.asks == [[100.2, 0.0], [100.3, 0.5]] and upd.bids == []
    assert d.book.asks.top(2) == [[100.3, 0.5], [100.4, 3.0]]
    d.trade("sell", 1.0, 3, 0.2)
    assert d.book.bids.best() == (99.9, 2.0)


async def test_paper_venue_publishes_a_full_book_a_strategys_copy_equals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    copies = [ClientProtocol("full"), ClientProtocol("top")]
    copies[0].books.want(SYM, "full")
    copies[1].books.want(SYM, 5)
    cfg = PaperConfig(trade_probability=0.7, volatility=0.001, state_path="")
    venue = PaperVenue(cfg, [SYM])
    checked = 0

    def deliver(msg: MarketData) -> None:
        nonlocal checked
        if not isinstance(msg, (BookUpdate, Depth, BookStatus)):
            return
        frame = wire.encode_message(msg)
        for p in copies:
            p.receive_md_frame(frame)
        truth = venue._depths[SYM].book  # noqa: SLF001 - the venue's own book is what we compare with
        full = copies[0].books.get(SYM)
        if isinstance(msg, BookStatus):
            return  # it comes before the first snapshot
        assert full is not None and (full.bids, full.asks) == truth.snapshot()
        top = copies[1].books.get(SYM)
        if isinstance(msg, Depth):
            assert top is not None and (top.bids, top.asks) == truth.top(5)
        checked += 1

    sink = Collector(on_market=deliver)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(venue.run, sink)
            await trio.sleep(30.1)
            nursery.cancel_scope.cancel()
    updates = [m for m in sink.market if isinstance(m, BookUpdate)]
    snapshots = [u for u in updates if u.snapshot]
    assert len(snapshots[0].bids) == len(snapshots[0].asks) == cfg.depth_levels
    assert len(updates) > 150 and checked > 300
    assert len([m for m in sink.market if isinstance(m, Trade)]) > 50
    # the 5-level book frames are as before: the walk's book
    assert all(len(b.bids) == 5 for b in sink.market if isinstance(b, Book))
    assert [s.state for s in sink.market if isinstance(s, BookStatus)] == ["valid"]
