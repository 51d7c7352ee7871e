"""Test strategies for the fault tests (tests/test_faults.py). They write JSON lines to ``out``.

``Churn`` places, cancels and amends orders at a steady pace around the market, re-sends an order
request that got no report within a second (with the same client_order_id: idempotent), and records
every report it applies, including the ones replayed while joining. On SIGUSR1 it stops trading and
sends a marker request (a cancel of an id it never used, answered with a ``rejected`` report); the
marker's report comes after the reports of everything it sent before, so when it arrives the strategy
writes its final view: open orders and positions.

``TickCount`` counts tickers and writes its counts, gaps and the newest seq per symbol every 0.25 s.
"""

import json
import os
import random
import signal
import time

from seqtrade.client import Strategy
from seqtrade.models import OrderRequest, OrderType, Side

SYMBOLS = ["BTC-USDT", "ETH-USDT"]
TICK = 0.1
LOT = 0.001


class Churn(Strategy):
    symbols = SYMBOLS

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.out = open(str(params["out"]), "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        self.rng = random.Random(int(params.get("seed", 1)) * 7919 + os.getpid())
        self.pace = float(params.get("pace", 0.05))  # type: ignore[arg-type]
        self.max_open = int(params.get("max_open", 6))  # type: ignore[call-overload]
        self.last: dict[str, tuple[float, float]] = {}
        self.pending: dict[str, tuple[OrderRequest, float]] = {}  # sent, no report yet
        self.quiet = False
        self.marker = ""
        self.resends = 0
        signal.signal(signal.SIGUSR1, self._quiet)

    def write(self, **kw: object) -> None:
        self.out.write(json.dumps(kw) + "\n")

    def _apply_report(self, r):  # every report applied to local state, once, in seq order
        super()._apply_report(r)
        self.pending.pop(r.client_order_id, None)
        self.write(ev="r", seq=r.seq, coid=r.client_order_id, status=str(r.status), filled=r.filled_quantity,
                   lfq=r.last_fill_quantity, price=r.price, qty=r.quantity)  # fmt: skip
        if self.marker and r.client_order_id == self.marker:
            self.write(
                ev="final",
                seq=r.seq,
                open={
                    c: [o.symbol, o.side, o.price, o.quantity, o.filled_quantity]
                    for c, o in self.open_orders.items()
                },
                positions={s: self.position(s) for s in SYMBOLS},
                resends=self.resends,
            )

    def _quiet(self, signum, frame) -> None:
        self.quiet = True

    def on_start(self) -> None:
        self.write(ev="start", pid=os.getpid(), open=sorted(self.open_orders))
        self.set_timer(self.pace, self.act)

    def on_ticker(self, t) -> None:
        if t.bid_price > 0 and t.ask_price > 0:
            self.last[t.symbol] = (t.bid_price, t.ask_price)

    def act(self) -> None:
        if self.quiet:
            if not self.marker:
                self.marker = f"final-{os.getpid()}-{time.time_ns()}"
                self.cancel_order(self.marker)
            return
        now = time.monotonic()
        for coid, (req, sent) in list(self.pending.items()):
            if now - sent > 1.0:  # no report: the request or its reports may be lost; idempotent re-send
                req.timestamp = time.time_ns() // 1_000_000
                self._send(req)
                self.pending[coid] = (req, now)
                self.resends += 1
        rng = self.rng
        x = rng.random()
        mine = [c for c, o in self.open_orders.items() if o.symbol]
        if mine and (x < 0.25 or len(mine) >= self.max_open):
            self.cancel_order(rng.choice(mine))
        elif mine and x < 0.45:
            o = self.open_orders[rng.choice(mine)]
            step = rng.choice((-2, -1, 1, 2)) * TICK
            if rng.random() < 0.5:
                self.amend_order(o.client_order_id, price=round(max(o.price + step, TICK), 1))
            else:
                self.amend_order(
                    o.client_order_id, quantity=round(o.quantity + rng.choice((-1, 1, 2)) * LOT, 3)
                )
        else:
            sym = rng.choice(SYMBOLS)
            if sym not in self.last:
                return
            bid, ask = self.last[sym]
            side = rng.choice((Side.BUY, Side.SELL))
            qty = rng.randint(1, 5) * LOT
            if rng.random() < 0.1:
                req = OrderRequest(
                    self.strategy_id, self._ids.next(), sym, side, OrderType.MARKET, None, qty, 0
                )
            else:
                k = rng.randint(-1, 3) * TICK
                price = round(bid - k, 1) if side is Side.BUY else round(ask + k, 1)
                req = OrderRequest(
                    self.strategy_id, self._ids.next(), sym, side, OrderType.LIMIT, max(price, TICK), qty, 0
                )
            req.timestamp = time.time_ns() // 1_000_000
            self._send(req)
            self.pending[req.client_order_id] = (req, now)


class TickCount(Strategy):
    symbols = SYMBOLS

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.out = open(str(params["out"]), "a", buffering=1)  # noqa: SIM115
        self.n = 0
        self.seqs: dict[str, int] = {}
        self.applied: list[int] = []

    def _apply_report(self, r):
        super()._apply_report(r)
        self.out.write(
            json.dumps({"ev": "r", "seq": r.seq, "coid": r.client_order_id, "status": str(r.status)}) + "\n"
        )

    def on_start(self) -> None:
        self.out.write(json.dumps({"ev": "start", "pid": os.getpid()}) + "\n")
        self.set_timer(0.25, self.report)

    def on_ticker(self, t) -> None:
        self.n += 1
        self.seqs[t.symbol] = t.seq

    def report(self) -> None:
        self.out.write(json.dumps({"ev": "ticks", "t": time.monotonic(), "n": self.n, "gaps": self.md_gaps,
                                   "seqs": self.seqs}) + "\n")  # fmt: skip
