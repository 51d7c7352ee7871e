"""A backtest window's round trip on the server with less work a window (bench/README.md, "Backtest
replay", ack18): the sync's resend and timeout kept by a watchdog task (no timer set a window), the
window frame's head packed once, a ``sync_ack`` read on a short path, and the sequencer's record of
what each strategy acknowledged. Each is held to what the longer way gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from seqtrade import wire
from seqtrade.errors import SeqtradeError, WireError
from seqtrade.models import Book, Trade
from seqtrade.replay_backtest import ACK_TIMEOUT_S, BacktestVenue
from seqtrade.sequencer import WindowSequencer
from seqtrade.vclock import Sync, SyncAck, Window

S = "BTC-USDT"
MS = 1_000_000
T0 = 1_790_000_000_000_000_000


class _Sink:
    """What ``_wait_acks`` publishes a repeated sync on: kept with the (virtual) time it was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, int]] = []

    def publish_market(self, msg: Any) -> None:
        self.sent.append((trio.current_time(), msg.step))


def _venue(tmp_path: Path, strategies: list[str]) -> BacktestVenue:
    (tmp_path / "book" / "2026-11-30" / S).mkdir(parents=True, exist_ok=True)
    venue = BacktestVenue(tmp_path, [S])
    venue._strategies = strategies
    return venue


async def test_windows_answered_in_time_are_never_sent_again_and_one_that_is_not_is_about_each_second(
    autojump_clock: Any, tmp_path: Path
) -> None:
    venue = _venue(tmp_path, ["a", "b"])
    sink = _Sink()
    t0 = trio.current_time()
    # 40 windows, each answered after 0.3 s (of the virtual clock): 12 s in all, never a repeat
    for step in range(1, 41):
        async with trio.open_nursery() as n:
            n.start_soon(venue._wait_acks, sink, Sync("backtest", step * MS, step, {}))
            await trio.sleep(0.3)
            venue.on_sync_ack(SyncAck("b", step * MS, step))
            venue.on_sync_ack(SyncAck("a", step * MS, step))
    assert sink.sent == []
    assert trio.current_time() - t0 == pytest.approx(12.0)
    # window 41: a answers at once, b after 3.6 s: the sync went out again about every second meanwhile
    start = trio.current_time()
    async with trio.open_nursery() as n:
        n.start_soon(venue._wait_acks, sink, Sync("backtest", 41 * MS, 41, {"a": 1}))
        venue.on_sync_ack(SyncAck("a", 41 * MS, 41))
        await trio.sleep(3.6)
        venue.on_sync_ack(SyncAck("b", 41 * MS, 41))
    assert [step for _, step in sink.sent] == [41, 41, 41]
    gaps = [t - start for t, _ in sink.sent]
    assert 1.0 <= gaps[0] <= 1.5 and all(0.9 <= b - a <= 1.5 for a, b in zip(gaps, gaps[1:], strict=False))
    # answered before the wait: no wait at all
    venue.on_sync_ack(SyncAck("a", 42 * MS, 42))
    venue.on_sync_ack(SyncAck("b", 42 * MS, 42))
    with trio.fail_after(0.001):
        await venue._wait_acks(sink, Sync("backtest", 42 * MS, 42, {}))


async def test_a_strategy_that_never_answers_ends_the_backtest_after_the_timeout_naming_it(
    autojump_clock: Any, tmp_path: Path
) -> None:
    venue = _venue(tmp_path, ["a", "b", "c"])
    sink = _Sink()
    venue.on_sync_ack(SyncAck("b", 7 * MS, 7))  # b answered before the wait
    start = trio.current_time()
    with pytest.raises(SeqtradeError, match=r"backtest: a, c did not answer sync 7 within 60 s"):
        await venue._wait_acks(sink, Sync("backtest", 7 * MS, 7, {}))
    waited = trio.current_time() - start
    assert ACK_TIMEOUT_S <= waited <= ACK_TIMEOUT_S + 1.0
    assert 58 <= len(sink.sent) <= 60  # sent again about every second until then
    # an answer from a strategy the clock does not wait for wakes nothing
    venue._strategies = ["a"]
    async with trio.open_nursery() as n:
        n.start_soon(venue._wait_acks, sink, Sync("backtest", 8 * MS, 8, {}))
        await trio.sleep(0.1)
        venue.on_sync_ack(SyncAck("z", 8 * MS, 8))
        await trio.sleep(0.1)
        assert venue._short == 1
        venue.on_sync_ack(SyncAck("a", 8 * MS, 8))


def _rows(keys: dict[str, list[str]], n: int) -> list[list[Any]]:
    out = []
    for i in range(n):
        msg: Any = (
            Book(S, i, [[100.0, 1.0]], [[100.5, 2.0]], i, T0 + i)
            if i % 2
            else Trade(S, i, f"t{i}", 100.5, 0.5, "buy", i, T0 + i)
        )
        out.append(wire.window_row(msg, keys))
    return out


def test_window_frames_with_their_head_packed_once_are_the_bytes_of_the_whole_map() -> None:
    """Venues, keys that change between frames (a new type), reports of every size and integers of
    every width: the frame made from pieces equals the map packed whole, and reads back."""
    reports_of = [{}, {"s1": 0}, {f"s{i}": i * 1000 for i in range(20)}, {"a": 2**40}]
    for venue in ("backtest", "paper", "backtest"):
        for t, step, seq, gw_ns in ((0, 0, 0, 0), (T0, 1, 1, T0), (2**63 - 1, 70_000, 2**32, 127)):
            for reports in reports_of:
                keys: dict[str, list[str]] = {}
                for n in (0, 1, 3):  # the keys grow: a trade's, then a book's
                    rows = _rows(keys, n)
                    ahead = Window(venue, t, step, reports, seq, gw_ns, rows, keys, wire.pack_rows(rows))
                    plain = Window(venue, t, step, reports, seq, gw_ns, rows, keys)
                    frame = wire.encode_message(ahead)
                    assert frame == wire.encode_message(plain)
                    body = msgpack.unpackb(frame[len(f"window/{venue}/") :])
                    assert list(body) == [
                        "type",
                        "venue",
                        "t",
                        "step",
                        "reports",
                        "keys",
                        "md",
                        "seq",
                        "gw_ns",
                    ]
                    assert (body["t"], body["step"], body["reports"], body["keys"]) == (
                        t,
                        step,
                        reports,
                        keys,
                    )
                    assert wire.decode_message(frame).md == wire.decode_message(wire.encode_message(plain)).md


def _ack_frames() -> list[bytes]:
    """sync_ack frames, good and bad, as a strategy (or anything else) could send them."""
    good = wire.encode_message(SyncAck("q1", T0, 12, "sess-1", True))
    body = {"type": "sync_ack", "strategy_id": "q1", "t": T0, "step": 12}

    def frame(topic: bytes, d: Any) -> bytes:
        return topic + msgpack.packb(d)

    return [
        good,
        wire.encode_message(SyncAck("q-2_x", 0, 1)),
        wire.encode_message(SyncAck("q1", 2**63 - 1, 2**63 - 1, "", False)),
        frame(b"sync_ack/q1/", {**body, "batch": 1}),  # batch not a bool
        frame(b"sync_ack/q1/", {**body, "step": -1}),
        frame(b"sync_ack/q1/", {**body, "step": True}),
        frame(b"sync_ack/q1/", {**body, "t": 2**64 - 1}),
        frame(b"sync_ack/q1/", {k: v for k, v in body.items() if k != "t"}),
        frame(b"sync_ack/q1/", {**body, "strategy_id": "q2"}),  # not the topic's
        frame(b"sync_ack/q1/", {**body, "strategy_id": 5}),
        frame(b"sync_ack/q1/", {**body, "type": "heartbeat"}),
        frame(b"sync_ack/q1/", {**body, "session": "bad session!"}),
        frame(b"sync_ack/q1/", [1, 2]),  # not a map
        frame(b"sync_ack/bad id!/", {**body, "strategy_id": "bad id!"}),
        frame(b"sync_ack//", body),
        frame(b"sync_ack/q1", body),
        b"sync_ack/q1/\xc1",  # not MessagePack
        good + b"\x00",  # extra data
        b"sync_ack/\xff\xfe/" + good[12:],  # not ASCII
        frame(b"sync_ack/q1/", {**body, "pad": "x" * 2000}),  # long: the general path
        frame(b"heartbeat/q1/", {"type": "heartbeat", "strategy_id": "q1", "timestamp": 1}),
    ]


def test_a_sync_ack_read_on_its_short_path_is_what_parse_request_reads_and_anything_else_is_left_to_it() -> (
    None
):
    short = 0
    for frame in _ack_frames():
        try:
            want: Any = wire.parse_request(frame)
        except WireError as exc:
            want = exc
        got = wire.parse_sync_ack(frame)
        if got is not None:
            short += 1
            assert isinstance(want, SyncAck) and got == want
        else:
            assert isinstance(want, WireError) or not isinstance(want, SyncAck) or len(frame) > 1024
    assert short == 3  # the three good ones; the long good one went the general way


def test_the_sequencer_releases_a_window_acknowledged_ahead_once_the_clock_gets_there() -> None:
    seq: WindowSequencer[tuple[str, str, int]] = WindowSequencer(["s1", "s2"], lambda f: f)
    seq.step = 1
    # s1 answers windows 1 and 2 (and orders in 2) before s2 answers 1
    assert seq([("sync_ack", "s1", 1), ("order_request", "s1", 0), ("sync_ack", "s1", 2)]) == []
    assert seq([("sync_ack", "s2", 1)]) == [("sync_ack", "s1", 1), ("sync_ack", "s2", 1)]
    assert seq.held == 2
    seq.step = 2
    assert seq([]) == []  # s2 has not answered window 2
    assert seq([("sync_ack", "s2", 2)]) == [
        ("order_request", "s1", 0),
        ("sync_ack", "s1", 2),
        ("sync_ack", "s2", 2),
    ]
    assert seq.held == 0
    seq.step = 3
    assert seq([("sync_ack", "s1", 3)]) == []  # window 2's acknowledgements do not count for 3
    seq.finish()
    assert seq([]) == [("sync_ack", "s1", 3)]


def test_classify_keeps_what_the_short_path_read(tmp_path: Path) -> None:
    venue = _venue(tmp_path, ["q1"])
    venue.sequencer = WindowSequencer(["q1"], venue._classify)
    venue.sequencer.step = 12
    frame = _ack_frames()[0]
    assert venue.sequencer([frame]) == [frame]
    assert venue.sequencer.take(frame) == SyncAck("q1", T0, 12, "sess-1", True)
    bad = _ack_frames()[4]
    assert venue.sequencer([bad]) == [bad] and venue.sequencer.take(bad) is None


def test_a_window_frame_after_one_with_the_same_keys_in_another_order_is_still_the_whole_map() -> None:
    """The head's keys are kept packed from one frame to the next (one cache for the process): two
    backtests in one process whose types came first in another order have equal keys maps whose
    packed bytes differ; each frame is still the bytes of its own map packed whole."""
    keys_tb: dict[str, list[str]] = {}
    rows_tb = _rows(keys_tb, 2)  # a trade first, then a book
    keys_bt = {"book": keys_tb["book"], "trade": keys_tb["trade"]}
    assert keys_bt == keys_tb and list(keys_bt) != list(keys_tb)
    for keys in (keys_tb, keys_bt, keys_tb):
        ahead = Window("backtest", T0, 1, {"s1": 1}, 1, T0, rows_tb, keys, wire.pack_rows(rows_tb))
        plain = Window("backtest", T0, 1, {"s1": 1}, 1, T0, rows_tb, keys)
        assert wire.encode_message(ahead) == wire.encode_message(plain)
