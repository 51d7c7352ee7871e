"""The strategy client: local state, and real strategy processes against a real server."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from seqtrade.client import Position, Strategy, load_strategy
from seqtrade.client.strategy import OrderIdGenerator
from seqtrade.errors import SeqtradeError
from seqtrade.models import OrderStatus

ECHO = str(Path(__file__).parent / "strategies" / "echo.py")
S = "BTC-USDT"


def test_position_math():
    p = Position()
    p.apply_fill("buy", 1.0, 100.0)
    p.apply_fill("buy", 1.0, 110.0)
    assert (p.quantity, p.avg_price) == (2.0, 105.0)
    p.apply_fill("sell", 0.5, 115.0)
    assert p.quantity == 1.5 and p.avg_price == 105.0 and p.realized_pnl == pytest.approx(5.0)
    p.apply_fill("sell", 2.5, 100.0)  # closes 1.5 at a loss of 5 each, opens 1.0 short at 100
    assert p.quantity == pytest.approx(-1.0) and p.avg_price == 100.0
    assert p.realized_pnl == pytest.approx(5.0 - 7.5)
    p.apply_fill("buy", 1.0, 90.0)
    assert p.quantity == 0.0 and p.avg_price == 0.0 and p.realized_pnl == pytest.approx(7.5)


def test_order_ids_never_repeat_and_match_the_protocol():
    import re

    a, b = OrderIdGenerator(), OrderIdGenerator()
    ids = [a.next() for _ in range(1000)] + [b.next() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", i) for i in ids)


def test_load_strategy_errors(tmp_path):
    assert load_strategy(ECHO).__name__ == "Echo"
    assert load_strategy(ECHO + ":Echo").__name__ == "Echo"
    two = tmp_path / "two.py"
    two.write_text("from seqtrade.client import Strategy\nclass A(Strategy): pass\nclass B(Strategy): pass\n")
    with pytest.raises(SeqtradeError, match="exactly one"):
        load_strategy(str(two))
    with pytest.raises(SeqtradeError, match="not found"):
        load_strategy(str(tmp_path / "missing.py"))


def test_order_helpers_need_a_connection():
    with pytest.raises(RuntimeError, match="not connected"):
        Strategy().buy_limit(S, 1.0, 1.0)


class StrategyProcess:
    """A real `seqtrade run` process whose JSON-line stdout the test reads."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.buf = b""

    @classmethod
    async def start(cls, run_dir: Path, sid: str, **params: object) -> StrategyProcess:
        args = [sys.executable, "-m", "seqtrade.cli", "run", ECHO, "--id", sid, "--run-dir", str(run_dir)]
        for k, v in params.items():
            args += ["--param", f"{k}={json.dumps(v)}"]
        proc = await trio.lowlevel.open_process(args, stdout=subprocess.PIPE)
        return cls(proc)

    async def event(self, name: str, **match: object) -> dict:
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                ev = json.loads(line)
                if ev["event"] == name and all(ev.get(k) == v for k, v in match.items()):
                    return ev
            assert self.proc.stdout is not None
            chunk = await self.proc.stdout.receive_some(65536)
            assert chunk, f"strategy process ended before {name} {match}"
            self.buf += chunk

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> tuple[int, dict]:
        """SIGTERM: the strategy's on_stop runs (its last state), then it exits."""
        self.proc.send_signal(signal.SIGTERM)
        last = await self.event("stop")
        return await self.proc.wait(), last


async def test_strategy_processes_trade_survive_a_sigkill_and_rejoin(server, config, peers):
    """Two strategy processes trade; one is killed with SIGKILL; the other and the server go on;
    the killed one restarts, re-joins, and rebuilds its position and open orders from the replay."""
    run_dir = config.run_dir
    with trio.fail_after(30):
        await server.venue.set_market(S, 100.0, 100.2)
        a = await StrategyProcess.start(run_dir, "A", side="buy", price=99.0, qty=1.0)
        b = await StrategyProcess.start(run_dir, "B", side="buy", price=98.0, qty=2.0)
        assert (await a.event("start"))["position"] == 0.0
        await a.event("order", status="accepted")
        await b.event("order", status="accepted")
        await server.venue.set_market(S, 98.8, 99.0, ask_size=5.0)  # fills A's bid, not B's
        filled = await a.event("order", status="filled")
        assert filled["position"] == 1.0 and filled["avg_price"] == 99.0 and filled["fees"] > 0
        # A places a second, resting order before it dies
        a2 = await StrategyProcess.start(run_dir, "A2", side="sell", price=105.0, qty=1.0)
        await a2.event("order", status="accepted")
        await a2.kill()
        await a.kill()
        # B and the server are undisturbed
        await server.venue.set_market(S, 97.8, 98.0, ask_size=5.0)
        filled_b = await b.event("order", status="filled")
        assert filled_b["position"] == 2.0
        # A comes back: replay rebuilds its state before on_start
        a_again = await StrategyProcess.start(run_dir, "A")
        st = await a_again.event("start")
        assert st["position"] == 1.0 and st["avg_price"] == 99.0 and st["fees"] == filled["fees"]
        a2_again = await StrategyProcess.start(run_dir, "A2")
        st2 = await a2_again.event("start")
        assert len(st2["open"]) == 1  # its resting sell, from the welcome
        assert server.open_records("A2")[0].status is OrderStatus.ACCEPTED
        code, last = await b.stop()
        assert code == 0 and last["position"] == 2.0
        for p in (a_again, a2_again):
            assert (await p.stop())[0] == 0


async def test_late_joining_strategy_completes_the_handshake(server, config, peers):
    with trio.fail_after(20):
        # reports exist for "late" before its process ever runs (sent by a protocol-level peer)
        p = peers["late"]
        await p.join()
        await server.venue.set_market(S, 100.0, 100.2)
        await p.order(S, "buy", "market", None, 0.25)
        await p.report()
        await p.report()
        proc = await StrategyProcess.start(config.run_dir, "late")
        st = await proc.event("start")
        assert st["position"] == 0.25 and st["open"] == []
        assert (await proc.stop())[0] == 0


async def test_a_report_lost_at_the_end_of_a_burst_arrives_with_the_periodic_sync(server, config):
    """A report the server journaled but the strategy never received (PUB drops silently), with no
    later report to reveal the gap, reaches the strategy through its periodic hello."""
    from seqtrade.client.protocol import SYNC_INTERVAL
    from seqtrade.models import OrderReport

    with trio.fail_after(SYNC_INTERVAL + 15):
        proc = await StrategyProcess.start(config.run_dir, "tail")
        await proc.event("start")
        seq = server.seqs.get("tail", 0) + 1
        lost = OrderReport(seq, "lost-1", "x1", "tail", S, "buy", "limit", 99.0, 1.0, OrderStatus.ACCEPTED,
                           timestamp=1)  # fmt: skip
        server.journal.add_reports([("", lost, False)])  # journaled, never published: as if PUB dropped it
        server.seqs["tail"] = seq
        got = await proc.event("order", coid="lost-1")
        assert got["seq"] == seq and got["open"] == ["lost-1"]
        assert (await proc.stop())[0] == 0


async def test_a_timer_that_raises_is_logged_and_the_strategy_goes_on(server, endpoints, zctx, caplog):
    """In process, against a real server: a timer callback that raises is logged (the first with its
    traceback, the rest counted) like any other callback; the loop, the other timers and on_stop carry on (it used to
    end the strategy's process)."""
    import logging

    from seqtrade.client import run_strategy

    class Boom(Strategy):
        def on_start(self) -> None:
            self.booms = self.ticks = 0
            self.stopped = False
            self.set_timer(0.01, self.boom)
            self.set_timer(0.02, self.tick)

        def boom(self) -> None:
            self.booms += 1
            raise RuntimeError(f"boom {self.booms}")

        def tick(self) -> None:
            self.ticks += 1
            if self.booms >= 3 and self.ticks >= 3:
                self.stop()

        def on_stop(self) -> None:
            self.stopped = True

    caplog.set_level(logging.ERROR, logger="seqtrade.client")
    s = Boom()
    with trio.fail_after(20):
        code = await trio.to_thread.run_sync(
            lambda: run_strategy(s, "boom", endpoints, join_timeout=10, context=zctx)
        )
    assert code == 0 and s.booms >= 3 and s.ticks >= 3 and s.stopped
    # The first in full, with its traceback; the rest counted, and told once on the way out (issue 14).
    full = [r for r in caplog.records if r.getMessage().startswith("boom raised (counted")]
    assert len(full) == 1 and full[0].exc_info and str(full[0].exc_info[1]) == "boom 1"
    told = [r.getMessage() for r in caplog.records if " more time" in r.getMessage()]
    assert len(told) == 1 and re.fullmatch(rf"boom raised {s.booms - 1} more times in the last \d+ s"
                                           rf" \({s.booms} in all\); the last: RuntimeError: boom {s.booms}", told[0])  # fmt: skip
