"""The market recorder (seqtrade.recorder): a real server on the paper venue records what it publishes
into Parquet files that pyarrow and DuckDB read without seqtrade; a failing disk or a full queue drops
recording (counted, logged once), never market data to strategies."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pytest
import trio
import zmq

from seqtrade import wire
from seqtrade.config import Config, RecorderConfig, parse_config
from seqtrade.models import Book, OrderStatus, Ticker
from seqtrade.recorder import Recorder
from seqtrade.recorder_rows import GapTracker, OrderLatencies, day_of, safe_key
from seqtrade.server.app import serve
from seqtrade.server.gateway import Gateway
from seqtrade.venues.base import OrderEvent, VenueOrder
from seqtrade.venues.paper import PaperVenue

from .conftest import QUIET_MARKET
from .peer import Peer

S = "BTC-USDT"

# The tests' paper market (conftest), moving: a tick of every symbol every 20 ms.
LIVELY = (
    QUIET_MARKET.replace("tick_interval = 3600.0", "tick_interval = 0.02")
    + """
[recorder]
enabled = true
flush_interval = 0.2
"""
)
SYMBOLS = {"BTC-USDT", "BTC-USDT-SWAP", "ETH-USDT"}


def read(root: Path, table: str) -> list[dict[str, Any]]:
    """Every row of one table, with pyarrow alone (as a user would)."""
    files = sorted(str(p) for p in (root / table).rglob("*.parquet"))
    if not files:
        return []
    rows: list[dict[str, Any]] = ds.dataset(files, format="parquet").to_table().to_pylist()
    return rows


async def start(nursery: trio.Nursery, config: Config) -> tuple[Gateway, trio.Event]:
    """A real server; the event is set once ``serve`` has returned (files closed)."""
    done = trio.Event()
    venue = PaperVenue(config.venue.paper, list(config.venue.symbols))

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await serve(config, venue, task_status=task_status)
        done.set()

    gw: Gateway = await nursery.start(run)
    return gw, done


def md_peer(zctx: zmq.Context, config: Config, sid: str) -> Peer:
    from seqtrade.client import Endpoints

    p = Peer(zctx, Endpoints.from_config(config), sid)
    p.mdsub.sock.setsockopt(zmq.SUBSCRIBE, b"")
    return p


async def test_server_records_what_it_publishes_readable_without_seqtrade(
    nursery: trio.Nursery, base_dir: Path, zctx: zmq.Context
) -> None:
    config = parse_config(LIVELY, base_dir=str(base_dir))
    root = config.recorder_path
    with trio.fail_after(30):
        gw, done = await start(nursery, config)
        p = md_peer(zctx, config, "rec1")
        try:
            await p.join()
            coid = await p.order(S, "buy", "market", None, 0.01)
            filled = None
            while filled is None:
                r = await p.report()
                if r.client_order_id == coid and r.status in (OrderStatus.FILLED, OrderStatus.CANCELLED):
                    filled = r
            received: list[dict[str, Any]] = []  # the maps the strategy got, as published
            while sum(1 for d in received if d["type"] == "ticker" and d["symbol"] == S) < 40 or not any(
                d["type"] == "status" for d in received
            ):  # status: once a second
                for frame in await p.mdsub.recv_batch():
                    received.append(wire.decode_frame(frame)[2])
        finally:
            p.close()
        gw.request_stop()
        await done.wait()

    tickers = read(root, "ticker")
    books = read(root, "book")
    assert {t["symbol"] for t in tickers} == SYMBOLS
    # Every message the strategy received is recorded as it was published: the same map.
    recorded = {
        (r["type"], r.get("symbol") or r.get("venue"), r["seq"]): r
        for table in sorted(p.name for p in root.iterdir() if p.name not in ("orders", "gaps"))
        for r in read(root, table)
    }
    # Everything on the market-data socket, the server's once-a-second feed_status included.
    kinds = {k[0] for k in recorded}
    assert {"ticker", "book", "trade", "status"} <= kinds <= set(wire.MARKET_DATA_TYPES)
    for d in received:
        row = recorded[(d["type"], d.get("symbol") or d.get("venue"), d["seq"])]
        assert {k: v for k, v in row.items() if v is not None} == d
    assert any(d["type"] == "book" for d in received) and any(d["type"] == "status" for d in received)
    # The exchange's time and the local receive time of each message.
    assert all(r["ts"] > 1_600_000_000_000 and r["gw_ns"] > r["ts"] * 1_000_000 - 10**9 for r in tickers)
    assert isinstance(books[0]["bids"][0], list) and len(books[0]["bids"][0]) == 2
    # Nothing dropped: the seqs of every topic are 1..n, in files rolled by day and symbol.
    for sym in SYMBOLS:
        seqs = sorted(r["seq"] for r in tickers if r["symbol"] == sym)
        assert seqs == list(range(1, len(seqs) + 1))
        assert (root / "ticker" / day_of(tickers[0]["gw_ns"]) / sym).is_dir()
    # The order: its send and acknowledgement times (the measured latency).
    (order,) = read(root, "orders")
    assert order["symbol"] == S and order["side"] == "buy" and order["order_type"] == "market"
    assert order["ack_status"] == "accepted" and order["exchange_order_id"]
    assert (
        0 < order["send_ns"] < order["ack_ns"] and order["latency_ns"] == order["ack_ns"] - order["send_ns"]
    )
    assert read(root, "gaps") == []
    assert not list(root.rglob("*.partial"))  # every file closed at the stop
    # DuckDB reads the same files (glob and all), without seqtrade.
    got = duckdb.sql(
        f"select symbol, count(*), min(seq), max(seq) from read_parquet('{root}/ticker/*/*/*.parquet')"
        " group by symbol order by symbol"
    ).fetchall()
    assert got == sorted(
        (sym, n, 1, n) for sym in SYMBOLS for n in [sum(1 for r in tickers if r["symbol"] == sym)]
    )


async def test_a_failing_disk_drops_recording_never_ticks(
    nursery: trio.Nursery, base_dir: Path, zctx: zmq.Context, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_dir = base_dir / "full"
    not_a_dir.write_text("a file where the recordings should go\n")
    config = parse_config(LIVELY + f'dir = "{not_a_dir}"\n', base_dir=str(base_dir))
    caplog.set_level(logging.INFO, logger="seqtrade.recorder")
    with trio.fail_after(30):
        gw, done = await start(nursery, config)
        rec = gw.recorder
        assert rec is not None
        p = md_peer(zctx, config, "rec2")
        p.mdsub.sock.setsockopt(zmq.UNSUBSCRIBE, b"")
        p.mdsub.sock.setsockopt(zmq.SUBSCRIBE, wire.topic("ticker", S))
        seqs: list[int] = []
        try:
            while rec.write_errors < 3 or len(seqs) < 40:
                seqs += [wire.decode_message(f).seq for f in await p.mdsub.recv_batch()]
        finally:
            p.close()
        gw.request_stop()
        await done.wait()
    # The strategy saw every tick (no seq jump); the recorder dropped and counted what it could not write.
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert gw.counters.md_dropped == 0
    assert rec.dropped > 0 and rec.written == 0
    warnings = [r for r in caplog.records if "recorder: dropping" in r.getMessage()]
    assert len(warnings) == 1  # once per episode, not once per failed write
    assert not_a_dir.read_text() == "a file where the recordings should go\n"


def ticker(seq: int, symbol: str = S, price: float = 100.0) -> bytes:
    t = Ticker(
        symbol,
        1_790_000_000_000 + seq,
        price,
        price - 0.1,
        price + 0.1,
        1.0,
        2.0,
        10.0,
        seq,
        1_790_000_000_000_000_000 + seq,
    )
    return wire.encode_message(t)


async def test_the_queue_is_bounded_drops_are_counted_and_recorded_as_a_gap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="seqtrade.recorder")
    rec = Recorder(RecorderConfig(enabled=True, queue=10), tmp_path, "paper")
    for seq in range(1, 26):  # one feed batch of 25 messages
        rec.md.append(ticker(seq))
    rec.trim()
    assert len(rec.md) == 10 and rec.dropped == 15
    for seq in range(26, 31):  # the next batch: still full
        rec.md.append(ticker(seq))
    rec.trim()
    assert rec.dropped == 20
    await rec.flush()  # writes the 10 kept; the drop episode goes on (this flush saw drops)
    for seq in range(31, 34):
        rec.md.append(ticker(seq))
    await rec.flush()  # no drop since the last flush: the gap ends, and is recorded
    await rec.close()
    assert [r["seq"] for r in read(tmp_path, "ticker")] == [*range(1, 11), 31, 32, 33]
    (gap,) = read(tmp_path, "gaps")
    assert (gap["kind"], gap["dropped"], gap["venue"]) == ("recorder_dropped", 20, "paper")
    assert gap["start_ns"] <= gap["end_ns"]
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("recorder: dropping" in m for m in msgs) == 1
    assert any("recording again after 20 messages dropped" in m for m in msgs)


async def test_files_roll_and_a_changed_shape_starts_a_new_file(tmp_path: Path) -> None:
    rec = Recorder(RecorderConfig(enabled=True, roll_seconds=1e-9), tmp_path, "paper")
    rec.md.extend([ticker(1), ticker(2)])
    await rec.flush()
    rec.md.append(ticker(3))
    await rec.flush()
    # A book without levels on one side and one with: two shapes of one type, both kept.
    rec.md.append(wire.encode_message(Book(S, 1, [], [], 1, 5)))
    rec.md.append(wire.encode_message(Book(S, 2, [[99.0, 1.0]], [[101.0, 2.0]], 2, 6)))
    await rec.close()
    files = sorted((tmp_path / "ticker").rglob("*.parquet"))
    assert len(files) == 2  # rolled after each flush
    assert [r["seq"] for r in read(tmp_path, "ticker")] == [1, 2, 3]
    books = sorted(read(tmp_path, "book"), key=lambda r: r["seq"])
    assert [b["bids"] for b in books] == [[], [[99.0, 1.0]]]


async def test_order_latency_rows_pair_send_and_first_answer(tmp_path: Path) -> None:
    rec = Recorder(RecorderConfig(enabled=True), tmp_path, "paper")
    rec.order_sent(VenueOrder("v1", S, "buy", "limit", 100.0, 0.5))  # type: ignore[arg-type]
    rec.order_sent(VenueOrder("v2", S, "sell", "market", None, 0.5))  # type: ignore[arg-type]
    rec.order_event(OrderEvent("v1", OrderStatus.ACCEPTED, exchange_order_id="x1"))
    rec.order_event(OrderEvent("v1", OrderStatus.FILLED, exchange_order_id="x1"))  # not an ack
    rec.order_event(OrderEvent("v9", OrderStatus.ACCEPTED))  # not sent by this server run
    await rec.close()  # v2 was never answered: recorded with ack_ns 0
    rows = sorted(read(tmp_path, "orders"), key=lambda r: r["venue_order_id"])
    assert [(r["venue_order_id"], r["ack_status"], r["price"]) for r in rows] == [
        ("v1", "accepted", 100.0),
        ("v2", "", None),
    ]
    assert rows[0]["latency_ns"] == rows[0]["ack_ns"] - rows[0]["send_ns"] >= 0 and rows[1]["ack_ns"] == 0


def test_gap_tracker_turns_status_changes_and_drops_into_gaps() -> None:
    g = GapTracker("okx")
    assert g.status({"venue": "okx", "connected": True, "gw_ns": 1}) == []
    assert g.status({"venue": "okx", "connected": False, "gw_ns": 10}) == []
    assert g.status({"venue": "okx", "connected": False, "gw_ns": 20}) == []  # still down: one gap
    assert g.status({"venue": "okx", "connected": True, "gw_ns": 30}) == [
        {"venue": "okx", "kind": "venue_disconnected", "start_ns": 10, "end_ns": 30, "dropped": 0}
    ]
    assert g.dropped("server_dropped", 5, 100) == [] and g.dropped("server_dropped", 2, 200) == []
    assert g.dropped("server_dropped", 0, 300) == [
        {"venue": "okx", "kind": "server_dropped", "start_ns": 100, "end_ns": 300, "dropped": 7}
    ]
    g.status({"venue": "okx", "connected": False, "gw_ns": 400})
    assert g.close(500) == [
        {"venue": "okx", "kind": "venue_disconnected", "start_ns": 400, "end_ns": 500, "dropped": 0}
    ]


def test_keys_and_days() -> None:
    assert safe_key("BTC-USDT-SWAP") == "BTC-USDT-SWAP"
    assert safe_key("..") == "_.." and safe_key("a b/c") == "a_b_c"
    assert day_of(1_790_000_000_000_000_000) == "2026-09-21"
    lat = OrderLatencies(max_pending=2)
    assert lat.event(5, "nope", "accepted", "") is None
    assert lat.sent(1, "a", S, "buy", "limit", 1.0, 1.0) is None
    assert lat.sent(2, "b", S, "buy", "limit", 1.0, 1.0) is None
    old = lat.sent(3, "c", S, "buy", "limit", 1.0, 1.0)  # a third waiting: the oldest is given up
    assert old is not None and (old["venue_order_id"], old["ack_ns"]) == ("a", 0)
    assert lat.event(4, "a", "accepted", "") is None and lat.event(4, "b", "accepted", "x") is not None
    assert [r["venue_order_id"] for r in lat.close()] == ["c"]


async def test_a_type_the_recorder_never_heard_of_is_recorded_as_its_map(tmp_path: Path) -> None:
    """Nothing is coded per type: a frame of any type is recorded under its type and key."""
    rec = Recorder(RecorderConfig(enabled=True), tmp_path, "paper")
    body = {
        "type": "candle",
        "symbol": S,
        "ts": 1,
        "bar": "1m",
        "open": 1.0,
        "close": 2.0,
        "seq": 1,
        "gw_ns": 7,
    }
    rec.md.append(wire.encode(wire.topic("candle", S), body))
    rec.md.append(b"not a frame")  # the server publishes only frames: skipped, not a failure
    await rec.close()
    assert read(tmp_path, "candle") == [body]
    assert (tmp_path / "candle" / day_of(7) / S).is_dir()
