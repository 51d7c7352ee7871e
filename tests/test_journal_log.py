"""The journal's log: the persistence point is one append per write, the SQLite index follows.

Real files, a real ``kill -9`` of a real process; nothing of the journal is replaced or patched.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import msgpack
import pytest

from seqtrade.errors import JournalError
from seqtrade.models import OrderReport, OrderStatus
from seqtrade.server.journal import Journal
from seqtrade.server.orders import OrderRecord


def rec(i: int, sid: str = "s1") -> OrderRecord:
    return OrderRecord(f"v{i}", sid, f"c{i}", "BTC-USDT", "buy", "limit", 100.0 + i, 1.0, 1_700_000_000_000)


def report(i: int, seq: int, status: OrderStatus, sid: str = "s1") -> OrderReport:
    return OrderReport(seq=seq, client_order_id=f"c{i}", exchange_order_id=f"x{i}", strategy_id=sid,
                       symbol="BTC-USDT", side="buy", order_type="limit", price=100.0 + i, quantity=1.0,
                       status=status, filled_quantity=1.0 if status is OrderStatus.FILLED else 0.0,
                       timestamp=1_700_000_000_000 + seq)  # fmt: skip


def write_orders(j: Journal, n: int, start: int = 1) -> None:
    """n orders, each: its row, then accepted and filled (closed) in one write, with its trade id."""
    for i in range(start, start + n):
        j.add_records([(rec(i), True)])
        seq = 2 * i - 1
        j.add_reports(
            [(f"v{i}", report(i, seq, OrderStatus.ACCEPTED), True),
             (f"v{i}", report(i, seq + 1, OrderStatus.FILLED), False)],
            [(f"v{i}", f"t{i}")],
        )  # fmt: skip


def indexed_counts(path: Path) -> tuple[int, int, int]:
    """What the SQLite file itself holds (read by another connection, as a restart would)."""
    db = sqlite3.connect(path)
    try:
        row = db.execute(
            "SELECT (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM reports), (SELECT COUNT(*) FROM fills)"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])
    finally:
        db.close()


def check_all(j: Journal, n: int) -> None:
    assert j.last_seqs() == {"s1": 2 * n}
    assert len(j.order_keys()) == n and j.open_orders() == []
    reports = j.reports_after("s1", 0, 10 * n)
    assert [r.seq for r in reports] == list(range(1, 2 * n + 1))
    last = j.find_order("s1", f"c{n}")
    assert last is not None and last.status is OrderStatus.FILLED and last.trade_ids == {f"t{n}"}


def test_a_write_is_in_the_log_before_the_index_and_a_read_sees_it(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    write_orders(j, 3)
    assert j.pending == 12 and indexed_counts(tmp_path / "j.sqlite") == (0, 0, 0)  # the log only
    check_all(j, 3)  # a read indexes first
    assert j.pending == 0 and indexed_counts(tmp_path / "j.sqlite") == (3, 6, 3)
    j.close()


def test_kill_9_after_writes_loses_nothing_the_restart_replays_the_log(tmp_path: Path) -> None:
    """A process journals 200 orders (never indexed: the threshold is not reached for most of them)
    and is killed with SIGKILL: a new Journal finds all of them, once."""
    path = tmp_path / "j.sqlite"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.test_journal_log import write_orders
        from seqtrade.server.journal import Journal
        j = Journal(__import__("pathlib").Path({str(path)!r}))
        write_orders(j, 200)
        print(j.pending, j.indexed, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == -9, out.stderr
    pending, _ = map(int, out.stdout.split())
    assert pending > 0  # some were only in the log when the process died
    assert indexed_counts(path)[0] < 200
    j = Journal(path)
    check_all(j, 200)
    j.close()
    j = Journal(path)  # and again: nothing replayed twice
    check_all(j, 200)
    assert indexed_counts(path) == (200, 400, 200)
    j.close()


def test_a_torn_last_write_is_cut_off_and_the_log_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    write_orders(j, 5)
    os.close(j._fd)  # the process is gone (no close: nothing indexed)
    j._fd = -1
    log = path.with_name("j.sqlite-log")
    size = log.stat().st_size
    with open(log, "ab") as f:  # a frame the process died in: its header and half its payload
        payload = msgpack.packb([[0, "v99", "s1", "c99", "BTC-USDT", "buy", "limit", 1.0, 1.0, 1, 1]])
        f.write(len(payload).to_bytes(4, "little") + b"\0\0\0\0" + payload[: len(payload) // 2])
    j = Journal(path)
    assert log.stat().st_size == size  # cut back to the last whole frame
    check_all(j, 5)
    assert j.find_order("s1", "c99") is None
    write_orders(j, 2, start=6)  # written after the cut
    j.close()
    j = Journal(path)
    check_all(j, 7)
    j.close()


def test_the_log_starts_over_once_indexed_and_an_older_log_is_never_replayed(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    log = path.with_name("j.sqlite-log")
    j = Journal(path, rotate_bytes=2048)
    write_orders(j, 10)
    assert j.log_number == 0
    old = tmp_path / "old-log"
    shutil.copy(log, old)  # the log as it was before it started over
    j.index()
    assert j.log_number == 1 and log.stat().st_size < 100
    write_orders(j, 5, start=11)
    j.close()
    j = Journal(path)
    check_all(j, 15)
    j.close()
    # A crash after the index said "log 1" but before the log started over leaves log 0 in place:
    # the restart knows the index took all of it (no duplicate, no error).
    shutil.copy(old, log)
    j = Journal(path)
    check_all(j, 15)
    write_orders(j, 1, start=16)
    j.close()
    j = Journal(path)
    check_all(j, 16)
    j.close()


def test_writes_that_break_the_journal_rules_are_refused_and_persist_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    write_orders(j, 2)  # pending: the checks look at the log's records not yet indexed
    for bad in ([(rec(3), True), (rec(1), True)], [(rec(3), True), (rec(3), True)]):
        with pytest.raises(JournalError, match="already journaled"):
            j.add_records(bad)
    j.index()  # and at the index's rows
    dup_key = OrderRecord("v77", "s1", "c2", "BTC-USDT", "buy", "limit", 1.0, 1.0, 1)
    for bad in ([(rec(1), True)], [(dup_key, True)]):
        with pytest.raises(JournalError, match="already journaled"):
            j.add_records(bad)
    with pytest.raises(JournalError, match="seq 4 is not after seq 5"):
        j.add_reports(
            [("v3", report(3, 5, OrderStatus.ACCEPTED), True), ("v3", report(3, 4, OrderStatus.FILLED), True)]
        )
    j.close()
    j = Journal(path)
    check_all(j, 2)  # none of the refused writes reached the log
    write_orders(j, 1, start=3)
    check_all(j, 3)
    j.close()


def test_report_rows_of_any_type_share_the_strategy_s_seq_stream(tmp_path: Path) -> None:
    """The journal keeps reports as generic rows: a report about no order (an account event, say)
    takes the next seq of the same stream and survives a restart like an order report."""
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    write_orders(j, 1)
    body = msgpack.packb({"kind": "funding", "amount": -0.5})
    j.add_report_rows([("s1", 3, "", body, -1)])
    with pytest.raises(JournalError):
        j.add_report_rows([("s1", 3, "", body, -1)])
    j.close()
    j = Journal(path)
    assert j.last_seqs() == {"s1": 3}
    db = sqlite3.connect(path)
    assert db.execute("SELECT venue_order_id, body FROM reports WHERE seq=3").fetchone() == ("", body)
    db.close()
    j.close()


def test_a_log_left_behind_by_a_replaced_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    write_orders(j, 1)
    os.close(j._fd)
    j._fd = -1
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(JournalError, match="does not belong to it"):
        Journal(path)


def test_reports_indexed_after_their_order_update_its_state(tmp_path: Path) -> None:
    """An order indexed in one batch and closed by reports of a later batch: the index's UPDATE path
    (the fold into the INSERT covers only orders new in the same batch)."""
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    j.add_records([(rec(1), True), (rec(2), True)])
    j.index()
    assert sorted(r.venue_order_id for r in j.open_orders()) == ["v1", "v2"]
    j.add_reports([("v1", report(1, 1, OrderStatus.ACCEPTED), True), ("v1", report(1, 2, OrderStatus.FILLED), False),
                   ("v2", report(2, 3, OrderStatus.ACCEPTED), True)])  # fmt: skip
    j.close()
    j = Journal(path)
    assert [r.venue_order_id for r in j.open_orders()] == ["v2"]
    one = j.find_order("s1", "c1")
    assert one is not None and one.status is OrderStatus.FILLED
    two = j.find_order("s1", "c2")
    assert two is not None and two.status is OrderStatus.ACCEPTED
    j.close()
