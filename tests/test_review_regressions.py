"""Regressions for bugs found in review (each test failed before its fix)."""

from __future__ import annotations

import contextlib
import dataclasses

import msgpack
import pytest
import trio

from seqtrade.client import Endpoints
from seqtrade.client.protocol import ClientProtocol, Report, Synced
from seqtrade.client.strategy import Strategy
from seqtrade.config import StrategyConfig
from seqtrade.models import AmendRequest, CancelRequest, Hello, OrderReport, OrderStatus, Side, Welcome
from seqtrade.server.accounts import Accounts
from seqtrade.server.app import serve
from seqtrade.server.orders import round_price, round_quantity
from seqtrade.venues.base import Instrument
from seqtrade.venues.paper import PaperVenue

from .conftest import make_config
from .peer import Peer

S = "BTC-USDT"


async def test_hello_with_a_huge_last_seq_is_rejected_not_fatal(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        body = {"type": "hello", "strategy_id": "s1", "last_seq": 2**63, "nonce": "n", "protocol": 1}
        await p.send_raw(b"hello/s1/" + msgpack.packb(body))
        r = await p.report()
        assert r.status == OrderStatus.REJECTED and "2**63" in r.error_msg
        await p.join()  # still serving


async def test_bad_hello_gets_a_rejected_report(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        await p.send(Hello("s1", 0, "n", 2))
        r = await p.report()
        assert r.status == OrderStatus.REJECTED and "protocol 2" in r.error_msg


async def test_refusal_reports_the_order_as_it_is_after_earlier_events(server, peers):
    """A market buy and, right behind it, an amend: the refusal must not reopen the filled order."""
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market(S, 100.0, 100.2)
        coid = await p.order(S, "buy", "market", None, 1.0)
        await p.send(AmendRequest("s1", coid, None, 2.0))
        statuses = [(await p.report()) for _ in range(3)]
        assert [r.status for r in statuses] == [OrderStatus.ACCEPTED, OrderStatus.FILLED, OrderStatus.FILLED]
        assert statuses[2].filled_quantity == 1.0 and "amend failed" in statuses[2].error_msg
        w = await p.join()
        assert w.open_orders == []


async def test_huge_price_is_rejected_and_its_id_remembered(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        coid = await p.order(S, "buy", "limit", 1e308, 0.1)
        r = await p.report()
        assert r.status == OrderStatus.REJECTED and "out of range" in r.error_msg
        sent = server.counters.orders_sent
        await p.order(S, "buy", "limit", 99.0, 0.1, coid=coid)  # same id, sane price: never sent
        again = await p.next_message()
        assert again.seq == r.seq and again.status == OrderStatus.REJECTED
        assert server.counters.orders_sent == sent


async def test_amend_that_changes_nothing_is_answered(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market(S, 100.0, 100.2)
        coid = await p.order(S, "buy", "limit", 99.0, 1.0)
        await p.report()
        await p.send(AmendRequest("s1", coid, 99.04, None))  # rounds down to 99.0: no change
        r = await p.report()
        assert (r.status, r.price, r.quantity, r.error_msg) == (OrderStatus.ACCEPTED, 99.0, 1.0, "")


async def test_refused_cancels_do_not_add_the_fee_again(server, peers):
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market(S, 100.0, 100.2)
        coid = await p.order(S, "buy", "market", None, 1.0)
        await p.report()
        filled = await p.report()
        accounts = Accounts()
        accounts.apply(filled)
        for _ in range(3):
            await p.send(CancelRequest("s1", coid))
            refused = await p.report()
            assert refused.status == OrderStatus.FILLED and refused.fee == filled.fee
            accounts.apply(refused)
        assert accounts.books[("s1", S)].fees == pytest.approx(filled.fee)


def test_rounding_never_goes_the_wrong_way():
    i = Instrument("X", 0.1, 1e-8, 1e-8)
    assert round_price(60000.09996, i, Side.BUY) == 60000.0
    assert round_price(60000.00004, i, Side.SELL) == 60000.1
    assert round_quantity(5.000000009, i) == 5.0
    assert round_price(0.1 + 0.2, i, Side.SELL) == 0.3  # on the grid already: not pushed up a tick
    assert round_price(0.7, i, Side.BUY) == 0.7
    tiny = Instrument("Y", 1e-13, 1e-13, 1e-13)
    assert round_price(1.5e-12, tiny, Side.BUY) == 1.5e-12


def _report(seq: int, status: OrderStatus = OrderStatus.ACCEPTED) -> OrderReport:
    return OrderReport(seq, f"c{seq}", "", "s1", S, "buy", "limit", 1.0, 1.0, status)


def test_client_follows_a_server_whose_journal_is_behind():
    from seqtrade import wire

    proto = ClientProtocol("s1", last_seq=5)
    proto.hello(0.0)
    nonce = proto.nonce
    ev = proto.receive_report_frame(wire.encode_message(Welcome("s1", nonce, 3, [])), 0.0)
    assert isinstance(ev, Synced) and proto.last_seq == 3
    ev = proto.receive_report_frame(wire.encode_message(_report(4)), 0.0)
    assert isinstance(ev, Report) and ev.report.seq == 4 and proto.last_seq == 4  # not dropped as a duplicate


async def test_closed_orders_leave_memory_and_stay_idempotent(nursery, base_dir, zctx):
    """Memory holds only the newest closed orders; an old id is still never sent again."""
    config = make_config(base_dir, "")
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, closed_orders_in_memory=2))
    venue = PaperVenue(config.venue.paper, list(config.venue.symbols))
    server = await nursery.start(serve, config, venue)
    with contextlib.closing(Peer(zctx, Endpoints.from_config(config), "s1")) as p, trio.fail_after(10):
        await p.join()
        await server.venue.set_market(S, 100.0, 100.2)
        first = await p.order(S, "buy", "market", None, 0.1)
        for _ in range(3):
            await p.order(S, "buy", "market", None, 0.1)
        reports = [await p.report() for _ in range(8)]
        assert len(server.by_key) == 2 and ("s1", first) not in server.by_key
        sent = server.counters.orders_sent
        await p.order(S, "buy", "market", None, 0.1, coid=first)  # found in the journal: re-sent as it was
        again = await p.next_message()
        assert again.seq == reports[1].seq and again.status == OrderStatus.FILLED
        assert server.counters.orders_sent == sent
    server.request_stop()


async def test_malformed_frames_from_a_refused_strategy_leave_no_trace(nursery, base_dir, zctx):
    """With allow_unknown_strategies = false, a bad frame from an unknown id is dropped: no journal
    row, no report (it used to get both)."""
    config = make_config(base_dir, "")
    config = dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, allow_unknown_strategies=False),
        strategies=[StrategyConfig(id="ok", module="not.run", enabled=False)],
    )
    server = await nursery.start(serve, config, PaperVenue(config.venue.paper, list(config.venue.symbols)))
    with contextlib.closing(Peer(zctx, Endpoints.from_config(config), "ok")) as p, trio.fail_after(10):
        await p.join()
        bad = {"type": "order_request", "client_order_id": "x1", "strategy_id": "intruder", "symbol": S,
               "side": "buy", "order_type": "limit", "price": -1.0, "quantity": 1.0, "timestamp": 1}  # fmt: skip
        before = server.counters.bad_frames
        await p.send_raw(b"order_request/intruder/" + msgpack.packb(bad))  # same socket: read in order
        await server.venue.set_market(S, 100.0, 100.2)
        await p.order(S, "buy", "market", None, 0.1)
        assert (await p.report()).status == OrderStatus.ACCEPTED
        assert server.counters.bad_frames == before + 1
        assert server.journal.find_order("intruder", "x1") is None and "intruder" not in server.seqs
    server.request_stop()


def test_maker_rebates_lower_the_fee_on_server_client_and_accounts():
    """A fill with a rebate (negative cost) lowers the order's cumulative fee everywhere; it used to be
    dropped because fees were only allowed to grow."""
    from seqtrade.server.orders import OrderRecord, apply_event
    from seqtrade.venues.base import OrderEvent

    rec = OrderRecord("v1", "s1", "c1", S, "buy", "limit", 99.0, 2.0, 0)
    first = apply_event(rec, OrderEvent("v1", OrderStatus.PARTIALLY_FILLED, filled_quantity=1.0, avg_price=99.0,
                                        last_fill_quantity=1.0, last_fill_price=99.0, fee=0.05, trade_id="t1"))  # fmt: skip
    second = apply_event(rec, OrderEvent("v1", OrderStatus.FILLED, filled_quantity=2.0, avg_price=99.0,
                                         last_fill_quantity=1.0, last_fill_price=99.0, fee=0.03, trade_id="t2"))  # fmt: skip
    assert first is not None and second is not None and second.fee == pytest.approx(0.03)
    assert rec.fee == pytest.approx(0.03)
    strategy, accounts = Strategy(), Accounts()
    for seq, r in enumerate((first, second), 1):
        r.seq = seq
        strategy._apply_report(r)
        accounts.apply(r)
    assert strategy.fees == pytest.approx(0.03)
    assert accounts.books[("s1", S)].fees == pytest.approx(0.03)
