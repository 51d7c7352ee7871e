"""Config: defaults, and errors that name the key."""

from __future__ import annotations

import pytest

from seqtrade.config import load_config, parse_config
from seqtrade.errors import ConfigError


def test_defaults_and_shipped_config(tmp_path):
    cfg = parse_config("", base_dir=str(tmp_path))
    assert cfg.venue.kind == "paper" and cfg.run_dir == (tmp_path / "run").resolve()
    assert cfg.endpoint("md") == f"ipc://{tmp_path.resolve() / 'run' / 'md.ipc'}"
    shipped = load_config("config.toml")
    assert shipped.venue.kind == "paper" and "BTC-USDT" in shipped.venue.symbols


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nrun_dirr = 'x'", "server.run_dirr: unknown key"),
        ("[bus]\nmd_sndhwm = 'big'", "bus.md_sndhwm: expected an integer"),
        ("[venue]\nkind = 'binance'", "venue.kind: expected one of 'paper', 'okx'"),
        ("[venue.paper]\nseed = 1.5", "venue.paper.seed: expected an integer"),
        ("[venue.paper]\ntick_size = 0", "venue.paper.tick_size: must be > 0"),
        ("[venue]\nsymbols = ['BTC/USDT']", "venue.symbols[0]"),
        ("[venue]\nsymbols = []", "venue.symbols"),
        ("venue = 3", "venue: expected a table"),
        ("[[strategies]]\npath = 'a.py'", "strategies[0].id: missing required key"),
        ("[[strategies]]\nid = 'a b'\npath = 'a.py'", "strategies[0].id"),
        ("[[strategies]]\nid = 'a'\npath = 'a.py'\nmodule = 'm'", "strategies[0]: give exactly one"),
        ("[venue.okx]\ncancel_all_after = 5", "venue.okx.cancel_all_after"),
        ("[server]\nheartbeat_timeout = true", "server.heartbeat_timeout: expected a number"),
        ("this is = = not toml", "not valid TOML"),
    ],
)
def test_errors_name_the_key(text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(text)


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config("/nonexistent/seqtrade.toml")


def test_missing_limits_names_each_unset_limit_and_the_symbols_a_partial_cover_misses() -> None:
    from seqtrade.config import missing_limits

    cfg = parse_config(
        '[venue]\nsymbols = ["A-USDT", "B-USDT"]\n[risk]\nmax_order_notional = 10.0\n'
        "[risk.symbols.A-USDT]\nmax_position = 1.0\n[risk.strategies.s1]\nmax_open_orders = 3\n"
    )
    assert missing_limits(cfg) == [
        "max_order_quantity",
        "max_position (not set for B-USDT)",
        "max_account_position",
        "price_band_bps",
        "max_open_orders",  # a strategy's table does not cover the others
        "max_orders_per_window",
        "max_cancels_per_window",
    ]
