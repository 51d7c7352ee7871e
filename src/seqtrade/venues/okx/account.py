"""The OKX account's balances (docs/okx.md §2.9). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

__all__ = ["PATH_BALANCE", "balances_from_okx", "account_from_okx"]

PATH_BALANCE: Final = "/api/v5/account/balance"


def _number(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def balances_from_okx(data: Sequence[Any]) -> dict[str, float]:
    """Cash per currency from the ``data`` of ``GET /api/v5/account/balance``: one object whose
    ``details`` list one entry per currency with a non-zero balance. ``cashBal`` is the cash (what
    the paper venue's ``balances`` reports too); ``eq`` stands in when an account mode leaves it empty.
    Entries without a currency or a number are skipped."""
    out: dict[str, float] = {}
    for account in data:
        details = account.get("details") if isinstance(account, dict) else None
        for d in details if isinstance(details, list) else []:
            if not isinstance(d, dict) or not isinstance(d.get("ccy"), str) or not d["ccy"]:
                continue
            amount = _number(d.get("cashBal"))
            if amount is None:
                amount = _number(d.get("eq"))
            if amount is not None:
                out[d["ccy"]] = amount
    return out


_SUMMARY = {"eq": "equity", "availEq": "available", "upl": "unrealised_pnl", "imr": "initial_margin",
            "mmr": "maintenance_margin", "mgnRatio": "margin_ratio"}  # fmt: skip


def account_from_okx(data: Sequence[Any]) -> dict[str, dict[str, float]]:
    """The account view per currency from ``GET account/balance`` or an ``account`` channel push
    (the same object): equity, available equity, unrealised PnL, initial and maintenance margin and
    margin ratio, each where OKX gave a number (swaps and futures settle in these currencies)."""
    out: dict[str, dict[str, float]] = {}
    for account in data:
        details = account.get("details") if isinstance(account, dict) else None
        for d in details if isinstance(details, list) else []:
            if not isinstance(d, dict) or not isinstance(d.get("ccy"), str) or not d["ccy"]:
                continue
            row = {name: v for key, name in _SUMMARY.items() if (v := _number(d.get(key))) is not None}
            if row:
                out[d["ccy"]] = row
    return out
