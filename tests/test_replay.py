"""``seqtrade replay`` (seqtrade.replay): a recording made by the real server, served again on the bus to
real strategy processes, which receive the recorded messages in the recorded order; orders are refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import trio
import zmq

from seqtrade.config import parse_config
from seqtrade.models import Ticker, VenueStatus
from seqtrade.replay import ReplayVenue, read_rows, to_message, with_run_dir

from .test_recorder import LIVELY, start

STRATEGIES = Path(__file__).parent / "strategies"


async def record(nursery: trio.Nursery, base_dir: Path, messages: int) -> Path:
    """A recording of the paper market by the real server: at least ``messages`` published."""
    config = parse_config(LIVELY, base_dir=str(base_dir))
    with trio.fail_after(30):
        gw, done = await start(nursery, config)
        while gw.counters.md_out < messages:
            await trio.sleep(0.01)
        gw.request_stop()
        await done.wait()
    return config.recorder_path


def recorded(data: Path, symbols: set[str]) -> list[dict[str, Any]]:
    """The recording's market data of ``symbols``, read with pyarrow alone, in receive order."""
    rows = []
    for f in data.rglob("*.parquet"):
        if f.parts[-4] in ("ticker", "book", "trade") and f.parts[-2] in symbols:
            rows += pq.read_table(f).to_pylist()
    rows.sort(key=lambda r: r["gw_ns"])
    return rows


def shape(row: dict[str, Any]) -> tuple[Any, ...]:
    """What the tape strategy writes of a message, from a recorded row."""
    value = {"ticker": row.get("last_price"), "trade": row.get("price")}.get(row["type"])
    if row["type"] == "book":
        value = row["bids"][0][0] if row["bids"] else None
    return (row["type"], row["symbol"], row["ts"], value)


async def test_a_recording_replays_to_strategy_processes_in_order(
    nursery: trio.Nursery, base_dir: Path
) -> None:
    data = await record(nursery, base_dir, 1000)  # the paper venue publishes full-depth books too
    out1, out2 = base_dir / "tape1.jsonl", base_dir / "tape2.jsonl"
    cfg = base_dir / "replay.toml"
    cfg.write_text(f"""
[server]
run_dir = "run"
status_interval = 0

[venue]
kind = "paper"
symbols = ["BTC-USDT", "ETH-USDT"]  # the recording also has BTC-USDT-SWAP: not replayed

[[strategies]]
id = "tape1"
path = "{STRATEGIES / "tape.py"}"
restart = "never"
params = {{ symbol = "BTC-USDT", out = "{out1}", order = true }}

[[strategies]]
id = "tape2"
path = "{STRATEGIES / "tape.py"}"
restart = "never"
params = {{ symbols = ["ETH-USDT", "BTC-USDT"], out = "{out2}" }}
""")
    with trio.fail_after(120):
        proc = await trio.run_process(
            [sys.executable, "-m", "seqtrade.cli", "replay", "--data", str(data), "--config", str(cfg),
             "--speed", "0", "--log-level", "INFO"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    log = proc.stderr.decode()
    assert proc.returncode == 0, log
    assert "replay finished" in log
    assert (base_dir / "run-replay" / "journal.sqlite").exists()  # its own run dir, never the live one
    assert not list(base_dir.glob(".*.toml"))  # the strategies' copy of the config is gone
    for out, symbols in ((out1, {"BTC-USDT"}), (out2, {"BTC-USDT", "ETH-USDT"})):
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        got = [(d["type"], d["symbol"], d["ts"], d["value"]) for d in lines if d["type"] != "order"]
        want = [shape(r) for r in recorded(data, symbols)]
        assert len(want) > 100
        assert got == want  # every recorded message, in the recorded order
        for typ in ("ticker", "book", "trade"):  # the replay server's own seq: no gap
            for sym in symbols:
                seqs = [d["seq"] for d in lines if d["type"] == typ and d["symbol"] == sym]
                assert seqs == list(range(1, len(seqs) + 1))
    # The order tape1 placed was refused: a replay trades nothing.
    orders = [d for d in map(json.loads, out1.read_text().splitlines()) if d["type"] == "order"]
    assert [(d["status"], d["error"]) for d in orders] == [
        ("rejected", "replay: market data only (orders are not traded)")
    ]


async def test_paced_replay_keeps_the_recorded_spacing(
    nursery: trio.Nursery, base_dir: Path, zctx: zmq.Context, autojump_clock: trio.testing.MockClock
) -> None:
    """At ``speed`` 2 the replay venue publishes each message at half its recorded offset, on the clock
    it runs on (here Trio's virtual one)."""
    data = await record_offline(base_dir)
    rows = list(read_rows(data, ["BTC-USDT"]))
    venue = ReplayVenue(data, ["BTC-USDT"], speed=2.0, stop_at_end=False)
    sink = _Sink()
    t0 = trio.current_time()
    nursery.start_soon(venue.run, sink)
    await venue.finished.wait()
    ticks = [r for r in rows if r["type"] == "ticker"]
    first = ticks[0]["gw_ns"]
    assert [m.last_price for _, m in sink.got] == [r["last_price"] for r in ticks]
    for (t, _), r in zip(sink.got, ticks, strict=True):
        assert abs((t - t0) - (r["gw_ns"] - first) / 2e9) < 1e-6
    # The recorded loss of the venue, replayed at its recorded time (half of it at speed 2).
    assert [c for _, c in sink.connected] == [True, False, True]
    assert [round(t - t0, 6) for t, _ in sink.connected[1:]] == [0.375, 0.625]
    assert to_message({"type": "candle_from_the_future", "symbol": "X"}) is None
    assert to_message({"type": "status", "venue": "paper", "connected": True, "ts": 1}) is None


class _Sink:
    """A venue sink that keeps what it is handed, with the (virtual) time."""

    def __init__(self) -> None:
        self.got: list[tuple[float, Any]] = []
        self.connected: list[tuple[float, bool]] = []

    def publish_market(self, msg: Any) -> None:
        self.got.append((trio.current_time(), msg))

    async def order_event(self, event: Any) -> None:  # pragma: no cover - nothing ordered here
        pass

    def set_connected(self, connected: bool) -> None:
        self.connected.append((trio.current_time(), connected))


async def record_offline(base_dir: Path) -> Path:
    """A small recording written by the recorder itself: BTC-USDT tickers 0.25 s apart."""
    from seqtrade import wire
    from seqtrade.config import RecorderConfig
    from seqtrade.recorder import Recorder

    rec = Recorder(RecorderConfig(enabled=True), base_dir / "rec", "paper")
    t0 = 1_790_000_000_000_000_000
    for i in range(8):
        ns = t0 + i * 250_000_000
        rec.md.append(
            wire.encode_message(Ticker("BTC-USDT", ns // 10**6, 100.0 + i, 99.0, 101.0, 1, 1, 1, i + 1, ns))
        )
        # the venue was lost from the 4th to the 6th tick (a status per tick, as a server says it)
        connected = not 3 <= i < 5
        rec.md.append(wire.encode_message(VenueStatus("paper", connected, ["BTC-USDT"], 0, i + 1, ns + 1)))
    await rec.close()
    return base_dir / "rec"


def test_the_strategies_config_names_the_replay_run_dir() -> None:
    import tomllib

    for text in ('[server]\nrun_dir = "run"  # here\nstatus_interval = 0\n[venue]\nkind = "paper"\n',
                 '[server] # the server\nstatus_interval = 0\n', '[venue]\nkind = "paper"\n'):  # fmt: skip
        out = tomllib.loads(with_run_dir(text, "run-replay"))
        assert out["server"]["run_dir"] == "run-replay"
        assert {k: v for k, v in out.items() if k != "server"} == {
            k: v for k, v in tomllib.loads(text).items() if k != "server"
        }


async def test_rows_stream_in_recorded_order_across_files_types_and_symbols(tmp_path: Path) -> None:
    from seqtrade import wire
    from seqtrade.config import RecorderConfig
    from seqtrade.models import Trade
    from seqtrade.recorder import Recorder

    rec = Recorder(RecorderConfig(enabled=True, roll_seconds=1e-9), tmp_path, "paper")  # a file per flush
    t0 = 1_790_000_000_000_000_000
    for i in range(12):
        ns = t0 + i * 1000
        sym = ("BTC-USDT", "ETH-USDT", "SOL-USDT")[i % 3]
        msg = (
            Ticker(sym, i, 1.0 + i, 1, 1, 1, 1, 1, i, ns)
            if i % 2
            else Trade(sym, i, str(i), 1.0 + i, 1, "buy", i, ns)
        )
        rec.md.append(wire.encode_message(msg))
        if i % 4 == 3:
            await rec.flush()
    await rec.close()
    assert len(list(tmp_path.rglob("*.parquet"))) > 6
    rows = list(read_rows(tmp_path, ["BTC-USDT", "ETH-USDT"]))  # SOL-USDT is not replayed
    assert [r["ts"] for r in rows] == [i for i in range(12) if i % 3 != 2]
