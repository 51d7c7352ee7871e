"""Full-depth order books kept from an incremental feed, verified (pure: no I/O, no clock of its own).

Three layers, each usable alone:

- :class:`Levels` and :class:`OrderBook`: one side sorted best first, the two sides of one symbol.
  Levels keep the price and size strings exactly as received, for the checksum.
- :class:`BookFeed`: the rules of OKX's ``books`` channel (400 levels, incremental; docs/okx.md). A
  push is applied only when it continues the ``seqId`` chain: a snapshot (``prevSeqId == -1``) starts
  it; every update's ``prevSeqId`` must equal the previous push's ``seqId``; a heartbeat (no levels,
  ``seqId == prevSeqId``) only proves the feed alive; a sequence reset (``seqId < prevSeqId``, after
  maintenance) is accepted when its ``prevSeqId`` chains. The CRC32 checksum of the top 25 levels is
  checked when it is not 0 (OKX sends 0 now: 0 means "not sent", never "wrong"). The book is
  ``valid``, ``invalid`` (a gap, a bad checksum, a malformed push, a lost connection, or no snapshot
  yet: nothing is applied until the next snapshot) or ``stale`` (valid, but no push for
  ``stale_after`` seconds). The caller resubscribes the channel when a push makes it invalid.
- :class:`BookPublisher`: what strategies get of a verified book (docs/protocol.md, "Order books"):
  ``fullbook`` snapshots and deltas numbered by ``book_seq``, ``depth`` frames (the top
  :data:`DEPTH_LEVELS` levels, on every change of them) and ``book_status`` on every change of state.
  It never publishes a level from a book that is not valid.

:class:`BookKeeper` glues a feed to a publisher for one symbol: push fields in, messages out, and a
flag that tells the OKX adapter to resubscribe. The paper venue drives a publisher directly.
"""

from __future__ import annotations

import math
import zlib
from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from .models import BookStatus, BookUpdate, Depth

__all__ = [
    "CHECKSUM_LEVELS",
    "DEPTH_LEVELS",
    "BookError",
    "BookState",
    "BookCounters",
    "Levels",
    "OrderBook",
    "checksum_string",
    "crc_checksum",
    "Outcome",
    "BookFeed",
    "BookPublisher",
    "BookKeeper",
]

CHECKSUM_LEVELS = 25  # OKX's checksum covers the top 25 levels of each side
DEPTH_LEVELS = 25  # what a ``depth`` frame carries (strategies take the first N they want)

RawLevel = Sequence[str]  # [price, size, ...] as received: extra elements are ignored


class BookError(ValueError):
    """A level that cannot be applied: not two numeric strings, a negative or non-finite size."""


class BookState(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    STALE = "stale"


class Levels:
    """One side of a book, best first: bids descending (``sign = -1``), asks ascending (``+1``).

    ``raw`` keeps each level's price and size strings as received (the checksum hashes them).
    """

    __slots__ = ("sign", "keys", "sizes", "raw")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.keys: list[float] = []  # sign * price, ascending: best first
        self.sizes: dict[float, float] = {}
        self.raw: dict[float, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def clear(self) -> None:
        self.keys.clear()
        self.sizes.clear()
        self.raw.clear()

    def set(self, price: float, size: float, raw: tuple[str, str] | None = None) -> None:
        """Size 0 deletes the level (a delete of an absent level is a no-op), else replace or insert."""
        sizes = self.sizes
        if size == 0.0:
            if price in sizes:
                del sizes[price]
                self.raw.pop(price, None)
                keys = self.keys
                del keys[bisect_left(keys, self.sign * price)]
            return
        if price not in sizes:
            insort(self.keys, self.sign * price)
        sizes[price] = size
        if raw is not None:
            self.raw[price] = raw

    def set_raw(self, level: RawLevel) -> tuple[float, float]:
        """Apply one level as received (``[price, size, ...]`` strings); returns it as floats."""
        try:
            px_s, sz_s = level[0], level[1]
            price, size = float(px_s), float(sz_s)
        except (IndexError, TypeError, ValueError):
            raise BookError(f"bad level {level!r}") from None
        if not (math.isfinite(price) and math.isfinite(size)) or size < 0 or price <= 0:
            raise BookError(f"bad level {level!r}")
        self.set(price, size, (px_s, sz_s))
        return price, size

    def top(self, n: int | None) -> list[list[float]]:
        """The best ``n`` levels (None: all) as ``[[price, size], ...]``, best first."""
        sizes = self.sizes
        if self.sign > 0:
            return [[k, sizes[k]] for k in self.keys[:n]]
        return [[-k, sizes[-k]] for k in self.keys[:n]]

    def best(self) -> tuple[float, float] | None:
        if not self.keys:
            return None
        p = self.sign * self.keys[0]
        return p, self.sizes[p]


class OrderBook:
    """Both sides of one symbol's book."""

    __slots__ = ("bids", "asks")

    def __init__(self) -> None:
        self.bids = Levels(-1)
        self.asks = Levels(1)

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def apply_raw(
        self, bids: Iterable[RawLevel], asks: Iterable[RawLevel]
    ) -> tuple[list[list[float]], list[list[float]]]:
        """Apply levels as received; returns them as ``[[price, size], ...]`` floats (the delta)."""
        b = [list(self.bids.set_raw(level)) for level in bids]
        a = [list(self.asks.set_raw(level)) for level in asks]
        return b, a

    def apply(self, bids: Iterable[Sequence[float]], asks: Iterable[Sequence[float]]) -> None:
        """Apply float levels ``[price, size]`` (size 0 deletes)."""
        for p, s in bids:
            self.bids.set(float(p), float(s))
        for p, s in asks:
            self.asks.set(float(p), float(s))

    def snapshot(self) -> tuple[list[list[float]], list[list[float]]]:
        """Every level, best first."""
        return self.bids.top(len(self.bids)), self.asks.top(len(self.asks))

    def top(self, n: int | None) -> tuple[list[list[float]], list[list[float]]]:
        return self.bids.top(n), self.asks.top(n)


def checksum_string(book: OrderBook, levels: int = CHECKSUM_LEVELS) -> str:
    """OKX's checksum input: the top ``levels`` bids and asks interleaved by index (bid, ask, bid, ...),
    each ``price:size`` as received, joined by ``:``; a side that runs out is skipped."""
    bids, asks = book.bids, book.asks
    parts: list[str] = []
    bk, ak = bids.keys[:levels], asks.keys[:levels]
    for i in range(max(len(bk), len(ak))):
        if i < len(bk):
            parts.extend(bids.raw[bids.sign * bk[i]])
        if i < len(ak):
            parts.extend(asks.raw[asks.sign * ak[i]])
    return ":".join(parts)


def crc_checksum(book: OrderBook) -> int:
    """CRC-32 (zlib) of :func:`checksum_string`, as a signed 32-bit integer."""
    c = zlib.crc32(checksum_string(book).encode("ascii"))
    return c - (1 << 32) if c >= 1 << 31 else c


@dataclass(slots=True)
class BookCounters:
    """What a feed saw, since start."""

    snapshots: int = 0
    updates: int = 0
    heartbeats: int = 0
    seq_resets: int = 0
    gaps: int = 0
    checksum_errors: int = 0
    malformed: int = 0
    stale: int = 0
    skipped: int = 0  # pushes ignored while waiting for a snapshot
    resubscribes: int = 0  # fresh snapshots asked for because a push made the book invalid
    retries: int = 0  # asked again: the snapshot asked for did not come in time


class Outcome(StrEnum):
    SNAPSHOT = "snapshot"  # the book was replaced and verified: valid
    UPDATE = "update"  # a delta was applied and verified
    HEARTBEAT = "heartbeat"  # nothing changed; the feed is alive
    SKIPPED = "skipped"  # waiting for a snapshot: ignored
    INVALID = "invalid"  # this push made the book invalid: resubscribe


class BookFeed:
    """The verified state of one symbol's incremental book (see the module docstring)."""

    def __init__(self, symbol: str, *, stale_after: float = 70.0) -> None:
        self.symbol = symbol
        self.stale_after = stale_after
        self.book = OrderBook()
        self.state = BookState.INVALID
        self.reason = "no snapshot yet"
        self.seq_id = -1
        self.last_push = 0.0  # the caller's clock at the last applied push (heartbeats included)
        self.ts = 0  # the exchange's ts of the last applied push
        self.counters = BookCounters()
        # the delta of the last UPDATE, as floats
        self.delta: tuple[list[list[float]], list[list[float]]] = ([], [])

    @property
    def valid(self) -> bool:
        return self.state is BookState.VALID

    def _invalid(self, reason: str) -> Outcome:
        self.state = BookState.INVALID
        self.reason = reason
        self.book.clear()
        return Outcome.INVALID

    def disconnected(self, reason: str = "disconnected") -> bool:
        """The channel is gone (socket lost, unsubscribed): wait for a snapshot. True if it was not
        invalid already."""
        if self.state is BookState.INVALID:
            return False
        self._invalid(reason)
        return True

    def on_push(
        self,
        *,
        bids: Sequence[RawLevel],
        asks: Sequence[RawLevel],
        prev_seq: int,
        seq: int,
        checksum: int = 0,
        ts: int = 0,
        now: float = 0.0,
        snapshot: bool = False,
    ) -> Outcome:
        """Apply one push item (``snapshot``: the push's ``action`` is ``snapshot``; ``prevSeqId == -1``
        also says so)."""
        c = self.counters
        book = self.book
        if snapshot or prev_seq == -1:
            book.clear()
            try:
                book.apply_raw(bids, asks)
            except BookError as exc:
                c.malformed += 1
                return self._invalid(f"malformed snapshot: {exc}")
            if checksum and crc_checksum(book) != checksum:
                c.checksum_errors += 1
                return self._invalid(f"checksum mismatch on snapshot seqId {seq}")
            c.snapshots += 1
            self.seq_id, self.ts, self.last_push = seq, ts, now
            self.state, self.reason = BookState.VALID, ""
            return Outcome.SNAPSHOT
        if self.state is BookState.INVALID:
            c.skipped += 1
            return Outcome.SKIPPED
        if prev_seq != self.seq_id:
            c.gaps += 1
            return self._invalid(f"gap: prevSeqId {prev_seq} after seqId {self.seq_id}")
        if not bids and not asks and seq == prev_seq:
            c.heartbeats += 1
            if checksum and crc_checksum(book) != checksum:
                c.checksum_errors += 1
                return self._invalid(f"checksum mismatch on heartbeat seqId {seq}")
            self.last_push, self.ts = now, ts or self.ts
            self.state, self.reason = BookState.VALID, ""
            return Outcome.HEARTBEAT
        if seq < prev_seq:
            c.seq_resets += 1
        try:
            self.delta = book.apply_raw(bids, asks)
        except BookError as exc:
            c.malformed += 1
            return self._invalid(f"malformed update: {exc}")
        if checksum and crc_checksum(book) != checksum:
            c.checksum_errors += 1
            return self._invalid(f"checksum mismatch at seqId {seq}")
        c.updates += 1
        self.seq_id, self.ts, self.last_push = seq, ts, now
        self.state, self.reason = BookState.VALID, ""
        return Outcome.UPDATE

    def check_stale(self, now: float) -> bool:
        """True when the book has just become stale: valid, and no push for ``stale_after`` s."""
        if self.state is BookState.VALID and now - self.last_push >= self.stale_after:
            self.state = BookState.STALE
            self.reason = f"no update for {now - self.last_push:.1f} s"
            self.counters.stale += 1
            return True
        return False


BookMessage = Depth | BookUpdate | BookStatus


class BookPublisher:
    """The messages strategies get of one symbol's book. Every method takes the book *after* the
    change and returns what to publish, in order. ``book_seq`` numbers the ``fullbook`` versions."""

    def __init__(self, symbol: str, *, depth: int = DEPTH_LEVELS, snapshot_interval: float = 1.0) -> None:
        self.symbol = symbol
        self.depth = depth
        self.snapshot_interval = snapshot_interval
        self.book_seq = 0
        self.state = BookState.INVALID
        self._top: tuple[list[list[float]], list[list[float]]] | None = None
        self.next_snapshot = 0.0

    def _depth_if_changed(self, book: OrderBook, ts: int, force: bool) -> list[BookMessage]:
        top = book.top(self.depth)
        if not force and top == self._top:
            return []
        self._top = top
        return [Depth(self.symbol, ts, top[0], top[1], self.book_seq)]

    def status(self, state: BookState, reason: str, ts: int) -> list[BookMessage]:
        """A ``book_status`` when ``state`` is news."""
        if state is self.state:
            return []
        self.state = state
        if state is not BookState.VALID:
            self._top = None
        return [BookStatus(self.symbol, str(state), reason, self.book_seq, ts)]

    def snapshot(self, book: OrderBook, ts: int, now: float) -> list[BookMessage]:
        """The book was (re)built and verified: valid, a fresh version, the whole of it."""
        out = self.status(BookState.VALID, "", ts)
        self.book_seq += 1
        bids, asks = book.snapshot()
        out.append(BookUpdate(self.symbol, ts, True, self.book_seq, -1, bids, asks))
        self.next_snapshot = now + self.snapshot_interval
        out += self._depth_if_changed(book, ts, True)
        return out

    def delta(
        self, book: OrderBook, bids: list[list[float]], asks: list[list[float]], ts: int, now: float
    ) -> list[BookMessage]:
        """A verified change (``bids``/``asks``: the changed levels, size 0 = removed)."""
        out = self.status(BookState.VALID, "", ts)
        prev = self.book_seq
        self.book_seq += 1
        out.append(BookUpdate(self.symbol, ts, False, self.book_seq, prev, bids, asks))
        out += self._depth_if_changed(book, ts, False)
        if now >= self.next_snapshot:
            out += self.periodic(book, ts, now)
        return out

    def periodic(self, book: OrderBook, ts: int, now: float) -> list[BookMessage]:
        """The whole book again as of the current ``book_seq`` (for late joiners and after a loss)."""
        if self.state is not BookState.VALID:
            return []
        self.next_snapshot = now + self.snapshot_interval
        bids, asks = book.snapshot()
        return [BookUpdate(self.symbol, ts, True, self.book_seq, -1, bids, asks)]


class BookKeeper:
    """A :class:`BookFeed` and its :class:`BookPublisher` for one symbol: pushes in, messages out."""

    def __init__(self, symbol: str, *, stale_after: float = 70.0, snapshot_interval: float = 1.0) -> None:
        self.feed = BookFeed(symbol, stale_after=stale_after)
        self.publisher = BookPublisher(symbol, snapshot_interval=snapshot_interval)

    def push(
        self,
        *,
        bids: Sequence[RawLevel],
        asks: Sequence[RawLevel],
        prev_seq: int,
        seq: int,
        checksum: int = 0,
        ts: int = 0,
        now: float = 0.0,
        snapshot: bool = False,
    ) -> tuple[Outcome, list[BookMessage]]:
        """Apply one push; the messages to publish. ``Outcome.INVALID``: resubscribe the channel."""
        feed, pub = self.feed, self.publisher
        out = feed.on_push(
            bids=bids,
            asks=asks,
            prev_seq=prev_seq,
            seq=seq,
            checksum=checksum,
            ts=ts,
            now=now,
            snapshot=snapshot,
        )
        if out is Outcome.UPDATE:
            b, a = feed.delta
            return out, pub.delta(feed.book, b, a, ts, now)
        if out is Outcome.SNAPSHOT:
            return out, pub.snapshot(feed.book, ts, now)
        if out is Outcome.HEARTBEAT:
            return out, pub.status(BookState.VALID, "", ts)
        if out is Outcome.INVALID:
            feed.counters.resubscribes += 1
            return out, pub.status(BookState.INVALID, feed.reason, ts)
        return out, []

    def tick(self, now: float, ts: int) -> list[BookMessage]:
        """Time passes: a stale book is announced, a valid one re-sent whole when its time has come."""
        feed, pub = self.feed, self.publisher
        if feed.check_stale(now):
            return pub.status(BookState.STALE, feed.reason, ts)
        if feed.valid and now >= pub.next_snapshot:
            return pub.periodic(feed.book, feed.ts, now)
        return []

    def disconnected(self, ts: int, reason: str = "disconnected") -> list[BookMessage]:
        self.feed.disconnected(reason)
        return self.publisher.status(BookState.INVALID, self.feed.reason, ts)
