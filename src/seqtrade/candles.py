"""Candles (OHLCV bars): the models, the bar sizes, and the rules around them. Pure: no I/O.

- :class:`Candle` is what the server publishes on ``candle/<symbol>@<bar>/`` (docs/protocol.md): one
  bar of one symbol, ``confirm`` True once the bar is closed. While a bar is open the venue sends it
  again as it changes (``confirm`` False); a closed bar never changes again.
- :class:`HistoryRequest` / :class:`History`: a strategy asks the server for the last ``n`` closed
  bars; the answer comes on its report topic, not numbered and not journaled.
- :data:`BARS`: the bar sizes seqtrade serves (OKX's names) and their length in ms. Bars are aligned
  to the epoch (UTC): a bar opens at a multiple of its length.
- :class:`CandleBuilder`: bars made from trades (the paper venue's), the same forms as OKX's: a bar
  for every interval once a symbol has a price (a bar without trades is flat at the last close, with
  volume 0), the open bar pushed as it changes, each bar pushed once more when it closes, the last
  ``keep`` closed bars of each stream held for history.
- :class:`CandleJoin`: the client's side of the join between history and live candles: per stream,
  the newest closed bar handed to the strategy; a live bar at or before it is a duplicate and
  dropped, a closed bar beyond the next one means bars are missing (the client fetches them).
- :func:`merge_pages`: the closed bars of REST pages (newest first, overlapping), oldest first.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "BARS",
    "MAX_HISTORY",
    "Candle",
    "HistoryRequest",
    "History",
    "CandleBuilder",
    "CandleJoin",
    "bar_ms",
    "bar_open",
    "stream_key",
    "merge_pages",
    "REQUEST_ID_RE",
]

_S, _M, _H = 1_000, 60_000, 3_600_000
BARS: dict[str, int] = {
    "1s": _S, "1m": _M, "3m": 3 * _M, "5m": 5 * _M, "15m": 15 * _M, "30m": 30 * _M,
    "1H": _H, "2H": 2 * _H, "4H": 4 * _H, "6Hutc": 6 * _H, "12Hutc": 12 * _H, "1Dutc": 24 * _H,
}  # fmt: skip
"""Bar name (OKX's: ``candle<bar>`` channels, ``bar=`` of the REST endpoints) -> its length in ms.
OKX's 6H/12H/1D and longer bars without ``utc`` are aligned to UTC+8 and are not served."""

MAX_HISTORY = 1440
"""The most bars one ``history_request`` may ask for (the server refuses more, with a reason)."""

REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")


def bar_ms(bar: str) -> int:
    """The length of ``bar`` in ms; ValueError naming the bars served for an unknown one."""
    try:
        return BARS[bar]
    except KeyError:
        raise ValueError(f"unknown bar {bar!r} (one of {', '.join(BARS)})") from None


def bar_open(ts_ms: int, length_ms: int) -> int:
    """The open time of the bar of ``length_ms`` that contains ``ts_ms``."""
    return ts_ms - ts_ms % length_ms


def stream_key(symbol: str, bar: str) -> str:
    """The topic key of a candle stream, ``<symbol>@<bar>`` (``candle/BTC-USDT@1m/``)."""
    return f"{symbol}@{bar}"


@dataclass(slots=True)
class Candle:
    """One bar of one symbol (``on_candle``).

    Attributes:
        symbol: The instrument.
        bar: The bar size, e.g. ``"1m"`` (see ``seqtrade.candles.BARS``).
        ts: The bar's open time, in ms since the epoch (a multiple of the bar's length).
        open: First trade price of the bar (a bar without trades: the previous close).
        high: Highest trade price.
        low: Lowest trade price.
        close: Last trade price so far (the final one once ``confirm``).
        volume: Quantity traded in the bar, in base units.
        confirm: True once the bar is closed: it never changes again. False: the bar is still open
            and this is its state so far.
        seq: Counts messages of this topic (symbol and bar), 1, 2, 3, ...
        gw_ns: The server's ``time.time_ns()`` when it sent the message.
    """

    symbol: str
    bar: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    confirm: bool
    seq: int = 0
    gw_ns: int = 0

    @property
    def stream(self) -> str:
        """``<symbol>@<bar>``: the key of this candle's topic."""
        return f"{self.symbol}@{self.bar}"

    def row(self) -> list[float]:
        """``[ts, open, high, low, close, volume]``: the form of a bar in a ``history`` message."""
        return [
            self.ts,
            float(self.open),
            float(self.high),
            float(self.low),
            float(self.close),
            float(self.volume),
        ]


@dataclass(slots=True)
class HistoryRequest:
    """Strategy -> server: the last ``n`` closed bars of ``symbol`` in ``bar`` (``history_request``)."""

    strategy_id: str
    request_id: str
    symbol: str
    bar: str
    n: int


@dataclass(slots=True)
class History:
    """Server -> strategy, on ``report/<strategy_id>/``: the answer to one ``history_request``.

    ``candles``: closed bars, oldest first, consecutive as the venue has them; ``error``: why there
    are none or fewer than asked ("" when the request was served in full or the venue has no more).
    """

    strategy_id: str
    request_id: str
    symbol: str
    bar: str
    candles: list[Candle] = field(default_factory=list)
    error: str = ""
    gw_ns: int = 0


# --------------------------------------------------------------------------- bars from trades


@dataclass(slots=True)
class _Open:
    """The open bar of one stream, and the closed ones kept."""

    length: int
    bar: Candle | None = None
    last_close: float = 0.0  # the last price seen (the next bar opens flat at it)
    closed: deque[Candle] = field(default_factory=deque)


class CandleBuilder:
    """Bars of ``bars`` for every symbol, from trades and the passing of time.

    ``on_trade`` and ``advance`` return the candles to publish, in order: closed bars (``confirm``
    True, each exactly once, one per interval with no interval skipped) then the open bar's new state.
    ``closed(symbol, bar, n)`` is the last ``n`` closed bars, oldest first (at most ``keep`` are held
    per stream: memory is bounded).
    """

    def __init__(self, symbols: Iterable[str], bars: Iterable[str], *, keep: int = MAX_HISTORY) -> None:
        self.keep = keep
        self._streams: dict[tuple[str, str], _Open] = {
            (sym, bar): _Open(bar_ms(bar), closed=deque(maxlen=keep)) for sym in symbols for bar in bars
        }
        self._by_symbol: dict[str, list[tuple[str, _Open]]] = {}
        for (sym, bar), st in self._streams.items():
            self._by_symbol.setdefault(sym, []).append((bar, st))

    @property
    def bars(self) -> list[str]:
        return sorted({bar for _, bar in self._streams}, key=BARS.__getitem__)

    def serves(self, symbol: str, bar: str) -> bool:
        return (symbol, bar) in self._streams

    def start(self, symbol: str, price: float, ts_ms: int) -> list[Candle]:
        """``symbol`` has a price from ``ts_ms`` on (before any trade): its bars exist from then on."""
        out: list[Candle] = []
        for bar, st in self._by_symbol.get(symbol, ()):
            if st.bar is None:
                st.last_close = price
                st.bar = self._flat(symbol, bar, st, bar_open(ts_ms, st.length))
                out.append(_copy(st.bar))
        return out

    def on_trade(self, symbol: str, price: float, size: float, ts_ms: int) -> list[Candle]:
        """One trade: the bars it closes (by time), then each open bar with the trade in it."""
        out: list[Candle] = []
        for bar, st in self._by_symbol.get(symbol, ()):
            start = bar_open(ts_ms, st.length)
            if st.bar is None:
                st.bar = Candle(symbol, bar, start, price, price, price, price, 0.0, False)
            else:
                self._close_until(symbol, bar, st, start, out)
            c = st.bar
            c.high = max(c.high, price)
            c.low = min(c.low, price)
            c.close = price
            c.volume += size
            st.last_close = price
            out.append(_copy(c))
        return out

    def advance(self, ts_ms: int) -> list[Candle]:
        """The time is ``ts_ms``: every bar that ended by then is closed (and, with no trade since,
        the flat bars of the intervals passed)."""
        out: list[Candle] = []
        for (sym, bar), st in self._streams.items():
            if st.bar is not None and st.bar.ts < bar_open(ts_ms, st.length):
                self._close_until(sym, bar, st, bar_open(ts_ms, st.length), out)
                out.append(_copy(st.bar))  # the new open bar, flat so far
        return out

    def next_close(self) -> int | None:
        """When the next open bar ends (ms), or None when no stream has a bar yet."""
        ends = [st.bar.ts + st.length for st in self._streams.values() if st.bar is not None]
        return min(ends) if ends else None

    def closed(self, symbol: str, bar: str, n: int) -> list[Candle]:
        """The last ``n`` closed bars of the stream, oldest first."""
        st = self._streams.get((symbol, bar))
        if st is None or n <= 0:
            return []
        kept = st.closed
        return [_copy(c) for c in list(kept)[-n:]]

    def _close_until(self, symbol: str, bar: str, st: _Open, start: int, out: list[Candle]) -> None:
        """Close the open bar and the flat ones after it while they open before ``start``."""
        c = st.bar
        assert c is not None
        if c.ts < start:
            c.confirm = True
            st.closed.append(c)
            out.append(_copy(c))
            # After a long pause only the flat bars that can still be kept are made (bounded work).
            t = max(c.ts + st.length, start - self.keep * st.length)
            while t < start:
                flat = self._flat(symbol, bar, st, t)
                flat.confirm = True
                st.closed.append(flat)
                out.append(_copy(flat))
                t += st.length
            c = self._flat(symbol, bar, st, start)
        st.bar = c

    @staticmethod
    def _flat(symbol: str, bar: str, st: _Open, ts: int) -> Candle:
        p = st.last_close
        return Candle(symbol, bar, ts, p, p, p, p, 0.0, False)


def _copy(c: Candle) -> Candle:
    return Candle(c.symbol, c.bar, c.ts, c.open, c.high, c.low, c.close, c.volume, c.confirm)


# --------------------------------------------------------------------------- the client's join


class CandleJoin:
    """Per stream (symbol, bar), the newest closed bar handed to the strategy.

    ``seed`` takes history (closed bars, oldest first) and returns what is new in it; ``accept``
    takes one live candle and returns it, or None for a duplicate (a closed bar at or before the
    newest handed over, or an open bar that is not newer). :meth:`missing` says which bars a live
    closed bar skips (to fetch before handing it over).
    """

    def __init__(self) -> None:
        self.last_closed: dict[tuple[str, str], int] = {}  # stream -> open time of its newest closed bar

    def seed(self, candles: Iterable[Candle]) -> list[Candle]:
        out = []
        last = self.last_closed
        for c in candles:
            key = (c.symbol, c.bar)
            if c.confirm and c.ts > last.get(key, -1):
                last[key] = c.ts
                out.append(c)
        return out

    def accept(self, c: Candle) -> Candle | None:
        key = (c.symbol, c.bar)
        newest = self.last_closed.get(key)
        if newest is not None and c.ts <= newest:
            return None
        if c.confirm:
            self.last_closed[key] = c.ts
        return c

    def missing(self, c: Candle) -> int:
        """How many closed bars lie between the newest handed over and the closed bar ``c`` (0 when
        none, or when nothing was handed over yet for its stream)."""
        newest = self.last_closed.get((c.symbol, c.bar))
        if newest is None or not c.confirm or c.ts <= newest:
            return 0
        return max(0, (c.ts - newest) // bar_ms(c.bar) - 1)


# --------------------------------------------------------------------------- REST pages


def merge_pages(pages: Iterable[Iterable[Candle]], n: int) -> list[Candle]:
    """The newest ``n`` closed bars of ``pages`` (rows in any order, pages may overlap), oldest first,
    each open time once."""
    by_ts: dict[int, Candle] = {}
    for page in pages:
        for c in page:
            if c.confirm:
                by_ts.setdefault(c.ts, c)
    return [by_ts[t] for t in sorted(by_ts)][-n:] if n > 0 else []
