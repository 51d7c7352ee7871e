"""A strategy's symbols follow its params, and it cannot order a symbol whose prices it never sees
(issue 14: ``mean_reversion.py --param symbol=BTC-USDT`` subscribed to ETH-USDT and bought BTC at an
ETH price)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from seqtrade.client import Strategy, load_strategy
from seqtrade.config import Config
from seqtrade.server.gateway import Gateway

from .test_tutorial import LoggedProcess

ROOT = Path(__file__).resolve().parent.parent
MEAN_REVERSION = str(ROOT / "examples" / "mean_reversion.py")


def test_the_symbol_param_replaces_the_class_default_and_self_symbol_follows() -> None:
    cls = load_strategy(MEAN_REVERSION)
    assert list(cls().symbols) == ["ETH-USDT"] and cls().symbol == "ETH-USDT"
    s = cls(symbol="BTC-USDT")
    assert list(s.symbols) == ["BTC-USDT"] and s.symbol == "BTC-USDT"
    assert list(cls.symbols) == ["ETH-USDT"]  # the class default is untouched
    two = Strategy(symbols=["ETH-USDT", "BTC-USDT"])
    assert list(two.symbols) == ["ETH-USDT", "BTC-USDT"] and two.symbol == "ETH-USDT"
    assert list(Strategy(symbols="BTC-USDT").symbols) == ["BTC-USDT"]
    assert Strategy().symbol == "" and list(Strategy().symbols) == []
    with pytest.raises(ValueError, match="param symbol='BTC-USDT' is not in param symbols"):
        Strategy(symbols=["ETH-USDT"], symbol="BTC-USDT")
    with pytest.raises(ValueError, match="non-empty strings"):
        Strategy(symbols=[])


def test_an_order_for_a_symbol_outside_symbols_raises_at_the_call_naming_both() -> None:
    s = load_strategy(MEAN_REVERSION)()  # symbols ETH-USDT
    for place in (lambda: s.buy_limit("BTC-USDT", 3000.0, 0.01), lambda: s.sell_market("BTC-USDT", 0.01)):
        with pytest.raises(ValueError, match=r"BTC-USDT: not one of this strategy's symbols \(ETH-USDT\)"):
            place()
    with pytest.raises(RuntimeError, match="not connected"):  # its own symbol passes the check
        s.buy_limit("ETH-USDT", 3000.0, 0.01)
    with pytest.raises(RuntimeError, match="not connected"):  # no symbols: not checked (it sees no prices)
        Strategy().buy_market("BTC-USDT", 0.01)


async def test_mean_reversion_run_with_symbol_btc_subscribes_to_btc_and_bids_at_the_btc_price(
    server: Gateway, config: Config
) -> None:
    """The example as the issue ran it, in its own process against a real server: the market has BTC at
    100 and ETH at 10; its bid must be a BTC-USDT order near 100."""
    args = [sys.executable, "-m", "seqtrade.cli", "run", MEAN_REVERSION, "--id", "mr", "--run-dir",
            str(config.run_dir), "--param", "symbol=BTC-USDT", "--param", "window=1", "--param", "size=0.01"]  # fmt: skip
    p = LoggedProcess(await trio.lowlevel.open_process(args, stderr=subprocess.PIPE))
    try:
        with trio.fail_after(60):
            await p.line(r"MeanReversion joined as mr: .* symbols BTC-USDT$")

            async def poke() -> None:
                await server.venue.set_market("ETH-USDT", 10.0, 10.01)
                await server.venue.set_market("BTC-USDT", 100.0, 100.2)

            while not server.open_records("mr"):
                await poke()
                with trio.move_on_after(0.5):
                    await p.line("never")  # read its log meanwhile (a failure shows it)
            (bid,) = server.open_records("mr")
            assert bid.symbol == "BTC-USDT" and bid.side == "buy"
            assert bid.price is not None and 99.0 < bid.price <= 100.0
    finally:
        await p.interrupt()
