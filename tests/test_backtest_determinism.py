"""Minutes of market in seconds, and backtests that give the same bytes twice.

- The paper venue's clock at ``[venue.paper] time_scale`` (seqtrade.clock): a real server records
  minutes of the paper market in seconds of wall time, and what it publishes, reports and records
  carries the venue's time; an order placed meanwhile fills, its report stamped on that clock.
- ``seqtrade serve`` (a real process) records three minutes of simulated time with a strategy trading;
  ``seqtrade backtest`` of that recording with two strategy processes, twice, into two run dirs: the
  journal's files (the log and the SQLite index) and results.json are the same bytes.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import trio
import zmq

from seqtrade.clock import Clock, VirtualClock
from seqtrade.config import parse_config
from seqtrade.models import OrderStatus
from seqtrade.sequencer import WindowSequencer

from .test_recorder import md_peer, read, start

STRATEGIES = Path(__file__).parent / "strategies"
MINUTE_NS = 60 * 10**9

FAST = """
[server]
run_dir = "run"
status_interval = 0
heartbeat_timeout = 30.0
shutdown_policy = "leave"

[venue]
kind = "paper"
symbols = ["BTC-USDT", "ETH-USDT"]

[venue.paper]
time_scale = 60.0         # a minute of market a second
tick_interval = 1.0       # of the venue's time: 60 steps a wall second
depth_levels = 0
state_path = ""
tick_size = 0.1
lot_size = 0.001
min_size = 0.001
start_prices = { "BTC-USDT" = 100.0, "ETH-USDT" = 10.0 }

[recorder]
enabled = true
flush_interval = 0.2
roll_seconds = 20.0       # of the venue's time: files close (and become readable) every third of a second
"""


def test_a_scaled_clock_runs_faster_from_its_origin() -> None:
    wall = [1_000 * 10**9]
    c = Clock(60.0, wall_ns=lambda: wall[0])
    assert c.time_ns() == 1_000 * 10**9  # its origin: now
    wall[0] += 10**9
    assert c.time_ns() == 1_060 * 10**9 and c.time_ms() == 1_060_000
    assert c.wall_seconds(60.0) == 1.0
    v = VirtualClock()
    v.now_ns = 5 * 10**9
    assert v.time_ns() == 5 * 10**9 and v.time_ms() == 5_000  # only what its owner set
    assert Clock().time_ns is Clock().time_ns  # the wall clock's: time.time_ns itself, no wrapper


def test_time_scale_is_checked_and_said() -> None:
    from seqtrade.errors import ConfigError
    from seqtrade.venues.paper import PaperVenue

    for bad in ("0", "-1", "20000"):
        with pytest.raises(ConfigError, match="venue.paper.time_scale"):
            parse_config(FAST.replace("time_scale = 60.0", f"time_scale = {bad}"))
    cfg = parse_config(FAST)
    assert cfg.venue.paper.time_scale == 60.0 and parse_config("").venue.paper.time_scale == 1.0
    assert any("60x the wall clock" in line for line in PaperVenue.describe(cfg.venue))
    assert PaperVenue(cfg.venue.paper, ["BTC-USDT"]).clock.scale == 60.0


def _frames(*names: str) -> list[tuple[str, str, int]]:
    """Frames for the sequencer's tests: ``"s1:order_request"``, ``"s1:sync_ack@3"`` ..."""
    out = []
    for n in names:
        sid, kind = n.split(":")
        kind, _, step = kind.partition("@")
        out.append((kind, sid, int(step or 0)))
    return out


def _sequencer() -> WindowSequencer[tuple[str, str, int]]:
    seq: WindowSequencer[tuple[str, str, int]] = WindowSequencer(["s2", "s1"], lambda f: f)
    seq.step = 1
    return seq


def test_the_sequencer_hands_a_window_over_in_one_order_whatever_the_arrival_order() -> None:
    window = _frames("s1:order_request", "s2:order_request", "s1:cancel_request", "s2:amend_request",
                     "s2:sync_ack@1", "s1:sync_ack@1")  # fmt: skip
    released = []
    s1, s2 = [f for f in window if f[1] == "s1"], [f for f in window if f[1] == "s2"]
    # each process's frames in the order it sent them, the two interleaved differently each run
    for arrival in (window, s2 + s1, [s1[0], *s2, *s1[1:]]):
        seq = _sequencer()
        # In batches as the socket gives them: nothing until the last acknowledgement.
        assert seq(arrival[:3]) == [] and seq(arrival[3:5]) == []
        released.append(seq(arrival[5:]))
        assert seq.held == 0
    first = released[0]
    assert all(r == first for r in released)
    # strategy by strategy (ids in order), each one's in the order it sent them, its ack last
    assert [(f[1], f[0]) for f in first] == [
        ("s1", "order_request"), ("s1", "cancel_request"), ("s1", "sync_ack"),
        ("s2", "order_request"), ("s2", "amend_request"), ("s2", "sync_ack"),
    ]  # fmt: skip


def test_the_sequencer_passes_joins_heartbeats_and_strangers_and_holds_the_next_window() -> None:
    seq = _sequencer()
    passed = _frames("s1:heartbeat", "s3:order_request", "s2:hello", "s1:goodbye")
    assert seq([*_frames("s1:order_request"), *passed]) == passed  # at once, in arrival order
    assert seq([None]) == [None]  # type: ignore[list-item] # what it cannot read: the server refuses it
    # s1 acknowledges window 1 and already sends for window 2; a repeated ack of an older window
    out = seq(_frames("s1:sync_ack@1", "s1:order_request", "s2:sync_ack@0", "s2:sync_ack@1"))
    assert out == _frames("s1:order_request", "s1:sync_ack@1", "s2:sync_ack@0", "s2:sync_ack@1")
    assert seq.held == 1  # s1's order of window 2 waits for window 2's acknowledgements
    seq.step = 2
    assert seq(_frames("s2:sync_ack@2")) == []
    assert seq(_frames("s1:sync_ack@2")) == _frames("s1:order_request", "s1:sync_ack@2", "s2:sync_ack@2")
    # the recording is over: nothing is held any more, what was goes with the next frames
    assert seq(_frames("s1:order_request")) == []
    seq.finish()
    assert seq(_frames("s2:cancel_request")) == _frames("s2:cancel_request", "s1:order_request")


async def test_the_paper_venue_at_a_time_scale_records_minutes_in_seconds(
    nursery: trio.Nursery, base_dir: Path, zctx: zmq.Context
) -> None:
    config = parse_config(FAST, base_dir=str(base_dir))
    root = config.recorder_path
    with trio.fail_after(30):
        gw, done = await start(nursery, config)
        p = md_peer(zctx, config, "fast1")
        try:
            await p.join()
            first = gw.quotes.last["BTC-USDT"].ts
            coid = await p.order("BTC-USDT", "buy", "market", None, 0.01)
            filled = None
            while filled is None:
                r = await p.report()
                if r.client_order_id == coid and r.status is OrderStatus.FILLED:
                    filled = r
            # Two minutes of the venue's time (two wall seconds at 60x): a condition, not a sleep.
            while gw.quotes.last["BTC-USDT"].ts - first < 120_000:
                await trio.sleep(0.05)
        finally:
            p.close()
        gw.request_stop()
        await done.wait()
    tickers = sorted(read(root, "ticker"), key=lambda r: r["gw_ns"])
    span_ms = tickers[-1]["ts"] - tickers[0]["ts"]
    assert span_ms >= 120_000
    # One clock: the server's publication stamps follow the venue's time (never before the data's
    # time, and minutes apart over the run, which lasted seconds of the wall clock) ...
    assert all(r["gw_ns"] // 1_000_000 >= r["ts"] for r in tickers)
    assert tickers[-1]["gw_ns"] - tickers[0]["gw_ns"] >= 2 * MINUTE_NS - 2 * 10**9
    # ... and the steps are the venue's tick_interval apart on it, not the wall clock's 1/60 s.
    btc = [r["ts"] for r in tickers if r["symbol"] == "BTC-USDT"]
    steps = [b - a for a, b in zip(btc, btc[1:], strict=False)]
    assert sorted(steps)[len(steps) // 2] >= 900  # the median step: about 1 s of the venue's time
    # The order: filled on the paper venue, its report and its recorded send/ack times on that clock.
    assert (
        tickers[0]["ts"] <= filled.timestamp <= filled.gw_ns // 1_000_000 <= tickers[-1]["gw_ns"] // 1_000_000
    )
    (order,) = read(root, "orders")
    assert order["ack_status"] == "accepted" and 0 < order["send_ns"] <= order["ack_ns"]
    assert tickers[0]["gw_ns"] - MINUTE_NS < order["send_ns"] < tickers[-1]["gw_ns"]


def _config(base_dir: Path, name: str, body: str) -> Path:
    cfg = base_dir / f"{name}.toml"
    cfg.write_text(body)
    return cfg


def _strategy(sid: str, symbol: str, out: Path, every: float) -> str:
    return f"""
[[strategies]]
id = "{sid}"
path = "{STRATEGIES / "bt_maker.py"}"
restart = "never"
params = {{ symbol = "{symbol}", out = "{out}", every = {every} }}
"""


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _recorded_span_ns(root: Path) -> int:
    """The span of the closed ticker files of the recording so far (the venue's time)."""
    ts = [
        t
        for f in root.glob("ticker/*/*/*.parquet")
        for t in pq.read_table(f, columns=["ts"]).column("ts").to_pylist()
    ]
    return (max(ts) - min(ts)) * 1_000_000 if ts else 0


async def _record_minutes(base_dir: Path, minutes: float) -> Path:
    """``seqtrade serve`` (a process) on the paper venue at 60x with a strategy trading, until the
    recording holds ``minutes`` of the venue's time; then SIGINT, a clean stop."""
    tape = base_dir / "live1.jsonl"
    cfg = _config(base_dir, "live", FAST + _strategy("live1", "BTC-USDT", tape, 0.05))
    root = parse_config(cfg.read_text(), base_dir=str(base_dir)).recorder_path
    with trio.fail_after(60):
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "seqtrade.cli", "serve", "--config", str(cfg), "--plain"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            # (the files close every 20 s of it); and the strategy has traded: one of its orders filled
            while _recorded_span_ns(root) < minutes * MINUTE_NS or '"status": "filled"' not in _text(tape):
                assert proc.poll() is None, "the server stopped"
                await trio.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGINT)
            await proc.wait()
    assert proc.returncode == 0
    return root


async def _backtest(data: Path, base_dir: Path, name: str) -> dict[str, bytes]:
    """``seqtrade backtest`` with two strategy processes, into its own run dir; the files to compare."""
    out = base_dir / name
    out.mkdir()
    strategies = _strategy("mk1", "BTC-USDT", out / "mk1.jsonl", 0.2) + _strategy(
        "mk2", "ETH-USDT", out / "mk2.jsonl", 0.3
    )
    # A rate limit counts on the recording's clock: its refusals are the same in every run too.
    risk = "\n[risk]\nmax_orders_per_window = 2\nrate_window = 1.0\n"
    cfg = _config(base_dir, name, FAST.split("[recorder]")[0] + risk + strategies)
    run_dir = base_dir / f"run-{name}"
    with trio.fail_after(120):
        proc = await trio.run_process(
            [sys.executable, "-m", "seqtrade.cli", "backtest", "--data", str(data), "--config", str(cfg),
             "--run-dir", str(run_dir), "--out", str(out / "results"), "--no-plot", "--quiet"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    journal = run_dir / "journal.sqlite"
    assert not Path(f"{journal}-wal").exists()  # closed: everything is in the two files
    return {
        "journal.sqlite-log": Path(f"{journal}-log").read_bytes(),
        "journal.sqlite": journal.read_bytes(),
        "results.json": (out / "results" / "results.json").read_bytes(),
        "tapes": (out / "mk1.jsonl").read_bytes() + (out / "mk2.jsonl").read_bytes(),
        "path": str(journal).encode(),
    }


async def test_a_fast_paper_recording_backtests_to_the_same_journal_bytes_twice(base_dir: Path) -> None:
    data = await _record_minutes(base_dir, 3)
    # The live session traded while it was recorded: its orders' send and ack times are in it.
    orders = read(data, "orders")
    assert orders and all(o["ack_ns"] >= o["send_ns"] > 0 for o in orders)
    one = await _backtest(data, base_dir, "one")
    two = await _backtest(data, base_dir, "two")
    for name in ("journal.sqlite-log", "journal.sqlite", "results.json", "tapes"):
        assert one[name] == two[name], f"{name} differs between two runs"
    # Not trivial: both strategies' orders and fills are in the journal, and the results count them.
    db = sqlite3.connect(one["path"].decode())
    try:
        per = dict(db.execute("SELECT strategy_id, count(*) FROM orders GROUP BY strategy_id").fetchall())
        fills = db.execute("SELECT count(*) FROM fills").fetchone()[0]
        refused = db.execute("SELECT count(*) FROM orders WHERE sent = 0").fetchone()[0]
        vids, created = zip(
            *db.execute("SELECT venue_order_id, created_ms FROM orders").fetchall(), strict=True
        )
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()
    assert per.keys() == {"mk1", "mk2"} and min(per.values()) >= 5 and fills >= 2
    assert refused > 0  # the rate limit refused some, on the recording's clock
    assert meta["journal_id"] == "virtual-clock"
    assert one["tapes"].count(b'"status": "filled"') >= 2  # the strategies saw their fills (with now())
    doc = json.loads(one["results.json"])
    assert doc["strategies"]["mk1"]["fills"] > 0 and doc["strategies"]["mk2"]["fills"] > 0
    assert doc["end_ns"] - doc["start_ns"] >= 3 * MINUTE_NS - 30 * 10**9  # minutes of the recording
    # The journal's times are the recording's, its venue order ids a counter from the clock's start.
    assert all(doc["start_ns"] // 1_000_000 <= t <= doc["end_ns"] // 1_000_000 for t in created)
    assert all(v.startswith("s0x") for v in vids)
