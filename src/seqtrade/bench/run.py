"""What ``seqtrade bench`` runs, and how it reports it.

Every seqtrade figure comes from real processes: ``seqtrade serve`` with the paper venue (bench mode
for market data, a still market for orders) and strategies built on :mod:`seqtrade.client`
(:mod:`seqtrade.bench._strategy`). Every baseline comes from plain pyzmq + msgpack processes
(:mod:`seqtrade.bench._raw`) run in the same invocation, so ratios compare like with like on one
machine. Subprocesses write HdrHistograms to result files; this process merges and prints them.

Scenarios (see bench/README.md for how to read them):

1. tick latency: server PUB send (``gw_ns``) -> ``on_ticker`` entered, at several rates;
   raw: PUB -> SUB, blocking ``recv`` + ``unpackb``, same pacing and message.
2. order round trip: ``buy_market``/``sell_market`` call -> ``on_order`` with ``accepted`` and with
   ``filled``, journal on (``synchronous = "normal"``); raw: PUSH -> PULL echo -> PUB -> SUB.
   2b. the same round trip in stages (``--only stages``): :mod:`seqtrade.trace` marks in the server
   and the strategy (``SEQTRADE_TRACE``), per-stage percentiles.
   2c. tick-to-trade (``--only tick2trade``): the venue hands the server a ticker -> the venue is
   handed the order ``on_ticker`` sent; raw: PUB -> SUB -> PUSH -> PULL.
3. fan-out: the highest rate that 1 and 3 subscribers each receive with zero loss (doubling, then
   bisecting); raw: the same search with the raw publisher and subscribers.
4. codec: encode + decode of one ticker, JSON vs MessagePack (and seqtrade's own wire functions).

Every run records the machine's load (1-minute average per core) before and during it and warns when
it was too busy for the figures to mean much.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from .books import books_section, scenario_books
from .hist import new_hist, read_result, summary

__all__ = ["main", "Plan", "PLANS", "run_bench", "format_table", "machine_info"]

SYMBOL = "BTC-USDT"


@dataclass(frozen=True)
class Plan:
    name: str
    rates: tuple[int, ...]
    tick_warmup: float
    tick_duration: float
    rt_count: int
    rt_warmup: int
    spin_us: tuple[int, ...]  # server bus.spin_us values for the round trip (the first is the target's)
    fan_start: int
    fan_max: int
    fan_bisect: int
    fan_warmup: float
    fan_duration: float
    fan_subscribers: tuple[int, ...] = (1, 3)
    codec_number: int = 100_000
    t2t_rate: int = 200  # ticks/s; each one answered with an order
    t2t_count: int = 2_000
    t2t_warmup: int = 200
    tp_count: int = 3_000  # order throughput: market orders per strategy
    tp_window: int = 8  # ... each strategy keeps this many in flight
    tp_strategies: int = 3


PLANS = {
    "full": Plan(
        "full", (1_000, 10_000, 100_000), 1.0, 5.0, 5_000, 500, (0, 30), 50_000, 3_200_000, 3, 0.5, 2.0
    ),
    "quick": Plan(
        "quick",
        (1_000, 10_000, 100_000),
        0.3,
        1.0,
        1_000,
        200,
        (0,),
        100_000,
        1_600_000,
        0,
        0.3,
        0.8,
        t2t_count=600,
        t2t_warmup=100,
        tp_count=1_000,
    ),
    "smoke": Plan(
        "smoke",
        (1_000, 10_000),
        0.2,
        0.5,
        200,
        50,
        (0,),
        20_000,
        20_000,
        0,
        0.2,
        0.5,
        (1, 3),
        20_000,
        200,
        100,
        20,
        100,
        4,
    ),
}

# Up to this rate the server paces each tick to its own time, as the raw publisher does (a busy wait
# on one core); above it, the paper venue emits what is due every millisecond (Trio's timers are
# millisecond-grained) and ticks leave in bursts.
SPIN_PACING_MAX = 20_000
SERVER_PATH = ""  # --server-path
PASS_FRACTION = 0.95  # a fan-out probe passes if nothing was lost and each got >= 95% of the rate


# ---------------------------------------------------------------------------- processes


class Procs:
    """The subprocesses of one scenario: started with their logs in the work dir, always reaped."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, args: list[str], extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(extra_env or {}))
        p = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.procs.append((name, p))
        return p

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.work / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait(self, procs: list[tuple[str, subprocess.Popen[bytes]]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for name, p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise BenchError(
                    f"{name} did not finish within {timeout:.0f} s:\n{self.log_tail(name)}"
                ) from None
            if p.returncode != 0:
                raise BenchError(f"{name} exited with {p.returncode}:\n{self.log_tail(name)}")

    def stop(self, name: str, p: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self) -> None:
        for _name, p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


class BenchError(Exception):
    pass


@contextlib.contextmanager
def scenario(root: Path, name: str) -> Iterator[tuple[Path, Procs]]:
    d = root / name
    d.mkdir()
    procs = Procs(d)
    try:
        yield d, procs
    finally:
        procs.close()


def server_config(*, rate: float, spin_us: int = 0, journal_sync: str = "normal", pacing: str = "") -> str:
    still = rate == 0
    pacing = pacing or ("spin" if 0 < rate <= SPIN_PACING_MAX else "batch")
    return f"""
[server]
run_dir = "run"
status_interval = 0
heartbeat_timeout = 30.0
shutdown_policy = "leave"
log_level = "WARNING"

[bus]
spin_us = {spin_us}

[venue]
kind = "paper"
symbols = ["{SYMBOL}"]

[venue.paper]
bench_rate = {float(rate)}
bench_pacing = "{pacing}"
tick_interval = {3600.0 if still else 0.25}
tick_size = 0.1
lot_size = 0.001
min_size = 0.001
level_size = 1000.0
# The paper venue stands in for the exchange: its own account file is not part of the gateway's
# cost (on OKX that time is the network's). The gateway's journal stays on, as shipped.
state_path = ""

[journal]
synchronous = "{journal_sync}"
"""


def start_server(
    d: Path,
    procs: Procs,
    *,
    rate: float,
    spin_us: int = 0,
    journal_sync: str = "normal",
    extra_env: dict[str, str] | None = None,
    pacing: str = "",
) -> subprocess.Popen[bytes]:
    cfg = d / "server.toml"
    cfg.write_text(server_config(rate=rate, spin_us=spin_us, journal_sync=journal_sync, pacing=pacing))
    if SERVER_PATH:  # --server-path: this run's servers from another source tree (A/B comparisons)
        extra_env = {**(extra_env or {}), "PYTHONPATH": SERVER_PATH}
    return procs.start("server", ["-m", "seqtrade.cli", "serve", "--config", str(cfg)], extra_env)


def server_counters(d: Path) -> dict[str, Any]:
    from ..server.control import request

    try:
        result = request(f"ipc://{d / 'run' / 'control.ipc'}", "status", timeout=5.0)
        return dict(result["counters"])
    except (ConnectionError, RuntimeError) as exc:
        return {"error": str(exc)}


# ---------------------------------------------------------------------------- scenarios


@dataclass
class Sink:
    """Merged result of one scenario's measuring processes."""

    per_process: list[dict[str, Any]] = field(default_factory=list)
    hist: HdrHistogram = field(default_factory=new_hist)
    publisher: dict[str, Any] = field(default_factory=dict)  # the raw publisher's own result

    @property
    def cpu_us_per_msg(self) -> float | None:
        """The subscribers' mean CPU (user + system, all threads) per message received in the window."""
        cpus = [float(r["cpu_us_per_msg"]) for r in self.per_process if r.get("cpu_us_per_msg")]
        return round(sum(cpus) / len(cpus), 2) if cpus else None

    @property
    def lost(self) -> int:
        return sum(int(r["lost"]) for r in self.per_process)

    @property
    def min_rate(self) -> float:
        return min((float(r["achieved_rate"]) for r in self.per_process), default=0.0)


def _collect(outs: list[Path], key: str) -> Sink:
    sink = Sink()
    for out in outs:
        res, hists = read_result(out)
        sink.per_process.append(res)
        sink.hist.add(hists[key])
    return sink


def ticks_seqtrade(
    root: Path, tag: str, rate: float, n: int, warmup: float, duration: float
) -> tuple[Sink, dict[str, Any]]:
    with scenario(root, tag) as (d, procs):
        server = start_server(d, procs, rate=rate)
        cpu0 = _cpu_when_listening(d, server)
        outs = [d / f"s{i}.json" for i in range(n)]
        strategies = [
            (
                f"strategy{i}",
                procs.start(
                    f"strategy{i}",
                    [
                        "-m",
                        "seqtrade.bench._strategy",
                        "ticks",
                        "--run-dir",
                        str(d / "run"),
                        "--id",
                        f"bench{i}",
                        "--out",
                        str(out),
                        "--symbols",
                        SYMBOL,
                        "--warmup",
                        str(warmup),
                        "--duration",
                        str(duration),
                    ],
                ),
            )  # fmt: skip
            for i, out in enumerate(outs)
        ]
        procs.wait(strategies, 30 + warmup + duration)
        counters = server_counters(d)
        cpu1 = process_cpu_s(server.pid)
        procs.stop("server", server)
        md_out = counters.get("md_out")
        if cpu0 is not None and cpu1 is not None and md_out:
            # The server's CPU (all its threads, libzmq's included) per message it published.
            counters["server_cpu_us_per_msg"] = round((cpu1 - cpu0) / md_out * 1e6, 2)
        return _collect(outs, "latency"), counters


def ticks_raw(root: Path, tag: str, rate: float, n: int, warmup: float, duration: float) -> Sink:
    with scenario(root, tag) as (d, procs):
        ep = f"ipc://{d / 'md.ipc'}"
        pub_out = d / "pub.json"
        pub = procs.start("pub", ["-m", "seqtrade.bench._raw", "pub", "--endpoint", ep, "--rate", str(rate),
                                  "--out", str(pub_out)])  # fmt: skip
        outs = [d / f"s{i}.json" for i in range(n)]
        subs = [
            (
                f"sub{i}",
                procs.start(
                    f"sub{i}",
                    [
                        "-m",
                        "seqtrade.bench._raw",
                        "sub",
                        "--endpoint",
                        ep,
                        "--out",
                        str(out),
                        "--warmup",
                        str(warmup),
                        "--duration",
                        str(duration),
                    ],
                ),
            )  # fmt: skip
            for i, out in enumerate(outs)
        ]
        procs.wait(subs, 30 + warmup + duration)
        procs.stop("pub", pub)
        sink = _collect(outs, "latency")
        if pub_out.exists():
            sink.publisher = read_result(pub_out)[0]
        return sink


def round_trip_seqtrade(
    root: Path,
    tag: str,
    count: int,
    warmup: int,
    spin_us: int,
    journal_sync: str = "normal",
    trace_dir: Path | None = None,
) -> tuple[dict[str, Any], dict[str, HdrHistogram]]:
    env = {"SEQTRADE_TRACE": str(trace_dir)} if trace_dir is not None else None
    with scenario(root, tag) as (d, procs):
        server = start_server(d, procs, rate=0, spin_us=spin_us, journal_sync=journal_sync, extra_env=env)
        cpu0 = _cpu_when_listening(d, server)  # the server's CPU time per order: from when it listens
        out = d / "orders.json"
        p = procs.start("strategy", [
            "-m", "seqtrade.bench._strategy", "orders", "--run-dir", str(d / "run"), "--id", "benchorders",
            "--out", str(out), "--symbols", SYMBOL, "--count", str(count), "--warmup-orders", str(warmup),
        ], env)  # fmt: skip
        procs.wait([("strategy", p)], 60 + count * 0.01)
        cpu1 = process_cpu_s(server.pid)
        procs.stop("server", server)
        res, hists = read_result(out)
        if res.get("errors"):
            raise BenchError(f"orders were rejected: {res.get('error_samples')}")
        if cpu0 is not None and cpu1 is not None and res.get("orders"):
            res["server_cpu_us_per_order"] = round((cpu1 - cpu0) / res["orders"] * 1e6, 1)
        return res, hists


def _cpu_when_listening(d: Path, server: subprocess.Popen[bytes]) -> float | None:
    """The server's CPU seconds once it listens (its start-up left out of a per-message figure)."""
    deadline = time.monotonic() + 30
    while not (d / "run" / "order.ipc").exists() and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return process_cpu_s(server.pid)


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def round_trip_raw(root: Path, tag: str, count: int, warmup: int) -> HdrHistogram:
    with scenario(root, tag) as (d, procs):
        order, report = f"ipc://{d / 'order.ipc'}", f"ipc://{d / 'report.ipc'}"
        echo = procs.start(
            "echo", ["-m", "seqtrade.bench._raw", "echo", "--order", order, "--report", report]
        )
        out = d / "rt.json"
        p = procs.start("rt", [
            "-m", "seqtrade.bench._raw", "rt", "--order", order, "--report", report, "--out", str(out),
            "--count", str(count), "--warmup", str(warmup),
        ])  # fmt: skip
        procs.wait([("rt", p)], 60 + count * 0.01)
        procs.stop("echo", echo)
        _, hists = read_result(out)
        return hists["round_trip"]


def _throughput(outs: list[Path]) -> dict[str, Any]:
    """Orders per second of a throughput run: every client's orders over the slowest one's time."""
    res = [read_result(out)[0] for out in outs]
    orders = sum(int(r["orders"]) for r in res)
    slowest = max(float(r["elapsed_s"]) for r in res)
    errors = sum(int(r.get("errors", 0)) for r in res)
    if errors:
        raise BenchError(f"order throughput: {errors} orders were not filled")
    return {
        "orders": orders,
        "slowest_s": round(slowest, 4),
        "orders_per_s": round(orders / slowest, 1) if slowest else 0.0,
    }


def throughput_seqtrade(root: Path, k: int, n: int, window: int, journal_sync: str) -> dict[str, Any]:
    """``k`` strategies each keeping ``window`` market orders in flight until ``n`` are filled."""
    with scenario(root, "tp") as (d, procs):
        server = start_server(d, procs, rate=0, journal_sync=journal_sync)
        cpu0 = _cpu_when_listening(d, server)
        outs = [d / f"tp{i}.json" for i in range(k)]
        ps = [(f"blast{i}", procs.start(f"blast{i}", [
            "-m", "seqtrade.bench._strategy", "blast", "--run-dir", str(d / "run"), "--id", f"blast{i}",
            "--out", str(out), "--symbols", SYMBOL, "--count", str(n), "--window", str(window),
        ])) for i, out in enumerate(outs)]  # fmt: skip
        procs.wait(ps, 60 + n * k * 0.005)
        cpu1 = process_cpu_s(server.pid)
        procs.stop("server", server)
        out = _throughput(outs)
        if cpu0 is not None and cpu1 is not None and out["orders"]:
            out["server_cpu_us_per_order"] = round((cpu1 - cpu0) / out["orders"] * 1e6, 1)
        return out


def throughput_raw(root: Path, k: int, n: int, window: int) -> dict[str, Any]:
    """The same with plain pyzmq: ``k`` PUSH/SUB clients and one PULL/PUB echo process."""
    with scenario(root, "tpraw") as (d, procs):
        order, report = f"ipc://{d / 'order.ipc'}", f"ipc://{d / 'report.ipc'}"
        echo = procs.start(
            "echo", ["-m", "seqtrade.bench._raw", "echo", "--order", order, "--report", report]
        )
        outs = [d / f"tp{i}.json" for i in range(k)]
        ps = [(f"blast{i}", procs.start(f"blast{i}", [
            "-m", "seqtrade.bench._raw", "blast", "--order", order, "--report", report, "--id", f"raw{i}",
            "--out", str(out), "--count", str(n), "--window", str(window),
        ])) for i, out in enumerate(outs)]  # fmt: skip
        procs.wait(ps, 60 + n * k * 0.005)
        procs.stop("echo", echo)
        return _throughput(outs)


# The order round trip in stages (seqtrade.trace marks): (label, from mark, to mark); a mark with
# ":" is taken on the "accepted" report of the order, the others on the request.
STAGES = (
    ("strategy: build, encode, send", "c_call", "c_sent"),
    ("transport + server wake-up", "c_sent", "s_wake"),
    ("server: decode", "s_wake", "s_decoded"),
    ("server: checks (engine)", "s_decoded", "s_checked"),
    ("server: journal the order (log write)", "s_checked", "s_journaled"),
    ("server: venue hand-off + paper fill", "s_journaled", "s_placed"),
    ("server: to the report stage", "s_placed", ":r_wake"),
    ("server: number + journal reports (log write)", ":r_wake", ":r_committed"),
    ("server: report encode + publish", ":r_committed", ":r_published"),
    ("transport + strategy wake-up", ":r_published", ":c_recv"),
    ("strategy: decode", ":c_recv", ":c_decoded"),
    ("strategy: on_order callback", ":c_decoded", ":c_done"),
    ("total: call -> on_order(accepted) returned", "c_call", ":c_done"),
)


def read_trace(trace_dir: Path, warmup: int) -> dict[str, dict[str, float]]:
    """Per stage: µs percentiles over the orders (the first ``warmup`` orders left out)."""
    marks = _read_marks(trace_dir)
    orders = sorted((m["c_call"], k) for k, m in marks.items() if "c_call" in m and ":" not in k)
    out: dict[str, dict[str, float]] = {}
    for label, a, b in STAGES:
        h = new_hist()
        for _, coid in orders[warmup:]:
            req, acc = marks[coid], marks.get(f"{coid}:accepted", {})
            ta = acc.get(a[1:]) if a.startswith(":") else req.get(a)
            tb = acc.get(b[1:]) if b.startswith(":") else req.get(b)
            if ta is not None and tb is not None:
                h.record_value(max(tb - ta, 1))  # a clock step backwards counts as ~0
        out[label] = summary(h)
    return out


def stage_breakdown(root: Path, count: int, warmup: int, journal_sync: str) -> dict[str, Any]:
    """The round trip with ``SEQTRADE_TRACE`` set in the server and the strategy: time per stage."""
    trace_dir = root / "trace"
    trace_dir.mkdir()
    res, hists = round_trip_seqtrade(root, "stages", count, warmup, 0, journal_sync, trace_dir)
    return {"stages": read_trace(trace_dir, warmup), "accepted": summary(hists["accepted"])}


def _read_marks(trace_dir: Path) -> dict[str, dict[str, int]]:
    marks: dict[str, dict[str, int]] = {}
    for f in trace_dir.glob("*.trace"):
        for line in f.read_text().splitlines():
            key, stage, ns = line.split(" ")
            marks.setdefault(key, {})[stage] = int(ns)
    return marks


def tick_to_trade_seqtrade(root: Path, rate: int, count: int, warmup: int, journal_sync: str) -> HdrHistogram:
    """Venue hands the server a ticker (``publish_market``) -> the venue is handed the order a strategy
    sent from ``on_ticker`` (``place_order``; the order row is journaled by then). Timed from the
    server's ``seqtrade.trace`` marks, so the server runs with them on."""
    trace_dir = root / "t2t-trace"
    trace_dir.mkdir()
    env = {"SEQTRADE_TRACE": str(trace_dir)}
    with scenario(root, "t2t") as (d, procs):
        server = start_server(d, procs, rate=rate, journal_sync=journal_sync, extra_env=env, pacing="batch")
        p = procs.start("strategy", [
            "-m", "seqtrade.bench._strategy", "t2t", "--run-dir", str(d / "run"), "--id", "benchtrader",
            "--out", str(d / "unused.json"), "--symbols", SYMBOL, "--count", str(count),
            "--warmup-orders", str(warmup),
        ], env)  # fmt: skip
        procs.wait([("strategy", p)], 60 + (count + warmup) / rate)
        procs.stop("server", server)
    marks = _read_marks(trace_dir)
    answered = []
    for m in marks.values():
        tick = next((st.split(":", 1)[1] for st in m if st.startswith("answers:")), None)
        t0 = marks.get(tick, {}).get("v_tick") if tick else None
        t1 = m.get("s_journaled")
        if t0 is not None and t1 is not None:
            answered.append((t0, t1 - t0))
    answered.sort()
    h = new_hist()
    for _, ns in answered[warmup : warmup + count]:  # the strategy may answer a few ticks past the plan
        h.record_value(max(ns, 1))
    return h


def tick_to_trade_raw(root: Path, rate: int, count: int, warmup: int) -> HdrHistogram:
    with scenario(root, "t2traw") as (d, procs):
        md, order = f"ipc://{d / 'md.ipc'}", f"ipc://{d / 'order.ipc'}"
        out = d / "t2t.json"
        venue = procs.start("venue", [
            "-m", "seqtrade.bench._raw", "venue", "--md", md, "--order", order, "--rate", str(rate),
            "--count", str(count), "--warmup", str(warmup), "--out", str(out),
        ])  # fmt: skip
        trader = procs.start("trader", ["-m", "seqtrade.bench._raw", "trader", "--md", md, "--order", order])
        procs.wait([("venue", venue)], 70 + (count + warmup) / rate)
        procs.stop("trader", trader)
        _, hists = read_result(out)
        return hists["tick_to_trade"]


def codec_cost(number: int) -> dict[str, float]:
    """µs for encode + decode of one ticker: MessagePack, stdlib JSON, and seqtrade's wire functions."""
    import msgpack

    from .. import wire
    from ..models import Ticker

    ticker = Ticker(SYMBOL, 1_700_000_000_000, 60_000.1, 60_000.0, 60_000.2, 0.5123, 0.8765, 1234.5678, 42,
                    1_700_000_000_000_000_000)  # fmt: skip
    frame = wire.encode_message(ticker)
    _, _, body = wire.decode_frame(frame)
    packb, unpackb = msgpack.packb, msgpack.unpackb
    dumps, loads = json.dumps, json.loads

    def best(stmt: Any) -> float:
        return min(timeit.repeat(stmt, number=number, repeat=3)) / number * 1e6

    out = {
        "msgpack_us": best(lambda: unpackb(packb(body))),
        "json_us": best(lambda: loads(dumps(body).encode())),
        "seqtrade_wire_us": best(lambda: wire.decode_message(wire.encode_message(ticker))),
    }
    fast = getattr(wire, "decode_ticker_frame", None)
    if fast is not None:
        out["seqtrade_wire_fast_decode_us"] = best(lambda: fast(wire.encode_message(ticker)))
    out["json_over_msgpack"] = out["json_us"] / out["msgpack_us"]
    return {k: round(v, 3) for k, v in out.items()}


# ---------------------------------------------------------------------------- the run


BUSY_PER_CORE = 0.5  # 1-minute load per core before the start above which the figures mean little


def load_per_core() -> float:
    return round(os.getloadavg()[0] / (os.cpu_count() or 1), 2)


class Progress:
    """Progress lines on stderr; also samples the machine's load at each step (``loads``)."""

    def __init__(self, enabled: bool = True) -> None:
        self.t0 = time.monotonic()
        self.enabled = enabled
        self.loads: list[float] = []  # 1-minute load average per core, at each progress line

    def __call__(self, msg: str) -> None:
        self.loads.append(load_per_core())
        if self.enabled:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {msg} (load {self.loads[-1]:.2f}/core)", file=sys.stderr,
                  flush=True)  # fmt: skip


def load_verdict(before: float, during: list[float]) -> dict[str, Any]:
    """The machine's load around a run, and whether it was too busy for the figures to mean much.

    ``before``: the 1-minute load average per core when the run started (other processes only);
    ``during``: samples while it ran (they include the benchmark's own processes)."""
    busy = before > BUSY_PER_CORE
    return {
        "cores": os.cpu_count(),
        "before_per_core": before,
        "during_max_per_core": max(during, default=before),
        "during_mean_per_core": round(sum(during) / len(during), 2) if during else before,
        "busy": busy,
        "warning": (
            f"the machine was busy: 1-minute load {before:.2f} per core before the start (> {BUSY_PER_CORE}); "
            "other processes share the cores, so latencies (p99 most) and ceilings say little: compare "
            "ratios within this run only, and repeat on an idle machine"
        ) if busy else "",
    }  # fmt: skip


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 3)


def _ratios(st: dict[str, Any], raw: dict[str, Any]) -> dict[str, float | None]:
    return {k: _ratio(st.get(f"{k}_us"), raw.get(f"{k}_us")) for k in ("p50", "p90", "p99", "p99_9", "max")}


def _fmt_rate(r: float) -> str:
    if r >= 1_000_000:
        return f"{r / 1e6:.2f}M"
    if r >= 1000:
        return f"{r / 1e3:.0f}k"
    return f"{r:.0f}"


def search_fanout(
    root: Path, kind: str, n: int, plan: Plan, progress: Progress, counter: list[int]
) -> dict[str, Any]:
    """Highest rate each of ``n`` subscribers receives with zero loss: double, then bisect."""
    probes: list[dict[str, Any]] = []

    def probe(rate: int) -> bool:
        counter[0] += 1
        tag = f"f{counter[0]}"
        counters: dict[str, Any] = {}
        if kind == "seqtrade":
            sink, counters = ticks_seqtrade(root, tag, rate, n, plan.fan_warmup, plan.fan_duration)
        else:
            sink = ticks_raw(root, tag, rate, n, plan.fan_warmup, plan.fan_duration)
        dropped = int(counters.get("md_dropped", 0))
        ok = sink.lost == 0 and dropped == 0 and sink.min_rate >= PASS_FRACTION * rate
        probes.append({"rate": rate, "pass": ok, "lost": sink.lost, "server_dropped": dropped,
                       "min_achieved_rate": round(sink.min_rate), "p50_us": summary(sink.hist)["p50_us"]})  # fmt: skip
        progress(f"  fan-out {kind} x{n} @ {_fmt_rate(rate)}/s: {'ok' if ok else 'FAIL'} (lost {sink.lost}, "
                 f"server dropped {dropped}, slowest got {_fmt_rate(sink.min_rate)}/s)")  # fmt: skip
        return ok

    good, bad = 0, 0
    rate = plan.fan_start
    while True:
        if probe(rate):
            good = rate
            if rate * 2 > plan.fan_max:
                break
            rate *= 2
        else:
            bad = rate
            if good or rate <= plan.fan_start // 8:
                break
            rate //= 2  # the start failed: halve until something passes
    if bad and good:
        for _ in range(plan.fan_bisect):
            mid = (good + bad) // 2
            if probe(mid):
                good = mid
            else:
                bad = mid
    best = next((p for p in probes if p["rate"] == good and p["pass"]), None)
    return {
        "max_zero_loss_rate": good,
        "achieved_rate": best["min_achieved_rate"] if best else 0,
        "first_failing_rate": bad or None,
        "capped_by_search": bool(good and not bad),
        "probes": probes,
    }


@dataclass
class Run:
    """What a scenario gets: where to work, the plan, and where its results and histograms go."""

    root: Path
    plan: Plan
    progress: Progress
    journal_sync: str
    results: dict[str, Any]
    hists: dict[str, HdrHistogram]


def scenario_ticks(run: Run) -> None:
    """1. tick latency at each of the plan's rates, seqtrade and raw."""
    plan, progress, root = run.plan, run.progress, run.root
    tick = []
    for rate in plan.rates:
        progress(f"tick latency @ {_fmt_rate(rate)}/s: raw pyzmq")
        raw = ticks_raw(root, f"r{rate}", rate, 1, plan.tick_warmup, plan.tick_duration)
        progress(f"tick latency @ {_fmt_rate(rate)}/s: seqtrade")
        st, counters = ticks_seqtrade(root, f"t{rate}", rate, 1, plan.tick_warmup, plan.tick_duration)
        s_st, s_raw = summary(st.hist), summary(raw.hist)
        s_st.update(lost=st.lost, achieved_rate=round(st.min_rate), server_dropped=counters.get("md_dropped"),
                    server_cpu_us_per_msg=counters.get("server_cpu_us_per_msg"),
                    client_cpu_us_per_msg=st.cpu_us_per_msg)  # fmt: skip
        s_raw.update(lost=raw.lost, achieved_rate=round(raw.min_rate), client_cpu_us_per_msg=raw.cpu_us_per_msg,
                     server_cpu_us_per_msg=raw.publisher.get("cpu_us_per_msg"))  # fmt: skip
        tick.append({"rate": rate, "seqtrade": s_st, "raw": s_raw, "ratio": _ratios(s_st, s_raw)})
        run.hists[f"tick seqtrade {_fmt_rate(rate)}/s"] = st.hist
        run.hists[f"tick raw {_fmt_rate(rate)}/s"] = raw.hist
        progress(f"  p50 {s_st['p50_us']} µs vs raw {s_raw['p50_us']} µs; lost {st.lost} / raw {raw.lost}")
    run.results["tick_latency"] = tick


def scenario_orders(run: Run) -> None:
    """2. order round trip (ping-pong), seqtrade at each spin_us, and raw."""
    plan, progress, root, journal_sync = run.plan, run.progress, run.root, run.journal_sync
    progress(f"order round trip: raw pyzmq PUSH/PULL + PUB/SUB echo, {plan.rt_count} requests")
    raw_rt = round_trip_raw(root, "rtraw", plan.rt_count, plan.rt_warmup)
    s_raw = summary(raw_rt)
    run.hists["round trip raw"] = raw_rt
    runs = []
    for spin in plan.spin_us:
        progress(f"order round trip: seqtrade, {plan.rt_count} market orders, bus.spin_us = {spin}")
        res, h = round_trip_seqtrade(root, f"rt{spin}", plan.rt_count, plan.rt_warmup, spin, journal_sync)
        acc, fill = summary(h["accepted"]), summary(h["filled"])
        runs.append({"spin_us": spin, "journal_synchronous": journal_sync, "accepted": acc, "filled": fill, "orders": res["orders"],
                     "server_cpu_us_per_order": res.get("server_cpu_us_per_order"),
                     "ratio_accepted": _ratios(acc, s_raw), "ratio_filled": _ratios(fill, s_raw)})  # fmt: skip
        run.hists[f"round trip seqtrade accepted (spin {spin})"] = h["accepted"]
        run.hists[f"round trip seqtrade filled (spin {spin})"] = h["filled"]
        progress(
            f"  accepted p50 {acc['p50_us']} µs, filled p50 {fill['p50_us']} µs vs raw {s_raw['p50_us']} µs"
        )
    run.results["order_round_trip"] = {"raw": s_raw, "raw_design": "PUSH->PULL, echo, PUB->SUB (one reply)",
                                       "seqtrade": runs}  # fmt: skip


def scenario_tick2trade(run: Run) -> None:
    """2c. tick-to-trade, seqtrade (server trace marks) and raw."""
    plan, progress, root = run.plan, run.progress, run.root
    n, w, rate = plan.t2t_count, plan.t2t_warmup, plan.t2t_rate
    progress(f"tick-to-trade: raw pyzmq PUB -> SUB -> PUSH -> PULL, {n} orders at {rate} ticks/s")
    raw_t = tick_to_trade_raw(root, rate, n, w)
    progress(f"tick-to-trade: seqtrade (journal {run.journal_sync}), {n} orders at {rate} ticks/s")
    st_t = tick_to_trade_seqtrade(root, rate, n, w, run.journal_sync)
    s_st, s_raw = summary(st_t), summary(raw_t)
    run.hists["tick-to-trade seqtrade"] = st_t
    run.hists["tick-to-trade raw"] = raw_t
    run.results["tick_to_trade"] = {
        "rate": rate,
        "seqtrade": s_st,
        "raw": s_raw,
        "ratio": _ratios(s_st, s_raw),
    }
    progress(f"  p50 {s_st['p50_us']} µs vs raw {s_raw['p50_us']} µs")


def scenario_stages(run: Run) -> None:
    """2b. the round trip cut into stages."""
    progress, plan = run.progress, run.plan
    progress(f"order round trip in stages (SEQTRADE_TRACE), {plan.rt_count} market orders")
    run.results["stages"] = stage_breakdown(run.root, plan.rt_count, plan.rt_warmup, run.journal_sync)


def scenario_throughput(run: Run) -> None:
    """2d. order throughput: strategies each keeping a window of market orders in flight."""
    plan, progress, root = run.plan, run.progress, run.root
    n, k, window = plan.tp_count, plan.tp_strategies, plan.tp_window
    progress(f"order throughput: raw pyzmq, {k} clients x {n} requests, {window} in flight each")
    raw = throughput_raw(root, k, n, window)
    progress(f"order throughput: seqtrade, {k} strategies x {n} market orders, {window} in flight each")
    st = throughput_seqtrade(root, k, n, window, run.journal_sync)
    run.results["order_throughput"] = {"strategies": k, "window": window, "orders_each": n, "seqtrade": st,
                                       "raw": raw, "ratio": _ratio(st["orders_per_s"], raw["orders_per_s"])}  # fmt: skip
    progress(f"  {st['orders_per_s']:,.0f} orders/s vs raw {raw['orders_per_s']:,.0f}/s")


def scenario_fanout(run: Run) -> None:
    """3. fan-out: the highest zero-loss rate for 1 and 3 subscribers, seqtrade and raw."""
    fan: dict[str, Any] = {}
    counter = [0]
    for n in run.plan.fan_subscribers:
        run.progress(f"fan-out to {n}: raw pyzmq")
        raw_f = search_fanout(run.root, "raw", n, run.plan, run.progress, counter)
        run.progress(f"fan-out to {n}: seqtrade")
        st_f = search_fanout(run.root, "seqtrade", n, run.plan, run.progress, counter)
        fan[str(n)] = {"seqtrade": st_f, "raw": raw_f,
                       "ratio": _ratio(st_f["max_zero_loss_rate"], raw_f["max_zero_loss_rate"])}  # fmt: skip
    run.results["fanout"] = fan


def scenario_codec(run: Run) -> None:
    """4. codec cost."""
    run.progress("codec: encode + decode of one ticker")
    run.results["codec"] = codec_cost(run.plan.codec_number)


# The scenarios, in the order a full run takes them: ``--only NAME`` runs one. A new scenario is a
# function of a :class:`Run` that fills ``run.results`` (and ``run.hists``: a histogram's name starts
# with its plot panel's prefix, see :data:`PLOT_PANELS`), registered here, with a section in
# :data:`TABLE_SECTIONS` to print it.
SCENARIOS: dict[str, Callable[[Run], None]] = {
    "ticks": scenario_ticks,
    "orders": scenario_orders,
    "tick2trade": scenario_tick2trade,
    "stages": scenario_stages,
    "throughput": scenario_throughput,
    "fanout": scenario_fanout,
    "books": scenario_books,
    "codec": scenario_codec,
    "replay": lambda run: _replay_bench().scenario(run),  # the backtest's events/s: seqtrade.bench.replay
}


def _replay_bench() -> Any:
    from . import replay

    return replay


def run_bench(
    plan: Plan, progress: Progress, *, journal_sync: str = "normal", only: str = ""
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="stb-", dir="/tmp"))  # ipc paths must stay short
    t_start = time.monotonic()
    load_before = load_per_core()
    results: dict[str, Any] = {"plan": asdict(plan), "machine": machine_info(),
                               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    hists: dict[str, HdrHistogram] = {}
    run = Run(root, plan, progress, journal_sync, results, hists)
    loads: dict[str, dict[str, float]] = {}
    try:
        for name, fn in SCENARIOS.items():
            if only and name != only:
                continue
            before, n0 = load_per_core(), len(progress.loads)
            fn(run)
            during = [*progress.loads[n0:], load_per_core()]
            loads[name] = {"before_per_core": before, "during_max_per_core": max(during)}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["elapsed_s"] = round(time.monotonic() - t_start, 1)
    results["load"] = load_verdict(load_before, [*progress.loads, load_per_core()])
    results["load"]["scenarios"] = loads
    results["targets"] = targets(results)
    results["histograms"] = {k: h.encode().decode("ascii") for k, h in hists.items()}
    return results


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured ratio/figure and whether it was met."""
    out = []
    for row in r.get("tick_latency", []):
        for key, limit in (("p50", 1.25), ("p99", 1.5)):
            v = row["ratio"][key]
            out.append({"target": f"tick latency {key} @ {_fmt_rate(row['rate'])}/s <= {limit}x raw one-way",
                        "value": v, "met": v is not None and v <= limit and row["seqtrade"]["lost"] == 0})  # fmt: skip
    rt = r.get("order_round_trip")
    if rt:
        for run in rt["seqtrade"]:
            for key, limit in (("p50", 1.5), ("p99", 2.0)):
                v = run["ratio_accepted"][key]
                out.append({"target": f"order round trip (accepted) {key} <= {limit}x raw round trip, spin_us={run['spin_us']}",
                            "value": v, "met": v is not None and v <= limit})  # fmt: skip
    t2t = r.get("tick_to_trade")
    if t2t:
        for key, limit in (("p50", 1.5), ("p99", 2.0)):
            v = t2t["ratio"][key]
            out.append({"target": f"tick-to-trade {key} <= {limit}x raw", "value": v,
                        "met": v is not None and v <= limit})  # fmt: skip
    f3 = r.get("fanout", {}).get("3")
    if f3:
        out.append({"target": "fan-out to 3 strategies >= 0.9x raw fan-out, zero loss", "value": f3["ratio"],
                    "met": f3["ratio"] is not None and f3["ratio"] >= 0.9})  # fmt: skip
    tp = r.get("order_throughput")
    if tp:  # the issue asks for the figure, with its baseline; no target
        out.append({"target": "order throughput, 3 strategies (reported, no target): seqtrade / raw",
                    "value": tp["ratio"], "met": True})  # fmt: skip
    return out


def machine_info() -> dict[str, Any]:
    import msgpack
    import zmq

    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "msgpack": ".".join(map(str, msgpack.version)),
        "hdrhistogram": version("hdrhistogram"),
        "trio": version("trio"),
        "seqtrade": version("seqtrade"),
    }


# ---------------------------------------------------------------------------- output


def _us(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _cpu_lines(rows: list[dict[str, Any]]) -> list[str]:
    """CPU per message against raw's, both ends (all threads, user + system): less sensitive to other
    processes than the latencies, and what bounds the rate two cores can carry."""
    out = []
    for end, label in (("server", "publisher"), ("client", "subscriber")):
        key = f"{end}_cpu_us_per_msg"
        cells = []
        for row in rows:
            if end == "server" and row["rate"] <= SPIN_PACING_MAX:
                continue  # the server busy-waits each tick's time there: its CPU is the pacing's
            st, raw = row["seqtrade"].get(key), row["raw"].get(key)
            if st is not None and raw is not None:
                cells.append(f"{_fmt_rate(row['rate'])}/s {st:.2f} vs {raw:.2f} µs ({_x(_ratio(st, raw))})")
        if cells:
            out.append(f"  {label} CPU per message, seqtrade vs raw: " + ", ".join(cells))
    return out


def _throughput_section(r: dict[str, Any]) -> list[str]:
    tp = r.get("order_throughput")
    if not tp:
        return []
    st, raw = tp["seqtrade"], tp["raw"]
    cpu = st.get("server_cpu_us_per_order")
    return [
        f"2d. Order throughput: {tp['strategies']} strategies, each keeping {tp['window']} market orders in flight "
        f"until {tp['orders_each']:,} are filled (raw: PUSH -> PULL echo -> PUB, same windows)",
        f"{'':<22}{'orders':>9}{'orders/s':>12}",
        f"{'seqtrade':<22}{st['orders']:>9}{st['orders_per_s']:>12,.0f}",
        f"{'raw':<22}{raw['orders']:>9}{raw['orders_per_s']:>12,.0f}",
        f"{'ratio':<22}{'':>9}{_x(tp['ratio']):>12}",
        *([f"  server CPU (user + system) per order: {cpu:,.0f} µs"] if cpu is not None else []),
        "",
    ]


# Sections of the table printed between the order path's and the fan-out's (one function of the
# results each, returning its lines; empty when its scenario did not run). Scenarios add theirs here.
TABLE_SECTIONS: list[Callable[[dict[str, Any]], list[str]]] = [
    _throughput_section,
    books_section,
    lambda r: _replay_bench().table_section(r),
]


def format_table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"seqtrade bench ({r['plan']['name']}), {r.get('elapsed_s', '?')} s, {r.get('started', '')}",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['os']}, {m['python']}, pyzmq {m['pyzmq']} / libzmq "
        f"{m['libzmq']}, msgpack {m['msgpack']}",
    ]
    ld = r.get("load")
    if ld:
        lines.append(f"load (1-minute average per core, {ld['cores']} cores): {ld['before_per_core']:.2f} before the start, "
                     f"{ld['during_mean_per_core']:.2f} mean / {ld['during_max_per_core']:.2f} max during the run")  # fmt: skip
        per = ld.get("scenarios") or {}
        if per:
            lines.append("load per scenario (per core, before / max during): " + ", ".join(
                f"{k} {v['before_per_core']:.2f}/{v['during_max_per_core']:.2f}" for k, v in per.items()))  # fmt: skip
        if ld["warning"]:
            lines.append(f"WARNING: {ld['warning']}")
    lines.append("")
    cols = ("p50", "p90", "p99", "p99_9", "max")
    head = f"{'':<22}{'msgs':>9}{'lost':>6}" + "".join(f"{c.replace('_', '.'):>9}" for c in cols)
    if r.get("tick_latency"):
        lines += [
            "1. Tick latency: server PUB send (gw_ns) -> on_ticker entered, µs (raw: PUB -> SUB recv+unpackb)",
            head,
        ]
        for row in r["tick_latency"]:
            rate = _fmt_rate(row["rate"]) + "/s"
            for name in ("seqtrade", "raw"):
                s = row[name]
                lines.append(
                    f"{rate + ' ' + name:<22}{s['count']:>9}{s['lost']:>6}"
                    + "".join(f"{_us(s[c + '_us']):>9}" for c in cols)
                )
            lines.append(
                f"{rate + ' ratio':<22}{'':>15}" + "".join(f"{_x(row['ratio'][c]):>9}" for c in cols)
            )
        cpu = [(row["rate"], row["seqtrade"].get("server_cpu_us_per_msg")) for row in r["tick_latency"]]
        if any(c is not None for _, c in cpu):
            lines.append("  server CPU (user + system) per message published: " + ", ".join(
                f"{_fmt_rate(rate)}/s {c:.1f} µs" for rate, c in cpu if c is not None))  # fmt: skip
        lines += _cpu_lines(r["tick_latency"])
        lines.append("")
    rt = r.get("order_round_trip")
    if rt:
        lines += [f"2. Order round trip: buy/sell_market() -> on_order, µs (raw: {rt['raw_design']})", head]
        raw = rt["raw"]
        lines.append(
            f"{'raw round trip':<22}{raw['count']:>9}{'':>6}"
            + "".join(f"{_us(raw[c + '_us']):>9}" for c in cols)
        )
        for run in rt["seqtrade"]:
            for what in ("accepted", "filled"):
                s = run[what]
                label = f"{what} spin={run['spin_us']}"
                lines.append(
                    f"{label:<22}{s['count']:>9}{'':>6}" + "".join(f"{_us(s[c + '_us']):>9}" for c in cols)
                )
                lines.append(
                    f"{'  ratio':<22}{'':>15}" + "".join(f"{_x(run['ratio_' + what][c]):>9}" for c in cols)
                )
            if run.get("server_cpu_us_per_order") is not None:
                lines.append(f"  server CPU (user + system) per order, spin={run['spin_us']}: "
                             f"{run['server_cpu_us_per_order']:,.0f} µs")  # fmt: skip
        lines.append("")
    st = r.get("stages")
    if st:
        lines += ["2b. Order round trip in stages (accepted report; SEQTRADE_TRACE marks, wall clock), µs",
                  f"{'stage':<44}{'p50':>9}{'p90':>9}{'p99':>9}"]  # fmt: skip
        for label, s in st["stages"].items():
            lines.append(f"{label:<44}" + "".join(f"{_us(s[c + '_us']):>9}" for c in ("p50", "p90", "p99")))
        lines.append("")
    t2t = r.get("tick_to_trade")
    if t2t:
        lines += [f"2c. Tick-to-trade at {t2t['rate']} ticks/s: venue hands the server a ticker -> the venue is "
                  "handed the order on_ticker sent, µs (raw: PUB -> SUB -> PUSH -> PULL)", head]  # fmt: skip
        for name in ("seqtrade", "raw"):
            s = t2t[name]
            lines.append(
                f"{name:<22}{s['count']:>9}{'':>6}" + "".join(f"{_us(s[c + '_us']):>9}" for c in cols)
            )
        lines.append(f"{'ratio':<22}{'':>15}" + "".join(f"{_x(t2t['ratio'][c]):>9}" for c in cols))
        lines.append("")
    for section in TABLE_SECTIONS:
        lines += section(r)
    fan = r.get("fanout")
    if fan:
        lines += ["3. Fan-out: highest rate each subscriber receives with zero loss (ticks/s per subscriber)",
                  f"{'subscribers':<14}{'seqtrade':>12}{'raw pyzmq':>12}{'ratio':>9}"]  # fmt: skip
        for n, f in fan.items():

            def cell(x: dict[str, Any]) -> str:
                return _fmt_rate(x["max_zero_loss_rate"]) + ("+" if x["capped_by_search"] else "")

            lines.append(f"{n:<14}{cell(f['seqtrade']):>12}{cell(f['raw']):>12}{_x(f['ratio']):>9}")
        lines.append("   (+: the search's ceiling passed; the real limit is higher)")
        lines.append("")
    c = r.get("codec")
    if c:
        lines.append("4. Codec, encode + decode of one ticker: "
                     f"msgpack {c['msgpack_us']:.2f} µs, json {c['json_us']:.2f} µs "
                     f"(json/msgpack {c['json_over_msgpack']:.1f}x); seqtrade wire encode_message+decode_message "
                     f"{c['seqtrade_wire_us']:.2f} µs")  # fmt: skip
        lines.append("")
    if r.get("targets"):
        lines.append("Targets")
        for t in r["targets"]:
            v = t["value"]
            vs = "-" if v is None else (f"{v:,}/s" if isinstance(v, int) else f"{v:.2f}x")
            lines.append(f"  [{'met' if t['met'] else 'MISSED':>6}] {t['target']}: {vs}")
    return "\n".join(lines)


# Latency panels of the plot: (histogram name prefix, title). A scenario's histograms go to the panel
# whose prefix their name starts with; "<x> seqtrade ..." and "<x> raw ..." are drawn as one pair.
PLOT_PANELS: list[tuple[str, str]] = [
    ("tick ", "tick latency (PUB send -> callback)"),
    ("round trip", "order round trip"),
    ("tick-to-trade", "tick-to-trade (venue tick -> venue order)"),
]


# The replay scenario's target (issue 17): events/s through a backtest to 3 strategies, lookahead 1 ms.
REPLAY_TARGET_3 = 100_000.0


def _bar_rows(r: dict[str, Any]) -> list[tuple[str, list[tuple[str, float, float]], str]]:
    """Rate panels of the plot: (title, [(label, seqtrade, baseline)], baseline's name) for the
    scenarios that ran: raw pyzmq for fan-out and throughput, the ticker fan-out of the same run for
    books, the target for the replay (0: none drawn)."""
    out = []
    fan = r.get("fanout")
    if fan:
        out.append(("fan-out: zero-loss ticks/s per subscriber",
                    [(f"{n} sub", float(f["seqtrade"]["max_zero_loss_rate"]), float(f["raw"]["max_zero_loss_rate"]))
                     for n, f in fan.items()], "raw"))  # fmt: skip
    tp = r.get("order_throughput")
    if tp:
        out.append((f"order throughput: orders/s, {tp['strategies']} strategies",
                    [(f"window {tp['window']}", float(tp["seqtrade"]["orders_per_s"]), float(tp["raw"]["orders_per_s"]))],
                    "raw"))  # fmt: skip
    books = r.get("books")
    if books and books.get("ticker"):
        ticker = float(books["ticker"]["rate"])
        out.append((f"books: zero-loss updates/s to {books['strategies']} strategies",
                    [(k, float(v["rate"]), ticker) for k, v in books.items() if k not in ("strategies", "ticker")],
                    "ticker fan-out"))  # fmt: skip
    replay = r.get("replay")
    if replay and replay.get("runs"):
        out.append((f"replay: events/s through a backtest, lookahead {replay['lookahead_ms']:g} ms",
                    [(f"{x['strategies']} strat", float(x["events_per_s"]), REPLAY_TARGET_3 if x["strategies"] == 3 else 0.0)
                     for x in replay["runs"]], "target"))  # fmt: skip
    return out


def plot(r: dict[str, Any], path: str) -> None:
    """Every scenario that ran: latency by percentile (one panel per :data:`PLOT_PANELS` entry) and
    the rates (fan-out, order throughput, books, replay) as bars; a seqtrade series and its baseline
    share a colour (the baseline dashed or hatched)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hists = {k: HdrHistogram.decode(v.encode("ascii")) for k, v in r["histograms"].items()}
    panels = [(prefix, title) for prefix, title in PLOT_PANELS
              if any(k.startswith(prefix) and h.get_total_count() for k, h in hists.items())]  # fmt: skip
    bars = _bar_rows(r)
    n = max(1, len(panels) + len(bars))
    cols = min(3, n)
    nrows = -(-n // cols)
    fig, axes_arr = plt.subplots(nrows, cols, figsize=(6.5 * cols, 5.5 * nrows), squeeze=False)
    axes = [ax for row in axes_arr for ax in row]
    for ax in axes[n:]:
        ax.set_visible(False)
    pcts = [50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99]
    xs = [1 / (1 - p / 100) for p in pcts]
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (prefix, title) in zip(axes, panels, strict=False):
        colours: dict[str, Any] = {}
        for name, h in hists.items():
            if not name.startswith(prefix) or not h.get_total_count():
                continue
            pair = name.replace(" seqtrade", "").replace(" raw", "")
            if prefix == "round trip":
                pair = "round trip"  # every seqtrade run against the one raw round trip
            colour = colours.setdefault(pair, cycle[len(colours) % len(cycle)])
            ys = [h.get_value_at_percentile(p) / 1000 for p in pcts]
            ax.plot(xs, ys, marker="s" if "filled" in name else "o", markersize=3, linestyle="--" if " raw" in name else "-", label=name,
                    color=colour)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"p{p:g}" for p in pcts], rotation=45)
        ax.set_ylabel("µs")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax, (title, rows, base) in zip(axes[len(panels) :], bars, strict=False):
        for i, (label, st, raw) in enumerate(rows):
            colour = cycle[i % len(cycle)]
            ax.bar(i - 0.2, st, 0.4, color=colour, label=f"{label} seqtrade")
            ax.text(i - 0.2, st, _fmt_rate(st), ha="center", va="bottom", fontsize=7)
            if raw:
                ax.bar(i + 0.2, raw, 0.4, color=colour, alpha=0.45, hatch="//", label=f"{label} {base}")
                ax.text(i + 0.2, raw, _fmt_rate(raw), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([label for label, _, _ in rows])
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    m = r["machine"]
    ld = r.get("load") or {}
    load = f", load {ld['before_per_core']:.2f}/core before" if ld else ""
    fig.suptitle(f"seqtrade bench ({r['plan']['name']}): {m['cpu']}, {m['cores']} cores, {m['python']}{load}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="seqtrade bench", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer and shorter runs (under a minute)")
    mode.add_argument(
        "--smoke", action="store_true", help="the smallest run that exercises every scenario (tests)"
    )
    p.add_argument(
        "--json", metavar="FILE", help="write machine-readable results (with machine info) to FILE"
    )
    p.add_argument("--plot", metavar="FILE.png", help="draw the latency distributions (needs seqtrade[plot])")
    p.add_argument(
        "--journal-sync",
        choices=["normal", "full", "off"],
        default="normal",
        help="the server journal's synchronous mode in the round trip (default: normal, as shipped)",
    )
    p.add_argument(
        "--only",
        choices=list(SCENARIOS),
        default="",
        help="run one scenario only (for profiling and before/after comparisons)",
    )
    p.add_argument("-q", "--no-progress", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--server-path",
        metavar="SRC",
        default="",
        help="run the seqtrade servers from this source tree (PYTHONPATH), e.g. a pristine checkout's src/ "
        "for a before/after comparison in one invocation",
    )
    args = p.parse_args(list(argv) if argv is not None else None)
    global SERVER_PATH
    SERVER_PATH = str(Path(args.server_path).resolve()) if args.server_path else ""
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "seqtrade bench: error: --plot needs matplotlib: pip install 'seqtrade[plot]'",
                file=sys.stderr,
            )
            return 2
    plan = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    try:
        results = run_bench(
            plan, Progress(not args.no_progress), journal_sync=args.journal_sync, only=args.only
        )
    except BenchError as exc:
        print(f"seqtrade bench: error: {exc}", file=sys.stderr)
        return 1
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.plot:
        plot(results, args.plot)
        print(f"plot: {Path(args.plot).resolve()}")
    if args.json:
        print(f"results: {Path(args.json).resolve()}")
    return 0
