"""Second reading of the strategy's event loop (issue 13): its claims pinned down against a small
server made of real ZeroMQ sockets in the test (the join, the reports, the market data), with the
strategy's real :func:`~seqtrade.client.run_strategy` on a thread.

- A report that comes while market data waits is handled before that market data, and every report
  is handed to ``on_order`` once, in seq order.
- A flood of tickers starves neither the strategy's timers nor its heartbeats (the server's dead-man
  reads those), and a report sent during the flood arrives once.
- The report socket reconnecting (the server's publisher gone and back, reports published meanwhile
  lost) makes the strategy re-join from its last seq and get the missed report, once.

No timing is asserted: each wait is bounded by a deadline that only a broken loop reaches.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import zmq

from seqtrade import wire
from seqtrade.client import OrderReport, Strategy, Ticker, run_strategy
from seqtrade.client.runner import Endpoints
from seqtrade.models import Heartbeat, Hello, OrderStatus, Welcome

S = "BTC-USDT"
SID = "rv"
DEADLINE = 30.0  # seconds; reached only when the loop is broken


def _report(seq: int) -> OrderReport:
    return OrderReport(seq, f"c{seq}", f"x{seq}", SID, S, "buy", "limit", 100.0, 1.0, OrderStatus.ACCEPTED,
                       timestamp=1, gw_ns=2)  # fmt: skip


def _ticker(seq: int) -> bytes:
    return wire.encode_message(Ticker(S, 1_764_500_000_000, 100.0, 99.9, 100.1, 1.0, 1.0, 10.0, seq, 1))


class FakeServer:
    """The server side of docs/protocol.md, as much as these tests need: it answers each hello with a
    welcome and the journal's reports after the hello's last seq, and keeps what the strategy sent."""

    def __init__(self, ctx: zmq.Context[Any], endpoints: Endpoints) -> None:
        self.ctx, self.endpoints = ctx, endpoints
        self.md = ctx.socket(zmq.PUB)
        self.md.bind(endpoints.md)
        self.pull = ctx.socket(zmq.PULL)
        self.pull.bind(endpoints.order)
        self.rep = self._report_pub()
        self.journal: list[OrderReport] = []
        self.hellos: list[Hello] = []
        self.heartbeats = 0

    def _report_pub(self) -> zmq.Socket[Any]:
        pub = self.ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.bind(self.endpoints.report)
        return pub

    def restart_reports(self, lost: OrderReport) -> None:
        """The report publisher goes away; ``lost`` is journaled and published while nobody listens;
        the publisher comes back on the same endpoint (the strategy's socket reconnects)."""
        self.rep.close(linger=0)
        self.journal.append(lost)
        self.rep = self._report_pub()

    def publish(self, r: OrderReport) -> None:
        self.journal.append(r)
        self.rep.send(wire.encode_message(r))

    def serve(self, timeout_ms: int = 0) -> None:
        """Answer what the strategy sent (waiting up to ``timeout_ms`` for the first request)."""
        if not self.pull.poll(timeout_ms):
            return
        while True:
            try:
                req = wire.parse_request(self.pull.recv(zmq.NOBLOCK))
            except zmq.Again:
                return
            if isinstance(req, Hello):
                self.hellos.append(req)
                last = self.journal[-1].seq if self.journal else 0
                self.rep.send(wire.encode_message(Welcome(SID, req.nonce, last, symbols=[S])))
                for r in self.journal:
                    if r.seq > req.last_seq:
                        self.rep.send(wire.encode_message(r))
            elif isinstance(req, Heartbeat):
                self.heartbeats += 1

    def until(self, done: Any, what: str) -> None:
        """Serve until ``done()``; fails after DEADLINE."""
        end = time.monotonic() + DEADLINE
        while not done():
            assert time.monotonic() < end, f"never happened: {what}"
            self.serve(20)

    def close(self) -> None:
        for sock in (self.md, self.pull, self.rep):
            sock.close(linger=0)


class Recorder(Strategy):
    symbols = [S]

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.events: list[tuple[str, int]] = []  # ("r", seq) / ("t", seq) / ("timer", n), in call order
        self.gate: threading.Event | None = None  # a timer that waits on it holds the loop
        self.held = threading.Event()

    def on_start(self) -> None:
        self.started.set()

    def on_order(self, report: OrderReport) -> None:
        self.events.append(("r", report.seq))

    def on_ticker(self, ticker: Ticker) -> None:
        self.events.append(("t", ticker.seq))

    def hold(self) -> None:
        """A timer's callback that holds the loop until the test opens the gate."""
        self.events.append(("timer", 0))
        self.held.set()
        assert self.gate is not None
        self.gate.wait(DEADLINE)

    def seqs(self, kind: str) -> list[int]:
        return [n for k, n in list(self.events) if k == kind]


@pytest.fixture(params=["ipc"])
def rig(request: pytest.FixtureRequest, zctx: zmq.Context[Any], tmp_path: Path) -> Any:
    if request.param == "inproc":  # a frame sent is in the receiver's pipe when send returns
        endpoints = Endpoints(*(f"inproc://{tmp_path.name}-{n}" for n in ("md", "order", "rep")))
    else:
        endpoints = Endpoints(*(f"ipc://{tmp_path}/{n}.ipc" for n in ("md", "order", "rep")))
    server = FakeServer(zctx, endpoints)
    s = Recorder()
    codes: list[int] = []
    t = threading.Thread(target=lambda: codes.append(run_strategy(s, SID, endpoints, join_timeout=DEADLINE,
                                                                  context=zctx)))  # fmt: skip
    t.start()
    try:
        server.until(s.started.is_set, "the join")
        yield server, s
    finally:
        s.stop()
        if s.gate is not None:
            s.gate.set()
        while t.is_alive():
            server.serve(20)  # the goodbye
            t.join(0.02)
        server.close()
    assert codes == [0]


def _md_arrives(server: FakeServer, s: Recorder) -> int:
    """Tickers until one reaches the strategy (the subscription travels to the publisher first); the
    last seq sent."""
    seq = 0

    def one() -> bool:
        nonlocal seq
        seq += 1
        server.md.send(_ticker(seq))
        return bool(s.seqs("t"))

    server.until(one, "a ticker")
    return seq


@pytest.mark.parametrize("rig", ["inproc"], indirect=True)
def test_a_report_that_comes_with_market_data_is_handled_first_and_once(rig: Any) -> None:
    """The loop is held in a timer while tickers and then a report arrive: when it goes on, the report
    is handled before those tickers (which all come after it, each once)."""
    server, s = rig
    sent = _md_arrives(server, s)
    server.publish(_report(1))
    server.until(lambda: s.seqs("r") == [1], "report 1")
    s.gate = threading.Event()
    s.set_timer(0.0, s.hold, repeat=False)  # from this thread: the loop reads the heap at its next turn
    server.until(s.held.is_set, "the timer")
    first = sent + 1
    for seq in range(first, first + 50):
        server.md.send(_ticker(seq))
    server.publish(_report(2))
    s.gate.set()  # inproc: the tickers and the report are in the strategy's sockets by now
    server.until(lambda: s.seqs("r") == [1, 2] and first + 49 in s.seqs("t"), "the report and the tickers")
    ev = s.events[s.events.index(("timer", 0)) :]
    assert s.seqs("r") == [1, 2]
    after = [e for e in ev if e[0] == "t"]
    assert after == sorted(set(after))
    # the report came in while the loop was held, after the tickers sent before it: handled first
    assert ev.index(("r", 2)) < ev.index(("t", first))


def test_a_ticker_flood_starves_neither_timers_nor_heartbeats_nor_reports(rig: Any) -> None:
    """Tickers without a pause: a repeating timer keeps firing, heartbeats keep coming (the server's
    dead-man), and the reports sent meanwhile each arrive once, in order."""
    server, s = rig
    seq = _md_arrives(server, s)
    fired: list[int] = []
    s.set_timer(0.05, lambda: fired.append(1))  # from this thread: the loop reads the heap at its next turn
    beats = server.heartbeats
    end = time.monotonic() + DEADLINE
    n = 0
    while len(fired) < 5 or server.heartbeats < beats + 2 or s.seqs("r") != [1, 2, 3]:
        assert time.monotonic() < end, (len(fired), server.heartbeats - beats, s.seqs("r"))
        for _ in range(200):
            seq += 1
            server.md.send(_ticker(seq))
        n += 1
        if n in (5, 50, 500):
            server.publish(_report(len(server.journal) + 1))
        server.serve(0)
    assert s.seqs("r") == [1, 2, 3]
    got = s.seqs("t")
    assert got == sorted(set(got))  # each ticker once (the publisher drops some at its high-water mark)


def test_the_report_socket_reconnecting_makes_the_strategy_rejoin_and_get_what_it_missed(
    rig: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The report publisher goes and comes back; a report published meanwhile is lost on the way. The
    reconnection makes the strategy say hello from its last seq, and the report comes, once."""
    server, s = rig
    caplog.set_level(logging.INFO, logger="seqtrade.client")
    server.publish(_report(1))
    server.until(lambda: s.seqs("r") == [1], "report 1")
    hellos = len(server.hellos)
    server.restart_reports(_report(2))
    server.until(lambda: s.seqs("r") == [1, 2], "the missed report")
    assert [h.last_seq for h in server.hellos[hellos:]][:1] == [1]
    assert "report channel (re)connected: re-joining from seq 1" in caplog.text
    server.publish(_report(3))
    server.until(lambda: s.seqs("r") == [1, 2, 3], "report 3")
    assert s.seqs("r") == [1, 2, 3]
