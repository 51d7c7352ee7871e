"""What the market recorder costs the live feed: a real server, recorder off and on, measured (not asserted).

The paper venue in bench mode (``venue.paper.bench_rate``: tickers only, round robin over two symbols)
feeds a real ``serve``; for each rate, recorder off then on:

- the feed's throughput (``md_out`` per second over ``--seconds``), and the server's own drops;
- with the recorder on: rows written, rows the recorder dropped (its queue full: it could not keep
  up), the Parquet bytes per row;
- the latency of each ticker from the venue's making it (``ts``, ms resolution) to a subscriber in
  another process receiving it: p50, p99, p99.9, max.

    .venv/bin/python bench/recorder.py [--rates -1 5000 20000] [--seconds 5]

``-1`` is as fast as the server goes. The machine's load is printed first: on a busy machine the
latency tails are the machine's, compare the two rows of a rate only.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile
import textwrap

import trio

from seqtrade.config import parse_config
from seqtrade.server.app import serve
from seqtrade.venues import venue_from_config

CONFIG = """
[server]
run_dir = "run"
status_interval = 0
[venue]
kind = "paper"
symbols = ["BTC-USDT", "ETH-USDT"]
[venue.paper]
bench_rate = {rate}
[recorder]
enabled = {enabled}
"""

SUBSCRIBER = textwrap.dedent("""
    import sys, time, zmq, msgpack
    ep, seconds = sys.argv[1], float(sys.argv[2])
    s = zmq.Context().socket(zmq.SUB); s.setsockopt(zmq.SUBSCRIBE, b"ticker/"); s.connect(ep)
    lat = []; end = time.time() + seconds
    while time.time() < end:
        if s.poll(100):
            f = s.recv(); now = time.time_ns()
            lat.append((now - msgpack.unpackb(f[f.find(b"/", 7) + 1:])["ts"] * 1_000_000) / 1e6)
    lat.sort(); n = len(lat)
    print(f"latency p50 {lat[n//2]:.2f} ms, p99 {lat[int(n*.99)]:.2f} ms, p99.9 {lat[int(n*.999)]:.2f} ms, max {lat[-1]:.2f} ms")
""")


async def one(rate: float, enabled: bool, seconds: float) -> str:
    d = pathlib.Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp"))
    try:
        config = parse_config(CONFIG.format(rate=rate, enabled=str(enabled).lower()), base_dir=str(d))
        async with trio.open_nursery() as nursery:
            gw = await nursery.start(serve, config, venue_from_config(config, {}))
            await trio.sleep(1.0)
            m0, t0 = gw.counters.md_out, trio.current_time()
            sub = await trio.run_process([sys.executable, "-c", SUBSCRIBER, config.endpoint("md"), str(seconds)],
                                         capture_stdout=True)  # fmt: skip
            m1, t1 = gw.counters.md_out, trio.current_time()
            gw.request_stop()
        line = f"rate {rate:>7g} recorder {'on ' if enabled else 'off'}: feed {(m1 - m0) / (t1 - t0):>9,.0f}/s," \
               f" server dropped {gw.counters.md_dropped}; {sub.stdout.decode().strip()}"  # fmt: skip
        rec = gw.recorder
        if rec is not None:
            size = sum(f.stat().st_size for f in config.recorder_path.rglob("*.parquet"))
            line += f"; recorded {rec.written:,} rows, recorder dropped {rec.dropped:,}, {size / max(rec.written, 1):.1f} B/row"
        return line
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def main(rates: list[float], seconds: float) -> None:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for rate in rates:
        for enabled in (False, True):
            print(await one(rate, enabled, seconds), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", type=float, nargs="+", default=[-1, 5000, 20000])
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    trio.run(main, args.rates, args.seconds)
