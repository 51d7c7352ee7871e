"""Funding in backtests: the recorded funding rates and times of a swap settle on the position the fill
model holds, reach the strategies as ``account_event`` reports as they would live, and count in the
results (seqtrade.replay_fills.SimExchange, seqtrade.replay_backtest.BacktestVenue)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import trio

from seqtrade.config import parse_config
from seqtrade.fill_model import ConstantLatency, Contract, Fees
from seqtrade.models import AccountEventKind, Book, FundingRate, MarkPrice, OrderType, Side, Ticker
from seqtrade.replay_fills import SimExchange
from seqtrade.venues.base import VenueOrder

from .test_recorder import LIVELY, read, start

SWAP = "BTC-USDT-SWAP"
INV = "BTC-USD-SWAP"
MS = 1_000_000
STRATEGY = Path(__file__).parent / "strategies" / "funding_holder.py"


def test_recorded_rates_settle_once_per_time_on_the_position_as_account_events() -> None:
    x = SimExchange(Fees(0.0, 0.0), ConstantLatency(MS),
                    contracts={SWAP: Contract(0.01, False, "USDT"), INV: Contract(100.0, True, "BTC")})  # fmt: skip
    for sym in (SWAP, INV):
        x.on_market(Book(sym, 1, [[99.0, 50.0]], [[100.0, 50.0]]), 1 * MS)
    x.submit(VenueOrder("l", SWAP, Side.BUY, OrderType.MARKET, None, 10.0), 1 * MS)  # long 10 contracts
    x.submit(VenueOrder("s", INV, Side.SELL, OrderType.MARKET, None, 5.0), 1 * MS)  # short 5 inverse ones
    x.advance(3 * MS)
    x.on_market(MarkPrice(SWAP, 4, 100.0, 100.0), 4 * MS)
    x.on_market(MarkPrice(INV, 4, 50.0, 50.0), 4 * MS)
    x.on_market(FundingRate(SWAP, 5, 0.0002, 10, 10), 5 * MS)
    x.on_market(FundingRate(INV, 5, 0.0004, 10, 10), 5 * MS)
    x.on_market(MarkPrice(SWAP, 9, 101.0, 101.0), 9 * MS)  # the mark at the settlement: the last one
    assert x.account_events == [] and x.funding == []
    x.on_market(
        Ticker(SWAP, 10, 101.0, 100.0, 102.0, 1.0, 1.0, 0.0), 10 * MS
    )  # the recording reaches 10 ms: settled
    got = [(e.kind, e.symbol, e.event_id, e.amount, e.currency, e.price) for e in x.account_events]
    assert got == [
        (AccountEventKind.FUNDING, SWAP, f"funding-{SWAP}-10", pytest.approx(-10 * 0.01 * 101.0 * 0.0002), "USDT", 101.0),
        (AccountEventKind.FUNDING, INV, f"funding-{INV}-10", pytest.approx(5 * 100.0 / 50.0 * 0.0004), "BTC", 50.0),
    ]  # fmt: skip
    assert [(f.symbol, f.amount) for f in x.funding] == [(e[1], e[3]) for e in got]
    x.account_events.clear()
    x.on_market(FundingRate(SWAP, 11, 0.0002, 10, 10), 11 * MS)  # the same time again: paid already
    x.on_market(Ticker(SWAP, 12, 101.0, 100.0, 102.0, 1.0, 1.0, 0.0), 12 * MS)
    assert x.account_events == []
    x.on_market(FundingRate(SWAP, 13, -0.0001, 20, 10), 13 * MS)  # the next one, negative: longs receive
    x.on_market(Ticker(SWAP, 20, 101.0, 100.0, 102.0, 1.0, 1.0, 0.0), 20 * MS)
    assert [(e.event_id, e.amount) for e in x.account_events] == [
        (f"funding-{SWAP}-20", pytest.approx(10 * 0.01 * 101.0 * 0.0001))
    ]


def _stop_this_process(seconds: float) -> None:
    """This whole process (every thread) does not run for ``seconds``, as on an overloaded machine: it
    stops itself, a child sends SIGCONT."""
    waker = subprocess.Popen(["sh", "-c", f"sleep {seconds}; kill -CONT {os.getpid()}"])
    os.kill(os.getpid(), signal.SIGSTOP)
    waker.wait(10)


async def record_with_funding(
    nursery: trio.Nursery, base_dir: Path, settlements: int, stall: float = 0.0
) -> Path:
    """A paper recording by the real server (funding every second) that holds ``settlements`` funding
    times the venue announced before it settled them; ``stall``: the process stops that long at the start.

    Counted, not timed: a venue that did not run past several funding times (a stalled process) settles
    only the newest at its next step, a time it never announced, and a backtest pays only the times its
    recording announced. Counting 5 s of venue time as 5 settlements left a recording with none or one
    that a backtest could pay after a 4.5 s stall at the start (a CI run once got 1 of 3). The settled
    time is read before the announced one at each look, so a time seen announced at one look and settled
    at a later one was published in that order.
    """
    text = LIVELY.replace("tick_size = 0.1\n", "tick_size = 0.1\nfunding_interval = 1.0\n", 1)
    config = parse_config(text, base_dir=str(base_dir))
    assert config.venue.paper.funding_interval == 1.0
    with trio.fail_after(30 + stall):
        gw, done = await start(nursery, config)
        venue = gw.venue
        if stall:
            _stop_this_process(stall)
        announced: set[int] = set()
        payable: list[int] = []
        while len(payable) < settlements:
            if venue._funding_ms in announced and venue._funding_ms not in payable:
                payable.append(venue._funding_ms)
            announced.add(venue._funding_next)
            await trio.sleep(0.05)  # polls the venue's funding times (bounded by fail_after)
        gw.request_stop()
        await done.wait()
    return config.recorder_path


@pytest.mark.parametrize("stall", [0.0, 4.5], ids=["running", "stalled-at-start"])
async def test_a_backtest_pays_recorded_funding_to_the_strategy_as_account_events(
    nursery: trio.Nursery, base_dir: Path, stall: float
) -> None:
    data = await record_with_funding(nursery, base_dir, 3, stall)
    out = base_dir / "holder.jsonl"
    cfg = base_dir / "bt.toml"
    cfg.write_text(f"""
[server]
run_dir = "run"
status_interval = 0

[venue]
kind = "paper"
symbols = ["{SWAP}"]

[[strategies]]
id = "hold"
path = "{STRATEGY}"
restart = "never"
params = {{ symbol = "{SWAP}", size = 10, out = "{out}" }}
""")
    with trio.fail_after(120):
        proc = await trio.run_process(
            [sys.executable, "-m", "seqtrade.cli", "backtest", "--data", str(data), "--config", str(cfg),
             "--out", str(base_dir / "res"), "--no-plot", "--quiet"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    funding = [d for d in lines if d["kind"] == "funding"]
    assert lines[-1] == {"kind": "stop", "position": 10.0}, lines
    # the recording's settlement times, each once, at the recorded rate for it
    rates = {}
    for f in (data / "funding").rglob("*.parquet"):
        for r in pq.read_table(f).to_pylist():
            if r["symbol"] == SWAP:
                rates[r["next_funding_time"]] = r["funding_rate"]
    times = [int(d["event_id"].rsplit("-", 1)[1]) for d in funding]
    # 3 announced times settled: the first may come before the position (bought at the first book, filled
    # at the next one), the others are paid
    assert len(funding) >= 2 and times == sorted(set(times)), (times, sorted(rates))
    recorded = sorted(
        r["gw_ns"] for table in data.iterdir() for r in read(data, table.name) if r.get("symbol") == SWAP
    )
    for d, t in zip(funding, times, strict=True):
        assert d["amount"] == pytest.approx(-10 * 0.01 * 100.0 * rates[t], rel=0.05)  # mark about 100
        # settled at the first recorded message at or after its time (a stalled recording has none for a
        # while), on the recording's clock (the strategy's clock: the window before the payment)
        assert d["ts"] == next(ns for ns in recorded if ns >= t * MS) // MS
        assert recorded[0] / 1e9 <= d["now"] <= d["ts"] / 1000
    doc = json.loads((base_dir / "res" / "results.json").read_text())
    assert doc["strategies"]["hold"]["funding"] == pytest.approx(sum(d["amount"] for d in funding))
