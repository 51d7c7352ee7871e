"""Instrument table of the fake (docs/okx.md §2.11) -- pure data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["DEFAULT_INSTRUMENTS", "Instrument", "instrument_from_dict"]

# §2.11: the default spot instruments.  BTC-USDT is the docs example (tickSz 0.1, lotSz 1e-8,
# minSz 1e-5, instIdCode 1000000000); ETH-USDT values come from the brief.  instIdCode is the
# fake's own code table ("can differ between production and demo", §0).
DEFAULT_INSTRUMENTS: list[dict[str, Any]] = [
    {
        "instId": "BTC-USDT",
        "baseCcy": "BTC",
        "quoteCcy": "USDT",
        "tickSz": "0.1",
        "lotSz": "0.00000001",
        "minSz": "0.00001",
        "instIdCode": 1000000000,
    },
    {
        "instId": "ETH-USDT",
        "baseCcy": "ETH",
        "quoteCcy": "USDT",
        "tickSz": "0.01",
        "lotSz": "0.000001",
        "minSz": "0.0001",
        "instIdCode": 1000000001,
    },
]

# Every field of the §2.11 item, with spot-looking defaults.  Numbers stay strings except the
# §3.3 exceptions: instIdCode (int or null), futureSettlement (bool), tradeQuoteCcyList/upcChg (arrays).
_FIELD_DEFAULTS: dict[str, Any] = {
    "instType": "SPOT",
    "instId": "",
    "uly": "",
    "instFamily": "",
    "baseCcy": "",
    "quoteCcy": "",
    "settleCcy": "",
    "ctVal": "",
    "ctMult": "",
    "ctValCcy": "",
    "ctType": "",
    "optType": "",
    "stk": "",
    "listTime": "1606468572000",
    "expTime": "",
    "contTdSwTime": "",
    "preMktSwTime": "",
    "openType": "",
    "lever": "",
    "tickSz": "",
    "lotSz": "",
    "minSz": "",
    "alias": "",
    "state": "live",
    "ruleType": "normal",
    "maxLmtSz": "9999999999",
    "maxMktSz": "1000000",
    "maxLmtAmt": "20000000",
    "maxMktAmt": "1000000",
    "maxTwapSz": "9999999999",
    "maxIcebergSz": "9999999999",
    "maxTriggerSz": "9999999999",
    "maxStopSz": "1000000",
    "futureSettlement": False,
    "tradeQuoteCcyList": [],
    "instIdCode": None,
    "instCategory": "1",
    "groupId": "1",
    "initPxLmtPct": "",
    "floatPxLmtPct": "",
    "maxPxLmtPct": "",
    "upcChg": [],
}


@dataclass(frozen=True)
class Instrument:
    inst_id: str
    base_ccy: str
    quote_ccy: str
    tick_sz: Decimal
    lot_sz: Decimal
    min_sz: Decimal
    inst_id_code: int | None
    record: dict[str, Any] = field(compare=False)  # the full §2.11 wire item


def instrument_from_dict(overrides: dict[str, Any]) -> Instrument:
    """Build an Instrument from a partial §2.11 dict (missing fields take spot defaults)."""
    record = dict(_FIELD_DEFAULTS)
    record.update(overrides)
    inst_id = str(record["instId"])
    if not record["baseCcy"] or not record["quoteCcy"]:
        base, _, quote = inst_id.partition("-")
        record["baseCcy"] = record["baseCcy"] or base
        record["quoteCcy"] = record["quoteCcy"] or quote
    if not record["tradeQuoteCcyList"]:
        record["tradeQuoteCcyList"] = [record["quoteCcy"]]
    code = record["instIdCode"]
    if code is not None and not isinstance(code, int):
        raise ValueError(f"instIdCode must be an int or None (§2.11), got {code!r}")
    return Instrument(
        inst_id=inst_id,
        base_ccy=str(record["baseCcy"]),
        quote_ccy=str(record["quoteCcy"]),
        tick_sz=Decimal(str(record["tickSz"])),
        lot_sz=Decimal(str(record["lotSz"])),
        min_sz=Decimal(str(record["minSz"])),
        inst_id_code=code,
        record=record,
    )
