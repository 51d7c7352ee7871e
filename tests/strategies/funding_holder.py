"""A test strategy for backtests with funding (tests/test_backtest_funding.py): at its first book of the
swap it buys ``size`` contracts at the market and holds them; every order report and account event it gets
is written as a JSON line to ``params["out"]``."""

import json

from seqtrade.client import Strategy


class FundingHolder(Strategy):
    def on_start(self) -> None:
        self.sym = self.symbols[0]
        self.bought = False
        self.out = open(self.params["out"], "w", encoding="utf-8")  # noqa: SIM115 - closed in on_stop

    def on_book(self, b) -> None:
        # now() is 0 until the backtest's first sync: an order sent before it carries time 0 and is
        # refused as stale, so the strategy waits for its clock
        if b.symbol == self.sym and b.asks and not self.bought and self.now() > 0:
            self.bought = True
            self.buy_market(self.sym, float(self.params.get("size", 1.0)))

    def on_order(self, r) -> None:
        line = {"kind": "order", "status": str(r.status), "filled": r.filled_quantity, "error": r.error_msg}
        self.out.write(json.dumps(line, sort_keys=True) + "\n")

    def on_account_event(self, e) -> None:
        line = {
            "kind": str(e.kind),
            "event_id": e.event_id,
            "amount": e.amount,
            "ts": e.ts,
            "now": self.now(),
        }
        self.out.write(json.dumps(line, sort_keys=True) + "\n")
        self.out.flush()

    def on_stop(self) -> None:
        self.out.write(json.dumps({"kind": "stop", "position": self.position(self.sym)}) + "\n")
        self.out.close()
