"""A paper funding through a kill -9 of the server at a chosen point of its hand-over: nothing lost,
nothing applied twice.

The ordering these tests pin down (venues/base.py, ``VenueSink.account_event``): the paper account
commits a funding, then hands it over; the hand-over returns only once the server's journal holds it
(the log's ``write(2)`` returned); only then does the paper account mark it delivered; at a start it
hands over again every funding not marked so, and the server applies an event id once.

Real processes: the server is tests/kill_serve.py (the real server on the real paper venue, whose
sink is wrapped to send the process SIGKILL at one point of the first funding's hand-over), the
strategies are two ``seqtrade run`` tests/strategies/swapper.py holding opposite sides of the swap.
The server dies at that point, deterministically, then ``seqtrade serve`` starts on the same run
directory with a still market and the strategies catch up; every check of
tests/test_paper_derivs_faults.py follows (each funding in the journal once per owner, shares adding
up to the paper account's amount, each strategy applied it once, positions agree).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from seqtrade.server.journal import Journal

from .test_faults import Rig, rig, show, wait_exit  # noqa: F401 - rig: the fixture
from .test_paper_derivs_faults import (
    journaled_ids,
    paper_changes,
    start_swapper,
    stop_and_check,
    wait_filled,
    write_config,
)

KILL_SERVE = str(Path(__file__).parent / "kill_serve.py")


def start_kill_serve(r: Rig, config: Path, point: str, marker: Path, armed: Path) -> None:
    log = open(r.base / "server.log", "ab")  # noqa: SIM115 - the child holds it
    args = [sys.executable, KILL_SERVE, str(config), point, str(marker), str(armed)]
    p = subprocess.Popen(args, stdout=log, stderr=log)
    log.close()
    r.procs.append(p)
    r.server = p
    r.server_starts += 1


def journal_ids_after_kill(r: Rig) -> set[str]:
    """The account event ids the dead server's journal holds, read as a restart reads it (the log
    replayed into the index first)."""
    Journal(r.run_dir / "journal.sqlite").close()
    return journaled_ids(r)


@pytest.mark.parametrize("point", ["handover", "returned"])
async def test_server_kill9_at_a_funding_hand_over_loses_nothing_and_applies_it_once(
    rig: Rig,  # noqa: F811
    point: str,
) -> None:
    with trio.fail_after(120):
        marker, armed = rig.base / "killed_at", rig.base / "armed"
        walk = write_config(rig, "walk", tick_interval=0.02, funding_interval=0.3)
        start_kill_serve(rig, walk, point, marker, armed)
        await rig.server_ready()
        start_swapper(rig, "A", "buy", 3.0)
        start_swapper(rig, "B", "sell", 1.0)
        for sid in ("A", "B"):
            await wait_filled(rig, sid)
        armed.touch()
        # the next funding (both hold the swap): the server kills itself at ``point`` of its hand-over
        assert await wait_exit(rig.server, timeout=60) == -signal.SIGKILL, rig.log_tail()  # type: ignore[arg-type]
        funding = marker.read_text()
        changes = dict(paper_changes(rig))
        assert changes.get(funding) == 0, "committed to the paper account, not marked delivered"
        in_journal = funding in journal_ids_after_kill(rig)
        if point == "handover":
            assert not in_journal, "the kill landed between the paper account's commit and the journal write"
        else:
            assert in_journal, "the hand-over returned before the funding was journaled"
        # a normal server on the same run directory, a still market: the strategies catch up
        rig.start_server(write_config(rig, "still", tick_interval=3600.0, funding_interval=10**9))
        await rig.server_ready()
        figures = await stop_and_check(rig)  # in the journal once per owner, applied once, positions agree
        assert funding in journaled_ids(rig)
        assert "handing them over again" in rig.log_tail(n=10**9)
        assert all(delivered for _, delivered in paper_changes(rig)), "handed over, returned: marked"
        figures.update({"killed at": f"{point} of {funding}", "in the journal at the kill": in_journal})
        show(f"paper funding: server kill -9 at its {point}", figures)
