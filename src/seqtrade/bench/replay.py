"""The backtest replay's throughput: recorded events per second driven through ``seqtrade backtest`` to 1
and 3 strategy processes (docs/backtesting.md, "Throughput").

``python -m seqtrade.bench.replay [--events N] [--per-ms K] [--lookahead-ms L]``: writes a synthetic
recording with the recorder itself (BTC-USDT books and trades, ``K`` events per millisecond of recorded
time), runs ``seqtrade backtest`` on it with 1 and then 3 strategies that subscribe to every message
and quote on a timer, and prints the events per second of each run (wall time from the first window to
the last, from the backtest's own log; process start-up is not counted).

Every window of one lookahead costs a round trip to every strategy (a ``sync`` and its answers), so
the rate is about ``events per window x windows per second``: dense recordings (many events per
lookahead) go much faster than sparse ones.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "write_recording", "scenario", "table_section"]

EVENTS = {"smoke": 2_000, "quick": 50_000}  # by bench plan; the full plan: 200,000
PER_MS = 100
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


def run_backtest(work: Path, data: Path, strategies: int, lookahead_ms: float) -> tuple[int, float, int]:
    """(events, seconds from the first window to the end, windows) of one ``seqtrade backtest``."""
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
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=work)
    if proc.returncode != 0:
        raise SystemExit(f"backtest failed:\n{proc.stderr[-3000:]}")
    stamps: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        m = re.search(r"(\d\d:\d\d:\d\d[.,]\d+).*backtest(:| finished)", line)
        if m:
            stamps.setdefault("start" if m.group(2) == ":" else "end", _seconds(m.group(1)))
    fin = re.search(r"backtest finished: (\d+) messages in (\d+) windows", proc.stderr)
    if fin is None or len(stamps) < 2:
        raise SystemExit(f"no timing in the backtest's log:\n{proc.stderr[-3000:]}")
    return int(fin.group(1)), stamps["end"] - stamps["start"], int(fin.group(2))


def _seconds(hms: str) -> float:
    h, m, s = hms.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def scenario(run: Any) -> None:
    """``seqtrade bench``'s replay scenario (registered in :data:`seqtrade.bench.run.SCENARIOS`): events/s
    through the backtest to 1 and 3 strategies; ``run.results["replay"]``."""
    events = EVENTS.get(run.plan.name, 200_000)
    work = run.root / "replay"
    work.mkdir(parents=True, exist_ok=True)
    run.progress(f"replay: writing a recording of {events:,} events")
    data = write_recording(work / "rec", events, PER_MS)
    rows = []
    for n in (1, 3):
        run.progress(f"replay: backtest to {n} strateg{'y' if n == 1 else 'ies'}")
        played, seconds, windows = run_backtest(work, data, n, LOOKAHEAD_MS)
        rows.append({"strategies": n, "events": played, "seconds": round(seconds, 3), "windows": windows,
                     "events_per_s": round(played / seconds) if seconds > 0 else None})  # fmt: skip
    run.results["replay"] = {"events": events, "per_ms": PER_MS, "lookahead_ms": LOOKAHEAD_MS, "runs": rows}


def table_section(r: dict[str, Any]) -> list[str]:
    """The replay scenario's lines of the bench table."""
    rep = r.get("replay")
    if not rep:
        return []
    lines = [
        f"backtest replay ({rep['events']:,} events, {rep['per_ms']} per ms, lookahead {rep['lookahead_ms']:g} ms):"
    ]
    for row in rep["runs"]:
        lines.append(f"  {row['strategies']} strateg{'y' if row['strategies'] == 1 else 'ies'}: "
                     f"{row['events_per_s'] or 0:,} events/s ({row['windows']:,} windows in {row['seconds']:.2f} s)")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m seqtrade.bench.replay", description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--per-ms", type=int, default=100, help="recorded events per ms (default 100)")
    ap.add_argument("--lookahead-ms", type=float, default=1.0)
    ap.add_argument("--strategies", type=int, nargs="*", default=[1, 3])
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="btb-", dir="/tmp") as tmp:
        work = Path(tmp)
        t0 = time.monotonic()
        data = write_recording(work / "rec", args.events, args.per_ms)
        print(
            f"recording: {args.events:,} events, {args.per_ms} per ms, written in {time.monotonic() - t0:.1f} s"
        )
        for n in args.strategies:
            events, seconds, windows = run_backtest(work, data, n, args.lookahead_ms)
            print(f"{n} strateg{'y' if n == 1 else 'ies'}: {events:,} events in {seconds:.2f} s = "
                  f"{events / seconds:,.0f} events/s ({windows:,} windows of {args.lookahead_ms:g} ms, "
                  f"{windows / seconds:,.0f} windows/s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
