"""``seqtrade backtest`` reads its choices from the config's ``[backtest]`` section, and a flag given on
the command line wins over the file while a flag left out does not (docs/backtesting.md, "The
[backtest] section"): a recording made by the real server (paper venue) traded by a real strategy
process, once with the section alone and once with flags over it, each choice seen where it acts: the
latency between each journaled order and its first report, the fees in the journaled fills, the plot and the results' directory on disk, and every choice in results.json and the command's
first line."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

import trio

from seqtrade import wire

from .test_backtest import journaled_reports
from .test_backtest_config import config_file
from .test_replay import STRATEGIES, record

SECTION = """
[backtest]
fill_model = "touch"
latency_ms = 50.0
lookahead_ms = 1.0
maker_fee = 0.0
taker_fee = 0.002
sharpe_period = 30.0
plot = false
out = "res-file"
"""


def config(base_dir: Path) -> Path:
    out = base_dir / "mk1.jsonl"
    return config_file(
        base_dir,
        f"""{SECTION}
[[strategies]]
id = "mk1"
path = "{STRATEGIES / "bt_maker.py"}"
restart = "never"
params = {{ symbol = "BTC-USDT", out = "{out}", every = 0.2 }}
""",
        "bt.toml",
    )


async def backtest(data: Path, cfg: Path, *flags: str) -> str:
    """The command's stdout after a run that succeeded. Run from the root directory: a relative path
    in the file must be the file's, not the shell's."""
    with trio.fail_after(180):
        proc = await trio.run_process(
            [sys.executable, "-m", "seqtrade.cli", "backtest", "--data", str(data), "--config", str(cfg),
             "--quiet", *flags],
            capture_stdout=True, capture_stderr=True, check=False, cwd="/",
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    return proc.stdout.decode()


def order_latencies(journal: Path) -> list[int]:
    """For each order, ms from when it was sent (the journal's ``created_ms``: the recording's time the
    server took it at) to the time of its first report (the fill model's: when it reached the venue)."""
    db = sqlite3.connect(journal)
    try:
        created = dict(db.execute("SELECT venue_order_id, created_ms FROM orders").fetchall())
        first: dict[str, int] = {}
        for vid, body in db.execute("SELECT venue_order_id, body FROM reports ORDER BY strategy_id, seq"):
            first.setdefault(vid, wire._unpack(body)["timestamp"])
    finally:
        db.close()
    return [first[vid] - created[vid] for vid in sorted(first)]


def fee_rates(journal: Path) -> set[float]:
    """Each journaled fill's fee as a fraction of its notional (the report's fee is cumulative)."""
    rates, fees = set(), {}
    for _sid, _seq, body in journaled_reports(journal):
        r = json.loads(body)
        if r.get("last_fill_quantity"):
            fee = r["fee"] - fees.get(r["client_order_id"], 0.0)
            rates.add(round(fee / (r["last_fill_price"] * r["last_fill_quantity"]), 9))
        fees[r["client_order_id"]] = r["fee"]
    return rates


async def test_the_section_alone_sets_the_choices_and_a_flag_given_wins_over_it(
    nursery: trio.Nursery, base_dir: Path
) -> None:
    data = await record(nursery, base_dir, 1500)
    cfg = config(base_dir)
    journal = base_dir / "run-backtest" / "journal.sqlite"

    # The section alone: no flag.
    stdout = await backtest(data, cfg)
    assert stdout.splitlines()[0] == ("backtest: fill model touch, latency constant 50 ms, lookahead 1 ms, fees"
                                      " maker 0 taker 0.002, sharpe period 30 s ([backtest])")  # fmt: skip
    out = base_dir / "res-file"  # relative to the config file, not to the command's directory
    doc = json.loads((out / "results.json").read_text())
    assert doc["settings"] == {"fill_model": "touch", "latency": "constant", "latency_ms": 50.0,
                               "latency_sigma": 0.5, "latency_seed": 0, "lookahead_ms": 1.0,
                               "maker_fee": 0.0, "taker_fee": 0.002, "sharpe_period": 30.0}  # fmt: skip
    assert doc["sharpe_period_s"] == 30.0 and doc["strategies"]["mk1"]["fills"] > 0
    assert not (out / "equity.png").exists()  # plot = false
    latencies = order_latencies(journal)
    assert len(latencies) >= 5 and set(latencies) == {50}  # every order took the file's 50 ms
    rates = fee_rates(journal)
    assert 0.002 in rates and rates <= {0.0, 0.002}  # taker 0.002, maker 0 (not the defaults)

    # Flags over it: each one given wins, even at its default value (--maker-fee 0.0008); the keys no
    # flag names keep the file's values (taker_fee 0.002, sharpe_period 30), not the flags' defaults.
    flag_out = base_dir / "res-flag"
    stdout = await backtest(data, cfg, "--fill-model", "queue", "--latency-ms", "2", "--maker-fee",
                                  "0.0008", "--plot", "--out", str(flag_out))  # fmt: skip
    assert stdout.splitlines()[0] == ("backtest: fill model queue, latency constant 2 ms, lookahead 1 ms, fees"
                                      " maker 0.0008 taker 0.002, sharpe period 30 s ([backtest]; overridden by"
                                      " --fill-model, --latency-ms, --maker-fee, --plot/--no-plot, --out)")  # fmt: skip
    doc = json.loads((flag_out / "results.json").read_text())
    assert doc["settings"] == {"fill_model": "queue", "latency": "constant", "latency_ms": 2.0,
                               "latency_sigma": 0.5, "latency_seed": 0, "lookahead_ms": 1.0,
                               "maker_fee": 0.0008, "taker_fee": 0.002, "sharpe_period": 30.0}  # fmt: skip
    assert (flag_out / "equity.png").exists()  # --plot over plot = false
    latencies = order_latencies(journal)
    assert len(latencies) >= 5 and set(latencies) == {2}  # the flag's 2 ms
    rates = fee_rates(journal)
    assert 0.002 in rates and rates <= {0.0008, 0.002}


async def test_the_shipped_backtest_config_runs(nursery: trio.Nursery, base_dir: Path) -> None:
    """The repository's backtest.toml (docs/backtesting.md includes it) with the example strategies it
    names, as they are, on a recording of the symbols it plays: it runs, with every default."""
    root = Path(__file__).resolve().parent.parent
    data = await record(nursery, base_dir, 1500)
    (base_dir / "examples").mkdir()
    for name in ("momentum.py", "mean_reversion.py", "swap_trend.py"):
        shutil.copy(root / "examples" / name, base_dir / "examples" / name)
    cfg = base_dir / "backtest.toml"
    shutil.copy(root / "backtest.toml", cfg)
    stdout = await backtest(data, cfg)
    assert stdout.splitlines()[0] == ("backtest: fill model queue, latency constant 1 ms, lookahead 1 ms, fees"
                                      " maker 0.0008 taker 0.001, sharpe period 60 s ([backtest])")  # fmt: skip
    out = base_dir / "backtest-results"
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["strategies"]) == {"mom1", "mr1", "swap1"} and (out / "equity.png").exists()
    assert doc["settings"]["fill_model"] == "queue" and "mom1: net" in stdout and "account: net" in stdout
