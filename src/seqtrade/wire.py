"""The wire protocol, version 1 (docs/protocol.md), as a pure codec: bytes in, typed messages out.

Every frame is ``<kind>/<key>/`` (ASCII) followed directly by one MessagePack map whose ``type`` is
``<kind>`` (reports and welcomes share the ``report/<strategy_id>/`` topic). No I/O happens here.

The codec is a table: one :class:`Codec` entry per message type holds its model, its topic and the
two functions that turn the model into a body map and back, written side by side below. Both
directions dispatch through the tables, never through ``isinstance`` chains:

- :data:`MARKET_DATA_TYPES` (ticker, book, trade, status, candle, feed_status, mark, funding,
  price_limit, sync, depth, fullbook, book_status, window) and :data:`REPORT_TYPES` (order_report, welcome,
  refusal, history, account_event) are what the server publishes; :data:`MESSAGE_TYPES` is both, what :func:`decode_message`
  reads.
- :data:`REQUEST_TYPES` is what strategies send; :func:`parse_request` reads it.
- :data:`CODECS` maps each model class to its entry; :func:`encode_message` uses it.

Each table is keyed by the ``type`` name. A receiver dispatches on the model class with a dict it
checks once against a table, ``handlers = dispatch_table(REQUEST_TYPES, {OrderRequest: on_order, ...})``,
and then ``handlers[type(msg)](msg)``: a table entry without a handler fails at start-up, not when the
first such message arrives.

Adding a message type means three things:

1. the model, a dataclass in :mod:`seqtrade.models`;
2. one entry here: its body encoder and decoder next to each other, and the entry in the table of the
   channel it travels on (``_MARKET_DATA``, ``_REPORTS`` or ``_REQUESTS`` at the bottom; a request's
   model also joins the ``Request`` type union, for the type checker);
3. one handler, in the ``dispatch_table`` of the receiver of that channel (the server's request
   handlers for a request; the client's market-data or report handlers for what the server sends).

Then add a shape of it to ``MESSAGES`` in tests/test_codec_golden.py and to the round-trip strategies
in tests/test_codec_properties.py (the tests fail until you do) and describe it in docs/protocol.md.

Decoding of what strategies send (:func:`parse_request`) is strict: anything that breaks the protocol
raises :class:`~seqtrade.errors.WireError` whose message says what was wrong, and whose fields
``strategy_id``, ``client_order_id`` and ``request_type`` hold what could be read, so the server can
answer with a ``rejected`` report. Decoding of what the server sends (:func:`decode_message`) is what
clients use; receivers ignore keys they do not know.

Numbers: prices and quantities are MessagePack floats on the way out. On the way in an integer is
accepted where a float is expected (``quantity: 1`` is a number in every language), a boolean never.
"""

from __future__ import annotations

import builtins
import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgpack

from .candles import BARS, MAX_HISTORY, REQUEST_ID_RE, Candle, History, HistoryRequest
from .errors import WireError
from .feedhealth import FeedsStatus, FeedStatus
from .instruments import instrument_from_map, instrument_to_map
from .models import (
    PROTOCOL_VERSION,
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
from .vclock import Sync, SyncAck, Window

__all__ = [
    "STRATEGY_ID_RE",
    "CLIENT_ORDER_ID_RE",
    "Codec",
    "MARKET_DATA_TYPES",
    "REPORT_TYPES",
    "MESSAGE_TYPES",
    "REQUEST_TYPES",
    "CODECS",
    "Request",
    "codec_for",
    "dispatch_table",
    "topic",
    "encode",
    "split_frame",
    "decode_frame",
    "encode_message",
    "decode_message",
    "encode_ticker",
    "decode_ticker_frame",
    "decode_report_frame",
    "window_row",
    "pack_rows",
    "parse_request",
    "report_to_body",
    "report_from_body",
    "account_event_to_body",
    "account_event_from_body",
    "stored_report_to_body",
    "stored_report_from_body",
]

STRATEGY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")
CLIENT_ORDER_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
_MAX_TOPIC = 160  # kind (<= 32) + key (symbols <= 64, strategy ids <= 32) + slashes, with room

Request = (
    OrderRequest
    | CancelRequest
    | AmendRequest
    | CancelAll
    | Hello
    | Heartbeat
    | Goodbye
    | HistoryRequest
    | SyncAck
)

_pack = msgpack.Packer(use_bin_type=True).pack
_unpackb = msgpack.unpackb

M = TypeVar("M")
H = TypeVar("H")


# --------------------------------------------------------------------------- frames


def topic(kind: str, key: str) -> bytes:
    """The topic prefix ``<kind>/<key>/``. Subscribing to it is exact: ``s1/`` never matches ``s10/``."""
    if "/" in kind or "/" in key or not kind or not key:
        raise WireError(f"topic words must be non-empty and contain no '/': {kind!r}, {key!r}")
    return f"{kind}/{key}/".encode("ascii")


def encode(topic_prefix: bytes, body: dict[str, Any]) -> bytes:
    """One frame: the topic prefix followed by the MessagePack body."""
    frame: bytes = topic_prefix + _pack(body)
    return frame


def split_frame(frame: bytes) -> tuple[str, str, memoryview]:
    """Split a frame into (kind, key, body bytes). Raises WireError on a bad topic."""
    kind, key, start = _split(frame)
    return kind, key, memoryview(frame)[start:]


def _split(frame: bytes) -> tuple[str, str, int]:
    """(kind, key, where the body starts). Decoders unpack ``frame[start:]``: for frames of a few
    hundred bytes a copy is cheaper than a memoryview."""
    first = frame.find(b"/", 0, _MAX_TOPIC)
    second = frame.find(b"/", first + 1, _MAX_TOPIC) if first > 0 else -1
    if first <= 0 or second <= first + 1:
        raise WireError("frame does not start with a '<kind>/<key>/' topic")
    try:
        kind = frame[:first].decode("ascii")
        key = frame[first + 1 : second].decode("ascii")
    except UnicodeDecodeError:
        raise WireError("topic is not ASCII") from None
    return kind, key, second + 1


def _unpack(body: memoryview | bytes) -> Any:
    try:
        return _unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises ValueError, ExtraData, FormatError, StackError, ...
        raise WireError(f"body is not a valid MessagePack value ({type(exc).__name__})") from None


def decode_frame(frame: bytes) -> tuple[str, str, dict[str, Any]]:
    """(kind, key, body map) of a frame; the body's ``type`` must equal ``kind`` (or be a welcome)."""
    kind, key, start = _split(frame)
    obj = _unpack(frame[start:])
    if not isinstance(obj, dict):
        raise WireError(f"body must be a MessagePack map, got {type(obj).__name__}")
    return kind, key, obj


# --------------------------------------------------------------------------- the table's entries


@dataclass(frozen=True, slots=True)
class Codec(Generic[M]):
    """How one message type travels: its model, its topic, and its body both ways.

    ``decode`` of a server message is lenient (missing optional keys take their defaults, unknown keys
    are ignored; a missing required key raises KeyError, which :func:`decode_message` words as a
    WireError). ``decode`` of a request is strict and raises WireError; it reads a body whose ``type``
    and ``strategy_id`` :func:`parse_request` has already checked against the topic.
    """

    type: str  # the body's "type"
    model: builtins.type[M]
    key: str  # the field whose value is the topic's second word: a symbol, a venue or a strategy id
    encode: Callable[[M], dict[str, Any]]
    decode: Callable[[dict[str, Any]], M]
    kind: str = ""  # the topic's first word when it is not the type (reports and welcomes: "report")

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", self.type)

    def topic(self, msg: M) -> bytes:
        """The topic prefix ``msg`` is published or sent under."""
        return topic(self.kind, getattr(msg, self.key))


# --------------------------------------------------------------------------- server -> strategy


def _ticker_body(t: Ticker) -> dict[str, Any]:
    return {
        "type": "ticker", "symbol": t.symbol, "ts": t.ts, "last_price": float(t.last_price),
        "bid_price": float(t.bid_price), "ask_price": float(t.ask_price), "bid_size": float(t.bid_size),
        "ask_size": float(t.ask_size), "volume_24h": float(t.volume_24h), "seq": t.seq, "gw_ns": t.gw_ns,
    }  # fmt: skip


def _ticker_from_body(d: dict[str, Any]) -> Ticker:
    return Ticker(
        d["symbol"], d["ts"], d["last_price"], d["bid_price"], d["ask_price"],
        d["bid_size"], d["ask_size"], d["volume_24h"], d.get("seq", 0), d.get("gw_ns", 0),
    )  # fmt: skip


_TICKER = Codec("ticker", Ticker, "symbol", _ticker_body, _ticker_from_body)


def _book_body(b: Book) -> dict[str, Any]:
    return {
        "type": "book",
        "symbol": b.symbol,
        "ts": b.ts,
        "bids": [[float(p), float(s)] for p, s in b.bids],
        "asks": [[float(p), float(s)] for p, s in b.asks],
        "seq": b.seq,
        "gw_ns": b.gw_ns,
    }


def _book_from_body(d: dict[str, Any]) -> Book:
    return Book(d["symbol"], d["ts"], d["bids"], d["asks"], d.get("seq", 0), d.get("gw_ns", 0))


_BOOK = Codec("book", Book, "symbol", _book_body, _book_from_body)


# Full-depth books (docs/protocol.md, "Order books"): the top levels on every change, the whole book
# as snapshots and deltas, and the book's state.


def _depth_body(d: Depth) -> dict[str, Any]:
    return {
        "type": "depth",
        "symbol": d.symbol,
        "ts": d.ts,
        "bids": d.bids,
        "asks": d.asks,
        "book_seq": d.book_seq,
        "seq": d.seq,
        "gw_ns": d.gw_ns,
    }


def _depth_from_body(d: dict[str, Any]) -> Depth:
    return Depth(
        d["symbol"], d["ts"], d["bids"], d["asks"], d["book_seq"], d.get("seq", 0), d.get("gw_ns", 0)
    )


_DEPTH = Codec("depth", Depth, "symbol", _depth_body, _depth_from_body)


def _fullbook_body(u: BookUpdate) -> dict[str, Any]:
    return {
        "type": "fullbook",
        "symbol": u.symbol,
        "ts": u.ts,
        "snapshot": u.snapshot,
        "book_seq": u.book_seq,
        "prev_book_seq": u.prev_book_seq,
        "bids": u.bids,
        "asks": u.asks,
        "seq": u.seq,
        "gw_ns": u.gw_ns,
    }


def _fullbook_from_body(d: dict[str, Any]) -> BookUpdate:
    snapshot = d["snapshot"]
    if not isinstance(snapshot, bool):
        raise TypeError("snapshot must be a boolean")
    return BookUpdate(
        d["symbol"], d["ts"], snapshot, d["book_seq"], d["prev_book_seq"], d["bids"], d["asks"],
        d.get("seq", 0), d.get("gw_ns", 0),
    )  # fmt: skip


_FULLBOOK = Codec("fullbook", BookUpdate, "symbol", _fullbook_body, _fullbook_from_body)


def _book_status_body(s: BookStatus) -> dict[str, Any]:
    return {
        "type": "book_status",
        "symbol": s.symbol,
        "state": s.state,
        "reason": s.reason,
        "book_seq": s.book_seq,
        "ts": s.ts,
        "seq": s.seq,
        "gw_ns": s.gw_ns,
    }


def _book_status_from_body(d: dict[str, Any]) -> BookStatus:
    return BookStatus(
        d["symbol"], d["state"], d["reason"], d["book_seq"], d["ts"], d.get("seq", 0), d.get("gw_ns", 0)
    )


_BOOK_STATUS = Codec("book_status", BookStatus, "symbol", _book_status_body, _book_status_from_body)


def _trade_body(t: Trade) -> dict[str, Any]:
    return {
        "type": "trade",
        "symbol": t.symbol,
        "ts": t.ts,
        "trade_id": t.trade_id,
        "price": float(t.price),
        "size": float(t.size),
        "side": str(t.side),
        "seq": t.seq,
        "gw_ns": t.gw_ns,
    }


def _trade_from_body(d: dict[str, Any]) -> Trade:
    return Trade(
        d["symbol"], d["ts"], d["trade_id"], d["price"], d["size"], d["side"], d.get("seq", 0), d.get("gw_ns", 0),
    )  # fmt: skip


_TRADE = Codec("trade", Trade, "symbol", _trade_body, _trade_from_body)


def _status_body(s: VenueStatus) -> dict[str, Any]:
    return {
        "type": "status",
        "venue": s.venue,
        "connected": s.connected,
        "symbols": list(s.symbols),
        "ts": s.ts,
        "seq": s.seq,
        "gw_ns": s.gw_ns,
    }


def _status_from_body(d: dict[str, Any]) -> VenueStatus:
    return VenueStatus(
        d["venue"], d["connected"], d.get("symbols", []), d["ts"], d.get("seq", 0), d.get("gw_ns", 0)
    )


_STATUS = Codec("status", VenueStatus, "venue", _status_body, _status_from_body)


def _candle_body(c: Candle) -> dict[str, Any]:
    return {
        "type": "candle", "symbol": c.symbol, "bar": c.bar, "ts": c.ts, "open": float(c.open),
        "high": float(c.high), "low": float(c.low), "close": float(c.close), "volume": float(c.volume),
        "confirm": bool(c.confirm), "seq": c.seq, "gw_ns": c.gw_ns,
    }  # fmt: skip


def _candle_from_body(d: dict[str, Any]) -> Candle:
    return Candle(
        d["symbol"], d["bar"], d["ts"], d["open"], d["high"], d["low"], d["close"], d["volume"],
        bool(d["confirm"]), d.get("seq", 0), d.get("gw_ns", 0),
    )  # fmt: skip


_CANDLE = Codec("candle", Candle, "stream", _candle_body, _candle_from_body)


def _sync_body(s: Sync) -> dict[str, Any]:
    return {"type": "sync", "venue": s.venue, "t": s.t_ns, "step": s.step, "reports": dict(s.reports),
            "seq": s.seq, "gw_ns": s.gw_ns}  # fmt: skip


def _sync_from_body(d: dict[str, Any]) -> Sync:
    return Sync(
        d["venue"], d["t"], d["step"], dict(d.get("reports") or {}), d.get("seq", 0), d.get("gw_ns", 0)
    )


_SYNC = Codec("sync", Sync, "venue", _sync_body, _sync_from_body)


# A backtest's window in one frame (docs/protocol.md, "Backtest clock"): its market data as rows, each
# a message's type and then the values of its map in the order ``keys[type]`` names (the map its own
# frame would carry, without repeating the keys); and the sync. Inner messages of a type this version
# does not know are skipped (a newer server); a window or sync inside a window is not market data.

# Types whose model takes the values of its map positionally, exactly as its decoder would build it
# (tests/test_backtest_window.py checks it): their rows become models in one call when ``keys[type]``
# are the model's fields, in order.
_POSITIONAL = ("ticker", "book", "trade")  # (the keys of _POSITIONAL_MODELS, below)


def _book_row(b: Book) -> list[Any]:
    return ["book", b.symbol, b.ts, [[float(p), float(s)] for p, s in b.bids],
            [[float(p), float(s)] for p, s in b.asks], b.seq, b.gw_ns]  # fmt: skip


def _trade_row(t: Trade) -> list[Any]:
    return ["trade", t.symbol, t.ts, t.trade_id, float(t.price), float(t.size), str(t.side), t.seq, t.gw_ns]


# The rows of the most frequent types built without their map: the same values, in the order of the
# keys their codec's map gives (``window_row`` uses them only when ``keys`` names exactly those).
_FAST_ROWS: dict[type, tuple[str, list[str], Any]] = {
    Book: ("book", ["symbol", "ts", "bids", "asks", "seq", "gw_ns"], _book_row),
    Trade: ("trade", ["symbol", "ts", "trade_id", "price", "size", "side", "seq", "gw_ns"], _trade_row),
}


def window_row(msg: Any, keys: dict[str, list[str]]) -> list[Any]:
    """``msg``'s row in a window frame (its map's values after ``type``), its type's keys added to
    ``keys`` at its first message."""
    fast = _FAST_ROWS.get(msg.__class__)
    if fast is not None and keys.get(fast[0]) == fast[1]:
        row: list[Any] = fast[2](msg)
        return row
    body = CODECS[msg.__class__].encode(msg)
    typ = body["type"]
    names = keys.get(typ)
    if names is None:
        names = keys[typ] = [k for k in body if k != "type"]
    return [typ, *[body[k] for k in names]]


def _window_body(w: Window) -> dict[str, Any]:
    keys = {t: list(k) for t, k in w.keys.items()}
    md = [m if m.__class__ is list else window_row(m, keys) for m in w.md]
    return {"type": "window", "venue": w.venue, "t": w.t_ns, "step": w.step, "reports": dict(w.reports),
            "keys": keys, "md": md, "seq": w.seq, "gw_ns": w.gw_ns}  # fmt: skip


# Packs only the exact types (None, bool, int, float, str, bytes, list, dict), each as _pack does, and
# raises TypeError at anything else (a subclass, a tuple): a quarter fewer instructions a row, as it
# asks each value fewer questions.
_pack_exact = msgpack.Packer(use_bin_type=True, strict_types=True).pack


def pack_rows(rows: list[list[Any]]) -> bytes:
    """A window's rows packed as its frame's ``md`` value (``Window.md_packed``): the server packs them
    when it reads the window, while the strategies work on the one before, instead of at the send.
    The same bytes as ``_pack(rows)``: packed with only exact types when they are (a backtest's rows
    are), else (an enum, a tuple) as ``_pack`` packs them."""
    try:
        packed: bytes = _pack_exact(rows)
    except TypeError:
        packed = _pack(rows)
    return packed


_WINDOW_MD_KEY = b"\xa2md"  # _pack("md")
# What a window frame's head holds that does not change from one window to the next, packed once:
# venue -> its topic, the map's header and the pairs up to the key "t"; and the last keys map packed
# (a copy of it, its pairs packed after the key "keys"): a backtest's keys change only when a type
# first comes.
_WINDOW_HEADS: dict[str, bytes] = {}
_WINDOW_KEYS: list[Any] = [None, b""]


def _encode_window(w: Window) -> bytes:
    """``w``'s frame: the bytes of ``_pack(_window_body(w))`` after its topic, with ``w.md_packed`` (the
    rows packed ahead) spliced in as ``md`` when it is set. A MessagePack map is its header, then its
    keys and values packed one after the other: the pairs are packed in pieces (what does not change
    from one window to the next once, the rest as arrays whose headers are cut off) behind the whole
    map's header (9 entries: a fixmap)."""
    packed = w.md_packed
    if packed is None:
        frame: bytes = topic("window", w.venue) + _pack(_window_body(w))
        return frame
    head = _WINDOW_HEADS.get(w.venue)
    if head is None:
        head = (
            topic("window", w.venue) + b"\x89" + _pack({"type": "window", "venue": w.venue})[1:] + _pack("t")
        )
        if len(_WINDOW_HEADS) >= 64:
            _WINDOW_HEADS.clear()
        _WINDOW_HEADS[w.venue] = head
    keys = w.keys
    cached = _WINDOW_KEYS
    # (in order: maps equal in another order pack to other bytes)
    if keys != cached[0] or list(keys) != list(cached[0]):
        cached[:] = [{t: list(k) for t, k in keys.items()}, _pack(("keys", keys))[1:]]
    # (fixarrays: 5 and 4 items, a header of one byte each)
    mid = _pack((w.t_ns, "step", w.step, "reports", w.reports))
    tail = _pack(("seq", w.seq, "gw_ns", w.gw_ns))
    return b"".join((head, mid[1:], cached[1], _WINDOW_MD_KEY, packed, tail[1:]))


def _window_from_body(d: dict[str, Any]) -> Window:
    keys = d["keys"]
    if keys.__class__ is not dict:
        raise TypeError("window: 'keys' must be a map")
    rows = d["md"]
    # The usual window: every row of a positional type whose keys are its model's fields (the server's
    # keys change only when a new type first comes: cached). One call per row; anything else (another
    # type, a bad row) is read again row by row below, which raises what it must.
    fast = _positional_models(keys)
    try:
        md = [fast[row[0]](*row[1:]) for row in rows] if fast else None
    except (KeyError, IndexError, TypeError):
        md = None
    if md is None:
        md = _window_rows(rows, keys)
    return Window(d["venue"], d["t"], d["step"], dict(d.get("reports") or {}), d.get("seq", 0),
                  d.get("gw_ns", 0), md, keys)  # fmt: skip


def _window_rows(rows: Any, keys: dict[str, Any]) -> list[Any]:
    """A window's rows made into models one by one: by position, through their codec, or skipped."""
    # per type: (the model, when the row is its fields in order) or (the codec, the keys)
    plans: dict[Any, tuple[Any, Any]] = {}
    md: list[Any] = []
    for row in rows:
        if row.__class__ is not list or not row:
            raise TypeError("window: each 'md' item must be a non-empty array")
        typ = row[0]
        plan = plans.get(typ)
        if plan is None:
            plan = plans[typ] = _window_plan(typ, keys)
        model, names = plan
        if model is not None:
            md.append(model(*row[1:]))
        elif names is not None:
            md.append(names[0].decode(dict(zip(names[1], row[1:], strict=False))))
    return md


def _window_plan(typ: Any, keys: dict[str, Any]) -> tuple[Any, Any]:
    """How the rows of ``typ`` become models: (model, None) positionally, (None, (codec, keys)) through
    the codec, (None, None) skipped (a type this version does not know, or not market data)."""
    c = MARKET_DATA_TYPES.get(typ) if isinstance(typ, str) else None
    if c is None or c.model is Window or c.model is Sync:
        return None, None
    names = keys[typ]
    if names.__class__ is not list:
        raise TypeError(f"window: keys of {typ} must be an array")
    if names == _FIELDS.get(typ):
        return c.model, None
    return None, (c, names)


# The positional types' models and their fields in order (their rows' keys when the server is this version).
_POSITIONAL_MODELS: dict[str, type] = {"ticker": Ticker, "book": Book, "trade": Trade}
_FIELDS = {t: [f.name for f in dataclasses.fields(m)] for t, m in _POSITIONAL_MODELS.items()}
_FAST_MODELS: list[Any] = [None, {}]  # the last window's keys (a copy), its positional types' models


def _positional_models(keys: dict[str, Any]) -> dict[str, Any]:
    """The types of ``keys`` whose rows are their model's fields in order -> the model (cached for the
    last ``keys`` seen: a backtest's are the same in every window)."""
    if keys != _FAST_MODELS[0]:
        _FAST_MODELS[:] = [{t: list(v) if v.__class__ is list else v for t, v in keys.items()},
                           {t: m for t, m in _POSITIONAL_MODELS.items() if keys.get(t) == _FIELDS[t]}]  # fmt: skip
    fast: dict[str, Any] = _FAST_MODELS[1]
    return fast


_WINDOW = Codec("window", Window, "venue", _window_body, _window_from_body)


def _feeds_body(s: FeedsStatus) -> dict[str, Any]:
    return {"type": "feed_status", "venue": s.venue, "ts": s.ts, "feeds": [f.row() for f in s.feeds],
            "seq": s.seq, "gw_ns": s.gw_ns}  # fmt: skip


def _feed_from_row(r: dict[str, Any]) -> FeedStatus:
    return FeedStatus(
        r["channel"], r["symbol"], r.get("rate", 0.0), r.get("age", -1.0), r.get("messages", 0),
        r.get("gaps", 0), r.get("resubscriptions", 0), r.get("delay_ms", 0), r.get("max_delay_ms", 0),
        bool(r.get("stale", False)),
    )  # fmt: skip


def _feeds_from_body(d: dict[str, Any]) -> FeedsStatus:
    return FeedsStatus(d["venue"], d["ts"], [_feed_from_row(r) for r in d.get("feeds", [])],
                       d.get("seq", 0), d.get("gw_ns", 0))  # fmt: skip


_FEED_STATUS = Codec("feed_status", FeedsStatus, "venue", _feeds_body, _feeds_from_body)


def _mark_body(m: MarkPrice) -> dict[str, Any]:
    return {"type": "mark", "symbol": m.symbol, "ts": m.ts, "mark_price": float(m.mark_price),
            "index_price": float(m.index_price), "seq": m.seq, "gw_ns": m.gw_ns}  # fmt: skip


def _mark_from_body(d: dict[str, Any]) -> MarkPrice:
    return MarkPrice(d["symbol"], d["ts"], d["mark_price"], d.get("index_price", 0.0), d.get("seq", 0),
                     d.get("gw_ns", 0))  # fmt: skip


_MARK = Codec("mark", MarkPrice, "symbol", _mark_body, _mark_from_body)


def _funding_body(f: FundingRate) -> dict[str, Any]:
    return {"type": "funding", "symbol": f.symbol, "ts": f.ts, "funding_rate": float(f.funding_rate),
            "next_funding_time": f.next_funding_time, "interval_ms": f.interval_ms, "seq": f.seq,
            "gw_ns": f.gw_ns}  # fmt: skip


def _funding_from_body(d: dict[str, Any]) -> FundingRate:
    return FundingRate(d["symbol"], d["ts"], d["funding_rate"], d["next_funding_time"], d.get("interval_ms", 0),
                       d.get("seq", 0), d.get("gw_ns", 0))  # fmt: skip


_FUNDING = Codec("funding", FundingRate, "symbol", _funding_body, _funding_from_body)


def _price_limit_body(p: PriceLimit) -> dict[str, Any]:
    return {"type": "price_limit", "symbol": p.symbol, "ts": p.ts, "buy_limit": float(p.buy_limit),
            "sell_limit": float(p.sell_limit), "seq": p.seq, "gw_ns": p.gw_ns}  # fmt: skip


def _price_limit_from_body(d: dict[str, Any]) -> PriceLimit:
    return PriceLimit(
        d["symbol"], d["ts"], d["buy_limit"], d["sell_limit"], d.get("seq", 0), d.get("gw_ns", 0)
    )


_PRICE_LIMIT = Codec("price_limit", PriceLimit, "symbol", _price_limit_body, _price_limit_from_body)


def report_to_body(r: OrderReport) -> dict[str, Any]:
    """The body of an ``order_report`` (also what the journal stores)."""
    return {
        "type": "order_report",
        "seq": r.seq,
        "client_order_id": r.client_order_id,
        "exchange_order_id": r.exchange_order_id,
        "strategy_id": r.strategy_id,
        "symbol": r.symbol,
        "side": r.side,
        "order_type": r.order_type,
        "price": float(r.price),
        "quantity": float(r.quantity),
        "status": str(r.status),
        "filled_quantity": float(r.filled_quantity),
        "filled_price": float(r.filled_price),
        "last_fill_quantity": float(r.last_fill_quantity),
        "last_fill_price": float(r.last_fill_price),
        "fee": float(r.fee),
        "error_msg": r.error_msg,
        "timestamp": r.timestamp,
        "gw_ns": r.gw_ns,
    }


def report_from_body(d: dict[str, Any]) -> OrderReport:
    """The report in an ``order_report`` body (also what the journal reads back)."""
    return OrderReport(
        seq=d["seq"],
        client_order_id=d["client_order_id"],
        exchange_order_id=d.get("exchange_order_id", ""),
        strategy_id=d["strategy_id"],
        symbol=d.get("symbol", ""),
        side=d.get("side", ""),
        order_type=d.get("order_type", ""),
        price=d.get("price", 0.0),
        quantity=d.get("quantity", 0.0),
        status=OrderStatus(d["status"]),
        filled_quantity=d.get("filled_quantity", 0.0),
        filled_price=d.get("filled_price", 0.0),
        last_fill_quantity=d.get("last_fill_quantity", 0.0),
        last_fill_price=d.get("last_fill_price", 0.0),
        fee=d.get("fee", 0.0),
        error_msg=d.get("error_msg", ""),
        timestamp=d.get("timestamp", 0),
        gw_ns=d.get("gw_ns", 0),
    )


_ORDER_REPORT = Codec(
    "order_report", OrderReport, "strategy_id", report_to_body, report_from_body, kind="report"
)


def account_event_to_body(e: AccountEvent) -> dict[str, Any]:
    """The body of an ``account_event`` (also what the journal stores)."""
    return {
        "type": "account_event",
        "seq": e.seq,
        "strategy_id": e.strategy_id,
        "kind": str(e.kind),
        "symbol": e.symbol,
        "pos_side": e.pos_side,
        "quantity": float(e.quantity),
        "price": float(e.price),
        "amount": float(e.amount),
        "currency": e.currency,
        "event_id": e.event_id,
        "ts": e.ts,
        "gw_ns": e.gw_ns,
    }


def account_event_from_body(d: dict[str, Any]) -> AccountEvent:
    """The event in an ``account_event`` body (also what the journal reads back). A kind this
    version does not know is kept as its string."""
    kind_s = d["kind"]
    try:
        kind: AccountEventKind = AccountEventKind(kind_s)
    except ValueError:
        kind = kind_s
    return AccountEvent(
        strategy_id=d["strategy_id"],
        seq=d["seq"],
        kind=kind,
        symbol=d.get("symbol", ""),
        pos_side=d.get("pos_side", ""),
        quantity=d.get("quantity", 0.0),
        price=d.get("price", 0.0),
        amount=d.get("amount", 0.0),
        currency=d.get("currency", ""),
        event_id=d.get("event_id", ""),
        ts=d.get("ts", 0),
        gw_ns=d.get("gw_ns", 0),
    )


def stored_report_to_body(r: OrderReport | AccountEvent) -> dict[str, Any]:
    """The body of any report numbered in a strategy's stream (what the journal stores)."""
    return account_event_to_body(r) if type(r) is AccountEvent else report_to_body(r)  # type: ignore[arg-type]


def stored_report_from_body(d: dict[str, Any]) -> OrderReport | AccountEvent:
    """The report in a stored body: an ``account_event`` or an ``order_report`` (older rows have no
    other type)."""
    return account_event_from_body(d) if d.get("type") == "account_event" else report_from_body(d)


_ACCOUNT_EVENT = Codec(
    "account_event",
    AccountEvent,
    "strategy_id",
    account_event_to_body,
    account_event_from_body,
    kind="report",
)


def _welcome_body(w: Welcome) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "welcome",
        "strategy_id": w.strategy_id,
        "nonce": w.nonce,
        "last_seq": w.last_seq,
        "open_orders": [report_to_body(r) for r in w.open_orders],
        "protocol": w.protocol,
        "gw_ns": w.gw_ns,
    }
    if w.symbols:  # an extension of version 1: absent when empty
        body["symbols"] = list(w.symbols)
    if w.instruments:  # an extension of version 1: absent when empty
        body["instruments"] = [instrument_to_map(i) for i in w.instruments]
    return body


def _welcome_from_body(d: dict[str, Any]) -> Welcome:
    return Welcome(
        strategy_id=d["strategy_id"],
        nonce=d["nonce"],
        last_seq=d["last_seq"],
        open_orders=[report_from_body(r) for r in d.get("open_orders", [])],
        protocol=d.get("protocol", PROTOCOL_VERSION),
        gw_ns=d.get("gw_ns", 0),
        symbols=[str(x) for x in d.get("symbols", [])],
        instruments=[instrument_from_map(i) for i in d.get("instruments", [])],
    )


_WELCOME = Codec("welcome", Welcome, "strategy_id", _welcome_body, _welcome_from_body, kind="report")


def _refusal_body(r: Refusal) -> dict[str, Any]:
    return {"type": "refusal", "strategy_id": r.strategy_id, "nonce": r.nonce, "session": r.session,
            "reason": r.reason, "retry_after": float(r.retry_after)}  # fmt: skip


def _refusal_from_body(d: dict[str, Any]) -> Refusal:
    return Refusal(d["strategy_id"], d["nonce"], d.get("session", ""), d.get("reason", ""),
                   d.get("retry_after", 0.0))  # fmt: skip


_REFUSAL = Codec("refusal", Refusal, "strategy_id", _refusal_body, _refusal_from_body, kind="report")


def _history_body(h: History) -> dict[str, Any]:
    return {"type": "history", "strategy_id": h.strategy_id, "request_id": h.request_id, "symbol": h.symbol,
            "bar": h.bar, "candles": [c.row() for c in h.candles], "error": h.error, "gw_ns": h.gw_ns}  # fmt: skip


def _history_from_body(d: dict[str, Any]) -> History:
    sym, bar = d["symbol"], d["bar"]
    rows = [Candle(sym, bar, int(r[0]), r[1], r[2], r[3], r[4], r[5], True) for r in d.get("candles", [])]
    return History(d["strategy_id"], d["request_id"], sym, bar, rows, d.get("error", ""), d.get("gw_ns", 0))


_HISTORY = Codec("history", History, "strategy_id", _history_body, _history_from_body, kind="report")


# --------------------------------------------------------------------------- strategy -> server
# Strict readers of one key of a request body ``d`` of type ``typ``; each error says what was wrong.


def _missing(typ: str, key: str) -> WireError:
    return WireError(f"{typ}: missing key '{key}'")


def _string(d: dict[str, Any], typ: str, key: str, pattern: re.Pattern[str] | None = None) -> str:
    if key not in d:
        raise _missing(typ, key)
    v = d[key]
    if not isinstance(v, str):
        raise WireError(f"{typ}: '{key}' must be a string, got {type(v).__name__}")
    if pattern is not None and not pattern.match(v):
        shape = pattern.pattern.removesuffix("\\Z")
        raise WireError(f"{typ}: '{key}' {v[:80]!r} does not match {shape}")
    return v


def _symbol(d: dict[str, Any], typ: str) -> str:
    symbol = _string(d, typ, "symbol")
    if not symbol or "/" in symbol or len(symbol) > 64:
        raise WireError(f"{typ}: 'symbol' {symbol[:80]!r} is not a valid symbol")
    return symbol


def _optional_string(d: dict[str, Any], typ: str, key: str) -> str | None:
    return _string(d, typ, key) if key in d else None


def _integer(d: dict[str, Any], typ: str, key: str, *, minimum: int = 0) -> int:
    if key not in d:
        raise _missing(typ, key)
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise WireError(f"{typ}: '{key}' must be an integer, got {type(v).__name__}")
    if v < minimum:
        raise WireError(f"{typ}: '{key}' must be >= {minimum}, got {v}")
    if v > 2**63 - 1:
        raise WireError(f"{typ}: '{key}' must be < 2**63, got {v}")
    return v


def _positive(d: dict[str, Any], typ: str, key: str) -> float:
    if key not in d:
        raise _missing(typ, key)
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise WireError(f"{typ}: '{key}' must be a number, got {type(v).__name__}")
    f = float(v)
    if not math.isfinite(f):
        raise WireError(f"{typ}: '{key}' must be finite, got {f}")
    if f <= 0:
        raise WireError(f"{typ}: '{key}' must be positive, got {f}")
    return f


def _optional_positive(d: dict[str, Any], typ: str, key: str) -> float | None:
    """None when the key is absent or null."""
    return None if d.get(key) is None else _positive(d, typ, key)


def _timestamp(d: dict[str, Any], typ: str, key: str) -> int:
    if key not in d:
        raise _missing(typ, key)
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise WireError(f"{typ}: '{key}' must be integer milliseconds, got {type(v).__name__}")
    if not math.isfinite(v) or v < 0 or v > 2**63 - 1:
        raise WireError(f"{typ}: '{key}' must be non-negative milliseconds, got {v}")
    return int(v)


def _order_body(o: OrderRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "order_request",
        "client_order_id": o.client_order_id,
        "strategy_id": o.strategy_id,
        "symbol": o.symbol,
        "side": str(o.side),
        "order_type": str(o.order_type),
        "quantity": float(o.quantity),
        "timestamp": o.timestamp,
    }
    if o.price is not None:
        body["price"] = float(o.price)
    if o.reduce_only:  # an extension of version 1: absent when false
        body["reduce_only"] = True
    return body


_ORDER_TYPES = ", ".join(OrderType)
_SIDE_OF: dict[str, Side] = {s.value: s for s in Side}  # what Side(x) answers, as one dict lookup
_ORDER_TYPE_OF: dict[str, OrderType] = {t.value: t for t in OrderType}


def _order_from_body(d: dict[str, Any]) -> OrderRequest:
    typ = "order_request"
    coid = _string(d, typ, "client_order_id", CLIENT_ORDER_ID_RE)
    symbol = _symbol(d, typ)
    side_s = _string(d, typ, "side")
    side = _SIDE_OF.get(side_s)
    if side is None:
        raise WireError(f"order_request: 'side' must be 'buy' or 'sell', got {side_s[:40]!r}")
    ot_s = _string(d, typ, "order_type")
    order_type = _ORDER_TYPE_OF.get(ot_s)
    if order_type is None:
        raise WireError(f"order_request: 'order_type' must be one of {_ORDER_TYPES}, got {ot_s[:40]!r}")
    if order_type is OrderType.MARKET:
        price = _optional_positive(d, typ, "price")
    else:
        price = _positive(d, typ, "price")
    quantity = _positive(d, typ, "quantity")
    reduce_only = d.get("reduce_only", False)
    if not isinstance(reduce_only, bool):
        raise WireError(
            f"order_request: 'reduce_only' must be true or false, got {type(reduce_only).__name__}"
        )
    return OrderRequest(
        d["strategy_id"], coid, symbol, side, order_type, price, quantity, _timestamp(d, typ, "timestamp"),
        reduce_only,
    )  # fmt: skip


_ORDER_REQUEST = Codec("order_request", OrderRequest, "strategy_id", _order_body, _order_from_body)


def _cancel_body(c: CancelRequest) -> dict[str, Any]:
    return {"type": "cancel_request", "client_order_id": c.client_order_id, "strategy_id": c.strategy_id}


def _cancel_from_body(d: dict[str, Any]) -> CancelRequest:
    return CancelRequest(
        d["strategy_id"], _string(d, "cancel_request", "client_order_id", CLIENT_ORDER_ID_RE)
    )


_CANCEL_REQUEST = Codec("cancel_request", CancelRequest, "strategy_id", _cancel_body, _cancel_from_body)


def _amend_body(a: AmendRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "amend_request",
        "client_order_id": a.client_order_id,
        "strategy_id": a.strategy_id,
    }
    if a.price is not None:
        body["price"] = float(a.price)
    if a.quantity is not None:
        body["quantity"] = float(a.quantity)
    return body


def _amend_from_body(d: dict[str, Any]) -> AmendRequest:
    typ = "amend_request"
    coid = _string(d, typ, "client_order_id", CLIENT_ORDER_ID_RE)
    price = _optional_positive(d, typ, "price")
    quantity = _optional_positive(d, typ, "quantity")
    if price is None and quantity is None:
        raise WireError("amend_request: give 'price' and/or 'quantity'")
    return AmendRequest(d["strategy_id"], coid, price, quantity)


_AMEND_REQUEST = Codec("amend_request", AmendRequest, "strategy_id", _amend_body, _amend_from_body)


def _cancel_all_body(c: CancelAll) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "cancel_all", "strategy_id": c.strategy_id}
    if c.symbol is not None:
        body["symbol"] = c.symbol
    return body


def _cancel_all_from_body(d: dict[str, Any]) -> CancelAll:
    return CancelAll(d["strategy_id"], _optional_string(d, "cancel_all", "symbol"))


_CANCEL_ALL = Codec("cancel_all", CancelAll, "strategy_id", _cancel_all_body, _cancel_all_from_body)


def _hello_body(h: Hello) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "hello",
        "strategy_id": h.strategy_id,
        "last_seq": h.last_seq,
        "nonce": h.nonce,
        "protocol": h.protocol,
    }
    if h.session:  # an extension of version 1: absent for a client that does not say
        body["session"] = h.session
    return body


_SESSION_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")


def _session(d: dict[str, Any], typ: str) -> str:
    return _string(d, typ, "session", _SESSION_RE) if "session" in d else ""


def _hello_from_body(d: dict[str, Any]) -> Hello:
    protocol = _integer(d, "hello", "protocol", minimum=0)
    if protocol != PROTOCOL_VERSION:
        raise WireError(
            f"hello: protocol {protocol} is not supported (this server speaks {PROTOCOL_VERSION})"
        )
    if "nonce" not in d:
        raise _missing("hello", "nonce")
    nonce = d["nonce"]
    if (
        isinstance(nonce, bool)
        or not isinstance(nonce, (str, int))
        or (isinstance(nonce, str) and len(nonce) > 128)
    ):
        raise WireError("hello: 'nonce' must be a string (<= 128 chars) or an integer")
    return Hello(d["strategy_id"], _integer(d, "hello", "last_seq"), nonce, protocol, _session(d, "hello"))


_HELLO = Codec("hello", Hello, "strategy_id", _hello_body, _hello_from_body)


def _heartbeat_body(h: Heartbeat) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "heartbeat", "strategy_id": h.strategy_id, "timestamp": h.timestamp}
    if h.errors is not None:
        body["errors"] = h.errors
    if h.session:
        body["session"] = h.session
    return body


MAX_ERROR_KEYS = 64  # callback names in one heartbeat's optional 'errors' map (client.errorlog.MAX_NAMES)


def _heartbeat_from_body(d: dict[str, Any]) -> Heartbeat:
    errors = d.get("errors")
    if errors is not None:
        if not isinstance(errors, dict) or len(errors) > MAX_ERROR_KEYS:
            raise WireError(
                f"heartbeat: 'errors' must be a map of at most {MAX_ERROR_KEYS} callback names to counts"
            )
        for name in errors:
            if not isinstance(name, str) or not 0 < len(name) <= 64:
                raise WireError("heartbeat: 'errors' keys must be callback names (1-64 characters)")
            _integer(errors, "heartbeat errors", name)
        errors = dict(errors)
    return Heartbeat(
        d["strategy_id"], _timestamp(d, "heartbeat", "timestamp"), _session(d, "heartbeat"), errors
    )


_HEARTBEAT = Codec("heartbeat", Heartbeat, "strategy_id", _heartbeat_body, _heartbeat_from_body)


def _goodbye_body(g: Goodbye) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "goodbye", "strategy_id": g.strategy_id}
    if g.session:
        body["session"] = g.session
    return body


def _goodbye_from_body(d: dict[str, Any]) -> Goodbye:
    return Goodbye(d["strategy_id"], _session(d, "goodbye"))


_GOODBYE = Codec("goodbye", Goodbye, "strategy_id", _goodbye_body, _goodbye_from_body)


def _history_request_body(h: HistoryRequest) -> dict[str, Any]:
    return {"type": "history_request", "strategy_id": h.strategy_id, "request_id": h.request_id,
            "symbol": h.symbol, "bar": h.bar, "n": h.n}  # fmt: skip


_BARS = ", ".join(BARS)


def _history_request_from_body(d: dict[str, Any]) -> HistoryRequest:
    typ = "history_request"
    rid = _string(d, typ, "request_id", REQUEST_ID_RE)
    symbol = _symbol(d, typ)
    bar = _string(d, typ, "bar")
    if bar not in BARS:
        raise WireError(f"history_request: 'bar' must be one of {_BARS}, got {bar[:40]!r}")
    n = _integer(d, typ, "n", minimum=1)
    if n > MAX_HISTORY:
        raise WireError(f"history_request: 'n' must be <= {MAX_HISTORY}, got {n}")
    return HistoryRequest(d["strategy_id"], rid, symbol, bar, n)


def _sync_ack_body(a: SyncAck) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "sync_ack", "strategy_id": a.strategy_id, "t": a.t_ns, "step": a.step}
    if a.session:
        body["session"] = a.session
    if a.batch:  # the client reads window frames; absent when false
        body["batch"] = True
    return body


def _sync_ack_from_body(d: dict[str, Any]) -> SyncAck:
    batch = d.get("batch", False)
    if not isinstance(batch, bool):
        raise WireError(f"sync_ack: 'batch' must be true or false, got {type(batch).__name__}")
    return SyncAck(d["strategy_id"], _integer(d, "sync_ack", "t"), _integer(d, "sync_ack", "step"),
                   _session(d, "sync_ack"), batch)  # fmt: skip


_SYNC_ACK = Codec("sync_ack", SyncAck, "strategy_id", _sync_ack_body, _sync_ack_from_body)


_HISTORY_REQUEST = Codec(
    "history_request", HistoryRequest, "strategy_id", _history_request_body, _history_request_from_body
)


# --------------------------------------------------------------------------- the tables

_MARKET_DATA: tuple[Codec[Any], ...] = (
    _TICKER, _BOOK, _TRADE, _STATUS, _CANDLE, _FEED_STATUS, _MARK, _FUNDING, _PRICE_LIMIT, _SYNC, _DEPTH,
    _FULLBOOK, _BOOK_STATUS, _WINDOW,
)  # fmt: skip
_REPORTS: tuple[Codec[Any], ...] = (_ORDER_REPORT, _WELCOME, _REFUSAL, _HISTORY, _ACCOUNT_EVENT)
_REQUESTS: tuple[Codec[Any], ...] = (
    _ORDER_REQUEST, _CANCEL_REQUEST, _AMEND_REQUEST, _CANCEL_ALL, _HELLO, _HEARTBEAT, _GOODBYE,
    _HISTORY_REQUEST, _SYNC_ACK,
)  # fmt: skip

MARKET_DATA_TYPES: Mapping[str, Codec[Any]] = {c.type: c for c in _MARKET_DATA}
"""What the server publishes on the market-data socket, by ``type``."""
REPORT_TYPES: Mapping[str, Codec[Any]] = {c.type: c for c in _REPORTS}
"""What the server publishes on the report socket (topic ``report/<strategy_id>/``), by ``type``."""
MESSAGE_TYPES: Mapping[str, Codec[Any]] = {**MARKET_DATA_TYPES, **REPORT_TYPES}
"""Everything the server publishes, by ``type``: what :func:`decode_message` reads."""
REQUEST_TYPES: Mapping[str, Codec[Any]] = {c.type: c for c in _REQUESTS}
"""What strategies send on the order socket, by ``type`` (= the topic's kind): what
:func:`parse_request` reads. Iterating it gives the type names in protocol order."""
CODECS: Mapping[type, Codec[Any]] = {c.model: c for c in (*_MARKET_DATA, *_REPORTS, *_REQUESTS)}
"""Every entry by its model class: what :func:`encode_message` uses."""
# What encode_message reads, unpacked. Not a window: its frame may splice rows packed ahead
# (_encode_window), on the encoder's fallback path (no branch on the others').
_ENCODE = {c.model: (c.kind, c.key, c.encode) for c in CODECS.values() if c.model is not Window}


def codec_for(cls: type) -> Codec[Any]:
    """The entry of a model class (or of a subclass of one); TypeError for anything else."""
    c = CODECS.get(cls)
    if c is None:
        c = next((CODECS[b] for b in cls.__mro__ if b in CODECS), None)
        if c is None:
            raise TypeError(f"not a protocol message: {cls.__name__}")
    return c


def dispatch_table(table: Mapping[str, Codec[Any]], handlers: Mapping[type, H]) -> dict[type, H]:
    """``handlers`` (model class -> handler) checked to cover exactly the models of ``table``.

    Returns a new dict; the receiver calls ``handlers[type(msg)](msg)``. Raises ValueError naming the
    message types that have no handler, or the classes that are not in the table, so that a receiver
    built against an older table fails when it is constructed, not at its first such message.
    """
    want = {c.model for c in table.values()}
    missing = [c.type for c in table.values() if c.model not in handlers]
    extra = [cls.__name__ for cls in handlers if cls not in want]
    if missing or extra:
        raise ValueError(
            f"handlers do not match the table: no handler for {missing or 'none'}; not in the table: {extra or 'none'}"
        )
    return dict(handlers)


# --------------------------------------------------------------------------- encode and decode


def encode_message(msg: Any) -> bytes:
    """Encode any protocol message model into one frame."""
    try:
        kind, key, body = _ENCODE[type(msg)]
    except KeyError:
        if type(msg) is Window:
            return _encode_window(msg)
        c = codec_for(type(msg))
        kind, key, body = c.kind, c.key, c.encode
    frame: bytes = topic(kind, getattr(msg, key)) + _pack(body(msg))
    return frame


_REPORT_TOPICS: dict[tuple[type, str], bytes] = {}  # (report type, strategy id) -> topic, bounded below


def encode_stored_report(r: Any, body: dict[str, Any]) -> bytes:
    """The frame :func:`encode_message` makes of a numbered report (an ``order_report`` or an
    ``account_event``), from ``body``: its :func:`stored_report_to_body` as the journal stored it, whose
    ``gw_ns`` is set to the report's here. The server builds each body once for the journal and the
    wire; the frame is the same bytes as ``encode_message(r)``."""
    key = (type(r), r.strategy_id)
    head = _REPORT_TOPICS.get(key)
    if head is None:
        c = codec_for(type(r))
        head = topic(c.kind, getattr(r, c.key))
        if len(_REPORT_TOPICS) >= 4096:
            _REPORT_TOPICS.clear()
        _REPORT_TOPICS[key] = head
    body["gw_ns"] = r.gw_ns
    frame: bytes = head + _pack(body)
    return frame


def decode_message(frame: bytes) -> Any:
    """Decode a server -> strategy frame (market data, report, welcome) into its model.

    Unknown keys are ignored; a frame of an unknown type raises WireError.
    """
    _, _, d = decode_frame(frame)
    typ: Any = d.get("type")
    try:
        c = MESSAGE_TYPES[typ]
    except (KeyError, TypeError):  # TypeError: an unhashable type
        raise WireError(f"unknown message type {typ!r}") from None
    try:
        return c.decode(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"{typ} message is malformed: {type(exc).__name__}: {exc}") from None


# Fast paths for the one message that comes by the hundred thousand per second. Same bytes and the
# same model as encode_message/decode_message; measured with ``seqtrade bench`` (bench/README.md).

_TICKER_PREFIX = b"ticker/"


def encode_ticker(topic_prefix: bytes, t: Ticker) -> bytes:
    """``encode_message(t)`` for a Ticker whose topic (``topic("ticker", t.symbol)``) the caller holds."""
    # _ticker_body inlined: the call costs 2-3 % here. The tests hold both to the same golden bytes.
    packed: bytes = _pack({
        "type": "ticker", "symbol": t.symbol, "ts": t.ts, "last_price": float(t.last_price),
        "bid_price": float(t.bid_price), "ask_price": float(t.ask_price), "bid_size": float(t.bid_size),
        "ask_size": float(t.ask_size), "volume_24h": float(t.volume_24h), "seq": t.seq, "gw_ns": t.gw_ns,
    })  # fmt: skip
    return topic_prefix + packed


def decode_ticker_frame(frame: bytes) -> Ticker | None:
    """``decode_message(frame)`` when the frame is a well-formed ticker; None for anything else.

    None means "not handled here": the caller falls back to :func:`decode_message`, which decodes
    other types and raises the protocol-worded WireError for a bad frame.
    """
    if not frame.startswith(_TICKER_PREFIX):
        return None
    end = frame.find(b"/", 7, _MAX_TOPIC)
    if end <= 7:
        return None
    try:
        d = _unpackb(frame[end + 1 :])  # a copy, as in _split
        if d["type"] != "ticker":
            return None
        return _ticker_from_body(d)
    except Exception:  # noqa: BLE001 - any malformed body: decode_message says what is wrong
        return None


_REPORT_PREFIX = b"report/"
_STATUS_OF: dict[str, OrderStatus] = {s.value: s for s in OrderStatus}  # OrderStatus(x), one dict lookup


def decode_report_frame(frame: bytes) -> OrderReport | None:
    """``decode_message(frame)`` when the frame is a well-formed ``order_report``; None for anything else.

    A strategy's reports, without the general path's table lookups, keyword call and ``Enum`` call:
    the same :class:`OrderReport` as :func:`report_from_body` (tested on every report shape). None
    means "not handled here": the caller falls back to :func:`decode_message`, which decodes the
    other report-channel types and raises the protocol-worded WireError for a bad frame.
    """
    if not frame.startswith(_REPORT_PREFIX):
        return None
    end = frame.find(b"/", 7, _MAX_TOPIC)
    if end <= 7 or not frame[7:end].isascii() or frame.find(b"\xacorder_report", end + 1, end + 24) < 0:
        return None  # (a welcome, a history answer: not unpacked twice)
    try:
        d = _unpackb(frame[end + 1 :])  # a copy, as in _split
        if d["type"] != "order_report":
            return None
        status = _STATUS_OF.get(d["status"])
        if status is None:
            return None
        get = d.get
        return OrderReport(
            d["seq"], d["client_order_id"], get("exchange_order_id", ""), d["strategy_id"], get("symbol", ""),
            get("side", ""), get("order_type", ""), get("price", 0.0), get("quantity", 0.0), status,
            get("filled_quantity", 0.0), get("filled_price", 0.0), get("last_fill_quantity", 0.0),
            get("last_fill_price", 0.0), get("fee", 0.0), get("error_msg", ""), get("timestamp", 0), get("gw_ns", 0),
        )  # fmt: skip
    except Exception:  # noqa: BLE001 - any malformed body: decode_message says what is wrong
        return None


_SIDS: set[str] = set()  # topic keys seen to be valid strategy ids (bounded: cleared at 4,096)


def _valid_sid(key: str) -> bool:
    """``key`` is a valid strategy id (remembered in ``_SIDS`` when it is: a strategy sends many frames)."""
    if not STRATEGY_ID_RE.match(key):
        return False
    if len(_SIDS) >= 4096:
        _SIDS.clear()
    _SIDS.add(key)
    return True


_SYNC_ACK_TOPIC = b"sync_ack/"


def parse_sync_ack(frame: bytes) -> SyncAck | None:
    """``parse_request(frame)`` when ``frame`` is a well-formed ``sync_ack`` (a backtest's answer to each
    window, from every strategy: its own short path); None for anything else, which
    :func:`parse_request` then reads (and refuses with its reason). The same checks, in fewer steps."""
    if not frame.startswith(_SYNC_ACK_TOPIC) or len(frame) > 1024:
        return None
    end = frame.find(b"/", 9, _MAX_TOPIC)
    if end <= 9:
        return None
    try:
        key = frame[9:end].decode("ascii")
        d = _unpackb(frame[end + 1 :], raw=False, strict_map_key=True)
    except Exception:  # noqa: BLE001 - not ASCII, not MessagePack: parse_request says which
        return None
    if (
        d.__class__ is not dict
        or d.get("type") != "sync_ack"
        or d.get("strategy_id") != key
        or not (key in _SIDS or _valid_sid(key))
    ):
        return None
    try:
        return _sync_ack_from_body(d)
    except WireError:
        return None


def parse_request(frame: bytes, *, max_bytes: int = 65_536) -> Request:
    """Decode and validate one frame from the order channel.

    Raises WireError with ``strategy_id``/``client_order_id``/``request_type`` set to what could be
    read (None otherwise), so that the caller can address a ``rejected`` report.
    """
    sid: str | None = None
    coid: str | None = None
    typ: str | None = None
    try:
        if len(frame) > max_bytes:
            raise WireError(f"frame of {len(frame)} bytes exceeds the limit of {max_bytes}")
        kind, key, start = _split(frame)
        if key in _SIDS or _valid_sid(key):
            sid = key
        c = REQUEST_TYPES.get(kind)
        if c is None:
            raise WireError(
                f"unknown request type {kind[:40]!r} (expected one of {', '.join(REQUEST_TYPES)})"
            )
        typ = kind
        d = _unpack(frame[start:])
        if not isinstance(d, dict):
            raise WireError(f"{kind}: body must be a MessagePack map, got {type(d).__name__}")
        if d.get("type") != kind:
            raise WireError(f"body type {d.get('type')!r} does not match topic type {kind!r}")
        body_sid = d.get("strategy_id")
        if sid is None or type(body_sid) is not str or body_sid != key:  # (else: the key's, checked above)
            body_sid = _string(d, kind, "strategy_id", STRATEGY_ID_RE)
        if body_sid != key:
            raise WireError(f"{kind}: strategy_id {body_sid!r} does not match topic key {key!r}")
        maybe_coid = d.get("client_order_id")
        if isinstance(maybe_coid, str) and CLIENT_ORDER_ID_RE.match(maybe_coid):
            coid = maybe_coid
        req: Request = c.decode(d)
        return req
    except WireError as exc:
        exc.strategy_id = sid
        exc.client_order_id = coid
        exc.request_type = typ
        raise
