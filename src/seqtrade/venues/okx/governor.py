"""Keeps order entry under OKX's per-instrument rate limits (docs/okx.md §7).

Place, cancel and amend each allow 60 requests per 2 s per account and instrument, REST and WS
together. The :class:`Governor` holds one bounded queue per (operation, symbol) and releases a request
only when its sliding window has room, so the exchange never answers 50011. Cancels are released
before amends and amends before new orders. A full queue refuses the request at once (the caller turns
that into a rejection with the reason) instead of letting the backlog grow without bound.

OKX counts a request when it *receives* it, and that can be long after we released it (a slow event
loop, a new connection, a busy network). With ``count_until_done`` a released request holds its slot
until the sender calls :meth:`Governor.done` (after the answer came, or the send failed), and the slot
stays taken for the period after that. Each request is therefore counted over an interval that
contains the moment OKX received it plus a whole period, so no ``period`` window at the exchange can
hold more than ``limit`` of them, however late or bunched they arrive.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

import trio

__all__ = ["Op", "RateWindow", "Governor", "take_slot"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Op(StrEnum):
    CANCEL = "cancel"  # released first
    AMEND = "amend"
    PLACE = "place"
    QUERY = "query"  # GET trade/order; waited for with acquire(), never queued


_RELEASE_ORDER = (Op.CANCEL, Op.AMEND, Op.PLACE)


class RateWindow:
    """A sliding window: at most ``limit`` takes in any ``period`` seconds. Pure; time is passed in.

    A slot may also be *held* (:meth:`hold`) for a request whose send time is not known yet; it counts
    as taken until :meth:`release` turns it into a take at the release time.
    """

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self._times: deque[float] = deque()
        self.held = 0

    def free(self, now: float) -> int:
        """Takes allowed right now."""
        self._expire(now)
        return self.limit - len(self._times) - self.held

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.period:
            self._times.popleft()

    def wait_time(self, now: float) -> float:
        """Seconds until a take is allowed (0.0: now; ``inf``: only after a :meth:`release`)."""
        self._expire(now)
        over = len(self._times) + self.held - self.limit  # this many must expire, and one more
        if over < 0:
            return 0.0
        if over >= len(self._times):
            return math.inf
        return self._times[over] + self.period - now

    def take(self, now: float) -> None:
        self._times.append(now)

    def hold(self) -> None:
        self.held += 1

    def release(self, now: float) -> None:
        """A held slot becomes a take at ``now`` (so it stays counted for a period from now)."""
        self.held = max(self.held - 1, 0)
        self._times.append(now)


async def take_slot(window: RateWindow, clock: Callable[[], float] = trio.current_time) -> None:
    """Wait until ``window`` has room, then take a slot (for requests sent right after)."""
    while (wait := window.wait_time(clock())) > 0:  # noqa: ASYNC110 - a timed wait for the window
        await trio.sleep(wait)
    window.take(clock())


@dataclass(slots=True)
class _Lane(Generic[T]):
    window: RateWindow
    queue: deque[T]


class Governor(Generic[T]):
    """Per-(operation, symbol) queues released under sliding-window rate limits.

    ``limit`` per ``period`` is applied with ``margin`` seconds added to the period, so that network
    jitter between us and the exchange cannot squeeze 61 requests into its 2 s window.
    ``max_queue`` bounds each queue: about one window's worth of backlog. With ``count_until_done``
    each released request holds its slot until :meth:`done` (see the module docstring); without it,
    a request counts from its release.
    """

    def __init__(
        self,
        limit: int = 60,
        period: float = 2.0,
        *,
        margin: float = 0.1,
        max_queue: int = 60,
        clock: Callable[[], float] = trio.current_time,
        count_until_done: bool = False,
    ) -> None:
        self.limit = limit
        self.count_until_done = count_until_done
        self.nominal_period = period
        self.period = period + margin
        self.max_queue = max_queue
        self._clock = clock
        self._lanes: dict[tuple[Op, str], _Lane[T]] = {}
        self._wakeup = trio.Event()

    def _lane(self, op: Op, symbol: str) -> _Lane[T]:
        lane = self._lanes.get((op, symbol))
        if lane is None:
            lane = self._lanes[(op, symbol)] = _Lane(RateWindow(self.limit, self.period), deque())
        return lane

    def submit(self, op: Op, symbol: str, item: T) -> str | None:
        """Queue ``item``; returns None, or the reason it was refused (backlog full).

        The bound counts only what must wait: items the window lets go at once do not count.
        """
        lane = self._lane(op, symbol)
        if len(lane.queue) >= self.max_queue + max(lane.window.free(self._clock()), 0):
            return (
                f"rate limit: {len(lane.queue)} {op.value} requests for {symbol} already queued "
                f"(OKX allows {self.limit} per {self.nominal_period:g} s)"
            )
        lane.queue.append(item)
        self._wakeup.set()
        return None

    def remove(self, op: Op, symbol: str, match: Callable[[T], bool]) -> T | None:
        """Take a queued (not yet released) item out again, e.g. a new order cancelled before sending."""
        lane = self._lanes.get((op, symbol))
        if lane is None:
            return None
        for item in lane.queue:
            if match(item):
                lane.queue.remove(item)
                return item
        return None

    def queued(self, op: Op, symbol: str) -> int:
        lane = self._lanes.get((op, symbol))
        return len(lane.queue) if lane else 0

    def release_ready(self) -> tuple[list[tuple[Op, T]], float | None]:
        """Everything that may go now, cancels first; and the seconds until more may (None: idle)."""
        now = self._clock()
        ready: list[tuple[Op, T]] = []
        next_wait: float | None = None
        for op in _RELEASE_ORDER:
            for (lane_op, _symbol), lane in self._lanes.items():
                if lane_op is not op:
                    continue
                while lane.queue:
                    wait = lane.window.wait_time(now)
                    if wait > 0:
                        next_wait = wait if next_wait is None else min(next_wait, wait)
                        break
                    if self.count_until_done:
                        lane.window.hold()
                    else:
                        lane.window.take(now)
                    ready.append((op, lane.queue.popleft()))
        if next_wait is not None and math.isinf(next_wait):
            next_wait = None  # only a done() frees a slot, and it wakes the release loop
        return ready, next_wait

    def done(self, op: Op, symbol: str) -> None:
        """A request released with ``count_until_done`` was answered (or will never be sent).

        Call exactly once per released request: its slot counts from now for one more period.
        """
        lane = self._lanes.get((op, symbol))
        if lane is None or not self.count_until_done:
            return
        lane.window.release(self._clock())
        self._wakeup.set()

    async def acquire(self, op: Op, symbol: str) -> None:
        """Wait for a slot of ``op`` on ``symbol`` (for queries; not queued, not bounded)."""
        await take_slot(self._lane(op, symbol).window, self._clock)

    async def run(
        self, handle: Callable[[Op, T], Any], *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Release queued requests to ``handle`` as the windows allow, until cancelled.

        Owns nothing but the queues. ``handle`` is called synchronously and must not block (it starts
        the send in a task of its own). Cancelled with the enclosing nursery; queued items are dropped.
        """
        task_status.started()
        while True:
            self._wakeup = trio.Event()
            ready, wait = self.release_ready()
            for op, item in ready:
                handle(op, item)
            if ready:
                await trio.lowlevel.checkpoint()
                continue
            with trio.move_on_after(wait if wait is not None else float("inf")):
                await self._wakeup.wait()
