"""The backtest server's CPU per recorded event, in one process, for the part that does not depend on
what the strategies send (docs/backtesting.md, "How fast"): reading the recording, each window's rows
numbered, stamped and packed (``BacktestVenue._read_window``) and the fill model playing its market
data against resting orders (``_play_ahead``; three strategies' limit orders rest at the best bid, as
the replay bench's do).

``python bench/replay_cpu.py [--events N] [--per-ms K] [--rounds R] [--profile] [--data DIR]``, run with
``PYTHONPATH=<a tree's src>`` to measure another source tree on the same recording (``--data``: reuse
one written before). Prints the CPU (``time.process_time``) per event of the best of ``R`` rounds, and
a digest of the frames' bytes and the fill model's events (two trees must print the same digest).
``--only read`` reads the recording and nothing else; ``--only window`` reads it into windows
(``_read_window``: marks, seqs, rows, packing), without the fill model: the parts' shares.

Under callgrind (instructions, the same at any load): ``valgrind --tool=callgrind python
bench/replay_cpu.py --data REC --rounds 1`` for a 40,000- and a 20,000-event recording, the
difference of their totals per 20,000 events (start-up and imports cancel out).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def play(data: Path, resting: int, only: str = "") -> tuple[float, int, str]:
    """(CPU seconds, events, digest) of one in-process pass over the recording."""
    from seqtrade.models import Book
    from seqtrade.replay import read_messages
    from seqtrade.replay_backtest import BacktestVenue
    from seqtrade.venues.base import OrderType, Side, VenueOrder

    v = BacktestVenue(data, ["BTC-USDT"])
    v._strategies = [f"q{i}" for i in range(resting)] or ["q0"]
    v._batch = dict.fromkeys(v._strategies, True)
    v._md_seqs = {}
    digest = hashlib.blake2b(digest_size=16)
    cpu = time.process_time()
    msgs = read_messages(data, ["BTC-USDT"])
    if only:
        return _part(v, msgs, only, cpu, digest)
    nxt = next(msgs, None)
    events = 0
    window, nxt = v._read_window(nxt, msgs)
    prev_end = 0
    placed = False
    while window is not None:
        if window.ahead is None:  # played after the answers, as _play_window does
            for ns, msg in window.items:
                for ev in v.sim.on_market(msg, ns):
                    digest.update(repr(ev).encode())
        else:
            for got in window.ahead:
                if got is not None:
                    digest.update(repr(got).encode())
        if window.packed is not None:
            digest.update(window.packed)
        events += len(window.items)
        end = window.end
        for ev in v.sim.advance(end):
            digest.update(repr(ev).encode())
        if not placed:  # each strategy's limit order rests at the best bid from the first window on
            book = next(m for _, m in window.items if isinstance(m, Book))
            for i in range(resting):
                order = VenueOrder(f"o{i}", "BTC-USDT", Side.BUY, OrderType.LIMIT, book.bids[0][0], 0.01)
                v.sim.submit(order, end)
            placed = True
        prev_end = end
        window, nxt = v._read_window(nxt, msgs)
        if window is not None:
            v._play_ahead(window, prev_end)
    spent = time.process_time() - cpu
    digest.update(repr(v._marks).encode())  # (ns, symbol, price) of every price change (no tally: kept)
    return spent, events, digest.hexdigest()


def _part(v: Any, msgs: Any, only: str, cpu: float, digest: Any) -> tuple[float, int, str]:
    """``--only``: the recording read (``read``), or read into windows without the fill model (``window``)."""
    events = 0
    if only == "read":
        for _ in msgs:
            events += 1
        return time.process_time() - cpu, events, ""
    window, nxt = v._read_window(next(msgs, None), msgs)
    while window is not None:
        events += len(window.items)
        digest.update(window.packed or b"")
        window, nxt = v._read_window(nxt, msgs)
    return time.process_time() - cpu, events, digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--per-ms", type=int, default=100)
    ap.add_argument("--resting", type=int, default=3, help="strategies' resting limit orders (default 3)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", type=Path, help="a recording written before (default: a new one)")
    ap.add_argument("--profile", action="store_true", help="cProfile one more round, print the top")
    ap.add_argument("--only", choices=("read", "window"), default="", help="one part alone (see above)")
    args = ap.parse_args(argv)
    import gc

    import seqtrade
    from seqtrade.bench.replay import write_recording

    with tempfile.TemporaryDirectory(prefix="rcpu-", dir="/tmp") as tmp:
        data = args.data
        if data is None:
            data = write_recording(Path(tmp) / "rec", args.events, args.per_ms)
        gc.freeze()
        gc.set_threshold(35_000, 10, 10)  # as the backtest runs
        best: list[Any] = []
        for _ in range(args.rounds):
            got = play(data, args.resting, args.only)
            if not best or got[0] < best[0]:
                best = list(got)
        spent, events, digest = best
        print(f"{Path(seqtrade.__file__).parent}: {events:,} events, best of {args.rounds}: {spent:.3f} s CPU "
              f"= {spent / events * 1e6:.2f} us/event; digest {digest}")  # fmt: skip
        if args.profile:
            prof = cProfile.Profile()
            prof.runcall(play, data, args.resting, args.only)
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
