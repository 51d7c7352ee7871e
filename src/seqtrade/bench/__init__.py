"""``seqtrade bench``: seqtrade's latency and throughput, measured against raw pyzmq in the same run.

The entry point is :func:`main`; the work lives in :mod:`seqtrade.bench.run`. This module imports
nothing heavy, because the benchmark's own subprocesses (``python -m seqtrade.bench._raw`` and
``python -m seqtrade.bench._strategy``) import it first: the raw baselines must load no seqtrade code.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``seqtrade bench [--quick|--smoke] [--json FILE] [--plot FILE.png]``; returns the exit code."""
    from .run import main as run_main

    return run_main(argv)
