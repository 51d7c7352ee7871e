"""The journal's batch write: a batch of new orders is one transaction (all of it or none of it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqtrade.errors import JournalError
from seqtrade.server.journal import Journal
from seqtrade.server.orders import OrderRecord


def rec(i: int, sid: str = "s1") -> OrderRecord:
    return OrderRecord(f"v{i}", sid, f"c{i}", "BTC-USDT", "buy", "limit", 100.0 + i, 1.0, 1_700_000_000_000)


def test_add_records_commits_every_row_with_its_sent_flag(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.add_records([(rec(1), True), (rec(2), False), (rec(3), True)])
    j.add_records([(rec(4), True)])  # a batch of one
    j.close()
    j = Journal(tmp_path / "j.sqlite")  # what a restart reads
    assert sorted(j.order_keys()) == [("s1", "c1"), ("s1", "c2"), ("s1", "c3"), ("s1", "c4")]
    assert sorted(r.venue_order_id for r in j.open_orders()) == ["v1", "v3", "v4"]  # v2: never sent
    two = j.find_order("s1", "c2")
    assert two is not None and two.status == "rejected"
    three = j.find_order("s1", "c3")
    assert three is not None and (three.price, three.quantity) == (103.0, 1.0)
    j.close()


def test_add_records_is_all_or_nothing(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.add_records([(rec(1), True)])
    with pytest.raises(JournalError):
        j.add_records([(rec(2), True), (rec(1), True)])  # v1 again: the whole batch fails
    assert j.order_keys() == [("s1", "c1")]  # v2 was not committed either
    j.add_records([(rec(2), True), (rec(3), True)])  # and the journal still takes writes
    assert sorted(j.order_keys()) == [("s1", "c1"), ("s1", "c2"), ("s1", "c3")]
    j.close()
