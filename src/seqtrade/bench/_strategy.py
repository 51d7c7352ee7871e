"""The benchmark's strategy process: a real ``seqtrade.client`` strategy that measures itself.

``python -m seqtrade.bench._strategy ticks|orders --run-dir DIR --id ID --out FILE ...``

- ``ticks``: subscribes to ``--symbols``; ``on_ticker`` takes ``time.time_ns()`` first thing and
  records ``now - ticker.gw_ns`` (the server stamps ``gw_ns`` just before its PUB send). Measures
  ``--duration`` seconds starting ``--warmup`` seconds after the first ticker; counts messages and the
  gaps in each symbol's ``seq`` (messages lost).
- ``orders``: ping-pong of ``--count`` market orders (buy, sell, buy, ...), each timed from before the
  ``buy_market``/``sell_market`` call to ``on_order`` seeing ``accepted`` and ``filled``
  (``perf_counter_ns``: one process, one clock).
- ``blast``: keeps ``--window`` market orders in flight until ``--count`` are done (filled or
  rejected); writes how long that took from the first send (order throughput).
- ``t2t``: answers each ticker with a market order; the server, run with ``SEQTRADE_TRACE``, takes
  the time from the venue handing it the ticker to the venue being handed the order.

On stop it writes its result file (JSON with HdrHistogram-encoded histograms) and exits.
"""

from __future__ import annotations

import argparse
import sys
import time
from array import array
from collections.abc import Sequence
from typing import Any

from .. import trace
from ..client import Endpoints, OrderReport, Strategy, Ticker, run_strategy
from .hist import write_result


class TickBench(Strategy):
    """Records tick latency and seq gaps in a window; stops at its end."""

    def __init__(
        self, *, symbols: list[str], warmup: float, duration: float, out: str, give_up: float
    ) -> None:
        super().__init__()
        self.symbols = symbols
        self.warmup_ns = int(warmup * 1e9)
        self.duration_ns = int(duration * 1e9)
        self.out = out
        self.give_up = give_up
        self.lat = array("q")
        self.win_start = 0
        self.win_end = 0
        self.last_seq: dict[str, int] = {}
        self.count = 0
        self.lost = 0
        self.started_at = 0.0
        self.last_tick_at = 0.0
        self.cpu0 = 0.0  # process CPU (all threads) when the window opened

    def on_start(self) -> None:
        self.started_at = self.last_tick_at = time.monotonic()
        self.set_timer(0.25, self._watchdog)

    def _watchdog(self) -> None:
        now = time.monotonic()
        if now - self.last_tick_at > self.give_up:
            self.log.error("no ticker for %.1f s: giving up", now - self.last_tick_at)
            self.stop()

    def on_ticker(self, ticker: Ticker) -> None:
        t = time.time_ns()
        if self.win_start and t >= self.win_start:
            if t >= self.win_end:
                self.stop()
                return
            if not self.count:
                self.cpu0 = time.process_time()
            self.lat.append(t - ticker.gw_ns)
            last = self.last_seq.get(ticker.symbol)
            if last is not None and ticker.seq != last + 1:
                self.lost += ticker.seq - last - 1
            self.last_seq[ticker.symbol] = ticker.seq
            self.count += 1
        elif not self.win_start:
            self.win_start = t + self.warmup_ns
            self.win_end = self.win_start + self.duration_ns
            self.last_tick_at = time.monotonic()
        if not self.count & 1023:
            self.last_tick_at = time.monotonic()

    def on_stop(self) -> None:
        now = time.time_ns()
        window = (min(now, self.win_end) - self.win_start) / 1e9 if self.win_start else 0.0
        cpu = time.process_time() - self.cpu0 if self.cpu0 else 0.0
        write_result(
            self.out,
            {"count": self.count, "lost": self.lost, "window_s": window, "md_gaps_total": self.md_gaps,
             "achieved_rate": self.count / window if window > 0 else 0.0, "errors": 0,
             "cpu_us_per_msg": round(cpu / self.count * 1e6, 3) if cpu and self.count else None},
            {"latency": self.lat},
        )  # fmt: skip


class OrderBench(Strategy):
    """Ping-pong market orders; records call -> accepted and call -> filled."""

    def __init__(self, *, symbol: str, count: int, warmup: int, quantity: float, out: str) -> None:
        super().__init__()
        self.symbol = symbol
        self.total = count + warmup
        self.warmup = warmup
        self.quantity = quantity
        self.out = out
        self.accepted = array("q")
        self.filled = array("q")
        self.i = 0
        self.t0 = 0
        self.coid = ""
        self.rejected: list[str] = []

    def on_start(self) -> None:
        self.set_timer(0.05, self._next, repeat=False)

    def _next(self) -> None:
        if self.i >= self.total:
            self.stop()
            return
        self.i += 1
        if trace.ON:
            t_call = time.time_ns()
        self.t0 = time.perf_counter_ns()
        if self.i & 1:
            self.coid = self.buy_market(self.symbol, self.quantity)
        else:
            self.coid = self.sell_market(self.symbol, self.quantity)
        if trace.ON:
            trace.mark(self.coid, "c_call", t_call)

    def on_order(self, report: OrderReport) -> None:
        t = time.perf_counter_ns()
        if report.client_order_id != self.coid:
            return
        status = report.status
        if status == "accepted":
            if self.i > self.warmup:
                self.accepted.append(t - self.t0)
        elif status == "filled":
            if self.i > self.warmup:
                self.filled.append(t - self.t0)
            self._next()
        elif status in ("rejected", "cancelled"):
            if len(self.rejected) < 5:
                self.rejected.append(f"{status}: {report.error_msg}")
            self._next()

    def on_stop(self) -> None:
        write_result(
            self.out,
            {
                "count": len(self.filled),
                "orders": self.i,
                "errors": len(self.rejected),
                "error_samples": self.rejected,
            },
            {"accepted": self.accepted, "filled": self.filled},
        )


class BlastBench(Strategy):
    """Keeps ``window`` market orders in flight (buy, sell, ...) until ``count`` are done."""

    def __init__(self, *, symbol: str, count: int, window: int, quantity: float, out: str) -> None:
        super().__init__()
        self.symbol, self.n, self.window, self.quantity, self.out = symbol, count, window, quantity, out
        self.sent = self.done = self.rejected = 0
        self.t0 = self.t1 = 0

    def on_start(self) -> None:
        self.t0 = time.perf_counter_ns()
        for _ in range(min(self.window, self.n)):
            self._one()

    def _one(self) -> None:
        if self.sent < self.n:
            self.sent += 1
            (self.buy_market if self.sent & 1 else self.sell_market)(self.symbol, self.quantity)

    def on_order(self, report: OrderReport) -> None:
        if report.status not in ("filled", "rejected", "cancelled"):
            return
        self.done += 1
        self.rejected += report.status != "filled"
        if self.done < self.n:
            self._one()
        else:
            self.t1 = time.perf_counter_ns()
            self.stop()

    def on_stop(self) -> None:
        elapsed = (self.t1 - self.t0) / 1e9 if self.t1 else 0.0
        write_result(self.out, {"orders": self.done, "elapsed_s": elapsed, "errors": self.rejected}, {})


class TickToTradeBench(Strategy):
    """Answers every ticker with a market order (buy, sell, buy, ...), ``--count`` after
    ``--warmup-orders``, then stops. The time is taken in the server (``seqtrade.trace``): the mark
    made here ties each order to the ticker it answers."""

    def __init__(self, *, symbol: str, count: int, warmup: int, quantity: float, give_up: float) -> None:
        super().__init__()
        self.symbols = [symbol]
        self.total = count + warmup
        self.quantity = quantity
        self.give_up = give_up
        self.i = 0
        self.last_tick_at = 0.0

    def on_start(self) -> None:
        self.last_tick_at = time.monotonic()
        self.set_timer(0.25, self._watchdog)

    def _watchdog(self) -> None:
        if time.monotonic() - self.last_tick_at > self.give_up:
            self.log.error("no ticker for %.1f s: giving up", self.give_up)
            self.stop()

    def on_ticker(self, ticker: Ticker) -> None:
        if self.i >= self.total:
            self.stop()
            return
        self.i += 1
        if self.i & 1:
            coid = self.buy_market(ticker.symbol, self.quantity)
        else:
            coid = self.sell_market(ticker.symbol, self.quantity)
        if trace.ON:
            trace.mark(coid, f"answers:{ticker.symbol}#{ticker.seq}")
        if not self.i & 63:
            self.last_tick_at = time.monotonic()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seqtrade.bench._strategy")
    p.add_argument("mode", choices=["ticks", "orders", "t2t", "blast"])
    p.add_argument("--run-dir", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--symbols", default="BTC-USDT")
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--warmup-orders", type=int, default=200)
    p.add_argument("--quantity", type=float, default=0.001)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--join-timeout", type=float, default=20.0)
    args = p.parse_args(argv)
    strategy: Any
    if args.mode == "ticks":
        strategy = TickBench(symbols=args.symbols.split(","), warmup=args.warmup, duration=args.duration,
                             out=args.out, give_up=5.0)  # fmt: skip
    elif args.mode == "blast":
        strategy = BlastBench(symbol=args.symbols.split(",")[0], count=args.count, window=args.window,
                              quantity=args.quantity, out=args.out)  # fmt: skip
    elif args.mode == "t2t":
        strategy = TickToTradeBench(symbol=args.symbols.split(",")[0], count=args.count,
                                    warmup=args.warmup_orders, quantity=args.quantity, give_up=5.0)  # fmt: skip
    else:
        strategy = OrderBench(symbol=args.symbols.split(",")[0], count=args.count, warmup=args.warmup_orders,
                              quantity=args.quantity, out=args.out)  # fmt: skip
    return run_strategy(
        strategy, args.id, Endpoints.from_run_dir(args.run_dir), join_timeout=args.join_timeout
    )


if __name__ == "__main__":
    sys.exit(main())
