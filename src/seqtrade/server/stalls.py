"""What holds the server's Trio thread for long: a debug aid for the order path's tails
(bench/README.md, "Fourth pass: the tails").

Off unless the environment variable ``SEQTRADE_STALLS`` names a directory when this module is first
imported. Then :func:`install` (called by ``serve``) adds a Trio instrument that times every task step
and a ``gc.callbacks`` hook that times every collection, and the process writes, at exit,
``<dir>/<pid>.stalls``: one line per task step of ``STEP_NS`` or longer (``step <ns> <thread CPU ns> <task name>``:
the CPU time tells the thread's own work from the time the OS ran something else)
and one per collection (``gc<generation> <ns> <collected>``), each prefixed by its wall-clock start.
The order path pays nothing when it is off (nothing is installed).
"""

from __future__ import annotations

import atexit
import gc
import os
import time
from pathlib import Path
from typing import Any

import trio

__all__ = ["ON", "install"]

_DIR = os.environ.get("SEQTRADE_STALLS", "")
ON: bool = bool(_DIR)
STEP_NS = 200_000  # task steps at least this long are recorded
_lines: list[str] = []


class _Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self._t0 = self._c0 = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._t0 = time.perf_counter_ns()
        self._c0 = time.thread_time_ns()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        dt = time.perf_counter_ns() - self._t0
        if dt >= STEP_NS:
            cpu = time.thread_time_ns() - self._c0
            _lines.append(f"{time.time_ns() - dt} step {dt} {cpu} {task.name}\n")


_gc_t0 = 0


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    global _gc_t0
    if phase == "start":
        _gc_t0 = time.perf_counter_ns()
    else:
        dt = time.perf_counter_ns() - _gc_t0
        _lines.append(f"{time.time_ns() - dt} gc{info['generation']} {dt} {info['collected']}\n")


def _dump() -> None:
    if _lines:
        (Path(_DIR) / f"{os.getpid()}.stalls").write_text("".join(_lines))


def install() -> None:
    """Start recording (in the Trio thread's run), when ``SEQTRADE_STALLS`` is set."""
    if not ON:
        return
    trio.lowlevel.add_instrument(_Steps())
    gc.callbacks.append(_on_gc)
    atexit.register(_dump)
