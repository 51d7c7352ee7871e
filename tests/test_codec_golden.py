"""The codec's bytes and words, pinned: every frame the wire carries today, and what the decoders say
about thousands of broken ones, must stay exactly as they are whatever the codec looks like inside.

``tests/fixtures/wire/frames.json`` holds the frame of every message below as hex, and
``tests/fixtures/wire/outcomes.json`` what :func:`wire.parse_request`, :func:`wire.decode_message` and
:func:`wire.decode_ticker_frame` made of every mutated frame (the model's repr, or the error's message and
fields). Both were written by the codec before it became table-driven. Regenerate them only for a
deliberate change of docs/protocol.md, and say so in the commit::

    python -c "from tests.test_codec_golden import write_fixtures; write_fixtures()"
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from seqtrade import wire
from seqtrade.candles import Candle, History, HistoryRequest
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

FIXTURES = Path(__file__).parent / "fixtures" / "wire"


def _report(seq: int, status: OrderStatus = OrderStatus.ACCEPTED, **over: Any) -> OrderReport:
    r = OrderReport(seq, f"c-{seq}", f"ex-{seq}", "s1", "BTC-USDT", "buy", "limit", 100.5, 2.0, status,
                    1.0, 100.25, 0.5, 100.0, 0.0125, "", 1_700_000_000_000, 1_700_000_000_000_000_123)  # fmt: skip
    for k, v in over.items():
        setattr(r, k, v)
    return r


# Every message type in every shape its encoder distinguishes (optional keys present and absent, ints
# where floats go, enums and plain strings, empty and full lists, unicode, the largest integers).
MESSAGES: dict[str, Any] = {
    "ticker": Ticker("BTC-USDT", 1_700_000_000_000, 50000.5, 50000.0, 50001.0, 1.5, 2.5, 12345.75, 17, 99),
    "ticker_ints": Ticker("ETH-USDT-SWAP", 0, 3000, 2999, 3001, 1, 2, 0, 0, 0),
    "ticker_big": Ticker("X", 2**63 - 1, 1e-12, 1e300, 5e-324, 0.1, 0.2, 0.3, 2**40, 2**63 - 1),
    "book": Book("BTC-USDT", 1, [[100.0, 1.0], [99.5, 2.0]], [[100.5, 0.5]], 3, 4),
    "book_empty": Book("BTC-USDT", 1, [], [], 0, 0),
    "book_ints": Book("B", 5, [[1, 2]], [[3, 4], [5, 6]], 1, 2),
    "depth": Depth("BTC-USDT", 1_700_000_000_000, [[100.0, 1.0], [99.5, 2.0]], [[100.5, 0.5]], 42, 3, 4),
    "depth_empty": Depth("BTC-USDT", 1, [], [], 0, 1, 0),
    "fullbook_snapshot": BookUpdate(
        "BTC-USDT", 1_700_000_000_000, True, 7, -1, [[100.0, 1.0]], [[100.5, 0.5], [101.0, 3.0]], 5, 6
    ),
    "fullbook_delta": BookUpdate(
        "BTC-USDT", 1_700_000_000_100, False, 8, 7, [[100.0, 0.0]], [[100.25, 1.5]], 6, 7
    ),
    "book_status_invalid": BookStatus(
        "BTC-USDT", "invalid", "gap: prevSeqId 15 after seqId 12", 8, 1_700_000_000_200, 2, 9
    ),
    "book_status_valid": BookStatus("ETH-USDT", "valid", "", 9, 1_700_000_000_300, 3, 10),
    "trade": Trade("BTC-USDT", 7, "t-77", 1.5, 2.5, "sell", 4, 5),
    "trade_side_enum": Trade("BTC-USDT", 7, "78", 2, 3, Side.BUY, 0, 0),
    "status": VenueStatus("paper", True, ["BTC-USDT", "ETH-USDT"], 5, 6, 7),
    "status_down": VenueStatus("okx", False, [], 0, 1, 0),
    "status_tuple": VenueStatus("okx", True, ("A", "B"), 1, 1, 1),  # type: ignore[arg-type]
    **{f"report_{s.value}": _report(i + 1, s) for i, s in enumerate(OrderStatus)},
    "report_error": _report(9, OrderStatus.REJECTED, error_msg="price 1e9 ± outside the band: ünïcode"),
    "report_enums": _report(10, side=Side.SELL, order_type=OrderType.POST_ONLY),
    "report_ints": _report(11, price=100, quantity=3, filled_quantity=0, filled_price=0, fee=0),
    "report_big": _report(2**63 - 1, gw_ns=2**64 - 1, timestamp=2**63 - 1),
    "welcome": Welcome("s1", "nonce-1", 12, [_report(3), _report(5, OrderStatus.PARTIALLY_FILLED)], 1, 8),
    "welcome_empty": Welcome("s-2", 123456, 0, [], 1, 0),
    "welcome_symbols": Welcome("s1", "n", 3, [], 1, 2, ["BTC-USDT", "ETH-USDT"]),
    "refusal": Refusal("s1", "nonce-2", "sess-b", "strategy id 's1' is in use by another live process", 2.5),
    "order_limit": OrderRequest(
        "s1", "c-1", "BTC-USDT", Side.BUY, OrderType.LIMIT, 100.5, 2.0, 1_700_000_000_000
    ),
    "order_market": OrderRequest("s1", "c:2.x", "BTC-USDT", Side.SELL, OrderType.MARKET, None, 0.001, 0),
    "order_market_price": OrderRequest("s1", "c3", "ETH-USDT", Side.SELL, OrderType.MARKET, 5.0, 1.0, 1),
    "order_ints": OrderRequest("A_b-9", "x" * 64, "S", Side.BUY, OrderType.FOK, 7, 3, 2**53),
    **{
        f"order_{ot.value}": OrderRequest("s1", f"c-{ot.value}", "BTC-USDT", Side.BUY, ot, 1.25, 4.0, 5)
        for ot in OrderType
        if ot is not OrderType.MARKET
    },
    "cancel": CancelRequest("s1", "c-1"),
    "amend_price": AmendRequest("s1", "c-1", 10.5, None),
    "amend_quantity": AmendRequest("s1", "c-1", None, 2.0),
    "amend_both": AmendRequest("s1", "c-1", 11, 3),
    "cancel_all": CancelAll("s1", None),
    "cancel_all_symbol": CancelAll("s1", "ETH-USDT"),
    "hello": Hello("s1", 7, "abc", 1),
    "hello_int_nonce": Hello("s1", 0, 12345, 1),
    "hello_big": Hello("s" * 32, 2**63 - 1, "n" * 128, 1),
    "heartbeat": Heartbeat("s1", 1_700_000_000_000),
    "heartbeat_errors": Heartbeat("s1", 1_700_000_000_000, errors={"on_ticker": 1234, "on_order": 0}),
    "hello_session": Hello("s1", 7, "abc", 1, "sess-a"),
    "heartbeat_session": Heartbeat("s1", 1_700_000_000_000, "sess-a"),
    "goodbye": Goodbye("s1"),
    "goodbye_session": Goodbye("s1", "sess-a"),
    "candle": Candle("BTC-USDT", "1m", 1_700_000_040_000, 100.5, 101.0, 99.5, 100.0, 12.25, True, 3, 4),
    "candle_open": Candle("BTC-USDT-SWAP", "1H", 1_699_999_200_000, 7, 7, 7, 7, 0, False, 0, 0),
    "feed_status": FeedsStatus(
        "okx",
        5,
        [
            FeedStatus("ticker", "BTC-USDT", 9.5, 0.25, 120, 0, 1, 35, 80, False),
            FeedStatus("candle:1m", "BTC-USDT", 0.0, 12.5, 3, 2, 0, 0, 0, True),
        ],
        6,
        7,
    ),
    "feed_status_empty": FeedsStatus("paper", 0, [], 1, 0),
    "history": History(
        "s1",
        "h-1",
        "BTC-USDT",
        "1m",
        [
            Candle("BTC-USDT", "1m", 60_000, 1.0, 2.0, 0.5, 1.5, 10.0, True),
            Candle("BTC-USDT", "1m", 120_000, 1.5, 1.5, 1.5, 1.5, 0.0, True),
        ],
        "",
        9,
    ),
    "history_error": History("s1", "h-2", "ETH-USDT", "5m", [], "bar 5m of ETH-USDT is not served", 0),
    "history_request": HistoryRequest("s1", "h-1", "BTC-USDT", "1m", 300),
    # Derivatives (extensions of version 1): new frames; the frames above are unchanged by them.
    "mark": MarkPrice("BTC-USDT-SWAP", 1_700_000_000_000, 60010.5, 60002.25, 3, 4),
    "funding": FundingRate("BTC-USDT-SWAP", 1_700_000_000_000, 0.0001, 1_700_006_400_000, 28_800_000, 5, 6),
    "price_limit": PriceLimit("BTC-USDT-SWAP", 1_700_000_000_000, 61200.0, 58800.0, 7, 8),
    "account_event_funding": AccountEvent(
        "s1",
        13,
        AccountEventKind.FUNDING,
        "BTC-USDT-SWAP",
        "",
        0.0,
        60010.5,
        -0.060010,
        "USDT",
        "bill-81",
        1_700_006_400_000,
        9,
    ),  # fmt: skip
    "account_event_liquidation": AccountEvent(
        "s1",
        14,
        AccountEventKind.LIQUIDATION,
        "BTC-USD-SWAP",
        "long",
        -2.0,
        51000.0,
        -0.0004,
        "BTC",
        "-1234",
        1_700_006_500_000,
        10,
    ),  # fmt: skip
    "order_reduce_only": OrderRequest(
        "s1", "c-ro", "BTC-USDT-SWAP", Side.SELL, OrderType.LIMIT, 61000.0, 2.0, 1_700_000_000_000, True
    ),  # fmt: skip
    "welcome_instruments": Welcome(
        "s1",
        "n",
        3,
        [],
        1,
        2,
        ["BTC-USD-SWAP", "BTC-USDT", "BTC-USDT-SWAP"],
        [
            Instrument(
                "BTC-USD-SWAP",
                0.1,
                1.0,
                1.0,
                None,
                100.0,
                InstrumentKind.SWAP,
                "USD",
                "BTC",
                "BTC",
                "USD",
                True,
                100.0,
                0,
            ),
            Instrument(
                "BTC-USDT", 0.1, 1e-8, 1e-5, None, 1.0, InstrumentKind.SPOT, "BTC", "USDT", "BTC", "USDT"
            ),
            Instrument(
                "BTC-USDT-SWAP",
                0.1,
                0.01,
                0.01,
                None,
                0.01,
                InstrumentKind.SWAP,
                "BTC",
                "USDT",
                "BTC",
                "USDT",
                False,
                100.0,
                0,
            ),
        ],
    ),  # fmt: skip
    "sync": Sync("backtest", 1_700_000_000_001_000_000, 3, {"s1": 7, "s2": 0}, 4, 5),
    "sync_no_strategies": Sync("backtest", 1, 1, {}, 1, 0),
    "sync_ack": SyncAck("s1", 1_700_000_000_001_000_000, 3),
    "sync_ack_session": SyncAck("s1", 1_700_000_000_001_000_000, 3, "sess-a"),
    "sync_ack_batch": SyncAck("s1", 1_700_000_000_001_000_000, 3, "sess-a", True),
    "window": Window(
        "backtest",
        1_700_000_000_001_000_000,
        3,
        {"s1": 7, "s2": 0},
        4,
        5,
        [
            Book("BTC-USDT", 1_700_000_000_000, [[100.0, 1.0]], [[100.5, 0.5]], 3, 1_700_000_000_000_400_000),
            Trade("BTC-USDT", 1_700_000_000_000, "t-9", 100.5, 0.25, "buy", 8, 1_700_000_000_000_700_000),
        ],
    ),
    "window_part": Window(
        "backtest",
        1_700_000_000_002_000_000,
        0,
        {},
        5,
        6,
        [Ticker("ETH-USDT", 1, 3000.0, 2999.5, 3000.5, 1.0, 2.0, 10.0, 1, 2)],
    ),
    "window_empty": Window("backtest", 1, 1, {}, 1, 0, []),
}

REQUESTS = (OrderRequest, CancelRequest, AmendRequest, CancelAll, Hello, Heartbeat, Goodbye, HistoryRequest,
            SyncAck)  # fmt: skip

# Values that break each key in its own way: absent, null, booleans, negatives, zero, fractions,
# non-finite numbers, huge integers, long and empty strings, lists, maps, bytes.
HOSTILE: dict[str, Any] = {
    "none": None, "true": True, "false": False, "neg": -1, "zero": 0, "half": 0.5, "nan": float("nan"),
    "inf": float("inf"), "ninf": float("-inf"), "int64": 2**63, "uint64": 2**64 - 1, "str": "x",
    "long": "y" * 200, "empty": "", "list": [1], "map": {"a": 1}, "bytes": b"\x00\xff", "limit": "limit",
    "slash": "A/B", "sell": "sell", "neg_int64": -(2**63),
}  # fmt: skip


# The frames mutated key by key: one of each message type, and each optional key present and absent.
MUTATED = ("ticker", "book", "trade", "status", "report_accepted", "welcome", "order_limit", "order_market",
           "cancel", "amend_price", "amend_both", "cancel_all", "cancel_all_symbol", "hello",
           "hello_int_nonce", "heartbeat", "candle", "feed_status", "history", "history_request", "mark",
           "funding", "price_limit", "account_event_funding", "order_reduce_only", "sync", "sync_ack",
           "sync_ack_batch", "window")  # fmt: skip


def _cases() -> Iterator[tuple[str, bytes]]:
    """(name, frame): each golden frame as it is, and the ones in MUTATED with each key removed or
    replaced, their topic changed, their body truncated; built with msgpack directly, so the codec under
    test does not build its own input."""
    for name, hexed in sorted(FRAMES.items()):
        frame = bytes.fromhex(hexed)
        yield name, frame
        if name not in MUTATED:
            continue
        kind, key, raw = wire.split_frame(frame)
        body = msgpack.unpackb(raw, raw=False)
        prefix = f"{kind}/{key}/".encode()
        yield f"{name}:truncated", frame[:-3]
        yield f"{name}:trailing", frame + b"\x00"
        yield f"{name}:not-a-map", prefix + msgpack.packb([body])
        yield f"{name}:other-key", f"{kind}/other/".encode() + raw
        yield f"{name}:bad-key", f"{kind}/bad key!/".encode() + raw
        yield f"{name}:other-kind", f"order_request/{key}/".encode() + raw
        yield f"{name}:extra", prefix + msgpack.packb({**body, "future": [1, {"x": 2}]})
        for k in body:
            yield f"{name}:-{k}", prefix + msgpack.packb({kk: v for kk, v in body.items() if kk != k})
            for vname, v in HOSTILE.items():
                yield f"{name}:{k}={vname}", prefix + msgpack.packb({**body, k: v})
        for k in ("price", "quantity", "symbol"):
            if k not in body and isinstance(MESSAGES[name], REQUESTS):
                for vname, v in HOSTILE.items():
                    yield f"{name}:+{k}={vname}", prefix + msgpack.packb({**body, k: v})


def _outcome(fn: Any, frame: bytes) -> list[Any]:
    """What fn made of frame: the error's message and fields, or a digest of the model's repr."""
    try:
        got = fn(frame)
    except WireError as exc:
        fields = [getattr(exc, a, None) for a in ("strategy_id", "client_order_id", "type")]
        return ["error", str(exc), *fields]
    return ["ok", hashlib.blake2b(repr(got).encode(), digest_size=8).hexdigest(), repr(got)[:40]]


def _outcomes() -> dict[str, list[Any]]:
    """Each case through the decoders that meet it in the product: requests through parse_request,
    server messages through decode_message (and tickers through decode_ticker_frame); every frame as
    it is through all three."""
    out: dict[str, list[Any]] = {}
    for name, frame in _cases():
        base = name.split(":")[0]
        request = isinstance(MESSAGES[base], REQUESTS)
        if request or ":" not in name:
            out[f"parse_request {name}"] = _outcome(wire.parse_request, frame)
        if not request or ":" not in name:
            out[f"decode_message {name}"] = _outcome(wire.decode_message, frame)
        if frame.startswith(b"ticker/") or ":" not in name:
            out[f"decode_ticker_frame {name}"] = _outcome(wire.decode_ticker_frame, frame)
    return out


def write_fixtures() -> None:  # pragma: no cover - run by hand, see the module docstring
    global FRAMES
    FIXTURES.mkdir(parents=True, exist_ok=True)
    FRAMES = {name: wire.encode_message(m).hex() for name, m in MESSAGES.items()}
    (FIXTURES / "frames.json").write_text(json.dumps(FRAMES, indent=1, sort_keys=True) + "\n")
    lines = [f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in sorted(_outcomes().items())]
    (FIXTURES / "outcomes.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")


def _load(name: str) -> dict[str, Any]:
    path = FIXTURES / name
    return json.loads(path.read_text()) if path.exists() else {}


FRAMES: dict[str, str] = _load("frames.json")


def test_fixtures_cover_every_message_and_every_type_in_the_tables():
    assert set(FRAMES) == set(MESSAGES)
    assert {type(m) for m in MESSAGES.values()} == set(wire.CODECS)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_frame_is_byte_for_byte_as_before(name: str):
    msg = MESSAGES[name]
    golden = bytes.fromhex(FRAMES[name])
    assert wire.encode_message(msg) == golden
    if isinstance(msg, Ticker):
        assert wire.encode_ticker(wire.topic("ticker", msg.symbol), msg) == golden
    if isinstance(msg, OrderReport):
        assert wire.encode(wire.topic("report", msg.strategy_id), wire.report_to_body(msg)) == golden


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_golden_frame_decodes_to_its_message(name: str):
    msg = MESSAGES[name]
    golden = bytes.fromhex(FRAMES[name])
    got = wire.parse_request(golden) if isinstance(msg, REQUESTS) else wire.decode_message(golden)
    assert type(got) is type(msg)
    if isinstance(msg, VenueStatus):
        msg = VenueStatus(msg.venue, msg.connected, list(msg.symbols), msg.ts, msg.seq, msg.gw_ns)
    assert got == msg
    if isinstance(msg, OrderReport):
        assert wire.report_from_body(wire.report_to_body(msg)) == msg


def test_every_mutated_frame_decodes_or_fails_exactly_as_before():
    golden = _load("outcomes.json")
    got = json.loads(json.dumps(_outcomes()))  # the same JSON round trip the fixture went through
    assert len(got) > 3000 and set(got) == set(golden)
    differ = [k for k in golden if golden[k] != got[k]]
    assert not differ, "\n".join(f"{k}:\n  was {golden[k]}\n  now {got[k]}" for k in differ[:20])
