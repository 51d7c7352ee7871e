"""OKX v5 error codes as data: one table, code -> (meaning, class), and the rules that read it.

Pure: no I/O. docs/okx.md §2.14 shows the same table (a test keeps the two in agreement). Every
place in the adapter that branches on an OKX ``code``/``sCode`` asks this module, never a literal.

Classes (what seqtrade does with an answer carrying the code):

- ``outcome_unknown``: the request may or may not have been carried out; a write is settled by a
  query (§2.6), never sent again;
- ``rejected``: refused, nothing done; reported with the reason (the default for a code not listed);
- ``auth``: the key, passphrase or signature refused: fatal, ``VenueAuthError`` (§1.6, §4.3);
- ``clock``: signed off the exchange clock, refused before processing: the clock is measured
  again; requests safe to repeat are sent once more, places and amends never (§1.5);
- ``retriable``: nothing is wrong with the request; the connection is about to close: reconnect at
  once (§4.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "CodeClass",
    "OkxCode",
    "CODES",
    "FAMILIES",
    "SUCCESS",
    "ORDER_NOT_FOUND",
    "TIMESTAMP_EXPIRED",
    "SERVICE_UPGRADE",
    "lookup",
    "code_class",
    "is_auth",
    "is_clock",
    "is_outcome_unknown",
    "QueryResult",
    "query_result",
]


class CodeClass(StrEnum):
    RETRIABLE = "retriable"
    OUTCOME_UNKNOWN = "outcome_unknown"
    REJECTED = "rejected"
    AUTH = "auth"
    CLOCK = "clock"


@dataclass(frozen=True, slots=True)
class OkxCode:
    code: str
    meaning: str
    cls: CodeClass


_U, _R, _A, _C, _T = (
    CodeClass.OUTCOME_UNKNOWN,
    CodeClass.REJECTED,
    CodeClass.AUTH,
    CodeClass.CLOCK,
    CodeClass.RETRIABLE,
)

# code, meaning, class (docs/okx.md §1.6, §2.14, §4.3, §4.4, §7)
_TABLE: Final[Sequence[tuple[str, str, CodeClass]]] = (
    ("50001", "service temporarily unavailable", _U),
    ("50004", "endpoint request timeout", _U),
    ("50013", "system busy", _U),
    ("50026", "system error", _U),
    ("50011", "rate limit reached", _R),
    ("50061", "sub-account order rate limit", _R),
    ("50014", "parameter missing (instIdCode for a WS trading op)", _R),
    ("50015", "parameters conflict", _R),
    ("50016", "parameter wrong", _R),
    ("51000", "parameter error (a bad clOrdId too)", _R),
    ("50100", "API key frozen", _A),
    ("50101", "API key for the other environment (demo/live)", _A),
    ("50102", "timestamp expired (signed more than 30 s off the exchange clock)", _C),
    ("50103", "header OK-ACCESS-KEY empty", _A),
    ("50104", "header OK-ACCESS-PASSPHRASE empty", _A),
    ("50105", "wrong passphrase", _A),
    ("50106", "header OK-ACCESS-SIGN empty", _A),
    ("50107", "header OK-ACCESS-TIMESTAMP empty", _A),
    ("50110", "IP not in the key's allow-list", _A),
    ("50111", "invalid API key", _A),
    ("50112", "invalid timestamp (malformed)", _R),
    ("50113", "invalid signature", _A),
    ("50114", "invalid authorization", _A),
    ("51001", "instrument or instIdCode does not exist", _R),
    ("51006", "price outside the price limit", _R),
    ("51008", "insufficient balance", _R),
    ("51016", "clOrdId already used by a pending order", _R),
    ("51020", "below the minimum size", _R),
    ("51121", "not a multiple of the lot size", _R),
    ("51400", "cancel failed: the order is filled, cancelled or unknown", _R),
    ("51503", "amend failed: the order is done", _R),
    ("51513", "amend failed: more than three amends in flight", _R),
    ("51603", "order does not exist", _R),
    ("54004", "batch failed because another order failed", _R),
    ("60004", "WS login: invalid timestamp", _C),
    ("60006", "WS login: timestamp expired", _C),
    ("60005", "WS login: invalid API key", _A),
    ("60007", "WS login: invalid signature", _A),
    ("60009", "WS login failed", _A),
    ("60024", "WS login: wrong passphrase", _A),
    ("60032", "WS login: API key does not exist", _A),
    ("64008", "WS notice: the connection closes soon for a service upgrade", _T),
)

CODES: Final[dict[str, OkxCode]] = {c: OkxCode(c, meaning, cls) for c, meaning, cls in _TABLE}
assert len(CODES) == len(_TABLE), "a code is listed twice"

# Codes not listed, by prefix: every other 501xx is an authentication failure (§1.6), and so is
# every other 6000x (the WS login family, §4.3).
FAMILIES: Final[dict[str, OkxCode]] = {
    "501": OkxCode("501xx", "authentication", _A),
    "6000": OkxCode("6000x", "login refused", _A),
}

SUCCESS: Final = "0"  # not an error: for writes, accepted (its item's sCode says for each item)
ORDER_NOT_FOUND: Final = CODES["51603"].code
TIMESTAMP_EXPIRED: Final = CODES["50102"].code
SERVICE_UPGRADE: Final = CODES["64008"].code


def lookup(code: object) -> OkxCode:
    """The table's entry for ``code`` (a string or a number); an unlisted code is ``rejected``."""
    text = str(code)
    entry = CODES.get(text)
    if entry is not None:
        return entry
    for prefix, family in FAMILIES.items():
        if text.startswith(prefix):
            return family
    return OkxCode(text, "not in seqtrade's table", CodeClass.REJECTED)


def code_class(code: object) -> CodeClass:
    return lookup(code).cls


def is_auth(code: object) -> bool:
    """A REST answer that is fatal: ``VenueAuthError`` (the venue stops)."""
    return code_class(code) is CodeClass.AUTH


def is_clock(code: object) -> bool:
    """Refused for its timestamp: re-measure the exchange clock."""
    return code_class(code) is CodeClass.CLOCK


def is_outcome_unknown(code: object) -> bool:
    """An answer that does not say whether a write was carried out: settle it by a query."""
    return code_class(code) is CodeClass.OUTCOME_UNKNOWN


class QueryResult(StrEnum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    ERROR = "error"


def query_result(code: object, data: Sequence[Any]) -> QueryResult:
    """What a ``GET trade/order`` answer says: found (``data[0]``), not found, or an error (§2.6).

    Not found is 51603, or code 0 with empty ``data`` (both seen, §9).
    """
    text = str(code)
    if text == SUCCESS:
        return QueryResult.FOUND if data else QueryResult.NOT_FOUND
    return QueryResult.NOT_FOUND if text == ORDER_NOT_FOUND else QueryResult.ERROR
