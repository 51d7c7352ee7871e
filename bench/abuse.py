"""Hostile neighbours on the order socket: floods of hellos and garbage while a good strategy trades.

Issue 12's abuse scenario, measured (not asserted): a real ``seqtrade serve`` (paper venue, still
market, log level INFO with its log lines in a file) and strategy ``good``, a raw pyzmq client that
sends market orders one at a time and times each order -> ``accepted`` report. Floods, each from its
own process with a PUSH socket sending as fast as it can:

- ``hellos``: hellos from fresh strategy ids (``h0``, ``h1``, ...);
- ``garbage``: random bytes, frames just under ``bus.max_frame_bytes``, valid topics with junk
  bodies and well-formed maps with wrong fields, naming other (mostly fresh) strategy ids;
- ``garbage+good``: the same, with a quarter of the frames naming ``good`` (they count against
  ``good``'s own bad-frame budget; its valid orders must still be answered);
- ``all``: the hellos and the garbage (other ids) at once.

During each flood ``status`` is asked on the control socket every 0.5 s (what ``seqtrade status``
does, timeout 5 s) and the ``seqtrade status`` command itself is run once. At the end a longer hello
flood starts and, once the server has dropped 1,000 of its hellos, the server gets SIGINT: the time
until the process exits.

    .venv/bin/python bench/abuse.py [--quick | --smoke] [--json out.json]

Prints a table: the good strategy's orders answered / stale-rejected / other-rejected / lost and
their round trip p50/p99/max idle and during each flood (ratio of p99s), status answers and times,
server RSS (before, after, peak), log lines written per flood, the machine's load, SIGINT-to-exit.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

from seqtrade import wire
from seqtrade.bench.run import SYMBOL as S
from seqtrade.bench.run import server_config
from seqtrade.config import parse_config
from seqtrade.models import Hello, OrderReport, OrderRequest, OrderStatus, OrderType, Side
from seqtrade.server.control import request as control_request

PLANS = {  # hellos, garbage frames, idle orders
    "full": (50_000, 100_000, 300),
    "quick": (10_000, 20_000, 100),
    "smoke": (300, 600, 10),
}
ORDER_TIMEOUT_S = 10.0  # an order without its report by then is counted lost
ORDER_GAP_S = 0.005  # between the good strategy's orders


def _push(run_dir: str) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)  # lingers: closing waits until the server has taken every frame
    push.connect(f"ipc://{run_dir}/order.ipc")
    return ctx, push


def hello_flood(run_dir: str, n: int, prefix: str, go: Any, out: Any) -> None:
    """``n`` hellos from fresh ids, as fast as the PUSH socket takes them."""
    ctx, push = _push(run_dir)
    frames = [wire.encode_message(Hello(f"{prefix}{i}", 0, f"n{i}")) for i in range(n)]
    go.wait()
    t0 = time.perf_counter()
    for f in frames:
        push.send(f)
    push.close()
    ctx.term()  # every frame taken by the server
    out.put(("hellos", n, round(time.perf_counter() - t0, 3)))


def garbage_frames(n: int, max_bytes: int, good_share: float, seed: int = 12) -> list[bytes]:
    """Four kinds in turn; ``good_share`` of the frames that name a strategy name ``good``."""
    rnd = random.Random(seed)
    frames = []
    for i in range(n):
        sid = "good" if rnd.random() < good_share else f"g{i}"
        kind = i % 4
        if kind == 0:  # random bytes; one in 25 just under the frame limit
            size = max_bytes - 64 if i % 100 == 0 else rnd.randrange(1, 300)
            frames.append(rnd.randbytes(size))
        elif kind == 1:  # a valid topic, a junk body
            frames.append(f"order_request/{sid}/".encode() + rnd.randbytes(rnd.randrange(1, 200)))
        elif kind == 2:  # a well-formed map with wrong fields
            body = {"type": "order_request", "strategy_id": sid, "client_order_id": i, "symbol": 7}
            frames.append(f"order_request/{sid}/".encode() + msgpack.packb(body))
        else:  # other request kinds, junk bodies
            topic = rnd.choice(["cancel_request", "amend_request", "hello", "heartbeat"])
            frames.append(f"{topic}/{sid}/".encode() + rnd.randbytes(rnd.randrange(1, 100)))
    return frames


def garbage_flood(run_dir: str, n: int, max_bytes: int, good_share: float, go: Any, out: Any) -> None:
    ctx, push = _push(run_dir)
    frames = garbage_frames(n, max_bytes, good_share)
    go.wait()
    t0 = time.perf_counter()
    for f in frames:
        push.send(f)
    push.close()
    ctx.term()  # every frame taken by the server
    out.put(("garbage", n, round(time.perf_counter() - t0, 3)))


class Good:
    """The well-behaved strategy: one market order at a time (buy, sell, ...), order -> accepted."""

    def __init__(self, ctx: zmq.Context, run_dir: str) -> None:
        self.push = ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect(f"ipc://{run_dir}/order.ipc")
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"report/good/")
        self.sub.connect(f"ipc://{run_dir}/report.ipc")
        self.n = 0
        while True:
            self.push.send(wire.encode_message(Hello("good", 10**12, "probe")))
            if self.sub.poll(100):
                break
        while self.sub.poll(50):
            self.sub.recv()

    def round_trip(self) -> tuple[str, float]:
        """("ok", µs) | ("stale", µs) | ("rejected", µs) | ("lost", timeout µs)."""
        self.n += 1
        coid = f"o{time.time_ns()}-{self.n}"
        side = Side.BUY if self.n % 2 else Side.SELL  # the paper account's balances hold
        t0 = time.perf_counter_ns()
        self.push.send(wire.encode_message(OrderRequest("good", coid, S, side, OrderType.MARKET, None, 0.001,
                                                        time.time_ns() // 1_000_000)))  # fmt: skip
        deadline = time.perf_counter() + ORDER_TIMEOUT_S
        while (left := deadline - time.perf_counter()) > 0:
            if not self.sub.poll(int(left * 1000) + 1):
                break
            msg = wire.decode_message(self.sub.recv())
            if isinstance(msg, OrderReport) and msg.client_order_id == coid:
                us = (time.perf_counter_ns() - t0) / 1000
                if msg.status is OrderStatus.REJECTED:
                    return ("stale" if "stale" in (msg.error_msg or "") else "rejected"), us
                return "ok", us
            # a fill of the previous order, a reject of a garbage frame naming "good": not timed
        return "lost", ORDER_TIMEOUT_S * 1e6


class StatusProbe(threading.Thread):
    """``status`` on the control socket every 0.5 s: answered or not, and how long it took."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.stop = threading.Event()
        self.times_ms: list[float] = []
        self.unanswered = 0

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                control_request(self.endpoint, "status", timeout=5.0)
                self.times_ms.append((time.perf_counter() - t0) * 1000)
            except (ConnectionError, RuntimeError):
                self.unanswered += 1
            self.stop.wait(max(0.0, 0.5 - (time.perf_counter() - t0)))


def pct(us: list[float]) -> dict[str, Any]:
    if not us:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    s = sorted(us)
    return {"n": len(s), "p50_ms": round(statistics.median(s) / 1000, 2),
            "p99_ms": round(s[min(len(s) - 1, int(len(s) * 0.99))] / 1000, 2), "max_ms": round(s[-1] / 1000, 2)}  # fmt: skip


def rss_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(rest.split()[0]) / 1024, 1)
    return fields


def log_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def shutdown_marks(path: Path, wall0: float) -> dict[str, float | None]:
    """Seconds from SIGINT to the server's "received SIGINT" and "server stopped" log lines."""
    marks: dict[str, float | None] = {"logged_received_s": None, "logged_stopped_s": None}
    for line in path.read_text(errors="replace").splitlines()[-200:]:
        key = ("logged_received_s" if "received SIGINT" in line
               else "logged_stopped_s" if "server stopped" in line else None)  # fmt: skip
        if key:
            t = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
            marks[key] = round(t - wall0, 3)
    return marks


def orders_result(results: list[tuple[str, float]]) -> dict[str, Any]:
    counts = {k: sum(1 for r, _ in results if r == k) for k in ("ok", "stale", "rejected", "lost")}
    return {"sent": len(results), **counts, **pct([us for r, us in results if r == "ok"])}


def run_flood(name: str, procs: list[Any], out: Any, go: Any, good: Good, cfg_path: Path,
              run_dir: str, server: subprocess.Popen, log_path: Path) -> dict[str, Any]:  # fmt: skip
    """Start the flood processes (already connected: they wait for ``go``), trade and probe status
    until they have sent everything and 0.5 s more; what the server and the good strategy saw."""
    rss0, lines0 = rss_mb(server.pid), log_lines(log_path)
    probe = StatusProbe(f"ipc://{run_dir}/control.ipc")
    results: list[tuple[str, float]] = []
    go.set()
    probe.start()
    t0 = time.perf_counter()
    cli: dict[str, Any] = {}
    t_end: float | None = None
    while True:
        results.append(good.round_trip())
        time.sleep(ORDER_GAP_S)
        if not cli and time.perf_counter() - t0 > 0.3:  # the command itself, once, during the flood
            c0, started_during = time.perf_counter(), any(p.is_alive() for p in procs)
            r = subprocess.run([sys.executable, "-m", "seqtrade.cli", "status", "--config", str(cfg_path)],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
            cli = {"rc": r.returncode, "s": round(time.perf_counter() - c0, 2), "started_during_flood": started_during, "ended_during_flood": any(p.is_alive() for p in procs)}  # fmt: skip
        if t_end is None and not any(p.is_alive() for p in procs):
            t_end = time.perf_counter()
        if t_end is not None and time.perf_counter() - t_end > 0.5:
            break
    probe.stop.set()
    probe.join()
    sent = {}
    while not out.empty():
        kind, n, s = out.get()
        sent[kind] = {"frames": n, "send_s": s, "per_s": round(n / s) if s else None}
    for p in procs:
        p.join()
    counters = control_request(f"ipc://{run_dir}/control.ipc", "status", timeout=10.0)["counters"]
    st = sorted(probe.times_ms)
    return {
        "flood": name,
        "sent": sent,
        "duration_s": round(time.perf_counter() - t0, 2),
        "good_orders": orders_result(results),
        "status": {"asked": len(st) + probe.unanswered, "answered": len(st), "unanswered": probe.unanswered,
                   "median_ms": round(statistics.median(st), 1) if st else None,
                   "max_ms": round(st[-1], 1) if st else None, "cli": cli},  # fmt: skip
        "rss_mb": {"before": rss0["VmRSS"], "after": rss_mb(server.pid)["VmRSS"]},
        "log_lines": log_lines(log_path) - lines0,
        "server_counters": {k: counters.get(k) for k in ("bad_frames", "bad_frames_dropped", "hellos_throttled")},
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="10k hellos, 20k garbage frames")
    g.add_argument("--smoke", action="store_true", help="tiny numbers: does it run and report")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary run directory and log")
    args = ap.parse_args()
    n_hellos, n_garbage, n_idle = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    d = Path(tempfile.mkdtemp(prefix="abuse-", dir="/tmp"))
    server = None
    mpc = mp.get_context("spawn")
    report: dict[str, Any] = {"plan": {"hellos": n_hellos, "garbage": n_garbage, "idle_orders": n_idle},
                              "cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    try:
        cfg_path = d / "server.toml"
        text = server_config(rate=0).replace('log_level = "WARNING"', 'log_level = "INFO"')
        cfg_path.write_text(text)
        config = parse_config(text, base_dir=str(d))
        max_bytes = config.bus.max_frame_bytes
        log_path = d / "serve.log"
        with log_path.open("wb") as logf:
            server = subprocess.Popen([sys.executable, "-m", "seqtrade.cli", "serve", "--plain", "--config",
                                       str(cfg_path)], stdout=logf, stderr=subprocess.STDOUT)  # fmt: skip
        run_dir = str(config.run_dir.resolve())
        ctx = zmq.Context()
        good = Good(ctx, run_dir)
        for _ in range(20):  # warm-up
            good.round_trip()
        rss_start = rss_mb(server.pid)
        lines0 = log_lines(log_path)
        idle = []
        for _ in range(n_idle):
            idle.append(good.round_trip())
            time.sleep(ORDER_GAP_S)
        report["idle"] = {"good_orders": orders_result(idle), "rss_mb": rss_start["VmRSS"],
                          "log_lines": log_lines(log_path) - lines0}  # fmt: skip
        floods: list[tuple[str, list[tuple[Any, tuple[Any, ...]]]]] = [
            ("hellos", [(hello_flood, (n_hellos, "h"))]),
            ("garbage", [(garbage_flood, (n_garbage, max_bytes, 0.0))]),
            ("garbage+good", [(garbage_flood, (n_garbage, max_bytes, 0.25))]),
            ("all", [(hello_flood, (n_hellos, "a")), (garbage_flood, (n_garbage, max_bytes, 0.0))]),
        ]
        report["floods"] = []
        for name, specs in floods:
            out, go = mpc.Queue(), mpc.Event()
            procs = [mpc.Process(target=fn, args=(run_dir, *a, go, out)) for fn, a in specs]
            for p in procs:
                p.start()
            time.sleep(1.0)  # spawned, frames built, connected
            r = run_flood(name, procs, out, go, good, cfg_path, run_dir, server, log_path)
            print(f"{name}: done", file=sys.stderr)
            report["floods"].append(r)
        report["rss_mb"] = {"start": rss_start["VmRSS"], "end": rss_mb(server.pid)["VmRSS"],
                            "peak": rss_mb(server.pid)["VmHWM"]}  # fmt: skip
        # SIGINT while a hello flood is on (ten times longer, so that it still runs): once the server
        # has been dropping its hellos for a while
        out, go = mpc.Queue(), mpc.Event()
        p = mpc.Process(target=hello_flood, args=(run_dir, 10 * n_hellos, "z", go, out))
        p.start()
        endpoint = f"ipc://{run_dir}/control.ipc"
        throttled = control_request(endpoint, "status", timeout=10.0)["counters"]["hellos_throttled"]
        go.set()
        while control_request(endpoint, "status", timeout=10.0)["counters"][
            "hellos_throttled"
        ] < throttled + min(1_000, n_hellos // 2):
            time.sleep(0.05)
        flood_on = p.is_alive()
        t0, wall0 = time.perf_counter(), time.time()
        server.send_signal(signal.SIGINT)
        try:
            rc = server.wait(timeout=30)
            report["sigint"] = {
                "exit_s": round(time.perf_counter() - t0, 3),
                "rc": rc,
                "flood_on": flood_on,
            }
        except subprocess.TimeoutExpired:
            report["sigint"] = {"exit_s": None, "rc": None, "flood_on": flood_on}
        p.kill()
        p.join()
        report["sigint"].update(shutdown_marks(log_path, wall0))
        report["log_lines_total"] = log_lines(log_path)
        report["log_bytes_total"] = log_path.stat().st_size
        report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        print(format_table(report))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
        return 0
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        if args.keep:
            print(f"kept {d}", file=sys.stderr)
        else:
            shutil.rmtree(d, ignore_errors=True)


def format_table(r: dict[str, Any]) -> str:
    idle = r["idle"]["good_orders"]
    rows = [f"plan: {r['plan']}; cpus {r['cpus']}; load (1/5/15 min) at start {r['loadavg_start']}, "
            f"at end {r['loadavg_end']}", "",
            f"{'phase':<13} {'sent/s':>16} {'orders ok/stale/rej/lost':>25} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'max ms':>7} {'p99 x':>6} {'status ok/asked':>15} {'st med/max ms':>14} {'RSS MB':>12} {'log':>5}",
            f"{'idle':<13} {'':>16} {idle['ok']:>8}/{idle['stale']}/{idle['rejected']}/{idle['lost']:<9} "
            f"{idle['p50_ms']:>7} {idle['p99_ms']:>7} {idle['max_ms']:>7} {'':>6} {'':>15} {'':>14} "
            f"{r['idle']['rss_mb']:>12} {r['idle']['log_lines']:>5}"]  # fmt: skip
    for f in r["floods"]:
        o, s = f["good_orders"], f["status"]
        rate = ",".join(str(v["per_s"]) for v in f["sent"].values())
        ratio = round(o["p99_ms"] / idle["p99_ms"], 1) if o["p99_ms"] and idle["p99_ms"] else None
        rows.append(f"{f['flood']:<13} {rate:>16} {o['ok']:>8}/{o['stale']}/{o['rejected']}/{o['lost']:<9} "
                    f"{o['p50_ms']:>7} {o['p99_ms']:>7} {o['max_ms']:>7} {ratio!s:>6} "
                    f"{s['answered']:>7}/{s['asked']:<7} {s['median_ms']!s:>6}/{s['max_ms']!s:<7} "
                    f"{f['rss_mb']['before']:>5}->{f['rss_mb']['after']:<5} {f['log_lines']:>5}")  # fmt: skip
    rows += ["", "seqtrade status (the command) during each flood: "
             + "; ".join(f"{f['flood']} rc {f['status']['cli'].get('rc')} in {f['status']['cli'].get('s')} s" for f in r["floods"]),
             "server counters after each flood: " + "; ".join(f"{f['flood']} {f['server_counters']}" for f in r["floods"]),
             f"server RSS MB: start {r['rss_mb']['start']}, end {r['rss_mb']['end']}, peak {r['rss_mb']['peak']}",
             f"log: {r['log_lines_total']} lines, {r['log_bytes_total']} bytes in all",
             f"SIGINT during a hello flood (flood on: {r['sigint']['flood_on']}) -> exit: {r['sigint']['exit_s']} s (rc {r['sigint']['rc']}; logged 'received' at {r['sigint']['logged_received_s']} s, 'stopped' at {r['sigint']['logged_stopped_s']} s)"]  # fmt: skip
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
