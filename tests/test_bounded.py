"""Bounded state and fast restarts (issue 12).

Pure structures first (the key filter, the budgets, the rate-limited log, the fee ledger of open orders
only), then the engine's memory (what stays in memory after many orders and many lookups of old ones),
then the snapshot: a restart from the snapshot plus the journal's tail gives exactly what a restart
from the whole journal gives, whatever the history and wherever the snapshot was taken (property
test over the engine with a real journal and a real snapshot file).
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqtrade.models import OrderReport, OrderStatus
from seqtrade.positions import FeeLedger
from seqtrade.server import recovery, snapshot
from seqtrade.server.accounts import Accounts
from seqtrade.server.bounded import Budget, KeyFilter, RateLimitedLog

from .conftest import make_config
from .test_engine import _ACTIONS, S, Shell, _run, order

# ----------------------------------------------------------------------------- pure structures


def test_key_filter_has_no_false_negatives_a_fixed_size_and_survives_a_round_trip() -> None:
    f = KeyFilter(1 << 16)
    keys = [(f"s{i % 7}", f"c{i}") for i in range(20_000)]
    for k in keys:
        f.add(*k)
    assert all(k in f for k in keys)
    assert len(f.bits) == 1 << 16  # whatever was added
    fresh = [(f"s{i % 7}", f"new{i}") for i in range(20_000)]
    fp = sum(k in f for k in fresh) / len(fresh)
    assert fp < 0.05  # 20k keys in 512k bits, 6 probes: about 1 % in theory
    g = KeyFilter(1 << 16, f.data())  # the snapshot's bytes: the same answers in another process
    assert all(k in g for k in keys) and sum(k in g for k in fresh) == sum(k in f for k in fresh)
    with pytest.raises(ValueError):
        KeyFilter(1 << 16, b"\x00" * 10)


def test_budget_throttles_a_peer_refills_and_tracks_a_bounded_number_of_peers() -> None:
    b = Budget(rate=10.0, burst=5.0, max_peers=100)
    assert [b.allow("bad", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert b.allow("good", 0.0)  # another peer has its own budget
    assert not b.allow("bad", 0.05) and b.allow("bad", 0.2)  # 10/s: one more after 0.1 s
    for i in range(10_000):
        b.allow(f"id{i}", 1.0)
    assert len(b) == 100


def test_rate_limited_log_writes_one_line_per_interval_with_the_count(caplog) -> None:
    caplog.set_level(logging.WARNING)
    rl = RateLimitedLog(logging.getLogger("t"), "bad frames", interval=10.0)
    logged = [rl.event(t / 1000, "x") for t in range(0, 25_000)]  # 25k events over 25 s
    assert sum(logged) == 3 and len(caplog.records) == 3
    assert "bad frames: 10000 in the last 10 s" in caplog.records[2].getMessage()


def test_fee_ledger_keeps_open_orders_only_and_a_late_report_adds_nothing() -> None:
    led = FeeLedger()
    assert led.change("o1", 0.0) == 0.0
    assert led.change("o1", 0.3) == pytest.approx(0.3)
    assert led.close("o1", 0.5, new_fill=True) == pytest.approx(0.2)
    assert len(led) == 0
    assert led.close("o1", 0.5, new_fill=False) == 0.0  # a refused cancel on the filled order: nothing
    assert led.close("o2", 0.7, new_fill=True) == pytest.approx(0.7)  # filled before any report was seen


def _report(
    sid: str, coid: str, seq: int, status: OrderStatus, filled: float, last: float, fee: float
) -> OrderReport:
    return OrderReport(seq=seq, client_order_id=coid, exchange_order_id="", strategy_id=sid, symbol=S,
                       side="buy", order_type="limit", price=100.0, quantity=1.0, status=status,
                       filled_quantity=filled, filled_price=100.0 if filled else 0.0, last_fill_quantity=last,
                       last_fill_price=100.0 if last else 0.0, fee=fee)  # fmt: skip


def test_accounts_remember_fees_of_open_orders_only() -> None:
    acc = Accounts()
    seq = 0
    for i in range(5_000):
        coid = f"c{i}"
        for status, filled, last, fee in ((OrderStatus.ACCEPTED, 0.0, 0.0, 0.0),
                                          (OrderStatus.PARTIALLY_FILLED, 0.5, 0.5, 0.05),
                                          (OrderStatus.FILLED, 1.0, 0.5, 0.1)):  # fmt: skip
            seq += 1
            acc.apply(_report("a", coid, seq, status, filled, last, fee))
        if i % 2:  # a refused cancel on the filled order: repeats the cumulative fee
            seq += 1
            acc.apply(_report("a", coid, seq, OrderStatus.FILLED, 1.0, 0.0, 0.1))
    seq += 1
    acc.apply(_report("a", "open", seq, OrderStatus.ACCEPTED, 0.0, 0.0, 0.0))
    assert acc.open_fee_count() == 1
    book = acc.books[("a", S)]
    assert book.fees == pytest.approx(5_000 * 0.1) and book.position == pytest.approx(5_000.0)


# ----------------------------------------------------------------------------- the engine's memory


def _fill_and_close(shell: Shell, n: int, prefix: str) -> None:
    for i in range(n):
        shell.request(order("a", f"{prefix}{i}", price=None, qty=0.01))
        shell.venue_step(len(shell.venue) - 1, 0, 0.0)  # accepted
        shell.venue_step(len(shell.venue) - 1, 1, 1.0)  # filled
        shell.drain()


def test_engine_memory_is_open_orders_plus_the_newest_closed(tmp_path: Path) -> None:
    from .test_engine import server_config

    shell = Shell(server_config(tmp_path, closed_orders_in_memory=100), tmp_path)
    shell.request(order("a", "resting", price=90.0))
    shell.venue_step(0, 0, 0.0)
    shell.drain()
    _fill_and_close(shell, 600, "x")
    eng = shell.engine
    assert len(eng.by_key) <= 101 + 1 and len(eng.by_vid) <= 101 + 1
    assert shell.accounts.open_fee_count() == 1
    assert [r.client_order_id for r in eng.open_records("a")] == ["resting"]
    # asking about old orders reads them back from the journal, and they leave memory again
    for i in range(0, 600, 2):
        rec = eng.lookup("a", f"x{i}")
        assert rec is not None and rec.status is OrderStatus.FILLED
        out = eng.on_request(order("a", f"x{i}", price=None, qty=0.01), int(time.time() * 1000))
        assert not out.venue and not out.journal  # idempotent: never sent again
    _fill_and_close(shell, 1, "y")  # a commit lets the closed orders beyond the limit go
    assert len(eng.by_key) <= 101 + 1
    # the index by strategy: a dead strategy's scan is over its open orders
    assert eng.open_records("nobody") == [] and len(eng._open_by_sid) == 1


def test_a_new_id_costs_no_journal_read_an_old_one_is_found(tmp_path: Path) -> None:
    shell = Shell(make_config(tmp_path), tmp_path)
    _fill_and_close(shell, 50, "x")
    reads: list[tuple[str, str]] = []
    find = shell.engine._find_order

    def counting(sid: str, coid: str):  # the journal's own find_order, counted
        reads.append((sid, coid))
        return find(sid, coid)

    shell.engine._find_order = counting
    shell.engine.by_key.clear()  # as if every order had left memory
    for i in range(1_000):
        assert shell.engine.lookup("a", f"new{i}") is None
    assert len(reads) < 5  # 50 keys in a 4 MiB filter: a false positive is most unlikely
    assert shell.engine.lookup("a", "x7") is not None and ("a", "x7") in reads


# ----------------------------------------------------------------------------- snapshot + tail


def _restart(journal, snap, filter_bytes: int) -> tuple[Accounts, recovery.Restored]:
    acc = Accounts()
    return acc, recovery.restore(journal, acc, snap, filter_bytes=filter_bytes)


def _books(acc: Accounts) -> dict:
    return {k: (round(b.position, 9), round(b.avg_price, 6), round(b.realized_pnl, 6), round(b.fees, 9), b.fills)
            for k, b in acc.books.items()}  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=_ACTIONS, cut=st.floats(0.0, 1.0), second=st.floats(0.0, 1.0))
def test_snapshot_plus_tail_equals_the_whole_journal(tmp_path_factory, actions, cut, second) -> None:
    """Random histories; a snapshot at a random point (and maybe a second, later one); the server
    'killed' after more actions (no snapshot at the end). A restart from the snapshot and the journal
    after it equals a restart from the whole journal, and the live accounts."""
    tmp = tmp_path_factory.mktemp("snap")
    config = make_config(tmp)
    shell = Shell(config, tmp)
    path = tmp / "snapshot.sqlite"
    size = config.server.key_filter_bytes
    try:
        shell.journal.identity()
        k1 = int(cut * len(actions))
        k2 = k1 + int(second * (len(actions) - k1))
        for lo, hi in ((0, k1), (k1, k2)):
            _run_part(shell, actions[lo:hi])
            snapshot.write(path, snapshot.capture(shell.engine, shell.journal))
        _run(
            shell, actions[k2:]
        )  # then the 'kill': whatever happened after the last snapshot is in the journal only
        snap = snapshot.read(path)
        assert snap is not None
        from_snap, restored = _restart(shell.journal, snap, size)
        assert restored.snapshot_used
        whole, _ = _restart(shell.journal, None, size)
        assert _books(from_snap) == _books(whole) == _books(shell.accounts)
        assert from_snap._fees.open_fees() == whole._fees.open_fees()
        assert from_snap.seqs == whole.seqs
        # every key the journal has is in the restored filter (idempotency after the restart)
        assert restored.key_filter is not None
        f = restored.key_filter
        for sid, coid in restored.known_keys:
            f.add(sid, coid)
        assert all(k in f for k in shell.journal.order_keys())
        # fees: each order's final fee counted once (late and repeated reports add nothing)
        for sid in ("a", "b"):
            last: dict[str, float] = {}
            for r in shell.journaled(sid):
                if r.symbol:
                    last[r.client_order_id] = r.fee
            book = whole.books.get((sid, S))
            assert (book.fees if book else 0.0) == pytest.approx(sum(last.values()), abs=1e-9)
    finally:
        shell.journal.close()


def _run_part(shell: Shell, actions: list) -> None:
    """Some actions, then everything queued is applied (a snapshot is taken between two awaits, when
    every numbered report is committed and applied)."""
    if actions:
        _run(shell, actions)
    shell.drain()


def test_a_snapshot_of_another_journal_or_ahead_of_it_is_not_used(tmp_path: Path) -> None:
    shell = Shell(make_config(tmp_path), tmp_path)
    _fill_and_close(shell, 5, "x")
    snap = snapshot.capture(shell.engine, shell.journal)
    size = len(snap.key_filter)
    assert _restart(shell.journal, snap, size)[1].snapshot_used
    other = recovery.Snapshot("someone-else", snap.seqs, snap.order_rowid, snap.accounts, snap.key_filter)
    acc, r = _restart(shell.journal, other, size)
    assert not r.snapshot_used and "another journal" in r.notes[0] and _books(acc) == _books(shell.accounts)
    ahead = recovery.Snapshot(snap.journal_id, {"a": 10_000}, 0, snap.accounts, snap.key_filter)
    acc, r = _restart(shell.journal, ahead, size)
    assert (
        not r.snapshot_used and "ahead of the journal" in r.notes[0] and _books(acc) == _books(shell.accounts)
    )
    assert not _restart(shell.journal, snap, size * 2)[1].snapshot_used
    (tmp_path / "bad.sqlite").write_bytes(b"not a database at all" * 100)
    assert snapshot.read(tmp_path / "bad.sqlite") is None
    assert snapshot.read(tmp_path / "none.sqlite") is None
    shell.journal.close()


def test_the_accounts_seqs_follow_the_committed_reports(tmp_path: Path) -> None:
    """The snapshot's journal position: the last seq the accounts applied, per strategy."""
    shell = Shell(make_config(tmp_path), tmp_path)
    _fill_and_close(shell, 3, "x")
    assert shell.accounts.seqs == {"a": shell.engine.seqs["a"]} and shell.engine.seqs["a"] == 6
    shell.journal.close()


def test_random_keys_are_stable_across_filters() -> None:
    rng = random.Random(7)
    keys = [(f"s{rng.randrange(50)}", f"{rng.getrandbits(64):x}") for _ in range(2_000)]
    a, b = KeyFilter(4096), KeyFilter(4096)
    for k in keys:
        a.add(*k)
    for k in reversed(keys):
        b.add(*k)
    assert a.data() == b.data()  # order-free and process-free: what a snapshot may store


# ----------------------------------------------------------------------------- reconciliation


def test_a_difference_within_the_orders_in_flight_is_not_a_mismatch() -> None:
    from seqtrade.server.orders import OrderRecord

    acc = Accounts()
    acc.apply(_report("a", "c1", 1, OrderStatus.FILLED, 1.0, 1.0, 0.0))  # the books: +1
    buy = OrderRecord("v2", "a", "c2", S, "buy", "market", None, 0.5, 0)  # open, nothing heard yet
    sell = OrderRecord("v3", "a", "c3", S, "sell", "limit", 99.0, 0.3, 0, filled_quantity=0.1)
    # the venue already filled c2 (its report is on its way): +1.5 at the venue
    assert acc.mismatches({S: 1.5}, 1e-9) != []  # without the orders in flight: a false alarm
    assert acc.mismatches({S: 1.5}, 1e-9, [buy, sell]) == []
    assert acc.mismatches({S: 0.8}, 1e-9, [buy, sell]) == []  # c3's remaining 0.2 sold
    assert [m.symbol for m in acc.mismatches({S: 1.6}, 1e-9, [buy, sell])] == [S]  # beyond: a mismatch
    assert [m.symbol for m in acc.mismatches({S: 0.7}, 1e-9, [buy, sell])] == [S]


# ----------------------------------------------------------------------------- the archive


def test_the_archive_still_answers_replays_audits_and_restarts(tmp_path: Path) -> None:
    import trio

    from seqtrade.server.archive import archive_pass

    shell = Shell(make_config(tmp_path), tmp_path)
    shell.journal.attach_archive(tmp_path / "archive.sqlite")
    shell.request(order("a", "resting", price=90.0))  # open all along: never archived
    shell.venue_step(0, 0, 0.0)
    shell.drain()
    _fill_and_close(shell, 300, "x")
    shell.request(order("b", "b1", price=None, qty=0.01))
    shell.drain()
    journal = shell.journal
    replay = {sid: journal.reports_after(sid, 0, 10_000) for sid in ("a", "b")}
    seqs = journal.last_seqs()
    keys = sorted(journal.order_keys())
    old = journal.find_order("a", "x7")
    whole, _ = _restart(journal, None, 1 << 16)
    before = journal.db.execute(
        "SELECT (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM reports)"
    ).fetchone()
    # a copy interrupted by a crash before its delete: rows in both files, read once
    journal.db.execute(
        "INSERT OR IGNORE INTO arch.reports SELECT * FROM reports WHERE strategy_id='a' AND seq<=50"
    )
    assert journal.reports_after("a", 0, 10_000) == replay["a"]
    tomorrow = int(time.time() * 1000) + 86_400_000  # everything is older than that
    moved = trio.run(archive_pass, journal, tomorrow, dict(seqs))
    after = journal.db.execute(
        "SELECT (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM reports)"
    ).fetchone()
    # every closed order (the resting one and b's stay: open), every report but a's newest (its last seq)
    assert before == (302, 601) and moved == (300, 600) and after == (2, 1)
    # replays from seq 1, audits of old ids, the last seqs, the open orders, the keys: all as before
    assert {sid: journal.reports_after(sid, 0, 10_000) for sid in ("a", "b")} == replay
    assert journal.reports_after("a", 100, 5) == replay["a"][100:105]
    assert journal.last_seqs() == seqs
    assert sorted(journal.order_keys()) == keys
    rec = journal.find_order("a", "x7")
    assert rec is not None and old is not None
    assert (rec.status, rec.filled_quantity, rec.trade_ids, rec.last_report) == (
        old.status, old.filled_quantity, old.trade_ids, old.last_report)  # fmt: skip
    assert [r.client_order_id for r in journal.open_orders()] == ["resting", "b1"]
    again, _ = _restart(journal, None, 1 << 16)  # a restart without a snapshot reads the archive too
    assert _books(again) == _books(whole) == _books(shell.accounts)
    shell.engine.by_key.clear()
    out = shell.engine.on_request(order("a", "x7", price=None, qty=0.01), int(time.time() * 1000))
    assert not out.venue and not out.journal  # an archived id is still never sent again
    shell.journal.close()


def test_an_archive_of_another_journal_is_refused(tmp_path: Path) -> None:
    from seqtrade.errors import JournalError
    from seqtrade.server.journal import Journal

    first = Journal(tmp_path / "j1.sqlite")
    first.attach_archive(tmp_path / "archive.sqlite")
    first.close()
    again = Journal(tmp_path / "j1.sqlite")
    again.attach_archive(tmp_path / "archive.sqlite")  # the same journal: fine
    again.close()
    other = Journal(tmp_path / "j2.sqlite")  # the journal deleted and made anew, the archive left behind
    with pytest.raises(JournalError, match="belongs to another journal"):
        other.attach_archive(tmp_path / "archive.sqlite")
    assert not other.archived
    other.close()
