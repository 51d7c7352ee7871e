"""A test strategy for live versus replay (tests/test_backtest_compare_live.py): what it does depends
on the market data alone, never on the clock or on its own reports, so a replay of the session it traded
makes the same decisions from the same books.

At the first book of each ``period_ms`` bucket of the exchange's time (``Book.ts``) it acts by the
bucket's number: a market buy, a limit buy at the best bid, a market sell, a limit sell at the best ask,
in turn; it amends the limit order of the bucket before to the best price on its side (whatever became
of it), and it cancels the limit orders placed four buckets or more before.
With ``params["out"]`` it appends a line per order sent there (the test waits on it)."""

from seqtrade.client import Strategy


class LvrTrader(Strategy):
    def on_start(self) -> None:
        self.sym = self.symbols[0]
        self.size = float(self.params.get("size", 0.01))
        self.period = int(self.params.get("period_ms", 150))
        self.bucket: int | None = None
        self.limits: dict[int, str] = {}
        self.out = self.params.get("out")

    def on_book(self, b) -> None:
        if b.symbol != self.sym or not b.bids or not b.asks:
            return
        bucket = b.ts // self.period
        if self.bucket is None or bucket == self.bucket:
            self.bucket = bucket  # the first book seen starts no bucket: it may be in the middle of one
            return
        self.bucket = bucket
        step = bucket % 4
        last = self.limits.get(bucket - 1)
        if last is not None:  # the limit order of the bucket before, moved to the best price on its side
            self.amend_order(last, price=b.bids[0][0] if step == 2 else b.asks[0][0])
        if step == 0:
            self.buy_market(self.sym, self.size)
        elif step == 1:
            self.limits[bucket] = self.buy_limit(self.sym, b.bids[0][0], self.size)
        elif step == 2:
            self.sell_market(self.sym, self.size)
        else:
            self.limits[bucket] = self.sell_limit(self.sym, b.asks[0][0], self.size)
        if self.out:
            with open(self.out, "a", encoding="utf-8") as f:
                f.write(f"{bucket}\n")
        for old in [k for k in self.limits if k <= bucket - 4]:
            self.cancel_order(self.limits.pop(old))
