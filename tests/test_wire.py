"""The wire codec against docs/protocol.md: round trips, prefix exactness, and every kind of bad input."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seqtrade import wire
from seqtrade.errors import WireError
from seqtrade.models import (
    AmendRequest,
    Book,
    CancelAll,
    CancelRequest,
    Heartbeat,
    Hello,
    OrderReport,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Ticker,
    Trade,
    VenueStatus,
    Welcome,
)

ids = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
coids = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
symbols = st.from_regex(r"[A-Z0-9][A-Z0-9-]{0,20}", fullmatch=True)
pos = st.floats(min_value=1e-9, max_value=1e12, allow_nan=False, allow_infinity=False)
ms = st.integers(min_value=0, max_value=2**53)


@given(symbols, ms, pos, pos, pos, pos, pos, pos, st.integers(0, 2**40))
def test_ticker_round_trip(sym, ts, a, b, c, d, e, f, seq):
    t = Ticker(sym, ts, a, b, c, d, e, f, seq, 123)
    frame = wire.encode_message(t)
    assert frame.startswith(f"ticker/{sym}/".encode())
    assert wire.decode_message(frame) == t


@given(ids, coids, symbols, st.sampled_from(list(Side)), st.sampled_from(list(OrderType)), pos, pos, ms)
def test_order_request_round_trip(sid, coid, sym, side, ot, price, qty, ts):
    req = OrderRequest(sid, coid, sym, side, ot, None if ot is OrderType.MARKET else price, qty, ts)
    assert wire.parse_request(wire.encode_message(req)) == req


@given(ids, coids, st.sampled_from(list(OrderStatus)), pos, pos, st.integers(1, 2**40), st.text(max_size=50))
def test_report_and_welcome_round_trip(sid, coid, status, px, qty, seq, err):
    r = OrderReport(seq, coid, "ex1", sid, "BTC-USDT", "buy", "limit", px, qty, status, qty / 2, px, qty / 4,
                    px, 0.1, err, 1700000000000, 5)  # fmt: skip
    assert wire.decode_message(wire.encode_message(r)) == r
    w = Welcome(sid, "n1", seq, [r], 1, 9)
    frame = wire.encode_message(w)
    assert frame.startswith(f"report/{sid}/".encode())
    assert wire.decode_message(frame) == w


def test_other_messages_round_trip():
    msgs = [
        CancelRequest("s1", "c1"),
        AmendRequest("s1", "c1", 10.5, None),
        AmendRequest("s1", "c1", None, 2.0),
        CancelAll("s1", None),
        CancelAll("s1", "ETH-USDT"),
        Hello("s1", 7, "abc", 1),
        Hello("s1", 0, 12345, 1),
        Heartbeat("s1", 1700000000000),
    ]
    for m in msgs:
        assert wire.parse_request(wire.encode_message(m)) == m
    b = Book("BTC-USDT", 1, [[1.0, 2.0]], [[3.0, 4.0]], 2, 3)
    assert wire.decode_message(wire.encode_message(b)) == b
    tr = Trade("BTC-USDT", 1, "77", 1.5, 2.5, "sell", 4, 5)
    assert wire.decode_message(wire.encode_message(tr)) == tr
    vs = VenueStatus("paper", True, ["BTC-USDT"], 5, 6, 7)
    f = wire.encode_message(vs)
    assert f.startswith(b"status/paper/")
    assert wire.decode_message(f) == vs


def test_topic_prefix_is_exact():
    # ZeroMQ SUB matches byte prefixes: the trailing '/' is what keeps these apart.
    assert not wire.topic("ticker", "BTC-USDT-SWAP").startswith(wire.topic("ticker", "BTC-USDT"))
    assert not wire.topic("report", "s10").startswith(wire.topic("report", "s1"))
    assert wire.topic("ticker", "BTC-USDT").startswith(b"ticker/")
    with pytest.raises(WireError):
        wire.topic("ticker", "BTC/USDT")


def frame(kind: str, body: object, key: str = "s1") -> bytes:
    return f"{kind}/{key}/".encode() + msgpack.packb(body)


def good_order(**over: object) -> dict:
    d = {"type": "order_request", "client_order_id": "c-1", "strategy_id": "s1", "symbol": "BTC-USDT",
         "side": "buy", "order_type": "limit", "price": 100.0, "quantity": 1.0, "timestamp": 1}  # fmt: skip
    d.update(over)
    return {k: v for k, v in d.items() if v is not ...}


BAD = [
    (b"", "topic"),
    (b"no topic at all", "topic"),
    (b"order_request/s1/\xc1", "MessagePack"),
    (b"order_request/s1/" + msgpack.packb([1, 2]), "map"),
    (frame("order_request", good_order(type="cancel_request")), "does not match topic"),
    (frame("nonsense", good_order()), "unknown request type"),
    (frame("order_request", good_order(strategy_id="s2")), "does not match topic key"),
    (frame("order_request", good_order(price=float("nan"))), "finite"),
    (frame("order_request", good_order(price=float("inf"))), "finite"),
    (frame("order_request", good_order(quantity=-1.0)), "positive"),
    (frame("order_request", good_order(quantity=0)), "positive"),
    (frame("order_request", good_order(quantity="1")), "must be a number"),
    (frame("order_request", good_order(quantity=True)), "must be a number"),
    (frame("order_request", good_order(price=...)), "missing key 'price'"),
    (frame("order_request", good_order(side="long")), "'side'"),
    (frame("order_request", good_order(order_type="stop")), "'order_type'"),
    (frame("order_request", good_order(client_order_id="has space")), "client_order_id"),
    (frame("order_request", good_order(client_order_id="x" * 65)), "client_order_id"),
    (frame("order_request", good_order(symbol="A/B")), "symbol"),
    (frame("order_request", good_order(timestamp="now")), "timestamp"),
    (frame("amend_request", {"type": "amend_request", "strategy_id": "s1", "client_order_id": "c"}), "price"),
    (
        frame("hello", {"type": "hello", "strategy_id": "s1", "last_seq": -1, "nonce": "n", "protocol": 1}),
        ">= 0",
    ),
    (
        frame("hello", {"type": "hello", "strategy_id": "s1", "last_seq": 0, "nonce": "n", "protocol": 2}),
        "protocol",
    ),
    (
        frame("hello", {"type": "hello", "strategy_id": "s1", "last_seq": 0, "nonce": [1], "protocol": 1}),
        "nonce",
    ),
    (
        frame("heartbeat", {"type": "heartbeat", "strategy_id": "bad id!", "timestamp": 1}, key="bad id!"),
        "strategy_id",
    ),
]


@pytest.mark.parametrize(("raw", "expect"), BAD)
def test_bad_input_has_a_clear_error(raw: bytes, expect: str):
    with pytest.raises(WireError, match=expect):
        wire.parse_request(raw)


def test_error_carries_what_could_be_read():
    with pytest.raises(WireError) as ei:
        wire.parse_request(frame("order_request", good_order(price=-5.0)))
    assert (ei.value.strategy_id, ei.value.client_order_id, ei.value.type) == ("s1", "c-1", "order_request")
    with pytest.raises(WireError) as ei:
        wire.parse_request(b"order_request/s1/\xc1garbage")
    assert ei.value.strategy_id == "s1" and ei.value.client_order_id is None


def test_size_limit_and_deep_nesting():
    with pytest.raises(WireError, match="exceeds"):
        wire.parse_request(b"order_request/s1/" + b"\x00" * 70_000)
    deep = b"\x91" * 60_000 + b"\x01"
    with pytest.raises(WireError):
        wire.parse_request(b"order_request/s1/" + deep, max_bytes=100_000)


def test_int_accepted_where_float_expected():
    req = wire.parse_request(frame("order_request", good_order(price=100, quantity=2)))
    assert isinstance(req, OrderRequest) and req.price == 100.0 and isinstance(req.quantity, float)


def test_unknown_keys_are_ignored():
    req = wire.parse_request(frame("order_request", good_order(extra="x")))
    assert isinstance(req, OrderRequest)
    t = Ticker("X", 1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1, 1)
    f = wire.encode_message(t)
    _, _, body = wire.decode_frame(f)
    body["future_key"] = [1, 2]
    assert wire.decode_message(b"ticker/X/" + msgpack.packb(body)) == t


@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_wire_error(data: bytes):
    for prefix in (b"", b"order_request/s1/", b"hello/s1/", b"amend_request/s1/"):
        try:
            wire.parse_request(prefix + data)
        except WireError:
            pass


def test_market_order_may_omit_price():
    req = wire.parse_request(frame("order_request", good_order(order_type="market", price=...)))
    assert isinstance(req, OrderRequest) and req.price is None
    assert not math.isnan(req.quantity)
