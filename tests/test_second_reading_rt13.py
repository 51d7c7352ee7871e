"""The second reading of the order path's speed-ups (rt13): each claim the change relies on, pinned
where the first reading's tests left it open. Real files, real SQLite; nothing patched.

- the engine's key filter sets, for every key, the bits snapshots were written with: also for the
  first key a filter is asked about, whatever that key is (its memo of the last key starts empty);
- the journal's filter of its orders answers "already journaled" for every order the index holds
  across the restart paths: reopened half-filled, the archive moving orders out while it is being
  filled, the log replayed at open after it started over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from hashlib import blake2b
from pathlib import Path

import pytest

from seqtrade.errors import JournalError
from seqtrade.server.bounded import KeyFilter
from seqtrade.server.journal import Journal
from seqtrade.server.orders import OrderRecord


def formula_bits(size: int, keys: list[tuple[str, str]]) -> bytes:
    """The bits snapshots were written with: blake2b of ``sid NUL coid``, probes h1 + k * h2."""
    out = bytearray(size)
    for sid, coid in keys:
        d = blake2b(f"{sid}\x00{coid}".encode(), digest_size=16).digest()
        h1, h2 = int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little") | 1
        for k in range(6):
            p = (h1 + k * h2) % (size * 8)
            out[p >> 3] |= 1 << (p & 7)
    return bytes(out)


@pytest.mark.parametrize("key", [("", ""), ("s1", "c1")])
def test_the_first_key_a_key_filter_sees_gets_the_snapshot_bits(key: tuple[str, str]) -> None:
    """The memo of the last key asked about must not answer for a key it never hashed (an empty
    strategy and client order id matched the memo's initial, hash-less entry)."""
    size = 1 << 10
    fresh = KeyFilter(size)
    fresh.add(*key)
    assert fresh.data() == formula_bits(size, [key])
    # A filter restored from a snapshot that holds the key finds it at the first question.
    restored = KeyFilter(size, formula_bits(size, [key]))
    assert key in restored
    # ... and a fresh one asked first, then added to, still sets the formula's bits.
    asked = KeyFilter(size)
    assert key not in asked
    asked.add(*key)
    assert asked.data() == formula_bits(size, [key])


def order(vid: str, coid: str) -> OrderRecord:
    return OrderRecord(vid, "s1", coid, "BTC-USDT", "buy", "limit", 100.0, 1.0, 1_700_000_000_000)


def refused(j: Journal, r: OrderRecord) -> bool:
    try:
        j.add_records([(r, True)])
    except JournalError as exc:
        assert "already journaled" in str(exc)
        return True
    return False


def test_restart_after_the_log_started_over_and_an_archive_run_while_the_filter_fills(tmp_path: Path) -> None:
    """A journal whose log started over (small ``rotate_bytes``) dies by SIGKILL with orders only in
    its new log; the restart replays them, opens with a filter one small chunk full, and the archive
    moves closed orders out of the index before the filter is complete. Every order the index still
    holds is refused again (by venue order id and by key), before and after the filter is complete;
    once complete, a new order costs no read."""
    path = tmp_path / "j.sqlite"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.test_journal_log import write_orders
        from seqtrade.server.journal import Journal
        j = Journal(__import__("pathlib").Path({str(path)!r}), rotate_bytes=4096)
        for k in range(4):
            write_orders(j, 10, start=1 + 10 * k)
            j.index()
        write_orders(j, 15, start=41)
        print(j.log_number, j.pending, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGKILL, out.stderr
    log_number, pending = map(int, out.stdout.split())
    assert log_number > 0 and pending > 0  # the log started over; orders 41..55 only in it
    assert os.path.getsize(path.with_name(path.name + "-log")) > 16

    j = Journal(path, warm_rows=4, rotate_bytes=4096)
    try:
        assert not j.seen_complete
        assert len(j.order_keys()) == 55  # the replay took the log's orders into the index
        j.attach_archive(tmp_path / "archive.sqlite")
        moved = j.archive_orders(2_000_000_000_000, 30)
        assert moved == 30
        held = {vid for (vid,) in j.db.execute("SELECT venue_order_id FROM orders")}
        assert len(held) == 25 and "v55" in held
        for vid in sorted(held)[:3]:  # while filling: the index is asked
            i = vid[1:]
            assert refused(j, order(vid, f"again{i}")) and refused(j, order(f"again-{vid}", f"c{i}"))
        while not j.seen_complete:
            j.index()
        for vid in sorted(held):
            i = vid[1:]
            assert refused(j, order(vid, f"again{i}")) and refused(j, order(f"again-{vid}", f"c{i}"))
        reads = j.seen_reads
        j.add_records([(order("v-new", "c-new"), True)])
        assert j.seen_reads == reads
        assert refused(j, order("v-new", "other")) and refused(j, order("other", "c-new"))
    finally:
        j.close()
