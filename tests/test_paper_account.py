"""The paper account's money: balances, reservations, refusals (venues/paper_account.py, matching.py).

Pure: the engine and the account functions, no venue task. The properties run random sequences of
orders, amends, cancels and market moves and check after every step what an exchange guarantees.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrade.config import DEFAULT_PAPER_BALANCES, PaperConfig, parse_config
from seqtrade.errors import ConfigError
from seqtrade.models import OrderStatus, OrderType, Side
from seqtrade.venues.base import Instrument, VenueOrder
from seqtrade.venues.matching import MatchingEngine
from seqtrade.venues.paper_account import Balance, freeze, release, settle_fill
from seqtrade.venues.paper_store import PaperStore

SYM = "BTC-USDT"
INST = Instrument(SYM, tick_size=0.1, lot_size=0.001, min_size=0.001)
MAKER, TAKER = 0.0008, 0.001


def book(top: float, step: float, size: float = 1.0) -> list[list[float]]:
    return [[round(top + i * step, 1), size] for i in range(5)]


def engine(balances: dict[str, float] | None = None) -> MatchingEngine:
    eng = MatchingEngine({SYM: INST}, maker_fee=MAKER, taker_fee=TAKER, balances=balances)
    eng.set_book(SYM, book(100.0, -0.1), book(100.2, 0.1), 0)
    return eng


def order(oid: str, side: Side, kind: OrderType, price: float | None, qty: float) -> VenueOrder:
    return VenueOrder(oid, SYM, side, kind, price, qty)


# ----------------------------------------------------------------------------- refusals


def test_the_default_account_cannot_sell_a_million_btc() -> None:
    """The issue's case: with the shipped defaults, sell_market(1e6) is refused for lack of coins."""
    eng = MatchingEngine({SYM: INST}, maker_fee=MAKER, taker_fee=TAKER)  # no balances given: the defaults
    eng.set_book(SYM, book(60000.0, -0.1), book(60000.2, 0.1), 0)
    (ev,) = eng.submit(order("m1", Side.SELL, OrderType.MARKET, None, 1e6), ts=1)
    assert ev.status is OrderStatus.REJECTED
    assert ev.error_msg == "insufficient BTC balance (code 51008): needed 1000000, available 1"
    assert eng.positions() == {SYM: 0.0}
    assert eng.balances() == {**DEFAULT_PAPER_BALANCES, "BTC": 1.0}


def test_a_buy_needs_the_quote_with_the_fee_and_a_limit_freezes_it_until_cancelled() -> None:
    eng = engine({"USDT": 1000.0})
    (rej,) = eng.submit(order("b1", Side.BUY, OrderType.LIMIT, 99.0, 10.1), ts=1)  # 999.9 + fee
    assert rej.status is OrderStatus.REJECTED and "insufficient USDT balance" in rej.error_msg
    assert "needed 1000.8999" in rej.error_msg and "available 1000" in rej.error_msg
    (acc,) = eng.submit(order("b2", Side.BUY, OrderType.LIMIT, 99.0, 10.0), ts=2)
    assert acc.status is OrderStatus.ACCEPTED
    frozen = 990.0 * (1 + TAKER)
    assert eng.account()["USDT"] == Balance(pytest.approx(1000.0 - frozen), pytest.approx(frozen))
    (rej2,) = eng.submit(order("b3", Side.BUY, OrderType.LIMIT, 50.0, 1.0), ts=3)  # the rest is frozen
    assert rej2.status is OrderStatus.REJECTED and "available 9.01" in rej2.error_msg
    eng.cancel("b2", ts=4)
    assert eng.account()["USDT"] == Balance(1000.0, 0.0)


def test_a_sell_needs_the_coins_no_short_selling() -> None:
    eng = engine({"USDT": 1e6, "BTC": 0.5})
    (rej,) = eng.submit(order("s1", Side.SELL, OrderType.LIMIT, 101.0, 0.6), ts=1)
    assert rej.status is OrderStatus.REJECTED
    assert rej.error_msg == "insufficient BTC balance (code 51008): needed 0.6, available 0.5"
    assert (
        eng.submit(order("s2", Side.SELL, OrderType.LIMIT, 101.0, 0.5), ts=2)[-1].status
        is OrderStatus.ACCEPTED
    )
    assert eng.account()["BTC"] == Balance(0.0, 0.5)
    (rej,) = eng.submit(order("s3", Side.SELL, OrderType.MARKET, None, 0.001), ts=3)  # all of it is frozen
    assert rej.status is OrderStatus.REJECTED and "available 0" in rej.error_msg


def test_a_market_buy_needs_the_cost_of_the_depth_it_sweeps() -> None:
    # asks 100.2 x 1, 100.3 x 1, ...: 2 BTC cost 200.5 and the fee
    need = (100.2 + 100.3) * (1 + TAKER)
    eng = engine({"USDT": need - 0.01})
    (rej,) = eng.submit(order("m1", Side.BUY, OrderType.MARKET, None, 2.0), ts=1)
    assert rej.status is OrderStatus.REJECTED and "insufficient USDT" in rej.error_msg
    eng = engine({"USDT": need})
    evs = eng.submit(order("m2", Side.BUY, OrderType.MARKET, None, 2.0), ts=1)
    assert evs[-1].status is OrderStatus.FILLED
    assert eng.account()["USDT"] == Balance(pytest.approx(0.0, abs=1e-9), 0.0)
    assert eng.account()["BTC"].available == pytest.approx(2.0)


def test_an_amend_that_needs_more_than_is_available_fails_and_changes_nothing() -> None:
    eng = engine({"USDT": 1000.0})
    eng.submit(order("b1", Side.BUY, OrderType.LIMIT, 90.0, 10.0), ts=1)
    before = eng.account()["USDT"]
    (ev,) = eng.amend("b1", 99.0, 10.5, ts=2)
    assert ev.kind == "amend_failed" and "insufficient USDT balance" in ev.error_msg
    assert eng.account()["USDT"] == before
    eng.amend("b1", 50.0, None, ts=3)  # cheaper: frees the difference
    assert eng.account()["USDT"].frozen == pytest.approx(500.0 * (1 + TAKER))


def test_balances_config_is_checked() -> None:
    cfg = parse_config("[venue.paper]\nbalances = { USDT = 5.0, SOL = 2 }\n")
    assert cfg.venue.paper.balances == {"USDT": 5.0, "SOL": 2.0}
    assert PaperConfig().balances == DEFAULT_PAPER_BALANCES
    with pytest.raises(ConfigError, match=r"venue.paper.balances.USDT: must be >= 0"):
        parse_config("[venue.paper]\nbalances = { USDT = -1.0 }\n")


# ----------------------------------------------------------------------------- the pure functions


def test_freeze_release_and_settle() -> None:
    acct = {"USDT": Balance(100.0)}
    assert (
        freeze(acct, "USDT", 100.5) == "insufficient USDT balance (code 51008): needed 100.5, available 100"
    )
    assert freeze(acct, "BTC", 1.0) == "insufficient BTC balance (code 51008): needed 1, available 0"
    after = freeze(acct, "USDT", 60.0)
    assert after == {"USDT": Balance(40.0, 60.0)}
    assert release(after, "USDT", 60.0) == {"USDT": Balance(100.0, 0.0)}
    buy = settle_fill(after, "BTC", "USDT", buy=True, quantity=0.5, notional=50.0, fee=0.05, unfreeze=60.0)
    assert buy == {"BTC": Balance(0.5, 0.0), "USDT": Balance(pytest.approx(49.95), 0.0)}


# ----------------------------------------------------------------------------- properties

_actions = st.lists(
    st.one_of(
        st.tuples(
            st.just("submit"),
            st.sampled_from([Side.BUY, Side.SELL]),
            st.sampled_from(list(OrderType)),
            st.integers(min_value=985, max_value=1015),  # price in ticks of 0.1
            st.integers(min_value=1, max_value=3000),  # lots of 0.001
        ),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=30)),
        st.tuples(
            st.just("amend"),
            st.integers(min_value=0, max_value=30),
            st.integers(min_value=985, max_value=1015),
            st.integers(min_value=1, max_value=3000),
        ),
        st.tuples(st.just("book"), st.integers(min_value=985, max_value=1015)),
        st.tuples(st.just("trade"), st.integers(min_value=985, max_value=1015), st.sampled_from(list(Side))),
    ),
    max_size=40,
)


def _check_invariants(eng: MatchingEngine, start: dict[str, float]) -> None:
    acct = eng.account()
    for ccy, b in acct.items():
        assert b.available >= 0 and b.frozen >= -1e-12, (ccy, b)
    # frozen = exactly what the open orders hold, per currency
    held = {"USDT": 0.0, "BTC": 0.0}
    for ev in eng.open_orders():
        o = eng.order(ev.venue_order_id)
        assert o is not None and o.reserved >= 0
        held["USDT" if o.side is Side.BUY else "BTC"] += o.reserved
    for ccy in held:
        assert acct[ccy].frozen == pytest.approx(held[ccy], abs=1e-6)
    # fees charged once: the totals are the start plus every fill's money, nothing else
    spent = got = fees = 0.0
    base = 0.0
    for oid in list(eng._orders):  # every order the engine remembers (max_closed is large here)
        o = eng.order(oid)
        assert o is not None
        fees += o.fee
        if o.side is Side.BUY:
            spent += o.notional
            base += o.filled
        else:
            got += o.notional
            base -= o.filled
    totals = eng.balances()
    assert totals["USDT"] == pytest.approx(start["USDT"] - spent + got - fees, abs=1e-6)
    assert totals["BTC"] == pytest.approx(start["BTC"] + base, abs=1e-9)
    assert eng.positions()[SYM] == pytest.approx(base, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(
    actions=_actions,
    usdt=st.sampled_from([0.0, 50.0, 500.0, 1e5]),
    btc=st.sampled_from([0.0, 0.5, 3.0]),
)
def test_money_invariants_over_random_trading(actions: list[tuple], usdt: float, btc: float) -> None:  # type: ignore[type-arg]
    start = {"USDT": usdt, "BTC": btc}
    eng = engine(start)
    ids: list[str] = []
    ts = 1
    for a in actions:
        ts += 1
        if a[0] == "submit":
            _, side, kind, px, lots = a
            oid = f"o{len(ids)}"
            ids.append(oid)
            price = None if kind is OrderType.MARKET else round(px * 0.1, 1)
            eng.submit(order(oid, side, kind, price, round(lots * 0.001, 3)), ts)
        elif a[0] == "cancel" and ids:
            oid = ids[a[1] % len(ids)]
            o = eng.order(oid)
            held = 0.0 if o is None else o.reserved
            ccy = "USDT" if o is not None and o.side is Side.BUY else "BTC"
            before = eng.account()[ccy]
            ev = eng.cancel(oid, ts)
            if ev.kind == "update":  # cancelled: exactly what it held is available again
                after = eng.account()[ccy]
                assert after.available == pytest.approx(before.available + held, abs=1e-9)
                assert after.frozen == pytest.approx(before.frozen - held, abs=1e-9)
                assert o is not None and o.reserved == 0
        elif a[0] == "amend" and ids:
            _, i, px, lots = a
            eng.amend(ids[i % len(ids)], round(px * 0.1, 1), round(lots * 0.001, 3), ts)
        elif a[0] == "book":
            top = a[1]
            eng.set_book(SYM, book(round((top - 1) * 0.1, 1), -0.1), book(round((top + 1) * 0.1, 1), 0.1), ts)
        elif a[0] == "trade":
            eng.on_trade(SYM, round(a[1] * 0.1, 1), 0.7, a[2], ts)
        _check_invariants(eng, start)


# ----------------------------------------------------------------------------- persistence


def test_balances_and_frozen_funds_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite"
    start = {"USDT": 1000.0, "BTC": 2.0}
    eng = engine(start)
    store = PaperStore.open(path, eng)
    evs = eng.submit(order("b1", Side.BUY, OrderType.LIMIT, 99.0, 5.0), ts=1)  # rests
    evs += eng.submit(order("s1", Side.SELL, OrderType.MARKET, None, 1.0), ts=2)  # fills at 100.0
    store.save(evs, "s1")
    before = eng.account()
    store.close()

    eng2 = engine({"USDT": 1.0})  # a restart with other starting balances: the saved account wins
    store2 = PaperStore.open(path, eng2)
    after = eng2.account()
    for ccy in ("USDT", "BTC"):
        assert after[ccy].available == pytest.approx(before[ccy].available)
        assert after[ccy].frozen == pytest.approx(before[ccy].frozen)
    eng2.cancel("b1", ts=3)  # releases what it held after the restart too
    assert eng2.account()["USDT"].frozen == 0
    store2.close()


def test_a_new_account_starts_with_the_configured_balances(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite"
    PaperStore.open(path, engine({"USDT": 7.0})).close()
    eng = engine({"USDT": 9.0})  # nothing traded yet, but the account was made with 7
    PaperStore.open(path, eng).close()
    assert eng.balances()["USDT"] == 7.0


def test_an_account_from_before_balances_starts_with_the_configured_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A paper.sqlite written before balances existed (no balances, cash relative to 0): the starting
    balances apply, and its resting orders freeze their part of them."""
    path = tmp_path / "paper.sqlite"
    eng = engine({"USDT": 1e6, "BTC": 10.0})
    store = PaperStore.open(path, eng)
    store.save(eng.submit(order("b1", Side.BUY, OrderType.LIMIT, 99.0, 2.0), ts=1), "b1")
    store.close()
    db = sqlite3.connect(path)
    db.execute("DELETE FROM balances")
    db.execute("DELETE FROM meta WHERE key = 'balances'")
    db.commit()
    db.close()

    eng2 = engine({"USDT": 500.0})
    PaperStore.open(path, eng2).close()
    frozen = 198.0 * (1 + TAKER)
    assert eng2.account()["USDT"] == Balance(pytest.approx(500.0 - frozen), pytest.approx(frozen))
    eng3 = engine({"USDT": 500.0})
    PaperStore.open(path, eng3).close()  # the second open reads what the first one wrote
    assert eng3.account()["USDT"] == eng2.account()["USDT"]
    assert "paper account:" not in caplog.text

    db = sqlite3.connect(path)  # once more from before balances, now with too little to cover b1
    db.execute("DELETE FROM balances")
    db.execute("DELETE FROM meta WHERE key = 'balances'")
    db.commit()
    db.close()
    PaperStore.open(path, engine({"USDT": 100.0})).close()
    assert "paper account: open orders hold 198.198 USDT but the account has 100" in caplog.text
