"""The cyclic garbage collector, set for the server's order path (bench/README.md, "Fourth pass: the
tails").

At start-up the server builds what it keeps for its life (modules, config, instruments, the
journal's filter, the engine's tables). :func:`settle`, once ``seqtrade serve`` serves
(:func:`seqtrade.server.app.run_until_signal`; a library user's ``serve`` leaves its process alone),
collects once and freezes all of it out of the collector's generations (``gc.freeze``), so that no
later collection walks it again (before, a full collection walked every object of the process), and
raises the young generation's threshold from 700 to ``YOUNG_THRESHOLD``: the order path makes
short-lived containers that die by reference counting, and each young collection (60-280 µs with
the default threshold, every 45-130 orders in the bench) fell on whichever order arrived; now one
comes every few thousand orders (each longer: a few ms, ~7 objects an order outlive it). Nothing
is turned off: cycles are still found and freed, only less often; the middle and old generations
keep CPython's defaults; the one full collection at start-up takes 20-100 ms.
"""

from __future__ import annotations

import gc

__all__ = ["settle", "YOUNG_THRESHOLD"]

YOUNG_THRESHOLD = 20_000  # allocations (net of frees) between two young collections (CPython: 700)


def settle() -> None:
    """After start-up: one collection, then what lives is frozen and the young threshold raised."""
    gc.collect()
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], YOUNG_THRESHOLD), *threshold[1:])
