"""The tutorial's strategy (docs/tutorial.md): rest a bid under the market, sell what it buys higher.

    seqtrade run examples/tutorial.py --id tut1 [--param symbol=ETH-USDT --param size=0.01] [-v]

Parameters (``--param KEY=VALUE``): ``symbol`` (default BTC-USDT), ``size`` (base units per order),
``edge`` (how far under the best bid the bid rests, relative), ``profit`` (how far over the average
entry price the ask rests, relative), ``max_position`` and ``keep_orders`` (true: leave the orders
open on stop instead of cancelling them). ``-v`` also logs every report.
"""

from __future__ import annotations

from typing import Any

from seqtrade.client import OrderReport, Strategy, Ticker, run


class Quoter(Strategy):
    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.symbol = str(self.params.get("symbol", "BTC-USDT"))
        self.symbols = [self.symbol]  # market data for the symbol this strategy trades
        self.size = float(self.params.get("size", 0.001))
        self.edge = float(self.params.get("edge", 0.0002))
        self.profit = float(self.params.get("profit", 0.0004))
        self.max_position = float(self.params.get("max_position", 0.003))
        self.keep_orders = bool(self.params.get("keep_orders", False))
        self.bid: str | None = None  # client_order_id of our resting bid
        self.ask: str | None = None  # ... and of our resting ask
        self.amending: str | None = None  # an amend in flight: wait for its report before the next

    def on_start(self) -> None:
        # A restart picks up where the last process left off: the position is rebuilt from every fill,
        # and the orders still open at the server are in self.open_orders.
        for coid, r in self.open_orders.items():
            if r.symbol == self.symbol:
                if r.side == "buy":
                    self.bid = coid
                else:
                    self.ask = coid
        self.log.info("resumed: position %g @ %.2f, %d open orders, %d orders before",
                      self.position(self.symbol), self.avg_price(self.symbol), len(self.open_orders),
                      len(self.orders))  # fmt: skip
        self.set_timer(5.0, self.report)  # every 5 seconds

    def on_ticker(self, t: Ticker) -> None:
        pos = self.position(self.symbol)
        target = t.bid_price * (1 - self.edge)
        if pos + self.size <= self.max_position + 1e-12:
            if self.bid is None:
                self.bid = self.buy_limit(self.symbol, target, self.size)
                self.log.info("bid %s: %g @ %.2f", self.bid, self.size, target)
            elif self.amending is None and self.bid in self.open_orders:
                resting = self.open_orders[self.bid].price
                if abs(resting - target) > target * self.edge:  # the market moved: follow it
                    self.amending = self.amend_order(self.bid, price=target)
                    self.log.info("amend %s: %.2f -> %.2f", self.bid, resting, target)
        if pos > 1e-12 and self.ask is None:
            price = max(self.avg_price(self.symbol) * (1 + self.profit), t.ask_price)
            self.ask = self.sell_limit(self.symbol, price, pos)
            self.log.info("ask %s: %g @ %.2f", self.ask, pos, price)

    def on_order(self, r: OrderReport) -> None:
        self.log.debug("report %s %s %s %g @ %.2f, filled %g", r.client_order_id, r.status, r.side,
                       r.quantity, r.price, r.filled_quantity)  # fmt: skip
        if r.client_order_id == self.amending:
            self.amending = None
        if r.error_msg:
            self.log.warning("%s %s: %s", r.client_order_id, r.status, r.error_msg)
        if r.last_fill_quantity > 0:
            self.log.info("filled %s %s %g @ %.2f -> position %g, realised PnL %.4f, fees %.4f",
                          r.client_order_id, r.side, r.last_fill_quantity, r.last_fill_price,
                          self.position(self.symbol), self.realized_pnl, self.fees)  # fmt: skip
        if not r.is_open:  # filled, cancelled or rejected: quote again on the next ticker
            if r.client_order_id == self.bid:
                self.bid = None
            elif r.client_order_id == self.ask:
                self.ask = None

    def report(self) -> None:
        self.log.info("position %g @ %.2f, realised PnL %.4f, fees %.4f, open orders %d",
                      self.position(self.symbol), self.avg_price(self.symbol), self.realized_pnl,
                      self.fees, len(self.open_orders))  # fmt: skip

    def on_stop(self) -> None:
        if not self.keep_orders:
            self.cancel_all(self.symbol)
        self.log.info("stopping: position %g, %d open orders%s", self.position(self.symbol),
                      len(self.open_orders), " left open" if self.keep_orders else " cancelled")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(run(Quoter))
