"""Mean reversion: rest a bid below the moving average; once filled, rest an ask above the entry.

    seqtrade run examples/mean_reversion.py --id mr1 [--param symbol=BTC-USDT]

Quotes follow the average with ``amend_order`` rather than cancel-and-replace.
"""

from __future__ import annotations

from collections import deque

from seqtrade.client import OrderReport, Strategy, Ticker, run


class MeanReversion(Strategy):
    symbols = ["ETH-USDT"]  # the default; --param symbol=BTC-USDT replaces it (self.symbol follows)

    def on_start(self) -> None:
        self.size = float(self.params.get("size", 0.05))
        self.window = int(self.params.get("window", 30))
        self.edge = float(self.params.get("edge", 0.0004))  # how far from the average we quote
        self.mids: deque[float] = deque(maxlen=self.window)
        self.bid: str | None = None
        self.ask: str | None = None
        # After a restart, pick our resting quotes back up from the open orders the server sent.
        for coid, r in self.open_orders.items():
            if r.symbol == self.symbol:
                if r.side == "buy":
                    self.bid = coid
                else:
                    self.ask = coid
        self.set_timer(
            10.0,
            lambda: self.log.info(
                "position %g, realised PnL %.4f, fees %.4f",
                self.position(self.symbol),
                self.realized_pnl,
                self.fees,
            ),
        )

    def on_ticker(self, t: Ticker) -> None:
        self.mids.append((t.bid_price + t.ask_price) / 2)
        if len(self.mids) < self.window:
            return
        avg = sum(self.mids) / len(self.mids)
        pos = self.position(self.symbol)
        want_bid = avg * (1 - self.edge)
        if pos < self.size / 2:
            if self.bid is None:
                self.bid = self.buy_limit(self.symbol, min(want_bid, t.bid_price), self.size)
            elif (
                self.bid in self.open_orders
                and abs(self.open_orders[self.bid].price - want_bid) > want_bid * self.edge
            ):
                self.amend_order(self.bid, price=min(want_bid, t.bid_price))
        elif self.ask is None:
            entry = self.avg_price(self.symbol)
            self.ask = self.sell_limit(self.symbol, max(entry * (1 + 2 * self.edge), t.ask_price), pos)

    def on_order(self, r: OrderReport) -> None:
        if r.error_msg:
            self.log.warning("%s %s: %s", r.client_order_id, r.status, r.error_msg)
        if r.last_fill_quantity > 0:
            self.log.info("%s %s filled %g @ %.2f -> position %g, realised PnL %.4f", r.client_order_id, r.side,
                          r.last_fill_quantity, r.last_fill_price, self.position(r.symbol), self.realized_pnl)  # fmt: skip
        if not r.is_open:
            if r.client_order_id == self.bid:
                self.bid = None
            elif r.client_order_id == self.ask:
                self.ask = None

    def on_stop(self) -> None:
        self.cancel_all(self.symbol)


if __name__ == "__main__":
    raise SystemExit(run(MeanReversion))
