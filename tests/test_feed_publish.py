"""The server's market-data publish path (Gateway.feed_task) on real sockets: what a subscriber sees
of bursts of tickers, and what the gateway's own readers (seqs, feed health, counters) see after."""

from __future__ import annotations

import trio
import trio.lowlevel
import zmq

from seqtrade import wire
from seqtrade.models import Ticker
from seqtrade.server.gateway import Gateway

from .peer import Peer

A, B, PROBE = "BTC-USDT", "BTC-USDT-SWAP", "ETH-USDT"


def tick(symbol: str, i: int) -> Ticker:
    # ts is the venue's epoch ms; one in 50 is below 2**32 (an odd venue clock: the codec's path)
    ts = 7 if i % 50 == 49 else 1_764_522_000_000 + i
    return Ticker(symbol, ts, 100.0 + i, 99.5 + i, 100.5 + i, 1.0 + i, 2.0, 3.0)


async def subscribed(gw: Gateway, peer: Peer) -> None:
    """Subscribe to every ticker and wait until a probe gets through (no slow-joiner loss after)."""
    peer.mdsub.sock.setsockopt(zmq.SUBSCRIBE, b"ticker/")
    while True:
        gw.publish_market(tick(PROBE, 0))
        with trio.move_on_after(0.05):
            while True:
                msg = await peer.next_md()
                if isinstance(msg, Ticker) and msg.symbol == PROBE:
                    return


async def test_bursts_reach_a_subscriber_whole_numbered_and_counted(server: Gateway, peers) -> None:
    gw, peer = server, peers["s1"]
    with trio.fail_after(20):
        await subscribed(gw, peer)
        peer.md_pending.clear()
        topics = {s: wire.topic("ticker", s) for s in (A, B)}
        first = {s: gw.md_seqs.get(t, 0) + 1 for s, t in topics.items()}
        counts = {s: gw.feed_health.feed("ticker", s).count for s in (A, B)}
        out0 = gw.counters.md_out
        sent: dict[str, list[Ticker]] = {A: [], B: []}
        for burst in (1, 700, 5000, 3):  # 5000: more than one of the feed task's batches
            for i in range(burst):
                for s in (A, B) if i % 3 else (A,):
                    t = tick(s, len(sent[s]))
                    sent[s].append(t)
                    gw.publish_market(t)
            await trio.lowlevel.checkpoint()
        got: dict[str, list[Ticker]] = {A: [], B: []}
        while sum(map(len, got.values())) < sum(map(len, sent.values())):
            msg = await peer.next_md()
            if isinstance(msg, Ticker) and msg.symbol in got:
                got[msg.symbol].append(msg)
    for s in (A, B):
        assert [t.seq for t in got[s]] == list(range(first[s], first[s] + len(sent[s])))  # no gap, no dup
        for sent_t, got_t in zip(sent[s], got[s], strict=True):
            assert got_t == sent_t  # the published object was numbered and stamped as it was sent
            assert got_t.gw_ns > 0
        assert gw.md_seqs[topics[s]] == got[s][-1].seq
        assert gw.feed_health.feed("ticker", s).count == counts[s] + len(sent[s])
    assert gw.counters.md_out - out0 >= len(sent[A]) + len(sent[B])


TRACED = """
import sys, time, trio
from seqtrade.config import parse_config
from seqtrade.models import Ticker
from seqtrade.server.app import serve
from seqtrade.venues.paper import PaperVenue
from tests.conftest import QUIET_MARKET

async def main():
    config = parse_config(QUIET_MARKET, base_dir=sys.argv[1])
    async with trio.open_nursery() as nursery:
        gw = await nursery.start(serve, config, PaperVenue(config.venue.paper, list(config.venue.symbols)))
        t = Ticker("BTC-USDT", 1_764_522_000_000, 100.0, 99.5, 100.5, 1.0, 2.0, 3.0)
        gw.publish_market(t)
        time.sleep(0.2)  # the venue's hand-over and the feed task's send, 200 ms apart (nothing runs)
        while t.seq == 0:
            await trio.sleep(0.01)
        print(t.seq, t.gw_ns)
        gw.request_stop()

trio.run(main)
"""


def test_tick_to_trade_clock_starts_when_the_venue_hands_the_ticker_over(base_dir, tmp_path) -> None:
    """With SEQTRADE_TRACE on, a ticker's ``v_tick`` mark is the time ``publish_market`` was called,
    not the time the feed task took it off its queue (the tick-to-trade scenario's start)."""
    import os
    import subprocess
    import sys

    trace_dir = tmp_path / "trace"
    trace_dir.mkdir()
    env = dict(os.environ, SEQTRADE_TRACE=str(trace_dir))
    root = str(__import__("pathlib").Path(__file__).resolve().parent.parent)
    out = subprocess.run([sys.executable, "-c", TRACED, str(base_dir)], env=env, cwd=root, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    seq, sent_ns = map(int, out.stdout.split())
    marks = [line.split() for f in trace_dir.iterdir() for line in f.read_text().splitlines()]
    (v_tick,) = [int(ns) for key, stage, ns in marks if stage == "v_tick" and key == f"BTC-USDT#{seq}"]
    assert sent_ns - v_tick >= 200_000_000  # the hand-over, 200 ms before the send
