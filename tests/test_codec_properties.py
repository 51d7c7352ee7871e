"""The codec table's promises, for every entry: decode(encode(m)) == m, each frame under its entry's
topic, strict decoding that fails only with WireError (carrying what it could read), and dispatch
tables that refuse to be incomplete."""

from __future__ import annotations

import pickle
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrade import wire
from seqtrade.candles import BARS, MAX_HISTORY, Candle, History, HistoryRequest
from seqtrade.errors import WireError
from seqtrade.feedhealth import FeedsStatus, FeedStatus
from seqtrade.instruments import Instrument, InstrumentKind
from seqtrade.models import (
    AccountEvent,
    AccountEventKind,
    AmendRequest,
    Book,
    BookStatus,
    BookUpdate,
    CancelAll,
    CancelRequest,
    Depth,
    FundingRate,
    Goodbye,
    Heartbeat,
    Hello,
    MarkPrice,
    OrderReport,
    OrderRequest,
    OrderStatus,
    OrderType,
    PriceLimit,
    Refusal,
    Side,
    Ticker,
    Trade,
    VenueStatus,
    Welcome,
)
from seqtrade.vclock import Sync, SyncAck, Window

ids = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
coids = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
symbols = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)
texts = st.text(max_size=40)
floats = st.floats(allow_nan=False)  # any float but NaN (NaN != NaN), infinities included
pos = st.floats(min_value=1e-12, max_value=1e300, allow_nan=False, allow_infinity=False)
u63 = st.integers(min_value=0, max_value=2**63 - 1)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
levels = st.lists(st.tuples(floats, floats).map(list), max_size=5)
side_names = st.sampled_from(["buy", "sell", ""]) | texts

reports = st.builds(
    OrderReport, u63, coids, texts, ids, symbols, side_names, texts, floats, floats, st.sampled_from(OrderStatus),
    floats, floats, floats, floats, floats, texts, u63, u64,
)  # fmt: skip

bars = st.sampled_from(sorted(BARS))
candles = st.builds(
    Candle, symbols, bars, u63, floats, floats, floats, floats, floats, st.booleans(), u63, u64
)
feeds = st.builds(FeedStatus, texts, symbols, floats, floats, u63, u63, u63, u63, u63, st.booleans())


def _history(sid: str, rid: str, symbol: str, bar: str, rows: list[tuple[int, list[float]]], error: str,
             gw_ns: int) -> History:  # fmt: skip
    return History(sid, rid, symbol, bar, [Candle(symbol, bar, t, *v, True) for t, v in rows], error, gw_ns)


instruments = st.builds(
    Instrument, symbols, pos, pos, pos, st.none(), pos, st.sampled_from(InstrumentKind), texts, texts, texts, texts,
    st.booleans(), pos, u63,
)  # fmt: skip

# One strategy per model in the codec's tables; test_every_table_entry_has_a_strategy keeps it complete.
MESSAGES: dict[type, st.SearchStrategy[Any]] = {
    Ticker: st.builds(Ticker, symbols, u63, floats, floats, floats, floats, floats, floats, u63, u64),
    Book: st.builds(Book, symbols, u63, levels, levels, u63, u64),
    Depth: st.builds(Depth, symbols, u63, levels, levels, u63, u63, u64),
    BookUpdate: st.builds(
        BookUpdate, symbols, u63, st.booleans(), u63, st.integers(-1, 2**63 - 1), levels, levels, u63, u64
    ),
    BookStatus: st.builds(
        BookStatus, symbols, st.sampled_from(["valid", "invalid", "stale"]), texts, u63, u63, u63, u64
    ),
    Trade: st.builds(Trade, symbols, u63, texts, floats, floats, side_names, u63, u64),
    VenueStatus: st.builds(VenueStatus, ids, st.booleans(), st.lists(symbols, max_size=5), u63, u63, u64),
    OrderReport: reports,
    Welcome: st.builds(
        Welcome,
        ids,
        texts | u63,
        u63,
        st.lists(reports, max_size=3),
        st.just(1),
        u64,
        st.lists(symbols, max_size=3),
        st.lists(instruments, max_size=3),
    ),
    MarkPrice: st.builds(MarkPrice, symbols, u63, floats, floats, u63, u64),
    FundingRate: st.builds(FundingRate, symbols, u63, floats, u63, u63, u63, u64),
    PriceLimit: st.builds(PriceLimit, symbols, u63, floats, floats, u63, u64),
    AccountEvent: st.builds(
        AccountEvent,
        ids,
        u63,
        st.sampled_from(AccountEventKind),
        symbols,
        st.sampled_from(["", "long", "short"]),
        floats,
        floats,
        floats,
        texts,
        texts,
        u63,
        u64,
    ),
    OrderRequest: st.one_of(
        st.builds(
            OrderRequest,
            ids,
            coids,
            symbols,
            st.sampled_from(Side),
            st.sampled_from([t for t in OrderType if t is not OrderType.MARKET]),
            pos,
            pos,
            u63,
            st.booleans(),
        ),
        st.builds(
            OrderRequest,
            ids,
            coids,
            symbols,
            st.sampled_from(Side),
            st.just(OrderType.MARKET),
            st.none() | pos,
            pos,
            u63,
        ),
    ),  # fmt: skip
    CancelRequest: st.builds(CancelRequest, ids, coids),
    AmendRequest: st.one_of(
        st.builds(AmendRequest, ids, coids, pos, st.none() | pos),
        st.builds(AmendRequest, ids, coids, st.none(), pos),
    ),
    CancelAll: st.builds(CancelAll, ids, st.none() | symbols),
    Hello: st.builds(
        Hello,
        ids,
        u63,
        st.text(max_size=128) | st.integers(-(2**63), 2**64 - 1),
        st.just(wire.PROTOCOL_VERSION),
        st.just("") | st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True),
    ),
    Heartbeat: st.builds(
        Heartbeat, ids, u63, st.just("") | st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
    ),
    Goodbye: st.builds(Goodbye, ids, st.just("") | st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)),
    Refusal: st.builds(Refusal, ids, texts | u63, texts, texts, floats),
    Candle: candles,
    FeedsStatus: st.builds(FeedsStatus, ids, u63, st.lists(feeds, max_size=4), u63, u64),
    History: st.builds(
        _history,
        ids,
        coids,
        symbols,
        bars,
        st.lists(st.tuples(u63, st.lists(floats, min_size=5, max_size=5)), max_size=4),
        texts,
        u64,
    ),  # fmt: skip
    HistoryRequest: st.builds(HistoryRequest, ids, coids, symbols, bars, st.integers(1, MAX_HISTORY)),
    Sync: st.builds(Sync, ids, u63, u63, st.dictionaries(ids, u63, max_size=4), u63, u64),
    SyncAck: st.builds(
        SyncAck,
        ids,
        u63,
        u63,
        st.just("") | st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True),
        st.booleans(),
    ),
}
# A window carries market data of any type but its own and sync.
MESSAGES[Window] = st.builds(
    Window, ids, u63, u63, st.dictionaries(ids, u63, max_size=4), u63, u64,
    st.lists(st.one_of(*(MESSAGES[c.model] for c in wire.MARKET_DATA_TYPES.values()
                         if c.model not in (Sync, Window))), max_size=2),
)  # fmt: skip
any_message = st.sampled_from(sorted(MESSAGES, key=lambda c: c.__name__)).flatmap(lambda cls: MESSAGES[cls])


def test_every_table_entry_has_a_strategy():
    assert set(MESSAGES) == set(wire.CODECS)
    assert set(wire.MESSAGE_TYPES) | set(wire.REQUEST_TYPES) == {c.type for c in wire.CODECS.values()}


def test_tables_are_split_by_channel_and_keep_the_protocol_order():
    assert list(wire.REQUEST_TYPES) == [
        "order_request", "cancel_request", "amend_request", "cancel_all", "hello", "heartbeat", "goodbye",
        "history_request", "sync_ack",
    ]  # fmt: skip
    assert list(wire.MARKET_DATA_TYPES) == [
        "ticker", "book", "trade", "status", "candle", "feed_status", "mark", "funding", "price_limit", "sync",
        "depth", "fullbook", "book_status", "window",
    ]  # fmt: skip
    assert list(wire.REPORT_TYPES) == ["order_report", "welcome", "refusal", "history", "account_event"]
    assert wire.MESSAGE_TYPES == {**wire.MARKET_DATA_TYPES, **wire.REPORT_TYPES}
    assert all(c.kind == "report" for c in wire.REPORT_TYPES.values())
    assert all(c.kind == c.type for c in (*wire.MARKET_DATA_TYPES.values(), *wire.REQUEST_TYPES.values()))


@settings(max_examples=400)
@given(any_message)
def test_decode_of_encode_is_the_message(msg: Any):
    c = wire.CODECS[type(msg)]
    assert c.decode(c.encode(msg)) == msg
    frame = wire.encode_message(msg)
    assert frame.startswith(c.topic(msg))
    kind, key, body = wire.decode_frame(frame)
    assert (kind, body["type"]) == (c.kind, c.type) and key == getattr(msg, c.key)
    if c.type in wire.REQUEST_TYPES:
        assert wire.parse_request(frame) == msg
    else:
        assert wire.decode_message(frame) == msg
    if isinstance(msg, Ticker):
        assert wire.encode_ticker(c.topic(msg), msg) == frame
        assert wire.decode_ticker_frame(frame) == msg


# Arbitrary MessagePack values, and request bodies whose envelope is right and whose keys are the ones
# the decoders read, holding anything: what reaches the per-type decoders in the product.
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=70)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
KEYS = sorted({"client_order_id", "symbol", "side", "order_type", "price", "quantity", "timestamp", "last_seq",
               "nonce", "protocol", "strategy_id", "type"})  # fmt: skip
fields = st.dictionaries(st.sampled_from(KEYS), values | coids | st.sampled_from(["buy", "limit", "market"]))


@settings(max_examples=600)
@given(st.sampled_from(list(wire.REQUEST_TYPES)), ids, fields, st.booleans())
def test_parse_request_fails_only_with_wire_error_carrying_what_it_read(
    kind: str, sid: str, body: dict[str, Any], keep_envelope: bool
):
    if keep_envelope:
        body = {**body, "type": kind, "strategy_id": sid}
    frame = wire.topic(kind, sid) + msgpack.packb(body)
    try:
        req = wire.parse_request(frame)
    except WireError as exc:
        assert exc.strategy_id == sid and exc.request_type == exc.type == kind
        coid = body.get("client_order_id")
        envelope_ok = body.get("type") == kind and body.get("strategy_id") == sid
        readable = envelope_ok and isinstance(coid, str) and wire.CLIENT_ORDER_ID_RE.match(coid)
        assert exc.client_order_id == (coid if readable else None)
    else:
        assert type(req) is wire.REQUEST_TYPES[kind].model and req.strategy_id == sid
        assert wire.parse_request(wire.encode_message(req)) == req  # what it accepted, it can say again


@settings(max_examples=300)
@given(
    st.binary(max_size=200), st.sampled_from([b"", b"x/", *(wire.topic(k, "s1") for k in wire.REQUEST_TYPES)])
)
def test_parse_request_on_arbitrary_bytes_raises_only_wire_error(data: bytes, prefix: bytes):
    try:
        wire.parse_request(prefix + data)
    except WireError as exc:
        assert exc.request_type in (None, *wire.REQUEST_TYPES)


@settings(max_examples=300)
@given(st.sampled_from(list(wire.MESSAGE_TYPES)), fields | st.dictionaries(st.text(max_size=12), values))
def test_decode_message_fails_only_with_wire_error(typ: str, body: dict[str, Any]):
    frame = wire.topic(wire.MESSAGE_TYPES[typ].kind, "k") + msgpack.packb({**body, "type": typ})
    try:
        msg = wire.decode_message(frame)
    except WireError:
        return
    assert type(msg) is wire.MESSAGE_TYPES[typ].model
    fast = wire.decode_ticker_frame(frame)
    assert fast is None or fast == msg


def test_dispatch_table_covers_its_table_exactly():
    seen: list[Any] = []
    handlers = wire.dispatch_table(
        wire.MARKET_DATA_TYPES,
        {
            m: seen.append
            for m in (
                Ticker,
                Book,
                Trade,
                VenueStatus,
                Candle,
                FeedsStatus,
                MarkPrice,
                FundingRate,
                PriceLimit,
                Sync,
                Depth,
                BookUpdate,
                BookStatus,
                Window,
            )
        },  # fmt: skip
    )
    msgs = [Ticker("X", 1, 1, 1, 1, 1, 1, 1), Book("X", 1, [], []), Trade("X", 1, "t", 1, 1, "buy"),
            VenueStatus("paper", True, [], 1), Candle("X", "1m", 0, 1, 1, 1, 1, 0, True), FeedsStatus("paper", 1),
            Depth("X", 1, [], [], 1), BookUpdate("X", 1, True, 1, -1, [], []), BookStatus("X", "valid", "", 1, 1)]  # fmt: skip
    for m in msgs:
        handlers[type(m)](m)
    assert seen == msgs
    with pytest.raises(
        ValueError,
        match=r"no handler for \['trade', 'status', 'candle', 'feed_status', 'mark', 'funding', 'price_limit',"
        r" 'sync', 'depth', 'fullbook', 'book_status', 'window'\]",
    ):
        wire.dispatch_table(wire.MARKET_DATA_TYPES, {Ticker: print, Book: print})
    with pytest.raises(ValueError, match="not in the table: \\['Hello'\\]"):
        wire.dispatch_table(wire.REPORT_TYPES, {OrderReport: print, Welcome: print, Hello: print})


def test_codec_for_a_subclass_and_for_a_stranger():
    class MyTicker(Ticker):
        __slots__ = ()

    t = MyTicker("X", 1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert wire.codec_for(MyTicker) is wire.CODECS[Ticker]
    assert wire.encode_message(t) == wire.encode_message(Ticker("X", 1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0))
    with pytest.raises(TypeError, match="not a protocol message: dict"):
        wire.encode_message({"type": "ticker"})


def test_wire_error_fields_are_real_and_the_message_is_unchanged():
    exc = WireError("order_request: missing key 'price'", strategy_id="s1", client_order_id="c1",
                    request_type="order_request")  # fmt: skip
    assert str(exc) == "order_request: missing key 'price'" and exc.args == (
        "order_request: missing key 'price'",
    )
    assert (exc.strategy_id, exc.client_order_id, exc.request_type, exc.type) == ("s1", "c1", "order_request",
                                                                                  "order_request")  # fmt: skip
    again = pickle.loads(pickle.dumps(exc))
    assert (str(again), again.strategy_id, again.client_order_id, again.request_type) == (
        str(exc), "s1", "c1", "order_request")  # fmt: skip
    plain = WireError("bad")
    assert getattr(plain, "strategy_id", 0) is None and plain.type is None and str(plain) == "bad"
