"""A backtest's strategy process per window, in a real process: CPU per thread and system calls.

    python bench/client_window_wake.py [--src DIR] [--windows 3000] [--gap-us 500] [--wrap 'strace -f -c -o F']

A fake server (plain pyzmq, in this process) answers the strategy's join, then plays the replay bench's
windows in lock-step: one ``window`` frame (100 BTC-USDT books and trades, the frames of
bench/client_window.py), then it waits for the strategy's ``sync_ack`` before the next, after spinning
``--gap-us`` (the server's own work between two windows: the strategy is asleep when the next frame
comes, as in a backtest). The strategy is the replay bench's, run by :func:`seqtrade.client.run_strategy`
in a process of its own started as a backtest starts it (the virtual clock's environment variable set).

Printed: the strategy's main thread's CPU per window (``time.thread_time``), its other threads'
(libzmq's I/O thread: the process's CPU less the main thread's), over the last four fifths of the
windows; ``--src`` runs the strategy on another source tree (a before/after: run the two back to back).
``--wrap 'strace -f -c -o FILE'`` counts the process's system calls (divide by the windows; the join's
are a few dozen). CPU time, not wall time: other load on the machine changes it less.
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
from client_window import window_frames  # (this directory: run as python bench/client_window_wake.py)

SID = "q0"
SYMBOL = "BTC-USDT"

STRATEGY = r"""
import json, sys, time
from seqtrade.client import Endpoints, Strategy, run_strategy

run_dir, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

class Quiet(Strategy):
    symbols = ["BTC-USDT"]

    def on_start(self):
        self.n = 0
        self.bid = None
        self.set_timer(0.5, self.quote)
        self.marks = []

    def on_book(self, b):
        self.n += 1
        if b.bids:
            self.bid = b.bids[0][0]
        if self.n % 100 == 1 and self.n // 100 in (n // 5, n - 1):
            self.marks.append((time.thread_time_ns(), time.process_time_ns()))
            if len(self.marks) == 2:
                (t0, p0), (t1, p1) = self.marks
                w = n - 1 - n // 5
                json.dump({"main_us": (t1 - t0) / w / 1e3, "other_us": ((p1 - p0) - (t1 - t0)) / w / 1e3,
                           "gaps": self._protocol.md_gaps}, open(out, "w"))
                self.stop()

    def on_trade(self, t):
        self.n += 1

    def quote(self):
        if self.bid is not None and not self.open_orders:
            self.buy_limit(self.symbols[0], self.bid, 0.01)

sys.exit(run_strategy(Quiet(), "q0", Endpoints.from_run_dir(run_dir), join_timeout=10))
"""


def serve(run_dir: Path, frames: list[bytes], gap_us: int, proc: subprocess.Popen[bytes]) -> None:
    from seqtrade import wire
    from seqtrade.models import Welcome

    ctx = zmq.Context.instance()
    md, rep, order = (ctx.socket(t) for t in (zmq.PUB, zmq.PUB, zmq.PULL))
    for sock, name in ((md, "md"), (rep, "report"), (order, "order")):
        sock.bind(f"ipc://{run_dir}/{name}.ipc")

    def request() -> dict[str, object] | None:
        while proc.poll() is None:
            if order.poll(100):
                d: dict[str, object] = msgpack.unpackb(order.recv().split(b"/", 2)[2])
                if d["type"] == "hello":
                    rep.send(wire.encode_message(Welcome(SID, str(d["nonce"]), 0, symbols=[SYMBOL])))
                return d
        return None

    # the join, then the first window again and again until the strategy's subscription is in
    while (d := request()) is not None and d["type"] != "heartbeat":
        pass
    while True:
        md.send(frames[0])
        if order.poll(20) and msgpack.unpackb(order.recv().split(b"/", 2)[2])["type"] == "sync_ack":
            break
    gap = gap_us / 1e9
    for frame in frames[1:]:
        if proc.poll() is not None:
            break
        end = time.perf_counter_ns() + gap * 1e9
        while time.perf_counter_ns() < end:
            pass
        md.send(frame)
        while (d := request()) is not None and d["type"] != "sync_ack":
            pass
        if d is None:
            break
    for s in (md, rep, order):
        s.close(linger=0)


def one(src: str, frames: list[bytes], gap_us: int, wrap: str = "") -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="stww-", dir="/tmp") as d:
        out = Path(d) / "out.json"
        env = dict(os.environ, SEQTRADE_VIRTUAL_CLOCK="1")
        if src:
            env["PYTHONPATH"] = src
        cmd = [*wrap.split(), sys.executable, "-c", STRATEGY, d, str(out), str(len(frames) - 1)]
        proc = subprocess.Popen(cmd, env=env)
        try:
            serve(Path(d), frames, gap_us, proc)
        finally:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        result: dict[str, float] = json.loads(out.read_text())
        return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default="", help="the source tree the strategy imports (PYTHONPATH)")
    p.add_argument("--windows", type=int, default=3000)
    p.add_argument("--gap-us", type=int, default=500, help="the fake server's work between two windows")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument(
        "--wrap", default="", help="a command the strategy runs under, e.g. 'strace -f -c -o FILE'"
    )
    args = p.parse_args()
    # window 0 repeats until the subscription is in (then the steps count from 1, once each)
    frames = window_frames(args.windows + 1, 100)
    for _ in range(args.runs):
        r = one(args.src, frames, args.gap_us, args.wrap)
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
        print(f"window of 100 in a real process: main thread {r['main_us']:6.1f} us, other threads "
              f"{r['other_us']:5.1f} us a window (gaps {r['gaps']:.0f}; load {load:.2f} per core)")  # fmt: skip


if __name__ == "__main__":
    main()
