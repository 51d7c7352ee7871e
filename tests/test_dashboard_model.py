"""The dashboard's pure rules (seqtrade.server.dashboard.model): rules of rejections, histograms, bounded
series, reconciliation, journal filters and who may look."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from seqtrade.config import RiskConfig, RiskLimits
from seqtrade.server.accounts import Accounts
from seqtrade.server.dashboard.model import (
    BOUNDS_MS,
    RULES,
    Histogram,
    QueryError,
    Series,
    bind_refusal,
    is_loopback,
    parse_query,
    reconciliation,
    rule_of,
    token_ok,
)
from seqtrade.server.risk import OrderTerms, RiskGate, TradingState


def refusal(
    limits: RiskLimits, qty: float = 1.0, price: float | None = 100.0, state: TradingState | None = None
) -> str:
    """A real refusal from the risk gate (its wording is what the dashboard classifies)."""
    gate = RiskGate(RiskConfig(**{k: getattr(limits, k) for k in vars(limits)}), positions=Accounts(),
                    mid=lambda s: 100.0, instrument=lambda s: None, clock=lambda: 0.0)  # fmt: skip
    if state is not None:
        gate.set_state(state)
    msg = gate.refusal(OrderTerms("s1", "c1", "BTC-USDT", "buy", price, qty, qty, False))
    assert msg is not None
    return msg


@pytest.mark.parametrize(
    ("limits", "qty", "price", "rule"),
    [
        (RiskLimits(max_order_quantity=0.5), 1.0, 100.0, "max_order_quantity"),
        (RiskLimits(max_order_notional=50.0), 1.0, 100.0, "max_order_notional"),
        (RiskLimits(price_band_bps=10.0), 1.0, 120.0, "price_band_bps"),
        (RiskLimits(max_position=0.5), 1.0, 100.0, "max_position"),
        (RiskLimits(max_account_position=0.5), 1.0, 100.0, "max_account_position"),
    ],
)
def test_the_rule_of_a_real_risk_refusal(limits, qty, price, rule):
    assert rule_of(refusal(limits, qty, price)) == rule


def test_trading_states_venue_and_validation_rejections():
    assert rule_of(refusal(RiskLimits(), state=TradingState.HALTED)) == "halted"
    assert rule_of(refusal(RiskLimits(), state=TradingState.REDUCING)) == "reducing"
    assert rule_of("insufficient BTC balance (code 51008): needed 1000000, available 1") == "venue"
    assert rule_of("unknown symbol 'DOGE-USDT'") == "other"
    assert rule_of("max_nonsense (risk): x") == "other"  # only the gate's rules count as rules
    assert set(RULES) >= {"max_orders_per_window", "max_cancels_per_window", "max_open_orders"}


def test_histogram_buckets_quantiles_and_prometheus_form():
    h = Histogram()
    assert h.quantile(0.5) is None and h.to_json()["p50_ms"] is None
    for v in (0.1, 0.25, 0.3, 3.0, 3.0, 3.0, 20000.0, -1.0, math.nan):
        h.add(v)
    assert h.n == 8  # NaN is not a sample; a negative one (clocks) counts as 0
    assert h.counts[0] == 3  # -1 -> 0, 0.1, 0.25 (bounds are inclusive)
    assert h.counts[1] == 1 and h.counts[BOUNDS_MS.index(5.0)] == 3 and h.counts[-1] == 1
    assert h.quantile(0.5) == 0.5 and h.quantile(0.6) == 5.0 and math.isinf(h.quantile(1.0) or 0.0)
    j = h.to_json()
    assert j["count"] == 8 and j["p99_ms"] is None  # above the last bound: unknown, not a number
    cum = h.cumulative()
    assert cum[0] == ("0.00025", 3) and cum[-1] == ("+Inf", 8)
    assert [n for _, n in cum] == sorted(n for _, n in cum)


def test_series_is_bounded_keeps_the_newest_point_and_the_fills():
    s = Series(limit=100)
    for i in range(10_000):
        s.add(float(i), float(i), 1 if i % 1000 == 0 else 0)
    assert len(s.t) <= 100
    assert s.t[-1] == 9999.0 and s.v[-1] == 9999.0
    assert s.t == sorted(s.t)
    assert {t for t, m in zip(s.t, s.marks, strict=True) if m} == {float(i) for i in range(0, 10_000, 1000)}
    s.add(5.0, 1.0)  # a clock step back: the point is kept at the last time, not before it
    assert s.t[-1] == 9999.0


def test_reconciliation_rows():
    rows = reconciliation({"BTC-USDT": 1.5, "ETH-USDT": 0.0}, {"BTC-USDT": 0.5, "SOL-USDT": 2.0})
    by = {r["symbol"]: r for r in rows}
    assert by["BTC-USDT"] == {
        "symbol": "BTC-USDT",
        "venue": 1.5,
        "strategies": 0.5,
        "external": 1.0,
        "differs": True,
    }
    assert by["ETH-USDT"]["differs"] is False
    assert by["SOL-USDT"]["external"] == -2.0
    blind = reconciliation(None, {"BTC-USDT": 0.5})
    assert blind == [
        {"symbol": "BTC-USDT", "venue": None, "strategies": 0.5, "external": None, "differs": False}
    ]


def test_journal_queries_are_read_strictly():
    q = parse_query({"strategy": "mom1", "symbol": "BTC-USDT", "since": "1000", "until": "2000", "page": "3",
                     "per_page": "20"})  # fmt: skip
    assert (q.strategy, q.symbol, q.since_ms, q.until_ms, q.page, q.per_page, q.offset) == (
        "mom1", "BTC-USDT", 1000, 2000, 3, 20, 40)  # fmt: skip
    assert parse_query({}).page == 1 and parse_query({}).per_page == 50
    for bad, key in [({"page": "0"}, "page"), ({"per_page": "501"}, "per_page"), ({"since": "x"}, "since"),
                     ({"strategy": "a b"}, "strategy"), ({"since": "5", "until": "5"}, "until"),
                     ({"symbol": "'; DROP"}, "symbol")]:  # fmt: skip
        with pytest.raises(QueryError, match=f"^{key}:"):
            parse_query(bad)


def test_who_may_look():
    assert token_ok(None, "") and token_ok("anything", "")
    assert token_ok("s3cret", "s3cret") and not token_ok("s3cre", "s3cret") and not token_ok(None, "s3cret")
    assert (
        is_loopback("127.0.0.1")
        and is_loopback("::1")
        and is_loopback("localhost")
        and is_loopback("127.0.0.2")
    )
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.2") and not is_loopback("example.com")
    assert bind_refusal("127.0.0.1", "", "T") is None and bind_refusal("0.0.0.0", "tok", "T") is None
    why = bind_refusal("0.0.0.0", "", "SEQTRADE_DASHBOARD_TOKEN")
    assert why is not None and "SEQTRADE_DASHBOARD_TOKEN" in why and why.startswith("dashboard.host:")


def test_the_rules_module_imports_no_io():
    from .test_layout import IO_LIBS, loaded_after_import

    loaded = loaded_after_import("seqtrade.server.dashboard.model")
    assert not [m for m in (*IO_LIBS, "starlette", "hypercorn") if m in loaded]


def test_the_dashboard_section_of_the_config():
    from seqtrade.config import load_config, parse_config
    from seqtrade.errors import ConfigError

    base = '[venue]\nkind = "paper"\nsymbols = ["BTC-USDT"]\n[dashboard]\n'
    d = parse_config(base + "enabled = true\n").dashboard
    assert (d.enabled, d.host, d.port, d.token_env, d.interval) == (
        True,
        "127.0.0.1",
        8321,
        "SEQTRADE_DASHBOARD_TOKEN",
        0.25,
    )
    assert parse_config(base).dashboard.enabled is False  # off unless asked
    assert load_config(
        Path(__file__).resolve().parents[1] / "config.toml"
    ).dashboard.enabled  # on in the shipped one
    for bad, key in [("port = 70000", "dashboard.port"), ('token_env = "not a name"', "dashboard.token_env"),
                     ("interval = 0", "dashboard.interval"), ('host = ""', "dashboard.host"),
                     ("colour = 1", "dashboard.colour")]:  # fmt: skip
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_config(base + bad + "\n")


def test_series_hands_over_what_was_added_since_the_last_time():
    s = Series(limit=10)
    assert s.take_new() == {"t": [], "v": [], "marks": []}
    s.add(1.0, 10.0, 1)
    s.add(2.0, 11.0)
    assert s.take_new() == {"t": [1.0, 2.0], "v": [10.0, 11.0], "marks": [1, 0]}
    assert s.take_new() == {"t": [], "v": [], "marks": []}
    for i in range(25):  # more than it keeps: the reader is told to take the whole series
        s.add(3.0 + i, float(i))
    assert s.take_new() is None
    s.add(100.0, 1.0)
    assert s.take_new() == {"t": [100.0], "v": [1.0], "marks": [0]}
    assert len(s.t) <= 10 and s.t[-1] == 100.0
