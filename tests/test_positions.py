"""Position maths (seqtrade.positions), shared by the server's accounts and the client."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seqtrade.positions import FeeLedger, apply_fill


def test_average_cost_realised_pnl_and_flips() -> None:
    pos, avg, pnl = apply_fill(0.0, 0.0, "buy", 2.0, 100.0)
    assert (pos, avg, pnl) == (2.0, 100.0, 0.0)
    pos, avg, pnl = apply_fill(pos, avg, "buy", 2.0, 110.0)
    assert (pos, avg, pnl) == (4.0, 105.0, 0.0)
    pos, avg, pnl = apply_fill(pos, avg, "sell", 1.0, 115.0)  # realises (115 - 105) x 1, the average stays
    assert (pos, avg, pnl) == (3.0, 105.0, 10.0)
    pos, avg, pnl = apply_fill(pos, avg, "sell", 5.0, 100.0)  # closes 3 at -5 each, opens 2 short at 100
    assert (pos, avg, pnl) == (-2.0, 100.0, -15.0)
    pos, avg, pnl = apply_fill(pos, avg, "buy", 2.0, 90.0)  # the short gains 10 each; flat: no average
    assert (pos, avg, pnl) == (0.0, 0.0, 20.0)


def test_fee_ledger_gives_each_reports_change_of_the_cumulative_fee() -> None:
    fees = FeeLedger()
    assert fees.change(("s1", "a"), 0.1) == pytest.approx(0.1)
    assert fees.change(("s1", "a"), 0.25) == pytest.approx(0.15)
    assert fees.change(("s1", "a"), 0.25) == 0.0  # a refused cancel repeats the fee: nothing added
    assert fees.change(("s1", "a"), 0.2) == pytest.approx(-0.05)  # a maker rebate lowers it
    assert fees.change(("s2", "a"), 0.3) == pytest.approx(0.3)  # per order key


_FILLS = st.lists(
    st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 50), st.integers(50, 150)), max_size=30
)


@given(fills=_FILLS)
def test_realised_plus_open_pnl_is_the_cash_flow(fills: list[tuple[str, int, int]]) -> None:
    """Whatever the fills, realised PnL + the open position valued against its average price equals
    the cash that changed hands valued the same way: no fill is lost or counted twice."""
    pos = avg = realised = cash = 0.0
    for side, qty, price in fills:
        pos, avg, pnl = apply_fill(pos, avg, side, float(qty), float(price))
        realised += pnl
        cash += qty * price * (-1 if side == "buy" else 1)
    assert pos == pytest.approx(sum(q if s == "buy" else -q for s, q, _ in fills))
    mark = 100.0
    assert realised + pos * (mark - avg) == pytest.approx(cash + pos * mark, abs=1e-6)
