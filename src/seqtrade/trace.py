"""Stage timestamps on the order path, for ``seqtrade bench --only stages`` (bench/README.md).

Off unless the environment variable ``SEQTRADE_TRACE`` names a directory when this module is first
imported: then :data:`ON` is True, :func:`mark` records ``(key, stage, time.time_ns())`` in memory and
the process writes them to ``<dir>/<pid>.trace`` (one ``key stage ns`` line each) when it exits.
Callers guard every mark with ``if trace.ON:`` so that the order path pays one global read when off.
``time.time_ns`` (the wall clock) is read by every process on the machine alike, so marks from the
strategy and the server line up.
"""

from __future__ import annotations

import atexit
import os
import time
from pathlib import Path

__all__ = ["ON", "mark"]

_DIR = os.environ.get("SEQTRADE_TRACE", "")
ON: bool = bool(_DIR)
_marks: list[tuple[str, str, int]] = []


def mark(key: str, stage: str, ns: int = 0) -> None:
    """Record that ``key`` (a client order id, with ``:status`` for a report) passed ``stage`` now
    (or at ``ns``)."""
    _marks.append((key, stage, ns or time.time_ns()))


def _dump() -> None:
    if _marks:
        path = Path(_DIR) / f"{os.getpid()}.trace"
        path.write_text("".join(f"{k} {s} {t}\n" for k, s, t in _marks))


if ON:
    atexit.register(_dump)
