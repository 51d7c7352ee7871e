"""A protocol-level strategy peer for tests: real ZeroMQ sockets driven from Trio.

It joins, de-duplicates and re-joins through :class:`seqtrade.client.protocol.ClientProtocol`, the
object the product's strategy loop drives, so server tests exercise the protocol the product runs.
It sends and reads raw frames otherwise (no ``Strategy``), and it never starts the protocol's run
phase: no heartbeats or periodic hellos interleave with what a test sends.
"""

from __future__ import annotations

import math
import time
from typing import Any

import trio
import zmq

from seqtrade import wire
from seqtrade.bus import TrioSocket
from seqtrade.client import Endpoints
from seqtrade.client.protocol import ClientProtocol, Refused, Report, Synced
from seqtrade.models import OrderReport, OrderRequest, OrderType, Refusal, Side, Welcome
from seqtrade.security import apply_client_curve


class Peer:
    def __init__(self, ctx: zmq.Context, endpoints: Endpoints, strategy_id: str) -> None:
        self.proto = ClientProtocol(strategy_id)
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        curve = endpoints.curve
        if curve is not None:
            apply_client_curve(push, endpoints.order, curve)
        push.connect(endpoints.order)
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, wire.topic("report", strategy_id))
        if curve is not None:  # tcp:// with CurveZMQ; without keys a tcp peer connects plain (refusal tests)
            apply_client_curve(sub, endpoints.report, curve)
        sub.connect(endpoints.report)
        md = ctx.socket(zmq.SUB)
        md.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            apply_client_curve(md, endpoints.md, curve)
        md.connect(endpoints.md)
        self.push, self.sub, self.mdsub = TrioSocket(push), TrioSocket(sub), TrioSocket(md)
        self.pending: list[Any] = []  # report-channel messages received, not yet read
        self.md_pending: list[Any] = []
        self.reports: list[OrderReport] = []  # every report the protocol handed over, in seq order
        self.n = 0

    # The strategy id and the last seq handled are the protocol's; a test may set them (a peer that
    # takes another id, or starts as a process that has handled some reports already).
    @property
    def sid(self) -> str:
        return self.proto.strategy_id

    @sid.setter
    def sid(self, strategy_id: str) -> None:
        self.proto = ClientProtocol(strategy_id, last_seq=self.proto.last_seq)

    @property
    def last_seq(self) -> int:
        return self.proto.last_seq

    @last_seq.setter
    def last_seq(self, seq: int) -> None:
        self.proto.last_seq = seq

    def close(self) -> None:
        for s in (self.push, self.sub, self.mdsub):
            s.close()

    async def send_raw(self, frame: bytes) -> None:
        await self.push.send(frame)

    async def send(self, msg: Any) -> None:
        await self.push.send(wire.encode_message(msg))

    async def next_message(self) -> Any:
        """The next message on the report channel, raw (the protocol does not see it)."""
        while not self.pending:
            self.pending.extend(wire.decode_message(f) for f in await self.sub.recv_batch())
        return self.pending.pop(0)

    async def next_md(self) -> Any:
        while not self.md_pending:
            self.md_pending.extend(wire.decode_message(f) for f in await self.mdsub.recv_batch())
        return self.md_pending.pop(0)

    async def _flush(self) -> None:
        for msg in self.proto.requests_to_send():
            await self.send(msg)

    async def _next_event(self) -> Report | Synced | Refused:
        """Feed the protocol until it hands over an event, sending what it asks for on the way
        (a hello every 100 ms while one is in flight, as the product's loop does)."""
        while True:
            self.proto.tick(trio.current_time(), time.time_ns() // 1_000_000)
            await self._flush()
            wake = self.proto.next_wakeup()
            with trio.move_on_at(math.inf if wake is None else wake) as waited:
                msg = await self.next_message()
            if waited.cancelled_caught:
                continue
            ev = self.proto.receive_report(msg, trio.current_time())
            await self._flush()
            if ev is not None:
                return ev

    async def join(self, last_seq: int | None = None) -> Welcome:
        """Join as the product does: hello until the welcome, then the reports up to its last seq,
        collected in order; returns the welcome once we hold them all."""
        welcome = await self.try_join(last_seq)
        assert isinstance(welcome, Welcome), f"refused: {welcome.reason}"
        return welcome

    async def try_join(self, last_seq: int | None = None) -> Welcome | Refusal:
        """:meth:`join`, or the server's refusal."""
        if last_seq is not None:
            self.last_seq = last_seq
        self.proto.hello(trio.current_time())
        await self._flush()
        while True:
            ev = await self._next_event()
            if isinstance(ev, Report):
                self.reports.append(ev.report)
                if ev.synced is not None:
                    return ev.synced.welcome
            elif isinstance(ev, Synced):
                return ev.welcome
            else:
                return ev.refusal

    async def report(self) -> OrderReport:
        """The next new report (duplicates by seq are dropped, as a client must). Once joined, the
        server must never leave a gap: one fails the test."""
        gaps = self.proto.report_gaps
        while True:
            ev = await self._next_event()
            assert self.proto.report_gaps == gaps, f"gap after report seq {self.last_seq}"
            if isinstance(ev, Report):
                self.reports.append(ev.report)
                return ev.report
            assert not isinstance(ev, Refused), f"refused: {ev.refusal.reason}"

    def coid(self) -> str:
        self.n += 1
        return f"{self.sid}-{self.n}"

    async def order(
        self,
        symbol: str,
        side: str,
        order_type: str,
        price: float | None,
        qty: float,
        coid: str | None = None,
    ) -> str:
        coid = coid or self.coid()
        await self.send(OrderRequest(self.sid, coid, symbol, Side(side), OrderType(order_type), price, qty,
                                     time.time_ns() // 1_000_000))  # fmt: skip
        return coid
