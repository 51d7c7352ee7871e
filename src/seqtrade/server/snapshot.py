"""The snapshot: the accounts and the key filter as of a journal position, so that a restart reads the
snapshot plus the journal after it instead of every report ever journaled.

Where: its own SQLite file (``journal.snapshot_path``, ``snapshot.sqlite`` in the run directory), not
the journal. The journal's connection belongs to the server's Trio thread and its write path; a snapshot
written into the journal from another thread would take the journal's write lock and make an order's
commit wait or fail (SQLITE_BUSY). A file of its own has its own lock, and SQLite's transaction makes its
replacement atomic: a kill -9 at any instant leaves the old snapshot or the new one, never half of one.

Consistency: a snapshot is captured on the Trio thread between two awaits (:func:`capture`), when the
accounts have applied exactly the reports up to their seqs (``Accounts.seqs``) and the key filter holds
every order the journal has up to ``MAX(rowid)`` of its orders. It names the journal (``identity``);
:func:`seqtrade.server.recovery.restore` refuses one of another journal, one ahead of the journal (an OS
crash that lost commits), or one with another filter size, and reads the whole journal instead.

When: every ``server.snapshot_interval`` seconds, or sooner after ``server.snapshot_reports`` reports,
by :func:`snapshot_task` (the capture on the Trio thread, the write in a worker thread), and at a clean
stop. The capture copies the filter (4 MiB by default, about a millisecond) and the accounts (one row per
strategy and symbol, one per open order); the write is one transaction, a few tens of milliseconds.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import msgpack
import trio

from ..bus import private_files
from ..clock import WALL, Clock
from .engine import Engine
from .journal import Journal
from .recovery import Snapshot

__all__ = ["capture", "write", "read", "Snapshots"]

log = logging.getLogger(__name__)

_VERSION = 1


def capture(engine: Engine, journal: Journal, clock: Clock = WALL) -> Snapshot:
    """The snapshot of now (call between two awaits: nothing changes while it runs); ``clock``: the
    server's (its ``written_ms``)."""
    state = engine.accounts.state()
    return Snapshot(
        journal_id=journal.identity(),
        seqs=dict(state["seqs"]),
        order_rowid=journal.max_order_rowid(),
        accounts=state,
        key_filter=engine.known.data(),
        written_ms=clock.time_ms(),
    )


def write(path: Path, snap: Snapshot) -> None:
    """Replace the snapshot file's content with ``snap`` in one transaction (any thread)."""
    body = msgpack.packb(
        {"version": _VERSION, "journal_id": snap.journal_id, "seqs": snap.seqs, "order_rowid": snap.order_rowid,
         "accounts": snap.accounts, "written_ms": snap.written_ms},
        use_bin_type=True,
    )  # fmt: skip
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute(
            "CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), body BLOB, filter BLOB)"
        )
        with db:
            db.execute("BEGIN")
            db.execute("INSERT OR REPLACE INTO snapshot VALUES (1, ?, ?)", (body, snap.key_filter))
    finally:
        db.close()
    private_files(path)


def read(path: Path) -> Snapshot | None:
    """The snapshot in ``path``; None when there is none or it cannot be read (logged: the restart
    then reads the whole journal, which is slower, never wrong)."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT body, filter FROM snapshot WHERE id = 1").fetchone()
        finally:
            db.close()
        if row is None:
            return None
        d: dict[str, Any] = msgpack.unpackb(row[0], raw=False, strict_map_key=False)
        if d.get("version") != _VERSION:
            log.warning(
                "snapshot %s: version %s not understood; reading the whole journal", path, d.get("version")
            )
            return None
        return Snapshot(d["journal_id"], dict(d["seqs"]), int(d["order_rowid"]), d["accounts"], bytes(row[1]),
                        int(d.get("written_ms", 0)))  # fmt: skip
    except (sqlite3.Error, ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
        log.warning("snapshot %s cannot be read (%s); reading the whole journal", path, exc)
        return None


class Snapshots:
    """Writes the snapshot periodically (:meth:`run`) and at a clean stop (:meth:`write_now`)."""

    def __init__(
        self,
        engine: Engine,
        journal: Journal,
        path: Path,
        *,
        interval: float,
        reports: int,
        clock: Clock = WALL,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.journal = journal
        self.path = path
        self.interval = interval
        self.reports = reports
        self.written = 0
        self.last_write_s = 0.0  # how long the last write took (status, docs' figures)
        self._lock = trio.Lock()

    def _applied(self) -> int:
        return sum(self.engine.accounts.seqs.values())

    async def write_now(self) -> None:
        """Capture now, write in a worker thread (the server keeps serving meanwhile)."""
        async with self._lock:
            snap = capture(self.engine, self.journal, self.clock)  # on the Trio thread, between two awaits
            t0 = time.perf_counter()
            await trio.to_thread.run_sync(write, self.path, snap)
            self.last_write_s = time.perf_counter() - t0
            self.written += 1

    def write_at_stop(self) -> None:
        """The clean stop's snapshot, written on the spot: nothing is served any more, and no other task
        gets to run (a refresh of the venue's switch, say) while it is written."""
        write(self.path, capture(self.engine, self.journal, self.clock))
        self.written += 1

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Cancelled with the server. Checks once a second (or every ``interval``, if shorter) whether
        a snapshot is due."""
        task_status.started()
        last_t = trio.current_time()
        last_n = self._applied()
        period = min(1.0, self.interval) if self.interval > 0 else 1.0
        while True:
            await trio.sleep(period)
            n = self._applied()
            t = trio.current_time()
            due_time = self.interval > 0 and t - last_t >= self.interval
            if n != last_n and (due_time or n - last_n >= self.reports):
                await self.write_now()
                last_t, last_n = t, n
