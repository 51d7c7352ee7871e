"""Order throughput: 3 strategies, each keeping WINDOW market orders in flight until N are filled
(paper venue, still market, journal as shipped); orders/s over the slowest strategy's time, and the
server's CPU time per order (from when it listens). SERVER_SRC is the source tree the server runs
from (PYTHONPATH), so a pristine checkout and this one can be interleaved:

    .venv/bin/python bench/order_throughput.py /tmp/base/src 3000 8
    .venv/bin/python bench/order_throughput.py src 3000 8
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from seqtrade.bench.run import process_cpu_s, server_config
from seqtrade.client import Endpoints, OrderReport, Strategy, run_strategy

STRATEGIES = 3


class Blast(Strategy):
    """Keeps ``window`` market orders in flight (buy, sell, ...) until ``n`` are done."""

    def __init__(self, n: int, window: int, out: Path) -> None:
        super().__init__()
        self.n, self.window, self.out = n, window, out
        self.sent = self.done = self.rejected = 0
        self.t0 = 0.0

    def on_start(self) -> None:
        self.t0 = time.perf_counter()
        for _ in range(self.window):
            self._one()

    def _one(self) -> None:
        if self.sent < self.n:
            self.sent += 1
            (self.buy_market if self.sent & 1 else self.sell_market)("BTC-USDT", 0.001)

    def on_order(self, report: OrderReport) -> None:
        if report.status not in ("filled", "rejected", "cancelled"):
            return
        self.done += 1
        self.rejected += report.status != "filled"
        if self.done < self.n:
            self._one()
            return
        result = {"elapsed": time.perf_counter() - self.t0, "rejected": self.rejected}
        self.out.write_text(json.dumps(result))
        self.stop()


def main(argv: list[str]) -> int:
    if argv[0] == "strategy":
        n, window, sid, out, run_dir = int(argv[1]), int(argv[2]), argv[3], Path(argv[4]), argv[5]
        return run_strategy(Blast(n, window, out), sid, Endpoints.from_run_dir(run_dir), join_timeout=30)
    src, n, window = str(Path(argv[0]).resolve()), int(argv[1]), int(argv[2])
    d = Path(tempfile.mkdtemp(prefix="stb-tp", dir="/tmp"))
    try:
        (d / "server.toml").write_text(server_config(rate=0))
        with open(d / "server.log", "wb") as log:
            srv = subprocess.Popen(
                [sys.executable, "-m", "seqtrade.cli", "serve", "--config", str(d / "server.toml")],
                env=dict(os.environ, PYTHONPATH=src), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        while not (d / "run" / "order.ipc").exists() and srv.poll() is None:
            time.sleep(0.02)
        time.sleep(0.3)
        c0 = process_cpu_s(srv.pid)
        strategies = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "strategy",
                    str(n),
                    str(window),
                    f"tp{i}",
                    str(d / f"o{i}.json"),
                    str(d / "run"),
                ]
            )  # fmt: skip
            for i in range(STRATEGIES)
        ]
        for p in strategies:
            p.wait()
        c1 = process_cpu_s(srv.pid)
        srv.terminate()
        srv.wait()
        res: list[dict[str, Any]] = [json.loads((d / f"o{i}.json").read_text()) for i in range(STRATEGIES)]
        elapsed = max(r["elapsed"] for r in res)
        total = STRATEGIES * n
        cpu = f"{(c1 - c0) / total * 1e6:5.0f} µs" if c0 is not None and c1 is not None else "?"
        print(f"{src}: {STRATEGIES} x {n} orders, window {window}: {total / elapsed:7.0f} orders/s (slowest "
              f"strategy {elapsed:.2f} s), server CPU/order {cpu}, rejected {sum(r['rejected'] for r in res)}")  # fmt: skip
        return 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
