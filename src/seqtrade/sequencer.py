"""A backtest window's requests in one order, whatever order the strategy processes' frames arrived in.

Pure: no Trio, no ZeroMQ; frames are opaque to it (a ``classify`` function reads them).

In a backtest (:mod:`seqtrade.replay_backtest`) every strategy answers each ``sync`` with a
``sync_ack`` behind the requests it sent in that window (:mod:`seqtrade.vclock`). The processes run
concurrently, so their frames reach the server interleaved differently in every run; the server
handles requests in the order it reads them, and what it journals (order rows, venue order ids,
refusals) would follow that order. :class:`WindowSequencer` sits in front of the server's order task:
it holds what a strategy taking part in the clock sends that can reach the journal or the venue
(orders, cancels, amends, cancel-alls) and its acknowledgements, until **every** such strategy has
acknowledged the window; then it hands the window over in one batch, strategy by strategy in the order
of their ids, each strategy's frames in the order it sent them, its acknowledgement last. The server
decides and journals that batch as one (one journal write for its new orders), so two runs of the same
backtest write the same bytes.

Everything else passes at once, in the order it came: joins (``hello``), heartbeats, goodbyes,
history requests, frames of strategies not taking part in the clock, and frames it cannot read (the
server refuses them as usual). After :meth:`WindowSequencer.finish` (the recording is over) nothing is
held: what was is handed over with the next frames.

A frame is parsed once: ``classify`` may keep what it parsed of a frame in :attr:`WindowSequencer.parsed`
(``id(frame) -> (frame, parsed)``), and the reader of the frames handed over takes it from there
(:meth:`WindowSequencer.take`) instead of parsing the frame again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

__all__ = ["WindowSequencer", "HELD_TYPES", "ACK_TYPE"]

F = TypeVar("F")

ACK_TYPE = "sync_ack"
HELD_TYPES = frozenset({"order_request", "cancel_request", "amend_request", "cancel_all", ACK_TYPE})
"""The request types held until the window is complete (what can reach the journal or the venue)."""

# What ``classify`` says of a frame: (request type, strategy id, the acknowledged step: 0 unless a
# sync_ack), or None for a frame it cannot read.
Classified = tuple[str, str, int] | None


class WindowSequencer(Generic[F]):
    """See the module docstring. ``strategies``: the ids taking part in the clock; ``classify``: a
    frame's type, strategy id and (for a ``sync_ack``) step, or None when it cannot be read."""

    def __init__(self, strategies: Iterable[str], classify: Callable[[F], Classified]) -> None:
        self.strategies = sorted(set(strategies))
        self.classify = classify
        self.step = 0  # the window being waited for: set by the venue when it sends its sync
        self.active = True
        self._held: dict[str, list[tuple[F, int]]] = {s: [] for s in self.strategies}  # (frame, ack step)
        self._acked = dict.fromkeys(self.strategies, 0)  # the highest step each one's held frames acknowledge
        self._members = frozenset(self.strategies)
        # id(frame) -> (frame, what classify parsed of it): kept by classify, taken by the frames' reader
        # (the frame is held here too, so its id is not reused while the entry lives)
        self.parsed: dict[int, tuple[F, Any]] = {}

    @property
    def held(self) -> int:
        """Frames held now."""
        return sum(len(v) for v in self._held.values())

    def __call__(self, frames: list[F]) -> list[F]:
        """The frames to handle now, in the order to handle them (``frames`` just read, in arrival order)."""
        out: list[F] = []
        members, held, acked = self._members, self._held, self._acked
        classify = self.classify if self.active else None
        for frame in frames:
            c = classify(frame) if classify is not None else None
            if c is None or c[0] not in HELD_TYPES or c[1] not in members:
                out.append(frame)
                continue
            kind, sid, step = c
            if kind == ACK_TYPE:
                held[sid].append((frame, step))
                if step > acked[sid]:
                    acked[sid] = step
            else:
                held[sid].append((frame, 0))
        if self.active and self._complete():
            out += self._release()
        elif not self.active and self.held:
            out += [f for sid in self.strategies for f, _ in held[sid]]
            for sid in self.strategies:
                held[sid].clear()
                acked[sid] = 0
        return out

    def take(self, frame: F) -> Any:
        """What ``classify`` parsed of ``frame`` (once: the entry goes), or None if it kept nothing."""
        got = self.parsed.pop(id(frame), None)
        return got[1] if got is not None and got[0] is frame else None

    def finish(self) -> None:
        """No more windows: hold nothing from now on (what is held goes with the next frames)."""
        self.active = False

    def _complete(self) -> bool:
        """Every strategy has acknowledged the current window (or a later one)."""
        step = self.step if self.step > 0 else 1  # (an acknowledgement names a step >= 1)
        acked = self._acked
        for sid in self.strategies:
            if acked[sid] < step:
                return False
        return bool(self.strategies)

    def _release(self) -> list[F]:
        """Each strategy's frames up to its acknowledgement of the window, strategy by strategy."""
        out: list[F] = []
        step = self.step
        acked = self._acked
        for sid in self.strategies:
            frames = self._held[sid]
            if len(frames) == 1:  # (the usual window: its acknowledgement alone)
                out.append(frames[0][0])
                frames.clear()
                acked[sid] = 0
                continue
            cut = next(i for i, (_, s) in enumerate(frames) if s >= step and s > 0)
            out += [f for f, _ in frames[: cut + 1]]
            del frames[: cut + 1]
            acked[sid] = max((s for _, s in frames), default=0)
        return out
