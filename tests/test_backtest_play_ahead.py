"""The backtest's speed work changes nothing a run produces (seqtrade.replay_backtest, "How fast" in
docs/backtesting.md): the fill model playing a window ahead while the strategies still answer the one
before, the fill model's book copied only when an order meets it, and the window frames' rows built
without their maps."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import trio

from seqtrade import wire
from seqtrade.bench.replay import write_recording
from seqtrade.fill_model import Fill, FillModel, SimOrder
from seqtrade.models import Book, Trade

STRATEGIES = Path(__file__).parent / "strategies"


def test_the_rows_built_without_maps_are_the_maps_values() -> None:
    for msg in (
        Book("BTC-USDT", 5, [[100, 2], [99.5, 3.0]], [[101.0, 1]], 7, 11),
        Book("BTC-USDT", 5, [], [], 1, 2),
        Trade("ETH-USDT", 6, "t9", 2000, 1, "sell", 3, 4),
        Trade("ETH-USDT", 6, "t10", 2000.5, 0.25, "buy", 4, 5),
    ):
        general: dict[str, list[str]] = {}
        body = wire.CODECS[type(msg)].encode(msg)
        row = wire.window_row(msg, general)  # the first of its type: through the map, keys recorded
        assert row == [body["type"], *[v for k, v in body.items() if k != "type"]]
        fast = wire.window_row(msg, general)  # then without the map
        assert fast == row
        assert wire._pack(fast) == wire._pack(row)  # the same bytes on the wire (ints became floats alike)


def test_an_order_meets_the_last_book_and_a_taker_never_changes_the_recorded_levels() -> None:
    m = FillModel(queue="book")
    first = Book("X", 1, [[99.0, 1.0]], [[100.0, 1.0]])
    last = Book("X", 2, [[99.0, 1.0]], [[101.0, 1.0], [102.0, 2.0]])
    m.on_book("X", first.bids, first.asks, 1_000)
    m.on_book("X", last.bids, last.asks, 2_000)
    m.submit(SimOrder("a", "X", "buy", "market", None, 2.0), 2_000)
    m.submit(SimOrder("b", "X", "buy", "market", None, 2.0), 2_000)
    events = m.advance(10_000_000)
    fills = [(e.order_id, e.price, e.quantity) for e in events if isinstance(e, Fill)]
    # a takes 1 at 101 and 1 at 102 (the last book, not the first); b what a left: 1 at 102
    assert fills == [("a", 101.0, 1.0), ("a", 102.0, 1.0), ("b", 102.0, 1.0)]
    assert last.asks == [[101.0, 1.0], [102.0, 2.0]] and first.asks == [[100.0, 1.0]]  # untouched
    # the next recorded book replaces what the takers consumed
    m.on_book("X", last.bids, last.asks, 11_000_000)
    m.submit(SimOrder("c", "X", "buy", "market", None, 1.0), 11_000_000)
    assert [(e.price, e.quantity) for e in m.advance(30_000_000) if isinstance(e, Fill)] == [(101.0, 1.0)]


def test_a_resting_order_is_filled_by_a_crossing_book_of_recorded_integers_as_floats() -> None:
    m = FillModel(queue="book")
    m.on_book("X", [[99, 2]], [[100, 1]], 1_000)
    m.submit(SimOrder("a", "X", "buy", "limit", 99.0, 1.0), 1_000)
    m.advance(5_000_000)
    events = m.on_book("X", [[98, 1]], [[99, 3]], 6_000_000)  # the ask comes down to our price
    fill = next(e for e in events if isinstance(e, Fill))
    assert (fill.price, fill.quantity) == (99.0, 1.0) and type(fill.quantity) is float


def _backtest(data: Path, base: Path, name: str, *extra: str) -> tuple[dict[str, bytes], str]:
    out = base / name
    out.mkdir()
    strategies = "".join(f"""
[[strategies]]
id = "{sid}"
path = "{STRATEGIES / "bt_maker.py"}"
restart = "never"
params = {{ symbol = "BTC-USDT", out = "{out / sid}.jsonl", every = {every} }}
""" for sid, every in (("mk1", 0.1), ("mk2", 0.15)))  # fmt: skip
    cfg = base / f"{name}.toml"
    cfg.write_text(f'[server]\nrun_dir = "run"\nstatus_interval = 0\n\n[venue]\nkind = "paper"\n'
                   f'symbols = ["BTC-USDT"]\n{strategies}')  # fmt: skip
    run_dir = base / f"run-{name}"

    async def run() -> trio.CompletedProcess[bytes]:
        with trio.fail_after(180):
            return await trio.run_process(
                [sys.executable, "-m", "seqtrade.cli", "backtest", "--data", str(data), "--config", str(cfg),
                 "--run-dir", str(run_dir), "--out", str(out / "results"), "--no-plot", "--quiet",
                 "--log-level", "INFO", *extra],
                capture_stdout=True, capture_stderr=True, check=False,
            )  # fmt: skip

    proc = trio.run(run)
    log = proc.stderr.decode()
    assert proc.returncode == 0, log[-3000:]
    journal = run_dir / "journal.sqlite"
    return {
        "journal.sqlite-log": Path(f"{journal}-log").read_bytes(),
        "journal.sqlite": journal.read_bytes(),
        "results.json": (out / "results" / "results.json").read_bytes(),
        "tapes": (out / "mk1.jsonl").read_bytes() + (out / "mk2.jsonl").read_bytes(),
    }, log


def test_playing_windows_ahead_gives_the_same_journal_bytes_as_playing_them_after_the_answers(
    tmp_path: Path,
) -> None:
    # A dense recording (10 books and trades a ms: every window's messages come before anything sent
    # in the window before can arrive), two strategies quoting, cancelling and taking on their clock.
    data = write_recording(tmp_path / "rec", 20_000, 10)
    ahead, log_ahead = _backtest(data, tmp_path, "ahead")
    after, log_after = _backtest(data, tmp_path, "after", "--no-play-ahead")
    played = re.search(r"(\d+) windows \(\d+ in one frame\), (\d+) fills; (\d+) played ahead", log_ahead)
    assert played is not None, log_ahead[-2000:]
    windows, fills, n_ahead = map(int, played.groups())
    assert n_ahead >= windows - 3 and fills > 10  # nearly every window, and it traded
    assert re.search(rf"\(\d+ in one frame\), {fills} fills; 0 played ahead", log_after), log_after[-2000:]
    for name, value in ahead.items():
        assert after[name] == value, name
