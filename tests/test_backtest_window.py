"""A backtest's window in one frame (seqtrade.vclock.Window, docs/protocol.md "Backtest clock"): the
rows' codec, the columnar reader of the recording, the client's dispatch of a window, and a backtest of
real strategy processes that receive every recorded message of their topics, in order, through them."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
import zmq

from seqtrade import wire
from seqtrade.candles import Candle
from seqtrade.client import Strategy
from seqtrade.client.protocol import ClientProtocol
from seqtrade.client.runner import Connection, Endpoints, _Shell
from seqtrade.config import RecorderConfig
from seqtrade.errors import WireError
from seqtrade.models import Book, MarkPrice, Ticker, Trade, VenueStatus
from seqtrade.recorder import Recorder
from seqtrade.replay import read_messages, read_rows, to_message
from seqtrade.vclock import Window

from .test_replay import STRATEGIES, record, recorded, shape

T0 = 1_790_000_000_000_000_000
BOOK = Book("BTC-USDT", 1, [[100.0, 1.0], [99.5, 2.0]], [[100.5, 0.5]], 3, T0)
TRADE = Trade("BTC-USDT", 1, "t-1", 100.5, 0.25, "buy", 4, T0 + 1)
TICKER = Ticker("ETH-USDT", 1, 3000.0, 2999.5, 3000.5, 1.0, 2.0, 10.0, 5, T0 + 2)


def window_frame(body: dict[str, Any]) -> bytes:
    return b"window/backtest/" + msgpack.packb({"type": "window", "venue": "backtest", "t": 5, "step": 1,
                                                "reports": {}, **body})  # fmt: skip


@pytest.mark.parametrize("msg", [BOOK, TRADE, TICKER])
def test_rows_of_the_positional_types_make_the_model_their_codec_makes(msg: Any) -> None:
    keys: dict[str, list[str]] = {}
    row = wire.window_row(msg, keys)
    codec = wire.CODECS[type(msg)]
    body = codec.encode(msg)
    assert row == [
        body["type"],
        *[body[k] for k in keys[body["type"]]],
    ]  # the map's values, in its keys' order
    assert codec.type in wire._POSITIONAL
    assert codec.decode(body) == type(msg)(*row[1:])  # what the client builds positionally


def test_a_window_reads_rows_by_name_and_skips_types_it_does_not_know() -> None:
    mark = MarkPrice("BTC-USDT-SWAP", 1, 60010.5, 60002.25, 2, 3)
    candle = Candle("BTC-USDT", "1m", 60_000, 1.0, 2.0, 0.5, 1.5, 10.0, True, 1, 2)
    keys: dict[str, list[str]] = {}
    rows = [wire.window_row(m, keys) for m in (BOOK, mark, candle)]
    # A newer server: a key added before the others in trades, and a type this client never heard of.
    keys["trade"] = ["extra", "symbol", "ts", "trade_id", "price", "size", "side", "seq", "gw_ns"]
    rows.insert(1, ["trade", "new", "BTC-USDT", 1, "t-1", 100.5, 0.25, "buy", 4, T0 + 1])
    keys["weather"] = ["symbol", "rain"]
    rows.append(["weather", "BTC-USDT", 0.5])
    w = wire.decode_message(window_frame({"keys": keys, "md": rows, "seq": 9, "gw_ns": 10}))
    assert isinstance(w, Window) and (w.t_ns, w.step, w.seq) == (5, 1, 9)
    assert w.md == [BOOK, TRADE, mark, candle]


@pytest.mark.parametrize(
    "body",
    [
        {"keys": {}, "md": [["book", "BTC-USDT"]]},  # no keys for the type
        {"keys": {"book": ["symbol"]}, "md": [[]]},  # an empty row
        {"keys": {"book": "symbol"}, "md": [["book", "BTC-USDT"]]},
        {"keys": [], "md": []},
        {"keys": {"book": ["symbol", "ts", "bids", "asks", "seq", "gw_ns"]}, "md": [["book", "BTC-USDT", 1]]},
        {"keys": {}, "md": [{"type": "book"}]},
    ],
)
def test_a_malformed_window_is_a_wire_error(body: dict[str, Any]) -> None:
    with pytest.raises(WireError, match="window message is malformed"):
        wire.decode_message(window_frame(body))


async def test_the_columnar_reader_gives_what_the_row_reader_gives(tmp_path: Path) -> None:
    rec = Recorder(RecorderConfig(enabled=True, queue=1000), tmp_path, "paper")
    frames = []
    for i in range(300):
        ns = T0 + i * 1000
        if i % 50 == 7:  # the venue's connection: repeats, a drop and a return
            frames.append(
                wire.encode_message(VenueStatus("paper", i % 100 != 7, ["BTC-USDT"], ns // 10**6, i, ns))
            )
        sym = ("BTC-USDT", "ETH-USDT", "SOL-USDT")[i % 3]
        levels = [[100.0 + i, 1.0]] if i % 10 else []  # empty books too
        frames.append(
            wire.encode_message(Book(sym, ns // 10**6, levels, [[101.0 + i, 2.0], [102.0, 3.0]], i, ns))
        )
        frames.append(wire.encode_message(Trade(sym, ns // 10**6, f"t{i}", 100.0 + i, 0.5, "sell", i, ns)))
        frames.append(wire.encode_message(Ticker(sym, ns // 10**6, 1.0, 1.0, 2.0, 1, 2, 3, i, ns)))  # ints
    frames.append(
        b"weather/BTC-USDT/" + msgpack.packb({"type": "weather", "symbol": "BTC-USDT", "gw_ns": T0})
    )
    rec.md.extend(frames)
    await rec.close()

    def old(rows: Any) -> Any:  # what the replay made of the rows before the columnar reader
        connected = True
        for row in rows:
            ns = int(row.get("gw_ns") or 0)
            if row.get("type") == "status":
                now = bool(row.get("connected", True))
                if now != connected:
                    connected = now
                    yield ns, now
                continue
            msg = to_message(row)
            if msg is not None:
                yield ns, msg

    symbols = ["BTC-USDT", "ETH-USDT"]
    want = list(old(read_rows(tmp_path, symbols)))
    got = list(read_messages(tmp_path, symbols))
    changes = [m for _, m in want if m is True or m is False]
    assert changes == [False, True] * 3 and len(want) == 600 + 6
    assert got == want
    assert [type(m) for _, m in got] == [type(m) for _, m in want]


def strategy_class(calls: list[Any]) -> type[Strategy]:
    class Seen(Strategy):
        def on_ticker(self, t: Ticker) -> None:
            calls.append(t)

        def on_book(self, b: Book) -> None:
            calls.append(b)

        def on_trade(self, t: Trade) -> None:
            calls.append(t)
            if t.trade_id == "boom":
                raise ValueError("a strategy's bug")

    return Seen


def test_a_window_reaches_the_strategy_as_its_own_frames_would(tmp_path: Path, zctx: zmq.Context) -> None:
    d = tmp_path
    endpoints = Endpoints(f"ipc://{d}/md.ipc", f"ipc://{d}/order.ipc", f"ipc://{d}/report.ipc")
    pull = zctx.socket(zmq.PULL)
    pull.bind(endpoints.order)
    calls: list[Any] = []
    strategy = strategy_class(calls)(symbol="BTC-USDT")
    conn = Connection(endpoints, "s1", context=zctx)
    try:
        for kind in ("ticker", "book", "trade"):
            conn.subscribe(kind, "BTC-USDT")
        proto = ClientProtocol("s1")
        strategy._conn, strategy._protocol = conn, proto
        shell = _Shell(strategy, conn, proto)
        eth = Book("ETH-USDT", 1, [], [], 1, T0)  # not subscribed: never handed over
        later = Book("BTC-USDT", 2, [[99.0, 1.0]], [], 6, T0 + 5)  # seq 4 and 5 of book/BTC-USDT lost
        boom = Trade("BTC-USDT", 2, "boom", 1.0, 1.0, "buy", 5, T0 + 6)
        ticker = Ticker("BTC-USDT", 2, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1, T0 + 7)
        part = Window("backtest", T0 + 10, 0, {}, 1, 0, [BOOK, eth, TRADE])  # step 0: no sync yet
        shell.window(wire.decode_message(wire.encode_message(part)))
        assert calls == [BOOK, TRADE] and not pull.poll(100)
        end = Window("backtest", T0 + 1_000_000, 1, {"s1": 0}, 2, 0, [later, boom, ticker])
        shell.window(wire.decode_message(wire.encode_message(end)))
        assert calls == [BOOK, TRADE, later, boom, ticker]  # the callback that raised did not stop the rest
        assert shell.errors == 1 and proto.md_gaps == 2
        assert strategy.now() == (T0 + 1_000_000) / 1e9  # the clock moved to the window's end
        assert pull.poll(2000)
        ack = wire.parse_request(pull.recv())
        assert (ack.t_ns, ack.step, ack.batch) == (T0 + 1_000_000, 1, True)  # it reads window frames
    finally:
        conn.close()
        pull.close(linger=0)


async def test_backtest_strategies_get_every_recorded_message_of_their_topics_in_window_frames(
    nursery: trio.Nursery, base_dir: Path
) -> None:
    data = await record(nursery, base_dir, 1500)
    out1, out2 = base_dir / "tape1.jsonl", base_dir / "tape2.jsonl"
    cfg = base_dir / "bt.toml"
    tapes = (("tape1", f'{{ symbol = "BTC-USDT", out = "{out1}" }}'),
             ("tape2", f'{{ symbols = ["ETH-USDT", "BTC-USDT"], out = "{out2}" }}'))  # fmt: skip
    entries = [f'[[strategies]]\nid = "{sid}"\npath = "{STRATEGIES / "tape.py"}"\nrestart = "never"\nparams = {params}'
               for sid, params in tapes]  # fmt: skip
    venue = '[venue]\nkind = "paper"\nsymbols = ["BTC-USDT", "ETH-USDT"]'
    cfg.write_text("\n\n".join(['[server]\nrun_dir = "run"\nstatus_interval = 0', venue, *entries]) + "\n")
    with trio.fail_after(180):
        proc = await trio.run_process(
            [sys.executable, "-m", "seqtrade.cli", "backtest", "--data", str(data), "--config", str(cfg),
             "--out", str(base_dir / "results"), "--no-plot", "--quiet", "--log-level", "INFO",
             "--lookahead-ms", "0.2", "--latency-ms", "0.2"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    log = proc.stderr.decode()
    assert proc.returncode == 0, log
    fin = re.search(r"backtest finished: \d+ messages in (\d+) windows \((\d+) in one frame\)", log)
    assert fin is not None, log
    windows, framed = int(fin.group(1)), int(fin.group(2))
    assert framed >= windows - 3 and windows > 50  # all but the first few windows went out as one frame
    for out, symbols in ((out1, {"BTC-USDT"}), (out2, {"BTC-USDT", "ETH-USDT"})):
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        got = [(d["type"], d["symbol"], d["ts"], d["value"]) for d in lines]
        want = [shape(r) for r in recorded(data, symbols)]
        assert len(want) > 100
        assert got == want  # every recorded message of its topics, in the recorded order
        for typ in ("ticker", "book", "trade"):  # numbered per topic across frames and windows: no gap
            for sym in symbols:
                seqs = [d["seq"] for d in lines if d["type"] == typ and d["symbol"] == sym]
                assert seqs == list(range(1, len(seqs) + 1))


async def test_a_window_of_more_than_a_frame_and_cut_by_a_disconnection_arrives_whole_and_in_order(
    base_dir: Path,
) -> None:
    """A window of 5,000 messages (more than one frame carries) with the venue's connection lost and back
    in its middle, between small windows: the strategy gets every message, in order, numbered without
    a gap; the status changes go out between the window's parts."""
    data = base_dir / "rec"
    rec = Recorder(RecorderConfig(enabled=True, queue=10_000), data, "paper")
    frames, want = [], []
    n = 0

    def add(ns: int, msg: Any) -> None:
        nonlocal n
        n += 1
        msg.seq, msg.gw_ns = n, ns
        frames.append(wire.encode_message(msg))
        want.append(("book" if isinstance(msg, Book) else "trade", msg.ts, n))

    for i in range(8):  # small windows first: the first ones go frame by frame
        add(T0 + i * 2_000_000, Book("BTC-USDT", i, [[100.0, 1.0]], [[101.0, 1.0]]))
    big = T0 + 20_000_000
    for i in range(5000):
        if i == 2500:
            for up in (False, True):
                frames.append(
                    wire.encode_message(VenueStatus("paper", up, ["BTC-USDT"], 0, 0, big + 2 * i - 1))
                )
        msg: Any = (
            Trade("BTC-USDT", 100 + i, f"t{i}", 100.0, 0.1, "buy")
            if i % 2
            else Book("BTC-USDT", 100 + i, [[99.0, 1.0]], [[101.0, 1.0]])
        )
        add(big + 2 * i, msg)
    for i in range(3):
        add(big + 5_000_000 + i * 2_000_000, Book("BTC-USDT", 9000 + i, [[100.0, 1.0]], [[101.0, 1.0]]))
    rec.md.extend(frames)
    await rec.close()
    out = base_dir / "tape.jsonl"
    cfg = base_dir / "bt.toml"
    entry = f'[[strategies]]\nid = "tape"\npath = "{STRATEGIES / "status_tape.py"}"\nrestart = "never"\nparams = {{ symbol = "BTC-USDT", out = "{out}" }}'
    cfg.write_text(
        f'[server]\nrun_dir = "run"\nstatus_interval = 0\n\n[venue]\nkind = "paper"\nsymbols = ["BTC-USDT"]\n\n{entry}\n'
    )
    with trio.fail_after(120):
        proc = await trio.run_process(
            [sys.executable, "-m", "seqtrade.cli", "backtest", "--data", str(data), "--config", str(cfg),
             "--out", str(base_dir / "results"), "--no-plot", "--quiet", "--log-level", "INFO"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    log = proc.stderr.decode()
    assert proc.returncode == 0, log
    assert "venue backtest disconnected" in log
    fin = re.search(r"backtest finished: (\d+) messages in (\d+) windows \((\d+) in one frame\)", log)
    assert fin is not None, log
    assert int(fin.group(1)) == 5011 + 2 and int(fin.group(3)) >= 9  # the big window went out as one
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    got = [(d["type"], d.get("ts", d.get("connected"))) for d in lines]
    statuses = [("status", False), ("status", True)]  # between the window's parts, where they were recorded
    assert got == [(typ, ts) for typ, ts, _ in want[: 8 + 2500]] + statuses + [
        (t, ts) for t, ts, _ in want[8 + 2500 :]
    ]
    for typ in ("book", "trade"):
        seqs = [d["seq"] for d in lines if d["type"] == typ]
        assert seqs == list(range(1, len(seqs) + 1))
