"""The journal's filter of the orders it holds: its "already journaled?" check without a read.

A Bloom filter over two kinds of items, the venue order ids and the (strategy_id, client_order_id)
keys of the orders in the journal: no false negatives (an item added is always reported as maybe
present), a bounded memory (``size_bytes``, fixed at creation), a false positive now and then (the
journal then asks its index, as it did for every order before).

Hashes are Python's own ``hash`` (SipHash for strings, randomised per process): the filter lives in
one process and is rebuilt from the journal at each start (:class:`seqtrade.server.journal.Journal`
fills it from its index, a chunk at a time), never stored, so two processes need not agree. Two
probes a-piece from one 64-bit hash (double hashing), so an add or a test is a hash and two bit
operations; ``hash`` of a string is cached in the string, so the second look at the same id is cheaper
still.

Pure: no I/O, nothing but the bit array.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["SeenFilter", "DEFAULT_SEEN_BYTES"]

DEFAULT_SEEN_BYTES = 4 << 20  # 32 Mbit: ~0.5 % false positives at a million orders (two items each)
_PROBES = 3


class SeenFilter:
    """A Bloom filter of hashable items (order ids and keys): ``add``, ``in``; never a false negative."""

    __slots__ = ("bits", "mask", "added")

    def __init__(self, size_bytes: int = DEFAULT_SEEN_BYTES) -> None:
        if size_bytes < 64 or size_bytes & (size_bytes - 1):
            raise ValueError(f"a seen filter's size is a power of two of at least 64 bytes, not {size_bytes}")
        self.bits = bytearray(size_bytes)
        self.mask = size_bytes * 8 - 1
        self.added = 0

    def add(self, item: Hashable) -> None:
        h = hash(item)
        step = (h >> 29) | 1
        bits, mask = self.bits, self.mask
        for _ in range(_PROBES):
            p = h & mask
            bits[p >> 3] |= 1 << (p & 7)
            h += step
        self.added += 1

    def __contains__(self, item: Hashable) -> bool:
        h = hash(item)
        step = (h >> 29) | 1
        bits, mask = self.bits, self.mask
        for _ in range(_PROBES):
            p = h & mask
            if not bits[p >> 3] & (1 << (p & 7)):
                return False  # a new id usually misses at the first probe
            h += step
        return True
