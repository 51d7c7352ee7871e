"""How a strategy's callback exceptions are logged: the first of each callback in full, then counted.

A bug in ``on_ticker`` raises on every tick: a traceback per tick floods the log and hides everything
else. :class:`CallbackErrors` decides, per callback name: the first exception is logged with its
traceback; later ones are counted, and one summary line per ``interval`` seconds says how many there
were and what the last one was. ``counts`` (every exception since the start, per callback) goes to the
server with each heartbeat, for ``seqtrade status`` and ``seqtrade strategies``.

Pure rules: no I/O, the caller passes the monotonic time. The runner's callback guard
(:mod:`seqtrade.client.runner`) does the logging.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CallbackErrors", "SUMMARY_INTERVAL"]

SUMMARY_INTERVAL = 10.0  # seconds between two summary lines of one callback
MAX_NAMES = 64  # what a heartbeat's 'errors' map may hold (docs/protocol.md): names ...
MAX_NAME_LENGTH = 64  # ... of at most this many characters


@dataclass(slots=True)
class _Pending:
    since: float  # when the last line about this callback was logged
    count: int = 0  # exceptions since then
    last: str = ""  # "ValueError: message" of the newest one


class CallbackErrors:
    """Per callback: counts, and what to log when."""

    def __init__(self, interval: float = SUMMARY_INTERVAL) -> None:
        self.interval = interval
        self.counts: dict[str, int] = {}
        """callback name -> exceptions since the start (what the heartbeat carries)."""
        self._pending: dict[str, _Pending] = {}
        self._next_due = float("inf")

    def record(self, name: str, exc: BaseException, now: float) -> bool:
        """Count one exception of callback ``name``; True if it is the first (log it in full)."""
        n = self.counts.get(name, 0) + 1
        self.counts[name] = n
        p = self._pending.get(name)
        if p is None:
            self._pending[name] = _Pending(now)
            self._next_due = min(self._next_due, now + self.interval)
            return True
        if not p.count:
            self._next_due = min(self._next_due, p.since + self.interval)
        p.count += 1
        p.last = f"{type(exc).__name__}: {exc}"[:300]
        return False

    def for_heartbeat(self) -> dict[str, int]:
        """``counts`` as the heartbeat's ``errors`` map may carry it: names cut to 64 characters, the
        64 largest counts. A heartbeat the server refused would make the strategy look dead."""
        out: dict[str, int] = {}
        for name, n in sorted(self.counts.items(), key=lambda kv: -kv[1]):
            key = name[:MAX_NAME_LENGTH] or "?"
            if key in out or len(out) < MAX_NAMES:
                out[key] = out.get(key, 0) + n
        return out

    def due(self, now: float) -> list[str]:
        """The summary lines due at ``now``: for each callback that raised since its last line, at
        most one per ``interval``. Cheap when nothing is due (called on every loop turn)."""
        if now < self._next_due:
            return []
        return self._lines(now, force=False)

    def final(self, now: float) -> list[str]:
        """The summary lines of everything not yet told (the strategy is stopping)."""
        return self._lines(now, force=True)

    def _lines(self, now: float, *, force: bool) -> list[str]:
        out = []
        next_due = float("inf")
        for name, p in self._pending.items():
            if p.count and (force or now >= p.since + self.interval):
                out.append(f"{name} raised {p.count:,} more time{'s' if p.count > 1 else ''} in the last"
                           f" {now - p.since:.0f} s ({self.counts[name]:,} in all); the last: {p.last}")  # fmt: skip
                p.since, p.count = now, 0
            elif p.count:
                next_due = min(next_due, p.since + self.interval)
        self._next_due = next_due
        return out
