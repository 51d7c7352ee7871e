"""Swaps against the fake OKX (tests/fakeokx, written from the fact sheet independently of the adapter),
through the whole server: a strategy (a protocol peer) opens and closes BTC-USDT-SWAP positions in
net and long/short mode, cross and isolated, trades the inverse BTC-USD-SWAP with PnL in BTC; funding,
a liquidation and an ADL arrive once at the owning strategy and in the journal; a position opened by
hand shows as external; a server stopped hard in the middle of a funding and a fill reconciles after
its restart. OKX's 51000 is never seen."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import zmq

from seqtrade.client.runner import Endpoints
from seqtrade.config import Config, parse_config
from seqtrade.errors import VenueError
from seqtrade.models import AccountEvent, OrderReport, OrderRequest, OrderStatus, OrderType, Side
from seqtrade.server.app import serve
from seqtrade.server.gateway import Gateway
from seqtrade.server.positions import EXTERNAL
from seqtrade.venues.okx import OkxCredentials, OkxVenue
from tests.fakeokx import open_fake_okx

from .peer import Peer

SWAP = "BTC-USDT-SWAP"
INV = "BTC-USD-SWAP"
CREDS = OkxCredentials("fake-key", "fake-secret", "fake-pass")


def okx_config(base_dir: Path, fake: Any, symbols: list[str], extra: str = "") -> Config:
    return parse_config(f"""
[server]
run_dir = "run"
status_interval = 0
heartbeat_timeout = 30.0
shutdown_policy = "leave"
[risk]
reconcile_interval = 0
[venue]
kind = "okx"
symbols = {json.dumps(symbols)}
[venue.okx]
demo = true
rest_url = "{fake.rest_url}"
ws_public_url = "{fake.ws_public_url}"
ws_private_url = "{fake.ws_private_url}"
reconnect_min = 0.05
reconnect_max = 0.2
request_timeout = 2.0
{extra}
""", base_dir=str(base_dir))  # fmt: skip


@asynccontextmanager
async def server(config: Config) -> AsyncIterator[Gateway]:
    venue = OkxVenue(
        config.venue.okx, list(config.venue.symbols), CREDS, derivatives=config.venue.derivatives
    )
    async with trio.open_nursery() as nursery:
        gw: Gateway = await nursery.start(serve, config, venue)
        try:
            yield gw
        finally:
            nursery.cancel_scope.cancel()  # a hard stop: no shutdown policy, no final snapshot


async def trade(p: Peer, symbol: str, side: str, qty: float, *, reduce_only: bool = False) -> OrderReport:
    coid = p.coid()
    await p.send(OrderRequest(p.sid, coid, symbol, Side(side), OrderType.MARKET, None, qty,
                              time.time_ns() // 1_000_000, reduce_only))  # fmt: skip
    while True:
        r = await p.report()
        if isinstance(r, OrderReport) and r.client_order_id == coid and not r.is_open:
            return r


async def next_event(p: Peer) -> AccountEvent:
    while True:
        r = await p.report()
        if isinstance(r, AccountEvent):
            return r


def no_51000(*peers: Peer) -> None:
    """No report of any strategy carries an OKX 51000 (posSide/parameter error), and none was rejected."""
    for p in peers:
        for r in p.reports:
            if isinstance(r, OrderReport):
                assert "51000" not in r.error_msg and r.status is not OrderStatus.REJECTED, r


def order_bodies(fake: Any) -> list[dict[str, Any]]:
    out = []
    for r in fake.requests:
        if r.op == "order" or (r.method == "POST" and r.path == "/api/v5/trade/order"):
            body = r.body if isinstance(r.body, dict) else {}
            out += body.get("args", [body]) if "args" in body else [body]
    return out


@pytest.fixture
async def zctx() -> AsyncIterator[zmq.Context]:  # type: ignore[type-arg]
    ctx: zmq.Context = zmq.Context()  # type: ignore[type-arg]
    yield ctx
    ctx.destroy(linger=0)


async def test_net_mode_open_and_close_cross_with_reduce_only_and_funding_liquidation_adl_once(
    base_dir: Path, zctx: Any
) -> None:
    with trio.fail_after(30):
        async with open_fake_okx() as fake:
            fake.set_market(SWAP, bid=60000.0, ask=60000.1, bid_sz=50, ask_sz=50)
            config = okx_config(base_dir, fake, [SWAP],
                                '[venue.derivatives.instruments."BTC-USDT-SWAP"]\nleverage = 5')  # fmt: skip
            async with server(config) as gw:
                a = Peer(zctx, Endpoints.from_config(config), "a")
                welcome = await a.join()
                (inst,) = welcome.instruments
                assert (inst.symbol, inst.kind, inst.contract_value, inst.settle_currency) == (
                    SWAP,
                    "swap",
                    0.01,
                    "USDT",
                )
                r = await trade(a, SWAP, "buy", 2)
                assert r.status is OrderStatus.FILLED and r.filled_quantity == 2
                assert fake.position(SWAP)["pos"] == "2"  # contracts, never coins
                (body,) = order_bodies(fake)
                assert body["tdMode"] == "cross" and "posSide" not in body and "reduceOnly" not in body
                assert fake.exchange.levers[(SWAP, "cross", "")] == 5  # set at start, per instrument
                # funding: the strategy holds the whole position, so it pays all of it, once
                fake.set_mark_price(SWAP, 60000.0)
                (bill,) = fake.settle_funding(SWAP, 0.0001)
                ev = await next_event(a)
                assert (ev.kind, ev.symbol, ev.quantity, ev.currency) == ("funding", SWAP, 0.0, "USDT")
                assert ev.amount == pytest.approx(float(bill["balChg"])) and ev.amount == pytest.approx(-0.12)
                # a reduce-only close of half: sent with reduceOnly, the account's position is long
                r = await trade(a, SWAP, "sell", 1, reduce_only=True)
                assert r.status is OrderStatus.FILLED and order_bodies(fake)[-1]["reduceOnly"] is True
                # a liquidation of part, then an ADL of the rest: each once, the position follows
                fake.liquidate(SWAP, sz=0.5)
                liq = await next_event(a)
                assert (liq.kind, liq.quantity) == ("liquidation", -0.5)
                fake.adl(SWAP)
                adl = await next_event(a)
                assert (adl.kind, adl.quantity) == ("adl", -0.5)
                assert gw.engine.accounts.position("a", SWAP) == 0.0
                assert await gw.venue.positions() == {SWAP: 0.0}
                # every event is in the journal, once, in a's report stream
                kinds = [type(x).__name__ for x in gw.journal.reports_after("a", 0, 100)]
                assert kinds.count("AccountEvent") == 3
                warnings = await gw_guard_reconcile(gw)
                assert warnings == []
                no_51000(a)


async def start_error(config: Config) -> str:
    """The VenueError that stopped the server's start (out of the task groups it crossed)."""
    try:
        async with server(config):
            pass
    except BaseExceptionGroup as eg:
        match, _ = eg.split(VenueError)
        assert match is not None, eg
        leaf: BaseException = match
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        return str(leaf)
    raise AssertionError("the server started")


async def gw_guard_reconcile(gw: Gateway) -> list[str]:
    from seqtrade.server.guard import Guard

    guard = Guard(gw.config, gw.venue, gw.journal, gw.engine.risk, gw.engine.accounts,
                  in_flight=gw.engine.open_records, sink=gw)  # fmt: skip
    guard._adjusted = True  # as a check after start: a difference is a mismatch
    return await guard.reconcile()


async def test_long_short_mode_isolated_opens_and_closes_each_leg_with_posside(
    base_dir: Path, zctx: Any
) -> None:
    with trio.fail_after(30):
        async with open_fake_okx() as fake:
            fake.account.pos_mode = "long_short_mode"
            fake.set_market(SWAP, bid=60000.0, ask=60000.1, bid_sz=50, ask_sz=50)
            config = okx_config(base_dir, fake, [SWAP], '[venue.derivatives]\nposition_mode = "long_short"\n'
                                '[venue.derivatives.instruments."BTC-USDT-SWAP"]\nmargin_mode = "isolated"\n'
                                'leverage = 3')  # fmt: skip
            async with server(config) as gw:
                # isolated in long/short mode: leverage per side
                assert fake.exchange.levers[(SWAP, "isolated", "long")] == 3
                assert fake.exchange.levers[(SWAP, "isolated", "short")] == 3
                a = Peer(zctx, Endpoints.from_config(config), "a")
                await a.join()
                await trade(a, SWAP, "buy", 2)  # opens the long leg
                await trade(a, SWAP, "buy", 1)  # adds to it
                await trade(a, SWAP, "sell", 3)  # closes it all
                b = Peer(zctx, Endpoints.from_config(config), "b")
                await b.join()
                await trade(b, SWAP, "sell", 1)  # opens a short leg
                await trade(b, SWAP, "buy", 1, reduce_only=True)  # closes it
                bodies = order_bodies(fake)
                assert [(o["side"], o["posSide"], o["tdMode"]) for o in bodies] == [
                    ("buy", "long", "isolated"), ("buy", "long", "isolated"), ("sell", "long", "isolated"),
                    ("sell", "short", "isolated"), ("buy", "short", "isolated"),
                ]  # fmt: skip
                assert all("reduceOnly" not in o for o in bodies)  # closing is reduce-only by itself
                assert await gw.venue.positions() == {SWAP: 0.0}
                assert gw.engine.accounts.net(SWAP) == 0.0
                no_51000(a, b)


async def test_a_position_mode_other_than_the_accounts_is_refused_at_start_with_the_reason(
    base_dir: Path,
) -> None:
    with trio.fail_after(20):
        async with open_fake_okx() as fake:
            config = okx_config(base_dir, fake, [SWAP], '[venue.derivatives]\nposition_mode = "long_short"')
            why = await start_error(config)
            assert "position mode 'net_mode', but venue.derivatives.position_mode is 'long_short'" in why


async def test_a_leverage_okx_refuses_stops_the_start_and_names_the_error(base_dir: Path) -> None:
    with trio.fail_after(20):
        async with open_fake_okx() as fake:
            config = okx_config(
                base_dir, fake, [SWAP], '[venue.derivatives.instruments."BTC-USDT-SWAP"]\nleverage = 120'
            )
            why = await start_error(config)
            assert why.startswith("OKX refused leverage 120x for BTC-USDT-SWAP (cross margin): 59102"), why


async def test_inverse_swap_in_contracts_with_pnl_and_fees_in_btc(base_dir: Path, zctx: Any) -> None:
    with trio.fail_after(30):
        async with open_fake_okx() as fake:
            fake.set_market(INV, bid=49999.9, ask=50000.0, bid_sz=500, ask_sz=500)
            config = okx_config(base_dir, fake, [INV])
            async with server(config) as gw:
                a = Peer(zctx, Endpoints.from_config(config), "a")
                await a.join()
                r = await trade(a, INV, "buy", 200)  # 200 contracts of 100 USD
                assert r.filled_price == 50000.0 and fake.position(INV)["pos"] == "200"
                fake.set_market(INV, bid=55000.0, ask=55000.1, bid_sz=500, ask_sz=500)
                await trade(a, INV, "sell", 200)
                book = gw.engine.accounts.books[("a", INV)]
                assert book.currency == "BTC" and book.position == 0
                assert book.realized_pnl == pytest.approx((1 / 50000 - 1 / 55000) * 200 * 100)  # 0.0364 BTC
                # fees in BTC too: taker 0.1 % of 20000 USD at each price
                assert book.fees == pytest.approx(0.001 * 20000 / 50000 + 0.001 * 20000 / 55000)
                no_51000(a)


async def test_two_strategies_opposite_sides_and_a_position_opened_by_hand_reconcile_exactly(
    base_dir: Path, zctx: Any
) -> None:
    with trio.fail_after(30):
        async with open_fake_okx() as fake:
            fake.set_market(SWAP, bid=60000.0, ask=60000.1, bid_sz=50, ask_sz=50)
            config = okx_config(base_dir, fake, [SWAP])
            async with server(config) as gw:
                a = Peer(zctx, Endpoints.from_config(config), "a")
                b = Peer(zctx, Endpoints.from_config(config), "b")
                await a.join()
                await b.join()
                await trade(a, SWAP, "buy", 3)
                await trade(b, SWAP, "sell", 1)
                # b's "close" would add to the account's long: refused as reduce-only, never sent
                r = await trade(b, SWAP, "buy", 1, reduce_only=True)
                assert (
                    r.status is OrderStatus.REJECTED
                    and "would not reduce the account's position" in r.error_msg
                )
                assert len(order_bodies(fake)) == 2
                # a's reduce-only sell reduces the account: sent as reduce-only
                r = await trade(a, SWAP, "sell", 1, reduce_only=True)
                assert r.status is OrderStatus.FILLED and order_bodies(fake)[-1]["reduceOnly"] is True
                fake.order_by_hand(SWAP, "buy", 0.5, 60000.1)  # on okx.com
                while gw.engine.accounts.position(EXTERNAL, SWAP) != 0.5:
                    await trio.sleep(0.01)
                acc = gw.engine.accounts
                assert (acc.position("a", SWAP), acc.position("b", SWAP)) == (2, -1)
                assert await gw.venue.positions() == {SWAP: pytest.approx(1.5)} and acc.net(
                    SWAP
                ) == pytest.approx(1.5)
                assert await gw_guard_reconcile(gw) == []
