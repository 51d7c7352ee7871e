"""The join over real sockets: replays that cannot storm, floods of new ids, one live process per id,
goodbye, and what a person sees from ``seqtrade run`` (subprocesses).

No timing is asserted: the speed figures are bench/replay_storm.py's (docs/operations.md).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import zmq

from seqtrade import wire
from seqtrade.client import Endpoints
from seqtrade.config import Config
from seqtrade.models import Hello, OrderReport, OrderStatus, Welcome
from seqtrade.server.app import serve
from seqtrade.server.gateway import Gateway
from seqtrade.server.journal import Journal
from seqtrade.venues.paper import PaperVenue

from .conftest import make_config
from .peer import Peer
from .test_tutorial import LoggedProcess

S = "BTC-USDT"
HISTORY = 5_000


def _prefill(config: Config, sid: str, n: int) -> None:
    """A journal where ``sid`` has ``n`` reports: the server that wrote them has stopped."""
    config.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    j = Journal(config.journal_path)
    rows = [
        (
            "",
            OrderReport(
                seq,
                f"c{seq}",
                "",
                sid,
                S,
                "buy",
                "limit",
                99.0,
                1.0,
                OrderStatus.REJECTED,
                error_msg="history",
                timestamp=1,
            ),
            False,
        )  # fmt: skip
        for seq in range(1, n + 1)
    ]
    j.add_reports(rows, [])
    j.close()


async def _start(nursery: trio.Nursery, config: Config) -> Gateway:
    venue = PaperVenue(config.venue.paper, list(config.venue.symbols))
    gw: Gateway = await nursery.start(serve, config, venue)
    return gw


class RawClient:
    """A client that says hello every 100 ms until it holds the welcome's last seq (the hostile but
    legal pattern of issue 12), counting every report frame it receives."""

    def __init__(self, ctx: zmq.Context, endpoints: Endpoints, sid: str) -> None:
        self.sid = sid
        self.push = ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect(endpoints.order)
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, wire.topic("report", sid))
        self.sub.connect(endpoints.report)
        self.seqs: list[int] = []
        self.messages: list[object] = []

    def close(self) -> None:
        self.push.close()
        self.sub.close()

    def hello(self, last_seq: int, nonce: str) -> None:
        self.push.send(wire.encode_message(Hello(self.sid, last_seq, nonce)))

    async def read(self) -> object:
        while True:
            try:
                msg = wire.decode_message(self.sub.recv(zmq.NOBLOCK))
            except zmq.Again:
                await trio.lowlevel.wait_readable(self.sub.getsockopt(zmq.FD))
                continue
            self.messages.append(msg)
            if isinstance(msg, OrderReport):
                self.seqs.append(msg.seq)
            return msg

    async def until_welcome(self, nonce: str, last_seq: int) -> Welcome:
        while True:
            self.hello(last_seq, nonce)
            with trio.move_on_after(0.1):
                while True:
                    msg = await self.read()
                    if isinstance(msg, Welcome) and msg.nonce == nonce:
                        return msg


async def test_a_client_far_behind_saying_hello_every_100ms_gets_each_report_once_in_order(
    nursery: trio.Nursery, base_dir: Path, zctx: zmq.Context
):
    """Welcome first with the last seq; then every missing report exactly once, in order, from one
    replay however many hellos came meanwhile; another strategy's orders are all answered meanwhile."""
    config = make_config(base_dir)
    _prefill(config, "far", HISTORY)
    gw = await _start(nursery, config)
    endpoints = Endpoints.from_config(config)
    raw = RawClient(zctx, endpoints, "far")
    other = Peer(zctx, endpoints, "other")
    try:
        with trio.fail_after(60):
            # the subscription is live once a welcome arrives (a hello asking for nothing)
            await raw.until_welcome("probe", HISTORY)
            assert gw.counters.replays == 0
            await other.join()
            await gw.venue.set_market(S, 100.0, 100.2)  # type: ignore[attr-defined]
            raw.seqs.clear()
            raw.messages.clear()
            hellos = 0
            answered: list[OrderReport] = []

            async def trade() -> None:
                for _ in range(20):  # orders of another strategy while the replay runs
                    await other.order(S, "buy", "market", None, 0.001)
                    answered.append(await other.report())
                    answered.append(await other.report())

            async with trio.open_nursery() as inner:
                inner.start_soon(trade)
                last = 0
                raw.hello(0, "catchup")
                hellos += 1
                welcome: Welcome | None = None
                while welcome is None or last < welcome.last_seq:
                    with trio.move_on_after(0.1):
                        while welcome is None or last < welcome.last_seq:
                            msg = await raw.read()
                            if isinstance(msg, Welcome) and welcome is None:
                                welcome = msg
                                assert raw.seqs == [], "the welcome comes first"
                            elif isinstance(msg, OrderReport):
                                last = msg.seq
                    raw.hello(last, "catchup")  # every 100 ms, the newest seq, the same nonce
                    hellos += 1
            assert welcome is not None and welcome.last_seq == HISTORY
            assert raw.seqs == list(range(1, HISTORY + 1))  # each once, in order
            assert hellos >= 2 and gw.counters.replays == 1
            statuses = [r.status for r in answered]
            assert len(answered) == 40 and OrderStatus.REJECTED not in statuses
    finally:
        raw.close()
        other.close()


async def test_n_hellos_with_fresh_nonces_during_one_replay_make_one_replay(
    nursery: trio.Nursery, base_dir: Path, zctx: zmq.Context
):
    """An older client (or a burst of 300 hellos): new nonces during a replay are coalesced; each
    report is still sent once, and the hellos are answered once the replay has ended."""
    config = make_config(base_dir)
    _prefill(config, "far", HISTORY)
    gw = await _start(nursery, config)
    raw = RawClient(zctx, Endpoints.from_config(config), "far")
    try:
        with trio.fail_after(60):
            await raw.until_welcome("probe", HISTORY)
            raw.seqs.clear()
            raw.hello(0, "first")
            for i in range(300):
                raw.hello(0, f"burst{i}")
            while len(raw.seqs) < HISTORY:
                await raw.read()
            # the client, now holding everything, repeats a hello: welcomed with nothing to replay
            done = await raw.until_welcome("burst299", HISTORY)
            assert done.last_seq == HISTORY
            assert raw.seqs == list(range(1, HISTORY + 1))  # each once: the burst started no replay
            assert gw.counters.replays == 1 and gw.counters.hellos_coalesced >= 300
    finally:
        raw.close()


async def test_a_flood_of_hellos_from_fresh_ids_does_not_stop_another_strategys_orders(
    server: Gateway, peers: dict[str, Peer], zctx: zmq.Context, endpoints: Endpoints
):
    with trio.fail_after(60):
        p = peers["trader"]
        await p.join()
        await server.venue.set_market(S, 100.0, 100.2)  # type: ignore[attr-defined]
        push = zctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(endpoints.order)
        try:
            statuses = []
            for i in range(40):
                for j in range(100):  # 4,000 hellos from ids never seen, interleaved with the orders
                    push.send(wire.encode_message(Hello(f"fresh{i}x{j}", 0, "n")))
                await p.order(S, "buy", "market", None, 0.001)
                statuses += [(await p.report()).status, (await p.report()).status]
            assert statuses == [OrderStatus.ACCEPTED, OrderStatus.FILLED] * 40  # all answered, none stale
            c = server.counters
            assert c.by_kind["Hello"] >= 4_000 - 200  # the flood was read ...
            assert c.hellos_throttled > 0  # ... and most of it dropped at the budget
            assert len(server.strategies) < 1_000  # the dropped ones left nothing behind
            assert "trader" in server.status()["strategies"]
        finally:
            push.close()


# ----------------------------------------------------------------------------- subprocesses

PROBE = """
from seqtrade.client import Strategy


class Probe(Strategy):
    symbols = ["BTC-USDT", "NOPE-USDT"]

    def on_start(self):
        self.log.info("probe started; unserved %s", self.unserved_symbols)

    def on_server_lost(self):
        self.log.warning("probe: on_server_lost")

    def on_server_back(self):
        self.log.warning("probe: on_server_back")
"""


async def _run(tmp_path: Path, run_dir: Path, sid: str, *extra: str) -> LoggedProcess:
    path = tmp_path / "probe.py"
    path.write_text(PROBE)
    args = [
        sys.executable,
        "-m",
        "seqtrade.cli",
        "run",
        str(path),
        "--id",
        sid,
        "--run-dir",
        str(run_dir),
        *extra,
    ]
    return LoggedProcess(await trio.lowlevel.open_process(args, stderr=subprocess.PIPE))


async def _exit(proc: LoggedProcess) -> int:
    """Wait for a process that ends by itself: its exit code, its whole log in ``lines``."""
    stream = proc.proc.stderr
    assert stream is not None
    chunks = [proc.buf]
    async for chunk in stream:
        chunks.append(chunk)
    proc.buf = b""
    proc.lines += b"".join(chunks).decode().splitlines()
    return await proc.proc.wait()


async def test_a_second_process_with_the_same_id_is_refused_and_the_owner_keeps_trading(
    server: Gateway, config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, "seqtrade")
    with trio.fail_after(60):
        owner = await _run(tmp_path, config.run_dir, "X")
        await owner.line("probe started")
        newcomer = await _run(tmp_path, config.run_dir, "X")
        await newcomer.line(
            r"ERROR .*refused to let this process join as X: strategy id 'X' is in use by another live process"
        )
        assert await _exit(newcomer) == 3
        assert any("not joined: strategy id X belongs to another live process" in x for x in newcomer.lines)
        assert owner.proc.poll() is None  # the owner runs on ...
        assert server.strategies["X"].alive and server.engine.counters.refused >= 1
        assert await owner.interrupt() == 0  # ... and leaves cleanly: a goodbye
        with trio.fail_after(10):
            while server.strategies["X"].alive:
                await trio.sleep(0.05)
        messages = [r.getMessage() for r in caplog.records]
        assert "strategy X left (goodbye)" in messages
        assert not any("X silent" in m for m in messages)
        # the id is free now: the next process joins at once
        again = await _run(tmp_path, config.run_dir, "X")
        await again.line("probe started")
        assert await again.interrupt() == 0


async def test_unserved_symbols_are_named_once_at_the_join(server: Gateway, config: Config, tmp_path: Path):
    with trio.fail_after(30):
        p = await _run(tmp_path, config.run_dir, "U")
        m = await p.line("probe started")
        assert "['NOPE-USDT']" in m.string
        errors = [x for x in p.lines if "does not serve NOPE-USDT" in x]
        assert len(errors) == 1 and "ERROR" in errors[0]
        assert await p.interrupt() == 0


async def test_no_server_says_what_it_waits_for_then_gives_up(tmp_path: Path):
    run_dir = tmp_path / "nothing-here"
    run_dir.mkdir()
    with trio.fail_after(30):
        p = await _run(tmp_path, run_dir, "W", "--join-timeout", "6")
        first = await p.line("joining as W")
        assert f"waiting for the server at ipc://{run_dir.resolve()}/report.ipc" in first.string
        assert "giving up after 6 s" in first.string
        await p.line(r"WARNING .*still waiting for the server at ")
        assert await _exit(p) == 2
        assert any("no answer from the server at" in x and "within 6 s" in x for x in p.lines)


async def test_a_strategy_whose_server_stops_says_so_and_rejoins_when_it_is_back(
    base_dir: Path, tmp_path: Path
):
    config = make_config(base_dir)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            gw = await _start(nursery, config)
            p = await _run(tmp_path, config.run_dir, "L")
            await p.line("probe started")
            gw.request_stop()
        # the server is gone
        await p.line(r"WARNING .*no word from the server for")
        await p.line("probe: on_server_lost")
        async with trio.open_nursery() as nursery:
            gw = await _start(nursery, config)
            await p.line(r"server back: re-joined as L")
            await p.line("probe: on_server_back")
            assert await p.interrupt() == 0
            gw.request_stop()
