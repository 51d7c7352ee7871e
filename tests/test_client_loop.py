"""The strategy's event loop and its fast paths (issue 13, the strategy side).

- The run loop does its due work (the protocol's heartbeats and hellos, the strategy's timers, the
  queued requests) at its deadlines and after reports, not per wake-up: a timer set in a callback
  fires while market data and reports flow, every callback runs in order, and each ticker and report
  comes once (real server, real sockets, in process).
- The market-data and report drains ask the socket before a second receive (no ``zmq.Again`` per
  wake-up) and still take a whole burst in one call.
- An order helper's frame, from :class:`~seqtrade.client.orderframes.OrderFrames`' prebuilt pieces, is
  :func:`seqtrade.wire.encode_message`'s byte for byte (golden frames, any order) and reads back as
  the order asked for.
- :func:`seqtrade.wire.decode_report_frame` gives what :func:`seqtrade.wire.decode_message` gives for
  every golden frame and every broken one of tests/test_codec_golden.py (or hands it back), and for
  any order report.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
import trio
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrade import wire
from seqtrade.client import OrderReport, Strategy, Ticker, run_strategy
from seqtrade.client.orderframes import MAX_SHAPES, OrderFrames
from seqtrade.client.protocol import ClientProtocol, Report
from seqtrade.client.runner import Connection, Endpoints, _Shell
from seqtrade.errors import WireError
from seqtrade.models import OrderRequest, OrderStatus, OrderType, Side

from .test_codec_golden import FRAMES, MESSAGES, _cases

S = "BTC-USDT"


async def test_timers_set_in_callbacks_fire_while_tickers_and_reports_flow(server, endpoints, zctx):
    """Tickers come (the market moves), an order fills, and timers set in on_ticker and in on_order
    fire on their deadlines in between; every report once, in seq order, each ticker once."""

    class Flow(Strategy):
        symbols = [S]

        def on_start(self) -> None:
            self.events: list[str] = []  # the timers'
            self.statuses: list[str] = []
            self.seqs: list[int] = []
            self.tickers: list[int] = []
            self.coid = self.buy_market(S, 0.01)

        def on_ticker(self, ticker: Ticker) -> None:
            self.tickers.append(ticker.seq)
            if len(self.tickers) == 1:
                self.set_timer(0.05, lambda: self.events.append("ticker timer"), repeat=False)

        def on_order(self, report: OrderReport) -> None:
            self.seqs.append(report.seq)
            self.statuses.append(str(report.status))
            if report.status == "filled":
                self.set_timer(0.05, self.done, repeat=False)

        def done(self) -> None:
            self.events.append("order timer")
            if "ticker timer" in self.events:
                self.stop()
            else:
                self.set_timer(0.05, self.done, repeat=False)

    s = Flow()
    async with trio.open_nursery() as nursery:

        async def market() -> None:
            bid = 100.0
            while True:
                bid += 0.1
                await server.venue.set_market(S, round(bid, 1), round(bid + 0.2, 1))
                await trio.sleep(0.005)

        nursery.start_soon(market)
        with trio.fail_after(20):
            code = await trio.to_thread.run_sync(lambda: run_strategy(s, "flow", endpoints, join_timeout=10,
                                                                      context=zctx))  # fmt: skip
        nursery.cancel_scope.cancel()
    assert code == 0
    assert (
        s.statuses == ["accepted", "filled"] and s.events[-1] == "order timer" and "ticker timer" in s.events
    )
    assert s.seqs == list(range(s.seqs[0], s.seqs[0] + len(s.seqs)))
    assert s.tickers and s.tickers == sorted(set(s.tickers))


class _Count(Strategy):
    def on_start(self) -> None:
        self.got: list[int] = []

    def on_ticker(self, ticker: Ticker) -> None:
        self.got.append(ticker.seq)


def _ticker(seq: int) -> bytes:
    return wire.encode_message(
        Ticker(S, 1_764_500_000_000, 100.0, 99.9, 100.1, 1.0, 1.0, 10.0, seq, time.time_ns())
    )


def test_drain_md_takes_a_burst_in_one_call_and_a_single_frame_without_waiting(zctx, tmp_path):
    """One frame: handled, and the call returns (the socket asked, not a receive that fails); a burst:
    all of it in one call; a frame that comes later: the next call's."""
    pub, sub = zctx.socket(zmq.PUB), zctx.socket(zmq.SUB)
    pub.bind(f"ipc://{tmp_path}/md.ipc")
    sub.setsockopt(zmq.SUBSCRIBE, b"ticker/")
    sub.connect(f"ipc://{tmp_path}/md.ipc")
    s = _Count()
    s.on_start()
    shell = _Shell(s, None, ClientProtocol("c"))  # type: ignore[arg-type]  # drain_md sends nothing
    seq = 0
    while not sub.poll(10):  # the subscription reaches the publisher: send until one arrives
        seq += 1
        pub.send(_ticker(seq))
    shell.drain_md(sub)
    first = list(s.got)
    assert first and first == list(range(first[0], seq + 1))
    for n in (1, 200):
        s.got.clear()
        for _ in range(n):
            seq += 1
            pub.send(_ticker(seq))
        assert sub.poll(5000)
        while len(s.got) < n:  # frames still on their way through libzmq's I/O thread: wait for them
            assert sub.poll(5000)
            shell.drain_md(sub)
        assert s.got == list(range(seq - n + 1, seq + 1))
    assert not sub.poll(0)


# --------------------------------------------------------------------------- decode_report_frame


def _same(frame: bytes) -> None:
    fast = wire.decode_report_frame(frame)
    try:
        slow = wire.decode_message(frame)
    except WireError:
        assert fast is None
        return
    if fast is not None:
        assert type(slow) is OrderReport and repr(fast) == repr(slow)
        assert type(fast.status) is OrderStatus


def test_decode_report_frame_is_decode_message_on_every_golden_and_broken_frame():
    seen = 0
    for _name, frame in _cases():
        _same(frame)
        seen += wire.decode_report_frame(frame) is not None
    assert seen > 100  # the broken order reports it takes: extra keys, optional keys missing, ...
    for name, msg in MESSAGES.items():
        frame = bytes.fromhex(FRAMES[name])
        fast = wire.decode_report_frame(frame)
        assert (fast == msg) if type(msg) is OrderReport else fast is None


statuses = st.sampled_from(list(OrderStatus))
finite = st.floats(allow_nan=False)
text = st.text(max_size=70)


@settings(max_examples=300)
@given(st.builds(OrderReport, seq=st.integers(1, 2**63), client_order_id=text, exchange_order_id=text,
                 strategy_id=st.from_regex(wire.STRATEGY_ID_RE, fullmatch=True), symbol=text, side=text,
                 order_type=text, price=finite, quantity=finite, status=statuses, filled_quantity=finite,
                 filled_price=finite, last_fill_quantity=finite, last_fill_price=finite, fee=finite,
                 error_msg=text, timestamp=st.integers(0, 2**63), gw_ns=st.integers(0, 2**64 - 1)))  # fmt: skip
def test_decode_report_frame_of_any_order_report_is_the_report(r: OrderReport):
    frame = wire.encode_message(r)
    assert wire.decode_report_frame(frame) == r == wire.decode_message(frame)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["seq", "client_order_id", "strategy_id", "status", "price", "fee", "side",
                                        "gw_ns", "type"]),
                       st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=12)
                       | st.sampled_from(["accepted", "filled", "order_report"]) | st.lists(st.integers(0, 9), max_size=2)))  # fmt: skip
def test_decode_report_frame_of_any_body_agrees_or_hands_back(body: dict[str, Any]):
    body = {"type": "order_report", **body} if "type" not in body else body
    _same(b"report/s1/" + wire._pack(body))


def test_the_protocol_gives_the_same_event_through_the_fast_path():
    """receive_report_frame of an order report frame: the Report of decode_message's model; a welcome
    and a broken frame as before."""
    r = (
        MESSAGES["order_report"]
        if "order_report" in MESSAGES
        else next(m for m in MESSAGES.values() if type(m) is OrderReport)
    )
    p = ClientProtocol(r.strategy_id, last_seq=r.seq - 1)
    ev = p.receive_report_frame(wire.encode_message(r), 1.0)
    assert isinstance(ev, Report) and ev.report == r and p.last_seq == r.seq
    assert p.receive_report_frame(b"report/" + r.strategy_id.encode() + b"/\xc1", 1.0) is None
    assert not math.isnan(p.last_seq)


@pytest.mark.parametrize("status", list(OrderStatus))
def test_every_status_takes_the_fast_path(status: OrderStatus):
    r = OrderReport(7, "c-1", "x", "s1", S, "buy", "limit", 100.0, 1.0, status, timestamp=1, gw_ns=2)
    fast = wire.decode_report_frame(wire.encode_message(r))
    assert fast == r and fast is not None and fast.status is status


# --------------------------------------------------------------------------- order frames


def test_order_frames_are_the_golden_frames():
    seen = 0
    for name, msg in MESSAGES.items():
        if type(msg) is OrderRequest:
            frames = OrderFrames(msg.strategy_id)
            args = (msg.client_order_id, msg.symbol, msg.side, msg.order_type, msg.price, msg.quantity, msg.timestamp,
                    msg.reduce_only)  # fmt: skip
            assert frames.frame(*args) == bytes.fromhex(FRAMES[name]), name
            assert frames.frame(*args) == bytes.fromhex(FRAMES[name]), name  # from the kept shape
            seen += 1
    assert seen >= 8


numbers = st.floats() | st.integers(-(2**63), 2**64 - 1)


@settings(max_examples=500)
@given(st.from_regex(wire.STRATEGY_ID_RE, fullmatch=True), st.text(max_size=70), st.text(max_size=80),
       st.sampled_from(list(Side)), st.sampled_from(list(OrderType)), st.none() | numbers, numbers,
       st.integers(-(2**63), 2**64 - 1), st.booleans())  # fmt: skip
def test_order_frames_are_encode_message_byte_for_byte(
    sid: str,
    coid: str,
    symbol: str,
    side: Side,
    ot: OrderType,
    price: Any,
    qty: Any,
    ts: int,
    reduce_only: bool,
):
    frames = OrderFrames(sid)
    want = wire.encode_message(OrderRequest(sid, coid, symbol, side, ot, price, qty, ts, reduce_only))
    assert frames.frame(coid, symbol, side, ot, price, qty, ts, reduce_only) == want
    assert frames.frame(coid, symbol, side, ot, price, qty, ts, reduce_only) == want


def test_the_shapes_kept_are_bounded():
    frames = OrderFrames("s1")
    for i in range(MAX_SHAPES + 10):
        frames.frame("c", f"S{i}", Side.BUY, OrderType.LIMIT, 1.0, 1.0, 1)
    assert len(frames._shapes) <= MAX_SHAPES
    want = wire.encode_message(OrderRequest("s1", "c", "S0", Side.BUY, OrderType.LIMIT, 1.0, 1.0, 1))
    assert frames.frame("c", "S0", Side.BUY, OrderType.LIMIT, 1.0, 1.0, 1) == want


def test_the_order_helpers_send_what_the_server_reads_and_the_codec_writes(zctx, tmp_path):
    """Every helper through a real PUSH socket: the server's parse_request reads each frame as the order
    asked for, and encode_message of what it read is the same frame."""
    pull = zctx.socket(zmq.PULL)
    pull.bind(f"ipc://{tmp_path}/order.ipc")
    conn = Connection(Endpoints(f"ipc://{tmp_path}/md.ipc", f"ipc://{tmp_path}/order.ipc",
                                f"ipc://{tmp_path}/report.ipc"), "s1", context=zctx)  # fmt: skip
    s = Strategy()
    s.symbols, s.strategy_id, s._conn = [S, "ETH-USDT"], "s1", conn
    try:
        coids = [
            s.buy_limit(S, 100.5, 0.25),
            s.sell_limit("ETH-USDT", 3000, 2, order_type="post_only", reduce_only=True),
            s.buy_market(S, 0.001),
            s.sell_market(S, 1, reduce_only=True),
            s.buy_limit(S, 99.0, 1.0, order_type="ioc"),
        ]
        want = [(S, Side.BUY, OrderType.LIMIT, 100.5, 0.25, False),
                ("ETH-USDT", Side.SELL, OrderType.POST_ONLY, 3000.0, 2.0, True),
                (S, Side.BUY, OrderType.MARKET, None, 0.001, False), (S, Side.SELL, OrderType.MARKET, None, 1.0, True),
                (S, Side.BUY, OrderType.IOC, 99.0, 1.0, False)]  # fmt: skip
        for coid, (sym, side, ot, price, qty, ro) in zip(coids, want, strict=True):
            assert pull.poll(5000)
            frame = pull.recv()
            req = wire.parse_request(frame)
            assert isinstance(req, OrderRequest)
            assert (req.client_order_id, req.symbol, req.side, req.order_type, req.price, req.quantity,
                    req.reduce_only) == (coid, sym, side, ot, price, qty, ro)  # fmt: skip
            assert wire.encode_message(req) == frame
    finally:
        conn.close()
