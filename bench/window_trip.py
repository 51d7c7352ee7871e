"""A backtest's round trip per window, seen from inside the server: where its wall time and its
scheduler passes go.

    python bench/window_trip.py [--strategies 3] [--events 200000] [--per-ms 100] [--dir DIR]

Writes the replay bench's recording and config (``seqtrade.bench.replay``: ``write_recording``,
``STRATEGY``), then runs ``seqtrade backtest`` in this process (its strategies as the usual processes)
with hooks that time each window (``PYTHONPATH=OTHER/src python bench/window_trip.py`` measures
another tree: run the two one after the other, at the same load):

- the window frame's send (the call that hands it to ZeroMQ) and the arrival of the answer that
  completes the window (the order task's ``recv_batch`` that returned it), so per window:
  send -> last ``sync_ack`` (the strategies' work, and the server's reading of the next window
  meanwhile) and last ``sync_ack`` -> next send (the serial part: every strategy waits);
- the time the server waited in ``epoll`` in each part (a Trio instrument);
- Trio task steps, ``epoll`` waits (those with a zero timeout: a pass with a task already runnable)
  and the order task's ``recv_batch`` calls per window.

The hooks cost a little CPU themselves (a clock read per task step and per ``epoll`` wait): compare
counts and the two parts' medians, not the server's CPU, with the bench (``seqtrade.bench.replay``).
A measurement tool: it wraps the functions it times, nothing in the package depends on it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

import seqtrade.bus as bus
import seqtrade.replay_backtest as rb
import seqtrade.server.gateway as gwmod
from seqtrade.bench.replay import STRATEGY, write_recording

now = time.perf_counter_ns
stats = {"steps": 0, "io": 0, "io0": 0, "recv": 0, "idle": 0}
sends: dict[int, tuple[int, dict[str, int]]] = {}  # window step -> (its send, stats then)
acks: dict[int, tuple[int, dict[str, int]]] = {}  # window step -> (its last answer's arrival, stats)
venues: list[Any] = []
last_recv = [0]


def hook() -> None:
    zmq_send = gwmod._zmq_send

    def send(sock: Any, frame: bytes, flags: int) -> None:
        if frame[:7] == b"window/" and venues:
            sends.setdefault(venues[0].steps, (now(), dict(stats)))
        zmq_send(sock, frame, flags)

    gwmod._zmq_send = send

    recv_batch = bus.TrioSocket.recv_batch

    async def recv(self: bus.TrioSocket, max_batch: int = 1024) -> list[bytes]:
        stats["recv"] += 1
        out = await recv_batch(self, max_batch)
        last_recv[0] = now()
        return out

    bus.TrioSocket.recv_batch = recv  # type: ignore[method-assign]

    on_sync_ack = rb.BacktestVenue.on_sync_ack

    def on_ack(self: Any, ack: Any) -> None:
        on_sync_ack(self, ack)
        if ack.step == self._awaited and all(self._acks.get(s, 0) >= ack.step for s in self._strategies):
            acks.setdefault(ack.step, (last_recv[0], dict(stats)))

    rb.BacktestVenue.on_sync_ack = on_ack  # type: ignore[method-assign]

    run = rb.BacktestVenue.run

    async def venue_run(self: Any, *a: Any, **k: Any) -> None:
        venues.append(self)
        await run(self, *a, **k)

    rb.BacktestVenue.run = venue_run  # type: ignore[method-assign]

    class Instrument(trio.abc.Instrument):
        t0 = 0

        def before_task_step(self, task: Any) -> None:
            stats["steps"] += 1

        def before_io_wait(self, timeout: float) -> None:
            self.t0 = now()
            stats["io"] += 1
            stats["io0"] += timeout == 0

        def after_io_wait(self, timeout: float) -> None:
            stats["idle"] += now() - self.t0

    trio_run = trio.run

    def run_with(*a: Any, **k: Any) -> Any:
        k.setdefault("instruments", []).append(Instrument())
        return trio_run(*a, **k)

    trio.run = run_with


def report() -> None:
    def d(xs: list[float]) -> str:
        xs = sorted(xs)
        return f"median {statistics.median(xs):.1f}, mean {statistics.fmean(xs):.1f}, p90 {xs[int(len(xs) * 0.9)]:.1f}"

    work, serial, idle_work, idle_serial, steps, io, io0, recvs = ([] for _ in range(8))  # type: list[float]
    for k in sorted(acks):
        if k not in sends or k + 1 not in sends:
            continue
        (ts, s0), (tl, sl), (tn, s1) = sends[k], acks[k], sends[k + 1]
        if not ts <= tl <= tn:
            continue
        work.append((tl - ts) / 1000)
        serial.append((tn - tl) / 1000)
        idle_work.append((sl["idle"] - s0["idle"]) / 1000)
        idle_serial.append((s1["idle"] - sl["idle"]) / 1000)
        steps.append(s1["steps"] - s0["steps"])
        io.append(s1["io"] - s0["io"])
        io0.append(s1["io0"] - s0["io0"])
        recvs.append(s1["recv"] - s0["recv"])
    if not work:
        print("no window timed", file=sys.stderr)
        return
    print(f"windows timed: {len(work)} (us a window)")
    print(f"  send -> last sync_ack: {d(work)} (sum {sum(work) / 1e6:.3f} s); server in epoll {d(idle_work)}")
    print(
        f"  last sync_ack -> next send: {d(serial)} (sum {sum(serial) / 1e6:.3f} s); server in epoll {d(idle_serial)}"
    )
    print(f"  trio task steps a window: {d(steps)}")
    print(f"  epoll waits a window: {d(io)}; of them with timeout 0: {d(io0)}")
    print(f"  order task recv_batch calls a window: {d(recvs)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", type=int, default=3)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--per-ms", type=int, default=100)
    ap.add_argument("--dir", default="", help="work here (a recording already there is used again)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="wtrip-", dir="/tmp")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "rec").exists():
        write_recording(work / "rec", args.events, args.per_ms)
    (work / "quiet.py").write_text(STRATEGY)
    entries = "".join(
        f'\n[[strategies]]\nid = "q{i}"\npath = "{work / "quiet.py"}"\nrestart = "never"\n'
        f'params = {{ symbol = "BTC-USDT" }}\n'
        for i in range(args.strategies)
    )
    cfg = work / f"trip{args.strategies}.toml"
    cfg.write_text(f'[server]\nrun_dir = "{work / "run"}"\nstatus_interval = 0\n\n[venue]\nkind = "paper"\n'
                   f'symbols = ["BTC-USDT"]\n{entries}')  # fmt: skip
    hook()
    from seqtrade.cli import main as cli

    rc = cli(["backtest", "--data", str(work / "rec"), "--config", str(cfg), "--out", str(work / "out"),
              "--no-plot", "--quiet", "--log-level", "WARNING", "--latency-ms", "1", "--lookahead-ms", "1"])  # fmt: skip
    report()
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
