"""A full disk at a paper funding's hand-over (``VenueSink.account_event`` returns once journaled):
the journal's write fails, the server stops with that error (nothing of the report stage's batch is
dropped while it goes on), the paper account keeps the funding unmarked, and the next start hands it
over again: journaled once, received by its owner.

The disk is made full at the OS boundary, not in the code: the descriptor the journal writes its log
through is pointed at ``/dev/full`` (every write fails with ENOSPC), found by its path in
``/proc/self/fd``.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import msgpack
import pytest
import trio

from seqtrade.config import Config, parse_config
from seqtrade.errors import JournalError
from seqtrade.models import AccountEvent, AccountEventKind, OrderReport
from seqtrade.server.app import serve
from seqtrade.server.gateway import Gateway
from seqtrade.server.journal import Journal
from seqtrade.venues.paper import PaperVenue

from .peer import Peer

SWAP = "BTC-USDT-SWAP"
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
funding_interval = 0.3
balances = { USDT = 1000.0 }
start_prices = { "BTC-USDT-SWAP" = 60000.0 }
"""

pytestmark = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")


def venue(config: Config) -> PaperVenue:
    return PaperVenue(
        config.venue.paper, list(config.venue.symbols), state_path=config.run_dir / "paper.sqlite",
        derivatives=config.venue.derivatives,
    )  # fmt: skip


def fill_disk(path: Path) -> None:
    """Every later write through the descriptor open on ``path`` fails with ENOSPC."""
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd") if _target(fd) == str(path)]
        assert fds, f"{path} is not open"
        for fd in fds:
            os.dup2(full, fd)
    finally:
        os.close(full)


def _target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def paper_changes(config: Config) -> dict[str, int]:
    db = sqlite3.connect(config.run_dir / "paper.sqlite", timeout=5)
    try:
        return dict(db.execute("SELECT event_id, delivered FROM account_changes ORDER BY rowid"))
    finally:
        db.close()


def journaled_ids(config: Config) -> list[tuple[str, str]]:
    """(strategy, event id) of every account event in the journal, its log read in first."""
    Journal(config.run_dir / "journal.sqlite").close()
    db = sqlite3.connect(config.run_dir / "journal.sqlite", timeout=5)
    try:
        bodies = [msgpack.unpackb(b, raw=False) for (b,) in db.execute("SELECT body FROM reports")]
    finally:
        db.close()
    return [(b["strategy_id"], b["event_id"]) for b in bodies if "event_id" in b]


async def test_a_full_disk_at_a_funding_hand_over_stops_the_server_and_the_restart_hands_it_over(
    base_dir: Path, peers: dict[str, Peer]
) -> None:
    config = parse_config(CONFIG, base_dir=str(base_dir))
    with trio.fail_after(30):
        with pytest.raises(BaseExceptionGroup) as caught:
            async with trio.open_nursery() as nursery:
                gw: Gateway = await nursery.start(serve, config, venue(config))
                a = peers["a"]
                await a.join()
                await a.order(SWAP, "buy", "market", None, 1.0)
                while True:
                    r = await a.report()
                    if isinstance(r, OrderReport) and not r.is_open:
                        break
                fill_disk(gw.journal.log_path)
                await trio.sleep_forever()  # the next funding's hand-over: the journal write fails
        assert caught.group_contains(JournalError, depth=None), caught.value
        unmarked = [eid for eid, delivered in paper_changes(config).items() if not delivered]
        assert len(unmarked) == 1, paper_changes(config)
        (funding,) = unmarked
        assert ("a", funding) not in journaled_ids(config)
        # a start on the same run directory: the funding is handed over again, journaled, received
        async with trio.open_nursery() as nursery:
            gw = await nursery.start(serve, config, venue(config))
            await a.join()  # the reports it missed are collected in a.reports
            while not [r for r in a.reports if isinstance(r, AccountEvent) and r.event_id == funding]:
                await a.report()
            gw.request_stop()
        (got,) = [r for r in a.reports if isinstance(r, AccountEvent) and r.event_id == funding]
        assert got.kind is AccountEventKind.FUNDING
        assert journaled_ids(config).count(("a", funding)) == 1
        assert paper_changes(config)[funding] == 1
