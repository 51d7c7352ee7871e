"""The journal's index taken a slice at a time (``Journal.index_step``), and SQLite's checkpoints in
a thread of their own: what the order path relies on (bench/README.md, "Fourth pass: the tails").

Real files, a real ``kill -9`` of a real process; nothing of the journal is replaced or patched.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from seqtrade.errors import JournalError
from seqtrade.server.journal import BEHIND_SLICES, Journal
from tests.test_journal_log import check_all, indexed_counts, rec, write_orders


def log_meta(path: Path) -> tuple[int, int]:
    db = sqlite3.connect(path)
    try:
        gen, off = str(db.execute("SELECT value FROM meta WHERE key='log'").fetchone()[0]).split()
        return int(gen), int(off)
    finally:
        db.close()


def test_a_step_takes_the_oldest_slices_only_and_duplicates_stay_refused_on_both_sides(
    tmp_path: Path,
) -> None:
    """Slices of 8 records (2 orders: a row, then accepted + filled + trade id); 10 orders make 5 full
    slices. One step takes slices until fewer than ``BEHIND_SLICES`` wait. An order whose slice is
    indexed and one whose slice still waits are both refused, by venue id and by (strategy, client
    order id); a waiting one without a read (the exact sets keep it until its own slice is indexed)."""
    path = tmp_path / "j.sqlite"
    j = Journal(path, slice_records=8)
    write_orders(j, 10)
    assert j.due() and j.pending == 40
    j.index_step()
    taken = 5 - (BEHIND_SLICES - 1)  # slices taken: down to BEHIND_SLICES - 1 waiting
    assert indexed_counts(path) == (2 * taken, 4 * taken, 2 * taken)
    assert j.pending == 40 - 8 * taken and j.due()
    # The index says how far into the log it stands: exactly the end of its last slice (a restart
    # replays from there, and nothing twice: see the kill test below).
    _, offset = log_meta(path)
    assert 0 < offset < j._offset
    reads: list[str] = []
    j.db.set_trace_callback(reads.append)
    for i in range(1, 11):
        before = j.seen_reads
        with pytest.raises(JournalError, match="already journaled"):
            j.add_records([(rec(i), True)])
        other = rec(i)
        other.venue_order_id = f"w{i}"  # same (strategy, client order id), another venue id
        with pytest.raises(JournalError, match="already journaled"):
            j.add_records([(other, True)])
        if i > 2 * taken:  # still waiting: answered by the exact sets, no read
            assert j.seen_reads == before, i
    j.db.set_trace_callback(None)
    assert sum("SELECT" in s.upper() for s in reads) == j.seen_reads  # reads only for indexed orders
    before = j.seen_reads
    j.add_records([(rec(11), True)])  # new: no read
    assert j.seen_reads == before
    while j.due():
        j.index_step()
    assert not j.due() and 0 < j.pending < 8  # the slice being filled waits for a full one (or a read)
    j.index()
    assert j.pending == 0 and indexed_counts(path) == (11, 20, 10)
    assert j.find_order("s1", "c11") is not None
    j.close()


def test_a_failed_slice_stays_pending_and_is_taken_by_the_next_step(tmp_path: Path) -> None:
    """A slice whose transaction fails (the index is locked by another connection) is not dropped:
    its orders stay refused as pending, and the next step takes it."""
    path = tmp_path / "j.sqlite"
    j = Journal(path, slice_records=4)
    write_orders(j, 2)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock, held
    j.db.execute("PRAGMA busy_timeout=0")
    with pytest.raises(JournalError):
        j.index_step()
    assert j.pending == 8 and j.due()
    with pytest.raises(JournalError, match="already journaled"):
        j.add_records([(rec(1), True)])
    other.execute("ROLLBACK")
    other.close()
    j.index_step()
    j.index()
    check_all(j, 2)
    assert indexed_counts(path) == (2, 4, 2)
    j.close()


def test_kill_9_between_slices_loses_nothing_and_replays_nothing_twice(tmp_path: Path) -> None:
    """A process journals 300 orders, taking a slice whenever one is full (as the order path does),
    and is killed with SIGKILL with slices indexed and others only in the log: a new Journal finds
    every order once, and refuses each again."""
    path = tmp_path / "j.sqlite"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.test_journal_log import write_orders
        from seqtrade.server.journal import Journal
        j = Journal(__import__("pathlib").Path({str(path)!r}), slice_records=16, checkpoint_every=2)
        for i in range(1, 301, 3):
            write_orders(j, 3, start=i)
            if j.due() and i < 298:  # the last write: only in the log
                j.index_step()
        print(j.pending, j.indexed, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == -9, out.stderr
    pending, indexed = map(int, out.stdout.split())
    assert pending > 0 and indexed > 10  # slices were indexed, and some records only in the log
    assert 0 < indexed_counts(path)[0] < 300
    for _ in range(2):  # the restart, and another: nothing replayed twice
        j = Journal(path)
        check_all(j, 300)
        for i in (1, 150, 300):
            with pytest.raises(JournalError, match="already journaled"):
                j.add_records([(rec(i), True)])
        j.close()
        assert indexed_counts(path) == (300, 600, 300)


def test_index_transactions_never_checkpoint_on_the_owner_and_the_thread_does(tmp_path: Path) -> None:
    """SQLite's automatic checkpoint (which ran inside whichever index transaction crossed 1,000 WAL
    pages, 5-20 ms on the server's thread) is off: with no checkpoint asked for, the WAL only grows
    past that size. With one asked for every 4 transactions, the thread runs them while the owner
    writes and indexes, and nothing is lost."""
    path = tmp_path / "j.sqlite"
    wal = path.with_name("j.sqlite-wal")
    j = Journal(path, slice_records=8, checkpoint_every=10**9)
    assert j.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    for i in range(1, 3001, 10):
        write_orders(j, 10, start=i)
        while j.due():
            j.index_step()
    assert wal.stat().st_size > 1000 * 4096  # past SQLite's automatic threshold: never reset
    assert j._ckpt is not None and j._ckpt.runs == 0
    j.close()

    path2 = tmp_path / "k.sqlite"
    j = Journal(path2, slice_records=8, checkpoint_every=4)
    for i in range(1, 1001, 10):
        write_orders(j, 10, start=i)
        while j.due():
            j.index_step()
    ckpt = j._ckpt
    assert ckpt is not None
    j.index()
    check_all(j, 1000)
    j.close()  # joins the thread: an ask before the close is done
    assert ckpt.runs >= 1
    assert indexed_counts(path2) == (1000, 2000, 1000)


def test_the_log_starts_over_with_the_checkpoint_thread_running(tmp_path: Path) -> None:
    """Rotation takes the checkpoint thread's lock for its own TRUNCATE checkpoint: with checkpoints
    asked for after every transaction and a small log, the log starts over many times and a restart
    finds everything once."""
    path = tmp_path / "j.sqlite"
    j = Journal(path, slice_records=8, checkpoint_every=1, rotate_bytes=16 << 10)
    for i in range(1, 601, 5):
        write_orders(j, 5, start=i)
        while j.due():
            j.index_step()
    assert j.log_number > 3
    j.close()
    j = Journal(path)
    check_all(j, 600)
    assert indexed_counts(path) == (600, 1200, 600)
    j.close()


def open_transaction(path: Path, orders: int) -> Journal:
    """A journal with ``orders`` orders written (4 records each) as the order path writes them, a
    step after each (one piece: 4 records written), and the index transaction of its first full
    slice (128 orders) still open."""
    j = Journal(path)
    for i in range(1, orders + 1):
        write_orders(j, 1, start=i)
        if j.due() or j._txn is not None:
            j.index_step()
    assert j._txn is not None  # opened, pieces run, not committed
    return j


def test_a_slice_is_indexed_in_pieces_with_its_orders_refused_throughout(tmp_path: Path) -> None:
    """The default slice (512 records: 128 orders) is indexed one piece per ``index_step``: nothing
    is committed until its last piece, every order of it is refused as a duplicate before, between
    and after the pieces (without a read while pending), and the commit says how far into the log
    the index stands (the slice's end)."""
    path = tmp_path / "j.sqlite"
    j = open_transaction(path, 130)
    steps = 1
    while j._txn is not None:
        assert indexed_counts(path) == (0, 0, 0)  # another connection (a restart) sees nothing yet
        for i in (1, 64, 128):
            before = j.seen_reads
            with pytest.raises(JournalError, match="already journaled"):
                j.add_records([(rec(i), True)])
            assert j.seen_reads == before
        j.index_step()
        steps += 1
    assert steps > 4  # in pieces, not at once
    assert indexed_counts(path) == (128, 256, 128) and j.pending == 8
    _, offset = log_meta(path)
    assert offset < j._offset
    with pytest.raises(JournalError, match="already journaled"):
        j.add_records([(rec(100), True)])  # indexed now: the filter's "maybe", then the index
    check_all(j, 130)  # a read indexes the rest
    j.close()


def test_a_read_or_a_meta_write_finishes_the_open_transaction_first(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = open_transaction(path, 130)
    j.set_meta("note", "x")  # committed on its own, after the slice's transaction
    assert j._txn is None and indexed_counts(path)[0] == 128
    assert j.get_meta("note") == "x"
    j.close()
    j = open_transaction(tmp_path / "k.sqlite", 130)
    assert j.find_order("s1", "c130") is not None  # a read: everything indexed first
    assert j._txn is None and j.pending == 0
    j.close()


def test_kill_9_with_the_index_transaction_open_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL while the slice's transaction is open (pieces run, no commit): SQLite drops the
    uncommitted pieces, the log replays the slice, every order is there once."""
    path = tmp_path / "j.sqlite"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.test_journal_slices import open_transaction
        j = open_transaction(__import__("pathlib").Path({str(path)!r}), 150)
        j.index_step()
        print(j.pending, j._txn is not None, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == -9, out.stderr
    assert out.stdout.split() == ["600", "True"]
    assert indexed_counts(path) == (0, 0, 0)
    j = Journal(path)
    check_all(j, 150)
    with pytest.raises(JournalError, match="already journaled"):
        j.add_records([(rec(7), True)])
    j.close()
    assert indexed_counts(path) == (150, 300, 150)
