"""Swaps in the paper matching engine and its store (venues/matching.py, paper_store.py), pure.

The engine with one linear swap (BTC-USDT-SWAP, 0.01 BTC a contract) and one inverse swap
(BTC-USD-SWAP, 100 USD a contract) next to a spot symbol: margin instead of coins, contracts,
funding and liquidation, and the account on disk through a restart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seqtrade.models import OrderStatus, OrderType, Side
from seqtrade.venues.base import Instrument, VenueOrder
from seqtrade.venues.matching import MatchingEngine
from seqtrade.venues.paper_derivs import ContractSpec
from seqtrade.venues.paper_store import PaperStore

SWAP, INV, SPOT = "BTC-USDT-SWAP", "BTC-USD-SWAP", "BTC-USDT"
INSTS = {
    SWAP: Instrument(SWAP, tick_size=0.1, lot_size=0.01, min_size=0.01, contract_value=0.01),
    INV: Instrument(INV, tick_size=0.1, lot_size=1.0, min_size=1.0, contract_value=100.0),
    SPOT: Instrument(SPOT, tick_size=0.1, lot_size=0.0001, min_size=0.0001),
}
SPECS = {
    SWAP: ContractSpec(SWAP, 0.01, 0.01, leverage=10.0),
    INV: ContractSpec(INV, 100.0, 1.0, inverse=True, settle_currency="BTC", leverage=10.0),
}
TAKER = 0.0005


def book(top: float, step: float, size: float) -> list[list[float]]:
    return [[round(top + i * step, 1), size] for i in range(5)]


def engine(
    usdt: float = 1000.0, btc: float = 0.01, specs: dict[str, ContractSpec] | None = None
) -> MatchingEngine:
    eng = MatchingEngine(
        INSTS,
        maker_fee=0.0002,
        taker_fee=TAKER,
        balances={"USDT": usdt, "BTC": btc},
        contracts=specs or SPECS,
    )
    market(eng, 60000.0)
    return eng


def market(eng: MatchingEngine, mid: float, ts: int = 0) -> None:
    for sym, size in ((SWAP, 100.0), (INV, 1000.0), (SPOT, 1.0)):
        eng.set_book(sym, book(mid - 0.1, -0.1, size), book(mid + 0.1, 0.1, size), ts)
        if sym != SPOT:
            eng.set_mark(sym, mid)


def submit(eng: MatchingEngine, oid: str, sym: str, side: Side, qty: float, price: float | None = None):
    kind = OrderType.MARKET if price is None else OrderType.LIMIT
    return eng.submit(VenueOrder(oid, sym, side, kind, price, qty), ts=1)


def test_a_swap_buy_takes_margin_not_coins_and_the_position_is_in_contracts() -> None:
    eng = engine()
    evs = submit(eng, "o1", SWAP, Side.BUY, 5.0)  # 5 contracts = 0.05 BTC at 60000.1 = 3000 USDT of position
    assert evs[-1].status is OrderStatus.FILLED and evs[-1].filled_quantity == 5.0
    fee = 5 * 0.01 * 60000.1 * TAKER
    assert evs[-1].fee == pytest.approx(fee)  # in USDT, the settlement currency
    assert eng.positions()[SWAP] == 5.0
    assert eng.balances()["USDT"] == pytest.approx(1000.0 - fee)  # no coins bought: only the fee paid
    assert eng.balances()["BTC"] == 0.01
    # the position's initial margin at mark (3000 / 10) and its unrealised loss (0.1 x 0.05) are used
    assert eng.free_margin("USDT") == pytest.approx(1000.0 - fee - 5 * 0.01 * 60000.0 / 10 - 0.005)


def test_an_order_beyond_the_free_margin_is_refused_and_a_close_needs_none() -> None:
    eng = engine(usdt=100.0)
    (rej,) = submit(eng, "big", SWAP, Side.BUY, 2.0, 60000.0)  # 1200 USDT of position: 120 of margin + fee
    assert rej.status is OrderStatus.REJECTED
    assert rej.error_msg == "insufficient USDT margin (code 51008): needed 120.6, available 100"
    assert submit(eng, "o1", SWAP, Side.BUY, 1.5)[-1].status is OrderStatus.FILLED  # 90 of margin
    assert eng.free_margin("USDT") < 10.0
    # a resting sell of what the position holds closes it: no margin needed, accepted
    (acc,) = submit(eng, "close", SWAP, Side.SELL, 1.5, 61000.0)
    assert acc.status is OrderStatus.ACCEPTED and eng.account()["USDT"].frozen == 0.0
    # a sell beyond it would open a short of 1.0: its margin is needed and is not there
    (rej2,) = submit(eng, "flip", SWAP, Side.SELL, 2.5, 61000.0)
    assert rej2.status is OrderStatus.REJECTED and "margin" in rej2.error_msg


def test_a_resting_swap_order_holds_margin_until_cancelled() -> None:
    eng = engine()
    (acc,) = submit(eng, "r1", SWAP, Side.SELL, 2.0, 61000.0)  # a short of 2 contracts = 1220 USDT
    need = 2 * 0.01 * 61000.0 / 10 + 2 * 0.01 * 61000.0 * TAKER
    assert acc.status is OrderStatus.ACCEPTED
    assert eng.account()["USDT"].frozen == pytest.approx(need)
    eng.cancel("r1", ts=2)
    assert eng.account()["USDT"].frozen == 0.0 and eng.balances()["USDT"] == 1000.0


def test_round_trip_realises_pnl_in_usdt_and_inverse_in_btc() -> None:
    eng = engine()
    submit(eng, "b", SWAP, Side.BUY, 2.0)  # at 60000.1
    market(eng, 61000.0)
    submit(eng, "s", SWAP, Side.SELL, 2.0)  # at 60999.9
    pnl = (60999.9 - 60000.1) * 2 * 0.01
    fees = (60000.1 + 60999.9) * 2 * 0.01 * TAKER
    assert eng.positions()[SWAP] == 0.0
    assert eng.balances()["USDT"] == pytest.approx(1000.0 + pnl - fees)
    pos = eng.deriv_positions()[SWAP]
    assert pos.realized_pnl == pytest.approx(pnl) and pos.fees == pytest.approx(fees)
    # inverse: 10 contracts of 100 USD, bought at 61000.1, sold at 59999.9 after a fall: a loss in BTC
    submit(eng, "ib", INV, Side.BUY, 10.0)
    market(eng, 60000.0)
    submit(eng, "is", INV, Side.SELL, 10.0)
    ipnl = (1 / 61000.1 - 1 / 59999.9) * 10 * 100
    ifees = (1000 / 61000.1 + 1000 / 59999.9) * TAKER
    assert eng.balances()["BTC"] == pytest.approx(0.01 + ipnl - ifees, abs=1e-15)
    assert eng.balances()["USDT"] == pytest.approx(1000.0 + pnl - fees)  # untouched by the inverse swap


def test_funding_pays_from_the_long_at_the_mark() -> None:
    eng = engine()
    submit(eng, "b", SWAP, Side.BUY, 3.0)
    usdt = eng.balances()["USDT"]
    eng.set_mark(SWAP, 62000.0)
    (ch,) = eng.settle_funding(28_800_000, {SWAP: 0.0001, INV: 0.0001}, ts=5)  # INV is flat: nothing
    assert ch.kind == "funding" and ch.event_id == f"funding-{SWAP}-28800000"
    assert ch.amount == pytest.approx(-3 * 0.01 * 62000.0 * 0.0001)  # -0.186 USDT
    assert (ch.quantity, ch.price, ch.currency) == (0.0, 62000.0, "USDT")
    assert eng.balances()["USDT"] == pytest.approx(usdt - 0.186)
    assert eng.deriv_positions()[SWAP].funding == pytest.approx(-0.186)


def test_liquidation_when_the_margin_runs_out_cancels_the_orders_and_closes_at_mark() -> None:
    specs = {**SPECS, SWAP: ContractSpec(SWAP, 0.01, 0.01, leverage=50.0)}
    eng = engine(usdt=100.0, specs=specs)
    submit(eng, "b", SWAP, Side.BUY, 5.0)  # 3000 USDT of position on 100 USDT: 60 of margin
    submit(eng, "tp", SWAP, Side.SELL, 5.0, 63000.0)  # a resting take-profit, closing: holds nothing
    cash = eng.balances()["USDT"]
    # equity = cash + (m - 60000.1) x 0.05; maintenance = 0.05 x m x 0.004: liquidated below ~58227
    market(eng, 58300.0)
    assert eng.liquidations(ts=9) == ([], [])
    market(eng, 58200.0)
    events, (liq,) = eng.liquidations(ts=10)
    assert [(e.venue_order_id, e.status) for e in events] == [("tp", OrderStatus.CANCELLED)]
    assert liq.kind == "liquidation" and liq.event_id.startswith("liquidation-")
    assert (liq.symbol, liq.quantity, liq.price, liq.currency) == (SWAP, -5.0, 58200.0, "USDT")
    pnl = (58200.0 - 60000.1) * 0.05
    penalty = 0.05 * 58200.0 * 0.0005
    assert liq.amount == pytest.approx(pnl - penalty)
    assert eng.positions()[SWAP] == 0.0
    assert eng.balances()["USDT"] == pytest.approx(cash + pnl - penalty)
    assert eng.liquidations(ts=11) == ([], [])


def test_a_liquidation_warning_once_below_the_ratio_and_again_only_after_it_recovered() -> None:
    specs = {**SPECS, SWAP: ContractSpec(SWAP, 0.01, 0.01, leverage=50.0)}
    eng = MatchingEngine(INSTS, maker_fee=0.0002, taker_fee=TAKER, balances={"USDT": 100.0}, contracts=specs,
                         warning_ratio=3.0)  # fmt: skip
    market(eng, 60000.0)
    submit(eng, "b", SWAP, Side.BUY, 5.0)  # 0.05 BTC on ~98.5 USDT: margin ratio ~8 at 60000
    cash = eng.balances()["USDT"]

    def ratio(m: float) -> float:  # equity / maintenance at mark m
        return (cash + (m - 60000.1) * 0.05) / (0.05 * m * 0.004)

    assert ratio(59000.0) > 3 > ratio(58700.0) > 1
    market(eng, 59000.0)
    assert eng.liquidations(ts=1) == ([], [])
    market(eng, 58700.0)
    (_, (warn,)) = eng.liquidations(ts=2)
    assert (warn.kind, warn.symbol, warn.quantity, warn.price, warn.amount) == (
        "liquidation_warning",
        SWAP,
        0.0,
        58700.0,
        0.0,
    )
    assert eng.liquidations(ts=3) == ([], [])  # once
    market(eng, 59500.0)
    assert eng.liquidations(ts=4) == ([], [])  # recovered
    market(eng, 58600.0)
    (_, (again,)) = eng.liquidations(ts=5)
    assert again.kind == "liquidation_warning" and again.event_id != warn.event_id
    assert eng.positions()[SWAP] == 5.0  # a warning changes nothing


def test_an_isolated_position_holds_its_own_margin_and_is_liquidated_alone() -> None:
    iso = ContractSpec(SWAP, 0.01, 0.01, leverage=20.0, margin_mode="isolated")
    eng = engine(usdt=1000.0, btc=0.01, specs={SWAP: iso, INV: SPECS[INV]})
    submit(eng, "b", SWAP, Side.BUY, 10.0)  # 6000 USDT of position at 20x: 300 of margin held by it
    pos = eng.deriv_positions()[SWAP]
    assert pos.margin == pytest.approx(10 * 0.01 * 60000.1 / 20)
    fee = 10 * 0.01 * 60000.1 * TAKER
    assert eng.balances()["USDT"] == pytest.approx(1000.0 - pos.margin - fee)  # the margin left the cash
    # its equity: 300 + (m - 60000.1) x 0.1; its maintenance 0.1 x m x 0.004: liquidated below ~57233
    market(eng, 57300.0)
    assert eng.liquidations(ts=2) == ([], [])
    market(eng, 57200.0)
    _, (liq,) = eng.liquidations(ts=3)
    loss, penalty = (57200.0 - 60000.1) * 0.1, 0.1 * 57200.0 * 0.0005
    assert liq.amount == pytest.approx(loss - penalty)
    # the cash lost only what the margin did not cover: 300 back, the loss of 280 and the fee
    assert eng.balances()["USDT"] == pytest.approx(1000.0 - fee + loss - penalty)
    assert eng.deriv_positions()[SWAP].margin == 0.0


def test_reduce_only_is_refused_as_okx_refuses_it_in_net_mode() -> None:
    eng = engine()
    ro = VenueOrder("r0", SWAP, Side.SELL, OrderType.LIMIT, 61000.0, 1.0, reduce_only=True)
    (rej,) = eng.submit(ro, ts=1)
    assert rej.status is OrderStatus.REJECTED and "(code 51169)" in rej.error_msg  # no position
    submit(eng, "b", SWAP, Side.BUY, 2.0)
    same = VenueOrder("r1", SWAP, Side.BUY, OrderType.LIMIT, 59000.0, 1.0, reduce_only=True)
    assert "(code 51170)" in eng.submit(same, ts=2)[0].error_msg  # the same direction
    ok = VenueOrder("r2", SWAP, Side.SELL, OrderType.LIMIT, 61000.0, 1.5, reduce_only=True)
    assert eng.submit(ok, ts=3)[0].status is OrderStatus.ACCEPTED
    more = VenueOrder("r3", SWAP, Side.SELL, OrderType.LIMIT, 61000.0, 1.0, reduce_only=True)
    (rej3,) = eng.submit(more, ts=4)  # 1.0 + the 1.5 resting > the position of 2
    assert rej3.error_msg == "reduce-only: 1 with 1.5 reduce-only already resting exceeds the position of 2"
    spot = VenueOrder("s", SPOT, Side.BUY, OrderType.LIMIT, 59000.0, 0.001, reduce_only=True)
    assert "swaps in net mode only (code 51000)" in eng.submit(spot, ts=5)[0].error_msg
    hedge = VenueOrder("h", SWAP, Side.BUY, OrderType.LIMIT, 59000.0, 1.0, pos_side="long")
    assert "(code 51000)" in eng.submit(hedge, ts=6)[0].error_msg  # net mode: no long/short legs


def test_limit_prices_beyond_the_price_limits_are_refused_with_51006() -> None:
    eng = MatchingEngine(INSTS, maker_fee=0.0002, taker_fee=TAKER, balances={"USDT": 1000.0}, contracts=SPECS,
                         price_limit_band=0.05)  # fmt: skip
    market(eng, 60000.0)
    assert eng.price_limits(SWAP) == (63000.0, 57000.0)
    (rej,) = submit(eng, "hi", SWAP, Side.BUY, 0.01, 63000.1)
    assert rej.error_msg == (
        "Order price is not within the price limit (max buy price: 63000, min sell price: 57000) (code 51006)"
    )
    assert submit(eng, "lo", SWAP, Side.SELL, 0.01, 56999.9)[0].status is OrderStatus.REJECTED
    (ok,) = submit(eng, "in", SWAP, Side.BUY, 0.01, 57000.0)
    assert ok.status is OrderStatus.ACCEPTED
    (failed,) = eng.amend("in", 63000.5, None, ts=2)
    assert "(code 51006)" in failed.error_msg
    assert submit(eng, "spot", SPOT, Side.BUY, 0.001, 50000.0)[0].status is OrderStatus.ACCEPTED  # spot: none


def test_the_store_keeps_positions_funding_and_undelivered_changes_through_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite"
    eng = engine()
    store = PaperStore.open(path, eng)
    evs = submit(eng, "b", SWAP, Side.BUY, 2.0)
    store.save(evs, "b")
    (acc,) = submit(eng, "r", SWAP, Side.BUY, 1.0, 59000.0)
    store.save([acc], "r")
    changes = eng.settle_funding(1000, {SWAP: 0.0002}, ts=2)
    store.save((), changes=changes, funding_ms=1000)
    store.delivered([changes[0].event_id])
    more = eng.settle_funding(2000, {SWAP: 0.0002}, ts=3)
    store.save((), changes=more, funding_ms=2000)  # the server dies before it takes this one
    before = (eng.balances(), eng.account(), eng.deriv_state(), eng.positions())
    store.close()

    eng2 = MatchingEngine(INSTS, maker_fee=0.0002, taker_fee=TAKER, balances={"USDT": 1.0}, contracts=SPECS)
    store2 = PaperStore.open(path, eng2)
    assert (eng2.balances(), eng2.account(), eng2.deriv_state(), eng2.positions()) == before
    assert store2.funding_ms == 2000
    assert store2.pending() == more
    store2.save((), changes=more)  # handed over again: stored once
    store2.delivered([more[0].event_id])
    assert store2.pending() == []
    assert [o.venue_order_id for o in eng2.open_orders()] == ["r"]
