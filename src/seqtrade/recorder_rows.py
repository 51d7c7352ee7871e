"""What the market recorder writes, as pure rules: frames -> rows, where a row goes, gaps, order latency.

No I/O here (:mod:`seqtrade.recorder` writes the files). A recorded market-data message is the map
the server published on the wire (docs/protocol.md), as it is: ``type``, its key (``symbol``, or
``venue`` for ``status``), the exchange's ``ts`` (ms), the server's per-topic ``seq`` and ``gw_ns``,
the local time the server received and published it (ns), and every other field of that type. Nothing
here names a message type but ``status`` (for gaps): a type added to :mod:`seqtrade.wire` is recorded
and replayed without code here.

Tables (one directory each under the recording's root, files rolled by UTC day and key):

- ``<type>/<day>/<key>/``: the market data of one type, e.g. ``ticker/2026-11-30/BTC-USDT/``;
- ``orders/<day>/<symbol>/``: one row per order the server sent: its send and acknowledgement times
  (``send_ns``, ``ack_ns``, ``latency_ns``) and what the first answer was (``ack_status``);
- ``gaps/<day>/<venue>/``: spans without complete data: ``venue_disconnected`` (from the status
  messages), ``recorder_dropped`` (the recorder's queue was full or the disk failed) and
  ``server_dropped`` (the server's own market-data queue dropped).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from . import wire

__all__ = [
    "ORDERS",
    "GAPS",
    "RESERVED",
    "frame_row",
    "day_of",
    "safe_key",
    "GapTracker",
    "OrderLatencies",
]

ORDERS = "orders"
GAPS = "gaps"
RESERVED = frozenset({ORDERS, GAPS})  # tables that are not market data (replay skips them)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]")


def frame_row(frame: bytes) -> tuple[str, str, dict[str, Any]]:
    """(type, key, row) of one published frame: the body map as the server sent it.

    Raises :class:`~seqtrade.errors.WireError` for a frame that is not a protocol frame.
    """
    kind, key, body = wire.decode_frame(frame)
    return kind, key, body


def day_of(ns: int) -> str:
    """The UTC day of a time in ns since the epoch, ``YYYY-MM-DD``: files roll by it."""
    return time.strftime("%Y-%m-%d", time.gmtime(ns // 1_000_000_000))


def safe_key(key: str) -> str:
    """A key (symbol, venue) as one directory name: ASCII letters, digits and ``_.=-``, no leading dot."""
    s = _UNSAFE.sub("_", key)
    return "_" + s if not s or s.startswith(".") else s


@dataclass(slots=True)
class _Open:
    since_ns: int
    count: int = 0
    last_ns: int = 0


@dataclass
class GapTracker:
    """Turns what the recorder sees into gap rows (``gaps`` table).

    ``status(row)`` for every recorded ``status`` message (the venue's connection: a gap from the
    first ``connected = false`` to the next ``true``); ``dropped(kind, n, ns)`` for messages lost
    (``recorder_dropped``, ``server_dropped``): consecutive flushes with drops are one gap, which ends
    at the first flush without; ``close(ns)`` ends what is open (the recording stops).
    """

    venue: str
    _down: dict[str, int] = field(default_factory=dict)  # venue -> since (ns)
    _drops: dict[str, _Open] = field(default_factory=dict)  # kind -> the open episode

    def status(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        venue = str(row.get("venue", self.venue))
        ns = int(row.get("gw_ns") or row.get("ts", 0) * 1_000_000)
        connected = bool(row.get("connected", True))
        if not connected:
            self._down.setdefault(venue, ns)
            return []
        since = self._down.pop(venue, None)
        return [] if since is None else [_gap(venue, "venue_disconnected", since, ns, 0)]

    def dropped(self, kind: str, n: int, ns: int) -> list[dict[str, Any]]:
        """``n`` messages of ``kind`` dropped since the last call (0: none): the rows of gaps that ended."""
        ep = self._drops.get(kind)
        if n > 0:
            if ep is None:
                ep = self._drops[kind] = _Open(ns)
            ep.count += n
            ep.last_ns = ns
            return []
        if ep is None:
            return []
        del self._drops[kind]
        return [_gap(self.venue, kind, ep.since_ns, ns, ep.count)]

    def close(self, ns: int) -> list[dict[str, Any]]:
        rows = [_gap(v, "venue_disconnected", since, ns, 0) for v, since in self._down.items()]
        rows += [_gap(self.venue, k, ep.since_ns, ns, ep.count) for k, ep in self._drops.items()]
        self._down.clear()
        self._drops.clear()
        return rows


def _gap(venue: str, kind: str, start_ns: int, end_ns: int, count: int) -> dict[str, Any]:
    return {"venue": venue, "kind": kind, "start_ns": start_ns, "end_ns": end_ns, "dropped": count}


@dataclass
class OrderLatencies:
    """Pairs each order the server sent with the venue's first answer about it: one ``orders`` row.

    ``sent`` when the server hands the order to the venue; ``event`` for every order event (only the
    first one of an order sent here makes a row); ``close`` gives the rows of orders never answered
    (``ack_ns`` 0). The latency is what the server measured: send to first answer, on its clock.
    """

    max_pending: int = 100_000  # orders waiting for an answer; beyond, the oldest is given up
    _pending: dict[str, dict[str, Any]] = field(default_factory=dict)

    def sent(self, ns: int, venue_order_id: str, symbol: str, side: str, order_type: str,
             price: float | None, quantity: float) -> dict[str, Any] | None:  # fmt: skip
        """Remember the send; returns the row of the oldest order still unanswered when more than
        ``max_pending`` wait (it is recorded as never answered)."""
        evicted = None
        if len(self._pending) >= self.max_pending:
            evicted = self._pending.pop(next(iter(self._pending)))
        self._pending[venue_order_id] = {
            "venue_order_id": venue_order_id, "symbol": symbol, "side": side, "order_type": order_type,
            "price": float(price) if price is not None else None, "quantity": float(quantity),
            "send_ns": ns, "ack_ns": 0, "latency_ns": 0, "ack_status": "", "exchange_order_id": "",
        }  # fmt: skip
        return evicted

    def event(
        self, ns: int, venue_order_id: str, status: str, exchange_order_id: str
    ) -> dict[str, Any] | None:
        row = self._pending.pop(venue_order_id, None)
        if row is None:
            return None
        row["ack_ns"] = ns
        row["latency_ns"] = ns - row["send_ns"]
        row["ack_status"] = str(status)
        row["exchange_order_id"] = exchange_order_id
        return row

    def close(self) -> list[dict[str, Any]]:
        rows = list(self._pending.values())
        self._pending.clear()
        return rows
