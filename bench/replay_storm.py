"""A strategy far behind joins while saying hello every 100 ms; another strategy trades meanwhile.

Issue 12's replay-storm scenario, measured (not asserted): a real ``seqtrade serve`` (paper venue,
still market) whose journal holds ``--history`` reports of strategy ``far``; a raw client process
(plain pyzmq + the codec, no ClientProtocol) joins as ``far`` from seq 0, sending a hello every
100 ms with the newest seq it holds until it holds the welcome's last seq (on a gap it asks again
with a fresh nonce, as docs/protocol.md says). Meanwhile strategy ``other`` sends market orders one
at a time and times each order -> ``accepted`` report round trip, before (idle) and during the join.

    .venv/bin/python bench/replay_storm.py [--history 200000] [--orders 300]

Prints the join time, reports received, duplicates and missing, the hellos sent and the server's
replay counters, and the other strategy's round trip (p50/p99/max) idle and during the replay.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

from seqtrade import wire
from seqtrade.bench.run import SYMBOL as S
from seqtrade.bench.run import server_config
from seqtrade.config import parse_config
from seqtrade.models import Hello, OrderReport, OrderRequest, OrderStatus, OrderType, Side, Welcome
from seqtrade.server.control import request as control_request
from seqtrade.server.journal import Journal


def prefill(journal_path: Path, n: int) -> None:
    j = Journal(journal_path, synchronous="off")
    batch = []
    for seq in range(1, n + 1):
        r = OrderReport(seq, f"c{seq}", f"x{seq}", "far", S, "buy", "limit", 99.0, 1.0, OrderStatus.REJECTED,
                        error_msg="history", timestamp=1_700_000_000_000)  # fmt: skip
        batch.append(("", r, False))
        if len(batch) == 10_000:
            j.add_reports(batch, [])
            batch = []
    if batch:
        j.add_reports(batch, [])
    j.close()


def far_client(run_dir: str, out: Any, go: Any) -> None:
    """The joining strategy, in its own process: hello every 100 ms until it holds the welcome's seq."""
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(f"ipc://{run_dir}/order.ipc")
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"report/far/")
    sub.connect(f"ipc://{run_dir}/report.ipc")
    # the subscription is live once a hello asking for nothing is welcomed
    while True:
        push.send(wire.encode_message(Hello("far", 10**12, "probe")))
        if sub.poll(100) and isinstance(wire.decode_message(sub.recv()), Welcome):
            break
    while sub.poll(50):
        sub.recv()
    go.wait()
    counts: dict[int, int] = {}
    last, target, nonce, hellos, gaps = 0, None, "join-0", 0, 0
    t0 = time.perf_counter()
    next_hello = t0
    while target is None or last < target:
        now = time.perf_counter()
        if now >= next_hello:
            push.send(wire.encode_message(Hello("far", last, nonce)))
            hellos += 1
            next_hello = now + 0.1
        if not sub.poll(max(0, int((next_hello - time.perf_counter()) * 1000)) or 1):
            continue
        while True:
            try:
                msg = wire.decode_message(sub.recv(zmq.NOBLOCK))
            except zmq.Again:
                break
            if isinstance(msg, Welcome):
                if msg.nonce == nonce and target is None:
                    target = msg.last_seq
            elif isinstance(msg, OrderReport):
                counts[msg.seq] = counts.get(msg.seq, 0) + 1
                if msg.seq == last + 1:
                    last = msg.seq
                elif (
                    msg.seq > last + 1
                    and target is not None
                    and msg.seq <= target
                    and nonce.startswith("join")
                ):
                    gaps += 1
                    nonce = f"gap-{gaps}"  # lost on the way: ask again from where we are
                    target = None
    t = time.perf_counter() - t0
    n = target or 0
    out.put({
        "join_s": round(t, 3), "target": n, "received": sum(counts.values()),
        "distinct": len([s for s in counts if s <= n]), "duplicates": sum(c - 1 for c in counts.values() if c > 1),
        "missing": n - len([s for s in counts if s <= n]), "hellos": hellos, "gaps": gaps,
    })  # fmt: skip


class Other:
    """The other strategy: one market order at a time (buy, sell, ...), order -> accepted round trip."""

    def __init__(self, ctx: zmq.Context, run_dir: str) -> None:
        self.push = ctx.socket(zmq.PUSH)
        self.push.connect(f"ipc://{run_dir}/order.ipc")
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"report/other/")
        self.sub.connect(f"ipc://{run_dir}/report.ipc")
        self.n = 0
        while True:
            self.push.send(wire.encode_message(Hello("other", 10**12, "probe")))
            if self.sub.poll(100):
                break
        while self.sub.poll(50):
            self.sub.recv()

    def round_trip(self) -> float:
        self.n += 1
        coid = f"o{time.time_ns()}-{self.n}"
        t0 = time.perf_counter_ns()
        side = Side.BUY if self.n % 2 else Side.SELL  # buy, sell, ...: the paper account's balances hold
        self.push.send(wire.encode_message(OrderRequest("other", coid, S, side, OrderType.MARKET, None, 0.001,
                                                        time.time_ns() // 1_000_000)))  # fmt: skip
        while True:
            msg = wire.decode_message(self.sub.recv())
            if isinstance(msg, OrderReport) and msg.client_order_id == coid:
                assert msg.status is not OrderStatus.REJECTED, msg.error_msg
                return (time.perf_counter_ns() - t0) / 1000
            # the fill report of the previous order, or a welcome: not what we time


def stats(us: list[float]) -> dict[str, float]:
    s = sorted(us)
    return {"n": len(s), "p50_us": round(statistics.median(s)), "p99_us": round(s[int(len(s) * 0.99)]),
            "max_us": round(s[-1])}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--history", type=int, default=200_000)
    ap.add_argument("--orders", type=int, default=300, help="idle round trips measured before the join")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="strs-", dir="/tmp"))
    server = None
    try:
        cfg_path = d / "server.toml"
        text = server_config(rate=0)  # the bench's still paper market, journal as shipped
        cfg_path.write_text(text)
        config = parse_config(text, base_dir=str(d))
        config.run_dir.mkdir(mode=0o700)
        t = time.perf_counter()
        prefill(config.journal_path, args.history)
        print(
            f"journal: {args.history} reports of 'far' written in {time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )
        server = subprocess.Popen([sys.executable, "-m", "seqtrade.cli", "serve", "--config", str(cfg_path)])
        run_dir = str(config.run_dir.resolve())
        ctx = zmq.Context()
        other = Other(ctx, run_dir)
        for _ in range(50):  # warm-up
            other.round_trip()
        idle = [other.round_trip() for _ in range(args.orders)]
        mpc = mp.get_context("spawn")
        out, go = mpc.Queue(), mpc.Event()
        far = mpc.Process(target=far_client, args=(run_dir, out, go))
        far.start()
        time.sleep(1.0)  # the far client's subscription is live (it probes first)
        go.set()
        during = []
        while out.empty():
            during.append(other.round_trip())
        result = out.get()
        far.join()
        counters = control_request(f"ipc://{run_dir}/control.ipc", "status", timeout=5.0)["counters"]
        report = {
            "history": args.history,
            "far": result,
            "server": {k: counters[k] for k in ("replays", "hellos_coalesced", "reports_out")},
            "other_idle": stats(idle),
            "other_during_replay": stats(during),
        }
        report["ratio_p50"] = round(
            report["other_during_replay"]["p50_us"] / report["other_idle"]["p50_us"], 2
        )
        report["ratio_p99"] = round(
            report["other_during_replay"]["p99_us"] / report["other_idle"]["p99_us"], 2
        )
        print(json.dumps(report, indent=1))
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
