"""The server's time: one clock object, chosen by the venue and handed to every part that stamps time.

Pure (the standard library's ``time`` only): no Trio, no I/O.

Three kinds, one interface (:attr:`Clock.time_ns`, :meth:`Clock.time_ms`, :meth:`Clock.wall_seconds`):

- :data:`WALL`: the system clock (``time.time_ns``). Live trading, OKX, the paper venue by default.
- :class:`Clock` with a ``scale`` (the paper venue's ``[venue.paper] time_scale``): the wall clock
  running ``scale`` times faster from an origin (the moment it was made): ``origin + (wall - origin) x
  scale``. A recording of the paper market covers ``scale`` minutes a minute: the venue's market steps,
  candles, funding and the server's stamps of what it publishes and records (market data ``ts`` and
  ``gw_ns``, report times, the recorder's order send and acknowledgement times) all follow it.
- :class:`VirtualClock`: a time set by its owner (a backtest's venue: the recording's time), never
  the wall clock's, so that two runs of the same backtest stamp the same values.

What it does not drive: the server's own timers (heartbeats, dead-man's switches, status lines, the
journal's housekeeping) stay on Trio's clock, wall time, whatever the venue's clock is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "VirtualClock", "WALL"]


class Clock:
    """Epoch time in ns, ``scale`` times faster than the wall clock from ``origin_ns`` (default: now).

    ``time_ns`` is an attribute (a callable), so that the wall clock's costs no Python call on the hot
    path: ``WALL.time_ns is time.time_ns``."""

    __slots__ = ("scale", "origin_ns", "time_ns")

    def __init__(self, scale: float = 1.0, *, origin_ns: int | None = None,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:  # fmt: skip
        if not scale > 0:
            raise ValueError(f"clock: the time scale must be > 0, not {scale}")
        self.scale = scale
        self.origin_ns = wall_ns() if origin_ns is None else origin_ns
        self.time_ns: Callable[[], int] = wall_ns if scale == 1.0 else self._scaled(wall_ns)

    def _scaled(self, wall_ns: Callable[[], int]) -> Callable[[], int]:
        origin, scale = self.origin_ns, self.scale

        def time_ns() -> int:
            return origin + int((wall_ns() - origin) * scale)

        return time_ns

    def time_ms(self) -> int:
        """The clock's time in epoch ms."""
        return self.time_ns() // 1_000_000

    def wall_seconds(self, seconds: float) -> float:
        """How long ``seconds`` of this clock's time last on the wall clock (what to sleep for)."""
        return seconds / self.scale


class VirtualClock(Clock):
    """A clock that reads what its owner set (:attr:`now_ns`); it never moves by itself."""

    __slots__ = ("now_ns",)

    def __init__(self, now_ns: int = 0) -> None:
        super().__init__(origin_ns=now_ns)
        self.now_ns = now_ns
        self.time_ns = self._now

    def _now(self) -> int:
        return self.now_ns


WALL = Clock(origin_ns=0)
"""The system clock."""
