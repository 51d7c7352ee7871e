"""The fake's ``books`` channel (docs/okx.md §5.3): a 400-level book per instrument with a real seqId
chain. Pure (no trio): :class:`FakeBooks` makes push items, ``ws.py``/``server.py`` send them.

Written from the sheet, not from the adapter: a snapshot has ``prevSeqId -1``; each update's
``prevSeqId`` is the previous push's ``seqId`` (seqIds grow by 1-3: they are not consecutive at OKX
either); a heartbeat has no levels and ``seqId == prevSeqId``; a sequence reset is an update whose
``seqId`` is below its ``prevSeqId``. Levels are ``[price, size, "0", numOrders]`` strings; size
``"0"`` deletes. ``checksum`` is 0 (production today) or the signed CRC-32 of the top 25 bids and asks
interleaved ``bid:ask:...``, each ``price:size`` as sent (``crc = True``).

Faults (:class:`Fault`) are applied by whoever sends the item: a gap (the update is made, so the
exchange's book moves, but never sent), a bad checksum (sent with a wrong non-zero checksum), a
reordered pair (the next two updates sent in swapped order). A stale channel is the sender saying
nothing for a while.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = ["FakeBook", "FakeBooks", "Fault"]

LEVELS = 400


class Fault(Enum):
    GAP = "gap"
    BAD_CHECKSUM = "bad_checksum"
    REORDER = "reorder"


def _signed_crc(text: str) -> int:
    c = zlib.crc32(text.encode("ascii"))
    return c - (1 << 32) if c >= 1 << 31 else c


@dataclass
class FakeBook:
    """One instrument's book as the exchange holds it: integer ticks -> size strings."""

    inst_id: str
    tick_dp: int  # decimals of a price
    bids: dict[int, str] = field(default_factory=dict)  # price in ticks -> size as sent
    asks: dict[int, str] = field(default_factory=dict)
    seq_id: int = 1000
    ts: int = 1_700_000_000_000

    def px(self, ticks: int) -> str:
        return f"{ticks / 10**self.tick_dp:.{self.tick_dp}f}"

    def _level(self, ticks: int, size: str) -> list[str]:
        return [self.px(ticks), size, "0", "0" if size == "0" else "1"]

    def sorted_bids(self) -> list[tuple[int, str]]:
        return sorted(self.bids.items(), reverse=True)

    def sorted_asks(self) -> list[tuple[int, str]]:
        return sorted(self.asks.items())

    def checksum(self) -> int:
        parts: list[str] = []
        b, a = self.sorted_bids()[:25], self.sorted_asks()[:25]
        for i in range(max(len(b), len(a))):
            if i < len(b):
                parts += [self.px(b[i][0]), b[i][1]]
            if i < len(a):
                parts += [self.px(a[i][0]), a[i][1]]
        return _signed_crc(":".join(parts))

    def levels(self) -> tuple[list[list[float]], list[list[float]]]:
        """The book as ``[[price, size], ...]`` floats, best first (what a verified copy must equal)."""
        scale = 10**self.tick_dp
        return (
            [[t / scale, float(s)] for t, s in self.sorted_bids()],
            [[t / scale, float(s)] for t, s in self.sorted_asks()],
        )


class FakeBooks:
    """Every instrument's ``books`` state; items are dicts ready for ``{"arg", "action", "data": [item]}``."""

    def __init__(self, *, seed: int = 7, crc: bool = False) -> None:
        self.rng = random.Random(seed)
        self.crc = crc  # False: checksum 0, as OKX sends today
        self.books: dict[str, FakeBook] = {}

    def ensure(self, inst_id: str, mid: float = 100.0, tick_dp: int = 1, levels: int = LEVELS) -> FakeBook:
        """The book of ``inst_id``, made on first use: ``levels`` a side around ``mid``."""
        book = self.books.get(inst_id)
        if book is None:
            book = FakeBook(inst_id, tick_dp)
            mid_t = round(mid * 10**tick_dp)
            rng = self.rng
            for i in range(levels):
                book.bids[mid_t - 1 - i] = f"{rng.randint(1, 5000) / 1000:.3f}"
                book.asks[mid_t + 1 + i] = f"{rng.randint(1, 5000) / 1000:.3f}"
            self.books[inst_id] = book
        return book

    def _item(
        self, book: FakeBook, prev: int, bids: list[list[str]], asks: list[list[str]]
    ) -> dict[str, Any]:
        return {
            "asks": asks,
            "bids": bids,
            "ts": str(book.ts),
            "checksum": book.checksum() if self.crc else 0,
            "prevSeqId": prev,
            "seqId": book.seq_id,
        }

    def snapshot(self, inst_id: str) -> dict[str, Any]:
        book = self.ensure(inst_id)
        return self._item(
            book,
            -1,
            [book._level(t, s) for t, s in book.sorted_bids()],
            [book._level(t, s) for t, s in book.sorted_asks()],
        )

    def update(self, inst_id: str, *, reset: bool = False) -> dict[str, Any]:
        """A random change of 1-6 levels near the top (insert, replace, delete), as the next push."""
        book = self.ensure(inst_id)
        rng = self.rng
        bids: list[list[str]] = []
        asks: list[list[str]] = []
        best_bid = max(book.bids) if book.bids else 999
        best_ask = min(book.asks) if book.asks else 1001
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.5:
                side, out, t = book.bids, bids, best_bid - rng.randint(-1, 40)
                if t >= best_ask:
                    t = best_ask - 1
            else:
                side, out, t = book.asks, asks, best_ask + rng.randint(-1, 40)
                if t <= best_bid:
                    t = best_bid + 1
            if t <= 0 or any(level[0] == book.px(t) for level in out):
                continue
            size = "0" if (t in side and rng.random() < 0.35) else f"{rng.randint(1, 5000) / 1000:.3f}"
            if size == "0":
                del side[t]
            else:
                side[t] = size
            out.append(book._level(t, size))
        prev = book.seq_id
        book.seq_id = rng.randint(1, max(1, prev - 1)) if reset else prev + rng.randint(1, 3)
        book.ts += rng.randint(1, 100)
        return self._item(book, prev, bids, asks)

    def heartbeat(self, inst_id: str) -> dict[str, Any]:
        book = self.ensure(inst_id)
        book.ts += 1000
        return self._item(book, book.seq_id, [], [])
