"""A backtest's round trip without repeated work (bench/README.md, "Backtest replay", ack17): a window's
rows packed when it is read give the frame the same bytes as packing them at the send, and a request
frame the sequencer parsed is handed to the server's order task parsed (once), never for a frame it
could not read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from seqtrade import wire
from seqtrade.candles import Candle
from seqtrade.models import Book, MarkPrice, OrderRequest, OrderType, Side, Ticker, Trade
from seqtrade.replay_backtest import BacktestVenue
from seqtrade.sequencer import WindowSequencer
from seqtrade.vclock import SyncAck, Window

from .test_codec_golden import FRAMES, MESSAGES

T0 = 1_790_000_000_000_000_000


def _rows(n: int, keys: dict[str, list[str]]) -> list[list[Any]]:
    """``n`` window rows of every market-data shape a recording holds (books of 0-3 levels, trades,
    tickers, a candle, a mark price), in the order a window would carry them."""
    out: list[list[Any]] = []
    for i in range(n):
        k = i % 6
        msg: Any
        if k == 0:
            msg = Book(
                "BTC-USDT", i, [[100.0 - j * 0.1, 1.0 + j] for j in range(i % 4)], [[100.5, 0.5]], i, T0 + i
            )
        elif k == 1:
            msg = Trade("BTC-USDT", i, f"t-{i}", 100.5, 0.25 * i, "sell" if i % 2 else "buy", i, T0 + i)
        elif k == 2:
            msg = Ticker("ETH-USDT", i, 3000.0, 2999.5, 3000.5, 1.0, 2.0, 1e9 + i, i, T0 + i)
        elif k == 3:
            msg = Candle("BTC-USDT", "1m", 60_000 * i, 1.0, 2.0, 0.5, 1.5, 10.0, bool(i % 2), i, T0 + i)
        elif k == 4:
            msg = MarkPrice("BTC-USDT-SWAP", i, 60010.5, 60002.25, i, T0 + i)
        else:
            msg = Book("BTC-USDT", i, [], [], i, 2**63 - 1)  # empty sides, the largest stamp
        out.append(wire.window_row(msg, keys))
    return out


@pytest.mark.parametrize("n", [0, 1, 7, 100, 700])
@pytest.mark.parametrize("reports", [{}, {"s1": 7, "s2": 0, "s3": 2**40}])
def test_a_window_with_its_rows_packed_ahead_is_the_same_frame(n: int, reports: dict[str, int]) -> None:
    keys: dict[str, list[str]] = {}
    rows = _rows(n, keys)
    plain = Window("backtest", T0 + 1_000_000, 3 if n else 0, reports, 4, T0 + 5, md=rows, keys=keys)
    ahead = Window("backtest", T0 + 1_000_000, 3 if n else 0, reports, 4, T0 + 5, md=rows, keys=keys,
                   md_packed=wire.pack_rows(rows))  # fmt: skip
    frame = wire.encode_message(ahead)
    assert frame == wire.encode_message(plain)
    # ... and the frame is the protocol's: a map of the window's keys, its md the rows
    body = msgpack.unpackb(frame[len(b"window/backtest/") :])
    assert list(body) == ["type", "venue", "t", "step", "reports", "keys", "md", "seq", "gw_ns"]
    assert body["md"] == rows and body["reports"] == reports and body["keys"] == keys
    back = wire.decode_message(frame)
    assert isinstance(back, Window) and len(back.md) == n


@pytest.mark.parametrize("name", ["window", "window_part", "window_empty"])
def test_the_golden_window_frames_are_made_the_same_from_rows_packed_ahead(name: str) -> None:
    golden = MESSAGES[name]
    assert isinstance(golden, Window)
    keys: dict[str, list[str]] = {}
    rows = [wire.window_row(m, keys) for m in golden.md]
    ahead = Window(golden.venue, golden.t_ns, golden.step, dict(golden.reports), golden.seq, golden.gw_ns,
                   rows, keys, md_packed=wire.pack_rows(rows))  # fmt: skip
    assert wire.encode_message(ahead).hex() == FRAMES[name]
    assert wire.encode_message(golden).hex() == FRAMES[name]


def _venue(tmp_path: Path, strategies: list[str]) -> BacktestVenue:
    venue = BacktestVenue(tmp_path, ["BTC-USDT"])
    venue.sequencer = WindowSequencer(strategies, venue._classify)
    return venue


def test_the_sequencer_hands_over_what_it_parsed_once_and_nothing_for_a_frame_it_could_not_read(
    tmp_path: Path,
) -> None:
    venue = _venue(tmp_path, ["s1", "s2"])
    seq = venue.sequencer
    assert seq is not None
    seq.step = 1
    order = OrderRequest("s1", "c-1", "BTC-USDT", Side.BUY, OrderType.LIMIT, 100.0, 0.01, 1_790_000_000_000)
    f_order = wire.encode_message(order)
    f_ack1 = wire.encode_message(SyncAck("s1", T0, 1, "", True))
    f_ack2 = wire.encode_message(SyncAck("s2", T0, 1, "", True))
    f_bad = f_ack2[:-3]  # a truncated sync_ack: classify cannot read it
    assert seq([f_order, f_ack1, f_bad]) == [f_bad]  # the unreadable one at once; s1's held
    assert seq.take(f_bad) is None  # nothing kept: the order task parses it and refuses it as ever
    out = seq([f_ack2])
    assert out == [f_order, f_ack1, f_ack2]
    got = [seq.take(f) for f in out]
    assert got == [order, SyncAck("s1", T0, 1, "", True), SyncAck("s2", T0, 1, "", True)]
    assert got == [wire.parse_request(f) for f in out]  # what parsing again would have given
    assert [seq.take(f) for f in out] == [None, None, None]  # once: the entries are gone
    assert seq.parsed == {}


def test_a_kept_parse_belongs_to_its_frame_object_only(tmp_path: Path) -> None:
    venue = _venue(tmp_path, ["s1"])
    seq = venue.sequencer
    assert seq is not None
    frame = wire.encode_message(SyncAck("s1", T0, 1))
    assert seq([frame]) == [frame]  # step 0 waited for: a later ack releases at once
    twin = bytes(bytearray(frame))  # equal bytes, another object: not what classify read
    assert twin is not frame
    assert seq.take(twin) is None
    assert seq.take(frame) == SyncAck("s1", T0, 1)
