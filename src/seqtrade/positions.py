"""Position maths, once for the server's accounts and the client's positions: average cost, realised
PnL and fee deltas.

Pure: numbers in, numbers out. The average-cost method: a fill that adds to a position moves the
average entry price; one that reduces it realises (fill price - average) x quantity, long or short;
one that flips it closes the old side and opens the rest at the fill price. Realised PnL is gross of
fees.

Fees: a report carries the order's *cumulative* fee, so the fee a report brings is the change since
the order's previous report (negative for a maker rebate). :class:`FeeLedger` remembers the last
cumulative fee of each order while it is open: :meth:`FeeLedger.close` drops it when the order
closes, so the ledger holds one number per *open* order, whatever the history.
"""

from __future__ import annotations

from collections.abc import Hashable

from .instruments import Instrument, realised_pnl

__all__ = ["FLAT", "apply_fill", "apply_fill_to", "FeeLedger"]

FLAT = 1e-12  # a position this close to zero is flat


def apply_fill(
    position: float, avg_price: float, side: str, quantity: float, price: float
) -> tuple[float, float, float]:
    """One fill of ``quantity`` (> 0) at ``price`` on ``side`` ("buy" or "sell").

    Returns (new position, new average entry price, realised PnL of this fill). Position is in base
    units, + long; a flat position has average price 0.
    """
    signed = quantity if side == "buy" else -quantity
    if position == 0 or (position > 0) == (signed > 0):
        total = abs(position) + quantity
        return position + signed, (abs(position) * avg_price + quantity * price) / total, 0.0
    closed = min(quantity, abs(position))
    realised = closed * (price - avg_price) * (1.0 if position > 0 else -1.0)
    after = position + signed
    if abs(after) <= FLAT:
        return 0.0, 0.0, realised
    if (after > 0) != (position > 0):
        return after, price, realised  # flipped: the rest is a new position at this price
    return after, avg_price, realised


class FeeLedger:
    """The cumulative fee seen so far per order; :meth:`change` turns a report's fee into its delta."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[Hashable, float] = {}

    def change(self, order_key: Hashable, cumulative_fee: float) -> float:
        """The fee this report adds (cumulative - previous), remembered for the next report.

        Reports of one order must come in order. The client keeps every order's fee this way; the
        server calls :meth:`close` for an order's final report instead.
        """
        delta = cumulative_fee - self._seen.get(order_key, 0.0)
        self._seen[order_key] = cumulative_fee
        return delta

    def close(self, order_key: Hashable, cumulative_fee: float, new_fill: bool) -> float:
        """The fee a *final* report (filled, cancelled, rejected) adds, and forget the order.

        A closed order's fee is final. An order not in the ledger is one that closed before (a later
        report on it, such as a refused cancel, repeats its cumulative fee and no new fill): it adds
        nothing. The exception is a first report that is already final and brings a fill (an order
        filled before any report on it was seen): its whole fee is new.
        """
        prev = self._seen.pop(order_key, None)
        if prev is None:
            return cumulative_fee if new_fill else 0.0
        return cumulative_fee - prev

    def open_fees(self) -> dict[Hashable, float]:
        """The cumulative fee of every order in the ledger (for a snapshot)."""
        return dict(self._seen)

    def restore(self, fees: dict[Hashable, float]) -> None:
        self._seen = dict(fees)

    def __len__(self) -> int:
        return len(self._seen)


def apply_fill_to(
    inst: Instrument, position: float, avg_price: float, side: str, quantity: float, price: float
) -> tuple[float, float, float]:
    """:func:`apply_fill` for an instrument of any kind: quantities in its unit (contracts for swaps
    and futures), realised PnL in its settlement currency (:func:`seqtrade.instruments.realised_pnl`:
    ``x contract_value``, and the inverse formula for inverse contracts, whose average entry price is
    the contract-weighted harmonic mean)."""
    if not inst.inverse and inst.contract_value == 1.0:
        return apply_fill(position, avg_price, side, quantity, price)
    signed = quantity if side == "buy" else -quantity
    if position == 0 or (position > 0) == (signed > 0):
        total = abs(position) + quantity
        if inst.inverse:
            avg = total / (abs(position) / avg_price + quantity / price) if position else price
        else:
            avg = (abs(position) * avg_price + quantity * price) / total
        return position + signed, avg, 0.0
    closed = min(quantity, abs(position))
    realised = realised_pnl(inst, closed if position > 0 else -closed, avg_price, price)
    after = position + signed
    if abs(after) <= FLAT:
        return 0.0, 0.0, realised
    if (after > 0) != (position > 0):
        return after, price, realised
    return after, avg_price, realised
