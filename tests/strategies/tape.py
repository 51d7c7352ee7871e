"""A test strategy that writes every market-data message it receives, and its order reports, as JSON
lines to the file ``params["out"]`` (read by tests/test_replay.py)."""

import json

from seqtrade.client import Strategy


class Tape(Strategy):
    def on_start(self) -> None:
        self.out = open(self.params["out"], "a", encoding="utf-8")  # noqa: SIM115 - closed in on_stop
        if self.params.get("order"):  # a replay trades nothing: this order comes back rejected
            self.buy_limit(self.symbols[0], 1.0, 1.0)

    def write(self, **kw: object) -> None:
        self.out.write(json.dumps(kw) + "\n")
        self.out.flush()

    def on_ticker(self, t) -> None:
        self.write(type="ticker", symbol=t.symbol, ts=t.ts, seq=t.seq, value=t.last_price)

    def on_book(self, b) -> None:
        self.write(type="book", symbol=b.symbol, ts=b.ts, seq=b.seq, value=b.bids[0][0] if b.bids else None)

    def on_trade(self, t) -> None:
        self.write(type="trade", symbol=t.symbol, ts=t.ts, seq=t.seq, value=t.price)

    def on_order(self, r) -> None:
        self.write(type="order", status=str(r.status), error=r.error_msg)

    def on_stop(self) -> None:
        self.out.close()
