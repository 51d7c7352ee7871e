"""The strategy process's loop in a backtest (runner._run_backtest_loop): a blocking receive on the
market-data socket instead of a poll of both sockets, and the reports a window names read before its
market data. A fake server on real ipc sockets (plain pyzmq in the test's thread) plays windows to a
real :func:`seqtrade.client.run_strategy` on its own thread, started as a backtest starts it (the
virtual clock's environment variable set)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from seqtrade import wire
from seqtrade.client import Strategy, run_strategy
from seqtrade.client.runner import Endpoints
from seqtrade.models import Book, OrderReport, OrderStatus, OrderType, Side, Welcome
from seqtrade.vclock import VIRTUAL_CLOCK_ENV, Window

S = "BTC-USDT"
T0 = 1_790_000_000_000_000_000
MS = 1_000_000


class _Seen(Strategy):
    """Writes down its callbacks; buys on books 2 and 3; stops on book 4."""

    symbols = [S]

    def on_start(self) -> None:
        self.seen: list[str] = []
        self.set_timer(0.0015, lambda: self.seen.append(f"timer@{self._now_ns() - T0}"))

    def on_book(self, b: Book) -> None:
        self.seen.append(f"book {b.seq} @{self._now_ns() - T0}")
        if b.seq in (2, 3):
            self.buy_limit(S, 100.0, 0.01)
        if b.seq == 4:
            self.stop()

    def on_order(self, r: OrderReport) -> None:
        self.seen.append(f"order {r.seq} {r.status}")


class _Server:
    """The server's three sockets, bound; what the strategy sends, read in order."""

    def __init__(self, ctx: zmq.Context[Any], d: Path) -> None:
        self.endpoints = Endpoints.from_run_dir(d)
        self.md, self.rep, self.order = (ctx.socket(t) for t in (zmq.PUB, zmq.PUB, zmq.PULL))
        for sock, addr in ((self.md, self.endpoints.md), (self.rep, self.endpoints.report),
                           (self.order, self.endpoints.order)):  # fmt: skip
            sock.bind(addr)

    def request(self, timeout_ms: int = 10_000) -> dict[str, Any] | None:
        """The next request the strategy sent (a hello answered with a welcome), None after ``timeout_ms``."""
        if not self.order.poll(timeout_ms):
            return None
        d: dict[str, Any] = msgpack.unpackb(self.order.recv().split(b"/", 2)[2])
        if d["type"] == "hello":
            self.rep.send(wire.encode_message(Welcome("s1", d["nonce"], 0, symbols=[S])))
        return d

    def until(self, typ: str, step: int = 0) -> dict[str, Any]:
        """The next request of type ``typ`` (a ``sync_ack`` of ``step``), skipping the others."""
        while (d := self.request()) is not None:
            if d["type"] == typ and d.get("step", 0) == step:
                return d
        raise AssertionError(f"no {typ} came")

    def window(self, step: int, books: list[int], reports: int = 0) -> None:
        md = [Book(S, 1, [[100.0, 1.0]], [[100.5, 1.0]], seq, T0 + (step - 1) * MS + seq) for seq in books]
        self.md.send(
            wire.encode_message(Window("backtest", T0 + step * MS, step, {"s1": reports}, step, 0, md))
        )

    def close(self) -> None:
        for sock in (self.md, self.rep, self.order):
            sock.close(linger=0)


@contextmanager
def _running(
    srv: _Server, s: Strategy, zctx: zmq.Context[Any], books: list[int]
) -> Iterator[tuple[threading.Thread, list[int]]]:
    """``s`` run on a thread of its own (its exit code in the list), joined and answering window 1 (the
    books ``books``, sent again until the strategy's subscription is in and it answers)."""
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(run_strategy(s, "s1", srv.endpoints, join_timeout=10,
                                                                   context=zctx)))  # fmt: skip
    t.start()
    try:
        srv.until("heartbeat")  # joined and started
        while True:
            srv.window(1, books)
            d = srv.request(50)
            if d is not None and d["type"] == "sync_ack":
                break
        yield t, result
    finally:
        s.stop()
        t.join(10)
        srv.close()


def _report(seq: int, coid: str) -> bytes:
    return wire.encode_message(OrderReport(seq, coid, f"x{seq}", "s1", S, Side.BUY, OrderType.LIMIT, 100.0, 0.01,
                                           OrderStatus.ACCEPTED, timestamp=T0))  # fmt: skip


def test_a_backtest_strategy_reads_the_reports_a_window_names_before_its_market_data(
    tmp_path: Path, zctx: zmq.Context[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window naming report 1 goes out first and its report after it (and only once the strategy
    could have handed the window's book over and sent what it sends for it): the strategy still
    reads the report first, then the book, then answers. Its clock is the windows' and its timer runs
    on a window's sync; its orders come before the ``sync_ack`` of the window they were sent in; a
    ``stop()`` in a callback ends the process's loop."""
    monkeypatch.setenv(VIRTUAL_CLOCK_ENV, "1")  # as a backtest starts its strategies
    srv = _Server(zctx, tmp_path)
    s = _Seen()
    with _running(srv, s, zctx, []) as (t, result):
        srv.window(2, [1, 2])
        order = srv.until("order_request")
        srv.until("sync_ack", 2)
        srv.window(3, [3], reports=1)  # names report 1, which comes only after it
        early = srv.request(300)  # (window 3's book handed over before the report: its order)
        srv.rep.send(_report(1, order["client_order_id"]))
        assert early is None or early["type"] != "order_request", "window 3's book came before its report"
        assert srv.until("order_request")["timestamp"] == (T0 + 2 * MS) // MS  # sent at the clock's time
        srv.until("sync_ack", 3)
        srv.window(4, [4])
        t.join(10)
        assert not t.is_alive() and result == [0]
    assert s.seen == ["book 1 @1000000", "book 2 @1000000", "order 1 accepted", "book 3 @2000000",
                      "timer@3000000", "book 4 @3000000", "timer@4000000"]  # fmt: skip


def test_a_backtest_strategy_reads_a_report_no_window_names_while_no_window_comes(
    tmp_path: Path, zctx: zmq.Context[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wait is on the market-data socket only: a report that comes with no window behind it (none
    names it) is read by the due work all the same, and its ``on_order`` can stop the strategy."""

    class StopOnOrder(_Seen):
        def on_order(self, r: OrderReport) -> None:
            super().on_order(r)
            self.stop()

    monkeypatch.setenv(VIRTUAL_CLOCK_ENV, "1")
    srv = _Server(zctx, tmp_path)
    s = StopOnOrder()
    with _running(srv, s, zctx, [1]) as (t, result):  # one window answered: the strategy waits in its loop
        srv.rep.send(_report(1, "bt-x"))  # and nothing on the market-data socket after it
        t.join(10)
        assert not t.is_alive() and result == [0]
    assert s.seen[-1] == "order 1 accepted"


def test_a_backtest_strategy_stopped_while_it_waits_is_handed_the_reports_that_came_first(
    tmp_path: Path, zctx: zmq.Context[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end of a backtest: the last window's reports (its orders' fills, acceptances, rejects) come
    with no window behind them, then the process is stopped (SIGTERM: ``stop()`` from outside its
    callbacks) while it waits on its market-data socket. What reached its report socket before the
    stop is handed to ``on_order`` before ``on_stop``, as the poll of both sockets handed it over.
    (The report goes out before a window that does not name it, and the stop once that window is
    answered: by then the report is in the socket, and no window will come to name it.)"""

    class Ends(_Seen):
        def on_stop(self) -> None:
            self.seen.append("stop")

    monkeypatch.setenv(VIRTUAL_CLOCK_ENV, "1")
    srv = _Server(zctx, tmp_path)
    s = Ends()
    with _running(srv, s, zctx, [1]) as (t, result):  # one window answered: the strategy waits in its loop
        srv.rep.send(_report(1, "bt-x"))  # the last window's report
        srv.window(2, [])  # (names report 0: the report is not waited for)
        srv.until("sync_ack", 2)
        s.stop()  # as SIGTERM's handler does, while the loop waits
        t.join(10)
        assert not t.is_alive() and result == [0]
    assert s.seen[-2:] == ["order 1 accepted", "stop"]
