"""``[backtest]`` (seqtrade.config.BacktestConfig): the fill model's, the latency's and the results'
choices of ``seqtrade backtest`` as config values, each overridden by its flag when the flag is given
(docs/backtesting.md, "Backtesting"). Pure parsing and the rules, directly; the commands that read a
config with the section (``check``, ``serve``) through ``main``; the runs themselves in
tests/test_backtest_config_run.py."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from seqtrade.cli import BACKTEST_FLAGS, backtest_model, build_parser, describe_backtest, main
from seqtrade.config import BacktestConfig, backtest_settings, load_config, parse_config
from seqtrade.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EVERY_KEY = """
[backtest]
fill_model = "touch"
latency = "lognormal"
latency_ms = 5.0
latency_sigma = 0.25
latency_seed = 7
lookahead_ms = 2
maker_fee = -0.0001
taker_fee = 0.0005
sharpe_period = 30.0
plot = false
out = "res"
"""


def test_without_a_section_every_key_has_its_default() -> None:
    bt = parse_config("").backtest
    assert bt == BacktestConfig()
    assert (bt.fill_model, bt.latency, bt.latency_ms, bt.latency_sigma, bt.latency_seed) == (
        "queue", "constant", 1.0, 0.5, 0)  # fmt: skip
    assert (bt.lookahead_ms, bt.maker_fee, bt.taker_fee, bt.sharpe_period, bt.plot, bt.out) == (
        1.0, 0.0008, 0.001, 60.0, True, "")  # fmt: skip


def test_every_key_is_read() -> None:
    bt = parse_config(EVERY_KEY).backtest
    assert bt == BacktestConfig("touch", "lognormal", 5.0, 0.25, 7, 2.0, -0.0001, 0.0005, 30.0, False, "res")
    assert isinstance(bt.lookahead_ms, float)  # an integer in the file is a number of ms


def test_a_lookahead_beyond_a_drawn_latency_is_allowed_the_draws_are_floored_at_it() -> None:
    for latency in ("lognormal", "recorded"):
        bt = parse_config(f'[backtest]\nlatency = "{latency}"\nlatency_ms = 1\nlookahead_ms = 5\n').backtest
        assert bt.lookahead_ms == 5.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fil_model = 'touch'", "backtest.fil_model: unknown key (known keys here: fill_model, latency, "
         "latency_ms, latency_seed, latency_sigma, lookahead_ms, maker_fee, out, plot, sharpe_period, taker_fee)"),
        ("fill_model = 'fifo'", "backtest.fill_model: expected one of 'queue', 'touch', got 'fifo'"),
        ("latency = 'normal'", "backtest.latency: expected one of 'constant', 'lognormal', 'recorded', got 'normal'"),
        ("latency_ms = '5'", "backtest.latency_ms: expected a number, got '5'"),
        ("latency_seed = 1.5", "backtest.latency_seed: expected an integer, got 1.5"),
        ("plot = 'no'", "backtest.plot: expected a boolean, got 'no'"),
        ("latency_ms = 0", "backtest.latency_ms: must be > 0, got 0"),
        ("lookahead_ms = -1", "backtest.lookahead_ms: must be > 0, got -1"),
        ("sharpe_period = 0", "backtest.sharpe_period: must be > 0, got 0"),
        ("latency_sigma = -0.1", "backtest.latency_sigma: must be >= 0"),
        ("maker_fee = 1", "backtest.maker_fee: must be a fraction of the notional (0.001 = 0.1 %), above -1 and below 1, got 1"),
        ("taker_fee = -1.5", "backtest.taker_fee: must be a fraction of the notional"),
        ("lookahead_ms = 2.0", "backtest.lookahead_ms: the lookahead (2 ms) exceeds the constant latency"
         " (backtest.latency_ms = 1 ms): an order would take effect inside the window it was sent in"),
        ("latency_ms = 0.5", "backtest.lookahead_ms: the lookahead (1 ms) exceeds the constant latency"
         " (backtest.latency_ms = 0.5 ms)"),
    ],
)  # fmt: skip
def test_a_bad_value_is_refused_naming_the_key_and_the_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(f"[backtest]\n{text}\n")


def test_backtest_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match=re.escape("backtest: expected a table")):
        parse_config("backtest = 1\n")


def test_a_flag_given_wins_over_the_file_and_one_left_out_does_not() -> None:
    file = parse_config(EVERY_KEY).backtest
    merged = backtest_settings(file, {"fill_model": "queue", "latency_ms": 9.0}, BACKTEST_FLAGS)
    assert merged == dataclasses.replace(file, fill_model="queue", latency_ms=9.0)
    assert backtest_settings(file, {}, BACKTEST_FLAGS) == file  # no flag: the file's values, all of them
    # A flag that equals the default still wins over the file: given is given.
    assert backtest_settings(file, {"taker_fee": 0.001}, BACKTEST_FLAGS).taker_fee == 0.001


def test_the_parser_leaves_every_flag_not_given_unset_so_the_file_stands() -> None:
    args = build_parser().parse_args(["backtest", "--data", "d"])
    assert {k: getattr(args, k) for k in BACKTEST_FLAGS} == dict.fromkeys(BACKTEST_FLAGS)
    args = build_parser().parse_args(["backtest", "--data", "d", "--fill-model", "touch", "--latency-ms", "5",
                                      "--latency-seed", "3", "--no-plot", "--out", "x"])  # fmt: skip
    given = {k: getattr(args, k) for k in BACKTEST_FLAGS if getattr(args, k) is not None}
    assert given == {"fill_model": "touch", "latency_ms": 5.0, "latency_seed": 3, "plot": False, "out": "x"}
    assert build_parser().parse_args(["backtest", "--data", "d", "--plot"]).plot is True
    # Every key of the section has its flag, and every flag its key.
    assert set(BACKTEST_FLAGS) == {f.name for f in dataclasses.fields(BacktestConfig)}


@pytest.mark.parametrize(
    ("file", "flags", "message"),
    [
        # the flag set the lookahead: the error names the flag, and the file's latency as its key
        ("", {"lookahead_ms": 3.0}, "--lookahead-ms: the lookahead (3 ms) exceeds the constant latency"
         " (backtest.latency_ms = 1 ms)"),
        # the file set the lookahead, the flag the latency under it
        ("latency_ms = 5\nlookahead_ms = 5", {"latency_ms": 2.0},
         "backtest.lookahead_ms: the lookahead (5 ms) exceeds the constant latency (--latency-ms = 2 ms)"),
        # a flag back to a constant latency under the file's lookahead for a log-normal one
        ("latency = 'lognormal'\nlookahead_ms = 5", {"latency": "constant"},
         "backtest.lookahead_ms: the lookahead (5 ms) exceeds the constant latency (backtest.latency_ms = 1 ms)"),
        ("", {"maker_fee": 2.0}, "--maker-fee: must be a fraction of the notional"),
        ("", {"latency_ms": float("nan")}, "--latency-ms: expected a finite number, got nan"),
        ("", {"sharpe_period": 0.0}, "--sharpe-period: must be > 0, got 0"),
    ],
)  # fmt: skip
def test_the_flags_meet_the_rules_of_the_keys_and_errors_name_what_set_the_value(
    file, flags, message
) -> None:
    section = parse_config(f"[backtest]\n{file}\n").backtest
    with pytest.raises(ConfigError, match=re.escape(message)):
        backtest_settings(section, flags, BACKTEST_FLAGS)


def test_the_results_settings_are_the_model_choices_not_where_files_go() -> None:
    bt = parse_config(EVERY_KEY).backtest
    assert backtest_model(bt) == {"fill_model": "touch", "latency": "lognormal", "latency_ms": 5.0,
                                  "latency_sigma": 0.25, "latency_seed": 7, "lookahead_ms": 2.0,
                                  "maker_fee": -0.0001, "taker_fee": 0.0005, "sharpe_period": 30.0}  # fmt: skip
    line = describe_backtest(bt, {"plot": False, "latency_ms": 5.0})
    assert line == ("backtest: fill model touch, latency lognormal median 5 ms sigma 0.25 seed 7, lookahead 2 ms,"
                    " fees maker -0.0001 taker 0.0005, sharpe period 30 s ([backtest]; overridden by"
                    " --latency-ms, --plot/--no-plot)")  # fmt: skip


def config_file(where: Path, body: str, name: str = "c.toml") -> Path:
    """A config file in ``where``: the server in ``run``, the paper venue on BTC-USDT, then ``body``."""
    cfg = where / name
    cfg.write_text(
        f'[server]\nrun_dir = "run"\nstatus_interval = 0\n[venue]\nkind = "paper"\nsymbols = ["BTC-USDT"]\n{body}'
    )
    return cfg


def test_check_and_serve_read_the_section_and_do_not_use_it_and_refuse_a_bad_one(tmp_path, capsys) -> None:
    """As every section a command does not use (``[recorder]`` for ``check``, ``[venue.okx]`` on
    paper): checked, so that a typo is found by ``seqtrade check`` too, and otherwise ignored."""
    assert main(["check", "--config", str(config_file(tmp_path, EVERY_KEY))]) == 0
    out, err = capsys.readouterr()
    assert "backtest" not in err
    assert ("backtest (seqtrade backtest only): fill model touch, latency lognormal median 5 ms sigma 0.25 seed 7,"
            " lookahead 2 ms, fees maker -0.0001 taker 0.0005, sharpe period 30 s ([backtest])") in out  # fmt: skip
    assert main(["check", "--config", str(config_file(tmp_path, ""))]) == 0
    assert "seqtrade backtest only" not in capsys.readouterr().out  # no section: no line
    bad = config_file(tmp_path, "[backtest]\nfill_model = 'fifo'\n")
    for command in ("check", "serve"):
        assert main([command, "--config", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err == "seqtrade: error: backtest.fill_model: expected one of 'queue', 'touch', got 'fifo'\n"
    assert not (tmp_path / "run").exists()  # serve refused before it made its run dir


def test_a_bad_flag_ends_the_backtest_before_it_starts_naming_the_flag(tmp_path, capsys) -> None:
    cfg = config_file(tmp_path, "[backtest]\nlatency_ms = 2.0\n")
    data = tmp_path / "no-recording"
    assert main(["backtest", "--data", str(data), "--config", str(cfg), "--lookahead-ms", "3"]) == 2
    err = capsys.readouterr().err
    assert "seqtrade: error: --lookahead-ms: the lookahead (3 ms) exceeds the constant latency" in err
    assert not (tmp_path / "run-backtest").exists() and not (tmp_path / ".c.backtest.toml").exists()


def test_the_shipped_backtest_config_sets_every_key_to_its_default_and_the_docs_show_it() -> None:
    shipped = load_config(ROOT / "backtest.toml")
    assert shipped.backtest == dataclasses.replace(BacktestConfig(), out="backtest-results")
    assert set(tomllib.loads((ROOT / "backtest.toml").read_text())["backtest"]) == set(BACKTEST_FLAGS)
    assert [s.id for s in shipped.strategies] == [s.id for s in load_config(ROOT / "config.toml").strategies]
    assert all((ROOT / s.path).is_file() for s in shipped.strategies)
    docs = (ROOT / "docs" / "backtesting.md").read_text()
    assert '--8<-- "backtest.toml"' in docs  # the page includes the file itself, not a copy
    for key, flag in BACKTEST_FLAGS.items():  # the table: key, flag, default
        default = getattr(BacktestConfig(), key)
        assert re.search(rf"\| `{key}` \| `{re.escape(flag)}[^|]*\| `?{re.escape(_shown(default))}", docs), (
            key
        )


def _shown(v: object) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return f"{v:g}" if isinstance(v, float) else str(v) or "backtest-results"


def test_the_shipped_paper_config_records() -> None:
    """The issue's other config value: the recorder, on for the shipped paper config."""
    shipped = load_config(ROOT / "config.toml")
    assert shipped.venue.kind == "paper" and shipped.recorder.enabled


def test_a_recorded_latency_from_the_file_without_recorded_latencies_names_the_key(tmp_path, capsys) -> None:
    cfg = config_file(tmp_path, "[backtest]\nlatency = 'recorded'\n")
    data = tmp_path / "empty"
    data.mkdir()
    assert main(["backtest", "--data", str(data), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"seqtrade: error: backtest: backtest.latency = 'recorded', but {data} holds no measured" in err
    assert main(["backtest", "--data", str(data), "--config", str(config_file(tmp_path, "")), "--latency",
                 "recorded"]) == 2  # fmt: skip
    assert (
        f"seqtrade: error: backtest: --latency recorded, but {data} holds no measured"
        in capsys.readouterr().err
    )
