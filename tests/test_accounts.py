"""Per-strategy accounts: average-cost PnL and fees from reports, rebuilt from the journal, and in a
real server: two strategies trading one symbol add up to the account and to the venue."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import zmq

from seqtrade.cli import format_status
from seqtrade.client import Endpoints
from seqtrade.config import Config
from seqtrade.models import OrderReport, OrderStatus
from seqtrade.server.accounts import Accounts, Book, Mismatch
from seqtrade.server.app import serve
from seqtrade.server.control import request
from seqtrade.server.journal import Journal
from seqtrade.venues.paper import PaperVenue

from .conftest import make_config
from .peer import Peer

S = "BTC-USDT"


def report(sid: str, coid: str, side: str, status: OrderStatus, fill: float = 0.0, price: float = 0.0,
           fee: float = 0.0, seq: int = 0, symbol: str = S) -> OrderReport:  # fmt: skip
    return OrderReport(seq, coid, "x", sid, symbol, side, "limit", price, 10.0, status, 0.0, price, fill,
                       price if fill else 0.0, fee)  # fmt: skip


def test_average_cost_realised_pnl_and_flip() -> None:
    b = Book()
    b.apply_fill("buy", 1.0, 100.0)
    b.apply_fill("buy", 1.0, 110.0)
    assert (b.position, b.avg_price, b.realized_pnl) == (2.0, 105.0, 0.0)
    b.apply_fill("sell", 0.5, 120.0)
    assert (b.position, b.avg_price, b.realized_pnl) == (1.5, 105.0, 7.5)
    b.apply_fill("sell", 2.5, 100.0)  # closes 1.5 at a loss of 5 each, opens 1.0 short at 100
    assert (b.position, b.avg_price) == (-1.0, 100.0) and b.realized_pnl == pytest.approx(0.0)
    b.apply_fill("buy", 1.0, 90.0)  # the short gains 10
    assert (b.position, b.avg_price, b.realized_pnl) == (0.0, 0.0, pytest.approx(10.0))


def test_fees_are_the_growth_of_each_orders_cumulative_fee() -> None:
    acc = Accounts()
    acc.apply(report("s1", "a", "buy", OrderStatus.ACCEPTED))
    acc.apply(report("s1", "a", "buy", OrderStatus.PARTIALLY_FILLED, 1.0, 100.0, fee=0.1))
    acc.apply(report("s1", "a", "buy", OrderStatus.PARTIALLY_FILLED, 1.0, 100.0, fee=0.25))
    acc.apply(report("s1", "a", "buy", OrderStatus.FILLED, 0.5, 100.0, fee=0.3))
    acc.apply(report("s2", "a", "sell", OrderStatus.FILLED, 1.0, 101.0, fee=0.2))  # same coid, other strategy
    book = acc.books[("s1", S)]
    assert (book.position, book.fees, book.fills) == (2.5, pytest.approx(0.3), 3)
    assert acc.books[("s2", S)].fees == pytest.approx(0.2)
    assert acc.net(S) == pytest.approx(1.5) and acc.nets() == {S: pytest.approx(1.5)}
    acc.apply(report("s1", "", "", OrderStatus.REJECTED, symbol=""))  # a reject of no order: ignored
    assert acc.mismatches({S: 1.5}, 1e-9) == []
    assert acc.mismatches({S: 1.0, "ETH-USDT": 2.0}, 1e-9) == [
        Mismatch(S, pytest.approx(1.5), 1.0),
        Mismatch("ETH-USDT", 0.0, 2.0),  # type: ignore[arg-type]
    ]


def test_rebuild_from_the_journal(tmp_path: Path) -> None:
    live = Accounts()
    j = Journal(tmp_path / "j.sqlite")
    seqs = {"s1": 0, "s2": 0}
    flow = [
        report("s1", "a", "buy", OrderStatus.ACCEPTED),
        report("s2", "b", "sell", OrderStatus.PARTIALLY_FILLED, 1.0, 102.0, 0.1),
        report("s1", "a", "buy", OrderStatus.PARTIALLY_FILLED, 2.0, 100.0, 0.2),
        report("s2", "b", "sell", OrderStatus.FILLED, 1.0, 103.0, 0.3),
        report("s1", "c", "sell", OrderStatus.FILLED, 1.0, 104.0, 0.05),
    ]
    for r in flow:
        seqs[r.strategy_id] += 1
        r.seq = seqs[r.strategy_id]
        j.add_reports([("", r, r.is_open)])
        live.apply(r)
    rebuilt = Accounts()
    assert rebuilt.rebuild(j) == len(flow)
    assert rebuilt.snapshot() == live.snapshot()
    assert rebuilt.books[("s1", S)].realized_pnl == pytest.approx(4.0)
    # the open order's fee so far is remembered: its next report adds only the growth
    rebuilt.apply(report("s1", "a", "buy", OrderStatus.FILLED, 1.0, 100.0, 0.3))
    assert rebuilt.books[("s1", S)].fees == pytest.approx(0.3 + 0.05)
    j.close()


# ----------------------------------------------------------------------------- in the server


@pytest.fixture
def config(base_dir: Path) -> Config:
    return make_config(base_dir, "[risk]\nreconcile_interval = 3600.0\n")


async def _status(config: Config) -> dict:  # type: ignore[type-arg]
    ep = f"ipc://{config.run_dir / 'control.ipc'}"
    return await trio.to_thread.run_sync(lambda: request(ep, "status"))  # type: ignore[no-any-return]


async def _trade(p, side: str, qty: float) -> None:
    await p.order(S, side, "market", None, qty)
    while (await p.report()).status != OrderStatus.FILLED:
        pass


async def test_two_strategies_on_one_symbol_add_up_to_the_account(server, peers, config) -> None:
    with trio.fail_after(10):
        a, b = peers["a"], peers["b"]
        await a.join()
        await b.join()
        await server.venue.set_market(S, 100.0, 100.2)
        await _trade(a, "buy", 1.0)  # the top level: 1.0 at 100.2
        await _trade(b, "sell", 0.4)
        await server.venue.set_market(S, 101.0, 101.2)
        await _trade(a, "sell", 0.5)  # a realises (101 - 100.2) x 0.5
        await _trade(b, "sell", 0.3)
        st = await _status(config)
        books = st["accounts"]["strategies"]
        assert books["a"][S]["position"] == pytest.approx(0.5)
        assert books["b"][S]["position"] == pytest.approx(-0.7)
        assert books["a"][S]["realized_pnl"] == pytest.approx(0.4)
        account = st["accounts"]["account"][S]
        assert account["position"] == pytest.approx(books["a"][S]["position"] + books["b"][S]["position"])
        assert (
            account["fees"] == pytest.approx(books["a"][S]["fees"] + books["b"][S]["fees"])
            and account["fees"] > 0
        )
        venue = await server.venue.positions()
        assert venue[S] == pytest.approx(account["position"])
        text = format_status(st)
        assert "= account net" in text and "trading: global active" in text
        print(text)  # the README shows this


async def test_accounts_survive_a_restart_and_a_lost_venue_is_reported(nursery, config, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="seqtrade.server.guard")
    ctx = zmq.Context()
    try:
        with trio.fail_after(15):
            for run in range(2):
                venue = PaperVenue(config.venue.paper, list(config.venue.symbols))
                done = trio.Event()

                async def serving(task_status=trio.TASK_STATUS_IGNORED):
                    await serve(config, venue, task_status=task_status)  # noqa: B023
                    done.set()  # noqa: B023

                gw = await nursery.start(serving)
                if run == 0:
                    p = Peer(ctx, Endpoints.from_config(config), "a")
                    await p.join()
                    await venue.set_market(S, 100.0, 100.2)
                    await _trade(p, "buy", 0.5)
                    p.close()
                    before = (await _status(config))["accounts"]
                    assert not caplog.records
                else:
                    # the paper venue starts empty: the strategies' 0.5 is not at the venue
                    assert (await _status(config))["accounts"] == before
                    while not caplog.records:
                        await trio.sleep(0.05)
                    assert (
                        caplog.records[0]
                        .getMessage()
                        .startswith(
                            "position mismatch in BTC-USDT: the strategies and external hold 0.5 in total, "
                            "the venue paper holds 0 (off by -0.5, since "
                        )
                    )
                gw.request_stop()
                await done.wait()
    finally:
        ctx.destroy(linger=0)
