"""CPU cost of a backtest's window in the strategy process, frame -> callbacks -> sync_ack, in process.

    python bench/client_window.py [--runs 9] [--windows 2001] [--per-window 100] [--profile]

The windows are those of ``python -m seqtrade.bench.replay`` (BTC-USDT books and trades, 3 books to a
trade, numbered per topic and stamped as the server does, one ``window`` frame each, encoded by
:func:`seqtrade.wire.encode_message` as the server encodes it). The runner's own code
(``runner._Shell.drain_md``: decode, per-message gap check, callbacks, the sync's clock and timers,
the ``sync_ack`` encoded and sent on a real PUSH socket) reads them from a list standing in for the
SUB socket; the strategy is the replay bench's (a counter per book and trade, a quote on a timer).
Thread CPU time, not wall time: compare the ``min`` of two revisions run back to back
(``PYTHONPATH=<other>/src python bench/client_window.py``). ``--profile``: one run under cProfile.
No wake-ups: the transport's are what the replay bench measures.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time
from typing import Any

import zmq
from client_md_path import _ListSocket  # (this directory: run as python bench/client_window.py)

from seqtrade import wire
from seqtrade.client import Strategy, runner
from seqtrade.client.protocol import ClientProtocol
from seqtrade.models import Book, Trade
from seqtrade.vclock import VIRTUAL_CLOCK_ENV, Window

T0 = 1_790_000_000_000_000_000


class Quiet(Strategy):
    """The replay bench's strategy: reads every book and trade, a quote now and then on its clock."""

    symbols = ["BTC-USDT"]

    def on_start(self) -> None:
        self.n = 0
        self.bid: float | None = None
        self.set_timer(0.5, self.quote)

    def on_book(self, b: Book) -> None:
        self.n += 1
        if b.bids:
            self.bid = b.bids[0][0]

    def on_trade(self, t: Trade) -> None:
        self.n += 1

    def quote(self) -> None:
        if self.bid is not None and not self.open_orders:
            self.buy_limit(self.symbols[0], self.bid, 0.01)


def window_frames(windows: int, per_window: int) -> list[bytes]:
    """The replay bench's recording as the server's window frames (steps 1, 2, ...)."""
    keys: dict[str, list[str]] = {}
    seqs: dict[str, int] = {}
    frames = []
    i = 0
    for step in range(1, windows + 1):
        md: list[Any] = []
        for _ in range(per_window):
            ns = T0 + (i // per_window) * 1_000_000 + i % per_window
            px = 100.0 + (i // 50) % 7 * 0.1
            kind = "trade" if i % 4 == 3 else "book"
            seq = seqs[kind] = seqs.get(kind, 0) + 1
            if kind == "trade":
                msg: Book | Trade = Trade("BTC-USDT", ns // 10**6, f"t{i}", px, 0.5,
                                          "sell" if i % 8 == 3 else "buy", seq, ns)  # fmt: skip
            else:
                msg = Book("BTC-USDT", ns // 10**6, [[px - 0.1, 2.0], [px - 0.2, 3.0]],
                           [[px, 2.0], [px + 0.1, 3.0]], seq, ns)  # fmt: skip
            md.append(wire.window_row(msg, keys))
            i += 1
        end = T0 + step * 1_000_000
        rows = wire.pack_rows(md)
        frames.append(wire.encode_message(
            Window("backtest", end, step, {"q0": 0}, md=md, keys=keys, md_packed=rows)))  # fmt: skip
    return frames


class Harness:
    """A strategy joined to nothing: its report socket silent, its order socket read by a PULL here."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        n = id(self)
        ep = runner.Endpoints(f"inproc://md{n}", f"inproc://order{n}", f"inproc://report{n}")
        self.binds = [self.ctx.socket(t) for t in (zmq.PUB, zmq.PULL, zmq.PUB)]
        for sock, addr in zip(self.binds, (ep.md, ep.order, ep.report), strict=True):
            sock.bind(addr)
        self.pull = self.binds[1]
        self.conn = runner.Connection(ep, "q0", context=self.ctx)
        self.conn.subscribe("book", "BTC-USDT")
        self.conn.subscribe("trade", "BTC-USDT")

    def run(self, frames: list[bytes]) -> tuple[float, Quiet, int]:
        """(thread CPU ns per window, the strategy, sync_acks sent) of one pass over ``frames``."""
        s = Quiet()
        proto = ClientProtocol("q0")
        s.strategy_id, s._conn, s._protocol = "q0", self.conn, proto
        s._virtual_ns = 0
        shell = runner._Shell(s, self.conn, proto)
        s.on_start()
        sock = _ListSocket(frames)
        t0 = time.thread_time_ns()
        for _ in range(len(frames) // runner.MD_BATCH + 1):
            shell.drain_md(sock)  # type: ignore[arg-type]
        dt = time.thread_time_ns() - t0
        acks = 0
        while self.pull.poll(0):
            if wire.parse_request(self.pull.recv()).__class__.__name__ == "SyncAck":
                acks += 1
        return dt / len(frames), s, acks

    def close(self) -> None:
        self.conn.close()
        for sock in self.binds:
            sock.close(linger=0)
        self.ctx.term()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--windows", type=int, default=2001)
    ap.add_argument("--per-window", type=int, default=100)
    ap.add_argument("--profile", action="store_true", help="one run under cProfile, the top 25 by own time")
    args = ap.parse_args()
    os.environ[VIRTUAL_CLOCK_ENV] = "1"  # as in a process a backtest started (the runner's GC setting)
    frames = window_frames(args.windows, args.per_window)
    h = Harness()
    try:
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            h.run(frames)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            return
        res = []
        for _ in range(args.runs):
            dt, s, acks = h.run(frames)
            assert s.n == args.windows * args.per_window and s.md_gaps == 0 and acks == args.windows, (
                s.n,
                acks,
            )
            res.append(dt)
        res.sort()
        print(f"window of {args.per_window} -> callbacks -> sync_ack: min {res[0] / 1e3:.1f} us/window "
              f"({res[0] / args.per_window:.0f} ns/event), median {statistics.median(res) / 1e3:.1f} us "
              f"({args.runs} runs of {args.windows} windows)")  # fmt: skip
    finally:
        h.close()


if __name__ == "__main__":
    main()
