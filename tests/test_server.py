"""The server end to end on the paper venue, over real ZeroMQ IPC sockets."""

from __future__ import annotations

import os
import stat
import time

import msgpack
import pytest
import trio

from seqtrade import wire
from seqtrade.errors import RunDirLocked
from seqtrade.models import (
    AmendRequest,
    CancelAll,
    CancelRequest,
    OrderStatus,
    Ticker,
    VenueStatus,
)
from seqtrade.server.app import serve
from seqtrade.venues.paper import PaperVenue

S = "BTC-USDT"


async def test_join_and_market_order_fills(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        w = await p.join()
        assert w.last_seq == 0 and w.open_orders == []
        await server.venue.set_market(S, 100.0, 100.2)
        coid = await p.order(S, "buy", "market", None, 0.5)
        r1 = await p.report()
        assert (r1.client_order_id, r1.status, r1.seq) == (coid, OrderStatus.ACCEPTED, 1)
        r2 = await p.report()
        assert r2.status == OrderStatus.FILLED and r2.filled_quantity == pytest.approx(0.5)
        assert r2.filled_price == pytest.approx(100.2) and r2.last_fill_quantity == pytest.approx(0.5)
        assert r2.fee > 0 and r2.exchange_order_id


async def test_limit_rests_then_fills_partially_then_fully(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market(S, 100.0, 100.2)
        coid = await p.order(S, "buy", "limit", 99.5, 2.0)
        assert (await p.report()).status == OrderStatus.ACCEPTED
        await server.venue.set_market(S, 99.3, 99.5, ask_size=0.5)
        r = await p.report()
        assert r.status == OrderStatus.PARTIALLY_FILLED and r.filled_quantity == pytest.approx(0.5)
        assert r.last_fill_price == pytest.approx(99.5)
        await server.venue.set_market(S, 99.2, 99.4, ask_size=5.0)
        r = await p.report()
        assert r.status == OrderStatus.FILLED and r.filled_quantity == pytest.approx(2.0)
        assert r.client_order_id == coid and r.last_fill_quantity == pytest.approx(1.5)


async def test_post_only_ioc_fok_cancel_amend(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market(S, 100.0, 100.2, ask_size=1.0)
        # post-only that would cross: rejected
        await p.order(S, "buy", "post_only", 100.2, 0.1)
        r = await p.report()
        assert r.status == OrderStatus.REJECTED and "post" in r.error_msg.lower()
        # IOC larger than the top level: what fits fills, the rest is cancelled
        await p.order(S, "buy", "ioc", 100.2, 3.0)
        statuses = []
        while True:
            r = await p.report()
            statuses.append(r.status)
            if r.status not in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED):
                break
        assert r.status == OrderStatus.CANCELLED and r.filled_quantity == pytest.approx(1.0)
        # FOK that cannot fill: cancelled, nothing filled
        await p.order(S, "buy", "fok", 100.2, 50.0)
        while (r := await p.report()).status == OrderStatus.ACCEPTED:
            pass
        assert r.status == OrderStatus.CANCELLED and r.filled_quantity == 0
        # resting limit: amend then cancel
        coid = await p.order(S, "sell", "limit", 101.0, 1.0)
        assert (await p.report()).status == OrderStatus.ACCEPTED
        await p.send(AmendRequest("s1", coid, 101.5, 2.0))
        r = await p.report()
        assert (r.status, r.price, r.quantity) == (OrderStatus.ACCEPTED, 101.5, 2.0)
        await p.send(CancelRequest("s1", coid))
        r = await p.report()
        assert r.status == OrderStatus.CANCELLED
        # cancel again: refused, status stays cancelled, with a reason
        await p.send(CancelRequest("s1", coid))
        r = await p.report()
        assert r.status == OrderStatus.CANCELLED and "cancel failed" in r.error_msg


async def test_rounding_to_tick_and_lot(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market(S, 100.0, 100.2)
        await p.order(S, "buy", "limit", 99.37, 1.23456)
        r = await p.report()
        assert r.status == OrderStatus.ACCEPTED
        assert r.price == pytest.approx(99.3) and r.quantity == pytest.approx(1.234)  # buys round down
        await p.order(S, "sell", "limit", 101.01, 1.0)
        r = await p.report()
        assert r.price == pytest.approx(101.1)  # sells round up
        await p.order(S, "buy", "limit", 99.0, 0.0004)
        r = await p.report()
        assert r.status == OrderStatus.REJECTED and "below the minimum" in r.error_msg


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        ({"symbol": "DOGE-USDT"}, "unknown symbol"),
        ({"price": float("nan")}, "finite"),
        ({"quantity": -1.0}, "positive"),
        ({"price": "100"}, "must be a number"),
        ({"side": "up"}, "'side'"),
    ],
)
async def test_malformed_requests_get_rejected_reports(server, peers, mutate, expect):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        body = {"type": "order_request", "client_order_id": "bad-1", "strategy_id": "s1", "symbol": S,
                "side": "buy", "order_type": "limit", "price": 100.0, "quantity": 1.0,
                "timestamp": time.time_ns() // 1_000_000}  # fmt: skip
        body.update(mutate)
        await p.send_raw(b"order_request/s1/" + msgpack.packb(body))
        r = await p.report()
        assert r.status == OrderStatus.REJECTED and expect in r.error_msg and r.client_order_id == "bad-1"
        # the server keeps serving
        await server.venue.set_market(S, 100.0, 100.2)
        await p.order(S, "buy", "market", None, 0.1)
        assert (await p.report()).status == OrderStatus.ACCEPTED


async def test_garbage_frames_are_dropped_and_counted(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        before = server.counters.bad_frames
        for junk in (
            b"",
            b"\x00\xff" * 50,
            b"hello/s1/\xc1",
            b"x" * 60_000,  # (a frame over bus.max_frame_bytes never reaches the server: libzmq drops it)
            b"order_request/s1/" + b"\x91" * 5000,
        ):
            await p.send_raw(junk)
        await server.venue.set_market(S, 100.0, 100.2)
        await p.order(S, "buy", "market", None, 0.1)
        # "hello/s1/<garbage>" and "order_request/s1/<deep nesting>" name a strategy: each gets a
        # rejected report saying why (docs/protocol.md); the rest name nobody and are dropped.
        for _ in range(2):
            r = await p.report()
            assert r.status == OrderStatus.REJECTED and "MessagePack" in r.error_msg
        assert (await p.report()).status == OrderStatus.ACCEPTED
        assert server.counters.bad_frames - before == 5


async def test_duplicate_order_request_is_never_sent_twice(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market(S, 100.0, 100.2)
        coid = await p.order(S, "buy", "limit", 99.0, 1.0)
        first = await p.report()
        sent = server.counters.orders_sent
        await p.order(S, "buy", "limit", 99.0, 1.0, coid=coid)
        again = await p.next_message()
        assert again == first or (again.seq == first.seq and again.status == first.status)
        assert server.counters.orders_sent == sent
        assert len(await server.venue.open_orders()) == 1


async def test_two_strategies_see_only_their_own_reports(server, peers):
    with trio.fail_after(10):
        a, b, b10 = peers["s1"], peers["s10"], peers["s"]
        for p in (a, b, b10):
            await p.join()
        await server.venue.set_market(S, 100.0, 100.2)
        await a.order(S, "buy", "limit", 99.0, 1.0, coid="same")
        await b.order(S, "buy", "limit", 98.0, 1.0, coid="same")  # the same id in another strategy is fine
        ra, rb = await a.report(), await b.report()
        assert (ra.strategy_id, ra.price, ra.seq) == ("s1", 99.0, 1)
        assert (rb.strategy_id, rb.price, rb.seq) == ("s10", 98.0, 1)
        await a.order(S, "sell", "limit", 105.0, 1.0)
        await a.report()
        # nothing for s10 or s: their queue holds no report of s1
        await b.order(S, "sell", "limit", 106.0, 1.0)
        assert (await b.report()).price == 106.0
        assert all(m.strategy_id == "s10" for m in b.pending)
        assert b10.pending == [] and b10.reports == []


async def test_market_data_prefix_exactness(server, peers):
    with trio.fail_after(10):
        p = peers["md"]
        p.mdsub.sock.setsockopt(__import__("zmq").SUBSCRIBE, wire.topic("ticker", S))
        await p.join()  # the report subscription is live; the md one is connected in the same way
        while True:
            await server.venue.set_market("BTC-USDT-SWAP", 50.0, 50.1)
            await server.venue.set_market(S, 100.0, 100.2)
            with trio.move_on_after(0.2):
                msg = await p.next_md()
                break
        seen = [msg]
        await server.venue.set_market("BTC-USDT-SWAP", 51.0, 51.1)
        await server.venue.set_market(S, 101.0, 101.2)
        while not (isinstance(seen[-1], Ticker) and seen[-1].bid_price == 101.0):
            seen.append(await p.next_md())
        assert all(isinstance(m, Ticker) and m.symbol == S for m in seen)
        seqs = [m.seq for m in seen]
        assert seqs == sorted(seqs)


async def test_status_published(server, peers):
    with trio.fail_after(10):
        p = peers["st"]
        p.mdsub.sock.setsockopt(__import__("zmq").SUBSCRIBE, b"status/")
        msg = await p.next_md()
        assert isinstance(msg, VenueStatus) and msg.venue == "paper" and msg.connected


async def test_replay_on_hello_and_open_orders_in_welcome(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market(S, 100.0, 100.2)
        open_coid = await p.order(S, "buy", "limit", 99.0, 1.0)
        await p.report()
        await p.order(S, "buy", "market", None, 0.1)
        await p.report()
        await p.report()
        # a second process of the same strategy that has handled nothing
        q = peers["s1"]
        del peers["s1"]
        late = peers["s1"]
        assert late is not q
        w = await late.join(last_seq=0)
        assert [r.seq for r in late.reports] == [1, 2, 3]
        assert w.last_seq == 3 and [r.client_order_id for r in w.open_orders] == [open_coid]
        q.close()
        # and one that has handled up to 2 gets only 3
        del peers["s1"]
        late.close()
        mid = peers["s1"]
        await mid.join(last_seq=2)
        assert [r.seq for r in mid.reports] == [3]


async def test_cancel_all_and_unknown_cancel(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market(S, 100.0, 100.2)
        await p.order(S, "buy", "limit", 99.0, 1.0)
        await p.order("ETH-USDT", "buy", "limit", 9.0, 1.0)
        await p.report()
        await p.report()
        await p.send(CancelAll("s1", S))
        r = await p.report()
        assert r.status == OrderStatus.CANCELLED and r.symbol == S
        await p.send(CancelAll("s1"))
        r = await p.report()
        assert r.status == OrderStatus.CANCELLED and r.symbol == "ETH-USDT"
        await p.send(CancelRequest("s1", "never-sent"))
        r = await p.report()
        assert r.status == OrderStatus.REJECTED and "unknown client_order_id" in r.error_msg


async def test_stale_order_request_is_rejected(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        body = {"type": "order_request", "client_order_id": "old", "strategy_id": "s1", "symbol": S,
                "side": "buy", "order_type": "limit", "price": 99.0, "quantity": 1.0,
                "timestamp": time.time_ns() // 1_000_000 - 60_000}  # fmt: skip
        await p.send_raw(b"order_request/s1/" + msgpack.packb(body))
        r = await p.report()
        assert r.status == OrderStatus.REJECTED and "stale" in r.error_msg
        assert await server.venue.open_orders() == []


async def test_run_dir_permissions_and_lock(server, config):
    rd = config.run_dir
    assert stat.S_IMODE(os.stat(rd).st_mode) == 0o700
    for name in ("md.ipc", "order.ipc", "report.ipc"):
        assert stat.S_IMODE(os.stat(rd / name).st_mode) == 0o600
    with pytest.raises(RunDirLocked, match="another seqtrade server"):
        await serve(config, PaperVenue(config.venue.paper, list(config.venue.symbols)))
    # the running server still owns its sockets
    assert (rd / "order.ipc").exists()


async def test_clean_stop_removes_sockets_and_lock(nursery, config):
    with trio.fail_after(10):
        venue = PaperVenue(config.venue.paper, list(config.venue.symbols))
        done = trio.Event()

        async def run(task_status=trio.TASK_STATUS_IGNORED):
            await serve(config, venue, task_status=task_status)
            done.set()

        gw = await nursery.start(run)
        gw.request_stop()
        await done.wait()
        rd = config.run_dir
        assert not any((rd / n).exists() for n in ("md.ipc", "order.ipc", "report.ipc", "server.lock"))
        assert (rd / "journal.sqlite").exists()


async def test_control_status(server, config, peers):
    with trio.fail_after(10):
        await peers["s1"].join()
        from seqtrade.cli import format_status
        from seqtrade.server.control import request

        ep = f"ipc://{config.run_dir / 'control.ipc'}"
        st = await trio.to_thread.run_sync(lambda: request(ep, "status"))
        assert st["venue"] == "paper" and "s1" in st["strategies"]
        assert "s1" in format_status(st)
        with pytest.raises(RuntimeError, match="unknown command"):
            await trio.to_thread.run_sync(lambda: request(ep, "nope"))
        assert stat.S_IMODE(os.stat(config.run_dir / "control.ipc").st_mode) == 0o600
