"""A test strategy for backtests (tests/test_backtest.py): it quotes on a timer, on the strategy's clock
(``self.now()``), and writes every decision and report with that clock to ``params["out"]``."""

import json

from seqtrade.client import Strategy


class BtMaker(Strategy):
    def on_start(self) -> None:
        self.out = open(self.params["out"], "w", encoding="utf-8")  # noqa: SIM115 - closed in on_stop
        self.sym = self.symbols[0]
        self.size = float(self.params.get("size", 0.01))
        self.bid = self.ask = None
        self.n = 0
        self.set_timer(float(self.params.get("every", 0.2)), self.tick)

    def write(self, **kw: object) -> None:
        self.out.write(json.dumps(kw, sort_keys=True) + "\n")
        self.out.flush()

    def on_book(self, b) -> None:
        if b.symbol == self.sym and b.bids and b.asks:
            self.bid, self.ask = b.bids[0][0], b.asks[0][0]

    def tick(self) -> None:
        self.n += 1
        self.write(event="timer", now=self.now(), n=self.n)
        if self.bid is None:
            return
        if self.n % 5 == 0:  # now and then a taker, the rest of the time quotes that rest
            (self.buy_market if self.position(self.sym) <= 0 else self.sell_market)(self.sym, self.size)
        elif not self.open_orders:
            if self.position(self.sym) <= 0:
                self.buy_limit(self.sym, self.bid, self.size)
            else:
                self.sell_limit(self.sym, self.ask, self.size)
        else:
            for coid in list(self.open_orders)[:1]:
                if self.n % 3 == 0:
                    self.cancel_order(coid)

    def on_order(self, r) -> None:
        self.write(
            event="order",
            now=self.now(),
            coid=r.client_order_id,
            status=str(r.status),
            filled=r.filled_quantity,
            avg=r.filled_price,
            last=r.last_fill_price,
            error=r.error_msg,
        )

    def on_stop(self) -> None:
        self.write(event="stop", now=self.now(), position=self.position(self.sym), pnl=self.realized_pnl)
        self.out.close()
