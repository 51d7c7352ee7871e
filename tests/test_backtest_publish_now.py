"""A backtest's window frames sent by its venue's task (Gateway.publish_now), on real sockets: in the
order of everything published before and after them, numbered on their topic and stamped as the feed
task numbers and stamps what it sends, the same bytes; and never ahead of what the feed task still has
queued (publish_now declines, the caller queues it behind)."""

from __future__ import annotations

import trio
import trio.lowlevel
import zmq

from seqtrade import wire
from seqtrade.models import Trade
from seqtrade.server.gateway import Gateway
from seqtrade.vclock import Sync, Window

from .peer import Peer

VENUE = "backtest"


async def subscribed(gw: Gateway, peer: Peer) -> None:
    """Subscribe to syncs and windows and wait until a probe gets through (no slow-joiner loss after),
    then until the feed task has sent everything queued and nothing else is in flight."""
    sock = peer.mdsub.sock
    for prefix in (b"sync/", b"window/"):
        sock.setsockopt(zmq.SUBSCRIBE, prefix)
    probed = False
    while not probed:
        gw.publish_market(Sync("probe", 0, 0))
        with trio.move_on_after(0.05):
            await peer.mdsub.recv_batch()
            probed = True
    while gw._md_q:  # noqa: ASYNC110 - the feed task runs between checkpoints
        await trio.lowlevel.checkpoint()
    with trio.move_on_after(0.2):  # the probes still on their way
        while True:
            await peer.mdsub.recv_batch()


def trade(i: int) -> Trade:
    return Trade(
        "BTC-USDT", 1_790_000_000_000 + i, f"t{i}", 100.0 + i, 0.5, "buy", i, 1_790_000_000_000_000_000 + i
    )


async def test_publish_now_keeps_the_order_numbering_and_bytes_of_the_feed(server: Gateway, peers) -> None:
    gw, peer = server, peers["s1"]
    with trio.fail_after(20):
        await subscribed(gw, peer)
        out0 = gw.counters.md_out
        a = Sync(VENUE, 1, 1, {"s1": 0})
        gw.publish_market(a)  # queued for the feed task, which has not run yet
        b = Window(VENUE, 2, 2, {"s1": 1}, md=[trade(1), trade(2)])
        assert not gw.publish_now(b)  # something is queued before it: declined, nothing done
        assert b.seq == 0 and b.gw_ns == 0
        gw.publish_market(b)  # ... the caller queues it behind
        while gw._md_q:  # noqa: ASYNC110 - the feed task runs between checkpoints
            await trio.lowlevel.checkpoint()
        c = Window(VENUE, 3, 3, {"s1": 2}, md=[trade(3)])
        assert gw.publish_now(c)  # nothing queued: sent now, in this task
        assert not gw._md_q
        d = Sync(VENUE, 4, 4, {"s1": 2})
        gw.publish_market(d)
        frames: list[bytes] = []
        while len(frames) < 4:
            frames += await peer.mdsub.recv_batch()
    assert frames[2] == wire.encode_message(c)  # the stamped object's frame, as the feed encodes it
    assert [wire.decode_message(f) for f in frames] == [a, b, c, d]
    assert (d.seq, c.seq) == (a.seq + 1, b.seq + 1)  # each topic numbered once, in the order sent
    assert gw.md_seqs[wire.topic("window", VENUE)] == c.seq
    assert gw.md_seqs[wire.topic("sync", VENUE)] == d.seq
    assert c.gw_ns >= b.gw_ns > 0  # stamped by the server's clock, as the feed task stamps
    assert gw.counters.md_out - out0 == 4
