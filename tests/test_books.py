"""The pure book rules (seqtrade.books) and the strategy's copy (seqtrade.client.book), directly.

Hand-built push sequences for each rule of the ``books`` channel (docs/okx.md: snapshot, update,
heartbeat, sequence reset, gap, checksum, checksum 0), then properties: the sorted sides equal a plain
dict model after any operations, and a strategy's copy fed the publisher's messages with any of them
lost is never valid unless it equals the server's book at that version.
"""

from __future__ import annotations

import random
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrade.books import (
    BookFeed,
    BookKeeper,
    BookPublisher,
    BookState,
    OrderBook,
    Outcome,
    checksum_string,
    crc_checksum,
)
from seqtrade.client.book import BookCopies
from seqtrade.models import BookStatus, BookUpdate, Depth


def _signed(s: str) -> int:
    c = zlib.crc32(s.encode())
    return c - (1 << 32) if c >= 1 << 31 else c


def test_checksum_matches_the_two_published_vectors() -> None:
    b = OrderBook()
    b.apply_raw([["3366.1", "7", "0", "1"], ["3366", "6", "0", "1"]], [["3366.8", "9"], ["3368", "8"]])
    assert checksum_string(b) == "3366.1:7:3366.8:9:3366:6:3368:8"
    assert crc_checksum(b) == -1881014294
    b = OrderBook()  # one bid, three asks: the missing bids are skipped
    b.apply_raw([["3366.1", "7"]], [["3366.8", "9"], ["3368", "8"], ["3372", "8"]])
    assert checksum_string(b) == "3366.1:7:3366.8:9:3368:8:3372:8"
    assert crc_checksum(b) == 831078360


def test_checksum_hashes_the_strings_as_received_and_only_the_top_25() -> None:
    b = OrderBook()
    b.apply_raw([[f"{100 - i}.50", "1.000"] for i in range(30)], [[f"{101 + i}.5", "2"] for i in range(3)])
    s = checksum_string(b)
    assert s.startswith("100.50:1.000:101.5:2:99.50:1.000:102.5:2:98.50:1.000:103.5:2:97.50:1.000:")
    assert s.count(":") == 2 * (25 + 3) - 1
    assert "75.50" not in s and "76.50" in s


def _item(prev: int, seq: int, bids=(), asks=(), checksum: int = 0) -> dict:
    return {"bids": list(bids), "asks": list(asks), "prev_seq": prev, "seq": seq, "checksum": checksum}


def test_the_documented_chain_snapshot_update_heartbeat_reset_update() -> None:
    f = BookFeed("BTC-USDT")
    assert f.state is BookState.INVALID
    assert f.on_push(**_item(-1, 10, [["100", "1"]], [["101", "1"]])) is Outcome.SNAPSHOT
    assert f.on_push(**_item(10, 15, [["100.5", "2"]])) is Outcome.UPDATE
    assert f.on_push(**_item(15, 15)) is Outcome.HEARTBEAT
    assert f.on_push(**_item(15, 3, asks=[["101", "0"]])) is Outcome.UPDATE  # a reset: seqId < prevSeqId
    assert f.on_push(**_item(3, 5, asks=[["102", "4"]])) is Outcome.UPDATE
    assert f.valid and f.seq_id == 5
    assert f.book.snapshot() == ([[100.5, 2.0], [100.0, 1.0]], [[102.0, 4.0]])
    c = f.counters
    assert (c.snapshots, c.updates, c.heartbeats, c.seq_resets, c.gaps) == (1, 3, 1, 1, 0)


def test_a_gap_invalidates_and_nothing_applies_until_a_snapshot() -> None:
    f = BookFeed("BTC-USDT")
    f.on_push(**_item(-1, 10, [["100", "1"]], [["101", "1"]]))
    assert f.on_push(**_item(11, 12, [["99", "1"]])) is Outcome.INVALID
    assert f.state is BookState.INVALID and "gap" in f.reason and f.counters.gaps == 1
    assert f.book.snapshot() == ([], [])  # nothing of a broken book is kept
    assert f.on_push(**_item(12, 13, [["98", "1"]])) is Outcome.SKIPPED
    assert f.on_push(**_item(-1, 20, [["97", "1"]], [["98", "1"]])) is Outcome.SNAPSHOT
    assert f.valid and f.book.snapshot() == ([[97.0, 1.0]], [[98.0, 1.0]])


def test_a_reordered_pair_is_a_gap() -> None:
    f = BookFeed("X")
    f.on_push(**_item(-1, 1, [["1", "1"]], [["2", "1"]]))
    assert f.on_push(**_item(2, 3, [["1", "2"]])) is Outcome.INVALID  # the push for 1 -> 2 comes later
    assert f.on_push(**_item(1, 2, [["1", "3"]])) is Outcome.SKIPPED


def test_checksum_checked_when_sent_and_zero_never_checked() -> None:
    f = BookFeed("X")
    snap = OrderBook()
    snap.apply_raw([["100", "1"]], [["101", "1"]])
    good = crc_checksum(snap)
    assert f.on_push(**_item(-1, 1, [["100", "1"]], [["101", "1"]], checksum=good)) is Outcome.SNAPSHOT
    after = OrderBook()
    after.apply_raw([["100", "2"]], [["101", "1"]])
    assert f.on_push(**_item(1, 2, [["100", "2"]], checksum=crc_checksum(after))) is Outcome.UPDATE
    assert f.on_push(**_item(2, 3, [["100", "3"]], checksum=0)) is Outcome.UPDATE  # 0: not sent
    assert f.on_push(**_item(3, 4, [["100", "4"]], checksum=good)) is Outcome.INVALID
    assert f.counters.checksum_errors == 1 and "checksum" in f.reason
    # a bad checksum on a snapshot, and on a heartbeat
    assert f.on_push(**_item(-1, 9, [["5", "1"]], [["6", "1"]], checksum=123)) is Outcome.INVALID
    assert f.on_push(**_item(-1, 9, [["5", "1"]], [["6", "1"]])) is Outcome.SNAPSHOT
    assert f.on_push(**_item(9, 9, checksum=123)) is Outcome.INVALID
    assert f.counters.checksum_errors == 3


def test_stale_after_the_configured_time_and_valid_again_on_a_push() -> None:
    f = BookFeed("X", stale_after=5.0)
    assert not f.check_stale(100.0)  # never valid: not stale either
    f.on_push(**_item(-1, 1, [["1", "1"]], [["2", "1"]]), now=10.0)
    assert not f.check_stale(14.9)
    assert f.check_stale(15.0) and f.state is BookState.STALE and f.counters.stale == 1
    assert not f.check_stale(16.0)  # told once
    assert f.on_push(**_item(1, 1), now=16.0) is Outcome.HEARTBEAT and f.valid


def test_malformed_levels_invalidate() -> None:
    f = BookFeed("X")
    assert f.on_push(**_item(-1, 1, [["1", "x"]])) is Outcome.INVALID
    f.on_push(**_item(-1, 1, [["1", "1"]]))
    assert f.on_push(**_item(1, 2, [["1", "-1"]])) is Outcome.INVALID
    assert f.counters.malformed == 2


def test_merge_rules_delete_replace_insert_keep_the_order() -> None:
    b = OrderBook()
    b.apply_raw([["100", "1"], ["98", "1"]], [["101", "1"], ["103", "1"]])
    b.apply_raw([["99", "5"], ["100", "0"], ["97", "0"]], [["102", "2"], ["101", "3"]])
    assert b.snapshot() == ([[99.0, 5.0], [98.0, 1.0]], [[101.0, 3.0], [102.0, 2.0], [103.0, 1.0]])


ops = st.lists(
    st.tuples(st.booleans(), st.integers(1, 60), st.sampled_from(["0", "0", "1", "2.5", "0.001", "7"])),
    max_size=200,
)


@given(ops)
def test_sides_equal_a_plain_model_after_any_operations(steps) -> None:
    b = OrderBook()
    model: dict[bool, dict[float, tuple[str, str]]] = {True: {}, False: {}}
    for is_bid, tick, size in steps:
        px = f"{tick / 4:g}"
        (b.apply_raw([[px, size]], []) if is_bid else b.apply_raw([], [[px, size]]))
        side = model[is_bid]
        if size == "0":
            side.pop(float(px), None)
        else:
            side[float(px)] = (px, size)
    bids = sorted(model[True].items(), reverse=True)
    asks = sorted(model[False].items())
    assert b.snapshot() == ([[p, float(s)] for p, (_, s) in bids], [[p, float(s)] for p, (_, s) in asks])
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts += bids[i][1]
        if i < len(asks):
            parts += asks[i][1]
    assert checksum_string(b) == ":".join(parts)
    assert crc_checksum(b) == _signed(":".join(parts))


def test_publisher_sends_status_snapshot_deltas_depth_and_periodic_snapshots() -> None:
    k = BookKeeper("X", stale_after=5.0, snapshot_interval=1.0)
    out, msgs = k.push(**_item(-1, 1, [["100", "1"]], [["101", "1"]]), now=0.0, ts=1)
    assert out is Outcome.SNAPSHOT
    assert [type(m) for m in msgs] == [BookStatus, BookUpdate, Depth]
    assert msgs[0].state == "valid" and msgs[1].snapshot and msgs[1].book_seq == 1
    _, msgs = k.push(**_item(1, 2, [["99", "1"]]), now=0.1, ts=2)
    assert [type(m) for m in msgs] == [BookUpdate, Depth]
    assert msgs[0].prev_book_seq == 1 and msgs[0].book_seq == 2 and msgs[0].bids == [[99.0, 1.0]]
    _, msgs = k.push(**_item(2, 2), now=0.2, ts=3)
    assert msgs == []  # a heartbeat of a valid book: nothing to say
    assert k.tick(1.0, 4) == [BookUpdate("X", 3, True, 2, -1, [[100.0, 1.0], [99.0, 1.0]], [[101.0, 1.0]])]
    assert k.tick(1.5, 4) == []
    assert [m.state for m in k.tick(5.2, 5)] == ["stale"]  # type: ignore[union-attr]
    assert k.tick(6.5, 5) == []  # no snapshot of a stale book
    out, msgs = k.push(**_item(5, 6, [["98", "1"]]), now=7.0, ts=6)
    assert out is Outcome.INVALID and [(type(m), m.state) for m in msgs] == [(BookStatus, "invalid")]  # type: ignore[union-attr]
    assert k.feed.counters.resubscribes == 1
    _, msgs = k.push(**_item(-1, 9, [["90", "1"]], [["91", "1"]]), now=8.0, ts=7)
    assert [type(m) for m in msgs] == [BookStatus, BookUpdate, Depth] and msgs[1].book_seq == 3


def test_depth_only_when_the_top_changes() -> None:
    p = BookPublisher("X", depth=2)
    b = OrderBook()
    b.apply_raw([["10", "1"], ["9", "1"], ["8", "1"]], [["11", "1"]])
    p.snapshot(b, 1, 0.0)
    b.apply_raw([["8", "5"]], [])
    assert [type(m) for m in p.delta(b, [[8.0, 5.0]], [], 2, 0.1)] == [BookUpdate]
    b.apply_raw([["9", "5"]], [])
    assert [type(m) for m in p.delta(b, [[9.0, 5.0]], [], 3, 0.2)] == [BookUpdate, Depth]


def _random_push(
    rng: random.Random, book: dict[bool, dict[int, int]]
) -> tuple[list[list[str]], list[list[str]]]:
    bids, asks = [], []
    for _ in range(rng.randint(1, 4)):
        is_bid = rng.random() < 0.5
        tick = rng.randint(1, 50) if is_bid else rng.randint(51, 100)
        size = 0 if rng.random() < 0.3 else rng.randint(1, 9)
        (bids if is_bid else asks).append([str(tick), str(size)])
        if size:
            book[is_bid][tick] = size
        else:
            book[is_bid].pop(tick, None)
    return bids, asks


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.floats(0.0, 0.3))
def test_a_copy_with_lost_messages_is_never_valid_unless_it_equals_the_server(seed: int, loss: float) -> None:
    rng = random.Random(seed)
    k = BookKeeper("X", snapshot_interval=0.5)
    copies = BookCopies()
    copies.want("X", "full")
    truth: dict[bool, dict[int, int]] = {True: {}, False: {}}
    seq, now = 1, 0.0
    _, msgs = k.push(**_item(-1, seq, [["10", "1"]], [["60", "1"]]), now=now)
    truth[True][10], truth[False][60] = 1, 1
    topic_seq = {BookUpdate: 0, BookStatus: 0, Depth: 0}
    for step in range(400):
        now += 0.05
        for m in msgs:
            topic_seq[type(m)] += 1
            m.seq = topic_seq[type(m)]
            if isinstance(m, BookUpdate) and rng.random() < loss:
                continue  # lost on the way
            if isinstance(m, BookUpdate):
                copies.on_fullbook(m)
            elif isinstance(m, BookStatus):
                copies.on_status(m)
            got = copies.get("X")
            if got is not None:
                server = k.feed.book.snapshot()
                assert got.book_seq <= k.publisher.book_seq
                if got.book_seq == k.publisher.book_seq:
                    assert (got.bids, got.asks) == server
        if step % 97 == 96:  # a gap at the venue: invalid, then a fresh snapshot
            _, msgs = k.push(**_item(seq + 5, seq + 6, [["1", "1"]]), now=now)
            seq += 10
            bids = [[str(t), str(s)] for t, s in truth[True].items()]
            asks = [[str(t), str(s)] for t, s in truth[False].items()]
            _, more = k.push(**_item(-1, seq, bids, asks), now=now)
            msgs += more
            continue
        bids, asks = _random_push(rng, truth)
        _, msgs = k.push(**_item(seq, seq + 1, bids, asks), now=now)
        msgs += k.tick(now, 0)
        seq += 1
    for m in msgs:  # the last step's messages, none lost
        copies.on_fullbook(m) if isinstance(m, BookUpdate) else None
    for m in k.tick(now + 1.0, 0):  # the next periodic snapshot brings back a copy that lost a delta
        assert isinstance(m, BookUpdate) and m.snapshot
        copies.on_fullbook(m)
    got = copies.get("X")
    assert got is not None and (got.bids, got.asks) == k.feed.book.snapshot()
    assert copies.counters.mismatches == 0


def test_config_checks_the_book_settings() -> None:
    import pytest

    from seqtrade.config import parse_config
    from seqtrade.errors import ConfigError

    cfg = parse_config(
        "[venue.okx]\nbook_stale_after = 5.0\nbooks = false\n[venue.paper]\ndepth_levels = 50\n"
    )
    assert (cfg.venue.okx.book_stale_after, cfg.venue.okx.books, cfg.venue.paper.depth_levels) == (
        5.0,
        False,
        50,
    )
    with pytest.raises(ConfigError, match="venue.okx.book_stale_after"):
        parse_config("[venue.okx]\nbook_stale_after = 0\n")
    with pytest.raises(ConfigError, match="venue.paper.depth_levels"):
        parse_config("[venue.paper]\ndepth_levels = -1\n")


def test_a_strategy_asks_for_1_to_25_levels_or_full() -> None:
    import pytest

    c = BookCopies()
    c.want("X", 25)
    c.want("Y", "full")
    for bad in (0, 26, "all", True, 2.5):
        with pytest.raises(ValueError, match="1-25 levels or 'full'"):
            c.want("Z", bad)  # type: ignore[arg-type]


def _snap(seq: int, bids, asks) -> BookUpdate:
    return BookUpdate("X", 1, True, seq, -1, bids, asks)


def _delta(seq: int, bids, asks) -> BookUpdate:
    return BookUpdate("X", 1, False, seq, seq - 1, bids, asks)


def test_the_copy_waits_for_a_snapshot_follows_deltas_and_drops_itself_on_a_gap() -> None:
    c = BookCopies()
    c.want("X", "full")
    assert c.on_fullbook(_delta(5, [[1.0, 1.0]], [])) is None and c.get("X") is None  # no snapshot yet
    b = c.on_fullbook(_snap(5, [[10.0, 1.0], [9.0, 2.0]], [[11.0, 1.0]]))
    assert b is not None and b.book_seq == 5 and b.best_bid == (10.0, 1.0) and b.spread == 1.0
    assert c.on_fullbook(_snap(5, [[10.0, 1.0], [9.0, 2.0]], [[11.0, 1.0]])) is None  # the periodic one
    b = c.on_fullbook(_delta(6, [[10.0, 0.0]], [[10.5, 3.0]]))
    assert b is not None and b.bids == [[9.0, 2.0]] and b.asks == [[10.5, 3.0], [11.0, 1.0]]
    assert b.size_at("sell", 10.5) == 3.0 and b.size_at("bid", 10.0) == 0.0 and b.mid == 9.75
    assert c.on_fullbook(_delta(6, [[1.0, 1.0]], [])) is None  # a duplicate
    assert c.on_fullbook(_delta(8, [[9.0, 5.0]], [])) is None  # 7 was lost
    assert c.get("X") is None and c.counters.gaps == 1
    assert c.on_fullbook(_delta(9, [[9.0, 6.0]], [])) is None  # still waiting
    b = c.on_fullbook(_snap(9, [[9.0, 6.0]], [[10.5, 3.0]]))
    assert b is not None and c.get("X") is b
    # a snapshot of our version that differs: counted (never happens with a correct server) and taken
    assert c.on_fullbook(_snap(9, [[9.0, 7.0]], [[10.5, 3.0]])) is b and c.counters.mismatches == 1


def test_status_invalid_drops_stale_hides_valid_restores() -> None:
    c = BookCopies()
    c.want("X", "full")
    c.on_fullbook(_snap(3, [[10.0, 1.0]], [[11.0, 1.0]]))
    c.on_status(BookStatus("X", "stale", "no update for 70.0 s", 3, 1, seq=1))
    assert c.get("X") is None and c.books["X"].state == "stale"
    c.on_status(BookStatus("X", "valid", "", 3, 1, seq=2))
    assert c.get("X") is not None
    c.on_status(BookStatus("X", "invalid", "gap", 3, 1, seq=3))
    assert c.get("X") is None and c.books["X"].bids == []
    c.on_fullbook(_snap(4, [[10.0, 1.0]], [[11.0, 1.0]]))
    assert c.get("X") is not None
    c.on_status(BookStatus("X", "valid", "", 4, 1, seq=5))  # status 4 was lost: we cannot tell
    assert c.get("X") is None


def test_top_n_copy_calls_back_only_when_its_levels_change() -> None:
    c = BookCopies()
    c.want("X", 2)
    assert c.on_depth(Depth("X", 1, [[10.0, 1.0], [9.0, 1.0], [8.0, 1.0]], [[11.0, 1.0]], 1)) is not None
    b = c.get("X")
    assert b is not None and b.bids == [[10.0, 1.0], [9.0, 1.0]] and b.depth == 2
    assert c.on_depth(Depth("X", 2, [[10.0, 1.0], [9.0, 1.0], [8.0, 5.0]], [[11.0, 1.0]], 2)) is None
    assert c.on_depth(Depth("X", 3, [[10.0, 2.0], [9.0, 1.0]], [[11.0, 1.0]], 3)) is b
    assert c.on_fullbook(_snap(3, [], [])) is None  # not the form it asked for
