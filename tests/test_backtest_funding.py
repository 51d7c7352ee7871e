"""Funding in backtests: the recorded funding rates and times of a swap settle on the position the fill
model holds, reach the strategies as ``account_event`` reports as they would live, and count in the
results (seqtrade.replay_fills.SimExchange, seqtrade.replay_backtest.BacktestVenue)."""

from __future__ import annotations

import json
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

from .test_recorder import LIVELY, start

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


async def record_with_funding(nursery: trio.Nursery, base_dir: Path, settlements: int) -> Path:
    """A paper recording by the real server that spans ``settlements`` funding times (one a second)."""
    text = LIVELY.replace("tick_size = 0.1\n", "tick_size = 0.1\nfunding_interval = 1.0\n", 1)
    config = parse_config(text, base_dir=str(base_dir))
    assert config.venue.paper.funding_interval == 1.0
    with trio.fail_after(30):
        gw, done = await start(nursery, config)
        first = None
        while first is None or gw.venue._funding_ms - first < settlements * 1000:
            first = first or gw.venue._funding_ms or None
            await trio.sleep(0.05)  # polls the venue's settled funding time (bounded by fail_after)
        gw.request_stop()
        await done.wait()
    return config.recorder_path


async def test_a_backtest_pays_recorded_funding_to_the_strategy_as_account_events(
    nursery: trio.Nursery, base_dir: Path
) -> None:
    data = await record_with_funding(nursery, base_dir, 5)
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
    assert len(funding) >= 2 and times == sorted(set(times)), (times, sorted(rates))
    for d, t in zip(funding, times, strict=True):
        assert d["amount"] == pytest.approx(-10 * 0.01 * 100.0 * rates[t], rel=0.05)  # mark about 100
        # settled at the first recorded message at or after its time, on the recording's clock
        assert t <= d["ts"] < t + 1000 and abs(d["now"] * 1000 - t) < 1000
    doc = json.loads((base_dir / "res" / "results.json").read_text())
    assert doc["strategies"]["hold"]["funding"] == pytest.approx(sum(d["amount"] for d in funding))
