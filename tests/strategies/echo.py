"""A test strategy that prints what it sees as JSON lines on stdout (read by tests/test_client.py)."""

import json

from seqtrade.client import Strategy


class Echo(Strategy):
    symbols = ["BTC-USDT"]

    def emit(self, event: str, **kw: object) -> None:
        state = {
            "event": event,
            "position": self.position("BTC-USDT"),
            "avg_price": self.avg_price("BTC-USDT"),
            "fees": self.fees,
            "pnl": self.realized_pnl,
            "open": sorted(self.open_orders),
        }
        state.update(kw)
        print(json.dumps(state), flush=True)

    def on_start(self) -> None:
        self.emit("start")
        side = self.params.get("side")
        if side == "buy":
            self.buy_limit("BTC-USDT", float(self.params["price"]), float(self.params["qty"]))
        elif side == "sell":
            self.sell_limit("BTC-USDT", float(self.params["price"]), float(self.params["qty"]))

    def on_order(self, r) -> None:
        self.emit("order", coid=r.client_order_id, status=str(r.status), seq=r.seq, filled=r.filled_quantity)

    def on_stop(self) -> None:
        self.emit("stop")
