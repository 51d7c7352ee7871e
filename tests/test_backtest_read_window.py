"""The backtest reads its next window (seqtrade.replay_backtest.BacktestVenue._read_window: a book's and
a trade's mark, topic seq and row made inline, their rows taking the levels the reader gave as they
are) into what the codec's own path makes of the same recording: the same rows, the same packed bytes
window by window, the same topic seqs and the same marks for the results; and nothing the fill model
does to the window's books changes a row before it is packed."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import trio

from seqtrade import wire
from seqtrade.bench.replay import write_recording
from seqtrade.config import RecorderConfig
from seqtrade.models import (
    Book,
    FundingRate,
    MarkPrice,
    OrderType,
    PriceLimit,
    Side,
    Ticker,
    Trade,
    VenueStatus,
)
from seqtrade.recorder import Recorder
from seqtrade.replay import read_messages
from seqtrade.replay_backtest import WINDOW_PART, BacktestVenue
from seqtrade.venues.base import OrderEvent, VenueOrder

T0 = 1_790_000_000_000_000_000
SYMBOLS = ["BTC-USDT", "ETH-USDT", "SOL-USDT-SWAP"]  # (and XRP-USDT recorded, not replayed)
LOOKAHEAD = 1_000_000


def _record(root: Path, seed: int) -> Path:
    """A recording of books (0-5 levels a side, integers among the floats), trades, tickers, marks,
    funding and price limits of four symbols, the venue's connection dropping and coming back, and one
    burst longer than a window frame's part."""
    rng = random.Random(seed)
    frames: list[bytes] = []
    ns = T0
    up = True

    def level() -> list[Any]:
        return [rng.choice((100, 100.5, 99.25, 101)) + rng.randint(0, 3), rng.choice((1, 0.5, 2.25, 3))]

    for i in range(2_500):
        ns += rng.choice((0, 1, 1_000, 300_000, 900_000, 2_500_000))
        if i == 1_200:  # a burst of books at one time: longer than a part
            for j in range(WINDOW_PART + 10):
                frames.append(wire.encode_message(Book("ETH-USDT", ns // 10**6, [level()], [level()], j, ns)))
        sym = rng.choice(SYMBOLS + ["XRP-USDT"])
        ts = ns // 10**6
        r = rng.random()
        msg: Any
        if r < 0.45:
            msg = Book(
                sym,
                ts,
                [level() for _ in range(rng.randint(0, 5))],
                [level() for _ in range(rng.randint(0, 5))],
            )
        elif r < 0.8:
            msg = Trade(
                sym,
                ts,
                f"t{i}",
                rng.choice((100, 100.5, 101.25)),
                rng.choice((1, 0.5)),
                rng.choice(("buy", "sell")),
            )
        elif r < 0.87:
            msg = Ticker(sym, ts, 100.0, 99.0, 101, 1.0, 2, 3.0)
        elif r < 0.92:
            msg = MarkPrice(sym, ts, rng.choice((100, 100.5)), 100.25)
        elif r < 0.96:
            msg = FundingRate(sym, ts, 0.0001, ts + 5, 28_800_000)
        elif r < 0.98:
            msg = PriceLimit(sym, ts, 110.0, 90)
        else:
            up = not up
            msg = VenueStatus("paper", up, SYMBOLS, ts)
        msg.gw_ns = ns
        frames.append(wire.encode_message(msg))

    async def write() -> None:
        rec = Recorder(RecorderConfig(enabled=True, queue=len(frames) + 10), root, "paper")
        rec.md.extend(frames)
        await rec.close()

    trio.run(write)
    return root


def _codecs_windows(
    data: Path, symbols: list[str]
) -> tuple[list[tuple[int, int, list[Any], bytes]], list[Any], dict[bytes, int]]:
    """Each window's (end, messages, rows, the rows packed), the marks and the topic seqs as the codec's
    own path makes them (the server's reading of a window before the rows were made inline): each
    message numbered on its codec's topic and stamped, its row through wire.window_row (levels made
    floats again), its mark by its type."""
    msgs = list(read_messages(data, symbols))
    seqs: dict[bytes, int] = {}
    keys: dict[str, list[str]] = {}
    last: dict[str, float] = {}
    marks: list[tuple[int, str, float]] = []
    windows = []
    i = 0
    while i < len(msgs):
        end = msgs[i][0] + LOOKAHEAD
        rows: list[Any] = []
        n = 0
        while i < len(msgs) and msgs[i][0] < end:
            ns, msg = msgs[i]
            i += 1
            n += 1
            if msg is True or msg is False:
                continue
            price = None
            if isinstance(msg, Trade):
                price = msg.price
            elif isinstance(msg, Book) and msg.bids and msg.asks:
                price = (msg.bids[0][0] + msg.asks[0][0]) / 2
            if price is not None and last.get(msg.symbol) != price:
                last[msg.symbol] = price
                marks.append((ns, msg.symbol, price))
            t = wire.CODECS[msg.__class__].topic(msg)
            msg.seq = seqs[t] = seqs.get(t, 0) + 1
            msg.gw_ns = ns
            rows.append(wire.window_row(msg, keys))
        windows.append((end, n, rows, wire.pack_rows(rows)))
    return windows, marks, seqs


def _venue(data: Path, symbols: list[str], *, batch: bool = True) -> BacktestVenue:
    v = BacktestVenue(data, symbols, lookahead_ns=LOOKAHEAD)
    v._strategies = ["a", "b"]
    v._batch = dict.fromkeys(v._strategies, batch)
    v._md_seqs = {}
    return v


def _read_all(v: BacktestVenue, data: Path, symbols: list[str], play: Any = None) -> list[Any]:
    msgs = read_messages(data, symbols)
    window, nxt = v._read_window(next(msgs, None), msgs)
    got = []
    while window is not None:
        if play is not None:
            play(window)
        got.append(window)
        window, nxt = v._read_window(nxt, msgs)
    return got


def _check(data: Path, symbols: list[str]) -> list[Any]:
    want, marks, seqs = _codecs_windows(data, symbols)
    v = _venue(data, symbols)
    got = _read_all(v, data, symbols)
    assert [(w.end, len(w.items)) for w in got] == [(end, n) for end, n, _, _ in want]
    for w, (_, _, rows, packed) in zip(got, want, strict=True):
        assert w.bodies == rows
        assert wire.pack_rows(w.bodies) == packed  # (ints and floats compare equal: the bytes do not)
        status = any(m is True or m is False for _, m in w.items)
        assert w.packed == (None if status or len(w.items) >= WINDOW_PART else packed)
    assert v._md_seqs == seqs
    assert v._marks == marks
    return got


def test_the_bench_recordings_windows_are_the_codecs_rows_bytes_seqs_and_marks(tmp_path: Path) -> None:
    got = _check(write_recording(tmp_path / "rec", 3_000, 100), ["BTC-USDT"])
    assert len(got) == 30 and all(w.packed is not None for w in got)


def test_a_recording_of_several_symbols_and_types_reads_into_the_codecs_windows(tmp_path: Path) -> None:
    for seed in range(3):
        data = _record(tmp_path / f"rec{seed}", seed)
        got = _check(data, SYMBOLS[:2] + SYMBOLS[2:])
        types = {type(m) for w in got for _, m in w.items}
        assert {Book, Trade, Ticker, MarkPrice, FundingRate, PriceLimit, bool} <= types
        assert any(w.packed is None and len(w.items) >= WINDOW_PART for w in got)  # the burst, in parts
        assert any(w.packed is None and len(w.items) < WINDOW_PART for w in got)  # a connection change
        assert sum(w.packed is not None for w in got) > 100


def test_windows_not_in_one_frame_give_the_same_marks(tmp_path: Path) -> None:
    data = _record(tmp_path / "rec", 7)
    _, marks, _ = _codecs_windows(data, SYMBOLS)
    v = _venue(data, SYMBOLS, batch=False)
    got = _read_all(v, data, SYMBOLS)
    assert all(w.bodies is None and w.packed is None for w in got)
    assert v._marks == marks


def test_the_reader_gives_books_fresh_lists_of_floats_and_trades_floats(tmp_path: Path) -> None:
    """What the rows rely on (replay.read_messages), for what the recorder writes: integers published
    come back floats, and no level list is shared between two messages (or two levels)."""
    got = [m for _, m in read_messages(_record(tmp_path / "rec", 3), SYMBOLS)]
    books = [m for m in got if type(m) is Book]
    trades = [m for m in got if type(m) is Trade]
    assert len(books) > 4_000 and len(trades) > 500
    lists = [side for b in books for side in (b.bids, b.asks)]
    levels = [lv for side in lists for lv in side]
    assert len({id(x) for x in lists + levels}) == len(lists) + len(levels)  # (all alive: ids unique)
    assert all(
        type(lv) is list and len(lv) == 2 and type(lv[0]) is float and type(lv[1]) is float for lv in levels
    )
    assert all(type(t.price) is float and type(t.size) is float and type(t.side) is str for t in trades)
    assert any(lv[0] == int(lv[0]) for lv in levels)  # (some were recorded as integers)


def test_the_fill_model_taking_the_windows_books_changes_no_row_before_it_is_packed(tmp_path: Path) -> None:
    """Market orders walk every book of every window (the fill model takes levels from its copy of the
    book) and limit orders rest and fill: the rows, packed after all of it, are the bytes packed when
    each window was read and the codec's."""
    data = _record(tmp_path / "rec", 11)
    want, _, _ = _codecs_windows(data, SYMBOLS)
    v = _venue(data, SYMBOLS)
    events: list[OrderEvent] = []
    n = [0]

    def play(w: Any) -> None:  # as the backtest plays a window, with orders arriving in every one
        for sym in SYMBOLS:
            for side in (Side.BUY, Side.SELL):
                n[0] += 1
                events.extend(
                    v.sim.submit(VenueOrder(f"m{n[0]}", sym, side, OrderType.MARKET, None, 4.0), w.end)
                )
                n[0] += 1
                order = VenueOrder(f"l{n[0]}", sym, side, OrderType.LIMIT, 100.5, 0.5)
                events.extend(v.sim.submit(order, w.end))
        for ns, msg in w.items:
            if msg is not True and msg is not False:
                events.extend(v.sim.on_market(msg, ns))
        events.extend(v.sim.advance(w.end))

    got = _read_all(v, data, SYMBOLS, play)
    assert len(v.sim.fills) > 1_000  # takers walked the books, limit orders filled
    assert [wire.pack_rows(w.bodies) for w in got] == [packed for *_, packed in want]
    assert all(w.packed in (None, packed) for w, (*_, packed) in zip(got, want, strict=True))


def test_rows_are_packed_as_the_codec_packs_them_exact_types_or_not() -> None:
    """wire.pack_rows packs exact types with the strict packer and anything else (an enum, a tuple)
    as wire._pack does; a row the strict packer gave up on leaves nothing behind for the next."""
    exact = [
        ["book", "X", 1, [[1.0, 2.0], [0.5, 3.0]], [], 5, 2**63],
        ["trade", "X", 1, "t", 1.0, 2.0, "buy", 300, -1],
    ]
    others = [
        ["trade", "X", 1, "t", 1.0, 2.0, Side.BUY, 1, 2],
        ["x", (1, 2), OrderType.MARKET, True, None, {"a": [1, 2.5]}, b"z"],
    ]
    for rows in (exact, others, exact[:1] + others[:1], [], exact):
        assert wire.pack_rows(rows) == wire._pack(rows)
    assert wire.pack_rows(others) == wire.pack_rows(
        [["trade", "X", 1, "t", 1.0, 2.0, "buy", 1, 2], others[1]]
    )
