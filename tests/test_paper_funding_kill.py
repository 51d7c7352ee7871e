"""A server process killed with SIGKILL the moment a funding is committed to the paper account, kept
down across 3 funding times (1 s each) and started again: each funding time is settled once, none
skipped, the ones it was down for at its restart, and each reaches the strategy holding the position
once (the one committed but not journaled before the kill is handed over again, not settled again).

Real processes, as in tests/test_paper_derivs_faults.py (whose helpers this reuses): ``seqtrade serve``
on the paper venue and a ``seqtrade run`` strategy (tests/strategies/swapper.py) long 2 BTC-USDT-SWAP.
Counted, not timed: the server stays down until the wall clock has passed 3 funding times after the
last one settled, however long its start takes."""

from __future__ import annotations

import sqlite3
import time

import msgpack
import trio

from .test_faults import Rig, rig  # noqa: F401 - rig: the fixture
from .test_paper_derivs_faults import SWAP, paper_changes, start_swapper, wait_filled, write_config


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def time_of(event_id: str) -> int:
    return int(event_id.rsplit("-", 1)[1])


async def test_a_server_killed_across_funding_times_settles_each_once_at_its_restart(rig: Rig) -> None:  # noqa: F811
    with trio.fail_after(90):
        config = write_config(rig, "walk", tick_interval=0.05, funding_interval=1.0)
        rig.start_server(config)
        await rig.server_ready()
        start_swapper(rig, "A", "buy", 2.0)
        await wait_filled(rig, "A")
        seen = len(paper_changes(rig))
        while len(paper_changes(rig)) <= seen:  # the moment a new funding is committed: killed
            await trio.sleep(0.001)
        await rig.kill_server()
        before_kill = paper_changes(rig)
        last_settled = time_of(before_kill[-1][0])
        while now_ms() < last_settled + 3500:  # down across 3 funding times (polls the wall clock)
            await trio.sleep(0.05)
        rig.start_server(config)
        await rig.server_ready()
        restarted = now_ms()
        while True:  # until a time after the restart is settled and everything is handed over
            changes = paper_changes(rig)
            applied = [x for x in rig.lines("A") if x["ev"] == "a"]
            if (
                time_of(changes[-1][0]) >= restarted // 1000 * 1000 + 1000
                and all(d for _, d in changes[:-1])
                and len(applied) >= len(changes) - 1
            ):
                break
            await trio.sleep(0.05)
        await rig.stop_server()
    changes = paper_changes(rig)
    times = [time_of(eid) for eid, _ in changes]
    assert all(eid.startswith(f"funding-{SWAP}-") for eid, _ in changes)
    # the paper account: every funding time from the first to the last, once; the 3 it was down for too
    assert times == list(range(times[0], times[-1] + 1, 1000)), times
    assert {last_settled + 1000, last_settled + 2000, last_settled + 3000} <= set(times)
    assert changes[: len(before_kill)] == [(eid, 1) for eid, _ in before_kill]  # delivered by now
    # the journal: each delivered one once, for A, stamped with its own time
    db = sqlite3.connect(rig.run_dir / "journal.sqlite")
    try:
        bodies = [
            msgpack.unpackb(b, raw=False) for (b,) in db.execute("SELECT body FROM reports ORDER BY seq")
        ]
    finally:
        db.close()
    journaled = [b for b in bodies if "event_id" in b]
    delivered = [eid for eid, d in changes if d]
    assert [b["event_id"] for b in journaled] == delivered
    assert all(
        (b["strategy_id"], b["kind"], b["ts"]) == ("A", "funding", time_of(b["event_id"])) for b in journaled
    )
    assert len(delivered) >= len(changes) - 1  # at most the newest one still on its way at the stop
    # the strategy applied each once, in order
    applied_ids = [x["event_id"] for x in rig.lines("A") if x["ev"] == "a"]
    assert applied_ids == delivered[: len(applied_ids)] and len(applied_ids) >= len(before_kill) + 3
    log = rig.log_tail(n=10**9)
    assert "funding times due at once" in log, log[-3000:]
