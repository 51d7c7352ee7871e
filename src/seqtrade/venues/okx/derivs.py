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
  :class:`LivePositions` keeps the account's legs live from a REST snapshot (at start and after every
  reconnect) and the channel's pushes (paged snapshot on subscribe, then ``event_update`` rows, a
  ``pos "0"`` row for a leg that closed);
- a funding bill carries no ``posSide``: in long/short mode :func:`funding_leg` names the leg it was
  for from the legs the account holds (its ``sz`` is the leg's size), so that it is split between
  that leg's holders only;
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
    "external_bill_fill",
    "position_from_okx",
    "net_positions",
    "funding_leg",
    "LivePositions",
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
        event_id=f"fill:{d.get('instId') or ''}:{trade_id}",  # trade ids are per instrument
        pos_side=str(d.get("posSide") or "").replace("net", ""),
        quantity=size if str(d.get("side")) == "buy" else -size,
        price=float(decimal_of(d.get("fillPx"))),
        amount=float(decimal_of(d.get("fillPnl"))) + fee,
        currency=str(d.get("fillFeeCcy") or d.get("feeCcy") or ""),
        ts=int_of(d.get("fillTime")) or int_of(d.get("uTime")),
    )


# trade bill subType (D§8) -> (side, leg): 1 buy, 2 sell (net mode), 3-6 open/close long/short
_TRADE_SUB_TYPES = {"1": ("buy", ""), "2": ("sell", ""), "3": ("buy", "long"), "4": ("sell", "short"),
                    "5": ("sell", "long"), "6": ("buy", "short")}  # fmt: skip


def external_bill_fill(bill: Mapping[str, Any]) -> VenueAccountEvent | None:
    """A trade bill (type 2) of an order seqtrade did not place (no ``clOrdId``): the same
    ``adjustment`` of the external account as :func:`external_fill` (same event id, so a fill both
    pushed and billed is applied once). Read after a reconnect: a fill made by hand while the
    private socket was down still reaches ``external``. None for anything else."""
    if str(bill.get("type") or "") != "2" or str(bill.get("clOrdId") or ""):
        return None
    side_leg = _TRADE_SUB_TYPES.get(str(bill.get("subType") or ""))
    trade_id = str(bill.get("tradeId") or "")
    size = abs(float(decimal_of(bill.get("sz"))))
    if (
        side_leg is None
        or not trade_id
        or size <= 0
        or str(bill.get("instType") or "") not in ("SWAP", "FUTURES")
    ):
        return None
    side, leg = side_leg
    return VenueAccountEvent(
        kind=AccountEventKind.ADJUSTMENT,
        symbol=str(bill.get("instId") or ""),
        event_id=f"fill:{bill.get('instId') or ''}:{trade_id}",
        pos_side=leg,
        quantity=size if side == "buy" else -size,
        price=float(decimal_of(bill.get("px"))),
        amount=float(decimal_of(bill.get("pnl"))) + float(decimal_of(bill.get("fee"))),
        currency=str(bill.get("ccy") or ""),
        ts=int_of(bill.get("fillTime")) or int_of(bill.get("ts")),
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


class LivePositions:
    """The account's position legs, (symbol, pos_side) -> row, for the configured ``symbols``.

    :meth:`reset` takes a REST snapshot (at start and after every reconnect of the private socket);
    :meth:`on_push` follows the ``positions`` channel: a paged ``snapshot`` (``curPage``/``lastPage``)
    replaces every leg once its last page is in, an ``event_update`` changes only its rows, and a row
    with ``pos "0"`` removes its leg (net mode: one row; long/short mode: each side on its own).
    ``fresh`` is False from a loss of the socket until the next snapshot."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self.symbols = set(symbols)
        self.legs: dict[tuple[str, str], VenuePosition] = {}
        self.fresh = False
        self._pages: dict[tuple[str, str], VenuePosition] | None = None

    def _put(self, into: dict[tuple[str, str], VenuePosition], p: VenuePosition) -> None:
        if p.symbol not in self.symbols:
            return
        if abs(p.quantity) > 0:
            into[(p.symbol, p.pos_side)] = p
        else:
            into.pop((p.symbol, p.pos_side), None)

    def reset(self, rows: Iterable[VenuePosition]) -> None:
        self.legs = {}
        for p in rows:
            self._put(self.legs, p)
        self._pages = None
        self.fresh = True

    def lost(self) -> None:
        self.fresh = False
        self._pages = None

    def on_push(self, event_type: str, items: Iterable[Mapping[str, Any]], cur_page: int = 1,
                last_page: bool = True) -> None:  # fmt: skip
        rows = [position_from_okx(d) for d in items]
        if event_type == "snapshot":
            if cur_page <= 1 or self._pages is None:
                self._pages = {}
            for p in rows:
                self._put(self._pages, p)
            if last_page:
                self.legs, self._pages = self._pages, None
            return
        for p in rows:
            self._put(self.legs, p)

    def rows(self) -> list[VenuePosition]:
        return [self.legs[k] for k in sorted(self.legs)]

    def leg_sizes(self, symbol: str) -> dict[str, float]:
        """pos_side -> the leg's size (positive) of ``symbol``."""
        return {side: abs(p.quantity) for (sym, side), p in self.legs.items() if sym == symbol}


def funding_leg(
    event: VenueAccountEvent, bill: Mapping[str, Any], legs: Mapping[str, float], rate: float = 0.0
) -> str:
    """The leg (``"long"``/``"short"``) a funding bill was for in long/short mode, from the account's
    legs of its instrument (pos_side -> size): the only leg held, or the one leg whose size is the
    bill's ``sz``; with both legs of that size, the funding ``rate`` last published decides (above 0
    the long pays: the expense, subType 173, is the long's; below 0 the short pays). "" when nothing
    tells (the event is then split by the net position)."""
    if event.kind is not AccountEventKind.FUNDING or event.pos_side:
        return event.pos_side
    held = {side: size for side, size in legs.items() if side in ("long", "short") and size > 0}
    if len(held) == 1:
        return next(iter(held))
    size = abs(float(decimal_of(bill.get("sz"))))
    same = [side for side, n in held.items() if size > 0 and abs(n - size) <= 1e-9 * max(size, 1.0)]
    if len(same) == 1:
        return same[0]
    if len(same) == 2 and rate:
        expense = str(bill.get("subType") or "") == "173" or event.amount < 0
        return "long" if expense == (rate > 0) else "short"
    return ""


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
