"""Swap trend: a perpetual swap, long or short with the trend of its mark price, sized in coins.

    seqtrade run examples/swap_trend.py --id swap2 [--param symbol=BTC-USDT-SWAP --param coins=0.02]

Quantities of swaps are contracts (docs/protocol.md, "Instruments and units"): the strategy thinks in
coins (``coins``, default 0.02 BTC) and turns them into contracts with the instrument's contract value
from the server (0.01 BTC a contract for BTC-USDT-SWAP: 2 contracts), never a hard-coded size. It
goes long when the mark price runs above its moving average and short when it falls below, one
position at a time (net mode), and logs every funding payment and liquidation the venue reports.
"""

from __future__ import annotations

import logging
import math
from collections import deque

from seqtrade.client import AccountEvent, MarkPrice, OrderReport, Strategy, run


class SwapTrend(Strategy):
    symbols = ["BTC-USDT-SWAP"]  # --param symbol=... replaces it (self.symbol follows)

    def on_start(self) -> None:
        inst = self.instrument(self.symbol)
        coins = float(self.params.get("coins", 0.02))  # base coins (linear) or USD (inverse) per trade
        lots = math.floor(coins / inst.contract_value / inst.lot_size + 1e-9)
        self.size = max(lots, 1) * inst.lot_size  # contracts, on the lot grid
        self.window = int(self.params.get("window", 20))
        self.threshold = float(self.params.get("threshold", 0.0002))  # relative distance from the average
        self.marks: deque[float] = deque(maxlen=self.window)
        self.pending: str | None = None  # one order in flight at a time
        self.pause = 0  # marks to let pass after a refusal before trying again
        self.set_timer(10.0, self.report)
        self.log.info("swap trend on %s: %g contracts of %g %s each (%s); position %g", self.symbol, self.size,
                      inst.contract_value, inst.contract_currency, "inverse" if inst.inverse else "linear",
                      self.position(self.symbol))  # fmt: skip

    def on_mark(self, m: MarkPrice) -> None:
        if m.symbol != self.symbol:
            return
        self.marks.append(m.mark_price)
        if self.pause:
            self.pause -= 1
            return
        if len(self.marks) < self.window or self.pending is not None:
            return
        avg = sum(self.marks) / len(self.marks)
        pos = self.position(self.symbol)
        if m.mark_price > avg * (1 + self.threshold) and pos <= 0:
            self.pending = self.buy_market(self.symbol, self.size - pos)  # close a short, open a long
        elif m.mark_price < avg * (1 - self.threshold) and pos >= 0:
            self.pending = self.sell_market(self.symbol, self.size + pos)  # close a long, open a short

    def on_order(self, r: OrderReport) -> None:
        if r.last_fill_quantity > 0:
            self.log.info("%s %s %g contracts @ %.1f -> position %g", r.client_order_id, r.side,
                          r.last_fill_quantity, r.last_fill_price, self.position(r.symbol))  # fmt: skip
        if r.client_order_id == self.pending and not r.is_open:
            self.pending = None
            if r.error_msg:
                self.log.warning("%s %s: %s", r.client_order_id, r.status, r.error_msg)
                self.pause = self.window  # refused (a risk limit, the margin): wait before trying again

    def on_account_event(self, e: AccountEvent) -> None:
        level = logging.INFO if e.kind == "funding" else logging.WARNING  # a liquidation stands out
        self.log.log(level, "%s on %s: %+g contracts at %.1f, %+.6f %s", e.kind, e.symbol, e.quantity, e.price,
                     e.amount, e.currency)  # fmt: skip

    def report(self) -> None:
        p = self.positions.get(self.symbol)
        if p is not None:
            self.log.info("position %g @ %.1f, realised %.4f, fees %.4f, funding %+.4f %s", p.quantity,
                          p.avg_price, p.realized_pnl, p.fees, p.funding, p.currency)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(run(SwapTrend))
