"""The paper exchange's derivatives rules (venues/paper_derivs.py), pure, against hand-computed cases.

The worked cases of OKX's own numbers: an ETH-USDT-SWAP round trip (ctVal 0.1, 0.07 % per side:
pnl -0.0213, fees -0.04516211, realised -0.06646211) and a BTC-USDT-SWAP buy of 0.03 contracts at
103698.9 (fee 0.021776769). The rest are computed by hand in the comments.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrade.venues.paper_derivs import (
    MAX_FUNDING_RATE,
    ContractSpec,
    DerivPosition,
    apply_fill,
    contracts_for,
    fee,
    funding_payment,
    funding_rate,
    initial_margin,
    liquidate,
    liquidation_price,
    maintenance_margin,
    margin_ratio,
    next_funding_time,
    position_value,
    to_liquidate,
    unrealised_pnl,
)

BTC = ContractSpec("BTC-USDT-SWAP", contract_value=0.01, lot_size=0.01, leverage=100.0)
ETH = ContractSpec("ETH-USDT-SWAP", contract_value=0.1, lot_size=0.01)
INV = ContractSpec("BTC-USD-SWAP", contract_value=100.0, lot_size=1.0, inverse=True, settle_currency="BTC")


def test_okx_eth_usdt_swap_round_trip_pnl_and_fees() -> None:
    pos = DerivPosition(ETH.symbol)
    opened = apply_fill(ETH, pos, buy=True, quantity=0.1, price=3226.93, fee_rate=0.0007)
    assert (opened.closed, opened.opened, opened.realized_pnl) == (0.0, 0.1, 0.0)
    assert pos.quantity == 0.1 and pos.avg_price == 3226.93
    closed = apply_fill(ETH, pos, buy=False, quantity=0.1, price=3224.8, fee_rate=0.0007)
    assert closed.closed == 0.1 and closed.opened == 0.0
    assert closed.realized_pnl == pytest.approx(-0.0213, abs=1e-12)
    assert pos.fees == pytest.approx(0.04516211, abs=1e-12)
    assert pos.realized_pnl - pos.fees == pytest.approx(-0.06646211, abs=1e-12)
    assert opened.cash_change + closed.cash_change == pytest.approx(-0.06646211, abs=1e-12)
    assert pos.quantity == 0.0 and pos.avg_price == 0.0


def test_okx_btc_usdt_swap_fee_is_in_usdt_per_contract_value() -> None:
    assert fee(BTC, 0.03, 103698.9, 0.0007) == pytest.approx(0.021776769, abs=1e-12)
    # notional of 0.03 contracts = 0.0003 BTC at 103698.9 = 31.10967 USDT
    assert position_value(BTC, -0.03, 103698.9) == pytest.approx(31.10967, abs=1e-9)


def test_contract_sizing_from_coins_and_usd() -> None:
    assert contracts_for(BTC, 0.05) == pytest.approx(5.0)  # 0.05 BTC / 0.01 BTC a contract
    assert contracts_for(BTC, 0.0549) == pytest.approx(5.49)
    assert contracts_for(INV, 1050.0) == 10.0  # 1050 USD / 100 USD, down to the lot of 1


def test_linear_average_price_and_unrealised_pnl() -> None:
    pos = DerivPosition(BTC.symbol)
    apply_fill(BTC, pos, buy=True, quantity=2.0, price=100.0, fee_rate=0.0)
    apply_fill(BTC, pos, buy=True, quantity=1.0, price=130.0, fee_rate=0.0)
    assert pos.quantity == 3.0 and pos.avg_price == pytest.approx(110.0)
    # (120 - 110) x 3 contracts x 0.01
    assert unrealised_pnl(BTC, pos, 120.0) == pytest.approx(0.3)


def test_a_fill_through_zero_closes_then_opens_at_the_fill_price() -> None:
    pos = DerivPosition(BTC.symbol)
    apply_fill(BTC, pos, buy=True, quantity=1.0, price=100.0, fee_rate=0.0)
    f = apply_fill(BTC, pos, buy=False, quantity=3.0, price=110.0, fee_rate=0.001)
    assert (f.closed, f.opened) == (1.0, 2.0)
    assert f.realized_pnl == pytest.approx(0.1)  # (110 - 100) x 1 x 0.01
    assert f.fee == pytest.approx(3 * 0.01 * 110.0 * 0.001)
    assert pos.quantity == -2.0 and pos.avg_price == 110.0
    assert unrealised_pnl(BTC, pos, 100.0) == pytest.approx(0.2)  # a short gains as the price falls


def test_inverse_pnl_is_in_btc_and_its_average_is_harmonic() -> None:
    pos = DerivPosition(INV.symbol)
    apply_fill(INV, pos, buy=True, quantity=10.0, price=50000.0, fee_rate=0.0)
    apply_fill(INV, pos, buy=True, quantity=10.0, price=40000.0, fee_rate=0.0)
    assert pos.avg_price == pytest.approx(20 / (10 / 50000 + 10 / 40000))  # 44444.44
    separate = (1 / 50000 - 1 / 45000) * 1000 + (1 / 40000 - 1 / 45000) * 1000
    assert unrealised_pnl(INV, pos, 45000.0) == pytest.approx(separate, rel=1e-12)
    f = apply_fill(INV, pos, buy=False, quantity=20.0, price=45000.0, fee_rate=0.0005)
    assert f.realized_pnl == pytest.approx(separate, rel=1e-12)
    assert f.fee == pytest.approx(0.0005 * 20 * 100 / 45000)  # BTC
    # one more, by hand: long 10 at 50000 closed at 55000 = (1/50000 - 1/55000) x 1000 BTC
    pos2 = DerivPosition(INV.symbol)
    apply_fill(INV, pos2, buy=True, quantity=10.0, price=50000.0, fee_rate=0.0)
    g = apply_fill(INV, pos2, buy=False, quantity=10.0, price=55000.0, fee_rate=0.0)
    assert g.realized_pnl == pytest.approx(0.0018181818, abs=1e-10)


def test_isolated_position_holds_its_margin_and_gives_it_back_as_it_closes() -> None:
    iso = ContractSpec("BTC-USDT-SWAP", 0.01, 0.01, leverage=5.0, margin_mode="isolated")
    pos = DerivPosition(iso.symbol)
    f = apply_fill(iso, pos, buy=True, quantity=1.0, price=60000.0, fee_rate=0.0005)
    assert pos.margin == pytest.approx(120.0)  # 600 USDT of position at 5x
    assert f.cash_change == pytest.approx(-120.0 - 0.3)
    g = apply_fill(iso, pos, buy=False, quantity=0.5, price=61000.0, fee_rate=0.0)
    assert pos.margin == pytest.approx(60.0)
    assert g.cash_change == pytest.approx(60.0 + 5.0)  # half the margin back and (61000-60000) x 0.5 x 0.01
    assert initial_margin(iso, 0.5, 61000.0) == pytest.approx(61.0)


def test_funding_longs_pay_shorts_when_the_rate_is_positive() -> None:
    # 2 contracts x 0.01 BTC x 60000 = 1200 USDT of position; x 0.0001 = 0.12
    assert funding_payment(BTC, 2.0, 60000.0, 0.0001) == pytest.approx(-0.12)
    assert funding_payment(BTC, -2.0, 60000.0, 0.0001) == pytest.approx(0.12)
    assert funding_payment(BTC, -2.0, 60000.0, -0.0001) == pytest.approx(-0.12)
    assert funding_payment(BTC, 0.0, 60000.0, 0.0001) == 0.0
    # inverse: 100 contracts x 100 USD / 50000 = 0.2 BTC; x 0.0001 = 0.00002 BTC
    assert funding_payment(INV, 100.0, 50000.0, 0.0001) == pytest.approx(-0.00002)


def test_funding_schedule_and_rate_model() -> None:
    assert next_funding_time(0, 8 * 3600_000) == 8 * 3600_000
    assert next_funding_time(8 * 3600_000, 8 * 3600_000) == 16 * 3600_000
    r1 = funding_rate("BTC-USDT-SWAP", 20_000, base=0.0001, jitter=0.0002, seed=7)
    assert r1 == funding_rate("BTC-USDT-SWAP", 20_000, base=0.0001, jitter=0.0002, seed=7)
    assert -0.0001 <= r1 <= 0.0003
    assert funding_rate("X", 1, base=0.0001, jitter=0.0, seed=1) == 0.0001
    assert funding_rate("X", 1, base=0.01, jitter=0.0, seed=1) == MAX_FUNDING_RATE


def test_cross_liquidation_at_the_hand_computed_price() -> None:
    specs = {BTC.symbol: BTC}
    pos = DerivPosition(BTC.symbol)
    apply_fill(BTC, pos, buy=True, quantity=10.0, price=60000.0, fee_rate=0.0)  # 0.1 BTC long, 100x
    positions, cash = {BTC.symbol: pos}, {"USDT": 100.0}
    # equity 100 + (m - 60000) x 0.1 = 0.1 x m x 0.004  ->  m = 5900 / 0.0996
    px = liquidation_price(BTC, pos, 100.0)
    assert px == pytest.approx(5900 / 0.0996)
    assert margin_ratio(specs, positions, {BTC.symbol: px}, cash, BTC.symbol) == pytest.approx(1.0)
    # at 59300: equity 30, mm 23.72: safe; at 59200: equity 20, mm 23.68: liquidated
    assert margin_ratio(specs, positions, {BTC.symbol: 59300.0}, cash, BTC.symbol) == pytest.approx(
        30 / 23.72
    )
    assert to_liquidate(specs, positions, {BTC.symbol: 59300.0}, cash) == []
    assert to_liquidate(specs, positions, {BTC.symbol: 59200.0}, cash) == [BTC.symbol]
    liq = liquidate(BTC, pos, 59200.0, 100.0)
    assert liq.quantity == -10.0 and liq.price == 59200.0
    assert liq.realized_pnl == pytest.approx(-80.0)
    assert liq.fee == pytest.approx(5920.0 * 0.0005)  # 2.96
    assert liq.cash_change == pytest.approx(-82.96)
    assert pos.quantity == 0.0 and pos.realized_pnl == pytest.approx(-80.0)


def test_a_bankrupt_liquidation_never_takes_the_cash_below_zero() -> None:
    pos = DerivPosition(BTC.symbol)
    apply_fill(BTC, pos, buy=True, quantity=10.0, price=60000.0, fee_rate=0.0)
    liq = liquidate(BTC, pos, 58000.0, 100.0)  # a loss of 200 on 100 of cash
    assert liq.cash_change == pytest.approx(-100.0)
    assert liq.fee == 0.0 and liq.realized_pnl == pytest.approx(-100.0)


def test_short_and_inverse_liquidation_prices() -> None:
    pos = DerivPosition(BTC.symbol)
    apply_fill(BTC, pos, buy=False, quantity=10.0, price=60000.0, fee_rate=0.0)
    # 100 - (m - 60000) x 0.1 = 0.1 x m x 0.004  ->  m = 6100 / 0.1004
    assert liquidation_price(BTC, pos, 100.0) == pytest.approx(6100 / 0.1004)
    ipos = DerivPosition(INV.symbol)
    apply_fill(INV, ipos, buy=True, quantity=100.0, price=50000.0, fee_rate=0.0)  # 10000 USD = 0.2 BTC
    # 0.01 + (1/50000 - 1/m) x 10000 = 10000 x 0.004 / m  ->  m = 10040 / 0.21
    assert liquidation_price(INV, ipos, 0.01) == pytest.approx(10040 / 0.21)
    assert liquidation_price(BTC, DerivPosition(BTC.symbol), 100.0) is None
    assert maintenance_margin(INV, 100.0, 50000.0) == pytest.approx(0.2 * 0.004)


def test_cross_pool_liquidates_every_cross_position_of_its_currency_isolated_only_its_own() -> None:
    eth = ContractSpec("ETH-USDT-SWAP", 0.1, 0.01, leverage=100.0)
    iso = ContractSpec("SOL-USDT-SWAP", 1.0, 1.0, leverage=10.0, margin_mode="isolated")
    specs = {s.symbol: s for s in (BTC, eth, iso, INV)}
    positions = {s: DerivPosition(s) for s in specs}
    apply_fill(BTC, positions[BTC.symbol], buy=True, quantity=10.0, price=60000.0, fee_rate=0.0)
    apply_fill(eth, positions[eth.symbol], buy=False, quantity=1.0, price=3000.0, fee_rate=0.0)
    f = apply_fill(iso, positions[iso.symbol], buy=True, quantity=10.0, price=100.0, fee_rate=0.0)
    apply_fill(INV, positions[INV.symbol], buy=True, quantity=1.0, price=60000.0, fee_rate=0.0)
    cash = {"USDT": 200.0 + f.cash_change, "BTC": 1.0}  # 100 USDT left for the cross pool
    marks = {BTC.symbol: 59000.0, eth.symbol: 3000.0, iso.symbol: 100.0, INV.symbol: 59000.0}
    assert to_liquidate(specs, positions, marks, cash) == [BTC.symbol, eth.symbol]
    marks = {BTC.symbol: 60000.0, eth.symbol: 3000.0, iso.symbol: 90.0, INV.symbol: 59000.0}
    assert to_liquidate(specs, positions, marks, cash) == [iso.symbol]
    liq = liquidate(iso, positions[iso.symbol], 90.0, cash["USDT"])
    # its margin 100 back, its loss (90 - 100) x 10 = -100, the fee 900 x 0.0005 = 0.45 from the cash
    assert liq.cash_change == pytest.approx(-0.45)


@settings(max_examples=200, deadline=None)
@given(
    q=st.integers(1, 500),
    buy=st.booleans(),
    avg=st.floats(1000.0, 100000.0),
    cash=st.floats(10.0, 10000.0),
    inverse=st.booleans(),
    isolated=st.booleans(),
)
def test_at_the_liquidation_price_equity_equals_maintenance_margin(
    q: int, buy: bool, avg: float, cash: float, inverse: bool, isolated: bool
) -> None:
    spec = ContractSpec(
        "X-USDT-SWAP", 100.0 if inverse else 0.01, 1.0, inverse=inverse, leverage=20.0,
        margin_mode="isolated" if isolated else "cross", settle_currency="BTC" if inverse else "USDT",
    )  # fmt: skip
    pos = DerivPosition(spec.symbol)
    apply_fill(spec, pos, buy=buy, quantity=float(q), price=avg, fee_rate=0.0)
    wallet = cash / avg if inverse else cash
    px = liquidation_price(spec, pos, wallet)
    if px is None:
        return
    ratio = margin_ratio(
        {spec.symbol: spec},
        {spec.symbol: pos},
        {spec.symbol: px},
        {spec.settle_currency: wallet},
        spec.symbol,
    )
    assert ratio == pytest.approx(1.0, rel=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    fills=st.lists(
        st.tuples(st.booleans(), st.integers(1, 50), st.integers(900, 1100)), min_size=1, max_size=20
    ),
    inverse=st.booleans(),
    isolated=st.booleans(),
)
def test_pnl_is_conserved_over_any_sequence_of_fills(
    fills: list[tuple[bool, int, int]], inverse: bool, isolated: bool
) -> None:
    """Realised + unrealised at a mark = what the fills would have made marked to that price one by
    one; and an isolated position's margin is back in the cash once flat."""
    spec = ContractSpec(
        "X", 10.0, 1.0, inverse=inverse, leverage=10.0, margin_mode="isolated" if isolated else "cross"
    )
    pos = DerivPosition("X")
    cash = 0.0
    for buy, n, px in fills:
        cash += apply_fill(spec, pos, buy=buy, quantity=float(n), price=float(px), fee_rate=0.0).cash_change
    mark = 1000.0
    expected = sum(
        (1 / px - 1 / mark) * (n if buy else -n) * 10.0
        if inverse
        else (mark - px) * (n if buy else -n) * 10.0
        for buy, n, px in fills
    )
    assert pos.realized_pnl + unrealised_pnl(spec, pos, mark) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert cash + pos.margin == pytest.approx(pos.realized_pnl, rel=1e-9, abs=1e-9)
    assert math.isfinite(pos.avg_price)


def test_the_rules_import_no_io() -> None:
    code = "import sys, seqtrade.venues.paper_derivs; print(' '.join(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not {"trio", "zmq", "httpx", "trio_websocket", "sqlite3"} & set(loaded)
