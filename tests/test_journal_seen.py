"""The journal's "already journaled?" check without a read on the order path.

An order whose venue order id or (strategy, client order id) is already journaled is refused at the
write, whether it is pending in the log or in the SQLite index. The index is asked only when the
journal's filter of its orders (:class:`seqtrade.server.seen.SeenFilter`) cannot answer: while the
filter is filled after opening a large journal, and when it says "maybe". Real files, real SQLite
(its statements observed through ``set_trace_callback``), a real SIGKILL; nothing patched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrade.errors import JournalError
from seqtrade.server.journal import Journal
from seqtrade.server.orders import OrderRecord
from seqtrade.server.seen import SeenFilter

from .test_journal_log import rec, write_orders


def order(vid: str, coid: str, sid: str = "s1") -> OrderRecord:
    return OrderRecord(vid, sid, coid, "BTC-USDT", "buy", "limit", 100.0, 1.0, 1_700_000_000_000)


class Statements:
    """The SQL statements a connection runs, as SQLite reports them."""

    def __init__(self, j: Journal) -> None:
        self.seen: list[str] = []
        j.db.set_trace_callback(self.seen.append)

    def reads(self) -> list[str]:
        return [s for s in self.seen if s.lstrip().upper().startswith("SELECT")]


def refused(j: Journal, r: OrderRecord) -> bool:
    try:
        j.add_records([(r, True)])
    except JournalError as exc:
        assert "already journaled" in str(exc)
        return True
    return False


def test_the_filter_has_no_false_negatives_and_few_false_positives() -> None:
    small = SeenFilter(64)  # 512 bits, overfull on purpose: still every item added is found
    items: list[object] = [f"v{i}" for i in range(2000)] + [("s1", f"c{i}") for i in range(2000)]
    for item in items:
        small.add(item)
    assert all(item in small for item in items) and small.added == 4000
    big = SeenFilter(1 << 20)
    for item in items:
        big.add(item)
    assert all(item in big for item in items)
    others = [f"w{i}" for i in range(2000)] + [("s2", f"c{i}") for i in range(2000)]
    assert sum(o in big for o in others) <= 4  # ~1e-10 expected each at this fill
    with pytest.raises(ValueError):
        SeenFilter(100)  # not a power of two


def test_a_new_order_costs_no_read_and_duplicates_are_refused_indexed_or_pending(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    write_orders(j, 20)
    j.index()
    assert j.seen_complete and j.pending == 0
    sql = Statements(j)
    for i in range(21, 121):  # new orders: the filter answers, SQLite is not asked
        j.add_records([(rec(i), True)])
    assert sql.reads() == [] and j.seen_reads == 0
    # Duplicates of indexed orders (by venue order id, and by strategy + client order id) and of
    # pending ones: refused, nothing written.
    assert j.pending == 100
    assert refused(j, order("v3", "fresh-1"))
    assert refused(j, order("fresh-v", "c3"))
    assert refused(j, order("v120", "fresh-2"))  # pending
    assert refused(j, order("fresh-v2", "c120"))  # pending
    assert refused(j, order("v7", "c7", sid="s1"))
    assert j.pending == 100
    assert refused(j, order("fresh-v3", "c3", sid="s1")) and not refused(j, order("fresh-v3", "c3", sid="s2"))
    j.index()
    assert refused(j, order("v120", "fresh-3")) and refused(j, order("fresh-v4", "c120"))
    j.close()
    j = Journal(tmp_path / "j.sqlite")  # reopened: the filter is filled from the index
    assert j.seen_complete
    for i in (1, 20, 21, 120):
        assert refused(j, order(f"v{i}", f"new{i}")) and refused(j, order(f"new-v{i}", f"c{i}"))
    sql = Statements(j)
    j.add_records([(order("v-after", "c-after"), True)])
    assert sql.reads() == []
    j.close()


def test_a_large_journal_is_taken_into_the_filter_a_chunk_at_a_time_asking_the_index_meanwhile(
    tmp_path: Path,
) -> None:
    j = Journal(tmp_path / "j.sqlite")
    write_orders(j, 100)
    j.close()
    j = Journal(tmp_path / "j.sqlite", warm_rows=16)
    assert not j.seen_complete  # one chunk of 16 at open
    reads = j.seen_reads
    assert refused(j, order("v100", "x1")) and refused(j, order("x2", "c99"))  # asked the index
    assert not refused(j, order("v-new-1", "c-new-1"))  # asked the index too: not there
    assert j.seen_reads == reads + 3
    steps = 0
    while not j.seen_complete:
        j.index()
        steps += 1
    assert steps == 6  # 100 rows, 16 a chunk, one of them at open
    reads = j.seen_reads
    sql = Statements(j)
    j.add_records([(order("v-new-2", "c-new-2"), True)])
    assert sql.reads() == [] and j.seen_reads == reads
    for i in (1, 16, 17, 50, 100):
        assert refused(j, order(f"v{i}", f"y{i}")) and refused(j, order(f"y-v{i}", f"c{i}"))
    assert refused(j, order("v-new-1", "z")) and refused(j, order("v-new-2", "z"))
    j.close()


def test_after_a_kill_9_the_replayed_orders_are_refused_again(tmp_path: Path) -> None:
    """Orders only in the log when the process died are replayed into the index at the restart; the
    filter is filled after that replay, so writing any of them again is refused."""
    path = tmp_path / "j.sqlite"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.test_journal_log import write_orders
        from seqtrade.server.journal import Journal
        j = Journal(__import__("pathlib").Path({str(path)!r}))
        write_orders(j, 60)
        print(j.pending, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert int(out.stdout) > 0  # some orders were only in the log
    j = Journal(path)
    assert j.seen_complete
    for i in range(1, 61):
        assert refused(j, order(f"v{i}", f"again{i}")) and refused(j, order(f"again-v{i}", f"c{i}"))
    sql = Statements(j)
    j.add_records([(order("v61", "c61"), True)])
    assert sql.reads() == []
    j.close()


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 40), st.integers(0, 40)),
        st.tuples(st.just("index"), st.just(0), st.just(0)),
        st.tuples(st.just("reopen"), st.integers(1, 8), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=40, deadline=None)
@given(_OPS)
def test_the_journal_refuses_exactly_what_it_holds_whatever_the_interleaving(
    ops: list[tuple[str, int, int]],
) -> None:
    """A model: the set of venue order ids and keys written. An order is refused exactly when its id or
    its key is in it, whether pending, indexed, or indexed before a reopen whose filter is still
    filling (``warm_rows`` small)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "j.sqlite"
        j = Journal(path, synchronous="off")
        vids: set[str] = set()
        keys: set[str] = set()
        try:
            for op, a, b in ops:
                if op == "add":
                    vid, coid = f"v{a}", f"c{b}"
                    expect = vid in vids or coid in keys
                    assert refused(j, order(vid, coid)) is expect
                    if not expect:
                        vids.add(vid)
                        keys.add(coid)
                elif op == "index":
                    j.index()
                else:
                    j.close()
                    j = Journal(path, synchronous="off", warm_rows=a)
            assert len(j.order_keys()) == len(keys)
        finally:
            j.close()


def test_the_filter_is_per_process_and_the_hash_seed_does_not_matter(tmp_path: Path) -> None:
    """Python's string hashes differ between processes (PYTHONHASHSEED): the filter is rebuilt at
    each open, so a journal written by a process with one seed refuses duplicates in another."""
    path = tmp_path / "j.sqlite"
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.test_journal_log import write_orders
        from seqtrade.server.journal import Journal
        j = Journal(__import__("pathlib").Path({str(path)!r}))
        write_orders(j, 30)
        j.close()
    """)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    j = Journal(path)
    assert all(
        refused(j, order(f"v{i}", f"n{i}")) and refused(j, order(f"n{i}", f"c{i}")) for i in range(1, 31)
    )
    j.close()
