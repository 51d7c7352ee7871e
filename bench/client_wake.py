"""The strategy process's cost per wake-up, in lock-step: one message per wake-up, whatever the load.

    python bench/client_wake.py [--src DIR] [--n 5000] [--gap-us 200]

A fake server (plain pyzmq + msgpack, in this process) answers the strategy's join, then:

- ``ticks``: sends one ticker frame (the server's template bytes), waits ``--gap-us`` so that the
  strategy is asleep again, and waits for the strategy's acknowledgement (on_ticker PUSHes one byte)
  before the next: every wake-up brings exactly one message, as at 10k ticks/s on an idle machine.
- ``orders``: the strategy sends a market order from ``on_order`` of the previous one's report; the
  fake server answers each order with one ``accepted`` report: the strategy's share of a round trip
  (build, encode, send, wake-up, decode, callback) without the gateway.

The strategy is a real :func:`seqtrade.client.run_strategy` process (``--src``: the source tree it
imports, for a before/after comparison: run the two back to back, interleaved). Printed per mode: the
strategy process's CPU (user + system, all threads, libzmq's I/O thread included) per message or per
round trip, read every 250 in the measuring window (the median and the least of those blocks: the
least is the cost with the fewest other processes in the way), and the latency (send -> on_ticker, or call -> on_order).
CPU time is much less sensitive to other load on the machine than latency; compare interleaved runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import zmq

SID = "wake"
SYMBOL = "BTC-USDT"

STRATEGY = r"""
import json, sys, time
import zmq
from seqtrade.client import Endpoints, Strategy, run_strategy

run_dir, out, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
BLOCK = 250  # messages per CPU reading: the median and the least of the blocks are printed
ack = zmq.Context.instance().socket(zmq.PUSH)
ack.connect(f"ipc://{run_dir}/ack.ipc")

class Wake(Strategy):
    symbols = ["BTC-USDT"]
    def __init__(self):
        super().__init__()
        self.lat, self.i, self.cpu0, self.t0 = [], 0, 0.0, 0
    def on_start(self):
        ack.send(b"s")
        if mode == "orders":
            self.set_timer(0.2, self.next, repeat=False)
    def _count(self, t):
        self.i += 1
        if self.i == n // 5:
            self.cpu0 = time.process_time()
            self.lat, self.blocks = [], []
        self.lat.append(t)
        if self.i > n // 5 and not self.i % BLOCK:
            c = time.process_time()
            self.blocks.append((c - self.cpu0) / BLOCK * 1e6)
            self.cpu0 = c
        if self.i >= n:
            k = len(self.lat)
            self.lat.sort()
            b = sorted(self.blocks)
            json.dump({"cpu_us": b[len(b) // 2], "cpu_min_us": b[0], "p50": self.lat[k // 2] / 1e3,
                       "p99": self.lat[k * 99 // 100] / 1e3}, open(out, "w"))
            self.stop()
            return False
        return True
    def on_ticker(self, t):
        now = time.time_ns()
        if self._count(now - t.gw_ns):
            ack.send(b"k")
    def next(self):
        self.t0 = time.perf_counter_ns()
        self.buy_market("BTC-USDT", 0.001)
    def on_order(self, r):
        if r.status == "accepted" and self._count(time.perf_counter_ns() - self.t0):
            self.next()

sys.exit(run_strategy(Wake(), "wake", Endpoints.from_run_dir(run_dir), join_timeout=10))
"""


def serve(run_dir: Path, mode: str, n: int, gap_us: int, proc: subprocess.Popen[bytes]) -> None:
    from seqtrade import wire
    from seqtrade.models import OrderReport, OrderStatus, Ticker, Welcome
    from seqtrade.tickerframes import TickerEncoder

    ctx = zmq.Context.instance()
    md, rep, order, ack = (ctx.socket(t) for t in (zmq.PUB, zmq.PUB, zmq.PULL, zmq.PULL))
    for sock, name in ((md, "md"), (rep, "report"), (order, "order"), (ack, "ack")):
        sock.bind(f"ipc://{run_dir}/{name}.ipc")
    seq = 0
    # the join: answer hellos until the strategy says it started
    while not ack.poll(0):
        if order.poll(50):
            d = msgpack.unpackb(order.recv().split(b"/", 2)[2])
            if d["type"] == "hello":
                rep.send(wire.encode_message(Welcome(SID, d["nonce"], 0, symbols=[SYMBOL])))
        if proc.poll() is not None:
            raise SystemExit(f"strategy exited with {proc.returncode}")
    ack.recv()
    enc = TickerEncoder(SYMBOL)
    gap = gap_us / 1e6
    while proc.poll() is None:
        if mode == "ticks":
            end = time.perf_counter() + gap
            while time.perf_counter() < end:
                pass
            seq += 1
            md.send(enc.encode(Ticker(SYMBOL, time.time_ns() // 1_000_000, 100.0, 99.9, 100.1, 1.0, 1.0, 10.0,
                                      seq, time.time_ns())))  # fmt: skip
            while not ack.poll(100) and proc.poll() is None:
                pass
            if proc.poll() is None:
                ack.recv()
        elif order.poll(100):
            d = msgpack.unpackb(order.recv().split(b"/", 2)[2])
            if d["type"] == "order_request":
                seq += 1
                rep.send(wire.encode_message(OrderReport(
                    seq, d["client_order_id"], f"x{seq}", SID, d["symbol"], d["side"], d["order_type"], 0.0,
                    d["quantity"], OrderStatus.ACCEPTED, timestamp=d["timestamp"], gw_ns=time.time_ns())))  # fmt: skip
    for s in (md, rep, order, ack):
        s.close(linger=0)


def one(src: str, mode: str, n: int, gap_us: int, wrap: str = "") -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="stw-", dir="/tmp") as d:
        out = Path(d) / "out.json"
        env = dict(os.environ, PYTHONPATH=src) if src else dict(os.environ)
        cmd = [*wrap.split(), sys.executable, "-c", STRATEGY, d, str(out), str(n), mode]
        proc = subprocess.Popen(cmd, env=env)
        try:
            serve(Path(d), mode, n, gap_us, proc)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        result: dict[str, float] = json.loads(out.read_text())
        return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--src", default="", help="the source tree the strategy imports (PYTHONPATH)")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--gap-us", type=int, default=200)
    p.add_argument("--modes", default="ticks,orders")
    p.add_argument(
        "--wrap", default="", help="a command the strategy runs under, e.g. 'strace -f -c -o FILE'"
    )
    args = p.parse_args()
    for mode in args.modes.split(","):
        r = one(args.src, mode, args.n, args.gap_us, args.wrap)
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
        print(f"{mode:6} cpu {r['cpu_us']:6.2f} (least {r['cpu_min_us']:6.2f}) us per {'message' if mode == 'ticks' else 'round trip'}"
              f"  latency p50 {r['p50']:7.1f} p99 {r['p99']:8.1f} us  (load {load:.2f} per core)")  # fmt: skip


if __name__ == "__main__":
    main()
