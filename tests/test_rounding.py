"""Order rounding on the hot path: the answers remembered for repeated sizes and prices are the exact
(``Decimal``) rounding's, whatever the order of calls, the memory's size or its emptying."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrade.models import Side
from seqtrade.server import orders
from seqtrade.server.orders import round_price, round_quantity
from seqtrade.venues.base import Instrument

STEPS = [0.1, 0.01, 0.001, 1e-05, 0.5, 1.0, 5.0, 0.0001, 1e-08, 0.25]
values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e9, allow_nan=False, allow_infinity=False),
    st.integers(0, 10**6).map(lambda n: n / 1000),  # on or near a grid: the snapping case
    st.sampled_from([0.0, -0.0, 0.3, 0.1 + 0.2, 1e-9, 5e-324, 99999.99999999]),
)


def exact_down(value: float, step: float) -> Decimal:
    """The rounding rule written out independently: floor(value / step) steps, snapped within 1e-9."""
    q = Decimal(repr(value)) / Decimal(repr(step))
    r = q.to_integral_value()
    return r if abs(q - r) <= Decimal("1e-9") else q.to_integral_value(rounding="ROUND_FLOOR")


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(values, st.sampled_from(STEPS), st.sampled_from(STEPS), st.booleans()), max_size=30)
)
def test_remembered_answers_are_the_exact_ones(calls: list[tuple[float, float, float, bool]]) -> None:
    for value, tick, lot, buy in calls * 2:  # every call twice: the second answer comes from memory
        inst = Instrument("X-Y", tick, lot, lot)
        side = Side.BUY if buy else Side.SELL
        assert_same(round_price(value, inst, side), orders._round_price(value, tick, side))
        assert_same(round_quantity(value, inst), orders._round_quantity(value, lot))
        assert round_quantity(value, inst) == float(exact_down(value, lot) * Decimal(repr(lot)))


def assert_same(a: float, b: float) -> None:
    assert repr(a) == repr(b)  # the same float, sign of zero included


def test_signed_zeros_and_a_full_memory() -> None:
    inst = Instrument("X-Y", 0.1, 0.001, 0.001)
    assert repr(round_quantity(-0.0, inst)) == repr(orders._round_quantity(-0.0, 0.001))
    assert repr(round_quantity(0.0, inst)) == repr(orders._round_quantity(0.0, 0.001))
    for i in range(orders._ROUNDED_MAX + 10):  # past the bound: emptied, still right
        v = i / 7
        assert round_quantity(v, inst) == orders._round_quantity(v, 0.001)
        assert len(orders._ROUNDED) <= orders._ROUNDED_MAX
    assert round_quantity(0.1 + 0.2, inst) == 0.3 and round_price(0.1 + 0.2, inst, Side.SELL) == 0.3
    assert round_price(100.05, inst, Side.BUY) == 100.0 and round_price(100.05, inst, Side.SELL) == 100.1
