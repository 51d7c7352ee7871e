"""Instruments of every kind and the one rule for their units (docs/protocol.md, "Instruments and units").

Pure: no I/O. The server, the venues and the client share these facts and formulas, so that a
quantity, a notional or a PnL means the same thing everywhere.

The rule:

- **Quantities** (orders, reports, positions, fills, risk limits on size, account events) are in the
  instrument's order-size unit: the **base currency for spot** (``BTC`` for ``BTC-USDT``) and
  **contracts for swaps and futures** (one ``BTC-USDT-SWAP`` contract is ``contract_value`` = 0.01
  BTC; one ``BTC-USD-SWAP`` contract is 100 USD). Contracts may be fractional when the lot is below 1.
  Nothing converts silently between the two.
- **Prices** are in the quote currency (USDT for linear instruments) or in USD (inverse instruments).
- **Money** (PnL, fees, funding, margin) is in the instrument's **settlement currency**
  (:func:`money_currency`): USDT for linear USDT swaps, BTC for ``BTC-USD-SWAP``, the quote currency
  for spot. Every money figure travels with its currency.
- **Notional** (:func:`notional`): linear ``quantity * contract_value * price`` in the quote
  currency; inverse ``quantity * contract_value`` in USD, whatever the price.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "InstrumentKind",
    "Instrument",
    "kind_of",
    "is_derivative",
    "money_currency",
    "notional_currency",
    "notional",
    "unrealised_pnl",
    "realised_pnl",
    "fee_amount",
    "instrument_to_map",
    "instrument_from_map",
]


class InstrumentKind(StrEnum):
    """What an instrument is. A ``StrEnum``: ``inst.kind == "swap"`` works."""

    SPOT = "spot"
    """``"spot"``: coins for coins; quantities in the base currency."""
    SWAP = "swap"
    """``"swap"``: a perpetual swap (``BTC-USDT-SWAP``, ``BTC-USD-SWAP``); quantities in contracts."""
    FUTURES = "futures"
    """``"futures"``: a dated future (``BTC-USD-261225``); quantities in contracts."""


def kind_of(symbol: str) -> InstrumentKind:
    """The kind from the OKX instrument id's shape: ``...-SWAP`` is a swap, a last part of six digits
    (``YYMMDD``) a dated future, anything else spot. ``BTC-USD_UM-SWAP`` is a swap too."""
    parts = symbol.split("-")
    if len(parts) >= 3 and parts[-1] == "SWAP":
        return InstrumentKind.SWAP
    if len(parts) >= 3 and len(parts[-1]) == 6 and parts[-1].isdigit():
        return InstrumentKind.FUTURES
    return InstrumentKind.SPOT


def is_derivative(symbol: str) -> bool:
    """True for swaps and futures (they have positions, margin, leverage, funding)."""
    return kind_of(symbol) is not InstrumentKind.SPOT


@dataclass(frozen=True, slots=True)
class Instrument:
    """The facts of one instrument, as the venue gives them (and the welcome carries them).

    Attributes:
        symbol: The instrument id, e.g. ``"BTC-USDT-SWAP"``.
        tick_size: Price increment.
        lot_size: Quantity increment, in the instrument's unit (base currency or contracts).
        min_size: Smallest order quantity, in the same unit.
        code: The venue's numeric code (OKX ``instIdCode``); None where there is none. Not on the wire.
        contract_value: The size of one contract (OKX ``ctVal``) in ``contract_currency``: 0.01 (BTC)
            for ``BTC-USDT-SWAP``, 100 (USD) for ``BTC-USD-SWAP``; 1.0 for spot.
        kind: ``spot``, ``swap`` or ``futures``.
        contract_currency: The currency of ``contract_value`` (``"BTC"`` linear, ``"USD"`` inverse;
            the base currency for spot).
        settle_currency: The currency of PnL, fees, funding and margin (``"USDT"``, ``"BTC"`` for an
            inverse swap; the quote currency for spot).
        base_currency: ``"BTC"`` for all of ``BTC-USDT``, ``BTC-USDT-SWAP`` and ``BTC-USD-SWAP``.
        quote_currency: The currency prices are in (``"USDT"``; ``"USD"`` for inverse instruments).
        inverse: True for coin-margined (inverse) contracts: a contract is worth a fixed USD amount.
        max_leverage: The venue's maximum leverage for this instrument (0.0: none, spot).
        expiry_ms: Delivery time of a dated future, ms since the epoch (0: none).
    """

    symbol: str
    tick_size: float
    lot_size: float
    min_size: float
    code: int | None = None
    contract_value: float = 1.0
    kind: InstrumentKind = InstrumentKind.SPOT
    contract_currency: str = ""
    settle_currency: str = ""
    base_currency: str = ""
    quote_currency: str = ""
    inverse: bool = False
    max_leverage: float = 0.0
    expiry_ms: int = 0

    @property
    def is_derivative(self) -> bool:
        """True for swaps and futures."""
        return self.kind is not InstrumentKind.SPOT

    @property
    def unit(self) -> str:
        """The unit of quantities: ``"contracts"`` for derivatives, else the base currency."""
        return "contracts" if self.is_derivative else (self.base_currency or "base")


def money_currency(inst: Instrument) -> str:
    """The currency of this instrument's PnL, fees and funding: the settlement currency (the quote
    currency for spot); "" when the venue did not say."""
    if inst.settle_currency:
        return inst.settle_currency
    if inst.quote_currency:
        return inst.quote_currency
    parts = inst.symbol.split("-")
    return parts[1] if len(parts) >= 2 and not inst.is_derivative else ""


def notional_currency(inst: Instrument) -> str:
    """The currency of :func:`notional`: USD for inverse contracts, else the quote currency."""
    if inst.inverse:
        return "USD"
    if inst.quote_currency:
        return inst.quote_currency
    parts = inst.symbol.split("-")
    return parts[1] if len(parts) >= 2 else ""


def notional(inst: Instrument, quantity: float, price: float) -> float:
    """The value of ``quantity`` (in the instrument's unit) at ``price``, positive for either side.

    Linear (and spot): ``|quantity| * contract_value * price`` in the quote currency. Inverse:
    ``|quantity| * contract_value`` in USD (a contract is a fixed USD amount; ``price`` is not used).
    """
    q = abs(quantity)
    if inst.inverse:
        return q * inst.contract_value
    return q * inst.contract_value * price


def unrealised_pnl(inst: Instrument, position: float, avg_price: float, mark_price: float) -> float:
    """PnL of a signed ``position`` (+ long, - short, in the instrument's unit) opened at ``avg_price``
    if closed at ``mark_price``, in the settlement currency. Linear: ``(mark - avg) * pos * ctVal``;
    inverse: ``(1/avg - 1/mark) * pos * ctVal`` (coins). 0.0 without a position or a price."""
    if not position or avg_price <= 0 or mark_price <= 0:
        return 0.0
    if inst.inverse:
        return (1.0 / avg_price - 1.0 / mark_price) * position * inst.contract_value
    return (mark_price - avg_price) * position * inst.contract_value


def realised_pnl(inst: Instrument, closed: float, avg_price: float, fill_price: float) -> float:
    """PnL of closing ``closed`` (signed like the position it closes: + when a long is reduced) opened
    at ``avg_price`` by a fill at ``fill_price``, in the settlement currency, before fees."""
    return unrealised_pnl(inst, closed, avg_price, fill_price)


def fee_amount(inst: Instrument, quantity: float, price: float, rate: float) -> float:
    """The fee of a fill of ``quantity`` at ``price`` at fee ``rate`` (a fraction of the notional,
    positive = charged), in the settlement currency. Linear: ``rate * qty * ctVal * price``;
    inverse: ``rate * qty * ctVal / price`` (coins)."""
    q = abs(quantity)
    if inst.inverse:
        return rate * q * inst.contract_value / price if price > 0 else 0.0
    return rate * q * inst.contract_value * price


# --------------------------------------------------------------------------- wire form (the welcome)


def instrument_to_map(inst: Instrument) -> dict[str, Any]:
    """The instrument's facts as the welcome carries them (docs/protocol.md); ``code`` stays home."""
    return {
        "symbol": inst.symbol,
        "kind": str(inst.kind),
        "tick_size": float(inst.tick_size),
        "lot_size": float(inst.lot_size),
        "min_size": float(inst.min_size),
        "contract_value": float(inst.contract_value),
        "contract_currency": inst.contract_currency,
        "settle_currency": inst.settle_currency,
        "base_currency": inst.base_currency,
        "quote_currency": inst.quote_currency,
        "inverse": bool(inst.inverse),
        "max_leverage": float(inst.max_leverage),
        "expiry_ms": int(inst.expiry_ms),
    }


def instrument_from_map(d: dict[str, Any]) -> Instrument:
    """The instrument in one map of the welcome's ``instruments`` (unknown keys ignored; a kind this
    client does not know is read from the symbol)."""
    symbol = str(d["symbol"])
    try:
        kind = InstrumentKind(d.get("kind", ""))
    except ValueError:
        kind = kind_of(symbol)
    return Instrument(
        symbol=symbol,
        tick_size=float(d["tick_size"]),
        lot_size=float(d["lot_size"]),
        min_size=float(d["min_size"]),
        contract_value=float(d.get("contract_value", 1.0)),
        kind=kind,
        contract_currency=str(d.get("contract_currency", "")),
        settle_currency=str(d.get("settle_currency", "")),
        base_currency=str(d.get("base_currency", "")),
        quote_currency=str(d.get("quote_currency", "")),
        inverse=bool(d.get("inverse", False)),
        max_leverage=float(d.get("max_leverage", 0.0)),
        expiry_ms=int(d.get("expiry_ms", 0)),
    )
