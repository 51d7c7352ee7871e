"""A real stall of the paper venue's process: the server (paper venue, funding every second) runs in
this process with a strategy (a protocol peer on real ZeroMQ sockets) long 2 BTC-USDT-SWAP; the whole
process is stopped with SIGSTOP for 3.6 s (as tests/test_backtest_funding.py's stall does) and
resumed. Every funding time is settled exactly once, the 3 or more the stall spanned among them, each
stamped with its own time and at its own rate: checked in the server's journal and in the paper
account. Counted, not timed: the stall is long enough to span 3 funding times whatever the load."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from seqtrade.config import Config, parse_config
from seqtrade.models import AccountEventKind
from seqtrade.server.app import serve
from seqtrade.server.gateway import Gateway
from seqtrade.venues.paper import PaperVenue
from seqtrade.venues.paper_derivs import funding_rate

from .test_backtest_funding import _stop_this_process
from .test_paper_derivs_server import account_event, journaled_events, paper, trade

SWAP = "BTC-USDT-SWAP"
STALL = 3.6  # seconds: spans 3 funding times at least
CONFIG = """
[server]
run_dir = "run"
status_interval = 0
heartbeat_timeout = 30.0
shutdown_policy = "leave"

[venue]
kind = "paper"
symbols = ["BTC-USDT-SWAP"]

[venue.paper]
tick_interval = 0.05
trade_probability = 0.0
balances = { USDT = 10000.0 }
start_prices = { "BTC-USDT-SWAP" = 60000.0 }
funding_interval = 1.0
funding_rate = 0.0001
funding_rate_jitter = 0.0002
seed = 5
"""


@pytest.fixture
def config(base_dir: Path) -> Config:
    return parse_config(CONFIG, base_dir=str(base_dir))


@pytest.fixture
async def server(nursery: trio.Nursery, config: Config) -> AsyncIterator[Gateway]:
    venue = PaperVenue(
        config.venue.paper, list(config.venue.symbols), state_path=config.run_dir / "paper.sqlite",
        derivatives=config.venue.derivatives,
    )  # fmt: skip
    gw: Gateway = await nursery.start(serve, config, venue)
    yield gw
    gw.request_stop()


def time_of(event_id: str) -> int:
    return int(event_id.rsplit("-", 1)[1])


async def test_a_sigstopped_paper_venue_settles_every_funding_time_once_when_it_resumes(
    server: Gateway, peers, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="seqtrade.venues.paper")
    cfg = config.venue.paper
    with trio.fail_after(30 + STALL):
        a = peers["a"]
        await a.join()
        await trade(a, "buy", 2.0)
        first = await account_event(a)  # a settlement while running
        stopped_ms = time.time_ns() // 1_000_000
        _stop_this_process(STALL)
        resumed_ms = time.time_ns() // 1_000_000
        assert resumed_ms - stopped_ms >= 3000
        got = [first]
        while time_of(got[-1].event_id) < resumed_ms // 1000 * 1000:  # up to the time due at the resume
            got.append(await account_event(a))
    assert all(e.kind is AccountEventKind.FUNDING for e in got)
    times = [time_of(e.event_id) for e in got]
    inside = [t for t in times if stopped_ms < t <= resumed_ms]
    assert len(inside) >= 3, (stopped_ms, resumed_ms, times)
    # the journal: every funding time from the first to the last exactly once, stamped with its time
    journaled = [e for e in journaled_events(server, config) if e["kind"] == "funding"]
    jtimes = [time_of(e["event_id"]) for e in journaled]
    assert jtimes == list(range(times[0], jtimes[-1] + 1, 1000)), jtimes
    assert jtimes[: len(times)] == times
    for e in journaled:
        t = time_of(e["event_id"])
        assert (e["strategy_id"], e["symbol"], e["ts"]) == ("a", SWAP, t)
        rate = funding_rate(SWAP, t, base=cfg.funding_rate, jitter=cfg.funding_rate_jitter, seed=cfg.seed)
        assert e["amount"] == pytest.approx(-2 * 0.01 * e["price"] * rate, rel=1e-9)
    # the times the stall spanned were settled at one look, on the resume
    # (a loaded machine may make the venue fall more than an interval behind elsewhere too: 2 at once)
    at_once = [int(r.getMessage().split()[2]) for r in caplog.records if "due at once" in r.getMessage()]
    assert max(at_once) >= 3, at_once
    # the paper account holds each once, and the position's funding is their sum (read with the journal
    # without a checkpoint between: the venue cannot run; what it committed and is still handing over
    # may be there and not yet in the journal)
    venue = paper(server)
    assert venue._store is not None
    db = sqlite3.connect(venue._store.path)
    try:
        rows = [
            (r[0], json.loads(r[1]))
            for r in db.execute("SELECT event_id, body FROM account_changes ORDER BY rowid")
        ]
        (funding,) = db.execute("SELECT funding FROM deriv_positions WHERE symbol = ?", (SWAP,)).fetchone()
    finally:
        db.close()
    ids = [i for i, _ in rows]
    assert ids[: len(journaled)] == [e["event_id"] for e in journaled]
    assert [time_of(i) for i in ids] == list(range(times[0], time_of(ids[-1]) + 1, 1000))
    assert funding == pytest.approx(sum(b["amount"] for _, b in rows), rel=1e-9)
