"""``replay.read_messages``, the backtest's reader of a recording: the same pairs, in the same order, as
the reader it replaced (``read_messages_before`` below: main's at bcfa17a, kept here as it was) over
seeded random recordings (several symbols and types, status rows, rows of unknown types, ties on
``gw_ns`` within and across the chains, with equal and unequal type and seq, chains whose local clock
steps back, empty files, files and batches of different sizes, one chain alone), and what its
messages hold whatever the file's column types (the contract the window's rows rely on)."""

from __future__ import annotations

import dataclasses
import decimal
import gc
import heapq
import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqtrade import replay, wire
from seqtrade.models import Book, Ticker, Trade, VenueStatus

DAY = "2026-12-01"
SYMBOLS = ["A-USDT", "B-USDT"]


# ---------------------------------------------------------------------- main's reader, as it was


def read_messages_before(data: Path, symbols: list[str]) -> Iterator[tuple[int, Any]]:
    streams = [
        _file_messages(i, table, files) for i, (table, files) in enumerate(replay._chains(data, symbols))
    ]
    connected = True
    for ns, _typ, _seq, _i, msg in heapq.merge(*streams):
        if msg.__class__ is dict:  # a status row
            now = bool(msg.get("connected", True))
            if now != connected:
                connected = now
                yield ns, now
        elif msg is not None:
            yield ns, msg


def _file_messages(stream: int, table: str, files: list[Path]) -> Iterator[Any]:
    return itertools.chain.from_iterable(_file_batches(stream, table, files))


def _file_batches(stream: int, table: str, files: list[Path]) -> Iterator[Iterator[Any]]:
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=replay._READ_BATCH):
            collecting = gc.isenabled()
            gc.disable()
            try:
                keyed = _keyed(stream, table, batch)
            finally:
                if collecting:
                    gc.enable()
            yield keyed


def _keyed(stream: int, table: str, batch: Any) -> Iterator[Any]:
    names = batch.schema.names
    cols = {name: _pylist(batch.column(i)) for i, name in enumerate(names)}
    n = batch.num_rows
    gws = [v or 0 for v in cols["gw_ns"]] if "gw_ns" in cols else [0] * n
    seqs = [v or 0 for v in cols["seq"]] if "seq" in cols else [0] * n
    typs = [str(v) for v in cols["type"]] if "type" in cols else ["None"] * n
    if table == "status":
        rows: list[Any] = [dict(zip(names, r, strict=True)) for r in zip(*cols.values(), strict=True)]
    else:
        rows = _batch_messages(batch, names, cols, typs)
    return zip(gws, typs, seqs, itertools.repeat(stream, n), rows, strict=True)


def _pylist(col: Any) -> list[Any]:
    import pyarrow.compute as pc

    t = col.type
    if not (pa.types.is_list(t) and pa.types.is_list(t.value_type)) or col.null_count or col.offset:
        return list(col.to_pylist())
    inner = col.values
    if inner.null_count or inner.values.null_count or inner.offset or not len(inner):
        return list(col.to_pylist())
    width = pc.min_max(pc.list_value_length(inner)).as_py()
    flat = inner.values.to_pylist()
    w = width["min"]
    if w != width["max"] or not w or len(flat) != w * len(inner):
        return list(col.to_pylist())
    levels = list(map(list, zip(*[iter(flat)] * w, strict=True)))
    count = pc.min_max(pc.list_value_length(col)).as_py()
    k = count["min"]
    if k == count["max"] and k and k * len(col) == len(levels):
        return list(map(list, zip(*[iter(levels)] * k, strict=True)))
    oo = col.offsets.to_pylist()
    return [levels[a:b] for a, b in itertools.pairwise(oo)]


def _batch_messages(batch: Any, names: list[str], cols: dict[str, list[Any]], typs: list[str]) -> list[Any]:
    codec = wire.MARKET_DATA_TYPES.get(typs[0]) if typs else None
    fields = [f.name for f in dataclasses.fields(codec.model)] if codec is not None else []
    if (
        codec is not None
        and codec.key == "symbol"
        and typs.count(typs[0]) == len(typs)
        and [n for n in names if n != "type"] == fields
        and all(batch.column(i).null_count == 0 for i in range(len(names)))
    ):
        msgs = list(map(codec.model, *(cols[f] for f in fields)))
        first = dict(zip(names, (cols[n][0] for n in names), strict=True))
        if msgs[0] == codec.decode(first):
            return msgs
    return [replay.to_message(dict(zip(names, r, strict=True))) for r in zip(*cols.values(), strict=True)]


# ---------------------------------------------------------------------- recordings


def write(root: Path, table: str, key: str, name: str, rows: list[dict[str, Any]], proto: dict[str, Any],
          row_group: int | None = None) -> None:  # fmt: skip
    """``rows`` as one Parquet file of the chain (table, key); an empty file keeps ``proto``'s schema."""
    d = root / table / DAY / key
    d.mkdir(parents=True, exist_ok=True)
    keys = dict.fromkeys(k for r in rows for k in r)  # every row's keys (a row without one: null)
    t = (
        pa.Table.from_pydict({k: [r.get(k) for r in rows] for k in keys})
        if rows
        else pa.Table.from_pylist([proto]).slice(0, 0)
    )
    pq.write_table(t, d / name, row_group_size=row_group)


def body(msg: Any) -> dict[str, Any]:
    return wire.CODECS[msg.__class__].encode(msg)


class Clock:
    """A chain's ``gw_ns``: mostly forward in small steps (0: a tie), back now and then when ``steps_back``."""

    def __init__(self, rng: random.Random, steps_back: bool) -> None:
        self.rng = rng
        self.t = 1_000 + rng.randint(0, 5)
        self.back = steps_back

    def __call__(self) -> int:
        r = self.rng.random()
        if self.back and r < 0.08:
            self.t -= self.rng.randint(1, 15)
        else:
            self.t += self.rng.choice((0, 0, 1, 1, 2, 3, 7))
        return self.t


def message(rng: random.Random, table: str, sym: str, ns: int, seq: int) -> dict[str, Any]:
    px = float(rng.randint(90, 110))
    if table == "book":
        bids = [[px - i, float(rng.randint(1, 5))] for i in range(rng.choice((1, 2, 2, 5)))]
        asks = [[px + 1 + i, float(rng.randint(1, 5))] for i in range(rng.choice((0, 2, 2, 3)))]
        return body(Book(sym, ns // 10, bids, asks, seq, ns))
    if table == "trade":
        return body(Trade(sym, ns // 10, f"t{ns}-{seq}", px, 0.5, rng.choice(("buy", "sell")), seq, ns))
    return body(Ticker(sym, ns // 10, px, px - 1, px + 1, 1.0, 2.0, 3.0, seq, ns))


def random_recording(root: Path, seed: int) -> None:
    rng = random.Random(seed)
    chains = [(t, s) for t in ("book", "trade", "ticker") for s in (*SYMBOLS, "C-USDT")]
    chains = rng.sample(chains, rng.randint(1, len(chains)))
    if rng.random() < 0.6:
        chains.append(("status", "paper"))
    for table, key in chains:
        back = rng.random() < 0.15  # this chain's clock steps back now and then: not in order
        clock = Clock(rng, steps_back=back)
        seq = last_ns = 0
        for f in range(rng.choice((1, 1, 2, 3, 4))):
            rows = []
            for _ in range(rng.choice((0, 1, 3, 10, 25, 60))):
                ns = clock()
                # in order, a row at the same gw_ns as the one before has a seq as large; else small
                # seqs, that tie and cross those of other chains at the same gw_ns
                if ns == last_ns and not back:
                    seq = rng.choice((seq, seq + 1))
                else:
                    seq = rng.randint(0, 3)
                last_ns = ns
                if table == "status":
                    rows.append(body(VenueStatus(key, rng.random() < 0.6, ["A-USDT"], ns // 10, seq, ns)))
                elif table == "ticker" and rng.random() < 0.05:  # a type this version does not know
                    rows.append({"type": "weather", "symbol": key, "ts": 1, "seq": seq, "gw_ns": ns})
                else:
                    rows.append(message(rng, table, key, ns, seq))
            proto = message(rng, table if table != "status" else "ticker", key, 0, 0)
            write(root, table, key, f"{f:06d}-1-{f:06d}.parquet", rows, proto, rng.choice((None, 1, 4)))


def same(got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want)
    assert got == want
    assert repr(got) == repr(want)  # the same types too (an int is not a float here)


# ---------------------------------------------------------------------- the order and the content


@pytest.mark.parametrize("seed", range(40))
def test_the_reader_gives_what_the_one_before_gave_on_random_recordings(tmp_path: Path, seed: int) -> None:
    random_recording(tmp_path, seed)
    want = list(read_messages_before(tmp_path, SYMBOLS))
    got = list(replay.read_messages(tmp_path, SYMBOLS))
    same(got, want)


def test_the_random_recordings_reach_every_case(tmp_path: Path) -> None:
    """What the seeds above cover: ties across chains (with equal and unequal type and seq), ties
    within a chain, chains out of order, a chain alone, empty files, connection changes, rows of
    an unknown type."""
    seen: set[str] = set()
    for seed in range(40):
        root = tmp_path / str(seed)
        random_recording(root, seed)
        chains = replay._chains(root, SYMBOLS)
        keyed = [list(itertools.chain.from_iterable(
            replay._keyed(i, t, b) for f in fs for b in pq.ParquetFile(f).iter_batches()))
            for i, (t, fs) in enumerate(chains)]  # fmt: skip
        seen |= {"one chain"} if len(chains) == 1 else set()
        seen |= (
            {"empty file"}
            if any(pq.ParquetFile(f).metadata.num_rows == 0 for _, fs in chains for f in fs)
            else set()
        )
        for rows in keyed:
            keys = [r[:3] for r in rows]
            seen |= {"out of order"} if keys != sorted(keys) else set()
            seen |= {"tie within"} if len({k[0] for k in keys}) < len(keys) else set()
            seen |= {"unknown type"} if any(r[4] is None for r in rows) else set()
        by_ns: dict[int, set[tuple[Any, ...]]] = {}
        for rows in keyed:
            for r in rows:
                by_ns.setdefault(r[0], set()).add(r[1:4])
        for keys4 in by_ns.values():
            chains_at = {k[2] for k in keys4}
            if len(chains_at) > 1:
                seen.add("tie across")
                if len({k[:2] for k in keys4}) < len(keys4):
                    seen.add("tie across, same type and seq")
        got = list(replay.read_messages(root, SYMBOLS))
        seen |= {"connection change"} if any(m is False for _, m in got) else set()
    assert seen == {"one chain", "empty file", "out of order", "tie within", "unknown type", "tie across",
                    "tie across, same type and seq", "connection change"}  # fmt: skip


def test_a_chain_of_several_batches_merges_as_before(tmp_path: Path) -> None:
    """Books in one file of two batches (16,384 rows and the rest), trades in files of their own, status
    rows between them, many rows sharing a gw_ns; then the same with a step back in the books'
    second batch (the merge goes on row by row from there) and in their first."""
    rng = random.Random(5)
    n = replay._READ_BATCH + 3_000
    for back_at in (None, replay._READ_BATCH + 1_000, 500):
        root = tmp_path / str(back_at)
        books, t = [], 10_000
        for i in range(n):
            t += rng.choice((0, 1, 1, 2)) - (40 if i == back_at else 0)
            books.append(message(rng, "book", "A-USDT", t, i))
        write(root, "book", "A-USDT", "000001-1-000001.parquet", books, books[0])
        for f in range(3):
            trades = [message(rng, "trade", "A-USDT", 10_000 + f * 12_000 + 3 * i, i) for i in range(4_000)]
            write(root, "trade", "A-USDT", f"00000{f}-1-00000{f}.parquet", trades, trades[0])
        status = [body(VenueStatus("paper", i % 3 != 1, [], 1, i, 10_000 + 5_000 * i)) for i in range(6)]
        write(root, "status", "paper", "000001-1-000001.parquet", status, status[0])
        want = list(read_messages_before(root, SYMBOLS))
        got = list(replay.read_messages(root, SYMBOLS))
        same(got, want)
        assert len(got) == n + 12_000 + 4  # six status rows: four changes


def test_a_chain_alone_keeps_its_order_even_when_its_clock_steps_back(tmp_path: Path) -> None:
    rng = random.Random(3)
    rows = [message(rng, "trade", "A-USDT", ns, i) for i, ns in enumerate((5, 3, 3, 9, 1, 4))]
    write(tmp_path, "trade", "A-USDT", "000001-1-000001.parquet", rows, rows[0])
    got = list(replay.read_messages(tmp_path, SYMBOLS))
    assert [ns for ns, _ in got] == [5, 3, 3, 9, 1, 4]
    same(got, list(read_messages_before(tmp_path, SYMBOLS)))


# ---------------------------------------------------------------------- what the messages hold


def test_books_and_trades_hold_floats_and_fresh_lists_whatever_the_column_types(tmp_path: Path) -> None:
    """A file another tool wrote: integer levels and prices, a decimal size, an integer trade id, a
    large_string side. Every Book's levels are fresh lists of two Python floats, every Trade's price
    and size floats and its side and trade_id str."""
    levels = pa.list_(pa.list_(pa.int64()))
    books = pa.table({
        "type": ["book"] * 3, "symbol": ["A-USDT"] * 3, "ts": [1, 2, 3],
        "bids": pa.array([[[100, 2], [99, 3]], [[100, 1]], [[101, 4], [100, 5]]], levels),
        "asks": pa.array([[[102, 1]], [[102, 2], [103, 7]], [[103, 1]]], levels),
        "seq": [1, 2, 3], "gw_ns": [10, 20, 30],
    })  # fmt: skip
    trades = pa.table({
        "type": ["trade"] * 2, "symbol": ["A-USDT"] * 2, "ts": [1, 2], "trade_id": pa.array([7, 8], pa.int64()),
        "price": pa.array([101, 102], pa.int64()),
        "size": pa.array([decimal.Decimal("0.5"), decimal.Decimal("2")], pa.decimal128(10, 3)),
        "side": pa.array(["buy", "sell"], pa.large_string()), "seq": [1, 2], "gw_ns": [15, 25],
    })  # fmt: skip
    for table, t in (("book", books), ("trade", trades)):
        d = tmp_path / table / DAY / "A-USDT"
        d.mkdir(parents=True)
        pq.write_table(t, d / "000001-1-000001.parquet")
    got = list(replay.read_messages(tmp_path, SYMBOLS))
    assert [ns for ns, _ in got] == [10, 15, 20, 25, 30]
    assert got[0][1] == Book("A-USDT", 1, [[100.0, 2.0], [99.0, 3.0]], [[102.0, 1.0]], 1, 10)
    assert got[1][1] == Trade("A-USDT", 1, "7", 101.0, 0.5, "buy", 1, 15)
    check_contract([m for _, m in got])


def test_the_recorders_files_hold_floats_and_fresh_lists(tmp_path: Path) -> None:
    from seqtrade.bench.replay import write_recording

    msgs = [m for _, m in replay.read_messages(write_recording(tmp_path / "rec", 2_000, 100), ["BTC-USDT"])]
    assert len(msgs) == 2_000
    check_contract(msgs)


def test_levels_of_uneven_lengths_and_empty_sides_are_fresh_float_lists(tmp_path: Path) -> None:
    rng = random.Random(11)
    rows = [message(rng, "book", "A-USDT", 100 + i, i) for i in range(300)]  # 1, 2 or 5 bids, 0-3 asks
    write(tmp_path, "book", "A-USDT", "000001-1-000001.parquet", rows, rows[0])
    got = [m for _, m in replay.read_messages(tmp_path, SYMBOLS)]
    assert [(m.bids, m.asks) for m in got] == [(r["bids"], r["asks"]) for r in rows]
    check_contract(got)


def check_contract(msgs: list[Any]) -> None:
    books = [m for m in msgs if isinstance(m, Book)]
    trades = [m for m in msgs if isinstance(m, Trade)]
    assert books or trades
    lists = [side for b in books for side in (b.bids, b.asks)]
    levels = [lv for side in lists for lv in side]
    assert all(type(x) is list for x in lists + levels)
    assert len({id(x) for x in lists + levels}) == len(lists) + len(levels)  # none shared (all alive here)
    assert all(len(lv) == 2 and type(lv[0]) is float and type(lv[1]) is float for lv in levels)
    assert all(type(t.price) is float and type(t.size) is float for t in trades)
    assert all(type(t.side) is str and type(t.trade_id) is str for t in trades)
