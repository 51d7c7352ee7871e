"""Live versus replay (seqtrade.backtest_compare): reproduced, missed, invented, unfilled; price and time
differences; the 95 % bar and the sentence that says whether it is met."""

from __future__ import annotations

import json

import pytest

from seqtrade.backtest_compare import OrderFills, align, compare, report, report_text

MS = 1_000_000


def o(key: str, *fills: tuple[int, float, float], side: str = "buy") -> OrderFills:
    return OrderFills(key, "X", side, tuple(fills))


def test_each_outcome_with_its_differences():
    live = [
        o("a:1", (10 * MS, 100.0, 1.0)),
        o("a:2", (20 * MS, 101.0, 1.0), (21 * MS, 103.0, 1.0)),  # avg 102
        o("a:3", (30 * MS, 99.0, 2.0)),
        o("a:4"),
    ]
    replay = [
        o("a:1", (12 * MS, 100.0, 1.0)),
        o("a:2", (25 * MS, 102.5, 1.0)),
        o("a:4"),
        o("b:1", (40 * MS, 98.0, 0.5), side="sell"),
    ]
    c = compare(live, replay)
    got = {x.key: x for x in c.orders}
    assert [x.key for x in c.orders] == ["a:1", "a:2", "a:3", "a:4", "b:1"]
    assert got["a:1"].outcome == "reproduced" and got["a:1"].same_price
    assert got["a:1"].time_diff_ns == 2 * MS and got["a:1"].price_diff == 0.0
    assert got["a:2"].outcome == "reproduced" and not got["a:2"].same_price
    assert got["a:2"].price_diff == pytest.approx(0.5) and got["a:2"].qty_diff == -1.0
    assert got["a:2"].time_diff_ns == 5 * MS
    assert got["a:3"].outcome == "missed" and got["a:3"].live_qty == 2.0
    assert got["a:4"].outcome == "unfilled"
    assert got["b:1"].outcome == "invented" and got["b:1"].replay_price == 98.0
    assert (c.live_filled, c.reproduced, c.same_price, c.missed, c.invented, c.unfilled) == (3, 2, 1, 1, 1, 1)
    assert c.same_price_share == pytest.approx(1 / 3)
    assert not c.trusted
    assert c.summary() == (
        "live vs replay: 3 orders filled live; the replay reproduced 2, 1 at the same price "
        "(33.3 %; does NOT meet the 95 % bar); 1 missed, 1 invented"
    )


def test_the_95_percent_bar():
    live = [o(f"k{i}", (i, 100.0, 1.0)) for i in range(20)]
    replay = [o(f"k{i}", (i, 100.0, 1.0)) for i in range(19)]  # 19 of 20: exactly 95 %
    c = compare(live, replay)
    assert c.same_price_share == 0.95 and c.trusted
    assert "(95.0 %; meets the 95 % bar)" in c.summary()
    c = compare(live, replay[:18])
    assert not c.trusted and c.missed == 2


def test_nothing_filled_live_is_not_trusted_and_keys_must_be_unique():
    c = compare([o("x")], [o("x")])
    assert c.same_price_share is None and not c.trusted and "n/a" in c.summary()
    with pytest.raises(ValueError):
        compare([o("x"), o("x")], [])


def of(
    sid: str, sent_ms: int, price: float | None, *fills: tuple[int, float, float], side: str = "buy"
) -> OrderFills:
    return OrderFills(
        "vid", "X", side, tuple(fills), sid, "limit" if price else "market", price, 1.0, sent_ms * MS
    )


def test_align_keys_by_each_strategys_order_from_the_anchor_not_by_ids():
    # live: the strategy joined late; its first order (a buy at 100 sent at 1000 ms) is the replay's third
    live = [of("a", 1000, 100.0), of("a", 1200, None), of("a", 1400, 101.0), of("b", 900, 50.0)]
    replay = [
        of("a", 600, 100.0),  # the same order, but long before: not the anchor
        of("a", 800, None),
        of("a", 1001, 100.0),  # the anchor: same order, nearest in time
        of("a", 1201, None),
        of("a", 1401, 101.0),
        of("a", 1601, None),  # after the live session's last order: left out
        of("b", 901, 50.0),
    ]
    lk, rk, left_out = align(live, replay)
    assert [o.key for o in lk] == ["a:1", "a:2", "a:3", "b:1"]
    assert [(o.key, o.sent_ns // MS) for o in rk] == [
        ("a:1", 1001),
        ("a:2", 1201),
        ("a:3", 1401),
        ("b:1", 901),
    ]
    assert left_out == {"a": (2, 1), "b": (0, 0)}
    # the nearest of the same side and type, whatever its price (a price may differ between the runs);
    # a market order nearer still is another kind of order
    _, rk, left_out = align(
        [of("a", 1000, 99.0)], [of("a", 500, 99.0), of("a", 999, None), of("a", 990, 100.0)]
    )
    assert left_out == {"a": (2, 0)} and rk[0].sent_ns == 990 * MS
    # at equal distance, the same price first; with no order of the kind, the nearest of all
    _, rk, _ = align([of("a", 1000, 99.0)], [of("a", 990, 100.0), of("a", 1010, 99.0)])
    assert rk[0].sent_ns == 1010 * MS
    _, rk, left_out = align([of("a", 1000, 99.0, side="sell")], [of("a", 500, 99.0), of("a", 980, 99.0)])
    assert left_out == {"a": (1, 0)}


def test_the_report_has_percentiles_per_strategy_and_a_readable_summary():
    live = [
        of("a", 10, 100.0, (20 * MS, 100.0, 1.0)),
        of("a", 30, None, (31 * MS, 101.0, 1.0)),
        of("b", 10, 50.0, (40 * MS, 50.0, 1.0)),
    ]
    replay = [
        of("a", 11, 100.0, (22 * MS, 100.0, 1.0)),
        of("a", 32, None, (33 * MS, 101.5, 1.0)),
        of("b", 12, 50.0),
    ]
    r = report(live, replay)
    assert (r["live_filled"], r["reproduced"], r["same_price"], r["missed"], r["invented"]) == (3, 2, 1, 1, 0)
    assert r["same_price_pct"] == pytest.approx(100 / 3, abs=1e-3) and r["meets_bar"] is False
    assert r["price_diff"] == {"n": 2, "mean": 0.25, "p50": 0.0, "p90": 0.5, "p99": 0.5, "max": 0.5}
    assert r["fill_time_diff_ms"]["p50"] == 2.0 and r["sent_time_diff_ms"]["max"] == 2.0
    a, b = r["strategies"]["a"], r["strategies"]["b"]
    assert (a["reproduced_pct"], a["same_price_pct"], b["missed"], b["same_price_pct"]) == (
        100.0,
        50.0,
        1,
        0.0,
    )
    assert [o["outcome"] for o in r["orders"]] == ["reproduced", "reproduced", "missed"]
    text = report_text(r)
    assert text.splitlines()[0] == r["summary"] and "does NOT meet the 95 % bar" in text
    assert "  a: 2 orders live, 2 in the replay (0 before and 0 after the live session, left out)" in text
    assert "|price diff| p50 0, p90 0.5, p99 0.5, max 0.5 (mean +0.25)" in text
    assert json.loads(json.dumps(r)) == r  # JSON as it is
