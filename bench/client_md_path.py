"""CPU cost per market-data message in the strategy process, frame -> on_ticker, in process.

    python bench/client_md_path.py [runs]

The runner's own drain code (``runner._Shell.drain_md``: the protocol's decode and gap check, then
the guarded callback) reads 200,000 encoded tickers from a list standing in for the SUB socket; the
strategy's on_ticker only counts. Thread CPU time, not wall time, so other load on the machine moves
it little: compare the ``min`` of two revisions run back to back. No sockets: the transport is what
``seqtrade bench`` and bench/client_loops.py measure.
"""

from __future__ import annotations

import statistics
import sys
import time

import zmq

from seqtrade import wire
from seqtrade.client import Strategy, runner
from seqtrade.client.protocol import ClientProtocol
from seqtrade.models import Ticker

N = 200_000


class _ListSocket:
    def __init__(self, frames: list[bytes]) -> None:
        self._next = iter(frames).__next__

    def recv(self, flags: int = 0) -> bytes:
        try:
            return self._next()
        except StopIteration:
            raise zmq.Again() from None

    def getsockopt(self, option: int) -> int:  # drain_md asks (ZMQ_EVENTS) before a second receive
        return zmq.POLLIN


class _Count(Strategy):
    n = 0

    def on_ticker(self, ticker: Ticker) -> None:
        self.n += 1


def one_run(frames: list[bytes]) -> float:
    s = _Count()
    proto = ClientProtocol("bench")
    s._protocol = proto
    shell = runner._Shell(s, None, proto)  # type: ignore[arg-type]  # no requests are sent
    sock = _ListSocket(frames)
    t0 = time.thread_time_ns()
    for _ in range(N // runner.MD_BATCH + 1):
        shell.drain_md(sock)  # type: ignore[arg-type]
    dt = time.thread_time_ns() - t0
    assert s.n == N and s.md_gaps == 0
    return dt / N


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    frames = [
        wire.encode_message(Ticker("BTC-USDT", 1, 100.0, 99.9, 100.1, 1.0, 1.0, 10.0, i + 1, 5))
        for i in range(N)
    ]
    res = sorted(one_run(frames) for _ in range(runs))
    print(
        f"frame -> on_ticker: min {res[0]:.0f} ns/msg, median {statistics.median(res):.0f} ns/msg ({runs} runs)"
    )


if __name__ == "__main__":
    main()
