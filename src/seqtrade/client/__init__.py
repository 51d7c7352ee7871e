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
"""

from ..models import Book, OrderReport, OrderStatus, Ticker, Trade, VenueStatus
from .runner import Endpoints, load_strategy, run, run_strategy
from .strategy import Position, Strategy

__all__ = [
    "Strategy",
    "Position",
    "run",
    "run_strategy",
    "load_strategy",
    "Endpoints",
    "Ticker",
    "Book",
    "Trade",
    "VenueStatus",
    "OrderReport",
    "OrderStatus",
]
