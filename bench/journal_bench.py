"""What a journal write costs: ``journal.synchronous`` = normal vs full (vs off), per order and per
report batch. Real files in a temp directory (on the same disk as /tmp), real Journal code. The
journal's SQLite index is handed its work after a write, outside the timing, as the server does
(``index`` when ``due``); with ``PYTHONPATH`` pointing at an older tree (whose writes were
SQLite commits) the same script measures that tree's journal.

    .venv/bin/python bench/journal_bench.py [--n 2000] [--dir /path/on/the/journal/disk]

Prints median and p99 microseconds per commit and per report. Interleave runs and compare ratios
within one run: absolute figures depend on the disk (an fsync on a VM disk is 0.5-5 ms).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from seqtrade.models import OrderReport, OrderStatus
from seqtrade.server.journal import Journal


def _report(sid: str, seq: int) -> OrderReport:
    return OrderReport(seq=seq, client_order_id=f"c{seq}", exchange_order_id=f"x{seq}", strategy_id=sid,
                       symbol="BTC-USDT", side="buy", order_type="limit", price=100.0, quantity=1.0,
                       status=OrderStatus.ACCEPTED, timestamp=1)  # fmt: skip


def run(directory: Path, sync: str, n: int) -> dict[str, tuple[float, float]]:
    path = directory / f"j-{sync}-{time.monotonic_ns()}.sqlite"
    j = Journal(path, synchronous=sync)

    def follow() -> None:  # the index's turn, after the write (a tree without one: nothing to do)
        if getattr(j, "due", lambda: False)():
            j.index()

    out = {}
    ts = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        j.add_order(venue_order_id=f"v{i}", strategy_id="s", client_order_id=f"c{i}", symbol="BTC-USDT", side="buy",
                    order_type="limit", price=100.0, quantity=1.0, created_ms=1, sent=True)  # fmt: skip
        ts.append(time.perf_counter_ns() - t0)
        follow()
    out["order row (1 write)"] = _stats(ts, 1)
    seq = 0
    for batch in (1, 10, 100):
        ts = []
        for _ in range(max(20, n // batch)):
            rows = []
            for _ in range(batch):
                seq += 1
                rows.append((f"v{seq % n}", _report("s", seq), True))
            t0 = time.perf_counter_ns()
            j.add_reports(rows)
            ts.append(time.perf_counter_ns() - t0)
            follow()
        out[f"reports, batch of {batch} (1 write)"] = _stats(ts, batch)
    j.close()
    for p in directory.glob(path.name + "*"):
        p.unlink()
    return out


def _stats(ns: list[int], per: int) -> tuple[float, float]:
    ns = sorted(ns)
    return statistics.median(ns) / 1000, ns[int(len(ns) * 0.99)] / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    directory = Path(args.dir or tempfile.mkdtemp(prefix="jbench-"))
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for _ in range(args.rounds):  # interleaved
        for sync in ("normal", "full", "off"):
            for k, v in run(directory, sync, args.n).items():
                results.setdefault(k, {}).setdefault(sync, []).append(v)
    print(f"journal write cost on {directory} ({args.rounds} interleaved rounds, median of rounds; µs)")
    print(f"{'':34} {'normal p50/p99':>18} {'full p50/p99':>18} {'off p50/p99':>18}")
    for k, by_sync in results.items():
        cells = []
        for sync in ("normal", "full", "off"):
            p50 = statistics.median(x[0] for x in by_sync[sync])
            p99 = statistics.median(x[1] for x in by_sync[sync])
            cells.append(f"{p50:8.0f} / {p99:7.0f}")
        print(f"{k:34} {cells[0]:>18} {cells[1]:>18} {cells[2]:>18}")


if __name__ == "__main__":
    main()
