"""Order request frames from prebuilt pieces: the strategy's order path's codec. Pure.

An ``order_request`` frame (docs/protocol.md) is ``order_request/<strategy_id>/`` and a MessagePack map
whose keys come in one fixed order (:func:`seqtrade.wire.encode_message`'s): ``type``,
``client_order_id``, ``strategy_id``, ``symbol``, ``side``, ``order_type``, ``quantity``,
``timestamp``, then ``price`` when the order has one and ``reduce_only`` when it is true. For one
strategy, symbol, side and order type (and whether a price and reduce_only are there) every byte is
fixed except three or four values: the order's id, its quantity, its timestamp and its price. So
:class:`OrderFrames` keeps those fixed bytes per combination, built once, and packs only the values
(each with the codec's own packer: the same smallest-integer and float rules), joined in one call.

Nothing on the wire changes: the same bytes as ``wire.encode_message(OrderRequest(...))`` (tested
byte for byte on every shape), without building the model, its body map and its topic per order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from .. import wire
from ..models import OrderType, Side

__all__ = ["OrderFrames", "MAX_SHAPES"]

MAX_SHAPES = 4096  # (symbol, side, type, price?, reduce_only) combinations kept; emptied when full

_pack: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True).pack


class OrderFrames:
    """The order request frames of one strategy id: :meth:`frame` gives ``wire.encode_message``'s bytes."""

    __slots__ = ("strategy_id", "_shapes")

    def __init__(self, strategy_id: str) -> None:
        self.strategy_id = strategy_id
        # per shape: (bytes up to the id, bytes up to the quantity, timestamp key, price key or b"", tail)
        self._shapes: dict[tuple[Any, ...], tuple[bytes, bytes, bytes, bytes, bytes]] = {}

    def frame(
        self,
        client_order_id: str,
        symbol: str,
        side: Side,
        order_type: OrderType,
        price: float | None,
        quantity: float,
        timestamp: int,
        reduce_only: bool = False,
    ) -> bytes:
        """The frame of ``OrderRequest(strategy_id, client_order_id, symbol, side, order_type, price,
        quantity, timestamp, reduce_only)``."""
        shape = self._shapes.get((symbol, side, order_type, price is None, reduce_only))
        if shape is None:
            shape = self._shape(symbol, side, order_type, price is not None, bool(reduce_only))
        head, mid, ts_key, price_key, tail = shape
        if price_key:
            return b"".join((head, _pack(client_order_id), mid, _pack(float(quantity)), ts_key, _pack(timestamp),
                             price_key, _pack(float(price)), tail))  # type: ignore[arg-type]  # fmt: skip
        return b"".join(
            (head, _pack(client_order_id), mid, _pack(float(quantity)), ts_key, _pack(timestamp), tail)
        )

    def _shape(
        self, symbol: str, side: Side, order_type: OrderType, priced: bool, reduce_only: bool
    ) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        # Each piece packed by the codec's packer, in the codec's key order (wire._order_body).
        n = 8 + priced + bool(reduce_only)
        head = wire.topic("order_request", self.strategy_id) + bytes([0x80 | n])
        head += _pack("type") + _pack("order_request") + _pack("client_order_id")
        mid = b"".join(_pack(x) for x in ("strategy_id", self.strategy_id, "symbol", symbol, "side", str(side),
                                          "order_type", str(order_type), "quantity"))  # fmt: skip
        shape = (head, mid, _pack("timestamp"), _pack("price") if priced else b"",
                 _pack("reduce_only") + _pack(True) if reduce_only else b"")  # fmt: skip
        if len(self._shapes) >= MAX_SHAPES:
            self._shapes.clear()
        self._shapes[(symbol, side, order_type, not priced, reduce_only)] = shape
        return shape
