"""Second reading of the index taken in pieces (``Journal.index_step``): a piece that fails with an
error other than the journal's own must not leave a half-run transaction that a later call commits
without it (the index would then say the log is taken past records it never took, and a restart
would not replay them: journaled reports lost).

Real files, nothing of the journal replaced or patched: the failure is a real record SQLite cannot
bind (a seq past SQLite's 64-bit signed integers, which the log's msgpack frames do hold).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from seqtrade.server.journal import BEHIND_SLICES, Journal
from tests.test_journal_log import check_all, write_orders


def committed(path: Path) -> tuple[int, str | None]:
    """Reports in the index and its meta 'log', as another connection (a restart) sees them."""
    db = sqlite3.connect(path)
    try:
        n = int(db.execute("SELECT COUNT(*) FROM reports").fetchone()[0])
        row = db.execute("SELECT value FROM meta WHERE key='log'").fetchone()
        return n, None if row is None else str(row[0])
    finally:
        db.close()


def test_a_piece_failing_outside_sqlite_never_lets_the_slice_commit_without_it(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path, slice_records=64)
    before = committed(path)
    rows = [("s1", seq, "", b"x", -1) for seq in range(1, 64)]
    rows.append(("s1", 2**63, "", b"x", -1))  # in the slice's last piece; SQLite cannot bind it
    j.add_report_rows(rows)
    assert j.due()
    with pytest.raises(OverflowError):
        while j.due():  # the pieces, up to the one that fails
            j.index_step()
    # What failed is still pending, whole: the next attempt runs the slice again, from its first
    # piece, and fails the same way; nothing of it is committed, the index's log offset stays.
    with pytest.raises(OverflowError):
        j.index()
    assert committed(path) == before
    assert j.pending == 64
    with pytest.raises(OverflowError):  # the poison record cannot be indexed; the files close anyway
        j.close()
    assert committed(path) == before


def test_no_index_transaction_opens_while_a_checkpoint_runs(tmp_path: Path) -> None:
    """SQLite's WAL starts over at a write transaction's first write only if a checkpoint took all
    of it before: with the next slice's transaction opened while the checkpoint thread ran (under a
    steady flow of orders, nearly always), it never did, and the WAL grew by every slice (30 MB after
    40,000 orders and their reports, measured). So a slice waits, unopened, while a checkpoint is
    asked or running, unless ``BEHIND_SLICES`` wait; the checkpoint held (its lock, which the
    thread takes for each checkpoint) makes that deterministic here."""
    path = tmp_path / "j.sqlite"
    j = Journal(path, slice_records=8, checkpoint_every=1)
    ckpt = j._ckpt
    assert ckpt is not None
    with ckpt.lock:  # the thread, asked, waits for it: a checkpoint "running"
        write_orders(j, 2)  # one slice (8 records: 2 orders)
        while j.due():
            j.index_step()  # committed in pieces: a checkpoint is asked
        assert j.indexed == 1 and ckpt.busy
        write_orders(j, 2, 3)  # the next slice, full
        assert j.due()
        j.index_step()
        assert j._txn is None and j.pending == 8  # not opened while the checkpoint runs
        write_orders(j, 2 * (BEHIND_SLICES - 1), 5)
        j.index_step()  # BEHIND_SLICES full slices: taken whole, checkpoint or not
        assert j.pending < 8 * BEHIND_SLICES
    assert ckpt.wait_idle(60)
    while j.due():
        j.index_step()
    assert j.pending == 0
    check_all(j, 4 + 2 * (BEHIND_SLICES - 1))
    j.close()


def test_a_checkpoint_failing_outside_sqlite_is_logged_and_the_thread_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The checkpoint thread's boundary: an error that is not SQLite's (here a database entry that is
    not a path) is logged with its traceback and the next ask is served; before, the thread died with
    a line on stderr, stayed "busy" for ever, and no checkpoint ran again (the WAL grew)."""
    j = Journal(tmp_path / "j.sqlite")
    ckpt = j._ckpt
    try:
        ckpt.paths.append(object())  # type: ignore[arg-type]  # sqlite3.connect raises TypeError
        with caplog.at_level(logging.ERROR, logger="seqtrade.server.journal"):
            ckpt.ask()
            assert ckpt.wait_idle(60), "the checkpoint thread died"
        assert ckpt.runs == 1
        assert any("checkpoint of" in r.getMessage() and r.exc_info for r in caplog.records)
        ckpt.paths.pop()
        ckpt.ask()
        assert ckpt.wait_idle(60) and ckpt.runs == 2  # still serving asks
    finally:
        j.close()
