"""Bounded structures: what the server keeps in memory so that memory depends on what is open and
recent, not on every order ever traded. Pure: no I/O; time comes in as an argument.

- :class:`KeyFilter`: a fixed-size Bloom filter of every order key the journal holds. The order path
  asks it before the journal: "surely new" (the common case) costs a few hash probes; "maybe known" is
  confirmed by one SELECT on the journal's unique index (strategy_id, client_order_id). Its memory is
  fixed (``server.key_filter_bytes``, 4 MiB by default); what grows with history is only its false
  positive rate, and a false positive costs one indexed SELECT, never a wrong answer. Figures for the
  default, k = 6 probes: 0.002 % at 1M keys, 0.07 % at 2M, 4 % at 5M, 33 % at 10M keys (raise the size if the
  journal holds that many ids). Its bytes are stable across processes (blake2b, not ``hash``), so the
  snapshot stores them and a restart does not read every key.
- :class:`Budget`: per-peer token buckets for bad frames, with a bounded number of peers tracked.
- :class:`RateLimitedLog`: one WARNING per interval with a count, never a line per event.
"""

from __future__ import annotations

import logging
from hashlib import blake2b

__all__ = ["KeyFilter", "Budget", "RateLimitedLog", "DEFAULT_FILTER_BYTES"]

DEFAULT_FILTER_BYTES = 4 << 20
_PROBES = 6


def _blake(sid: str, coid: str) -> tuple[int, int]:
    """A key's two hashes (h1, h2 odd): the probes are h1 + i * h2 (what snapshots were written with)."""
    d = blake2b(f"{sid}\x00{coid}".encode(), digest_size=16).digest()
    return int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little") | 1


class KeyFilter:
    """A Bloom filter over (strategy_id, client_order_id): no false negatives, a bounded memory."""

    __slots__ = ("bits", "nbits", "added", "_last")

    def __init__(self, size_bytes: int = DEFAULT_FILTER_BYTES, data: bytes | None = None) -> None:
        if size_bytes < 64:
            raise ValueError("a key filter needs at least 64 bytes")
        if data is not None and len(data) != size_bytes:
            raise ValueError(f"key filter data is {len(data)} bytes, expected {size_bytes}")
        # Every page written at once: the filter's resident memory is its size from the start.
        self.bits = bytearray(data) if data is not None else bytearray(b"\x00" * size_bytes)
        self.nbits = size_bytes * 8
        self.added = 0  # keys added in this process (for the status and the docs' figures)
        # The last key asked about and its hashes: a new order's key is asked about, then added. It
        # starts as ("", "") with that key's own hashes (never hashes no key has).
        self._last: tuple[str, str, int, int] = ("", "", *_blake("", ""))

    def _hashes(self, sid: str, coid: str) -> tuple[int, int]:
        last = self._last
        if last[0] == sid and last[1] == coid:
            return last[2], last[3]
        h1, h2 = _blake(sid, coid)
        self._last = (sid, coid, h1, h2)
        return h1, h2

    def add(self, sid: str, coid: str) -> None:
        # The probes h1 + i * h2 (mod the bit count), i = 0 .. _PROBES - 1, as __contains__ walks them.
        h, step = self._hashes(sid, coid)
        bits, n = self.bits, self.nbits
        for _ in range(_PROBES):
            p = h % n
            bits[p >> 3] |= 1 << (p & 7)
            h += step
        self.added += 1

    def __contains__(self, key: tuple[str, str]) -> bool:
        # The probes one by one: a new key usually misses at the first (the order path's common case).
        h, step = self._hashes(key[0], key[1])
        bits, n = self.bits, self.nbits
        for _ in range(_PROBES):
            p = h % n
            if not bits[p >> 3] & (1 << (p & 7)):
                return False
            h += step
        return True

    def data(self) -> bytes:
        return bytes(self.bits)


class Budget:
    """A token bucket per peer: ``burst`` events at once, then ``rate`` per second.

    At most ``max_peers`` buckets are kept (the least recently charged go first, and come back full,
    which is the worst a peer can gain by cycling through ids: ``burst`` per eviction). Every call is
    O(1).
    """

    __slots__ = ("rate", "burst", "max_peers", "_buckets")

    def __init__(self, rate: float, burst: float, max_peers: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self.max_peers = max_peers
        self._buckets: dict[str, tuple[float, float]] = {}  # peer -> (tokens, at seconds)

    def allow(self, peer: str, now_s: float) -> bool:
        """Charge one event to ``peer``; False when its budget is spent (drop the event)."""
        buckets = self._buckets
        got = buckets.pop(peer, None)  # re-inserted below: the dict's order is least recently used first
        tokens = self.burst if got is None else min(self.burst, got[0] + (now_s - got[1]) * self.rate)
        ok = tokens >= 1.0
        buckets[peer] = (tokens - 1.0 if ok else tokens, now_s)
        if len(buckets) > self.max_peers:
            del buckets[next(iter(buckets))]
        return ok

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimitedLog:
    """Counts events and logs at most one line per ``interval`` seconds, with the count since the last."""

    __slots__ = ("logger", "interval", "what", "count", "_next")

    def __init__(self, logger: logging.Logger, what: str, interval: float = 10.0) -> None:
        self.logger = logger
        self.what = what
        self.interval = interval
        self.count = 0  # events not yet logged
        self._next = float("-inf")

    def event(self, now_s: float, detail: object = "") -> bool:
        """Count one event; True when a line was logged for it (with the count so far)."""
        self.count += 1
        if now_s < self._next:
            return False
        self.logger.warning(
            "%s: %d in the last %.0f s (latest: %s)", self.what, self.count, self.interval, detail
        )
        self.count = 0
        self._next = now_s + self.interval
        return True
