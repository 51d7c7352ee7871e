"""OKX swaps and futures: the account set-up rules, and the exchange's events in seqtrade's words.

Pure: OKX items in, seqtrade values out (docs/okx.md, "Derivatives"). The adapter does the I/O:

- account set-up (:func:`position_mode_problem`, :func:`leverage_calls`): the account's ``posMode``
  must be the configured ``venue.derivatives.position_mode`` (refused at start, never switched: OKX
  switches only a flat account); leverage is set per instrument (and per side for isolated margin in
  long/short mode) with ``mgnMode`` = the instrument's ``margin_mode``;
- bills (``GET /api/v5/account/bills``) of type 8 funding, 5 liquidation, 9 ADL, 3 delivery become
  :class:`~seqtrade.venues.base.VenueAccountEvent` (:func:`event_from_bill`), keyed by ``billId``;
- an ``orders`` push of an order seqtrade did not place (``clOrdId`` empty, ``category`` normal)
  that fills becomes an ``adjustment`` of the external account (:func:`external_fill`), keyed by
  ``tradeId``; liquidation, ADL and delivery orders are not fills of anyone's: their bills tell them;
- position rows (``GET /api/v5/account/positions``, the ``positions`` channel) become
  :class:`~seqtrade.venues.base.VenuePosition` (:func:`position_from_okx`) and net positions;
- the public ``mark-price``, ``funding-rate`` and ``price-limit`` channels become
  :class:`~seqtrade.models.MarkPrice`, :class:`~seqtrade.models.FundingRate` and
  :class:`~seqtrade.models.PriceLimit` (:data:`DERIVATIVE_CHANNELS`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ...config import DerivativesConfig
from ...models import AccountEventKind, FundingRate, MarkPrice, PriceLimit
from ..base import VenueAccountEvent, VenuePosition
from .parse import decimal_of, int_of

__all__ = [
    "OKX_POS_MODE",
    "BILL_TYPES",
    "DERIVATIVE_CHANNELS",
    "position_mode_problem",
    "leverage_calls",
    "event_from_bill",
    "external_fill",
    "position_from_okx",
    "net_positions",
]

OKX_POS_MODE = {"net": "net_mode", "long_short": "long_short_mode"}
# bill type -> the event it is (D§8); the adapter reads these types after every such push
BILL_TYPES: dict[str, AccountEventKind] = {
    "8": AccountEventKind.FUNDING,
    "5": AccountEventKind.LIQUIDATION,
    "9": AccountEventKind.ADL,
    "3": AccountEventKind.DELIVERY,
}
# subType -> (sign of the position change, leg): closing a long shrinks it (-), a short grows (+)
_SUB_TYPES: dict[str, tuple[float, str]] = {
    "100": (-1.0, "long"), "101": (1.0, "short"), "102": (1.0, ""), "103": (-1.0, ""),  # partial liq.
    "104": (-1.0, "long"), "105": (1.0, "short"), "106": (1.0, ""), "107": (-1.0, ""),  # liquidation
    "125": (-1.0, "long"), "126": (1.0, "short"), "127": (1.0, ""), "128": (-1.0, ""),  # ADL
    "112": (-1.0, "long"), "113": (1.0, "short"),  # delivery of a long / a short
}  # fmt: skip


def position_mode_problem(config: DerivativesConfig, account: Mapping[str, Any]) -> str:
    """Why the account's configuration (``GET account/config`` item) refuses the server's start
    ("" when it is fine)."""
    want = OKX_POS_MODE[config.position_mode]
    have = str(account.get("posMode") or "")
    if have != want:
        other = "long_short" if have == "long_short_mode" else "net"
        return (
            f"the OKX account is in position mode {have!r}, but venue.derivatives.position_mode is "
            f"{config.position_mode!r}: set position_mode = {other!r} in the config, or switch the account "
            f"to {want!r} on okx.com (or POST /api/v5/account/set-position-mode) while it has no position "
            f"and no open order"
        )
    if str(account.get("acctLv") or "") == "1":
        return "the OKX account is in Spot mode (acctLv 1): swaps and futures need Futures mode or above"
    return ""


def leverage_calls(config: DerivativesConfig, symbols: Iterable[str]) -> list[dict[str, str]]:
    """The ``POST account/set-leverage`` bodies for the configured instruments (D§3.4): one per
    instrument, or one per side for isolated margin in long/short mode."""
    calls = []
    for sym in symbols:
        setup = config.setup(sym)
        if not setup.leverage:
            continue
        body = {"instId": sym, "lever": f"{setup.leverage:g}", "mgnMode": setup.margin_mode}
        if setup.margin_mode == "isolated" and config.position_mode == "long_short":
            calls += [{**body, "posSide": "long"}, {**body, "posSide": "short"}]
        else:
            calls.append(body)
    return calls


def event_from_bill(bill: Mapping[str, Any]) -> VenueAccountEvent | None:
    """The account event a bill (D§8) is; None for other bills."""
    kind = BILL_TYPES.get(str(bill.get("type") or ""))
    bill_id = str(bill.get("billId") or "")
    if kind is None or not bill_id:
        return None
    sign, leg = _SUB_TYPES.get(str(bill.get("subType") or ""), (0.0, ""))
    quantity = 0.0 if kind is AccountEventKind.FUNDING else sign * abs(float(decimal_of(bill.get("sz"))))
    return VenueAccountEvent(
        kind=kind,
        symbol=str(bill.get("instId") or ""),
        event_id=f"bill:{bill_id}",
        pos_side=leg,
        quantity=quantity,
        price=float(decimal_of(bill.get("px"))),
        amount=float(decimal_of(bill.get("balChg"))),
        currency=str(bill.get("ccy") or ""),
        ts=int_of(bill.get("ts")),
    )


def external_fill(d: Mapping[str, Any]) -> VenueAccountEvent | None:
    """A fill of an order seqtrade did not place (an ``orders`` push with no ``clOrdId``, e.g. one
    placed on okx.com): an ``adjustment`` of the external account; None for anything else."""
    if str(d.get("clOrdId") or "") or str(d.get("category") or "normal") != "normal":
        return None
    trade_id = str(d.get("tradeId") or "")
    size = float(decimal_of(d.get("fillSz")))
    if not trade_id or size <= 0 or str(d.get("instType") or "") not in ("SWAP", "FUTURES"):
        return None
    fee = float(decimal_of(d.get("fillFee")))  # OKX: negative = charged
    return VenueAccountEvent(
        kind=AccountEventKind.ADJUSTMENT,
        symbol=str(d.get("instId") or ""),
        event_id=f"fill:{trade_id}",
        pos_side=str(d.get("posSide") or "").replace("net", ""),
        quantity=size if str(d.get("side")) == "buy" else -size,
        price=float(decimal_of(d.get("fillPx"))),
        amount=float(decimal_of(d.get("fillPnl"))) + fee,
        currency=str(d.get("fillFeeCcy") or d.get("feeCcy") or ""),
        ts=int_of(d.get("fillTime")) or int_of(d.get("uTime")),
    )


def position_from_okx(d: Mapping[str, Any]) -> VenuePosition:
    """One position row (REST ``account/positions`` or the ``positions`` channel), signed: a
    long/short-mode short is negative."""
    pos_side = str(d.get("posSide") or "net")
    qty = float(decimal_of(d.get("pos")))
    if pos_side == "short":
        qty = -abs(qty)
    return VenuePosition(
        symbol=str(d.get("instId") or ""),
        quantity=qty,
        pos_side="" if pos_side == "net" else pos_side,
        avg_price=float(decimal_of(d.get("avgPx"))),
        mark_price=float(decimal_of(d.get("markPx"))),
        liquidation_price=float(decimal_of(d.get("liqPx"))),
        margin_ratio=float(decimal_of(d.get("mgnRatio"))),
        unrealised_pnl=float(decimal_of(d.get("upl"))),
        funding_paid=float(decimal_of(d.get("fundingFee"))),
        currency=str(d.get("ccy") or ""),
        margin_mode=str(d.get("mgnMode") or ""),
        leverage=float(decimal_of(d.get("lever"))),
    )


def net_positions(rows: Iterable[VenuePosition], symbols: Iterable[str]) -> dict[str, float]:
    """The account's net position per symbol (long/short legs netted); 0.0 for a symbol without one."""
    out = dict.fromkeys(symbols, 0.0)
    for p in rows:
        if p.symbol in out:
            out[p.symbol] += p.quantity
    return out


def _mark(d: Mapping[str, Any], inst_id: str) -> MarkPrice:
    return MarkPrice(str(d.get("instId") or inst_id), int_of(d.get("ts")), float(decimal_of(d.get("markPx"))))


def _funding(d: Mapping[str, Any], inst_id: str) -> FundingRate:
    at, after = int_of(d.get("fundingTime")), int_of(d.get("nextFundingTime"))
    return FundingRate(str(d.get("instId") or inst_id), int_of(d.get("ts")), float(decimal_of(d.get("fundingRate"))),
                       at, after - at if after > at else 0)  # fmt: skip


def _limit(d: Mapping[str, Any], inst_id: str) -> PriceLimit:
    on = d.get("enabled", True) is not False
    return PriceLimit(str(d.get("instId") or inst_id), int_of(d.get("ts")),
                      float(decimal_of(d.get("buyLmt"))) if on else 0.0,
                      float(decimal_of(d.get("sellLmt"))) if on else 0.0)  # fmt: skip


DERIVATIVE_CHANNELS: dict[str, Callable[[Mapping[str, Any], str], MarkPrice | FundingRate | PriceLimit]] = {
    "mark-price": _mark,
    "funding-rate": _funding,
    "price-limit": _limit,
}
"""Public channel -> converter of one pushed item (subscribed per derivative symbol)."""
