"""Momentum: buy when the mid runs above its moving average, sell when it falls back below.

seqtrade run examples/momentum.py --id mom1 [--param symbol=ETH-USDT --param size=0.01 --param window=20]
"""

from __future__ import annotations

from collections import deque

from seqtrade.client import OrderReport, Strategy, Ticker, run


class Momentum(Strategy):
    symbols = ["BTC-USDT"]  # the default; --param symbol=ETH-USDT replaces it (self.symbol follows)

    def on_start(self) -> None:
        self.size = float(self.params.get("size", 0.01))
        self.window = int(self.params.get("window", 20))
        self.threshold = float(self.params.get("threshold", 0.0002))  # relative distance from the average
        self.max_position = float(self.params.get("max_position", 0.05))
        self.mids: deque[float] = deque(maxlen=self.window)
        self.pending: str | None = None  # one order in flight at a time
        self.set_timer(10.0, self.report_pnl)
        self.log.info("momentum on %s: size %g, window %d; position %g", self.symbol, self.size, self.window,
                      self.position(self.symbol))  # fmt: skip

    def on_ticker(self, t: Ticker) -> None:
        mid = (t.bid_price + t.ask_price) / 2
        self.mids.append(mid)
        if len(self.mids) < self.window or self.pending is not None:
            return
        avg = sum(self.mids) / len(self.mids)
        pos = self.position(self.symbol)
        if mid > avg * (1 + self.threshold) and pos + self.size <= self.max_position + 1e-12:
            self.pending = self.buy_market(self.symbol, self.size)
        elif mid < avg * (1 - self.threshold) and pos > 1e-12:
            self.pending = self.sell_market(self.symbol, min(pos, self.size))

    def on_order(self, r: OrderReport) -> None:
        if r.last_fill_quantity > 0:
            self.log.info("%s %s %g @ %.2f (fee %.4f) -> position %g", r.client_order_id, r.side,
                          r.last_fill_quantity, r.last_fill_price, r.fee, self.position(r.symbol))  # fmt: skip
        if r.client_order_id == self.pending and not r.is_open:
            self.pending = None
            if r.error_msg:
                self.log.warning("%s %s: %s", r.client_order_id, r.status, r.error_msg)

    def report_pnl(self) -> None:
        self.log.info("position %g @ %.2f, realised PnL %.4f, fees %.4f", self.position(self.symbol),
                      self.avg_price(self.symbol), self.realized_pnl, self.fees)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(run(Momentum))
