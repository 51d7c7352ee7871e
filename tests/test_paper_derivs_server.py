"""Swaps on the paper venue through the real server: strategies (protocol peers on real ZeroMQ
sockets) open and close a BTC-USDT-SWAP position; funding, a liquidation warning and a liquidation
each reach the owning strategy once and are journaled once; an inverse trade makes its PnL in BTC; a
reduce-only order is judged against the account; two strategies on opposite sides of one swap (net mode) each
keep their own position and PnL while the account's net matches the venue's. The kill -9 of a real
server process during funding is in tests/test_paper_derivs_faults.py."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest
import trio

from seqtrade.config import Config, parse_config
from seqtrade.models import (
    AccountEvent,
    AccountEventKind,
    OrderReport,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
)
from seqtrade.server.app import serve
from seqtrade.server.control import request
from seqtrade.server.gateway import Gateway
from seqtrade.venues.base import VenueAccountEvent
from seqtrade.venues.paper import PaperVenue

from .peer import Peer

SWAP, INV = "BTC-USDT-SWAP", "BTC-USD-SWAP"
CONFIG = """
[server]
run_dir = "run"
status_interval = 0
heartbeat_timeout = 30.0
shutdown_policy = "leave"

[venue]
kind = "paper"
symbols = ["BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-SWAP"]

[venue.paper]
tick_interval = 3600.0   # the random walk stays still: the tests move the market with set_market
trade_probability = 0.0
balances = { USDT = 1000.0, BTC = 0.1 }
start_prices = { "BTC-USDT" = 60000.0, "BTC-USDT-SWAP" = 60000.0, "BTC-USD-SWAP" = 60000.0 }

[venue.derivatives.instruments."BTC-USDT-SWAP"]
margin_mode = "cross"
leverage = 50
"""


@pytest.fixture
def config(base_dir: Path) -> Config:
    return parse_config(CONFIG, base_dir=str(base_dir))


@pytest.fixture
async def server(nursery: trio.Nursery, config: Config) -> AsyncIterator[Gateway]:
    venue = PaperVenue(
        config.venue.paper, list(config.venue.symbols), state_path=config.run_dir / "paper.sqlite",
        derivatives=config.venue.derivatives,
    )  # fmt: skip
    gw: Gateway = await nursery.start(serve, config, venue)
    yield gw
    gw.request_stop()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def paper(gw: Gateway) -> PaperVenue:
    assert isinstance(gw.venue, PaperVenue)
    return gw.venue


async def trade(p: Peer, side: str, qty: float, symbol: str = SWAP) -> OrderReport:
    await p.order(symbol, side, "market", None, qty)
    while True:
        r = await p.report()
        assert isinstance(r, OrderReport), r
        if not r.is_open:
            assert r.status is OrderStatus.FILLED, r
            return r


async def two_strategies(gw: Gateway, peers: dict[str, Peer]) -> tuple[Peer, Peer, PaperVenue]:
    """Strategies a and b joined, the swap's market at 60000.0 / 60000.2."""
    a, b = peers["a"], peers["b"]
    await a.join()
    await b.join()
    venue = paper(gw)
    await venue.set_market(SWAP, 60000.0, 60000.2)
    return a, b, venue


async def account_event(p: Peer) -> AccountEvent:
    r = await p.report()
    assert isinstance(r, AccountEvent), r
    return r


async def status(config: Config) -> dict:  # type: ignore[type-arg]
    ep = f"ipc://{config.run_dir / 'control.ipc'}"
    return await trio.to_thread.run_sync(lambda: request(ep, "status"))  # type: ignore[no-any-return]


def journaled_events(server: Gateway, config: Config) -> list[dict]:  # type: ignore[type-arg]
    """Every account_event report in the journal, as stored (the running server's journal indexes
    what its log holds first: the log is the persistence point, the SQLite file its index)."""
    server.journal.index()
    db = sqlite3.connect(config.run_dir / "journal.sqlite")
    try:
        bodies = [
            msgpack.unpackb(b, raw=False)
            for (b,) in db.execute("SELECT body FROM reports ORDER BY strategy_id, seq")
        ]
    finally:
        db.close()
    return [b for b in bodies if "event_id" in b]


async def test_a_strategy_opens_and_closes_a_swap_position(server: Gateway, peers, config: Config) -> None:
    with trio.fail_after(15):
        a = peers["a"]
        welcome = await a.join()
        (inst,) = [i for i in welcome.instruments if i.symbol == SWAP]
        assert (inst.kind, inst.contract_value, inst.lot_size, inst.settle_currency) == (
            "swap",
            0.01,
            0.01,
            "USDT",
        )
        await paper(server).set_market(SWAP, 60000.0, 60000.2)
        buy = await trade(a, "buy", 2.0)  # 2 contracts = 0.02 BTC
        assert (buy.filled_quantity, buy.filled_price) == (2.0, 60000.2)
        assert await paper(server).positions() == {"BTC-USDT": 0.0, SWAP: 2.0, INV: 0.0}
        await paper(server).set_market(SWAP, 61000.0, 61000.2)
        sell = await trade(a, "sell", 2.0)
        assert await paper(server).positions() == {"BTC-USDT": 0.0, SWAP: 0.0, INV: 0.0}
        books = (await status(config))["accounts"]["strategies"]["a"][SWAP]
        assert books["position"] == 0.0
        assert books["realized_pnl"] == pytest.approx((61000.0 - 60000.2) * 2 * 0.01)  # USDT, with ctVal
        assert books["fees"] == pytest.approx(buy.fee + sell.fee)
        cash = (await paper(server).balances())["USDT"]
        assert cash == pytest.approx(1000.0 + books["realized_pnl"] - books["fees"])


async def test_funding_and_a_liquidation_each_reach_the_owner_once_and_the_journal_once(
    server: Gateway, peers, config: Config
) -> None:
    with trio.fail_after(15):
        a, b, venue = await two_strategies(server, peers)
        await trade(a, "buy", 30.0)  # 18000 USDT of position on 1000 USDT at 50x
        (change,) = await venue.settle_funding(rate=0.001)
        fund = await account_event(a)
        assert (fund.kind, fund.symbol, fund.quantity, fund.currency) == (
            AccountEventKind.FUNDING,
            SWAP,
            0.0,
            "USDT",
        )
        assert fund.amount == pytest.approx(-30 * 0.01 * 60000.1 * 0.001)  # the long pays 18.00003
        assert fund.event_id == change.event_id
        # the venue hands the same event over again (as after a restart): applied once, nothing new
        again = VenueAccountEvent(AccountEventKind.FUNDING, SWAP, change.event_id, "", 0.0, change.price,
                                  change.amount, "USDT", change.ts)  # fmt: skip
        await server.account_event(again)
        await venue.set_market(SWAP, 58000.0, 58000.2)  # a loss of 600: margin ratio 5.2, no warning
        await venue.set_market(SWAP, 57400.0, 57400.2)  # a loss of 780: margin ratio 2.7, under 3: warned
        warn = await account_event(a)
        assert (warn.kind, warn.quantity, warn.price) == (AccountEventKind.LIQUIDATION_WARNING, 0.0, 57400.1)
        await venue.set_market(SWAP, 56900.0, 56900.2)  # a loss of 930 + 18 of funding: liquidated
        liq = await account_event(a)
        assert (liq.kind, liq.quantity, liq.price) == (AccountEventKind.LIQUIDATION, -30.0, 56900.1)
        assert await venue.positions() == {"BTC-USDT": 0.0, SWAP: 0.0, INV: 0.0}
        books = (await status(config))["accounts"]
        assert books["strategies"]["a"][SWAP]["position"] == 0.0
        assert b.reports == [] and b.pending == []  # b holds nothing: told nothing
        journaled = journaled_events(server, config)
        assert [(e["strategy_id"], e["event_id"]) for e in journaled] == [
            ("a", change.event_id), ("a", warn.event_id), ("a", liq.event_id),
        ]  # fmt: skip
        assert [r.seq for r in a.reports] == list(range(1, len(a.reports) + 1))


async def test_two_strategies_on_opposite_sides_keep_their_own_and_the_net_matches_the_venue(
    server: Gateway, peers, config: Config
) -> None:
    with trio.fail_after(15):
        a, b, venue = await two_strategies(server, peers)
        await trade(a, "buy", 3.0)  # at 60000.2
        await trade(b, "sell", 1.0)  # at 60000.0: the paper account nets them
        assert (await venue.positions())[SWAP] == 2.0
        accounts = (await status(config))["accounts"]
        assert accounts["strategies"]["a"][SWAP]["position"] == 3.0
        assert accounts["strategies"]["b"][SWAP]["position"] == -1.0
        assert accounts["account"][SWAP]["position"] == 2.0
        (change,) = await venue.settle_funding(rate=0.001)  # on the net long of 2
        fa, fb = await account_event(a), await account_event(b)
        assert fa.amount == pytest.approx(-3 * 0.01 * 60000.1 * 0.001)  # a pays on its 3 ...
        assert fb.amount == pytest.approx(1 * 0.01 * 60000.1 * 0.001)  # ... b receives on its 1
        assert fa.amount + fb.amount == pytest.approx(change.amount)
        # b closes its short: for the account that is a buy (more long), and it is its own PnL
        await venue.set_market(SWAP, 59000.0, 59000.2)
        await trade(b, "buy", 1.0)  # at 59000.2: b made (60000.0 - 59000.2) x 0.01
        await trade(a, "sell", 3.0)  # at 59000.0: a lost (60000.2 - 59000.0) x 3 x 0.01
        accounts = (await status(config))["accounts"]
        books_a, books_b = accounts["strategies"]["a"][SWAP], accounts["strategies"]["b"][SWAP]
        assert books_b["realized_pnl"] == pytest.approx((60000.0 - 59000.2) * 0.01)
        assert books_a["realized_pnl"] == pytest.approx((59000.0 - 60000.2) * 3 * 0.01)
        assert (await venue.positions())[SWAP] == 0.0 == accounts["account"][SWAP]["position"]
        # the paper account's cash is what the two strategies' books say, to the cent
        made = books_a["realized_pnl"] + books_b["realized_pnl"] - books_a["fees"] - books_b["fees"]
        assert (await venue.balances())["USDT"] == pytest.approx(1000.0 + made + fa.amount + fb.amount)


async def test_an_inverse_swap_trade_makes_its_pnl_in_btc(server: Gateway, peers, config: Config) -> None:
    with trio.fail_after(15):
        a = peers["a"]
        welcome = await a.join()
        (inst,) = [i for i in welcome.instruments if i.symbol == INV]
        assert (inst.inverse, inst.contract_value, inst.contract_currency, inst.settle_currency) == (
            True, 100.0, "USD", "BTC",
        )  # fmt: skip
        venue = paper(server)
        await venue.set_market(INV, 60000.0, 60000.2)
        buy = await trade(a, "buy", 10.0, INV)  # 10 contracts of 100 USD
        await venue.set_market(INV, 66000.0, 66000.2)
        sell = await trade(a, "sell", 10.0, INV)
        books = (await status(config))["accounts"]["strategies"]["a"][INV]
        pnl = (1 / 60000.2 - 1 / 66000.0) * 10 * 100  # BTC
        assert books["realized_pnl"] == pytest.approx(pnl, rel=1e-9)
        assert buy.fee == pytest.approx(1000 / 60000.2 * 0.001) and sell.fee == pytest.approx(
            1000 / 66000.0 * 0.001
        )
        assert (await venue.balances())["BTC"] == pytest.approx(0.1 + pnl - buy.fee - sell.fee, abs=1e-12)
        assert (await venue.balances())["USDT"] == 1000.0  # an inverse swap never touches the USDT


async def test_a_reduce_only_order_is_sent_only_when_it_reduces_the_account(
    server: Gateway, peers, config: Config
) -> None:
    with trio.fail_after(15):
        a, b, venue = await two_strategies(server, peers)
        await trade(a, "buy", 3.0)
        await trade(b, "sell", 1.0)  # the account is long 2
        # b "closes" its short reduce-only: a buy would add to the account's long: refused by the server
        await b.send(
            OrderRequest("b", "b-ro", SWAP, Side.BUY, OrderType.MARKET, None, 1.0, now_ms(), reduce_only=True)
        )
        refused = await b.report()
        assert isinstance(refused, OrderReport) and refused.status is OrderStatus.REJECTED
        assert "would not reduce the account's position" in refused.error_msg
        # a's reduce-only sell of 2 reduces the account: sent, and the paper venue takes it as reduce-only
        await a.send(
            OrderRequest(
                "a", "a-ro", SWAP, Side.SELL, OrderType.MARKET, None, 2.0, now_ms(), reduce_only=True
            )
        )
        while (r := await a.report()).is_open:
            pass
        assert isinstance(r, OrderReport) and r.status is OrderStatus.FILLED
        assert (await venue.positions())[SWAP] == 0.0
        accounts = (await status(config))["accounts"]
        assert (
            accounts["strategies"]["a"][SWAP]["position"],
            accounts["strategies"]["b"][SWAP]["position"],
        ) == (1.0, -1.0)
