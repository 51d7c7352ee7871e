"""``seqtrade backtest`` (seqtrade.replay_backtest): a recording made by the real server (paper venue)
traded by two real strategy processes on the recording's clock, fills by the fill model; run twice, the
journaled reports, the strategies' own logs of what they saw and did (with ``now()``) and the results
are the same bytes."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import trio

from seqtrade import wire

from .test_replay import STRATEGIES, record


def journaled_reports(journal: Path) -> list[tuple[Any, ...]]:
    """Every journaled report, per strategy in seq order, without what is the wall clock's or the server's
    own (``gw_ns``: when it was published; venue order ids: made from the server's start time)."""
    db = sqlite3.connect(journal)
    try:
        rows = db.execute("SELECT strategy_id, seq, body FROM reports ORDER BY strategy_id, seq").fetchall()
    finally:
        db.close()
    out = []
    for sid, seq, body in rows:
        d = dict(wire._unpack(body))
        d.pop("gw_ns", None)
        out.append((sid, seq, json.dumps(d, sort_keys=True, default=str)))
    return out


async def backtest(data: Path, base_dir: Path, name: str) -> tuple[list[Any], str, str, bytes]:
    out = base_dir / name
    out.mkdir()
    cfg = base_dir / f"{name}.toml"
    strategies = "".join(f"""
[[strategies]]
id = "{sid}"
path = "{STRATEGIES / "bt_maker.py"}"
restart = "never"
params = {{ symbol = "{sym}", out = "{out / sid}.jsonl", every = {every} }}
""" for sid, sym, every in (("mk1", "BTC-USDT", 0.2), ("mk2", "ETH-USDT", 0.3)))  # fmt: skip
    cfg.write_text(f"""
[server]
run_dir = "run"
status_interval = 0

[venue]
kind = "paper"
symbols = ["BTC-USDT", "ETH-USDT"]
{strategies}""")
    with trio.fail_after(180):
        proc = await trio.run_process(
            [sys.executable, "-m", "seqtrade.cli", "backtest", "--data", str(data), "--config", str(cfg),
             "--out", str(out / "results"), "--log-level", "INFO"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    log = proc.stderr.decode()
    assert proc.returncode == 0, log + proc.stdout.decode()
    assert "backtest finished" in log and "ETA" in log
    reports = journaled_reports(base_dir / "run-backtest" / "journal.sqlite")
    tapes = (out / "mk1.jsonl").read_text() + (out / "mk2.jsonl").read_text()
    results = (out / "results" / "results.json").read_bytes()
    assert (out / "results" / "equity.png").exists()
    return reports, tapes, proc.stdout.decode(), results


async def test_a_recording_backtests_to_two_strategies_the_same_twice(
    nursery: trio.Nursery, base_dir: Path
) -> None:
    data = await record(nursery, base_dir, 1500)
    first = await backtest(data, base_dir, "one")
    (base_dir / "run-backtest" / "journal.sqlite").rename(base_dir / "one.sqlite")
    second = await backtest(data, base_dir, "two")
    reports, tapes, stdout, results = first
    assert second[0] == reports  # the journaled reports
    assert second[1] == tapes  # what each strategy saw and did, with its clock
    assert second[3] == results  # results.json, byte for byte
    # It traded: fills at recorded prices, both strategies, on the recording's clock.
    statuses = [json.loads(r[2])["status"] for r in reports]
    assert "filled" in statuses and {r[0] for r in reports} == {"mk1", "mk2"}
    doc = json.loads(results)
    assert doc["strategies"]["mk1"]["fills"] > 0 and doc["strategies"]["mk2"]["fills"] > 0
    assert doc["account"]["fills"] == doc["strategies"]["mk1"]["fills"] + doc["strategies"]["mk2"]["fills"]
    lines = [json.loads(x) for x in tapes.splitlines()]
    recorded_span = (doc["start_ns"] / 1e9, doc["end_ns"] / 1e9)
    nows = [d["now"] for d in lines if d["event"] == "timer"]
    assert nows and all(recorded_span[0] <= t <= recorded_span[1] + 1 for t in nows)  # the recording's time
    assert "mk1: net" in stdout and "account: net" in stdout
    stops = [d for d in lines if d["event"] == "stop"]
    assert len(stops) == 2  # both stopped cleanly, with the same final state in both runs (compared above)


def test_the_replay_bench_measures_events_per_second(capsys) -> None:
    from seqtrade.bench.replay import main

    assert main(["--events", "400", "--per-ms", "10", "--strategies", "1"]) == 0
    out = capsys.readouterr().out
    assert "recording: 400 events" in out
    assert "1 strategy: 400 events in" in out and "events/s (41 windows of 1 ms" in out
