"""A test strategy for tests/test_paper_derivs_faults.py: it opens one swap position and holds it.

``Swapper`` sends one market order (``side``, ``size`` contracts of ``symbol``) under a fixed
client_order_id, so that sending it again after a server restart is idempotent, then holds the
position while the venue settles funding on it; with ``churn`` > 0, once it holds the position, it also
trades one lot out and back every ``churn`` seconds (market orders, the side from its position),
re-sending a request that got no report within
a second under the same client_order_id (idempotent), so that fills happen while the server dies. A
churn order is in flight until its final report (``filled``, ``cancelled``, ``rejected``): its
``accepted`` comes first and the fill may come much later (a server killed in between reports it after
its restart), and no next lot is sent while one is in flight, or the position, not yet showing the fill,
would make the next lot the same side again. It
writes a JSON line to ``out`` for every report it applies (order reports and account events, replayed
ones included, once each, in seq order). On
SIGUSR1 it stops trading, waits until no order of its own is in flight, then sends a marker (a cancel of
an id it never used, answered after everything before it) and writes its final view when the marker's
report arrives: position and funding per symbol.
"""

import json
import os
import signal
import time

from seqtrade.client import Strategy
from seqtrade.models import TERMINAL_STATUSES, OrderRequest, OrderType, Side


class Swapper(Strategy):
    symbols = ["BTC-USDT-SWAP"]

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.out = open(str(params["out"]), "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        self.sym = str(params.get("symbol", "BTC-USDT-SWAP"))
        self.side = Side(str(params.get("side", "buy")))
        self.size = float(params.get("size", 1.0))  # type: ignore[arg-type]
        self.churn = float(params.get("churn", 0.0))  # type: ignore[arg-type]
        # sent, no final report yet: the monotonic time it was sent, None once the server answered it
        self.pending: dict[str, tuple[OrderRequest, float | None]] = {}
        self.n = 0
        self.last_trade = 0.0
        self.quiet = False
        self.marker = ""
        signal.signal(signal.SIGUSR1, self._quiet)

    def write(self, **kw: object) -> None:
        self.out.write(json.dumps(kw) + "\n")

    def _apply_report(self, r):  # every order report applied, once, in seq order
        super()._apply_report(r)
        if r.status in TERMINAL_STATUSES:
            self.pending.pop(r.client_order_id, None)
        elif r.client_order_id in self.pending:  # accepted: the server has it, its end is on its way
            self.pending[r.client_order_id] = (self.pending[r.client_order_id][0], None)
        self.write(ev="r", seq=r.seq, coid=r.client_order_id, status=str(r.status), filled=r.filled_quantity)
        if self.marker and r.client_order_id == self.marker:
            p = self.positions.get(self.sym)
            self.write(
                ev="final", seq=r.seq, position=self.position(self.sym), funding=p.funding if p else 0.0
            )

    def _apply_account_event(self, e):  # every account event applied, once, in seq order
        super()._apply_account_event(e)
        self.write(
            ev="a", seq=e.seq, kind=str(e.kind), event_id=e.event_id, quantity=e.quantity, amount=e.amount
        )

    def _quiet(self, signum, frame) -> None:
        self.quiet = True

    def on_start(self) -> None:
        self.write(ev="start", pid=os.getpid())
        now = time.time_ns() // 1_000_000
        req = OrderRequest(self.strategy_id, f"{self.strategy_id}open", self.sym, self.side, OrderType.MARKET, None,
                           self.size, now)  # fmt: skip
        self._send(req)  # the same id at every (re)join: the server answers the order it has
        self.set_timer(0.05, self.act)

    def act(self) -> None:
        now = time.monotonic()
        for coid, (req, sent) in list(self.pending.items()):
            if sent is not None and now - sent > 1.0:  # no report: lost with a dead server, maybe; again
                req.timestamp = time.time_ns() // 1_000_000
                self._send(req)
                self.pending[coid] = (req, now)
        if self.quiet:  # the final view once no order is in flight: every fill of its own applied
            if not self.marker and not self.pending:
                self.marker = f"final{os.getpid()}{time.time_ns()}"
                self.cancel_order(self.marker)
            return
        if self.churn and not self.pending and now - self.last_trade >= self.churn:
            # one lot out of the held position and back, judged from the position itself (an order the
            # server rejected at a restart, journaled but never sent, must not make the next one the
            # same side); nothing before the position is held
            held = self.size if self.side is Side.BUY else -self.size
            lot = 0.01 if self.side is Side.BUY else -0.01
            pos = self.position(self.sym)
            if abs(pos - held) < 0.005:
                side = self.side
            elif abs(pos - held - lot) < 0.005:
                side = Side.SELL if self.side is Side.BUY else Side.BUY
            else:
                return
            self.last_trade = now
            self.n += 1
            req = OrderRequest(self.strategy_id, f"{self.strategy_id}c{os.getpid()}n{self.n}", self.sym, side,
                               OrderType.MARKET, None, 0.01, time.time_ns() // 1_000_000)  # fmt: skip
            self._send(req)
            self.pending[req.client_order_id] = (req, now)
