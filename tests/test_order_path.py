"""The order path's shortcuts give the same bytes as the plain encoders.

A numbered report's body is built once, stored by the journal and published with its ``gw_ns``
(:func:`seqtrade.wire.encode_stored_report`): the frame must be exactly what ``encode_message`` makes
of the report, for every report type, and the journal must hold exactly what it held before.
"""

from __future__ import annotations

import copy
import sqlite3
from hashlib import blake2b
from pathlib import Path

import msgpack
import pytest
import trio

from seqtrade import wire
from seqtrade.config import Config
from seqtrade.models import AccountEvent, OrderReport, OrderStatus
from seqtrade.server.bounded import KeyFilter
from seqtrade.server.gateway import Gateway
from seqtrade.server.journal import Journal

from .conftest import make_config
from .peer import Peer
from .test_codec_golden import MESSAGES
from .test_journal_log import rec, report

S = "BTC-USDT"


def numbered_reports() -> list[OrderReport | AccountEvent]:
    out = [copy.copy(m) for m in MESSAGES.values() if type(m) in (OrderReport, AccountEvent)]
    assert {type(m) for m in out} == {OrderReport, AccountEvent}
    return out


def test_a_report_framed_from_its_stored_body_is_the_frame_encode_message_makes() -> None:
    for r in numbered_reports():
        for gw_ns in (0, 1, 1_700_000_000_123_456_789, 2**63 - 1):
            body = wire.stored_report_to_body(r)
            r.gw_ns = gw_ns
            assert wire.encode_stored_report(r, body) == wire.encode_message(r)
            assert wire.decode_message(wire.encode_stored_report(r, body)) == r
    # the topic is the report's own, also for another strategy of the same type
    other = copy.copy(numbered_reports()[0])
    other.strategy_id = "s2"
    frame = wire.encode_stored_report(other, wire.stored_report_to_body(other))
    assert frame == wire.encode_message(other) and frame.split(b"/")[1] == b"s2"


def test_the_journal_returns_the_bodies_it_stored(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.add_records([(rec(1), True)])
    reports = [report(1, 1, OrderStatus.ACCEPTED), report(1, 2, OrderStatus.FILLED)]
    bodies = j.add_reports([("v1", reports[0], True), ("v1", reports[1], False)], [("v1", "t1")])
    assert bodies == [wire.stored_report_to_body(r) for r in reports]
    j.index()
    db = sqlite3.connect(tmp_path / "j.sqlite")  # what the file holds, read as another process would
    stored = [bytes(b) for (b,) in db.execute("SELECT body FROM reports ORDER BY seq")]
    db.close()
    assert [msgpack.unpackb(b, raw=False) for b in stored] == bodies
    assert stored == [msgpack.packb(wire.stored_report_to_body(r), use_bin_type=True) for r in reports]
    j.close()


@pytest.fixture
def config(base_dir: Path) -> Config:
    """A report queue of one item: a market order's second event (its fill) finds it full."""
    return make_config(base_dir, "\n[bus]\nevent_queue = 1\n")


async def test_the_order_task_waits_for_room_in_a_full_report_queue_and_the_report_task_drains_it(
    server: Gateway, peers: dict[str, Peer]
) -> None:
    """The order task runs the report stage itself after its batch and wakes nobody for what it
    queues; when the queue is full in the middle of a batch (the paper venue's fill after its
    ``accepted``) it must wake the report task before it waits for room, or both would wait for ever."""
    with trio.fail_after(20):
        p = peers["s1"]
        await p.join()
        await server.venue.set_market(S, 100.0, 100.2)  # type: ignore[attr-defined]
        coids = [await p.order(S, "buy" if i % 2 else "sell", "market", None, 0.01) for i in range(12)]
        got = [await p.report() for _ in range(24)]
    assert [r.seq for r in got] == list(range(1, 25))
    for coid in coids:
        mine = [r.status for r in got if r.client_order_id == coid]
        assert mine == [OrderStatus.ACCEPTED, OrderStatus.FILLED]
    assert server.counters.reports_out == 24


def test_the_key_filter_sets_the_bits_snapshots_were_written_with() -> None:
    """The engine's key filter reuses a key's hashes from the lookup to the register and walks its
    probes in a loop: the bits must be the ones its formula always set (snapshots store them)."""
    size = 1 << 12
    f = KeyFilter(size)
    expected = bytearray(size)
    keys = [("s1", f"c{i}") for i in range(300)] + [("s2", "c1"), ("a" * 64, "b" * 64)]
    for i, (sid, coid) in enumerate(keys):
        if i % 3:
            _ = (sid, coid) in f  # asked first, as the order path does (fills the memo)
        if i % 5 == 0:
            _ = ("other", f"x{i}") in f  # another key asked in between: its hashes must not be reused
        f.add(sid, coid)
        d = blake2b(f"{sid}\x00{coid}".encode(), digest_size=16).digest()
        h1, h2 = int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little") | 1
        for k in range(6):
            p = (h1 + k * h2) % (size * 8)
            expected[p >> 3] |= 1 << (p & 7)
    assert f.data() == bytes(expected)
    assert all(k in f for k in keys)
