"""Feed health: the pure rules (rate, age, delay, gaps, resubscriptions, stale once and recovered
once), and through a real paper server on a virtual clock: the log lines, `status`, the metrics and
the ``feed_status`` message on the bus."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing
import zmq

from seqtrade import wire
from seqtrade.cli import format_status
from seqtrade.client import Endpoints
from seqtrade.feedhealth import FeedHealth, FeedsStatus, Transition
from seqtrade.models import Side
from seqtrade.server.app import serve
from seqtrade.server.gateway import Gateway
from seqtrade.server.metrics import render_metrics
from seqtrade.venues.paper import PaperVenue
from tests.conftest import make_config
from tests.peer import Peer

S = "BTC-USDT"


def test_rate_age_delay_and_counts_per_feed():
    fh = FeedHealth(stale_after=5.0)
    fh.check(0.0)
    for i in range(20):
        fh.on_message("ticker", S, 1_000 + i, 1_030 + i + (50 if i == 7 else 0), now=i * 0.1)
    fh.on_message("trade", S, 5_000, 5_002, now=1.5)
    fh.on_message("candle:1m", S, 0, 59_000, now=1.5)  # a bar's ts is its open time: no delay
    fh.on_gap("book", S)
    fh.on_gap("book", S)
    fh.on_resubscribe("book", S)
    assert fh.check(2.0) == []
    by = {(f.channel, f.symbol): f for f in fh.snapshot(2.0)}
    t = by[("ticker", S)]
    assert (t.messages, t.rate, t.delay_ms, t.max_delay_ms, t.stale) == (20, 10.0, 30, 80, False)
    assert t.age == pytest.approx(0.1)
    assert by[("trade", S)].delay_ms == 2
    assert (by[("candle:1m", S)].delay_ms, by[("candle:1m", S)].messages) == (0, 1)
    b = by[("book", S)]
    assert (b.gaps, b.resubscriptions, b.messages, b.age) == (2, 1, 0, -1.0)
    fh.check(3.0)
    assert {(f.channel, f.rate) for f in fh.snapshot(3.0)} >= {("ticker", 0.0)}  # nothing this second


def test_stale_and_recovered_are_told_once_each():
    fh = FeedHealth(stale_after=5.0)
    fh.on_message("ticker", S, 0, 0, now=0.0)
    fh.on_message("candle:1m", S, 0, 0, now=0.0)
    assert fh.check(4.9) == []
    assert fh.check(5.0) == [Transition("ticker", S, True, 5.0)]  # the 1m candle feed may be quiet 65 s
    assert fh.check(6.0) == [] and fh.check(30.0) == []
    fh.on_message("ticker", S, 0, 0, now=31.0)
    assert fh.check(31.5) == [Transition("ticker", S, False, 0.5)]
    assert fh.check(32.0) == []
    assert fh.check(65.0) == [Transition("ticker", S, True, 34.0), Transition("candle:1m", S, True, 65.0)]
    with pytest.raises(ValueError):
        FeedHealth(stale_after=0)


async def test_a_stale_feed_is_logged_once_shown_everywhere_and_recovers(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    base_dir: Path,
    zctx: zmq.Context,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_config(base_dir, "\n[feeds]\nstale_after = 5.0\n")
    venue = PaperVenue(config.venue.paper, list(config.venue.symbols))
    gw: Gateway = await nursery.start(serve, config, venue)
    peer = Peer(zctx, Endpoints.from_config(config), "f1")
    peer.mdsub.sock.setsockopt(zmq.SUBSCRIBE, wire.topic("feed_status", "paper"))
    caplog.set_level(logging.INFO, logger="seqtrade.server.gateway")
    try:
        with trio.fail_after(300):
            await peer.join()
            await venue.print_trade(S, 100.0, 0.5, Side.BUY)
            await trio.sleep(2)
            status = gw.status()
            trade = next(r for r in status["feeds"] if (r["channel"], r["symbol"]) == ("trade", S))
            assert trade["messages"] == 1 and not trade["stale"]
            await trio.sleep(20)  # silent: stale after 5 s, said once
            stale_lines = [
                r.getMessage() for r in caplog.records if "feed trade BTC-USDT stale" in r.getMessage()
            ]
            assert len(stale_lines) == 1, stale_lines
            text = render_metrics(gw)
            assert 'seqtrade_feed_stale{channel="trade",symbol="BTC-USDT"} 1' in text
            assert 'seqtrade_feed_messages_total{channel="trade",symbol="BTC-USDT"} 1' in text
            shown = format_status(gw.status())
            assert any(line.startswith("trade") and "STALE" in line for line in shown.splitlines()), shown
            # On the bus: the feed's status with stale True.
            msg = await peer.next_md()
            while not (isinstance(msg, FeedsStatus) and (f := msg.feed("trade", S)) is not None and f.stale):
                msg = await peer.next_md()
            await venue.print_trade(S, 100.1, 0.5, Side.SELL)
            await trio.sleep(3)
            await venue.print_trade(S, 100.2, 0.5, Side.SELL)
            await trio.sleep(1.5)
            recovered = [
                r.getMessage() for r in caplog.records if "feed trade BTC-USDT recovered" in r.getMessage()
            ]
            assert len(recovered) == 1
            assert 'seqtrade_feed_stale{channel="trade",symbol="BTC-USDT"} 0' in render_metrics(gw)
    finally:
        peer.close()
        gw.request_stop()


@pytest.mark.parametrize("timed", [True, False])
def test_a_batch_counts_as_its_messages_one_by_one(timed: bool) -> None:
    """``seen_many`` (the gateway's per-batch hand-over) leaves a feed as ``seen`` per message would,
    when the messages share one receive time."""
    from seqtrade.feedhealth import Feed

    one, many = Feed(timed), Feed(timed)
    batches = [[1_000, 1_001, 1_001], [1_010, 1_004, 1_012]]  # exchange times, one out of order
    for i, batch in enumerate(batches):
        recv, now = 1_020 + 10 * i, 2.0 + i
        for ts in batch:
            one.seen(ts, recv, now)
        many.seen_many(len(batch), min(batch), batch[-1], recv, now)
    for attr in Feed.__slots__:
        assert getattr(many, attr) == getattr(one, attr), attr
