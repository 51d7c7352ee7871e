"""The second reading of the order path's speed-ups (rt13): each claim the change relies on, pinned
where the first reading's tests left it open. Real files, real SQLite; nothing patched.

- the engine's key filter sets, for every key, the bits snapshots were written with: also for the
  first key a filter is asked about, whatever that key is (its memo of the last key starts empty);
- the rounding memo: values the wire never lets through but other callers could pass (NaN, infinities,
  huge, subnormal) get the exact rounding's answer or its error, every time, and no error is remembered;
- the report stage: what the order task's own venue calls produce (the paper venue answers inline)
  wakes nobody, so a lone request (an order, then an amend, then a cancel, nothing after each) must
  still have its report published by the order task's own run of the stage;
- the journal's filter of its orders answers "already journaled" for every order the index holds
  across the restart paths: reopened half-filled, the archive moving orders out while it is being
  filled, the log replayed at open after it started over.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from hashlib import blake2b
from pathlib import Path

import pytest
import trio

from seqtrade.models import AmendRequest, CancelRequest, OrderStatus, Side
from seqtrade.server import orders
from seqtrade.server.bounded import KeyFilter
from seqtrade.server.gateway import Gateway
from seqtrade.server.journal import Journal
from seqtrade.server.orders import OrderRecord, round_price, round_quantity
from seqtrade.venues.base import Instrument

from .peer import Peer
from .test_journal_seen import refused


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


def test_the_rounding_memo_at_the_edges_of_the_floats() -> None:
    inst = Instrument("X-Y", 0.1, 0.001, 0.001)
    for v in (math.nan, math.inf, -math.inf):
        for _ in range(2):  # the exact rounding's error, the second time too: nothing was remembered
            for side in Side:
                with pytest.raises(ArithmeticError):
                    round_price(v, inst, side)
            with pytest.raises(ArithmeticError):
                round_quantity(v, inst)
        assert not any(k[0] != k[0] or math.isinf(k[0]) for k in orders._ROUNDED)
    for v in (1e308, -1e308, 2.0**60, 5e-324, -5e-324, 1e-300, -1e-300, 123456789.12345679):
        for _ in range(2):  # the second answer comes from memory: the same float, sign of zero included
            for side in Side:
                assert repr(round_price(v, inst, side)) == repr(orders._round_price(v, 0.1, side))
            assert repr(round_quantity(v, inst)) == repr(orders._round_quantity(v, 0.001))


async def test_a_lone_order_amend_and_cancel_each_get_their_report_with_nothing_after_them(
    server: Gateway, peers: dict[str, Peer]
) -> None:
    with trio.fail_after(20):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market("BTC-USDT", 100.0, 100.2)  # type: ignore[attr-defined]
        coid = await p.order("BTC-USDT", "buy", "limit", 99.0, 0.01)  # rests: one report, nothing after
        accepted = await p.report()
        assert (accepted.client_order_id, accepted.status, accepted.price) == (
            coid,
            OrderStatus.ACCEPTED,
            99.0,
        )
        await p.send(AmendRequest("s1", coid, 99.5, None))
        amended = await p.report()
        assert amended.client_order_id == coid and amended.price == 99.5, amended
        await p.send(CancelRequest("s1", coid))
        cancelled = await p.report()
        assert (cancelled.client_order_id, cancelled.status) == (coid, OrderStatus.CANCELLED)
    assert [r.seq for r in (accepted, amended, cancelled)] == [1, 2, 3]
    assert server.counters.reports_out == 3
