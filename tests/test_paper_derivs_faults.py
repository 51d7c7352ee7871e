"""Swaps on the paper venue through kill -9 of the server during funding and fills: every position
still reconciles, and every funding reaches each owner exactly once.

Real processes, as in tests/test_faults.py (whose :class:`Rig` this reuses): ``seqtrade serve`` on the
paper venue with BTC-USDT-SWAP funding every 0.3 s, and two ``seqtrade run`` strategies
(tests/strategies/swapper.py) on opposite sides of the swap: A long 3 contracts, B short 1 (net mode:
the paper account holds +2), and A also trades 0.01 contracts in and out every 0.1 s (fills while the
server dies), one lot at a time: the next only after the previous one's final report, so the lots that
fill go buy, sell, buy, ... and A ends at 3 or 3.01 contracts. The server is killed with SIGKILL
again and again, half of the times the moment a new funding appears in the paper account (committed, most likely not yet taken by the
server), and restarted. At the end, with the market still, each strategy's position, the server's
books and the paper account agree; each funding the paper account settled is in the journal once per
owner, its shares add up to the account's amount, and each strategy process applied it once.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from seqtrade.server.control import request

from .test_faults import Rig, rig, show, wait_exit  # noqa: F401 - rig: the fixture

SWAPPER = str(Path(__file__).parent / "strategies" / "swapper.py")
SWAP = "BTC-USDT-SWAP"

CONFIG = """
[server]
run_dir = "{run_dir}"
status_interval = 0
heartbeat_timeout = 60.0
dead_strategy_policy = "leave"
shutdown_policy = "leave"
snapshot_interval = 0.3

[journal]
synchronous = "full"  # an fsync per commit: the server takes a funding more slowly, the kill lands sooner

[venue]
kind = "paper"
symbols = ["BTC-USDT-SWAP"]

[venue.paper]
tick_interval = {tick_interval}
volatility = 0.0002
trade_probability = 0.0
funding_interval = {funding_interval}
funding_rate = 0.0001
funding_rate_jitter = 0.0002
balances = {{ USDT = 100000.0 }}
start_prices = {{ "BTC-USDT-SWAP" = 60000.0 }}

[venue.derivatives.instruments."BTC-USDT-SWAP"]
leverage = 10
"""


def write_config(r: Rig, name: str, *, tick_interval: float, funding_interval: float) -> Path:
    path = r.base / f"{name}.toml"
    path.write_text(
        CONFIG.format(run_dir=r.run_dir, tick_interval=tick_interval, funding_interval=funding_interval)
    )
    return path


def start_swapper(r: Rig, sid: str, side: str, size: float, churn: float = 0.0) -> None:
    out = r.base / f"{sid}.{len(r.outs[sid])}.jsonl"
    r.outs[sid].append(out)
    args = [sys.executable, "-m", "seqtrade.cli", "run", f"{SWAPPER}:Swapper", "--id", sid, "--run-dir",
            str(r.run_dir), "--param", f"out={json.dumps(str(out))}", "--param", f"side={json.dumps(side)}",
            "--param", f"size={size}", "--param", f"churn={churn}"]  # fmt: skip
    log = open(r.base / f"{sid}.log", "ab")  # noqa: SIM115 - the child holds it
    p = subprocess.Popen(args, stdout=log, stderr=log)
    log.close()
    r.procs.append(p)
    r.strategies[sid] = p


def paper_changes(r: Rig) -> list[tuple[str, int]]:
    """(event_id, delivered) of every account change in the paper account, oldest first."""
    path = r.run_dir / "paper.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=5)
    try:
        return list(db.execute("SELECT event_id, delivered FROM account_changes ORDER BY rowid"))
    except sqlite3.OperationalError:  # not made yet
        return []
    finally:
        db.close()


def journaled_ids(r: Rig) -> set[str]:
    """The account event ids in the journal (of any strategy)."""
    db = sqlite3.connect(r.run_dir / "journal.sqlite", timeout=5)
    try:
        bodies = [msgpack.unpackb(b, raw=False) for (b,) in db.execute("SELECT body FROM reports")]
    finally:
        db.close()
    return {b["event_id"] for b in bodies if "event_id" in b}


async def wait_filled(r: Rig, sid: str, timeout: float = 20.0) -> None:
    """Until the strategy has applied the fill of its one order."""
    with trio.fail_after(timeout):
        while True:
            assert r.strategies[sid].poll() is None, r.log_tail(f"{sid}.log")
            if any(x["ev"] == "r" and x["status"] == "filled" for x in r.lines(sid)):
                return
            await trio.sleep(0.02)


async def test_server_kill9_during_funding_positions_reconcile_and_funding_counts_once(rig: Rig) -> None:  # noqa: F811
    with trio.fail_after(150):
        rng = random.Random(15)
        walk = write_config(rig, "walk", tick_interval=0.02, funding_interval=0.3)
        rig.start_server(walk)
        await rig.server_ready()
        start_swapper(rig, "A", "buy", 3.0, churn=0.1)
        start_swapper(rig, "B", "sell", 1.0)
        for sid in ("A", "B"):
            await wait_filled(rig, sid)
        cycles, targeted, missing = 6, 0, 0
        for i in range(cycles):
            if i % 2 == 0:  # the moment a new funding is committed to the paper account
                seen = len(paper_changes(rig))
                with trio.fail_after(20):
                    while len(paper_changes(rig)) <= seen:
                        await trio.sleep(0.001)
                targeted += 1
            else:
                await trio.sleep(rng.uniform(0.2, 1.0))
            await rig.kill_server()
            # fundings the paper account has settled that the dead server had not journaled: without the
            # hand-over at the next start they would be lost to the strategies
            in_journal = journaled_ids(rig)
            missing += sum(1 for eid, _ in paper_changes(rig) if eid not in in_journal)
            rig.start_server(walk)
            await rig.server_ready()
        # the finale: a still market, no more funding; every strategy catches up and says what it holds
        await rig.kill_server()
        rig.start_server(write_config(rig, "still", tick_interval=3600.0, funding_interval=10**9))
        await rig.server_ready()
        figures = await stop_and_check(rig)
        figures.update({"kill -9 cycles": cycles, "kills the moment a funding was committed": targeted,
                        "fundings settled but not journaled when the server died (summed over kills)": missing})  # fmt: skip
        show("swaps: server kill -9 during funding", figures)


async def stop_and_check(rig: Rig) -> dict[str, Any]:  # noqa: F811
    """With the last server up on a still market: each strategy catches up and says what it holds,
    stops; the server stops; then :func:`check`. Its figures."""
    finals = {}
    for sid, p in rig.strategies.items():
        assert p.poll() is None, rig.log_tail(f"{sid}.log")
        p.send_signal(signal.SIGUSR1)
    for sid in rig.strategies:
        finals[sid] = await rig.wait_line(sid, "final", timeout=30)
    for p in rig.strategies.values():
        p.send_signal(signal.SIGTERM)
        assert await wait_exit(p) == 0
    status = await trio.to_thread.run_sync(lambda: request(f"ipc://{rig.run_dir / 'control.ipc'}", "status"))
    await rig.stop_server()
    return check(rig, finals, status["accounts"])


def check(rg: Rig, finals: dict[str, dict[str, Any]], accounts: dict[str, Any]) -> dict[str, Any]:
    journal = sqlite3.connect(rg.run_dir / "journal.sqlite")
    paper = sqlite3.connect(rg.run_dir / "paper.sqlite")
    reports: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for sid, seq, body in journal.execute(
        "SELECT strategy_id, seq, body FROM reports ORDER BY strategy_id, seq"
    ):
        reports[sid][seq] = msgpack.unpackb(body, raw=False)
    # -- the journal: seqs 1..N per strategy, each account event id once per strategy
    funding_by_event: dict[str, float] = defaultdict(float)
    funding_by_sid: dict[str, float] = defaultdict(float)
    for sid, by_seq in reports.items():
        assert sorted(by_seq) == list(range(1, len(by_seq) + 1)), f"{sid}: journal seqs not contiguous"
        ids = [r["event_id"] for r in by_seq.values() if "event_id" in r]
        assert len(ids) == len(set(ids)), f"{sid}: an account event journaled twice"
        for r in by_seq.values():
            if "event_id" in r:
                assert r["kind"] == "funding", r
                funding_by_event[r["event_id"]] += r["amount"]
                funding_by_sid[sid] += r["amount"]
    # -- each strategy process applied 1..k once each, in order, exactly as journaled
    for sid in ("A", "B"):
        lines = [x for x in rg.lines(sid) if x["ev"] in ("r", "a")]
        assert [x["seq"] for x in lines] == list(range(1, len(lines) + 1)), f"{sid}: applied seqs not 1..k"
        assert len(lines) == len(reports[sid]), f"{sid}: applied {len(lines)} of {len(reports[sid])}"
        for x in lines:
            if x["ev"] == "a":
                assert x["event_id"] == reports[sid][x["seq"]]["event_id"]
                assert x["amount"] == pytest.approx(reports[sid][x["seq"]]["amount"])
        assert finals[sid]["funding"] == pytest.approx(funding_by_sid[sid], abs=1e-9)
    # -- the paper account: every change in the journal, its shares adding up to it
    changes = {
        eid: json.loads(body) for eid, body in paper.execute("SELECT event_id, body FROM account_changes")
    }
    assert set(changes) == set(funding_by_event), "a funding lost or invented on the way"
    for eid, c in changes.items():
        assert funding_by_event[eid] == pytest.approx(c["amount"], rel=1e-9, abs=1e-12), eid
    qty, funding = paper.execute(
        "SELECT quantity, funding FROM deriv_positions WHERE symbol = ?", (SWAP,)
    ).fetchone()
    assert funding == pytest.approx(sum(funding_by_sid.values()), abs=1e-9)
    # -- positions: each strategy's own, the server's books and the venue's net agree, fill by fill
    owner = dict(journal.execute("SELECT venue_order_id, strategy_id FROM orders"))
    want: dict[str, float] = defaultdict(float)
    fills = 0
    for vid, side, filled, submits in paper.execute(
        "SELECT venue_order_id, side, filled, submits FROM orders"
    ):
        assert submits == 1, f"order {vid} submitted {submits} times"
        assert vid in owner, f"venue order {vid} is not journaled"
        want[owner[vid]] += filled if side == "buy" else -filled
        fills += filled > 0
    assert want["A"] == pytest.approx(finals["A"]["position"]) and want["B"] == pytest.approx(-1.0)
    lots_alternate(rg, journal, "A")
    assert 3.0 <= finals["A"]["position"] <= 3.01 + 1e-9 and finals["B"]["position"] == -1.0
    for sid in ("A", "B"):
        assert accounts["strategies"][sid][SWAP]["position"] == pytest.approx(want[sid], abs=1e-9)
    assert qty == pytest.approx(want["A"] + want["B"]) and accounts["account"][SWAP][
        "position"
    ] == pytest.approx(qty)
    assert changes, "no funding was settled: the test proves nothing"
    log = rg.log_tail(n=10**9)
    return {
        "server starts": rg.server_starts,
        "orders filled at the venue": fills,
        "fundings settled by the paper account": len(changes),
        "funding reports journaled (A + B)": sum(
            len([r for r in v.values() if "event_id" in r]) for v in reports.values()
        ),
        "handed over again after a restart": log.count("handing them over again"),
        "funding A / B / paper (USDT)": (
            round(funding_by_sid["A"], 6),
            round(funding_by_sid["B"], 6),
            round(funding, 6),
        ),
    }


def lots_alternate(rg: Rig, journal: sqlite3.Connection, sid: str) -> None:
    """The swapper's churn lots that filled went out and back: buy, sell, buy, ... (for a long holder),
    in the order the strategy applied their fills. Two the same side in a row would mean a lot sent
    while the one before was in flight (``accepted``, its fill not yet reported, e.g. across a kill -9),
    judged from a position without that fill: the position ends a lot outside the held one for a
    reason of the strategy, not of the server (whose books the checks before match fill by fill)."""
    side_of = dict(journal.execute(
        "SELECT client_order_id, side FROM orders WHERE strategy_id = ?", (sid,)
    ))  # fmt: skip
    sides = [side_of[x["coid"]] for x in rg.lines(sid)
             if x["ev"] == "r" and x["coid"].startswith(f"{sid}c") and x["status"] == "filled"]  # fmt: skip
    assert sides == [("buy", "sell")[i % 2] for i in range(len(sides))], f"{sid}: churn lots {sides}"
