"""Which funding times the paper venue settles at one look, and at which rates: a pure rule.

Pure: no I/O, no clock, no trio. The paper venue (:mod:`seqtrade.venues.paper`) calls
:func:`funding_due` at every market step, once at its start and before an order can fill, with the
last funding time it settled (kept in the paper account, :mod:`seqtrade.venues.paper_store`) and its time now.

On OKX every funding time settles whether or not anyone watched: a position held across three
funding times pays (or receives) three times. The paper venue does the same when it did not run
past several of them, a stalled process (SIGSTOP, a long GC pause, a suspended laptop) or a stopped
server alike:

- **Every missed time settles, each at its own time**, oldest first: the funding times in
  (``last_ms``, ``now_ms``], every multiple of ``interval_ms`` since the epoch. Each is its own
  settlement (its own account event, id ``funding-<symbol>-<time ms>``, stamped with that time).
- **Each at the rate that applied to it**: ``rates(t)``, the rate announced for time ``t``. On OKX
  the rate a settlement uses is the one fixed for that funding time, never the newest one. The paper
  venue's rate is a function of the symbol and the time (a seeded model,
  :func:`~seqtrade.venues.paper_derivs.funding_rate`), so the rate it published on ``funding/<symbol>/``
  for a time before a stall is the one that time settles at, and a time it had no chance to announce
  (it passed during the stall) settles at the rate it would have announced.
- **Bounded**: at most ``cap`` times (:data:`MAX_FUNDING_CATCH_UP`, 1000) at one look, the newest
  ones; the older ones beyond the cap are not settled and are counted in :attr:`FundingDue.skipped`
  for the venue to log. Why a cap and not "all, in batches": the missed settlements must all be
  made on the position as it was while nobody watched, before any new fill can change it, so they are
  made at one look, in memory, and committed in one transaction; with a test interval of 1 s a stall
  of a day would otherwise be 86,400 settlements a swap at once. The cap never bites at OKX's
  intervals short of a stop of 41 days (1 h, the shortest; 333 days at 8 h); an interval of seconds
  reaches it (the shipped config's 30 s after 8 h 20 min).
- **Once**: ``last_ms`` is the newest time settled, committed with the settlements in one transaction
  (:meth:`~seqtrade.venues.paper_store.PaperStore.save`), so after a kill -9 the venue restarts from
  either the old ``last_ms`` (nothing of the look was committed: all of it is settled again, with the
  same ids) or the new one (all of it was): a time is never settled twice nor skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["MAX_FUNDING_CATCH_UP", "FundingDue", "funding_due"]

# The most funding times settled at one look (see the module docstring: 41 days at OKX's shortest
# interval of 1 h; only a test interval of seconds reaches it).
MAX_FUNDING_CATCH_UP = 1000


@dataclass(frozen=True, slots=True)
class FundingDue:
    """What is due at one look. ``settle``: (funding time ms, rate per symbol) oldest first, each
    time once; ``skipped``: how many older missed times were beyond the cap and are not settled
    (0 but after a stall of more than the cap), the oldest of them ``skipped_from`` (0: none)."""

    settle: tuple[tuple[int, Mapping[str, float]], ...] = ()
    skipped: int = 0
    skipped_from: int = 0

    @property
    def times(self) -> list[int]:
        """The funding times to settle, oldest first."""
        return [t for t, _ in self.settle]

    @property
    def last(self) -> int | None:
        """The newest time settled at this look (to remember as settled), None when nothing is due."""
        return self.settle[-1][0] if self.settle else None


_NOTHING_DUE = FundingDue()  # the answer at almost every look


def funding_due(
    last_ms: int,
    now_ms: int,
    interval_ms: int,
    rates: Callable[[int], Mapping[str, float]],
    *,
    cap: int = MAX_FUNDING_CATCH_UP,
) -> FundingDue:
    """The funding times in (``last_ms``, ``now_ms``] (the multiples of ``interval_ms``), oldest
    first, each with ``rates(time)``: the rate per symbol announced for that time. At most ``cap``
    of them, the newest; the older ones are counted as skipped. ``last_ms`` need not be a multiple of
    ``interval_ms`` (the interval changed across a restart): the first time due is the first multiple
    after it. ``rates`` is called once per time settled, never for a skipped one."""
    if interval_ms <= 0:
        raise ValueError(f"funding interval must be positive, got {interval_ms} ms")
    if cap < 1:
        raise ValueError(f"cap must be at least 1, got {cap}")
    newest = now_ms // interval_ms * interval_ms
    first = (last_ms // interval_ms + 1) * interval_ms
    if newest < first:
        return _NOTHING_DUE
    missed = (newest - first) // interval_ms + 1
    skipped = max(0, missed - cap)
    start = first + skipped * interval_ms
    settle = tuple((t, dict(rates(t))) for t in range(start, newest + 1, interval_ms))
    return FundingDue(settle, skipped, first if skipped else 0)
