"""Candles of the fake OKX (docs/okx.md §5.5, §7): the business WebSocket's
``candle<bar>`` channels and REST ``GET /api/v5/market/candles`` and ``/market/history-candles``.

The test drives the bars: :meth:`FakeCandles.push` stores one bar (replacing the row of the same
``ts``: an open bar changes until it is pushed with ``confirm`` True) and pushes it to every business
connection subscribed to ``candle<bar>`` of its instId. REST serves the stored rows, newest first, as
OKX does:

- rows are ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]``, all strings;
- ``after`` = rows older than that ts, ``before`` = newer; ``limit`` defaults to 100;
- ``market/candles``: ``limit`` at most 300, only the newest 1,440 rows are reachable, 40 requests
  per 2 s;
- ``market/history-candles``: ``limit`` at most 100 (the sheet is unsure between 100 and 300: the
  fake takes the stricter), all rows, 20 requests per 2 s;
- a ``limit`` above the maximum is refused (51000), a request over the rate limit gets 50011.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import trio

__all__ = [
    "FakeCandles",
    "CANDLES_MAX_LIMIT",
    "HISTORY_MAX_LIMIT",
    "CANDLES_REACH",
    "CANDLES_RATE",
    "HISTORY_RATE",
]

CANDLES_MAX_LIMIT = 300
HISTORY_MAX_LIMIT = 100
CANDLES_REACH = 1440
CANDLES_RATE = 40  # per 2 s
HISTORY_RATE = 20


class CandleError(Exception):
    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


@dataclass
class FakeCandles:
    """Stored bars by (instId, bar), pushes, and the two REST endpoints' rules."""

    rows: dict[tuple[str, str], dict[int, list[str]]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path, query) answered
    rate_limited: int = 0
    _windows: dict[str, deque[float]] = field(default_factory=dict)
    conns: Any = None  # the fake's set of WS connections (set by FakeOkx)

    def push(self, inst_id: str, bar: str, ts: int, o: float, h: float, low: float, c: float, vol: float,
             confirm: bool) -> None:  # fmt: skip
        """Store a bar and push it to the business connections subscribed to it."""
        row = [str(ts), repr(o), repr(h), repr(low), repr(c), repr(vol), repr(vol), repr(vol * c),
               "1" if confirm else "0"]  # fmt: skip
        self.rows.setdefault((inst_id, bar), {})[ts] = row
        for conn in list(self.conns or ()):
            arg = conn.business_subs.get((f"candle{bar}", inst_id))
            if arg is not None:
                conn.send_json(
                    {"arg": {"channel": f"candle{bar}", "instId": inst_id}, "data": [row]}, activity=True
                )

    def _rate_ok(self, path: str, limit: int) -> bool:
        now = trio.current_time()
        w = self._windows.setdefault(path, deque())
        while w and w[0] <= now - 2.0:
            w.popleft()
        if len(w) >= limit:
            self.rate_limited += 1
            return False
        w.append(now)
        return True

    def answer(self, path: str, query: dict[str, str]) -> list[list[str]]:
        """The rows of one REST request; raises CandleError (code, msg) as OKX would answer."""
        history = path.endswith("history-candles")
        if not self._rate_ok(path, HISTORY_RATE if history else CANDLES_RATE):
            raise CandleError("50011", "Too Many Requests")
        inst_id = query.get("instId", "")
        if not inst_id:
            raise CandleError("50014", "Parameter instId can not be empty")
        bar = query.get("bar", "1m")
        limit_s = query.get("limit", "100")
        if not limit_s.isdigit():
            raise CandleError("51000", "Parameter limit error")
        limit = int(limit_s)
        if not 1 <= limit <= (HISTORY_MAX_LIMIT if history else CANDLES_MAX_LIMIT):
            raise CandleError("51000", "Parameter limit error")
        self.requests.append((path, dict(query)))
        stored = self.rows.get((inst_id, bar), {})
        newest_first = [stored[t] for t in sorted(stored, reverse=True)]
        if not history:
            newest_first = newest_first[:CANDLES_REACH]
        if query.get("after"):
            after = int(query["after"])
            newest_first = [r for r in newest_first if int(r[0]) < after]
        if query.get("before"):
            before = int(query["before"])
            newest_first = [r for r in newest_first if int(r[0]) > before]
        return newest_first[:limit]
