"""The tutorial's strategy (examples/tutorial.py, shown whole in docs/tutorial.md) against a real server.

It is run as the tutorial runs it, ``seqtrade run examples/tutorial.py``, in its own process, on the
paper venue of the shared fixture with a still market that the test moves. What the test reads is
what a newcomer reads: the strategy's log lines.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from seqtrade.config import Config, parse_config
from seqtrade.server.gateway import Gateway

from .conftest import QUIET_MARKET

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = str(ROOT / "examples" / "tutorial.py")
S = "BTC-USDT"
# edge 1 %: the bid rests 1 % under the best bid; one order's size is the whole position allowed.
PARAMS = [
    "--param",
    "edge=0.01",
    "--param",
    "profit=0.01",
    "--param",
    "size=0.001",
    "--param",
    "max_position=0.001",
]


@pytest.fixture
def config(base_dir: Path) -> Config:
    """The shared still market, with the orders of a strategy that has gone left resting (as the
    tutorial sets it before its last step), so that the next process gets them back."""
    text = QUIET_MARKET.replace(
        'shutdown_policy = "leave"', 'shutdown_policy = "leave"\ndead_strategy_policy = "leave"'
    )
    assert 'dead_strategy_policy = "leave"' in text
    return parse_config(text, base_dir=str(base_dir))


class LoggedProcess:
    """A `seqtrade run` process whose log lines (standard error) the test waits for."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.buf = b""
        self.lines: list[str] = []

    @classmethod
    async def start(cls, run_dir: Path, sid: str, *extra: str) -> LoggedProcess:
        args = [sys.executable, "-m", "seqtrade.cli", "run", TUTORIAL, "--id", sid, "--run-dir", str(run_dir)]
        proc = await trio.lowlevel.open_process([*args, *PARAMS, *extra, "-v"], stderr=subprocess.PIPE)
        return cls(proc)

    async def line(self, pattern: str) -> re.Match[str]:
        """The next log line that matches ``pattern`` (lines before it are kept in ``lines``)."""
        rx = re.compile(pattern)
        while True:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                text = raw.decode()
                self.lines.append(text)
                m = rx.search(text)
                if m:
                    return m
            assert self.proc.stderr is not None
            chunk = b""
            with trio.move_on_after(20):
                chunk = await self.proc.stderr.receive_some(65536)
            assert chunk, f"no line matching {pattern!r}; the strategy's log:\n" + "\n".join(self.lines)
            self.buf += chunk

    async def until(self, pattern: str, poke: Callable[[], Awaitable[None]]) -> re.Match[str]:
        """Wait for ``pattern``, calling the async ``poke`` again whenever half a second passes without
        it: a ticker published before the strategy's market-data subscription reached the server is
        dropped (market data is never replayed), so the test publishes it again."""
        while True:
            await poke()
            with trio.move_on_after(0.5):
                return await self.line(pattern)

    async def interrupt(self) -> int:
        """Ctrl-C: on_stop runs, then the process exits."""
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.receive_some(65536):
            self.buf += chunk
        self.lines += self.buf.decode().splitlines()
        self.buf = b""
        return await self.proc.wait()


async def test_the_tutorial_strategy_joins_quotes_amends_trades_and_resumes(server: Gateway, config: Config):
    assert config.server.dead_strategy_policy == "leave"
    run_dir = config.run_dir
    venue = server.venue

    async def market(bid: float, ask: float, **sizes: float) -> None:
        await venue.set_market(S, bid, ask, **sizes)

    with trio.fail_after(60):
        await market(100.0, 100.2)
        p = await LoggedProcess.start(run_dir, "tut")
        await p.line(r"Quoter joined as tut: last seq 0, 0 open orders, symbols BTC-USDT")
        await p.line(r"resumed: position 0 @ 0\.00, 0 open orders, 0 orders before")

        # a ticker: the strategy rests a bid 1 % under the best bid, rounded down to the tick
        bid = (await p.until(r"bid (\S+): 0\.001 @ 99\.00", lambda: market(100.0, 100.2)))[1]
        await p.line(rf"report {bid} accepted buy 0\.001 @ 99\.00, filled 0")

        # the market rises: the strategy follows it with amend_order (same id, new price)
        await market(102.0, 102.2)
        await p.line(rf"amend {bid}: 99\.00 -> 100\.98")
        await p.line(rf"report {bid} accepted buy 0\.001 @ 100\.90, filled 0")

        # the market falls through the bid: it fills, and the strategy offers what it bought higher
        await market(100.5, 100.8, ask_size=5.0)
        fill = await p.line(rf"filled {bid} buy 0\.001 @ ([\d.]+) -> position 0\.001")
        fill_price = float(fill[1])
        assert fill_price <= 100.9
        # (the ticker and the fill's report travel on two sockets: when the ticker comes first, the
        # strategy amends the filled bid, the amend fails, and the ask waits for the next ticker)
        ask = (await p.until(r"ask (\S+): 0\.001 @ ([\d.]+)", lambda: market(100.5, 100.8)))[1]
        await p.line(rf"report {ask} accepted sell 0\.001")
        assert [r.client_order_id for r in server.open_records("tut")] == [ask]

        # Ctrl-C: on_stop cancels the strategy's orders; the process exits 0
        assert await p.interrupt() == 0
        assert any("stopping: position 0.001, 1 open orders cancelled" in ln for ln in p.lines), p.lines
        while server.open_records("tut"):
            await trio.sleep(0.01)

        # started again: the replay rebuilds the position before on_start
        p = await LoggedProcess.start(run_dir, "tut", "--param", "keep_orders=true")
        await p.line(rf"resumed: position 0\.001 @ {fill_price:.2f}, 0 open orders, 2 orders before")
        ask = (await p.until(r"ask (\S+): 0\.001", lambda: market(100.5, 100.8)))[1]
        await p.line(rf"report {ask} accepted sell 0\.001")
        assert await p.interrupt() == 0
        assert any("1 open orders left open" in ln for ln in p.lines), p.lines

        # with keep_orders=true the ask stayed open, and the next process gets it back in the welcome
        p = await LoggedProcess.start(run_dir, "tut")
        await p.line(r"Quoter joined as tut: last seq \d+, 1 open orders")
        await p.line(rf"resumed: position 0\.001 @ {fill_price:.2f}, 1 open orders, 3 orders before")
        assert await p.interrupt() == 0
