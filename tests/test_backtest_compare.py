"""Live versus replay (seqtrade.backtest_compare): reproduced, missed, invented, unfilled; price and time
differences; the 95 % bar and the sentence that says whether it is met."""

from __future__ import annotations

import pytest

from seqtrade.backtest_compare import OrderFills, compare

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
