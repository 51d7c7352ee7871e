"""The server's market-data publish path, per ticker, against a raw pyzmq publisher's.

``python bench/md_server.py [--n 200000] [--rounds 5] [--batch 100]``: the real server (``serve``,
paper venue with a still market, in this process: the ticker objects are made by this script as a
venue makes them, and counted in) and, in turn, a raw publisher (a dict per message from constants,
``msgpack`` + ``send``: ``seqtrade.bench._raw pub``'s loop) publish ``--n`` tickers in batches of
``--batch`` (the venue's hand-over, ``Gateway.publish_market``, then the feed task's numbering,
stamping, encoding and sending; a Trio checkpoint between batches as a venue's loop has), to one raw
subscriber process that reads everything, over ``ipc://``.

Measured: the publishing thread's CPU time (``time.thread_time_ns``, so other processes on the cores
do not inflate it) per ticker, best round of each; libzmq's I/O thread is not in it (both pay it the
same). Run it with ``PYTHONPATH=<tree>/src`` to measure another tree's server (before/after).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import trio
import zmq

from seqtrade.config import parse_config
from seqtrade.models import Ticker
from seqtrade.server.app import serve
from seqtrade.venues.paper import PaperVenue

SYMBOL = "BTC-USDT"
CONFIG = """
[server]
run_dir = "run"
status_interval = 0
log_level = "WARNING"
[venue]
kind = "paper"
symbols = ["BTC-USDT"]
[venue.paper]
tick_interval = 3600.0
state_path = ""
"""
SUB = """
import sys, zmq
ctx = zmq.Context(); s = ctx.socket(zmq.SUB); s.setsockopt(zmq.RCVHWM, 0)
s.setsockopt(zmq.SUBSCRIBE, b"ticker/"); s.connect(sys.argv[1])
while True:
    s.recv()
"""


def ticker(i: int, ts: int) -> Ticker:
    return Ticker(SYMBOL, ts, 60_000.0 + i % 7, 59_999.9, 60_000.1, 0.5123, 0.8765, 1234.5678)


async def seqtrade_round(gw: Any, n: int, batch: int) -> float:
    publish = gw.publish_market
    target = gw.counters.md_out + n
    ts = time.time_ns() // 1_000_000
    t0 = time.thread_time_ns()
    for start in range(0, n, batch):
        for i in range(start, min(n, start + batch)):
            publish(ticker(i, ts))
        await trio.lowlevel.checkpoint()
    while gw.counters.md_out < target:
        await trio.lowlevel.checkpoint()
    return (time.thread_time_ns() - t0) / n / 1000


def raw_round(pub: zmq.Socket[bytes], n: int, batch: int) -> float:
    send, packb, time_ns = pub.send, msgpack.Packer(use_bin_type=True).pack, time.time_ns
    topic = b"ticker/" + SYMBOL.encode() + b"/"
    ts = time_ns() // 1_000_000
    t0 = time.thread_time_ns()
    seq = 0
    last, bid, ask = 60_000.0, 59_999.9, 60_000.1
    for start in range(0, n, batch):
        for _ in range(start, min(n, start + batch)):  # seqtrade.bench._raw's pub, to the letter
            seq += 1
            body = {
                "type": "ticker", "symbol": SYMBOL, "ts": ts, "last_price": last, "bid_price": bid,
                "ask_price": ask, "bid_size": 0.5123, "ask_size": 0.8765, "volume_24h": 1234.5678,
                "seq": seq, "gw_ns": time_ns(),
            }  # fmt: skip
            send(topic + packb(body), zmq.NOBLOCK)
    return (time.thread_time_ns() - t0) / n / 1000


async def main_async(args: argparse.Namespace, config: Any, raw_ep: str) -> dict[str, float]:
    best: dict[str, float] = {}
    ctx: zmq.Context[Any] = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.bind(raw_ep)
    try:
        async with trio.open_nursery() as nursery:
            venue = PaperVenue(config.venue.paper, list(config.venue.symbols))
            gw = await nursery.start(serve, config, venue)
            await trio.sleep(1.0)  # slow joiners (the subscribers reconnect until both bind)
            for r in range(args.rounds):
                st = await seqtrade_round(gw, args.n, args.batch)
                raw = raw_round(pub, args.n, args.batch)
                await trio.sleep(0.3)
                print(f"  round {r + 1}: seqtrade {st:.3f} µs, raw {raw:.3f} µs per ticker")
                best["seqtrade"] = min(best.get("seqtrade", st), st)
                best["raw"] = min(best.get("raw", raw), raw)
            gw.request_stop()
    finally:
        pub.close(linger=0)
        ctx.term()
    return best


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=100)
    args = p.parse_args()
    d = Path(tempfile.mkdtemp(prefix="mds-", dir="/tmp"))
    config = parse_config(CONFIG, base_dir=str(d))
    raw_ep = f"ipc://{d / 'raw.ipc'}"
    subs = [subprocess.Popen([sys.executable, "-c", SUB, ep]) for ep in (config.endpoint("md"), raw_ep)]
    try:
        best = trio.run(main_async, args, config, raw_ep)
    finally:
        for p in subs:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)
    print(f"best of {args.rounds}: seqtrade {best['seqtrade']:.3f} µs, raw {best['raw']:.3f} µs per ticker "
          f"({best['seqtrade'] / best['raw']:.2f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
