"""A test strategy on a swap that prints what it sees as JSON lines (read by tests/test_okx_derivs.py):
its instrument's facts at start, every report, every account event and mark price."""

import json

from seqtrade.client import Strategy

SWAP = "BTC-USDT-SWAP"


class SwapEcho(Strategy):
    symbols = [SWAP]

    def emit(self, event: str, **kw: object) -> None:
        p = self.positions.get(SWAP)
        state = {
            "event": event,
            "position": self.position(SWAP),
            "pnl": p.realized_pnl if p else 0.0,
            "funding": p.funding if p else 0.0,
            "currency": p.currency if p else "",
        }
        state.update(kw)
        print(json.dumps(state), flush=True)

    def on_start(self) -> None:
        inst = self.instrument(SWAP)
        self.emit(
            "start", kind=str(inst.kind), contract_value=inst.contract_value, settle=inst.settle_currency
        )
        self.buy_market(SWAP, 2)

    def on_order(self, r) -> None:
        self.emit("order", coid=r.client_order_id, status=str(r.status), filled=r.filled_quantity)
        if str(r.status) == "filled" and r.side == "buy":
            self.sell_market(SWAP, 1, reduce_only=True)

    def on_account_event(self, e) -> None:
        self.emit("account_event", kind=str(e.kind), quantity=e.quantity, amount=e.amount, seq=e.seq)

    def on_mark(self, m) -> None:
        self.emit("mark", mark=m.mark_price)

    def on_stop(self) -> None:
        self.emit("stop")
