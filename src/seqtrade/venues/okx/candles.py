"""OKX candles (docs/okx.md, "Candles"): the business WebSocket's ``candle<bar>`` pushes and REST
``market/candles`` / ``market/history-candles`` rows turned into :class:`~seqtrade.candles.Candle`,
and the plan of REST pages that fetches the last ``n`` closed bars within OKX's limits. Pure.

Limits: ``market/candles`` serves the newest 1,440 rows, at most 300 a page, 40 requests per 2 s;
``market/history-candles`` goes further back, at most 100 a page (OKX's documentation says 300; 100 is
what every version accepts), 20 requests per 2 s. Pages go back in time with ``after`` = the oldest
``ts`` seen (rows older than it). The newest row may be the open bar (``confirm`` "0"): left out.

Volume: ``vol`` is in base units for spot; for derivatives it counts contracts and ``volCcy`` is in
base units: the adapter uses ``volCcy`` for a symbol that is not spot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ...candles import BARS, Candle

__all__ = [
    "LIVE_WS_BUSINESS",
    "DEMO_WS_BUSINESS",
    "PATH_CANDLES",
    "PATH_HISTORY_CANDLES",
    "CANDLES_PAGE",
    "HISTORY_PAGE",
    "CANDLES_REACH",
    "CANDLES_RATE",
    "HISTORY_RATE",
    "candle_from_row",
    "candle_channel",
    "bar_of_channel",
    "is_spot",
]

LIVE_WS_BUSINESS: Final = "wss://ws.okx.com:8443/ws/v5/business"
DEMO_WS_BUSINESS: Final = "wss://wspap.okx.com:8443/ws/v5/business"
PATH_CANDLES: Final = "/api/v5/market/candles"
PATH_HISTORY_CANDLES: Final = "/api/v5/market/history-candles"
CANDLES_PAGE: Final = 300
HISTORY_PAGE: Final = 100
CANDLES_REACH: Final = 1440
CANDLES_RATE: Final = (40, 2.0)  # requests, seconds (per IP)
HISTORY_RATE: Final = (20, 2.0)


def is_spot(symbol: str) -> bool:
    """A spot pair (``BTC-USDT``), not a swap, future or option."""
    return symbol.count("-") == 1


def candle_channel(bar: str) -> str:
    return f"candle{bar}"


def bar_of_channel(channel: str) -> str | None:
    """The bar of a ``candle<bar>`` channel we serve, else None."""
    bar = channel[6:] if channel.startswith("candle") else ""
    return bar if bar in BARS else None


def candle_from_row(row: Mapping[str, Any] | Sequence[Any], symbol: str, bar: str) -> Candle:
    """One row (a push's map or a REST array ``[ts,o,h,l,c,vol,volCcy,volCcyQuote,confirm]``).
    Raises ValueError/KeyError/IndexError for a malformed one."""
    if isinstance(row, Mapping):
        ts, o, h, low, c = row["ts"], row["o"], row["h"], row["l"], row["c"]
        vol, vol_ccy, confirm = row.get("vol", "0"), row.get("volCcy", "0"), row.get("confirm", "0")
    else:
        ts, o, h, low, c, vol, vol_ccy = row[:7]
        confirm = row[8] if len(row) > 8 else "0"
    volume = float(vol if is_spot(symbol) else vol_ccy)
    return Candle(symbol, bar, int(ts), float(o), float(h), float(low), float(c), volume, str(confirm) == "1")
