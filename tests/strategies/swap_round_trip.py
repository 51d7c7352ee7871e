"""A test strategy for tests/test_backtest_swap_money.py: at its first book of the swap it buys ``size``
contracts at the market; at the first book whose best bid reaches ``exit_at`` it sells them at the
market. Every order report (status, filled, cumulative fee) is written as a JSON line to ``out``."""

import json

from seqtrade.client import Strategy


class SwapRoundTrip(Strategy):
    symbols = ["BTC-USDT-SWAP"]

    def on_start(self) -> None:
        self.sym = self.symbols[0]
        self.size = float(self.params.get("size", 1.0))
        self.bought = self.sold = False
        self.out = open(self.params["out"], "w", encoding="utf-8")  # noqa: SIM115 - closed in on_stop

    def on_book(self, b) -> None:
        # now() is 0 until the backtest's first sync (an order sent before it is refused as stale)
        if b.symbol != self.sym or self.now() <= 0:
            return
        if not self.bought and b.asks:
            self.bought = True
            self.buy_market(self.sym, self.size)
        elif self.bought and not self.sold and b.bids and b.bids[0][0] >= float(self.params["exit_at"]):
            if self.position(self.sym) >= self.size:
                self.sold = True
                self.sell_market(self.sym, self.size)

    def on_order(self, r) -> None:
        line = {"kind": "order", "side": str(r.side), "status": str(r.status), "filled": r.filled_quantity,
                "avg": r.filled_price, "fee": r.fee}  # fmt: skip
        self.out.write(json.dumps(line, sort_keys=True) + "\n")
        self.out.flush()

    def on_stop(self) -> None:
        self.out.write(json.dumps({"kind": "stop", "position": self.position(self.sym)}) + "\n")
        self.out.close()
