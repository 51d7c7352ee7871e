"""The backtest replay's throughput: recorded events per second driven through ``seqtrade backtest`` to 1
and 3 strategy processes (docs/backtesting.md, "How fast").

``python -m seqtrade.bench.replay [--events N] [--per-ms K] [--lookahead-ms L] [--server-path SRC]
[--rounds R]``: writes a synthetic recording with the recorder itself (BTC-USDT books and trades, ``K``
events per millisecond of recorded time), runs ``seqtrade backtest`` on it with 1 and then 3 strategies
that subscribe to every message and quote on a timer, and prints the events per second of each run
(wall time from the first window to the last, from the backtest's own log; process start-up is not
counted) and the load. ``--server-path``: each backtest runs again right after from that source tree
(server and strategies: ``PYTHONPATH``), and the medians of ``R`` rounds are compared.

Every window of one lookahead costs a round trip to every strategy (a ``sync`` and its answers), so
the rate is about ``events per window x windows per second``: dense recordings (many events per
lookahead) go much faster than sparse ones.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "write_recording", "scenario", "table_section"]

EVENTS = {"smoke": 2_000, "quick": 50_000}  # by bench plan; the full plan: 200,000
PER_MS = 100
# The CPU seconds (user + system) of the last run_backtest: all its processes (start-up and results
# included), and the server's from the first window to the last (from its log; NaN if it does not say).
LAST_CPU_S = [0.0, 0.0]
LOOKAHEAD_MS = 1.0

STRATEGY = '''
from seqtrade.client import Strategy


class Quiet(Strategy):
    """Reads every book and trade; a quote now and then, on the strategy's clock."""

    def on_start(self):
        self.n = 0
        self.bid = None
        self.set_timer(0.5, self.quote)

    def on_book(self, b):
        self.n += 1
        if b.bids:
            self.bid = b.bids[0][0]

    def on_trade(self, t):
        self.n += 1

    def quote(self):
        if self.bid is not None and not self.open_orders:
            self.buy_limit(self.symbols[0], self.bid, 0.01)
'''


def write_recording(root: Path, events: int, per_ms: int) -> Path:
    """A recording of ``events`` BTC-USDT books and trades, ``per_ms`` per ms of recorded time."""
    import trio

    from .. import wire
    from ..config import RecorderConfig
    from ..models import Book, Trade
    from ..recorder import Recorder

    async def write() -> None:
        rec = Recorder(RecorderConfig(enabled=True, queue=events + 10), root, "bench")
        t0 = 1_790_000_000_000_000_000
        for i in range(events):
            ns = t0 + (i // per_ms) * 1_000_000 + i % per_ms
            px = 100.0 + (i // 50) % 7 * 0.1
            if i % 4 == 3:
                msg: Book | Trade = Trade("BTC-USDT", ns // 10**6, f"t{i}", px, 0.5, "sell" if i % 8 == 3 else "buy",
                                          i + 1, ns)  # fmt: skip
            else:
                msg = Book("BTC-USDT", ns // 10**6, [[px - 0.1, 2.0], [px - 0.2, 3.0]], [[px, 2.0], [px + 0.1, 3.0]],
                           i + 1, ns)  # fmt: skip
            rec.md.append(wire.encode_message(msg))
        await rec.close()

    trio.run(write)
    return root


def run_backtest(work: Path, data: Path, strategies: int, lookahead_ms: float, *,
                 server_path: str = "") -> tuple[int, float, int]:  # fmt: skip
    """(events, seconds from the first window to the end, windows) of one ``seqtrade backtest``;
    ``server_path``: run it (server and strategies) from that source tree instead (a baseline)."""
    strategy = work / "quiet.py"
    strategy.write_text(STRATEGY)
    entries = "".join(f"""
[[strategies]]
id = "q{i}"
path = "{strategy}"
restart = "never"
params = {{ symbol = "BTC-USDT" }}
""" for i in range(strategies))  # fmt: skip
    cfg = work / f"bench{strategies}.toml"
    cfg.write_text(
        f'[server]\nrun_dir = "run"\nstatus_interval = 0\n\n[venue]\nkind = "paper"\nsymbols = ["BTC-USDT"]\n{entries}'
    )
    cmd = [sys.executable, "-m", "seqtrade.cli", "backtest", "--data", str(data), "--config", str(cfg),
           "--out", str(work / f"out{strategies}"), "--no-plot", "--quiet", "--log-level", "INFO",
           "--latency-ms", str(lookahead_ms), "--lookahead-ms", str(lookahead_ms)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": server_path} if server_path else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=work, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the CPU of the server and its strategy processes (reaped by it), start-up and results included
    LAST_CPU_S[0] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise SystemExit(f"backtest failed:\n{proc.stderr[-3000:]}")
    stamps: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        m = re.search(r"(\d\d:\d\d:\d\d[.,]\d+).*backtest(:| finished)", line)
        if m:
            stamps.setdefault("start" if m.group(2) == ":" else "end", _seconds(m.group(1)))
    fin = re.search(r"backtest finished: (\d+) messages in (\d+) windows", proc.stderr)
    server_cpu = re.search(r"server CPU ([\d.]+) s", proc.stderr)  # (a baseline may not say)
    LAST_CPU_S[1] = float(server_cpu.group(1)) if server_cpu else float("nan")
    if fin is None or len(stamps) < 2:
        raise SystemExit(f"no timing in the backtest's log:\n{proc.stderr[-3000:]}")
    return int(fin.group(1)), stamps["end"] - stamps["start"], int(fin.group(2))


def _seconds(hms: str) -> float:
    h, m, s = hms.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def scenario(run: Any) -> None:
    """``seqtrade bench``'s replay scenario (registered in :data:`seqtrade.bench.run.SCENARIOS`): events/s
    through the backtest to 1 and 3 strategies; ``run.results["replay"]``. With ``--server-path`` the
    same backtests also run from that tree, each right after this tree's (``baseline_runs``)."""
    from . import run as bench_run

    events = EVENTS.get(run.plan.name, 200_000)
    work = run.root / "replay"
    work.mkdir(parents=True, exist_ok=True)
    run.progress(f"replay: writing a recording of {events:,} events")
    data = write_recording(work / "rec", events, PER_MS)
    trees = [("", "runs")] + ([(bench_run.SERVER_PATH, "baseline_runs")] if bench_run.SERVER_PATH else [])
    rows: dict[str, list[dict[str, Any]]] = {}
    for n in (1, 3):
        for path, key in trees:
            run.progress(
                f"replay: backtest to {n} strateg{'y' if n == 1 else 'ies'}{' (baseline)' if path else ''}"
            )
            played, seconds, windows = run_backtest(work, data, n, LOOKAHEAD_MS, server_path=path)
            rows.setdefault(key, []).append(_row(n, played, seconds, windows))
    run.results["replay"] = {"events": events, "per_ms": PER_MS, "lookahead_ms": LOOKAHEAD_MS, **rows}


def _row(n: int, played: int, seconds: float, windows: int) -> dict[str, Any]:
    return {"strategies": n, "events": played, "seconds": round(seconds, 3), "windows": windows,
            "events_per_s": round(played / seconds) if seconds > 0 else None}  # fmt: skip


def table_section(r: dict[str, Any]) -> list[str]:
    """The replay scenario's lines of the bench table (and the baseline's, with the ratio, if it ran)."""
    rep = r.get("replay")
    if not rep:
        return []
    lines = [
        f"backtest replay ({rep['events']:,} events, {rep['per_ms']} per ms, lookahead {rep['lookahead_ms']:g} ms):"
    ]
    base = {row["strategies"]: row for row in rep.get("baseline_runs", [])}
    for row in rep["runs"]:
        n = row["strategies"]
        lines.append(f"  {n} strateg{'y' if n == 1 else 'ies'}: "
                     f"{row['events_per_s'] or 0:,} events/s ({row['windows']:,} windows in {row['seconds']:.2f} s)")  # fmt: skip
        b = base.get(n)
        if b is not None and b["events_per_s"]:
            lines.append(f"    baseline (--server-path): {b['events_per_s']:,} events/s "
                         f"({b['windows']:,} windows in {b['seconds']:.2f} s); "
                         f"ratio {(row['events_per_s'] or 0) / b['events_per_s']:.2f}x")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m seqtrade.bench.replay", description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--per-ms", type=int, default=100, help="recorded events per ms (default 100)")
    ap.add_argument("--lookahead-ms", type=float, default=1.0)
    ap.add_argument("--strategies", type=int, nargs="*", default=[1, 3])
    ap.add_argument("--server-path", default="", metavar="SRC",
                    help="also run each backtest from this source tree (a baseline), right after this tree's")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=1, help="runs of each (default 1); the median is compared")
    args = ap.parse_args(argv)
    trees = [("this tree", "")] + (
        [("baseline", str(Path(args.server_path).resolve()))] if args.server_path else []
    )
    with tempfile.TemporaryDirectory(prefix="btb-", dir="/tmp") as tmp:
        work = Path(tmp)
        t0 = time.monotonic()
        data = write_recording(work / "rec", args.events, args.per_ms)
        print(f"recording: {args.events:,} events, {args.per_ms} per ms, written in {time.monotonic() - t0:.1f} s; "
              f"load {_load()}")  # fmt: skip
        rates: dict[tuple[str, int], list[float]] = {}
        cpus: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for n in args.strategies:
                for name, path in trees:
                    events, seconds, windows = run_backtest(
                        work, data, n, args.lookahead_ms, server_path=path
                    )
                    rates.setdefault((name, n), []).append(events / seconds)
                    cpu = LAST_CPU_S[0]
                    cpus.setdefault((name, n), []).append(cpu)
                    print(f"{n} strateg{'y' if n == 1 else 'ies'}{'' if not path else ' (baseline)'}: {events:,} "
                          f"events in {seconds:.2f} s = {events / seconds:,.0f} events/s ({windows:,} windows of "
                          f"{args.lookahead_ms:g} ms, {windows / seconds:,.0f} windows/s); CPU of all its processes "
                          f"{cpu:.1f} s, of the server while it played {LAST_CPU_S[1]:.2f} s; load {_load()}",
                          flush=True)  # fmt: skip
        if args.server_path:
            for n in args.strategies:
                new, old = _median(rates[("this tree", n)]), _median(rates[("baseline", n)])
                c_new, c_old = _median(cpus[("this tree", n)]), _median(cpus[("baseline", n)])
                print(f"{n} strateg{'y' if n == 1 else 'ies'}: median {new:,.0f} events/s, baseline {old:,.0f}: "
                      f"{new / old:.2f}x; CPU {c_new:.1f} s, baseline {c_old:.1f} s: {c_new / c_old:.2f}x")  # fmt: skip
    return 0


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return (xs[(len(xs) - 1) // 2] + xs[len(xs) // 2]) / 2


def _load() -> str:
    """The 1-minute load average, per core."""
    return f"{os.getloadavg()[0] / (os.cpu_count() or 1):.2f} per core"


if __name__ == "__main__":
    raise SystemExit(main())
