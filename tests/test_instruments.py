"""The one unit rule (seqtrade.instruments): kinds from symbols, notional, PnL and fees for spot,
linear and inverse instruments, and the instrument facts OKX rows give."""

from __future__ import annotations

import pytest

from seqtrade.instruments import (
    Instrument,
    InstrumentKind,
    fee_amount,
    instrument_from_map,
    instrument_to_map,
    kind_of,
    money_currency,
    notional,
    notional_currency,
    realised_pnl,
    unrealised_pnl,
)
from seqtrade.positions import apply_fill_to
from seqtrade.venues.okx.parse import instrument_from_okx

LINEAR = Instrument("BTC-USDT-SWAP", 0.1, 0.01, 0.01, None, 0.01, InstrumentKind.SWAP, "BTC", "USDT", "BTC", "USDT",
                    False, 100.0)  # fmt: skip
INVERSE = Instrument("BTC-USD-SWAP", 0.1, 1.0, 1.0, None, 100.0, InstrumentKind.SWAP, "USD", "BTC", "BTC", "USD",
                     True, 100.0)  # fmt: skip
SPOT = Instrument("BTC-USDT", 0.1, 1e-8, 1e-5, None, 1.0, InstrumentKind.SPOT, "BTC", "USDT", "BTC", "USDT")


@pytest.mark.parametrize(
    ("symbol", "kind"),
    [
        ("BTC-USDT", InstrumentKind.SPOT),
        ("BTC-USDT-SWAP", InstrumentKind.SWAP),
        ("BTC-USD-SWAP", InstrumentKind.SWAP),
        ("BTC-USD_UM-SWAP", InstrumentKind.SWAP),
        ("BTC-USD-261225", InstrumentKind.FUTURES),
        ("BTC-USD_UM-250808", InstrumentKind.FUTURES),
        ("SWAP", InstrumentKind.SPOT),
        ("X-SWAP", InstrumentKind.SPOT),
        ("BTC-USDT-2612", InstrumentKind.SPOT),
    ],
)
def test_kind_follows_from_the_okx_instrument_id(symbol: str, kind: InstrumentKind):
    assert kind_of(symbol) is kind


def test_notional_linear_is_contracts_times_ct_val_times_price_and_inverse_is_fixed_usd():
    assert notional(LINEAR, 3, 60000.0) == pytest.approx(1800.0)  # 3 x 0.01 BTC x 60000
    assert notional(LINEAR, -3, 60000.0) == pytest.approx(1800.0)
    assert notional(INVERSE, 200, 50000.0) == notional(INVERSE, 200, 10.0) == 20000.0
    assert notional(SPOT, 0.5, 60000.0) == 30000.0
    assert (notional_currency(LINEAR), notional_currency(INVERSE), notional_currency(SPOT)) == (
        "USDT",
        "USD",
        "USDT",
    )
    assert (money_currency(LINEAR), money_currency(INVERSE), money_currency(SPOT)) == ("USDT", "BTC", "USDT")


def test_pnl_linear_in_quote_and_inverse_in_coin_as_in_the_protocol_page():
    assert realised_pnl(LINEAR, 3, 60000.0, 61000.0) == pytest.approx(30.0)
    assert unrealised_pnl(LINEAR, -3, 60000.0, 61000.0) == pytest.approx(-30.0)
    assert realised_pnl(INVERSE, 200, 50000.0, 55000.0) == pytest.approx(0.036363636, rel=1e-6)
    assert unrealised_pnl(INVERSE, -200, 50000.0, 55000.0) == pytest.approx(-0.036363636, rel=1e-6)
    assert unrealised_pnl(LINEAR, 0, 1.0, 2.0) == 0.0 and unrealised_pnl(LINEAR, 1, 0.0, 2.0) == 0.0


def test_fees_in_the_settlement_currency():
    # the fact sheet's checked sample: 0.03 contracts at 103698.9, 0.07 % -> 0.021776769 USDT
    assert fee_amount(LINEAR, 0.03, 103698.9, 0.0007) == pytest.approx(0.021776769)
    assert fee_amount(INVERSE, 200, 50000.0, 0.0005) == pytest.approx(0.0005 * 200 * 100 / 50000)


def test_apply_fill_to_a_contract_position_realises_pnl_in_settlement_currency():
    pos, avg, pnl = apply_fill_to(LINEAR, 0.0, 0.0, "buy", 3, 60000.0)
    assert (pos, avg, pnl) == (3, 60000.0, 0.0)
    pos, avg, pnl = apply_fill_to(LINEAR, pos, avg, "sell", 5, 61000.0)  # closes 3, opens 2 short
    assert pos == -2 and avg == 61000.0 and pnl == pytest.approx(30.0)
    # inverse: the average entry is the contract-weighted harmonic mean, PnL in BTC
    pos, avg, _ = apply_fill_to(INVERSE, 0.0, 0.0, "buy", 100, 50000.0)
    pos, avg, _ = apply_fill_to(INVERSE, pos, avg, "buy", 100, 60000.0)
    assert avg == pytest.approx(200 / (100 / 50000 + 100 / 60000))
    pos, avg, pnl = apply_fill_to(INVERSE, pos, avg, "sell", 200, 55000.0)
    expected = (100 * 100 / 50000 + 100 * 100 / 60000) - 200 * 100 / 55000  # BTC in at entry minus BTC out
    assert pos == 0.0 and pnl == pytest.approx(expected)


def test_instrument_map_round_trip_and_an_unknown_kind_is_read_from_the_symbol():
    for inst in (LINEAR, INVERSE, SPOT):
        assert instrument_from_map(instrument_to_map(inst)) == inst
    m = instrument_to_map(LINEAR) | {"kind": "option", "future_key": 1}
    assert instrument_from_map(m).kind is InstrumentKind.SWAP


SWAP_ROW = {"alias": "", "ctMult": "1", "ctType": "linear", "ctVal": "0.01", "ctValCcy": "BTC", "expTime": "",
            "instFamily": "BTC-USDT", "instId": "BTC-USDT-SWAP", "instIdCode": 10459, "instType": "SWAP",
            "lever": "100", "lotSz": "0.01", "minSz": "0.01", "settleCcy": "USDT", "state": "live",
            "tickSz": "0.1", "uly": "BTC-USDT", "baseCcy": "", "quoteCcy": "", "maxPlatOILmt": ""}  # fmt: skip
INVERSE_ROW = SWAP_ROW | {"ctType": "inverse", "ctVal": "100", "ctValCcy": "USD", "instFamily": "BTC-USD",
                          "instId": "BTC-USD-SWAP", "instIdCode": 10458, "lotSz": "1", "minSz": "1",
                          "settleCcy": "BTC", "uly": "BTC-USD"}  # fmt: skip
FUTURES_ROW = INVERSE_ROW | {"instId": "BTC-USD-241220", "instType": "FUTURES", "expTime": "1734681600000",
                             "lever": "20", "instIdCode": None}  # fmt: skip


def test_okx_rows_give_every_fact_of_linear_inverse_and_dated_instruments():
    lin = instrument_from_okx(SWAP_ROW).to_instrument()  # type: ignore[arg-type]
    assert lin == LINEAR.__class__(
        **{**instrument_to_map(LINEAR), "code": 10459, "kind": InstrumentKind.SWAP}
    )
    inv = instrument_from_okx(INVERSE_ROW).to_instrument()  # type: ignore[arg-type]
    assert (inv.inverse, inv.contract_value, inv.contract_currency, inv.settle_currency, inv.quote_currency) == (
        True, 100.0, "USD", "BTC", "USD",
    )  # fmt: skip
    fut = instrument_from_okx(FUTURES_ROW).to_instrument()  # type: ignore[arg-type]
    assert (fut.kind, fut.expiry_ms, fut.max_leverage, fut.code) == (
        InstrumentKind.FUTURES,
        1734681600000,
        20.0,
        None,
    )
    spot = instrument_from_okx({"instId": "BTC-USDT", "instType": "SPOT", "tickSz": "0.1", "lotSz": "0.00000001",
                                "minSz": "0.00001", "baseCcy": "BTC", "quoteCcy": "USDT", "ctVal": ""}).to_instrument()  # fmt: skip
    assert (spot.kind, spot.contract_value, spot.settle_currency, spot.max_leverage) == (
        "spot",
        1.0,
        "USDT",
        0.0,
    )
