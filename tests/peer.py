"""A protocol-level strategy peer for tests: real ZeroMQ sockets driven from Trio, raw frames.

It speaks docs/protocol.md directly (not through seqtrade.client), so tests check the server against the
protocol text rather than against our own client library.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import trio
import zmq

from seqtrade import wire
from seqtrade.bus import TrioSocket
from seqtrade.client import Endpoints
from seqtrade.models import Hello, OrderReport, OrderRequest, OrderType, Side, Welcome
from seqtrade.security import apply_client_curve


class Peer:
    def __init__(self, ctx: zmq.Context, endpoints: Endpoints, strategy_id: str) -> None:
        self.sid = strategy_id
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
        self.pending: list[Any] = []
        self.md_pending: list[Any] = []
        self.last_seq = 0
        self.reports: list[OrderReport] = []
        self.n = 0

    def close(self) -> None:
        for s in (self.push, self.sub, self.mdsub):
            s.close()

    async def send_raw(self, frame: bytes) -> None:
        await self.push.send(frame)

    async def send(self, msg: Any) -> None:
        await self.push.send(wire.encode_message(msg))

    async def next_message(self) -> Any:
        while not self.pending:
            self.pending.extend(wire.decode_message(f) for f in await self.sub.recv_batch())
        return self.pending.pop(0)

    async def next_md(self) -> Any:
        while not self.md_pending:
            self.md_pending.extend(wire.decode_message(f) for f in await self.mdsub.recv_batch())
        return self.md_pending.pop(0)

    async def join(self, last_seq: int | None = None) -> Welcome:
        """Hello every 100 ms until our welcome; reports before it are collected in order."""
        nonce = secrets.token_hex(6)
        if last_seq is not None:
            self.last_seq = last_seq

        async def keep_saying_hello() -> None:
            while True:
                await self.send(Hello(self.sid, self.last_seq, nonce))
                await trio.sleep(0.1)

        async with trio.open_nursery() as n:
            n.start_soon(keep_saying_hello)
            while True:
                msg = await self.next_message()
                if isinstance(msg, Welcome) and msg.nonce == nonce:
                    n.cancel_scope.cancel()
                    return msg
                if isinstance(msg, OrderReport) and msg.seq == self.last_seq + 1:
                    self.last_seq = msg.seq
                    self.reports.append(msg)
                # A report past a gap while joining: our subscription went live in the middle of a
                # replay (slow joiner). docs/protocol.md: keep saying hello; the next replay brings it.

    async def report(self) -> OrderReport:
        """The next new report (duplicates by seq are dropped, as a client must)."""
        while True:
            msg = await self.next_message()
            if isinstance(msg, OrderReport) and msg.seq > self.last_seq:
                assert msg.seq == self.last_seq + 1, f"gap: {self.last_seq} -> {msg.seq}"
                self.last_seq = msg.seq
                self.reports.append(msg)
                return msg

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
