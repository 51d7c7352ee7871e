"""The strategy's own copy of full-depth order books (sans-io: messages in, books out).

A strategy chooses per symbol what it gets (:attr:`seqtrade.client.Strategy.book_depth`):

- ``N`` (1-25): the top N levels, on every change of them (topic ``depth/<symbol>/``);
- ``"full"``: the whole book, as a snapshot then deltas numbered by ``book_seq`` (topic
  ``fullbook/<symbol>/``); this module applies each delta to its copy only when its
  ``prev_book_seq`` is the version held. On a gap (a delta lost on the way) the copy is dropped and the
  next snapshot (the server re-sends the whole book every second) starts it again.

Both also follow ``book_status/<symbol>/``: a book the server marks invalid is dropped here too, a
stale one is kept but not handed out. :meth:`BookCopies.get` hands a strategy a book only when it is
valid: never one it knows is broken or out of date.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..books import Levels, OrderBook
from ..models import BookStatus, BookUpdate, Depth

__all__ = ["LocalBook", "BookCopies", "FULL"]

FULL = "full"


class LocalBook:
    """One symbol's order book as the strategy holds it: ``self.book(symbol)``.

    Attributes:
        symbol: The instrument.
        depth: The levels a side it holds: N, or 0 for the whole book (``"full"``).
        book_seq: The server's version of the book this copy equals.
        ts: The venue's time of that version, in ms since the epoch.
        state: ``"valid"``, ``"stale"`` or ``"invalid"`` (``self.book`` returns only valid books).
    """

    __slots__ = ("symbol", "depth", "book_seq", "ts", "state", "_book")

    def __init__(self, symbol: str, depth: int) -> None:
        self.symbol = symbol
        self.depth = depth
        self.book_seq = 0
        self.ts = 0
        self.state = "invalid"
        self._book = OrderBook()

    def _levels(self, side: Levels) -> list[list[float]]:
        return side.top(self.depth or len(side))

    @property
    def bids(self) -> list[list[float]]:
        """``[[price, size], ...]``, best (highest) first."""
        return self._levels(self._book.bids)

    @property
    def asks(self) -> list[list[float]]:
        """``[[price, size], ...]``, best (lowest) first."""
        return self._levels(self._book.asks)

    def top(self, n: int) -> tuple[list[list[float]], list[list[float]]]:
        """The best ``n`` levels of each side: ``(bids, asks)``."""
        n = min(n, self.depth) if self.depth else n
        return self._book.bids.top(n), self._book.asks.top(n)

    @property
    def best_bid(self) -> tuple[float, float] | None:
        """``(price, size)`` of the best bid, or None when the side is empty."""
        return self._book.bids.best()

    @property
    def best_ask(self) -> tuple[float, float] | None:
        """``(price, size)`` of the best ask, or None when the side is empty."""
        return self._book.asks.best()

    @property
    def mid(self) -> float | None:
        """The mid price, or None when a side is empty."""
        b, a = self.best_bid, self.best_ask
        return (b[0] + a[0]) / 2 if b is not None and a is not None else None

    @property
    def spread(self) -> float | None:
        """Best ask minus best bid, or None when a side is empty."""
        b, a = self.best_bid, self.best_ask
        return a[0] - b[0] if b is not None and a is not None else None

    def size_at(self, side: str, price: float) -> float:
        """The size at ``price`` on ``side`` (``"bid"``/``"buy"`` or ``"ask"``/``"sell"``); 0 if none."""
        levels = self._book.bids if side in ("bid", "buy") else self._book.asks
        return levels.sizes.get(float(price), 0.0)

    def _replace(self, bids: list[list[float]], asks: list[list[float]]) -> None:
        self._book.clear()
        self._book.apply(bids, asks)

    def __repr__(self) -> str:
        return f"LocalBook({self.symbol!r}, {self.state}, book_seq={self.book_seq}, bid={self.best_bid}, ask={self.best_ask})"


@dataclass(slots=True)
class BookCounters:
    """What the copies saw: gaps on the wire (deltas lost), snapshots taken, and snapshots that
    disagreed with a copy at the same version (0 unless something is wrong)."""

    gaps: int = 0
    snapshots: int = 0
    mismatches: int = 0
    invalid: int = 0


class BookCopies:
    """Every book a strategy asked for, kept from the server's messages."""

    def __init__(self) -> None:
        self.books: dict[str, LocalBook] = {}
        self.counters = BookCounters()
        self._status_seq: dict[str, int] = {}

    def want(self, symbol: str, depth: int | str) -> None:
        """Keep ``symbol``'s book: ``depth`` levels a side (1-25) or ``"full"``."""
        if depth == FULL:
            n = 0
        elif isinstance(depth, int) and not isinstance(depth, bool) and 1 <= depth <= 25:
            n = depth
        else:
            raise ValueError(f"book_depth[{symbol!r}]: must be 1-25 levels or 'full', not {depth!r}")
        self.books[symbol] = LocalBook(symbol, n)

    def get(self, symbol: str) -> LocalBook | None:
        """The book of ``symbol`` when it is valid, else None."""
        b = self.books.get(symbol)
        return b if b is not None and b.state == "valid" else None

    def on_depth(self, msg: Depth) -> LocalBook | None:
        """A top-of-book frame; the book when the strategy's N levels changed."""
        b = self.books.get(msg.symbol)
        if b is None or b.depth == 0:
            return None
        n = b.depth
        changed = b.state != "valid" or b.top(n) != (msg.bids[:n], msg.asks[:n])
        b._replace(msg.bids[:n], msg.asks[:n])
        b.book_seq, b.ts, b.state = msg.book_seq, msg.ts, "valid"
        return b if changed else None

    def on_fullbook(self, msg: BookUpdate) -> LocalBook | None:
        """A snapshot or a delta; the book when it changed and is valid."""
        b = self.books.get(msg.symbol)
        if b is None or b.depth != 0:
            return None
        c = self.counters
        if msg.snapshot:
            if b.state != "invalid" and msg.book_seq == b.book_seq:
                bids, asks = b._book.snapshot()
                if bids == msg.bids and asks == msg.asks:
                    return None  # a periodic snapshot of what we hold
                c.mismatches += 1
            elif b.state != "invalid" and msg.book_seq < b.book_seq:
                return None  # older than what we hold
            c.snapshots += 1
            b._replace(msg.bids, msg.asks)
            b.book_seq, b.ts, b.state = msg.book_seq, msg.ts, "valid"
            return b
        if b.state == "invalid":
            return None  # waiting for a snapshot
        if msg.prev_book_seq != b.book_seq:
            if msg.book_seq <= b.book_seq:
                return None  # a duplicate
            c.gaps += 1
            self._drop(b)
            return None
        b._book.apply(msg.bids, msg.asks)
        b.book_seq, b.ts, b.state = msg.book_seq, msg.ts, "valid"
        return b

    def on_status(self, msg: BookStatus) -> BookStatus:
        """The server's verdict on its book; applied to the copy, and handed to the strategy."""
        b = self.books.get(msg.symbol)
        last = self._status_seq.get(msg.symbol)
        self._status_seq[msg.symbol] = msg.seq
        if b is None:
            return msg
        if last is not None and msg.seq > last + 1:
            self._drop(b)  # a status was lost: we cannot tell what the copy is worth
        if msg.state == "invalid":
            self._drop(b)
        elif msg.state == "stale":
            if b.state == "valid":
                b.state = "stale"
        elif msg.state == "valid" and b.state == "stale" and (b.depth or b.book_seq == msg.book_seq):
            b.state = "valid"
        return msg

    def _drop(self, b: LocalBook) -> None:
        if b.state != "invalid":
            self.counters.invalid += 1
        b.state = "invalid"
        b._book.clear()
