"""The starting point ``seqtrade new-strategy NAME`` writes: a commented strategy that runs as is."""

from __future__ import annotations

import re

__all__ = ["render_strategy", "class_name", "NAME_RE"]

NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}\Z")  # a file stem, a class name's source and a strategy id

_TEMPLATE = '''"""{cls}: a starting point made by `seqtrade new-strategy {name}`.

It keeps one small buy order resting a little below the market and logs what happens to it.
Run it against a running server (`seqtrade serve --config config.toml` in another terminal):

    seqtrade run {name}.py --id {name} [--param symbol=ETH-USDT --param size=0.01]

Callbacks run one at a time; order methods never block (the outcome arrives in on_order).
"""

from __future__ import annotations

from seqtrade.client import OrderReport, Strategy, Ticker, run


class {cls}(Strategy):
    # The symbols whose market data this strategy receives (the server must serve them: see
    # `seqtrade check`). on_start reads the one to trade from the params.
    symbols = ["BTC-USDT"]

    def on_start(self) -> None:
        # self.params: the [[strategies]] params of the config, or --param KEY=VALUE on the command line
        self.symbol = str(self.params.get("symbol", self.symbols[0]))
        self.size = float(self.params.get("size", 0.001))  # base units (BTC for BTC-USDT)
        self.offset = float(self.params.get("offset", 0.001))  # how far below the bid: 0.001 = 0.1 %
        self.order_id: str | None = None  # the client_order_id of our resting order, if any
        self.log.info("{name} on %s: size %g, %.2f %% below the bid", self.symbol, self.size, self.offset * 100)

    def on_ticker(self, t: Ticker) -> None:
        if t.symbol != self.symbol or self.order_id is not None:
            return
        # One order at a time. The server rounds the price to the tick (down for a buy) and checks
        # the risk limits of the config; a refused order comes back in on_order with error_msg.
        price = t.bid_price * (1 - self.offset)
        self.order_id = self.buy_limit(self.symbol, price, self.size)
        self.log.info("placed %s: buy %g %s @ %.2f", self.order_id, self.size, self.symbol, price)

    def on_order(self, r: OrderReport) -> None:
        # Every change of our orders: accepted, fills (last_fill_quantity > 0), cancelled, rejected.
        self.log.info("%s %s: filled %g of %g%s", r.client_order_id, r.status, r.filled_quantity,
                      r.quantity, f" ({{r.error_msg}})" if r.error_msg else "")
        if r.client_order_id == self.order_id and not r.is_open:
            self.order_id = None  # filled, cancelled or rejected: on_ticker places the next one

    def on_stop(self) -> None:
        # The strategy is stopping. The server applies its policy to open orders (docs/operations.md).
        self.log.info("stopping; position in %s: %g", self.symbol, self.position(self.symbol))


if __name__ == "__main__":  # `python {name}.py` works too
    raise SystemExit(run({cls}))
'''


def class_name(name: str) -> str:
    """``my_strategy`` -> ``MyStrategy``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "MyStrategy"


def render_strategy(name: str) -> str:
    """The source of a new strategy called ``name`` (checked against :data:`NAME_RE` by the caller)."""
    return _TEMPLATE.format(name=name, cls=class_name(name))
