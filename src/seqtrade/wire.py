"""The wire protocol, version 1 (docs/protocol.md), as a pure codec: bytes in, typed messages out.

Every frame is ``<kind>/<key>/`` (ASCII) followed directly by one MessagePack map whose ``type`` is
``<kind>`` (reports and welcomes share the ``report/<strategy_id>/`` topic). No I/O happens here.

Decoding of what strategies send (:func:`parse_request`) is strict: anything that breaks the protocol
raises :class:`~seqtrade.errors.WireError` whose message says what was wrong, and which carries the
``strategy_id`` and ``client_order_id`` when they could be read, so the server can answer with a
``rejected`` report. Decoding of what the server sends (:func:`decode_message`) is what clients use;
receivers ignore keys they do not know.

Numbers: prices and quantities are MessagePack floats on the way out. On the way in an integer is
accepted where a float is expected (``quantity: 1`` is a number in every language), a boolean never.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgpack

from .errors import WireError
from .models import (
    PROTOCOL_VERSION,
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

__all__ = [
    "STRATEGY_ID_RE",
    "CLIENT_ORDER_ID_RE",
    "REQUEST_TYPES",
    "Request",
    "topic",
    "encode",
    "split_frame",
    "decode_frame",
    "encode_message",
    "decode_message",
    "encode_ticker",
    "decode_ticker_frame",
    "parse_request",
    "report_to_body",
    "report_from_body",
]

STRATEGY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")
CLIENT_ORDER_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
_MAX_TOPIC = 160  # kind (<= 32) + key (symbols <= 64, strategy ids <= 32) + slashes, with room

Request = OrderRequest | CancelRequest | AmendRequest | CancelAll | Hello | Heartbeat
REQUEST_TYPES = ("order_request", "cancel_request", "amend_request", "cancel_all", "hello", "heartbeat")

_packer = msgpack.Packer(use_bin_type=True)


# --------------------------------------------------------------------------- frames


def topic(kind: str, key: str) -> bytes:
    """The topic prefix ``<kind>/<key>/``. Subscribing to it is exact: ``s1/`` never matches ``s10/``."""
    if "/" in kind or "/" in key or not kind or not key:
        raise WireError(f"topic words must be non-empty and contain no '/': {kind!r}, {key!r}")
    return f"{kind}/{key}/".encode("ascii")


def encode(topic_prefix: bytes, body: dict[str, Any]) -> bytes:
    """One frame: the topic prefix followed by the MessagePack body."""
    frame: bytes = topic_prefix + _packer.pack(body)
    return frame


def split_frame(frame: bytes) -> tuple[str, str, memoryview]:
    """Split a frame into (kind, key, body bytes). Raises WireError on a bad topic."""
    first = frame.find(b"/", 0, _MAX_TOPIC)
    second = frame.find(b"/", first + 1, _MAX_TOPIC) if first > 0 else -1
    if first <= 0 or second <= first + 1:
        raise WireError("frame does not start with a '<kind>/<key>/' topic")
    try:
        kind = frame[:first].decode("ascii")
        key = frame[first + 1 : second].decode("ascii")
    except UnicodeDecodeError:
        raise WireError("topic is not ASCII") from None
    return kind, key, memoryview(frame)[second + 1 :]


def _unpack(body: memoryview | bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises ValueError, ExtraData, FormatError, StackError, ...
        raise WireError(f"body is not a valid MessagePack value ({type(exc).__name__})") from None


def decode_frame(frame: bytes) -> tuple[str, str, dict[str, Any]]:
    """(kind, key, body map) of a frame; the body's ``type`` must equal ``kind`` (or be a welcome)."""
    kind, key, body = split_frame(frame)
    obj = _unpack(body)
    if not isinstance(obj, dict):
        raise WireError(f"body must be a MessagePack map, got {type(obj).__name__}")
    return kind, key, obj


# --------------------------------------------------------------------------- server -> strategy


def report_to_body(r: OrderReport) -> dict[str, Any]:
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


def _body(msg: Any) -> tuple[bytes, dict[str, Any]]:
    """(topic, body) for any message model."""
    if isinstance(msg, Ticker):
        return topic("ticker", msg.symbol), {
            "type": "ticker",
            "symbol": msg.symbol,
            "ts": msg.ts,
            "last_price": float(msg.last_price),
            "bid_price": float(msg.bid_price),
            "ask_price": float(msg.ask_price),
            "bid_size": float(msg.bid_size),
            "ask_size": float(msg.ask_size),
            "volume_24h": float(msg.volume_24h),
            "seq": msg.seq,
            "gw_ns": msg.gw_ns,
        }
    if isinstance(msg, Book):
        return topic("book", msg.symbol), {
            "type": "book",
            "symbol": msg.symbol,
            "ts": msg.ts,
            "bids": [[float(p), float(s)] for p, s in msg.bids],
            "asks": [[float(p), float(s)] for p, s in msg.asks],
            "seq": msg.seq,
            "gw_ns": msg.gw_ns,
        }
    if isinstance(msg, Trade):
        return topic("trade", msg.symbol), {
            "type": "trade",
            "symbol": msg.symbol,
            "ts": msg.ts,
            "trade_id": msg.trade_id,
            "price": float(msg.price),
            "size": float(msg.size),
            "side": str(msg.side),
            "seq": msg.seq,
            "gw_ns": msg.gw_ns,
        }
    if isinstance(msg, VenueStatus):
        return topic("status", msg.venue), {
            "type": "status",
            "venue": msg.venue,
            "connected": msg.connected,
            "symbols": list(msg.symbols),
            "ts": msg.ts,
            "seq": msg.seq,
            "gw_ns": msg.gw_ns,
        }
    if isinstance(msg, OrderReport):
        return topic("report", msg.strategy_id), report_to_body(msg)
    if isinstance(msg, Welcome):
        return topic("report", msg.strategy_id), {
            "type": "welcome",
            "strategy_id": msg.strategy_id,
            "nonce": msg.nonce,
            "last_seq": msg.last_seq,
            "open_orders": [report_to_body(r) for r in msg.open_orders],
            "protocol": msg.protocol,
            "gw_ns": msg.gw_ns,
        }
    if isinstance(msg, OrderRequest):
        body: dict[str, Any] = {
            "type": "order_request",
            "client_order_id": msg.client_order_id,
            "strategy_id": msg.strategy_id,
            "symbol": msg.symbol,
            "side": str(msg.side),
            "order_type": str(msg.order_type),
            "quantity": float(msg.quantity),
            "timestamp": msg.timestamp,
        }
        if msg.price is not None:
            body["price"] = float(msg.price)
        return topic("order_request", msg.strategy_id), body
    if isinstance(msg, CancelRequest):
        return topic("cancel_request", msg.strategy_id), {
            "type": "cancel_request",
            "client_order_id": msg.client_order_id,
            "strategy_id": msg.strategy_id,
        }
    if isinstance(msg, AmendRequest):
        body = {
            "type": "amend_request",
            "client_order_id": msg.client_order_id,
            "strategy_id": msg.strategy_id,
        }
        if msg.price is not None:
            body["price"] = float(msg.price)
        if msg.quantity is not None:
            body["quantity"] = float(msg.quantity)
        return topic("amend_request", msg.strategy_id), body
    if isinstance(msg, CancelAll):
        body = {"type": "cancel_all", "strategy_id": msg.strategy_id}
        if msg.symbol is not None:
            body["symbol"] = msg.symbol
        return topic("cancel_all", msg.strategy_id), body
    if isinstance(msg, Hello):
        return topic("hello", msg.strategy_id), {
            "type": "hello",
            "strategy_id": msg.strategy_id,
            "last_seq": msg.last_seq,
            "nonce": msg.nonce,
            "protocol": msg.protocol,
        }
    if isinstance(msg, Heartbeat):
        return topic("heartbeat", msg.strategy_id), {
            "type": "heartbeat",
            "strategy_id": msg.strategy_id,
            "timestamp": msg.timestamp,
        }
    raise TypeError(f"not a protocol message: {type(msg).__name__}")


def encode_message(msg: Any) -> bytes:
    """Encode any protocol message model into one frame."""
    t, body = _body(msg)
    return encode(t, body)


def decode_message(frame: bytes) -> Any:
    """Decode a server -> strategy frame (market data, report, welcome) into its model.

    Unknown keys are ignored; a frame of an unknown type raises WireError.
    """
    _, _, d = decode_frame(frame)
    typ = d.get("type")
    try:
        if typ == "ticker":
            return Ticker(
                d["symbol"], d["ts"], d["last_price"], d["bid_price"], d["ask_price"],
                d["bid_size"], d["ask_size"], d["volume_24h"], d.get("seq", 0), d.get("gw_ns", 0),
            )  # fmt: skip
        if typ == "book":
            return Book(d["symbol"], d["ts"], d["bids"], d["asks"], d.get("seq", 0), d.get("gw_ns", 0))
        if typ == "trade":
            return Trade(
                d["symbol"], d["ts"], d["trade_id"], d["price"], d["size"], d["side"],
                d.get("seq", 0), d.get("gw_ns", 0),
            )  # fmt: skip
        if typ == "status":
            return VenueStatus(
                d["venue"], d["connected"], d.get("symbols", []), d["ts"], d.get("seq", 0), d.get("gw_ns", 0)
            )
        if typ == "order_report":
            return report_from_body(d)
        if typ == "welcome":
            return Welcome(
                strategy_id=d["strategy_id"],
                nonce=d["nonce"],
                last_seq=d["last_seq"],
                open_orders=[report_from_body(r) for r in d.get("open_orders", [])],
                protocol=d.get("protocol", PROTOCOL_VERSION),
                gw_ns=d.get("gw_ns", 0),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"{typ} message is malformed: {type(exc).__name__}: {exc}") from None
    raise WireError(f"unknown message type {typ!r}")


# Fast paths for the one message that comes by the hundred thousand per second. Same bytes and the
# same model as encode_message/decode_message; measured with ``seqtrade bench`` (bench/README.md).

_TICKER_PREFIX = b"ticker/"
_unpackb = msgpack.unpackb


def encode_ticker(topic_prefix: bytes, t: Ticker) -> bytes:
    """``encode_message(t)`` for a Ticker whose topic (``topic("ticker", t.symbol)``) the caller holds."""
    packed: bytes = _packer.pack({
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
        d = _unpackb(memoryview(frame)[end + 1 :])
        if d["type"] != "ticker":
            return None
        return Ticker(
            d["symbol"], d["ts"], d["last_price"], d["bid_price"], d["ask_price"],
            d["bid_size"], d["ask_size"], d["volume_24h"], d.get("seq", 0), d.get("gw_ns", 0),
        )  # fmt: skip
    except Exception:  # noqa: BLE001 - any malformed body: decode_message says what is wrong
        return None


# --------------------------------------------------------------------------- strategy -> server


class _Fields:
    """Typed access to a request body with protocol-worded errors."""

    __slots__ = ("d", "typ")

    def __init__(self, d: dict[str, Any], typ: str) -> None:
        self.d = d
        self.typ = typ

    def _missing(self, key: str) -> WireError:
        return WireError(f"{self.typ}: missing key '{key}'")

    def string(
        self, key: str, pattern: re.Pattern[str] | None = None, *, optional: bool = False
    ) -> str | None:
        if key not in self.d:
            if optional:
                return None
            raise self._missing(key)
        v = self.d[key]
        if not isinstance(v, str):
            raise WireError(f"{self.typ}: '{key}' must be a string, got {type(v).__name__}")
        if pattern is not None and not pattern.match(v):
            shape = pattern.pattern.removesuffix("\\Z")
            raise WireError(f"{self.typ}: '{key}' {v[:80]!r} does not match {shape}")
        return v

    def req_string(self, key: str, pattern: re.Pattern[str] | None = None) -> str:
        v = self.string(key, pattern)
        assert v is not None
        return v

    def integer(self, key: str, *, minimum: int = 0) -> int:
        if key not in self.d:
            raise self._missing(key)
        v = self.d[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise WireError(f"{self.typ}: '{key}' must be an integer, got {type(v).__name__}")
        if v < minimum:
            raise WireError(f"{self.typ}: '{key}' must be >= {minimum}, got {v}")
        if v > 2**63 - 1:
            raise WireError(f"{self.typ}: '{key}' must be < 2**63, got {v}")
        return v

    def positive(self, key: str, *, optional: bool = False) -> float | None:
        if key not in self.d or (optional and self.d[key] is None):
            if optional:
                return None
            raise self._missing(key)
        v = self.d[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise WireError(f"{self.typ}: '{key}' must be a number, got {type(v).__name__}")
        f = float(v)
        if not math.isfinite(f):
            raise WireError(f"{self.typ}: '{key}' must be finite, got {f}")
        if f <= 0:
            raise WireError(f"{self.typ}: '{key}' must be positive, got {f}")
        return f

    def timestamp(self, key: str) -> int:
        if key not in self.d:
            raise self._missing(key)
        v = self.d[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise WireError(f"{self.typ}: '{key}' must be integer milliseconds, got {type(v).__name__}")
        if not math.isfinite(v) or v < 0 or v > 2**63 - 1:
            raise WireError(f"{self.typ}: '{key}' must be non-negative milliseconds, got {v}")
        return int(v)


def parse_request(frame: bytes, *, max_bytes: int = 65_536) -> Request:
    """Decode and validate one frame from the order channel.

    Raises WireError with ``strategy_id``/``client_order_id``/``type`` attributes set to what could be
    read (None otherwise), so that the caller can address a ``rejected`` report.
    """
    sid: str | None = None
    coid: str | None = None
    typ: str | None = None
    try:
        if len(frame) > max_bytes:
            raise WireError(f"frame of {len(frame)} bytes exceeds the limit of {max_bytes}")
        kind, key, body = split_frame(frame)
        if STRATEGY_ID_RE.match(key):
            sid = key
        if kind not in REQUEST_TYPES:
            raise WireError(
                f"unknown request type {kind[:40]!r} (expected one of {', '.join(REQUEST_TYPES)})"
            )
        typ = kind
        d = _unpack(body)
        if not isinstance(d, dict):
            raise WireError(f"{kind}: body must be a MessagePack map, got {type(d).__name__}")
        f = _Fields(d, kind)
        if d.get("type") != kind:
            raise WireError(f"body type {d.get('type')!r} does not match topic type {kind!r}")
        body_sid = f.req_string("strategy_id", STRATEGY_ID_RE)
        if body_sid != key:
            raise WireError(f"{kind}: strategy_id {body_sid!r} does not match topic key {key!r}")
        if "client_order_id" in d and isinstance(d["client_order_id"], str):
            if CLIENT_ORDER_ID_RE.match(d["client_order_id"]):
                coid = d["client_order_id"]
        return _parse_body(kind, key, f)
    except WireError as exc:
        exc.strategy_id = sid  # type: ignore[attr-defined]
        exc.client_order_id = coid  # type: ignore[attr-defined]
        exc.type = typ  # type: ignore[attr-defined]
        raise


def _parse_body(kind: str, sid: str, f: _Fields) -> Request:
    if kind == "order_request":
        coid = f.req_string("client_order_id", CLIENT_ORDER_ID_RE)
        symbol = f.req_string("symbol")
        if not symbol or "/" in symbol or len(symbol) > 64:
            raise WireError(f"order_request: 'symbol' {symbol[:80]!r} is not a valid symbol")
        side_s = f.req_string("side")
        try:
            side = Side(side_s)
        except ValueError:
            raise WireError(f"order_request: 'side' must be 'buy' or 'sell', got {side_s[:40]!r}") from None
        ot_s = f.req_string("order_type")
        try:
            order_type = OrderType(ot_s)
        except ValueError:
            raise WireError(
                f"order_request: 'order_type' must be one of limit, market, post_only, ioc, fok, got {ot_s[:40]!r}"
            ) from None
        if order_type is OrderType.MARKET:
            price = f.positive("price", optional=True)
        else:
            price = f.positive("price")
        quantity = f.positive("quantity")
        assert quantity is not None
        return OrderRequest(sid, coid, symbol, side, order_type, price, quantity, f.timestamp("timestamp"))
    if kind == "cancel_request":
        return CancelRequest(sid, f.req_string("client_order_id", CLIENT_ORDER_ID_RE))
    if kind == "amend_request":
        coid = f.req_string("client_order_id", CLIENT_ORDER_ID_RE)
        price = f.positive("price", optional=True)
        quantity = f.positive("quantity", optional=True)
        if price is None and quantity is None:
            raise WireError("amend_request: give 'price' and/or 'quantity'")
        return AmendRequest(sid, coid, price, quantity)
    if kind == "cancel_all":
        return CancelAll(sid, f.string("symbol", optional=True))
    if kind == "hello":
        protocol = f.integer("protocol", minimum=0)
        if protocol != PROTOCOL_VERSION:
            raise WireError(
                f"hello: protocol {protocol} is not supported (this server speaks {PROTOCOL_VERSION})"
            )
        if "nonce" not in f.d:
            raise WireError("hello: missing key 'nonce'")
        nonce = f.d["nonce"]
        if (
            isinstance(nonce, bool)
            or not isinstance(nonce, (str, int))
            or (isinstance(nonce, str) and len(nonce) > 128)
        ):
            raise WireError("hello: 'nonce' must be a string (<= 128 chars) or an integer")
        return Hello(sid, f.integer("last_seq"), nonce, protocol)
    if kind == "heartbeat":
        return Heartbeat(sid, f.timestamp("timestamp"))
    raise WireError(f"unknown request type {kind!r}")  # pragma: no cover - filtered by the caller
