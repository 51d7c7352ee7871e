"""The strategy API. A strategy process imports only this package (never the server or venues).

from seqtrade.client import Strategy, run

class Momentum(Strategy):
    symbols = ["BTC-USDT"]
    def on_ticker(self, t):
        if ...: self.buy_limit("BTC-USDT", t.bid_price, 0.01)
    def on_order(self, report):
        self.log.info("%s %s", report.client_order_id, report.status)

if __name__ == "__main__":
    raise SystemExit(run(Momentum))

Modules: ``strategy`` (the Strategy base class), ``protocol`` (the client side of the wire protocol,
sans-io), ``runner`` (sockets and the poll loop that drive it), ``loading`` and ``cli`` (finding a
strategy, command lines). The names that need ZeroMQ are imported on first use, so the pure modules
can be imported without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..candles import Candle
from ..feedhealth import FeedsStatus, FeedStatus
from ..instruments import Instrument, InstrumentKind
from ..models import (
    AccountEvent,
    AccountEventKind,
    Book,
    BookStatus,
    FundingRate,
    MarkPrice,
    OrderReport,
    OrderStatus,
    PriceLimit,
    Ticker,
    Trade,
    VenueStatus,
)
from .book import LocalBook
from .strategy import Position, Strategy

if TYPE_CHECKING:
    from .cli import run
    from .loading import load_strategy
    from .runner import Endpoints, run_strategy

__all__ = [
    "Strategy",
    "Position",
    "run",
    "run_strategy",
    "load_strategy",
    "Endpoints",
    "Ticker",
    "Book",
    "LocalBook",
    "BookStatus",
    "Trade",
    "VenueStatus",
    "Candle",
    "FeedsStatus",
    "FeedStatus",
    "OrderReport",
    "OrderStatus",
    "AccountEvent",
    "AccountEventKind",
    "MarkPrice",
    "FundingRate",
    "PriceLimit",
    "Instrument",
    "InstrumentKind",
]

_LAZY = {"run": ".cli", "load_strategy": ".loading", "run_strategy": ".runner", "Endpoints": ".runner"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
