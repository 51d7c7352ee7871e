"""The paper venue's swaps through its sink (venues/paper.py): instrument facts, mark and funding
data, funding and liquidation handed over as account events, committed first and handed over again
after a restart until taken. Virtual time (``autojump_clock``); the pure rules are in
tests/test_paper_derivs.py, the server end to end in tests/test_paper_derivs_server.py."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from seqtrade.config import DerivativesConfig, InstrumentSetup, PaperConfig, parse_config
from seqtrade.errors import ConfigError
from seqtrade.instruments import InstrumentKind
from seqtrade.models import AccountEventKind, FundingRate, MarkPrice, OrderStatus, OrderType, PriceLimit, Side
from seqtrade.venues.base import OrderEvent, VenueAccountEvent, VenueOrder
from seqtrade.venues.paper import PaperVenue

from .test_paper_venue import Collector

SWAP, INV, SPOT = "BTC-USDT-SWAP", "BTC-USD-SWAP", "BTC-USDT"
QUIET = PaperConfig(
    tick_interval=3600.0,
    trade_probability=0.0,
    balances={"USDT": 1000.0, "BTC": 0.1},
    start_prices={SWAP: 60000.0, INV: 60000.0, SPOT: 60000.0},
)


class Sink(Collector):
    """A Collector that also keeps account events; ``hold`` makes account_event wait for ever (a
    server that dies before it takes one)."""

    def __init__(self, hold: bool = False) -> None:
        super().__init__()
        self.account: list[VenueAccountEvent] = []
        self.hold = hold

    async def account_event(self, event: VenueAccountEvent) -> None:
        if self.hold:
            await trio.sleep_forever()
        self.account.append(event)


@asynccontextmanager
async def running(
    cfg: PaperConfig = QUIET,
    symbols: tuple[str, ...] = (SWAP, INV, SPOT),
    sink: Sink | None = None,
    state: Path | None = None,
    derivatives: DerivativesConfig | None = None,
) -> AsyncIterator[tuple[PaperVenue, Sink]]:
    venue = PaperVenue(cfg, list(symbols), state_path=state, derivatives=derivatives)
    sink = sink or Sink()
    async with trio.open_nursery() as nursery:
        await nursery.start(venue.run, sink)
        yield venue, sink
        nursery.cancel_scope.cancel()


async def market_buy(venue: PaperVenue, sink: Sink, oid: str, sym: str, qty: float) -> OrderEvent:
    await venue.place_order(VenueOrder(oid, sym, Side.BUY, OrderType.MARKET, None, qty))
    return sink.of(oid)[-1]


def test_swap_instruments_carry_their_contract_facts() -> None:
    venue = PaperVenue(QUIET, [SWAP, INV, SPOT, "ETH-USDT-SWAP"])
    swap, inv, spot = venue.instruments[SWAP], venue.instruments[INV], venue.instruments[SPOT]
    assert (swap.kind, swap.contract_value, swap.lot_size, swap.min_size) == (
        InstrumentKind.SWAP,
        0.01,
        0.01,
        0.01,
    )
    assert (swap.settle_currency, swap.contract_currency, swap.inverse) == ("USDT", "BTC", False)
    assert (inv.contract_value, inv.lot_size, inv.settle_currency, inv.contract_currency, inv.inverse) == (
        100.0, 1.0, "BTC", "USD", True,
    )  # fmt: skip
    assert venue.instruments["ETH-USDT-SWAP"].contract_value == 0.1
    assert spot.kind is InstrumentKind.SPOT and spot.contract_value == 1.0
    cfg = parse_config(
        '[venue]\nsymbols = ["BTC-USDT-SWAP"]\n[venue.paper.contracts."BTC-USDT-SWAP"]\ncontract_value = 0.001\n'
        "lot_size = 1\n"
    )
    assert PaperVenue(cfg.venue.paper, [SWAP]).instruments[SWAP].contract_value == 0.001
    assert PaperVenue(cfg.venue.paper, [SWAP]).instruments[SWAP].lot_size == 1.0


def test_net_mode_only_and_no_dated_futures() -> None:
    with pytest.raises(ConfigError, match="net mode only"):
        PaperVenue(QUIET, [SWAP], derivatives=DerivativesConfig(position_mode="long_short"))
    ls = parse_config(
        '[venue]\nsymbols = ["BTC-USDT-SWAP"]\n[venue.derivatives]\nposition_mode = "long_short"\n'
    )
    assert "refused at start: the paper venue runs net mode only" in "\n".join(PaperVenue.describe(ls.venue))
    with pytest.raises(ConfigError, match="dated future"):
        PaperVenue(QUIET, ["BTC-USD-261225"])
    lev = DerivativesConfig(instruments={SWAP: InstrumentSetup(leverage=125.0)})
    with pytest.raises(ConfigError, match="exceeds the paper venue's maximum 100x"):
        PaperVenue(QUIET, [SWAP], derivatives=lev)


async def test_a_swap_trades_in_contracts_and_publishes_its_mark_and_funding(autojump_clock: object) -> None:
    with trio.fail_after(10):
        async with running() as (venue, sink):
            await venue.set_market(SWAP, 60000.0, 60000.2)
            marks = [m for m in sink.of_type(MarkPrice) if m.symbol == SWAP]
            assert isinstance(marks[-1], MarkPrice) and marks[-1].mark_price == 60000.1
            assert marks[-1].index_price == 60000.1
            funding = [m for m in sink.of_type(FundingRate) if m.symbol == SWAP]
            assert isinstance(funding[-1], FundingRate) and funding[-1].funding_rate == 0.0001
            assert funding[-1].interval_ms == 28_800_000 and funding[-1].next_funding_time % 28_800_000 == 0
            (limit,) = [m for m in sink.of_type(PriceLimit) if m.symbol == SWAP][-1:]
            assert isinstance(limit, PriceLimit) and (limit.buy_limit, limit.sell_limit) == (63000.1, 57000.1)
            ev = await market_buy(venue, sink, "b1", SWAP, 2.0)
            assert (ev.status, ev.filled_quantity, ev.avg_price) == (OrderStatus.FILLED, 2.0, 60000.2)
            assert ev.fee == pytest.approx(2 * 0.01 * 60000.2 * QUIET.taker_fee)  # USDT
            assert await venue.positions() == {SWAP: 2.0, INV: 0.0, SPOT: 0.0}
            (detail,) = await venue.position_details()
            assert (detail.symbol, detail.quantity, detail.avg_price, detail.mark_price) == (
                SWAP,
                2.0,
                60000.2,
                60000.1,
            )
            assert (detail.currency, detail.margin_mode, detail.leverage) == ("USDT", "cross", 10.0)
            assert detail.unrealised_pnl == pytest.approx(-0.1 * 0.02)
            assert 0 < detail.liquidation_price < 60000.0 and detail.margin_ratio > 1


async def test_an_isolated_swap_takes_its_margin_out_of_the_cash(autojump_clock: object) -> None:
    iso = DerivativesConfig(instruments={SWAP: InstrumentSetup(margin_mode="isolated", leverage=20.0)})
    with trio.fail_after(10):
        async with running(derivatives=iso) as (venue, sink):
            await venue.set_market(SWAP, 60000.0, 60000.2)
            ev = await market_buy(venue, sink, "b1", SWAP, 5.0)  # 3000 USDT of position at 20x: 150 held
            assert (await venue.balances())["USDT"] == pytest.approx(
                1000.0 - 5 * 0.01 * 60000.2 / 20 - ev.fee
            )
            (detail,) = await venue.position_details()
            assert (detail.margin_mode, detail.leverage) == ("isolated", 20.0)
            # its own margin of 150 against its loss: liquidated alone near 57230, whatever the cash
            margin = 5 * 0.01 * 60000.2 / 20
            assert detail.liquidation_price == pytest.approx((0.05 * 60000.2 - margin) / (0.05 * (1 - 0.004)))


async def test_funding_is_handed_over_as_an_account_event(autojump_clock: object) -> None:
    with trio.fail_after(10):
        async with running() as (venue, sink):
            await venue.set_market(SWAP, 60000.0, 60000.2)
            await market_buy(venue, sink, "b1", SWAP, 2.0)
            usdt = (await venue.balances())["USDT"]
            (change,) = await venue.settle_funding(rate=0.001)
            (ev,) = sink.account
            assert ev.kind is AccountEventKind.FUNDING and ev.event_id == change.event_id
            assert (ev.symbol, ev.quantity, ev.price, ev.currency) == (SWAP, 0.0, 60000.1, "USDT")
            assert ev.amount == pytest.approx(-2 * 0.01 * 60000.1 * 0.001)  # the long pays 1.200002
            assert (await venue.balances())["USDT"] == pytest.approx(usdt + ev.amount)


async def test_a_liquidation_cancels_the_orders_and_reaches_the_sink_once(autojump_clock: object) -> None:
    cfg = PaperConfig(**{**QUIET.__dict__, "leverage": 50.0})
    with trio.fail_after(10):
        async with running(cfg) as (venue, sink):
            await venue.set_market(SWAP, 60000.0, 60000.2)
            await market_buy(venue, sink, "b1", SWAP, 30.0)  # 18000 USDT of position on 1000 USDT, 50x
            await venue.place_order(VenueOrder("tp", SWAP, Side.SELL, OrderType.LIMIT, 65000.0, 30.0))
            await venue.set_market(SWAP, 58000.0, 58000.2)  # a loss of 600: equity ~390, maintenance ~70
            assert sink.account == []
            await venue.set_market(SWAP, 56800.0, 56800.2)  # a loss of 960: under maintenance
            (liq,) = sink.account
            assert liq.kind is AccountEventKind.LIQUIDATION and (liq.quantity, liq.price) == (-30.0, 56800.1)
            assert sink.of("tp")[-1].status is OrderStatus.CANCELLED
            assert sink.events.index(sink.of("tp")[-1]) >= 0 and await venue.positions() == {
                SWAP: 0.0,
                INV: 0.0,
                SPOT: 0.0,
            }
            await venue.set_market(SWAP, 56000.0, 56000.2)
            assert len(sink.account) == 1  # nothing left to liquidate
            assert (await venue.balances())["USDT"] >= 0.0


async def test_an_account_event_is_handed_over_again_after_a_restart_until_its_hand_over_returned(
    autojump_clock: object, tmp_path: Path
) -> None:
    state = tmp_path / "paper.sqlite"
    with trio.fail_after(10_000):
        async with running(state=state) as (venue, sink):
            await venue.set_market(SWAP, 60000.0, 60000.2)
            await market_buy(venue, sink, "b1", SWAP, 2.0)
            sink.hold = True  # the hand-over never returns (not journaled): the funding is committed only
            async with trio.open_nursery() as n:
                n.start_soon(venue.settle_funding, 0.001)
                await trio.sleep(1)
                n.cancel_scope.cancel()
            assert sink.account == []
            balances = await venue.balances()
        async with running(state=state) as (venue2, sink2):
            (ev,) = sink2.account  # handed over at the start; it returned: journaled
            assert ev.kind is AccountEventKind.FUNDING and ev.amount == pytest.approx(
                -2 * 0.01 * 60000.1 * 0.001
            )
            assert await venue2.balances() == balances  # applied to the account once, before the kill
            assert (await venue2.positions())[SWAP] == 2.0
        async with running(state=state) as (venue3, sink3):
            assert sink3.account == []  # its hand-over returned before that stop: never again
            assert math.isclose((await venue3.balances())["USDT"], balances["USDT"])
