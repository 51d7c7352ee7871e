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
from seqtrade.models import AccountEvent, MarkPrice, OrderReport, OrderRequest, OrderStatus, OrderType, Side
from seqtrade.server.app import serve
from seqtrade.server.gateway import Gateway
from seqtrade.server.positions import EXTERNAL
from seqtrade.venues.okx import OkxCredentials, OkxVenue
from tests.fakeokx import open_fake_okx

from .peer import Peer

SWAP = "BTC-USDT-SWAP"
INV = "BTC-USD-SWAP"
CREDS = OkxCredentials("fake-key", "fake-secret", "fake-pass")


def okx_toml(fake: Any, symbols: list[str], extra: str = "") -> str:
    """A server config for the fake OKX: no status or reconcile loop, positions left at a stop."""
    return f"""
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
{extra}"""


def okx_config(base_dir: Path, fake: Any, symbols: list[str], extra: str = "") -> Config:
    return parse_config(okx_toml(fake, symbols, "request_timeout = 2.0\n" + extra), base_dir=str(base_dir))


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


@asynccontextmanager
async def okx_swap(
    base_dir: Path, zctx: Any, *names: str, extra: str = "", pos_mode: str = ""
) -> AsyncIterator[tuple[Any, Config, Gateway, list[Peer]]]:
    """The fake OKX with a BTC-USDT-SWAP market, the server on it (``okx_config`` with ``extra``)
    and one unjoined peer per strategy id in ``names``; ``pos_mode`` sets the account's mode first."""
    async with open_fake_okx() as fake:
        if pos_mode:
            fake.account.pos_mode = pos_mode
        fake.set_market(SWAP, bid=60000.0, ask=60000.1, bid_sz=50, ask_sz=50)
        config = okx_config(base_dir, fake, [SWAP], extra)
        async with server(config) as gw:
            yield fake, config, gw, [Peer(zctx, Endpoints.from_config(config), n) for n in names]


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
        async with okx_swap(
            base_dir, zctx, "a", extra='[venue.derivatives.instruments."BTC-USDT-SWAP"]\nleverage = 5'
        ) as (fake, config, gw, (a,)):
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
        async with okx_swap(base_dir, zctx, "a", "b") as (fake, config, gw, (a, b)):
            await a.join()
            await b.join()
            await trade(a, SWAP, "buy", 3)
            await trade(b, SWAP, "sell", 1)
            # b's "close" would add to the account's long: refused as reduce-only, never sent
            r = await trade(b, SWAP, "buy", 1, reduce_only=True)
            assert (
                r.status is OrderStatus.REJECTED and "would not reduce the account's position" in r.error_msg
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


async def test_a_server_stopped_hard_during_a_funding_and_a_fill_reconciles_after_its_restart(
    base_dir: Path, zctx: Any
) -> None:
    """The server dies (its task group cancelled: nothing more is journaled, no shutdown policy, no
    snapshot, as with kill -9) after OKX settled a funding and filled an order whose pushes it never
    saw. Restarted, it learns both from OKX (the order by query, the funding from the bills), applies
    each once, and the strategy's position equals the exchange's; a second restart changes nothing."""
    with trio.fail_after(40):
        async with open_fake_okx() as fake:
            fake.set_market(SWAP, bid=60000.0, ask=60000.1, bid_sz=50, ask_sz=50)
            fake.set_mark_price(SWAP, 60000.0)
            config = okx_config(base_dir, fake, [SWAP])
            async with server(config) as gw:
                a = Peer(zctx, Endpoints.from_config(config), "a")
                await a.join()
                await trade(a, SWAP, "buy", 2)
                fake.private_pushes_paused = True  # from here the server hears nothing of its account
                coid = a.coid()
                await a.send(OrderRequest("a", coid, SWAP, Side.BUY, OrderType.MARKET, None, 1.0,
                                          time.time_ns() // 1_000_000))  # fmt: skip
                while not any(
                    o["clOrdId"] and o["state"] == "filled" and o["sz"] == "1" for o in fake.orders.values()
                ):
                    await trio.sleep(0.01)
                (bill,) = fake.settle_funding(SWAP, 0.0001)
                assert gw.engine.accounts.position("a", SWAP) == 2  # the fill and the funding are unknown
                a.close()
            # ... the server is gone (hard). OKX carries on; the pushes it held are lost.
            fake.private_pushes_paused = False
            for run in range(2):
                async with server(config) as gw:
                    while not gw.accepting.is_set():
                        await trio.sleep(0.01)
                    acc = gw.engine.accounts
                    while acc.position("a", SWAP) != 3 or not acc.books[("a", SWAP)].funding:
                        await trio.sleep(0.01)
                    assert acc.books[("a", SWAP)].funding == pytest.approx(float(bill["balChg"]))
                    assert await gw.venue.positions() == {SWAP: 3.0}
                    assert await gw_guard_reconcile(gw) == []
                    events = [r for r in gw.journal.reports_after("a", 0, 100) if isinstance(r, AccountEvent)]
                    assert [(e.kind, e.event_id) for e in events] == [("funding", f"bill:{bill['billId']}")]
                    p = Peer(zctx, Endpoints.from_config(config), "a")
                    await p.join()
                    assert sum(isinstance(r, AccountEvent) for r in p.reports) == 1, run
                    p.close()


async def test_mark_funding_and_price_limits_on_the_bus_the_gate_refuses_outside_them_and_warnings_reach_owners(
    base_dir: Path, zctx: Any
) -> None:
    with trio.fail_after(30):
        async with okx_swap(base_dir, zctx, "a") as (fake, config, gw, (a,)):
            for kind in ("mark", "funding", "price_limit"):
                a.mdsub.sock.setsockopt(zmq.SUBSCRIBE, f"{kind}/{SWAP}/".encode())
            await a.join()
            fake.set_funding_rate(SWAP, 0.0002, interval_h=8)
            fake.set_mark_price(SWAP, 60000.0, 59990.0)
            fake.set_price_limit(SWAP, 61200.0, 58800.0)
            seen: dict[str, Any] = {}
            while (
                len(seen) < 3
                or seen["price_limit"].buy_limit != 61200.0
                or seen["mark"].mark_price != 60000.0
            ):
                msg = await a.next_md()
                seen[type(msg).__name__.replace("MarkPrice", "mark").replace("FundingRate", "funding")
                     .replace("PriceLimit", "price_limit")] = msg  # fmt: skip
            # the index price of the underlying (index-tickers BTC-USDT) rides in the mark message
            # (pushed before the mark on the same socket: the first mark with an index carries it)
            mark = seen["mark"]
            while not mark.index_price:
                if isinstance(msg := await a.next_md(), MarkPrice):
                    mark = msg
            assert mark.index_price == 59990.0
            assert seen["funding"].funding_rate == pytest.approx(0.0002)
            assert seen["funding"].interval_ms == 8 * 3600 * 1000 and seen["funding"].next_funding_time > 0
            # the gate knows OKX's limits: a buy above 61200 is refused here, never sent
            await a.send(OrderRequest("a", "hi", SWAP, Side.BUY, OrderType.LIMIT, 61300.0, 1.0,
                                      time.time_ns() // 1_000_000))  # fmt: skip
            r = await a.report()
            assert isinstance(r, OrderReport) and r.status is OrderStatus.REJECTED
            assert (
                r.error_msg
                == "price limit: a buy at 61300 is above the venue's buy limit 61200 for BTC-USDT-SWAP"
            )
            assert order_bodies(fake) == []
            # a liquidation warning on a's position reaches a (and the log), and changes nothing
            await trade(a, SWAP, "buy", 1)
            assert fake.send_liquidation_warning(SWAP) == 1
            warn = await next_event(a)
            assert (warn.kind, warn.symbol, warn.quantity) == ("liquidation_warning", SWAP, 0.0)
            assert gw.engine.accounts.position("a", SWAP) == 1


async def test_a_mismatch_names_the_instrument_the_difference_and_since_when_and_moves_holders_to_reducing(
    base_dir: Path, zctx: Any
) -> None:
    from seqtrade.server.guard import Guard, format_guard_status
    from seqtrade.server.risk import TradingState

    with trio.fail_after(30):
        async with okx_swap(base_dir, zctx, "a", extra='[venue.derivatives]\non_mismatch = "reducing"') as (
            fake,
            config,
            gw,
            (a,),
        ):
            await a.join()
            await trade(a, SWAP, "buy", 2)
            fake.set_mark_price(SWAP, 61000.0)
            fake.private_pushes_paused = True  # a trade by hand the server never hears of
            fake.order_by_hand(SWAP, "sell", 0.5, 60000.0)
            guard = Guard(gw.config, gw.venue, gw.journal, gw.engine.risk, gw.engine.accounts,
                          in_flight=gw.engine.open_records, sink=gw, marks={SWAP: 61000.0})  # fmt: skip
            guard._adjusted = True  # a check after start
            (warning,) = await guard.reconcile()
            assert warning.startswith(
                "position mismatch in BTC-USDT-SWAP: the strategies and external hold 2 in total, "
                "the venue okx holds 1.5 (off by -0.5, since "
            ) and warning.endswith(" UTC)")
            assert gw.engine.risk.state_of("a")[0] is TradingState.REDUCING
            lines = "\n".join(format_guard_status(guard.status()))
            assert "BTC-USDT-SWAP" in lines and "MISMATCH" in lines
            # a's unrealised PnL at mark, in USDT: (61000 - 60000.1) x 2 x 0.01
            row = guard.status()["accounts"]["strategies"]["a"][SWAP]
            assert row["unrealised_pnl"] == pytest.approx((61000 - 60000.1) * 2 * 0.01)
            assert row["currency"] == "USDT"
            fees = guard.status()["accounts"]["currencies"]["USDT"]["fees"]
            assert fees == pytest.approx(0.001 * 2 * 0.01 * 60000.1)  # taker fee in USDT, by currency
            assert "account by currency" in lines
            usdt = guard.status()["venue_account"]["USDT"]  # the exchange's own account view
            assert usdt["equity"] > 0 and "unrealised_pnl" in usdt and "exchange account" in lines
            details = guard.status()["venue_details"]
            assert [(d["symbol"], d["quantity"], d["margin_mode"]) for d in details] == [(SWAP, 1.5, "cross")]


async def test_a_dated_future_delivered_and_a_funding_missed_while_the_socket_was_down_arrive_once(
    base_dir: Path, zctx: Any
) -> None:
    with trio.fail_after(30):
        async with open_fake_okx() as fake:
            future = next(
                i for i in fake.exchange.instruments if i.startswith("BTC-USD-") and not i.endswith("SWAP")
            )
            for sym in (future, SWAP):
                fake.set_market(sym, bid=60000.0, ask=60000.1, bid_sz=50, ask_sz=50)
                fake.set_mark_price(sym, 60000.0)
            config = okx_config(base_dir, fake, [SWAP, future])
            async with server(config) as gw:
                a = Peer(zctx, Endpoints.from_config(config), "a")
                welcome = await a.join()
                facts = {i.symbol: i for i in welcome.instruments}
                assert (
                    facts[future].kind == "futures" and facts[future].expiry_ms > 0 and facts[future].inverse
                )
                await trade(a, future, "buy", 10)
                await trade(a, SWAP, "sell", 1)
                # the private socket drops; OKX settles funding meanwhile; the reconnect reads the bills
                fake.private_pushes_paused = True
                await fake.disconnect("private")
                (bill,) = fake.settle_funding(SWAP, 0.0001)
                fake.private_pushes_paused = False
                ev = await next_event(a)
                assert (ev.kind, ev.event_id, ev.amount) == (
                    "funding",
                    f"bill:{bill['billId']}",
                    pytest.approx(0.06),
                )
                (dbill,) = fake.deliver(future, 61000.0)
                ev = await next_event(a)
                assert (ev.kind, ev.symbol, ev.quantity, ev.price, ev.currency) == (
                    "delivery",
                    future,
                    -10.0,
                    61000.0,
                    "BTC",
                )
                assert ev.amount == pytest.approx(float(dbill["balChg"]))
                assert gw.engine.accounts.position("a", future) == 0.0
                events = [r for r in gw.journal.reports_after("a", 0, 100) if isinstance(r, AccountEvent)]
                assert [e.kind for e in events] == ["funding", "delivery"]


def config_file(base_dir: Path, fake: Any) -> Path:
    path = base_dir / "okx-swap.toml"
    path.write_text(okx_toml(fake, [SWAP]))
    return path


async def test_kill_9_of_the_server_process_during_a_funding_and_a_fill_then_every_position_reconciles(
    base_dir: Path, zctx: Any
) -> None:
    """The real thing: ``seqtrade serve`` as a process, SIGKILL while OKX has settled a funding and
    filled an order whose pushes the server never received; a new process applies both, once."""
    import os
    import signal
    import subprocess
    import sys

    from seqtrade.server.control import request

    with trio.fail_after(60):
        async with open_fake_okx() as fake:
            fake.set_market(SWAP, bid=60000.0, ask=60000.1, bid_sz=50, ask_sz=50)
            fake.set_mark_price(SWAP, 60000.0)
            path = config_file(base_dir, fake)
            config = parse_config(path.read_text(), base_dir=str(base_dir))
            env = dict(
                os.environ, OKX_API_KEY="fake-key", OKX_SECRET_KEY="fake-secret", OKX_PASSPHRASE="fake-pass"
            )
            control = f"ipc://{config.run_dir / 'control.ipc'}"

            async def start() -> trio.Process:
                proc = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "seqtrade.cli", "serve", "--config", str(path)],
                    env=env, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                while True:  # ready once the control socket answers
                    try:
                        with trio.fail_after(1):
                            await trio.to_thread.run_sync(lambda: request(control, "status", timeout=0.5))
                        return proc
                    except (ConnectionError, trio.TooSlowError):  # not up yet
                        await trio.sleep(0.1)

            async def status() -> dict[str, Any]:
                return await trio.to_thread.run_sync(lambda: request(control, "status"))  # type: ignore[no-any-return]

            proc = await start()
            try:
                a = Peer(zctx, Endpoints.from_config(config), "a")
                await a.join()
                await trade(a, SWAP, "buy", 2)
                fake.private_pushes_paused = True
                await a.send(OrderRequest("a", a.coid(), SWAP, Side.BUY, OrderType.MARKET, None, 1.0,
                                          time.time_ns() // 1_000_000))  # fmt: skip
                while not any(
                    o["clOrdId"] and o["sz"] == "1" and o["state"] == "filled" for o in fake.orders.values()
                ):
                    await trio.sleep(0.01)
                (bill,) = fake.settle_funding(SWAP, 0.0001)
                st = await status()
                assert st["accounts"]["strategies"]["a"][SWAP]["position"] == 2  # neither is known yet
                proc.send_signal(signal.SIGKILL)
                assert await proc.wait() == -signal.SIGKILL
                a.close()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            fake.private_pushes_paused = False
            for run in range(2):  # a second restart must not apply anything twice
                proc = await start()
                try:
                    while True:
                        book = (await status())["accounts"]["strategies"]["a"][SWAP]
                        if book["position"] == 3 and book["funding"]:
                            break
                        await trio.sleep(0.05)
                    assert book["funding"] == pytest.approx(float(bill["balChg"])), run
                    assert fake.position(SWAP)["pos"] == "3"
                    p = Peer(zctx, Endpoints.from_config(config), "a")
                    await p.join()
                    assert [r.kind for r in p.reports if isinstance(r, AccountEvent)] == ["funding"], run
                    p.close()
                finally:
                    proc.send_signal(signal.SIGINT)
                    assert await proc.wait() == 0


async def test_a_position_that_predates_seqtrade_is_taken_as_external_at_start_and_then_reconciles(
    base_dir: Path, zctx: Any
) -> None:
    from seqtrade.server.guard import Guard

    with trio.fail_after(30):
        async with open_fake_okx() as fake:
            fake.set_market(SWAP, bid=60000.0, ask=60000.1, bid_sz=50, ask_sz=50)
            fake.order_by_hand(SWAP, "sell", 4, 60000.0)  # on okx.com, before seqtrade ever ran
            config = okx_config(base_dir, fake, [SWAP])
            async with server(config) as gw:
                guard = Guard(gw.config, gw.venue, gw.journal, gw.engine.risk, gw.engine.accounts,
                              in_flight=gw.engine.open_records, sink=gw)  # fmt: skip
                assert await guard.reconcile() == []  # the first check after start: an adjustment
                while gw.engine.accounts.position(EXTERNAL, SWAP) != -4:
                    await trio.sleep(0.01)
                a = Peer(zctx, Endpoints.from_config(config), "a")
                await a.join()
                await trade(a, SWAP, "buy", 1)
                assert await guard.reconcile() == []  # exact: a +1, external -4, OKX -3
                (adj,) = [r for r in gw.journal.reports_after(EXTERNAL, 0, 10) if isinstance(r, AccountEvent)]
                assert (adj.kind, adj.quantity) == ("adjustment", -4.0)


async def test_a_strategy_process_sees_its_instrument_trades_contracts_reduce_only_and_gets_each_event_once(
    base_dir: Path,
) -> None:
    """``seqtrade run`` of tests/strategies/swap_echo.py against the server on the fake: the welcome's
    facts through ``self.instrument``, ``reduce_only`` from an order helper, ``on_account_event`` once
    for a funding, ``positions`` with the funding in USDT, ``on_mark`` subscribed by overriding it."""
    import subprocess
    import sys

    echo = str(Path(__file__).parent / "strategies" / "swap_echo.py")
    with trio.fail_after(40):
        async with open_fake_okx() as fake:
            fake.set_market(SWAP, bid=60000.0, ask=60000.1, bid_sz=50, ask_sz=50)
            config = okx_config(base_dir, fake, [SWAP])
            async with server(config):
                proc = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "seqtrade.cli", "run", echo, "--id", "sw", "--run-dir", str(config.run_dir)],
                    stdout=subprocess.PIPE,
                )  # fmt: skip
                buf = b""
                seen: list[dict[str, Any]] = []

                async def event(name: str, **match: object) -> dict[str, Any]:
                    nonlocal buf
                    while True:
                        while b"\n" in buf:
                            line, buf = buf.split(b"\n", 1)
                            ev = json.loads(line)
                            seen.append(ev)
                            if ev["event"] == name and all(ev.get(k) == v for k, v in match.items()):
                                return ev  # type: ignore[no-any-return]
                        assert proc.stdout is not None
                        chunk = await proc.stdout.receive_some(65536)
                        assert chunk, f"the strategy ended before {name}"
                        buf += chunk

                try:
                    start = await event("start")
                    assert (start["kind"], start["contract_value"], start["settle"]) == ("swap", 0.01, "USDT")
                    await event("order", status="filled", filled=2.0)
                    sold = await event("order", status="filled", filled=1.0)
                    assert sold["position"] == 1.0 and order_bodies(fake)[-1]["reduceOnly"] is True
                    fake.set_mark_price(SWAP, 61000.0)
                    assert (await event("mark", mark=61000.0))["position"] == 1.0
                    (bill,) = fake.settle_funding(SWAP, 0.0001)
                    ev = await event("account_event", kind="funding")
                    assert ev["amount"] == pytest.approx(float(bill["balChg"])) and ev["currency"] == "USDT"
                    assert ev["funding"] == pytest.approx(ev["amount"])  # positions include it already
                    proc.send_signal(15)
                    await event("stop")
                    assert [e["kind"] for e in seen if e["event"] == "account_event"] == ["funding"]
                finally:
                    if proc.returncode is None:
                        proc.send_signal(15)
                    await proc.wait()
