"""The strategy's market-data receive path, per message, against a raw pyzmq subscriber's.

``python bench/md_client.py [--n 200000] [--rounds 5]``: a raw PUB queues ``--n`` ticker frames (the
server's frames, from ``wire.encode_message``) into a SUB over ``ipc://``; then the frames are taken
off that socket, each round by the one and the other receiver in turn:

- seqtrade: ``seqtrade.client``'s own loop body (``_Shell.drain_md``: receive, decode, seq gap check,
  ``on_ticker``) with a strategy whose ``on_ticker`` does what the raw loop does per message;
- raw: ``recv`` + ``msgpack.unpackb`` + the same per-message work, on a dict.

Prints the best round's µs per message for each, and their ratio. The time is the receiving thread's
CPU time (``time.thread_time_ns``: other processes on the cores do not inflate it; libzmq's I/O thread
has queued everything before the clock starts): Python's cost per message, the part of a
subscriber's CPU that seqtrade's code decides. Run it with ``PYTHONPATH=<tree>/src`` to
measure another tree's client (before/after).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

from seqtrade import wire
from seqtrade.client import Strategy
from seqtrade.client.protocol import ClientProtocol
from seqtrade.client.runner import _Shell
from seqtrade.models import Ticker

SYMBOL = "BTC-USDT"


class Sink(Strategy):
    """Per message what the raw loop does: the latency sample and the seq check."""

    def __init__(self) -> None:
        super().__init__()
        self.lat: list[int] = []
        self.last = -1
        self.lost = 0

    def on_ticker(self, ticker: Ticker) -> None:
        self.lat.append(time.time_ns() - ticker.gw_ns)
        if self.last >= 0 and ticker.seq != self.last + 1:
            self.lost += ticker.seq - self.last - 1
        self.last = ticker.seq


def frames(n: int, first_seq: int) -> list[bytes]:
    t0 = time.time_ns()
    return [
        wire.encode_message(
            Ticker(
                SYMBOL,
                t0 // 1_000_000,
                60_000.0 + i % 7,
                59_999.9,
                60_000.1,
                0.5123,
                0.8765,
                1234.5678,
                first_seq + i,
                t0 + i,
            )
        )  # fmt: skip
        for i in range(n)
    ]


def fill(pub: zmq.Socket[bytes], sub: zmq.Socket[bytes], batch: list[bytes]) -> None:
    for f in batch:
        pub.send(f)
    while sub.get(zmq.EVENTS) & zmq.POLLIN == 0:  # the first one is through; wait for the rest
        time.sleep(0.01)
    time.sleep(0.5 + len(batch) / 500_000)  # the I/O thread moves ~2M/s: all queued before the clock


def run_seqtrade(sub: zmq.Socket[bytes], n: int) -> float:
    s = Sink()
    proto = ClientProtocol("bench")
    shell = _Shell(s, None, proto)  # type: ignore[arg-type]  # drain_md never sends
    t0 = time.thread_time_ns()
    while len(s.lat) < n:
        shell.drain_md(sub)
    dt = time.thread_time_ns() - t0
    assert s.lost == 0 and proto.md_gaps == 0
    return dt / n / 1000


def run_raw(sub: zmq.Socket[bytes], n: int) -> float:
    recv, unpackb, time_ns = sub.recv, msgpack.unpackb, time.time_ns
    k = len(wire.topic("ticker", SYMBOL))
    lat: list[int] = []
    last, lost = -1, 0
    t0 = time.thread_time_ns()
    for _ in range(n):
        d = unpackb(memoryview(recv())[k:])
        lat.append(time_ns() - d["gw_ns"])
        seq = d["seq"]
        if last >= 0 and seq != last + 1:
            lost += seq - last - 1
        last = seq
    dt = time.thread_time_ns() - t0
    assert lost == 0
    return dt / n / 1000


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    d = Path(tempfile.mkdtemp(prefix="mdc-", dir="/tmp"))
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.bind(f"ipc://{d / 'md.ipc'}")
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"ticker/")
        sub.connect(f"ipc://{d / 'md.ipc'}")
        while True:  # slow joiner: until a probe gets through
            pub.send(frames(1, 0)[0])
            if sub.poll(100):
                sub.recv()
                break
        while sub.poll(50):
            sub.recv()
        best: dict[str, float] = {}
        seq = 1
        for _ in range(args.rounds):
            for name, fn in (("seqtrade", run_seqtrade), ("raw", run_raw)):
                fill(pub, sub, frames(args.n, seq))
                seq += args.n
                us = fn(sub, args.n)
                best[name] = min(best.get(name, us), us)
                print(f"  {name:9s} {us:.3f} µs/message")
        print(f"best of {args.rounds}: seqtrade {best['seqtrade']:.3f} µs, raw {best['raw']:.3f} µs per message "
              f"({best['seqtrade'] / best['raw']:.2f}x)")  # fmt: skip
    finally:
        ctx.destroy(linger=0)
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
