"""The paper exchange's derivatives: perpetual swaps on margin, as pure rules.

Pure: no I/O, no clock (every call takes the time or the prices it needs), no trio. The paper venue
(:mod:`seqtrade.venues.paper`) and its matching engine call these; the tests check them against
hand-computed cases.

The model, in short (OKX's formulas where OKX publishes them):

- **Units.** Quantities are contracts (signed for a net position: + long, - short). One contract is
  ``contract_value`` of the base currency for a linear swap (0.01 BTC for BTC-USDT-SWAP) and
  ``contract_value`` USD for an inverse one (100 USD for BTC-USD-SWAP). Money (PnL, fees, funding,
  margin) is in the **settlement currency**: the quote (USDT) for linear, the base coin (BTC) for
  inverse.
- **Position value** at a price: linear ``|q| x ctVal x px`` (USDT); inverse ``|q| x ctVal / px`` (BTC).
- **Net mode only.** One position per symbol; a fill against it closes first (realising PnL at the
  position's average price) and opens the rest at the fill price. The average of an inverse position
  is the contract-weighted harmonic mean of its fill prices (so that its PnL formula holds).
- **PnL.** Unrealised at mark: linear ``(mark - avg) x q x ctVal``, inverse
  ``(1/avg - 1/mark) x q x ctVal``; realised on a closing fill the same with the fill price.
- **Fees** in the settlement currency: linear ``rate x contracts x ctVal x px``, inverse
  ``rate x contracts x ctVal / px``; + = cost (a negative rate is a rebate).
- **Margin.** Initial margin = position value at mark / leverage; maintenance margin = position value
  at mark x ``maintenance_margin_rate``. *Cross*: one pool per settlement currency, equity = wallet
  cash + unrealised PnL of its cross positions. *Isolated*: each position holds its own margin
  (the initial margin of what it opened, taken from the cash), equity = that margin + its unrealised
  PnL.
- **Liquidation.** When equity falls below the maintenance margin (margin ratio under 1): cross
  liquidates every cross position of that currency, isolated the one position, at the mark price;
  a liquidation fee (``liquidation_fee_rate`` x position value) is charged. A loss beyond what the
  account holds is not charged (the exchange's insurance fund takes it): cash never goes below zero.
- **Funding.** At fixed times (every ``interval_ms`` since the epoch, as OKX settles at 00:00, 08:00
  and 16:00 UTC), each open position pays or receives ``position value at mark x rate``: a long pays
  when the rate is positive, a short receives. The rate comes from :func:`funding_rate`, a seeded,
  repeatable model (a base rate and a bounded random part), clamped to OKX's +-0.375 %. Which times
  are due at a look (every one missed after a stall or a stop, each at its own rate) is
  :mod:`seqtrade.venues.paper_funding`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..instruments import Instrument, InstrumentKind, fee_amount, notional
from ..instruments import unrealised_pnl as instrument_pnl

__all__ = [
    "AccountChange",
    "ContractSpec",
    "DerivPosition",
    "Fill",
    "Liquidation",
    "MAX_FUNDING_RATE",
    "apply_fill",
    "contracts_for",
    "fee",
    "funding_payment",
    "funding_rate",
    "initial_margin",
    "liquidate",
    "liquidation_price",
    "maintenance_margin",
    "margin_ratio",
    "next_funding_time",
    "position_value",
    "to_liquidate",
    "unrealised_pnl",
]

MarginMode = Literal["cross", "isolated"]

# OKX's bound on a funding rate (maxFundingRate / minFundingRate of BTC swaps).
MAX_FUNDING_RATE = 0.00375

_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """One swap as the paper account trades it: the instrument's facts and the account's terms."""

    symbol: str
    contract_value: float  # base coins (linear) or USD (inverse) per contract
    lot_size: float  # contracts
    inverse: bool = False
    settle_currency: str = "USDT"
    leverage: float = 10.0
    margin_mode: MarginMode = "cross"
    maintenance_margin_rate: float = 0.004  # of the position value
    liquidation_fee_rate: float = 0.0005  # of the position value, charged on liquidation
    # The instrument's facts as seqtrade.instruments' formulas (notional, PnL, fee) take them
    instrument: Instrument = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        inst = Instrument(self.symbol, 0.0, self.lot_size, self.lot_size, contract_value=self.contract_value,
                          kind=InstrumentKind.SWAP, settle_currency=self.settle_currency, inverse=self.inverse)  # fmt: skip
        object.__setattr__(self, "instrument", inst)


@dataclass(slots=True)
class DerivPosition:
    """A net position of one symbol and what it has cost and earned since the account began."""

    symbol: str
    quantity: float = 0.0  # contracts, + long / - short
    avg_price: float = 0.0  # 0 when flat
    margin: float = 0.0  # isolated only: the margin it holds (settlement currency)
    realized_pnl: float = 0.0  # closing fills and liquidations, before fees and funding
    fees: float = 0.0  # + = paid
    funding: float = 0.0  # + = received


@dataclass(frozen=True, slots=True)
class Fill:
    """What one fill did to a position and to the cash of its settlement currency."""

    closed: float  # contracts closed (>= 0)
    opened: float  # contracts opened (>= 0)
    realized_pnl: float
    fee: float  # + = cost
    cash_change: float  # realised PnL - fee, minus margin moved into (plus out of) an isolated position


@dataclass(frozen=True, slots=True)
class Liquidation:
    """A forced close: ``quantity`` is the signed change of the position (minus what it was)."""

    symbol: str
    quantity: float
    price: float  # the mark price it was closed at
    realized_pnl: float
    fee: float  # the liquidation fee, + = cost (what the account could pay of it)
    cash_change: float  # what the cash moved by (never below zero after it)


@dataclass(frozen=True, slots=True)
class AccountChange:
    """What the exchange did to a position without an order: a funding settlement, a liquidation, or a
    warning that one is near (nothing changed).

    ``quantity``: the signed change of the position in contracts (0 for funding); ``price``: the mark
    price it happened at; ``amount``: the money it moved, + received, in ``currency`` (funding; a
    liquidation's realised PnL less its fee); ``event_id``: unique, the key that makes it apply once."""

    kind: Literal["funding", "liquidation", "liquidation_warning"]
    symbol: str
    event_id: str
    quantity: float
    price: float
    amount: float
    currency: str
    ts: int


# ----------------------------------------------------------------------------- units and money


def position_value(spec: ContractSpec, quantity: float, price: float) -> float:
    """The value of ``quantity`` contracts at ``price`` in the settlement currency (>= 0): the
    notional, in coins for an inverse swap (whose notional is in USD)."""
    value = notional(spec.instrument, quantity, price)
    return value / price if spec.inverse else value


def contracts_for(spec: ContractSpec, amount: float) -> float:
    """How many contracts (down to the lot) ``amount`` of the contract's currency makes (base coins
    for linear, USD for inverse): what a strategy that thinks in coins must send."""
    return math.floor(amount / spec.contract_value / spec.lot_size + 1e-9) * spec.lot_size


def fee(spec: ContractSpec, quantity: float, price: float, rate: float) -> float:
    """The fee of a fill of ``quantity`` contracts at ``price``, settlement currency, + = cost."""
    return fee_amount(spec.instrument, quantity, price, rate)


def _pnl(spec: ContractSpec, quantity: float, entry: float, exit_: float) -> float:
    """PnL of ``quantity`` signed contracts entered at ``entry`` and valued at ``exit_``."""
    return instrument_pnl(spec.instrument, quantity, entry, exit_)


def unrealised_pnl(spec: ContractSpec, pos: DerivPosition, mark: float) -> float:
    """The position's PnL if it were closed at ``mark`` (settlement currency)."""
    return _pnl(spec, pos.quantity, pos.avg_price, mark) if pos.quantity else 0.0


def initial_margin(spec: ContractSpec, quantity: float, price: float) -> float:
    """The margin ``quantity`` contracts need at ``price`` and the spec's leverage."""
    return position_value(spec, quantity, price) / spec.leverage


def maintenance_margin(spec: ContractSpec, quantity: float, mark: float) -> float:
    return position_value(spec, quantity, mark) * spec.maintenance_margin_rate


def _snap(spec: ContractSpec, quantity: float) -> float:
    """``quantity`` on the lot grid (float sums of lots drift in the last bits)."""
    lots = round(quantity / spec.lot_size)
    return lots * spec.lot_size if lots else 0.0


# ----------------------------------------------------------------------------- fills


def apply_fill(
    spec: ContractSpec, pos: DerivPosition, *, buy: bool, quantity: float, price: float, fee_rate: float
) -> Fill:
    """Apply one fill of ``quantity`` contracts at ``price`` to the net position ``pos`` (changed in
    place): close first, at the position's average price, then open the rest at ``price``."""
    signed = quantity if buy else -quantity
    old = pos.quantity
    closed = min(abs(old), quantity) if old and (old > 0) != buy else 0.0
    opened = _snap(spec, quantity - closed)
    pnl = _pnl(spec, math.copysign(closed, old), pos.avg_price, price) if closed else 0.0
    cost = fee(spec, quantity, price, fee_rate)
    cash = pnl - cost
    if spec.margin_mode == "isolated":
        if closed and old:
            released = pos.margin * closed / abs(old)
            pos.margin -= released
            cash += released
        if opened:
            held = initial_margin(spec, opened, price)
            pos.margin += held
            cash -= held
    new = _snap(spec, old + signed)
    if new == 0.0:
        pos.avg_price = 0.0
    elif opened and closed:  # flipped: the new side's average is this fill's price
        pos.avg_price = price
    elif opened:
        kept = abs(old)
        if spec.inverse:
            pos.avg_price = (kept + opened) / (kept / pos.avg_price + opened / price) if kept else price
        else:
            pos.avg_price = (kept * pos.avg_price + opened * price) / (kept + opened)
    pos.quantity = new
    pos.realized_pnl += pnl
    pos.fees += cost
    return Fill(closed, opened, pnl, cost, cash)


# ----------------------------------------------------------------------------- margin and liquidation


def _equity(
    spec: ContractSpec,
    positions: Iterable[tuple[ContractSpec, DerivPosition]],
    marks: Mapping[str, float],
    cash: float,
) -> tuple[float, float]:
    """(equity, maintenance margin) of a cross pool: ``cash`` and the ``positions`` in it."""
    equity, mm = cash, 0.0
    for s, p in positions:
        if p.quantity and s.symbol in marks:
            equity += unrealised_pnl(s, p, marks[s.symbol])
            mm += maintenance_margin(s, p.quantity, marks[s.symbol])
    return equity, mm


def margin_ratio(
    specs: Mapping[str, ContractSpec],
    positions: Mapping[str, DerivPosition],
    marks: Mapping[str, float],
    cash: Mapping[str, float],
    symbol: str,
) -> float:
    """Equity / maintenance margin of the pool ``symbol``'s position is in (its cross currency, or
    the position itself when isolated); ``inf`` with nothing at risk. Under 1: liquidation."""
    spec, pos = specs[symbol], positions[symbol]
    if spec.margin_mode == "isolated":
        if not pos.quantity:
            return math.inf
        mm = maintenance_margin(spec, pos.quantity, marks[symbol])
        return (pos.margin + unrealised_pnl(spec, pos, marks[symbol])) / mm
    pool = [
        (s, positions[s.symbol])
        for s in specs.values()
        if s.margin_mode == "cross" and s.settle_currency == spec.settle_currency and s.symbol in positions
    ]
    equity, mm = _equity(spec, pool, marks, cash.get(spec.settle_currency, 0.0))
    return equity / mm if mm > 0 else math.inf


def to_liquidate(
    specs: Mapping[str, ContractSpec],
    positions: Mapping[str, DerivPosition],
    marks: Mapping[str, float],
    cash: Mapping[str, float],
) -> list[str]:
    """The symbols whose positions must be liquidated now: every cross position of a currency whose
    pool's equity is below its maintenance margin, and every isolated position below its own."""
    out: list[str] = []
    cross_done: set[str] = set()
    for sym, spec in specs.items():
        pos = positions.get(sym)
        if pos is None or not pos.quantity or sym not in marks:
            continue
        if spec.margin_mode == "cross" and spec.settle_currency in cross_done:
            continue
        if margin_ratio(specs, positions, marks, cash, sym) < 1.0:
            if spec.margin_mode == "isolated":
                out.append(sym)
            else:
                cross_done.add(spec.settle_currency)
                out.extend(
                    s.symbol
                    for s in specs.values()
                    if s.margin_mode == "cross"
                    and s.settle_currency == spec.settle_currency
                    and positions.get(s.symbol) is not None
                    and positions[s.symbol].quantity
                    and s.symbol in marks
                )
    return out


def liquidate(spec: ContractSpec, pos: DerivPosition, mark: float, cash: float) -> Liquidation:
    """Close ``pos`` at ``mark`` (changed in place) with the liquidation fee, where ``cash`` is the
    settlement currency's wallet balance before: the loss and the fee are charged as far as the cash
    (and, isolated, the position's own margin) covers them, never beyond."""
    qty = pos.quantity
    pnl = _pnl(spec, qty, pos.avg_price, mark)
    penalty = position_value(spec, qty, mark) * spec.liquidation_fee_rate
    held = pos.margin if spec.margin_mode == "isolated" else 0.0
    change = held + pnl - penalty
    if cash + change < 0:  # bankrupt: the insurance fund takes what the account cannot pay
        short = -(cash + change)
        change = -cash
        penalty = max(0.0, penalty - short)
        pnl = change - held + penalty
    pos.quantity = 0.0
    pos.avg_price = 0.0
    pos.margin = 0.0
    pos.realized_pnl += pnl
    pos.fees += penalty
    return Liquidation(spec.symbol, -qty, mark, pnl, penalty, change)


def liquidation_price(spec: ContractSpec, pos: DerivPosition, cash: float) -> float | None:
    """The mark price at which ``pos`` alone would be liquidated (equity = maintenance margin), with
    ``cash`` the wallet balance of its cross pool (ignored when isolated: its margin counts); None when
    flat or when no positive price would liquidate it."""
    q, cv, mmr = pos.quantity, spec.contract_value, spec.maintenance_margin_rate
    if not q:
        return None
    base = pos.margin if spec.margin_mode == "isolated" else cash
    if spec.inverse:  # base + (1/avg - 1/m) q cv = |q| cv mmr / m
        den = base + q * cv / pos.avg_price
        px = (q * cv + abs(q) * cv * mmr) / den if den > 0 else -1.0
    else:  # base + (m - avg) q cv = |q| cv m mmr
        den = q * cv - abs(q) * cv * mmr
        px = (q * cv * pos.avg_price - base) / den if den else -1.0
    return px if px > 0 else None


# ----------------------------------------------------------------------------- funding


def next_funding_time(now_ms: int, interval_ms: int) -> int:
    """The first funding time after ``now_ms``: funding happens at every multiple of ``interval_ms``."""
    return (now_ms // interval_ms + 1) * interval_ms


def funding_rate(symbol: str, funding_time_ms: int, *, base: float, jitter: float, seed: int) -> float:
    """The rate settled at ``funding_time_ms``: ``base`` plus a uniform part in [-jitter, jitter]
    drawn from ``seed``, the symbol and the time (the same inputs always give the same rate), clamped
    to +-:data:`MAX_FUNDING_RATE`."""
    rate = base
    if jitter:
        rng = random.Random(f"{seed}/{symbol}/{funding_time_ms}")
        rate += rng.uniform(-jitter, jitter)
    return max(-MAX_FUNDING_RATE, min(MAX_FUNDING_RATE, rate))


def funding_payment(spec: ContractSpec, quantity: float, mark: float, rate: float) -> float:
    """What a position of ``quantity`` contracts receives (+) or pays (-) at ``rate``: position value
    at ``mark`` x rate; longs pay shorts when the rate is positive."""
    if not quantity:
        return 0.0
    sign = 1.0 if quantity > 0 else -1.0
    return -sign * position_value(spec, quantity, mark) * rate
