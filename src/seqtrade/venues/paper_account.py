"""The paper account's money: per currency what is available and what open orders hold (frozen).

Pure: no I/O, no clock. Every balance change is a function of (account, order or fill) that returns the
new :class:`Balance` of each currency it touches, or a refusal; :class:`~seqtrade.venues.matching.MatchingEngine`
applies them. The model is a spot exchange's (OKX's cash account, docs/risk.md "The paper account"):

- A buy needs the quote currency: price x quantity plus the fee (at the taker rate, the higher one).
  A limit order freezes that for its unfilled part while it rests; a market order needs the cost of
  the visible depth it would sweep.
- A sell needs the base currency: its quantity (no short selling on spot), frozen while it rests.
- A fill spends frozen funds (the order's own reservation, never another's) and credits the other
  currency; fees are always in the quote currency and charged once, on the fill.
- A cancel, or the end of an order, releases exactly what the order still holds.

Swaps (margin, not coins) use the same currency -> (available, frozen) map: an order freezes margin in
the settlement currency and a fill moves realised PnL and fees into it; their rules are
:mod:`seqtrade.venues.paper_derivs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "Balance",
    "Account",
    "INSUFFICIENT_BALANCE",
    "base_currency",
    "quote_currency",
    "buy_reservation",
    "freeze",
    "release",
    "settle_fill",
    "totals",
]

# OKX's code for the same refusal (sCode 51008, "Insufficient {ccy} balance in account"); named in the
# reason so that a strategy written against the paper venue recognises it.
INSUFFICIENT_BALANCE = "51008"

_TOL = 1e-9  # relative slack for float sums compared with a balance


@dataclass(frozen=True, slots=True)
class Balance:
    """One currency: ``available`` (free to spend) and ``frozen`` (held by open orders)."""

    available: float = 0.0
    frozen: float = 0.0

    @property
    def total(self) -> float:
        return self.available + self.frozen


Account = Mapping[str, Balance]


def base_currency(symbol: str) -> str:
    """``BTC-USDT`` -> ``BTC``."""
    return symbol.split("-", 1)[0]


def quote_currency(symbol: str) -> str:
    """The quote currency of an OKX-style symbol: ``BTC-USDT`` and ``BTC-USDT-SWAP`` -> ``USDT``."""
    parts = symbol.split("-")
    return parts[1] if len(parts) > 1 else "QUOTE"


def buy_reservation(notional: float, fee_rate: float) -> float:
    """What a buy of ``notional`` (price x quantity) must hold: the notional and its fee (a rebate,
    a negative rate, is not counted on: the fill may be a taker's)."""
    return notional * (1.0 + max(fee_rate, 0.0))


def _fmt(x: float) -> str:
    return f"{x:.8g}"


def freeze(account: Account, currency: str, amount: float) -> dict[str, Balance] | str:
    """Move ``amount`` of ``currency`` from available to frozen, or why not (the refusal names the
    currency, what is needed and what is available)."""
    b = account.get(currency, Balance())
    if amount > b.available + _TOL * max(1.0, amount):
        return (
            f"insufficient {currency} balance (code {INSUFFICIENT_BALANCE}): needed {_fmt(amount)},"
            f" available {_fmt(max(b.available, 0.0))}"
        )
    amount = min(amount, b.available)
    return {currency: Balance(b.available - amount, b.frozen + amount)}


def release(account: Account, currency: str, amount: float) -> dict[str, Balance]:
    """Move ``amount`` (what an order held) of ``currency`` back from frozen to available."""
    b = account.get(currency, Balance())
    amount = min(amount, b.frozen)
    return {currency: Balance(b.available + amount, b.frozen - amount)}


def settle_fill(
    account: Account,
    base: str,
    quote: str,
    *,
    buy: bool,
    quantity: float,
    notional: float,
    fee: float,
    unfreeze: float,
    order_amount: float = 0.0,
) -> dict[str, Balance]:
    """The balances after one fill of ``quantity`` base for ``notional`` quote and ``fee`` (quote,
    + = cost), where the order gives up ``unfreeze`` of its reservation (quote for a buy, base for a sell;
    at least what the fill spends). The rest of ``unfreeze`` returns to available.

    ``order_amount``: a bound on what the order ever had to freeze. :func:`freeze` accepts an order
    that needs up to its slack more than is available and freezes what there is; the payer's balance
    that ends that little below zero is zero (the slack is forgiven on the fill that spends it)."""
    b, q = account.get(base, Balance()), account.get(quote, Balance())
    unfreeze_ = min(unfreeze, (q if buy else b).frozen)
    if buy:
        cost = notional + fee
        q2 = Balance(q.available + unfreeze_ - cost, q.frozen - unfreeze_)
        b2 = Balance(b.available + quantity, b.frozen)
    else:
        b2 = Balance(b.available + unfreeze_ - quantity, b.frozen - unfreeze_)
        q2 = Balance(q.available + notional - fee, q.frozen)
    slack = _TOL * max(1.0, order_amount)
    return {base: _no_dust(b2, 0.0 if buy else slack), quote: _no_dust(q2, slack if buy else 0.0)}


def _no_dust(b: Balance, slack: float = 0.0) -> Balance:
    """Float sums of the same fills in another order differ in the last bits: a balance a rounding
    error (or ``slack``) below zero is zero."""
    avail, frozen = b.available, b.frozen
    if -max(_TOL * max(1.0, abs(frozen)), slack) <= avail < 0:
        avail = 0.0
    if -_TOL < frozen < 0:
        frozen = 0.0
    return b if (avail, frozen) == (b.available, b.frozen) else Balance(avail, frozen)


def totals(account: Account) -> dict[str, float]:
    """Available + frozen per currency."""
    return {ccy: b.total for ccy, b in account.items()}
