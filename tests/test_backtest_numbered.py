"""A window frame's rows (seqtrade.replay_backtest.BacktestVenue._numbered: books and trades numbered
without their codec looked up, their rows built without their maps) are what the codec's own path
makes of the same messages: the same topic seqs, stamps, rows and packed bytes."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from seqtrade import wire
from seqtrade.bench.replay import write_recording
from seqtrade.models import Book, Ticker, Trade
from seqtrade.replay_backtest import BacktestVenue


def _before(msgs: list[tuple[int, Any]]) -> tuple[list[list[Any]], dict[bytes, int]]:
    """The rows and seqs the codec's own path gives (``_numbered`` as it was)."""
    seqs: dict[bytes, int] = {}
    keys: dict[str, list[str]] = {}
    rows = []
    for ns, msg in msgs:
        t = wire.CODECS[msg.__class__].topic(msg)
        msg.seq = seqs[t] = seqs.get(t, 0) + 1
        msg.gw_ns = ns
        rows.append(wire.window_row(msg, keys))
    return rows, seqs


def _messages(seed: int) -> list[tuple[int, Any]]:
    rng = random.Random(seed)
    out: list[tuple[int, Any]] = []
    for i in range(300):
        sym = rng.choice(("BTC-USDT", "ETH-USDT"))
        r = rng.random()
        if r < 0.5:
            level = rng.choice(([100.5, 2.0], [100, 3]))  # recorded integers become floats on the wire
            msg: Any = Book(sym, i, [list(level)] * rng.randint(0, 3), [[101.0, 1.0]], 99, 7)
        elif r < 0.85:
            msg = Trade(sym, i, f"t{i}", rng.choice((100.5, 101)), rng.choice((1, 0.5)), "buy", 5, 6)
        else:
            msg = Ticker(sym, i, 100.0, 99.0, 101.0, 1.0, 2.0, 3.0, 4, 5)
        out.append((1_000 + i, msg))
    return out


def test_numbered_rows_are_the_codecs_rows(tmp_path: Path) -> None:
    data = write_recording(tmp_path / "rec", 10, 10)
    for seed in range(5):
        venue = BacktestVenue(data, ["BTC-USDT"])
        venue._md_seqs = {}
        mine = _messages(seed)
        rows = [venue._numbered(msg, ns) for ns, msg in mine]
        want, seqs = _before(_messages(seed))
        assert rows == want
        assert wire.pack_rows(rows) == wire.pack_rows(want)
        assert venue._md_seqs == seqs
        assert [(m.seq, m.gw_ns) for _, m in mine] == [(m.seq, m.gw_ns) for _, m in _messages_numbered(seed)]
        assert set(venue._keys) == {"book", "trade", "ticker"}


def _messages_numbered(seed: int) -> list[tuple[int, Any]]:
    msgs = _messages(seed)
    _before(msgs)
    return msgs


def test_a_venue_without_the_servers_seqs_numbers_its_own(tmp_path: Path) -> None:
    venue = BacktestVenue(write_recording(tmp_path / "rec", 10, 10), ["BTC-USDT"])
    assert venue._md_seqs is None
    rows = [venue._numbered(msg, ns) for ns, msg in _messages(1)]
    assert rows == _before(_messages(1))[0]
    assert venue._own_seqs == _before(_messages(1))[1]
