"""Derivative instruments of the fake (SWAP and dated FUTURES) -- pure data, no I/O.

The SWAP rows are ``public/instruments`` rows captured in nautilus_trader's test data ([get instruments]),
extra
unknown fields included (``maxPlatOILmt``, ``posLmtAmt``...: parsers must ignore them, [numbers as strings]).
The dated futures expire on the last Friday of a quarter at 08:00 UTC ([general info]); their instId is
computed from the exchange clock, so the default table always holds a future that is not expired.

UNVERIFIED: no captured row exists for a dated *linear* BTC-USDT future; its ctVal / lotSz /
minSz / lever below are the fake's choice (same contract as BTC-USDT-SWAP, lever 50).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from .instruments import Instrument, instrument_from_dict

__all__ = [
    "DERIV_INST_TYPES",
    "complete_deriv_row",
    "derivative_instruments",
    "deriv_instrument_from_dict",
    "is_derivative",
    "quarterly_expiry_ms",
]

DERIV_INST_TYPES = ("SWAP", "FUTURES")

# Captured rows (nautilus_trader test_data); the ETH row = BTC-USDT-SWAP with the differing fields.
_BTC_USDT_SWAP: dict[str, Any] = {
    "alias": "",
    "auctionEndTime": "",
    "baseCcy": "",
    "category": "1",
    "contTdSwTime": "",
    "ctMult": "1",
    "ctType": "linear",
    "ctVal": "0.01",
    "ctValCcy": "BTC",
    "expTime": "",
    "futureSettlement": False,
    "instFamily": "BTC-USDT",
    "instId": "BTC-USDT-SWAP",
    "instIdCode": 10459,
    "instType": "SWAP",
    "lever": "100",
    "listTime": "1573557408000",
    "lotSz": "0.01",
    "maxIcebergSz": "100000000.0000000000000000",
    "maxLmtAmt": "20000000",
    "maxLmtSz": "100000000",
    "maxMktAmt": "",
    "maxMktSz": "12000",
    "maxPlatOILmt": "",
    "maxStopSz": "12000",
    "maxTriggerSz": "100000000.0000000000000000",
    "maxTwapSz": "100000000.0000000000000000",
    "minSz": "0.01",
    "openType": "",
    "optType": "",
    "posLmtAmt": "",
    "posLmtPct": "",
    "preMktSwTime": "",
    "quoteCcy": "",
    "ruleType": "normal",
    "settleCcy": "USDT",
    "state": "live",
    "stk": "",
    "tickSz": "0.1",
    "tradeQuoteCcyList": [],
    "uly": "BTC-USDT",
}
_ETH_USDT_SWAP: dict[str, Any] = {
    **_BTC_USDT_SWAP,
    "ctVal": "0.1",
    "ctValCcy": "ETH",
    "instFamily": "ETH-USDT",
    "instId": "ETH-USDT-SWAP",
    "instIdCode": 10461,
    "lotSz": "0.01",
    "maxMktSz": "20000",
    "maxStopSz": "20000",
    "minSz": "0.01",
    "tickSz": "0.01",
    "uly": "ETH-USDT",
}
_BTC_USD_SWAP: dict[str, Any] = {
    **_BTC_USDT_SWAP,
    "ctType": "inverse",
    "ctVal": "100",
    "ctValCcy": "USD",
    "instFamily": "BTC-USD",
    "instId": "BTC-USD-SWAP",
    "instIdCode": 10458,
    "listTime": "1535424203000",
    "lotSz": "1",
    "maxMktSz": "30000",
    "maxStopSz": "30000",
    "minSz": "1",
    "settleCcy": "BTC",
    "uly": "BTC-USD",
}
# The captured BTC-USD-241220 row (inverse future), re-dated; instIdCode is the fake's own.
_BTC_USD_FUTURE: dict[str, Any] = {
    "alias": "",  # deprecated, "removed by the end of April 2026" ([get instruments])
    "baseCcy": "",
    "category": "1",
    "ctMult": "1",
    "ctType": "inverse",
    "ctVal": "100",
    "ctValCcy": "USD",
    "instFamily": "BTC-USD",
    "instType": "FUTURES",
    "lever": "20",
    "listTime": "1733472600725",
    "lotSz": "1",
    "maxIcebergSz": "1000000.0000000000000000",
    "maxLmtAmt": "20000000",
    "maxLmtSz": "1000000",
    "maxMktAmt": "",
    "maxMktSz": "10000",
    "maxStopSz": "10000",
    "maxTriggerSz": "1000000.0000000000000000",
    "maxTwapSz": "1000000.0000000000000000",
    "minSz": "1",
    "optType": "",
    "quoteCcy": "",
    "ruleType": "normal",
    "settleCcy": "BTC",
    "state": "live",
    "stk": "",
    "tickSz": "0.1",
    "uly": "BTC-USD",
    "instIdCode": 10601,
}
# UNVERIFIED: [general info] gives family / settleCcy / ctType / ctValCcy; the sizes are ours.
_BTC_USDT_FUTURE: dict[str, Any] = {
    **_BTC_USD_FUTURE,
    "ctType": "linear",
    "ctVal": "0.01",
    "ctValCcy": "BTC",
    "instFamily": "BTC-USDT",
    "lever": "50",
    "lotSz": "0.1",
    "minSz": "0.1",
    "settleCcy": "USDT",
    "uly": "BTC-USDT",
    "instIdCode": 10600,
}


def quarterly_expiry_ms(now_ms: int, *, min_days: int = 14) -> int:
    """The first quarterly expiry (last Friday of Mar/Jun/Sep/Dec, 08:00 UTC, [general info]) at least
    ``min_days`` after ``now_ms``."""
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    earliest = now + timedelta(days=min_days)
    year, month = now.year, now.month
    while True:
        if month % 3 == 0:
            last_day = calendar.monthrange(year, month)[1]
            day = datetime(year, month, last_day, 8, tzinfo=UTC)
            while day.weekday() != calendar.FRIDAY:
                day -= timedelta(days=1)
            if day >= earliest:
                return int(day.timestamp() * 1000)
        month += 1
        if month > 12:
            year, month = year + 1, 1


def derivative_instruments(now_ms: int) -> list[dict[str, Any]]:
    """Default derivative rows: BTC-USDT-SWAP, ETH-USDT-SWAP, BTC-USD-SWAP and two dated futures
    (``BTC-USDT-<yymmdd>`` linear, ``BTC-USD-<yymmdd>`` inverse) expiring at the next quarterly date."""
    exp = quarterly_expiry_ms(now_ms)
    suffix = datetime.fromtimestamp(exp / 1000, tz=UTC).strftime("%y%m%d")
    return [
        dict(_BTC_USDT_SWAP),
        dict(_ETH_USDT_SWAP),
        dict(_BTC_USD_SWAP),
        {**_BTC_USDT_FUTURE, "instId": f"BTC-USDT-{suffix}", "expTime": str(exp)},
        {**_BTC_USD_FUTURE, "instId": f"BTC-USD-{suffix}", "expTime": str(exp)},
    ]


_FUTURES_ID = re.compile(r"^[A-Z0-9]+-[A-Z0-9_]+-\d{6}$")


def complete_deriv_row(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A partial SWAP / FUTURES row completed from the default rows: ``instType`` from the instId
    shape (``-SWAP`` / ``-yymmdd``), the other fields from the default row of the same kind and
    quote (linear USDT-like / inverse USD), the family's currencies filled in; ``None`` for a spot row.
    So ``{"instId": "BTC-USDT-SWAP", "lotSz": "0.1", "minSz": "0.1"}`` is the captured row with the
    older sizes (lot / min sizes change over time)."""
    inst_id = str(raw.get("instId", ""))
    inst_type = raw.get("instType") or (
        "SWAP" if inst_id.endswith("-SWAP") else "FUTURES" if _FUTURES_ID.match(inst_id) else "SPOT"
    )
    if inst_type not in DERIV_INST_TYPES:
        return None
    base, _, rest = inst_id.partition("-")
    quote = rest.split("-")[0]
    inverse = quote == "USD"
    if inst_type == "SWAP":
        known = {r["instId"]: r for r in (_BTC_USDT_SWAP, _ETH_USDT_SWAP, _BTC_USD_SWAP)}
        template = known.get(inst_id) or (_BTC_USD_SWAP if inverse else _BTC_USDT_SWAP)
    else:
        template = _BTC_USD_FUTURE if inverse else _BTC_USDT_FUTURE
    row = dict(template)
    if template.get("instId") != inst_id:
        family = f"{base}-{quote}"
        row.update(instFamily=family, uly=family, ctValCcy="USD" if inverse else base, instIdCode=None)
        row["settleCcy"] = base if inverse else quote
    row.update(raw)
    row["instId"], row["instType"] = inst_id, inst_type
    return row


def is_derivative(inst: Instrument) -> bool:
    return inst.record.get("instType") in DERIV_INST_TYPES


def deriv_instrument_from_dict(overrides: dict[str, Any]) -> Instrument:
    """Build an Instrument from a SWAP/FUTURES row: the wire record keeps ``baseCcy``/``quoteCcy``
    ``""`` and ``tradeQuoteCcyList`` ``[]`` as in the captured rows; ``base_ccy`` /
    ``quote_ccy`` of the Instrument are the family's two currencies (BTC / USDT, BTC / USD)."""
    inst = instrument_from_dict(overrides)
    record = inst.record
    for name in ("baseCcy", "quoteCcy"):
        record[name] = overrides.get(name, "")
    record["tradeQuoteCcyList"] = overrides.get("tradeQuoteCcyList", [])
    family = str(record.get("instFamily") or "")
    if not family:
        family = "-".join(inst.inst_id.split("-")[:2])
        record["instFamily"] = family
        record["uly"] = record.get("uly") or family
    base, _, quote = family.partition("-")
    return replace(inst, base_ccy=base, quote_ccy=quote.split("_")[0], lot_sz=Decimal(str(record["lotSz"])))
