"""The risk gate: every rule exactly at its limit (passes) and one step over (refused, with the numbers);
trading states; then the gate in a real server, over real sockets, and the control commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from seqtrade.cli import main as cli_main
from seqtrade.config import Config, RiskConfig, RiskLimits, parse_config
from seqtrade.errors import ConfigError
from seqtrade.models import (
    AmendRequest,
    CancelRequest,
    OrderReport,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
)
from seqtrade.server.accounts import Accounts
from seqtrade.server.control import request
from seqtrade.server.orders import OrderRecord
from seqtrade.server.risk import RiskGate, TradingState
from seqtrade.venues.base import Instrument

from .conftest import QUIET_MARKET, make_config

S = "BTC-USDT"
E = "ETH-USDT"
INSTRUMENTS = {sym: Instrument(sym, 0.1, 0.001, 0.001) for sym in (S, E)}


class Env:
    """A gate over real Accounts, a settable mid and clock, and the records it has let through."""

    def __init__(self, **limits: object) -> None:
        self.accounts = Accounts()
        self.mids: dict[str, float] = {S: 100.0, E: 10.0}
        self.now = 0.0
        self.gate = RiskGate(
            RiskConfig(**limits),  # type: ignore[arg-type]
            positions=self.accounts,
            mid=self.mids.get,
            instrument=INSTRUMENTS.get,
            clock=lambda: self.now,
        )
        self.records: dict[tuple[str, str], OrderRecord] = {}
        self.n = 0

    def order(
        self, side: str, qty: float, price: float | None = 100.0, *, sid: str = "s1", symbol: str = S
    ) -> str | None:
        self.n += 1
        coid = f"o{self.n}"
        ot = OrderType.MARKET if price is None else OrderType.LIMIT
        reason = self.gate.check(OrderRequest(sid, coid, symbol, Side(side), ot, price, qty, 0), None)
        if reason is None:
            self.records[(sid, coid)] = OrderRecord(coid, sid, coid, symbol, side, str(ot), price, qty, 0)
        self.last = coid
        return reason

    def amend(
        self, coid: str, *, price: float | None = None, qty: float | None = None, sid: str = "s1"
    ) -> str | None:
        return self.gate.check(AmendRequest(sid, coid, price, qty), self.records[(sid, coid)])

    def cancel(self, coid: str, sid: str = "s1") -> str | None:
        return self.gate.check_cancel(CancelRequest(sid, coid), self.records[(sid, coid)])

    def report(
        self, coid: str, status: OrderStatus, fill: float = 0.0, sid: str = "s1", price: float = 100.0
    ) -> None:
        """The venue's answer, as the gateway would feed it to both hooks."""
        rec = self.records[(sid, coid)]
        rec.status = status
        rec.filled_quantity += fill
        r = OrderReport(0, coid, "x", sid, rec.symbol, rec.side, rec.order_type, price, rec.quantity, status,
                        rec.filled_quantity, price, fill, price if fill else 0.0)  # fmt: skip
        self.accounts.on_report(rec, r)
        self.gate.on_report(rec, r)

    def fill(self, side: str, qty: float, *, sid: str = "s1", symbol: str = S) -> None:
        """A position from a filled market order."""
        assert self.order(side, qty, None, sid=sid, symbol=symbol) is None
        self.report(self.last, OrderStatus.FILLED, qty, sid)


def refused(reason: str | None, *words: str) -> None:
    assert reason is not None, "expected a refusal"
    for w in words:
        assert w in reason, f"{w!r} not in {reason!r}"


# ----------------------------------------------------------------------------- every rule, at and over


def test_max_order_quantity() -> None:
    env = Env(max_order_quantity=1.0)
    assert env.order("buy", 1.0) is None
    refused(env.order("buy", 1.001), "max_order_quantity (risk)", "quantity 1.001", "limit 1")
    assert env.order("sell", 1.0004) is None  # rounded to the lot first, like the gateway: 1.0


def test_max_order_notional_limit_and_market_orders() -> None:
    env = Env(max_order_notional=1000.0)
    assert env.order("buy", 10.0, 100.0) is None
    refused(
        env.order("buy", 10.001, 100.0), "max_order_notional (risk)", "10.001 x 100 = 1000.1", "limit 1000"
    )
    assert env.order("buy", 10.0, None) is None  # market: valued at the mid (100)
    refused(env.order("sell", 10.001, None), "max_order_notional", "1000.1")
    del env.mids[S]
    refused(env.order("buy", 1.0, None), "max_order_notional", "no market price for BTC-USDT")


def test_price_band_around_the_mid() -> None:
    env = Env(price_band_bps=100.0)  # 1 % of 100: 99.0 .. 101.0
    assert env.order("buy", 1.0, 101.0) is None
    assert env.order("sell", 1.0, 99.0) is None
    refused(
        env.order("buy", 1.0, 101.1),
        "price_band_bps (risk)",
        "price 101.1",
        "110.0 bps from the mid 100",
        "band 100 bps",
    )
    refused(env.order("sell", 1.0, 98.9), "price_band_bps", "110.0 bps")
    assert env.order("buy", 1.0, None) is None  # a market order has no price to band
    del env.mids[S]
    refused(env.order("buy", 1.0, 100.0), "price_band_bps", "no mid price for BTC-USDT")


def test_max_position_counts_open_orders_on_the_side() -> None:
    env = Env(max_position=2.0)
    env.fill("buy", 1.0)
    assert env.order("buy", 0.5, 99.0) is None  # open (in flight): counts at once
    assert env.order("buy", 0.5, 99.0) is None  # worst case 2.0: at the limit
    refused(env.order("buy", 0.001, 99.0), "max_position (risk)", "worst-case position in BTC-USDT would be 2.001",
            "position 1", "open buys 1", "this order +0.001", "limit 2")  # fmt: skip
    # selling: worst-case short is 1 - 3 = -2: at the limit; one lot more is over
    assert env.order("sell", 3.0, 101.0) is None
    refused(env.order("sell", 0.001, 101.0), "max_position", "would be -2.001")
    # a cancelled order stops counting
    env.report("o2", OrderStatus.CANCELLED)
    assert env.order("buy", 0.5, 99.0) is None


def test_max_position_lets_a_position_over_the_limit_shrink() -> None:
    env = Env()
    env.fill("buy", 5.0)
    env.gate.config = RiskConfig(max_position=2.0)  # the limit was lowered while long 5
    refused(env.order("buy", 0.001), "max_position", "would be 5.001")
    assert env.order("sell", 1.0) is None


def test_max_account_position_sums_strategies() -> None:
    env = Env(symbols={S: RiskLimits(max_account_position=3.0)})
    env.fill("buy", 1.0, sid="s1")
    env.fill("buy", 1.0, sid="s2")
    assert env.order("buy", 0.5, sid="s2") is None
    assert env.order("buy", 0.5, sid="s1") is None  # 1 + 1 + 0.5 + 0.5 = 3
    refused(env.order("buy", 0.001, sid="s3"), "max_account_position (risk.symbols.BTC-USDT)",
            "worst-case account position in BTC-USDT would be 3.001", "account position 2", "open buys 1",
            "limit 3")  # fmt: skip
    assert env.order("buy", 5.0, symbol=E) is None  # another symbol: not limited


def test_max_open_orders_per_strategy_and_per_symbol() -> None:
    env = Env(max_open_orders=3, symbols={E: RiskLimits(max_open_orders=1)})
    assert env.order("buy", 1.0) is None
    assert env.order("buy", 1.0) is None
    assert env.order("buy", 1.0, 10.0, symbol=E) is None
    refused(env.order("buy", 1.0), "max_open_orders (risk)", "3 orders already open", "limit 3")
    env.report("o1", OrderStatus.FILLED, 1.0)
    refused(
        env.order("buy", 1.0, 10.0, symbol=E),
        "max_open_orders (risk.symbols.ETH-USDT)",
        "1 orders already open in ETH-USDT",
    )
    assert env.order("buy", 1.0) is None
    assert env.order("buy", 1.0, sid="s2") is None  # per strategy


def test_order_rate_window() -> None:
    env = Env(max_orders_per_window=3, rate_window=1.0)
    for _ in range(3):
        assert env.order("buy", 0.1) is None
    refused(
        env.order("buy", 0.1),
        "max_orders_per_window (risk)",
        "3 orders and amends in the last 1 s",
        "limit 3",
    )
    refused(env.amend("o1", qty=0.2), "max_orders_per_window")  # amends count as orders
    env.now = 0.999
    refused(env.order("buy", 0.1), "max_orders_per_window")
    env.now = 1.0  # the first three are a full window old
    assert env.order("buy", 0.1) is None
    assert env.order("buy", 0.1, sid="s2") is None  # per strategy


def test_cancel_rate_window_and_strategy_layer() -> None:
    env = Env(strategies={"s1": RiskLimits(max_cancels_per_window=2)})
    for _ in range(3):
        env.order("buy", 0.1)
    assert env.cancel("o1") is None
    assert env.cancel("o2") is None
    refused(
        env.cancel("o3"),
        "max_cancels_per_window (risk.strategies.s1)",
        "2 cancels in the last 1 s",
        "limit 2",
    )
    env.now = 1.0
    assert env.cancel("o3") is None


def test_amends_are_checked_like_new_orders() -> None:
    env = Env(max_order_quantity=2.0, price_band_bps=100.0, max_position=3.0)
    assert env.order("buy", 1.0, 99.5) is None
    assert env.amend("o1", qty=2.0) is None
    refused(env.amend("o1", qty=2.001), "max_order_quantity", "quantity 2.001")
    refused(env.amend("o1", price=98.9), "price_band_bps", "price 98.9")
    assert env.order("buy", 1.0, 99.5) is None  # worst case: 2 (o1 as amended, until the venue says) + 1
    refused(env.amend("o2", qty=1.001), "max_position", "would be 3.001")
    assert env.amend("o2", qty=1.0, price=99.0) is None  # the order itself is not counted twice


def test_layers_all_hold() -> None:
    env = Env(max_order_quantity=5.0, strategies={"s1": RiskLimits(max_order_quantity=2.0)},
              symbols={E: RiskLimits(max_order_quantity=1.0)})  # fmt: skip
    assert env.order("buy", 2.0) is None
    refused(env.order("buy", 2.001), "risk.strategies.s1")
    assert env.order("buy", 5.0, sid="s2") is None
    refused(env.order("buy", 5.001, sid="s2"), "max_order_quantity (risk)")
    refused(env.order("buy", 1.001, 10.0, sid="s2", symbol=E), "risk.symbols.ETH-USDT")


def test_config_checks() -> None:
    base = QUIET_MARKET
    with pytest.raises(ConfigError, match=r"risk.strategies.s1.max_account_position"):
        parse_config(base + "[risk.strategies.s1]\nmax_account_position = 1\n")
    with pytest.raises(ConfigError, match=r"risk.symbols.BTC-USDT.max_position: must be >= 0"):
        parse_config(base + "[risk.symbols.BTC-USDT]\nmax_position = -1\n")
    with pytest.raises(ConfigError, match=r"risk.nope: unknown key"):
        parse_config(base + "[risk]\nnope = 1\n")
    with pytest.raises(ConfigError, match=r"server.cancel_all_after: OKX allows"):
        parse_config("[server]\ncancel_all_after = 5\n[venue]\nkind = 'okx'\n")


# ----------------------------------------------------------------------------- trading states


def test_halted_refuses_orders_and_amends_but_not_cancels() -> None:
    env = Env()
    assert env.order("buy", 1.0) is None
    env.gate.set_state(TradingState.HALTED)
    refused(env.order("buy", 1.0), "trading is halted (global)")
    refused(env.amend("o1", qty=0.5), "halted")
    assert env.cancel("o1") is None
    env.gate.set_state(TradingState.ACTIVE)
    env.gate.set_state(TradingState.HALTED, "s2")
    assert env.order("buy", 1.0) is None
    refused(env.order("buy", 1.0, sid="s2"), "trading is halted (strategy s2)")
    env.gate.set_state(TradingState.ACTIVE, "s2")
    assert env.order("buy", 1.0, sid="s2") is None


def test_reducing_lets_only_shrinking_orders_through() -> None:
    env = Env()
    env.fill("buy", 1.0)
    env.gate.set_state(TradingState.REDUCING, "s1")
    refused(
        env.order("buy", 0.001),
        "trading is reducing (strategy s1)",
        "a buy of 0.001 would not reduce the position 1",
    )
    refused(env.order("sell", 1.001), "reducing", "sell of 1.001")  # would flip to short
    assert env.order("sell", 0.6) is None
    assert env.order("sell", 0.4) is None  # with the open 0.6: exactly flat
    refused(env.order("sell", 0.001), "reducing", "open sells 1")
    assert env.order("buy", 1.0, sid="s2") is None  # s2 is active
    env.gate.set_state(TradingState.REDUCING)  # globally: s2 has no position to reduce
    refused(env.order("buy", 1.0, sid="s2"), "trading is reducing (global)", "position 0")


def test_the_stricter_state_applies() -> None:
    env = Env()
    env.gate.set_state(TradingState.REDUCING)
    env.gate.set_state(TradingState.HALTED, "s1")
    assert env.gate.state_of("s1") == (TradingState.HALTED, "strategy s1")
    assert env.gate.state_of("s2") == (TradingState.REDUCING, "global")
    env.gate.set_state(TradingState.HALTED)
    assert env.gate.state_of("s1")[1] == "global"


# ----------------------------------------------------------------------------- in the server

RISK = """
[risk]
max_order_quantity = 1.0
max_cancels_per_window = 1
rate_window = 60.0

[risk.symbols.BTC-USDT]
price_band_bps = 100.0
"""


@pytest.fixture
def config(base_dir: Path) -> Config:
    (base_dir / "config.toml").write_text(QUIET_MARKET + RISK)
    return make_config(base_dir, RISK)


async def test_server_rejects_with_the_rule_and_the_numbers(server, peers) -> None:
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market(S, 99.9, 100.1)
        coid = await p.order(S, "buy", "limit", 99.0, 1.0)  # exactly 100 bps below the mid
        assert (await p.report()).status == OrderStatus.ACCEPTED
        await p.order(S, "buy", "limit", 99.0, 1.001)
        r = await p.report()
        assert r.status == OrderStatus.REJECTED
        assert r.error_msg == "max_order_quantity (risk): quantity 1.001 is over the limit 1"
        await p.order(S, "buy", "limit", 98.9, 0.5)
        r = await p.report()
        assert r.status == OrderStatus.REJECTED and "price_band_bps (risk.symbols.BTC-USDT)" in r.error_msg
        await p.send(AmendRequest("s1", coid, None, 2.0))
        r = await p.report()
        assert r.status == OrderStatus.ACCEPTED and r.quantity == 1.0
        assert r.error_msg.startswith("amend failed: max_order_quantity (risk): quantity 2")
        coid2 = await p.order(S, "sell", "limit", 101.0, 1.0)
        await p.report()
        await p.send(CancelRequest("s1", coid))
        assert (await p.report()).status == OrderStatus.CANCELLED
        await p.send(CancelRequest("s1", coid2))
        r = await p.report()
        assert r.status == OrderStatus.ACCEPTED and r.client_order_id == coid2
        assert (
            r.error_msg == "cancel failed: max_cancels_per_window (risk): 1 cancels in the last 60 s, limit 1"
        )
        assert [o.venue_order_id for o in await server.venue.open_orders()] == [
            server.by_key[("s1", coid2)].venue_order_id
        ]


async def test_halt_reduce_resume_commands(server, peers, config, base_dir) -> None:
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market(S, 99.9, 100.1)
        cfg_file = str(base_dir / "config.toml")

        def cli(*argv: str) -> int:
            return cli_main([*argv, "--config", cfg_file])

        assert await trio.to_thread.run_sync(cli, "halt", "--strategy", "s1") == 0
        await p.order(S, "buy", "market", None, 0.5)
        r = await p.report()
        assert r.status == OrderStatus.REJECTED and r.error_msg.startswith("trading is halted (strategy s1)")
        assert await trio.to_thread.run_sync(cli, "resume", "--strategy", "s1") == 0
        await p.order(S, "buy", "market", None, 0.5)
        assert (await p.report()).status == OrderStatus.ACCEPTED
        assert (await p.report()).status == OrderStatus.FILLED
        assert await trio.to_thread.run_sync(cli, "reduce") == 0
        await p.order(S, "buy", "market", None, 0.5)
        r = await p.report()
        assert r.status == OrderStatus.REJECTED and "trading is reducing (global)" in r.error_msg
        await p.order(S, "sell", "market", None, 0.5)
        assert (await p.report()).status == OrderStatus.ACCEPTED
        ep = f"ipc://{config.run_dir / 'control.ipc'}"
        st = await trio.to_thread.run_sync(lambda: request(ep, "status"))
        assert st["trading"] == {"global": "reducing", "strategies": {}}
        with pytest.raises(RuntimeError, match="must match"):
            await trio.to_thread.run_sync(lambda: request(ep, "halt", strategy="no/slash"))
        assert await trio.to_thread.run_sync(cli, "resume") == 0


async def test_a_halt_survives_a_restart(nursery, config) -> None:
    from seqtrade.server.app import serve
    from seqtrade.venues.paper import PaperVenue

    ep = f"ipc://{config.run_dir / 'control.ipc'}"
    with trio.fail_after(10):
        for expect in ("active", "halted"):
            done = trio.Event()

            async def run(done: trio.Event, task_status=trio.TASK_STATUS_IGNORED):
                await serve(
                    config,
                    PaperVenue(config.venue.paper, list(config.venue.symbols)),
                    task_status=task_status,
                )
                done.set()

            gw = await nursery.start(run, done)
            st = await trio.to_thread.run_sync(lambda: request(ep, "status"))
            assert st["trading"]["global"] == expect
            await trio.to_thread.run_sync(lambda: request(ep, "halt"))
            gw.request_stop()
            await done.wait()


async def test_tick_and_lot_are_the_gateways(server, peers) -> None:
    """Tick and lot: prices and quantities are rounded, and the minimum size holds exactly."""
    with trio.fail_after(10):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market(S, 99.9, 100.1)
        await p.order(S, "buy", "limit", 99.57, 0.001)  # the minimum, exactly
        r = await p.report()
        assert (r.status, r.price, r.quantity) == (OrderStatus.ACCEPTED, 99.5, 0.001)
        await p.order(S, "buy", "limit", 99.5, 0.0019)  # one lot... rounds down to 0.001: passes
        assert (await p.report()).quantity == 0.001
        await p.order(S, "buy", "limit", 99.5, 0.0009)  # under the minimum
        r = await p.report()
        assert r.status == OrderStatus.REJECTED and "below the minimum 0.001" in r.error_msg
