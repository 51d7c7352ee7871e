"""Server memory and restart time against the number of orders ever traded (issue 12).

Drives the real ``seqtrade serve`` (paper venue, account in memory, a still market so that market orders
fill at once) with a raw client (PUSH/SUB sockets, no Strategy) as fast as it goes: a window of market
orders in flight, buys and sells alternating, and the same resting limit orders open all along. At each
checkpoint it reads the server's RSS (/proc/<pid>/status, VmRSS). Then it measures restart to ready (the
control socket answers: recovery done, orders accepted) on the journal it built:

- after a clean stop (the snapshot covers everything);
- after kill -9 with ``--tail`` orders traded since the last snapshot;
- the same journal with the code of another source tree (``--baseline-src``, e.g. main's), which reads
  every journaled report at start.

    python bench/scale.py --checkpoints 10000,100000,300000 [--baseline-src /tmp/main/src] [--json out.json]
    python bench/scale.py --src /tmp/main/src ...    # the same with another tree's server (before/after)

Speed is measured here, never asserted in tests. Progress on stderr, the figures as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

from seqtrade import wire
from seqtrade.models import Hello, OrderReport, OrderRequest, OrderStatus, OrderType, Side, Welcome
from seqtrade.server.control import request

CONFIG = """
[server]
run_dir = "run"
status_interval = 0
log_fills = false
log_level = "WARNING"
heartbeat_timeout = 3600.0
shutdown_policy = "leave"

[journal]
synchronous = "normal"

[venue]
kind = "paper"
symbols = ["BTC-USDT"]

[venue.paper]
state_path = ""
tick_interval = 3600.0
tick_size = 0.1
lot_size = 0.001
min_size = 0.001
level_size = 1000000.0
start_prices = { "BTC-USDT" = 100.0 }
"""

SID = "scale"
SYMBOL = "BTC-USDT"
RESTING = 10


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Server:
    def __init__(self, base: Path, src: str | None = None) -> None:
        self.base = base
        self.src = src
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def run(self) -> Path:
        return self.base / "run"

    def start(self) -> float:
        """Start and wait until ready; the seconds from spawn to ready."""
        env = dict(os.environ)
        if self.src:
            env["PYTHONPATH"] = self.src
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "seqtrade.cli", "serve", "--config", str(self.base / "config.toml")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.base / "server.err", "ab"),  # noqa: SIM115 - the child owns it
        )
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError((self.base / "server.err").read_text()[-2000:])
            try:
                request(f"ipc://{self.run / 'control.ipc'}", "status", timeout=0.2)
                return time.perf_counter() - t0
            except ConnectionError:
                pass

    def stop(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=600)


class Client:
    def __init__(self, run: Path) -> None:
        self.ctx = zmq.Context()
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.SNDHWM, 0)
        self.push.connect(f"ipc://{run / 'order.ipc'}")
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, wire.topic("report", SID))
        self.sub.connect(f"ipc://{run / 'report.ipc'}")
        self.n = 0
        self.last_seq = 0

    def join(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.push.send(wire.encode_message(Hello(SID, 1 << 62, "scale")))  # no replay: just the welcome
            if self.sub.poll(200):
                while self.sub.poll(0):
                    msg = wire.decode_message(self.sub.recv())
                    if isinstance(msg, Welcome):
                        self.last_seq = msg.last_seq
                        return
        raise RuntimeError("no welcome")

    def order(self, side: Side, order_type: OrderType, price: float | None, prefix: str) -> None:
        self.n += 1
        self.push.send(
            wire.encode_message(
                OrderRequest(
                    SID,
                    f"{prefix}{self.n}",
                    SYMBOL,
                    side,
                    order_type,
                    price,
                    0.001,
                    time.time_ns() // 1_000_000,
                )
            )  # fmt: skip
        )

    def closed_reports(self, timeout_ms: int = 10_000) -> int:
        """Wait for reports; the number of orders they close (filled or rejected)."""
        if not self.sub.poll(timeout_ms):
            raise RuntimeError("no report within 10 s")
        closed = 0
        while True:
            try:
                frame = self.sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return closed
            msg = wire.decode_message(frame)
            if isinstance(msg, OrderReport):
                if msg.status is OrderStatus.REJECTED:
                    raise RuntimeError(f"rejected: {msg.error_msg}")
                closed += msg.status is OrderStatus.FILLED

    def trade(self, n: int, window: int, prefix: str) -> float:
        """``n`` market orders (each filled), at most ``window`` in flight; orders per second."""
        t0 = time.perf_counter()
        sent = done = 0
        while done < n:
            while sent < n and sent - done < window:
                self.order(Side.BUY if sent % 2 else Side.SELL, OrderType.MARKET, None, prefix)
                sent += 1
            done += self.closed_reports()
        return n / (time.perf_counter() - t0)

    def close(self) -> None:
        self.push.close(0)
        self.sub.close(0)
        self.ctx.term()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", default="10000,100000,300000", help="orders traded at each RSS reading")
    ap.add_argument("--window", type=int, default=500, help="orders in flight")
    ap.add_argument("--tail", type=int, default=20_000, help="orders after the last snapshot before kill -9")
    ap.add_argument("--baseline-src", default=None, help="a source tree (its src/) to time the restart with")
    ap.add_argument("--src", default=None, help="run the whole bench with the server of this source tree")
    ap.add_argument("--dir", default=None, help="keep the run here (default: a temp dir, removed)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    checkpoints = [int(x) for x in args.checkpoints.split(",")]
    base = Path(args.dir or tempfile.mkdtemp(prefix="stscale-", dir="/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    (base / "config.toml").write_text(CONFIG)  # keys the baseline code knows too
    out: dict[str, Any] = {"checkpoints": [], "restart": {}}
    server = Server(base, args.src)
    try:
        out["first_start_s"] = server.start()
        assert server.proc is not None
        client = Client(server.run)
        client.join()
        for _ in range(RESTING):  # the same open orders all along
            client.order(Side.BUY, OrderType.LIMIT, 50.0, "rest")
        traded = 0
        for cp in checkpoints:
            rate = client.trade(cp - traded, args.window, "m")
            traded = cp
            st = request(f"ipc://{server.run / 'control.ipc'}", "status")
            row = {"orders": traded, "rss_kb": rss_kb(server.proc.pid), "orders_per_s": round(rate),
                   "open": st["strategies"].get(SID, {}).get("open_orders")}  # fmt: skip
            out["checkpoints"].append(row)
            log(
                f"{traded:>9,} orders: RSS {row['rss_kb'] / 1024:.1f} MiB, {rate:,.0f} orders/s, open {row['open']}"
            )
        client.close()
        server.stop()  # clean: the snapshot covers everything
        journal = server.run / "journal.sqlite"
        out["journal_bytes"] = journal.stat().st_size
        out["restart"]["clean_stop_s"] = server.start()
        log(f"restart after a clean stop: {out['restart']['clean_stop_s']:.3f} s")
        client = Client(server.run)
        client.join()
        client.trade(args.tail, args.window, "t")
        client.close()
        server.stop(signal.SIGKILL)
        out["restart"]["kill9_tail_orders"] = args.tail
        out["restart"]["kill9_s"] = server.start()
        log(
            f"restart after kill -9 with up to {args.tail:,} orders after the snapshot: {out['restart']['kill9_s']:.3f} s"
        )
        server.stop()
        if args.baseline_src:
            (server.run / "snapshot.sqlite").unlink(missing_ok=True)  # (the other code ignores it anyway)
            other = Server(base, args.baseline_src)
            out["restart"]["baseline_s"] = other.start()
            other.stop()
            log(f"restart with {args.baseline_src}: {out['restart']['baseline_s']:.3f} s")
        first, last = out["checkpoints"][0], out["checkpoints"][-1]
        out["rss_ratio"] = round(last["rss_kb"] / first["rss_kb"], 3)
        log(f"RSS after {last['orders']:,} / after {first['orders']:,}: {out['rss_ratio']}")
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop(signal.SIGKILL)
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
