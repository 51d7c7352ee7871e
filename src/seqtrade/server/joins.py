"""Who may join as a strategy id, and the replays that bring a joining strategy up to date.

Pure rules, no I/O (the engine holds one of each; the gateway performs what they decide):

- :class:`Sessions`: one live session (process) per strategy id. A hello names its process's
  ``session``; the session of the last hello let in owns the id. A hello from another session is
  refused while the owner is live: its last heartbeat (not its hellos: a process is live once it
  runs) came within :data:`SESSION_SILENCE_MS` (or ``server.heartbeat_timeout`` if shorter) and it
  has not said goodbye. Heartbeats come every second, so a process killed without a goodbye is
  taken over a few seconds later, not after the (often long) timeout that decides what happens to
  its orders. New strategy ids are admitted at most
  :data:`NEW_IDS_PER_WINDOW` per :data:`NEW_ID_WINDOW_MS`: a flood of hellos from fresh ids costs
  the server a dict lookup each, not a welcome, a log line and a strategy entry.
- :class:`Replays`: at most one replay in flight per strategy, fed in paced chunks
  (:meth:`Replays.chunks`) so that other strategies' orders keep their latency. docs/protocol.md
  ("Joining") is the contract these rules implement.
- :class:`KeyedRateLog`: at most one line per key per interval, with the count of those skipped.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

__all__ = [
    "Sessions",
    "Session",
    "Replays",
    "ReplayState",
    "KeyedRateLog",
    "NEW_IDS_PER_WINDOW",
    "NEW_ID_WINDOW_MS",
    "REPLAY_STEP",
    "REPLAY_STEP_MAX",
    "REPLAY_SLICE_S",
    "SESSION_SILENCE_MS",
    "REPLAY_COOLDOWN_MS",
]

NEW_IDS_PER_WINDOW = 200  # strategy ids never seen before, admitted per window
NEW_ID_WINDOW_MS = 1_000
SESSION_SILENCE_MS = 3_000  # an owner whose last heartbeat is older than this may be taken over
REPLAY_STEP = 16  # reports read and sent per pass, over every strategy catching up
REPLAY_STEP_MAX = 256  # reports per step of the replay task at most (a step is also cut by time)
REPLAY_SLICE_S = 0.0001  # a step of the replay task ends after the pass that crosses this
# After a replay ends, the next one for that strategy starts no sooner than this: hellos queued
# during a replay (a burst, or a client that says hello every 100 ms with fresh nonces) would
# otherwise each start a new one as soon as it ends. They are coalesced; the client repeats.
REPLAY_COOLDOWN_MS = 1_000
MAX_SESSIONS = 10_000  # sessions remembered; beyond it the longest silent ones are forgotten


@dataclass(slots=True)
class Session:
    session: str  # "" for a client that does not name its session
    last_ms: int | None = None  # wall-clock ms of its last heartbeat (None: none yet)
    gone: bool = False  # it said goodbye


class Sessions:
    """The live session of each strategy id, and the budget for new ids."""

    def __init__(self, timeout_ms: int, known: set[str] | None = None) -> None:
        self.silence_ms = min(timeout_ms, SESSION_SILENCE_MS)
        self.known: set[str] = set(known or ())  # ids with a history (journal) or admitted before
        self.by_sid: OrderedDict[str, Session] = OrderedDict()
        self._window_start = 0
        self._window_new = 0
        self.throttled = 0  # hellos from new ids over the budget

    def admit_new(self, sid: str, now_ms: int) -> bool:
        """May ``sid`` join? Known ids always may; a new id only within the per-window budget."""
        if sid in self.known:
            return True
        if now_ms - self._window_start >= NEW_ID_WINDOW_MS:
            self._window_start, self._window_new = now_ms, 0
        if self._window_new >= NEW_IDS_PER_WINDOW:
            self.throttled += 1
            return False
        self._window_new += 1
        self.known.add(sid)
        return True

    def hello(self, sid: str, session: str, now_ms: int) -> tuple[str, str]:
        """A hello from ``session``: ("", note) when it may join (note: "" or why it took over),
        else (why it is refused, ""); :meth:`retry_after` says when it may ask again."""
        cur = self.by_sid.get(sid)
        if cur is not None and cur.session == session:
            cur.gone = False
            self.by_sid.move_to_end(sid)
            return "", ""
        note = ""
        if cur is not None and not cur.gone and session and cur.session and cur.last_ms is not None:
            silent = now_ms - cur.last_ms
            if silent <= self.silence_ms:
                return (
                    f"strategy id {sid!r} is in use by another live process (session {cur.session}, last "
                    f"heartbeat {silent / 1000:.1f} s ago): stop that process, or run this one with another "
                    f"--id (the id is free once its process has said goodbye, or {self.silence_ms / 1000:g} s "
                    f"after its last heartbeat)"
                ), ""
            note = f"session {session} takes over from {cur.session} (silent for {silent / 1000:.1f} s)"
        # A session that takes over: its welcome is its sign of life until its first heartbeat, so that
        # another session's hello right after it (two processes started as one id) is refused.
        self._set(sid, Session(session, now_ms if note else None))
        return "", note

    def retry_after(self, sid: str, now_ms: int) -> float:
        """Seconds until the owner of ``sid`` may be taken over if it stays silent from now."""
        cur = self.by_sid.get(sid)
        if cur is None or cur.last_ms is None:
            return 0.0
        return max(0.0, (cur.last_ms + self.silence_ms - now_ms) / 1000)

    def heartbeat(self, sid: str, session: str, now_ms: int) -> None:
        cur = self.by_sid.get(sid)
        if cur is None:
            self._set(sid, Session(session, now_ms))
        elif not session or not cur.session or cur.session == session:
            cur.last_ms = now_ms
            cur.gone = False
            self.by_sid.move_to_end(sid)

    def goodbye(self, sid: str, session: str) -> bool:
        """The owner leaves (True); a goodbye from another session changes nothing (False)."""
        cur = self.by_sid.get(sid)
        if cur is None or (session and cur.session and cur.session != session):
            return False
        cur.gone = True
        return True

    def _set(self, sid: str, s: Session) -> None:
        self.by_sid[sid] = s
        self.by_sid.move_to_end(sid)
        while len(self.by_sid) > MAX_SESSIONS:
            self.by_sid.popitem(last=False)


@dataclass(slots=True)
class ReplayState:
    nonce: str | int
    start: int  # the replay covers the reports after this seq ...
    cursor: int  # ... and has sent them up to this one


class Replays:
    """The replays in flight: one per strategy, served in turn, a bounded number of reports a step."""

    def __init__(self, step: int = REPLAY_STEP) -> None:
        self.step = step
        self.active: OrderedDict[str, ReplayState] = OrderedDict()
        self.ended: dict[str, int] = {}  # strategy -> ms its last replay ended (within the cooldown)
        self.started = 0  # replays started (a coalesced hello starts none)
        self.coalesced = 0  # hellos answered by a replay already in flight

    def hello(self, sid: str, last_seq: int, nonce: str | int, server_seq: int, now_ms: int = 0) -> str:
        """A hello reaches the report stage. Returns what to do:

        - ``"welcome"``: send a welcome for this hello, then the replay (started here if the strategy
          is behind, or rewound to ``last_seq`` when it asks from before the replay in flight);
        - ``"again"``: a repeat of the hello of the replay in flight (same nonce): its welcome again,
          nothing more (the first may not have reached it);
        - ``"coalesced"``: another hello during a replay that covers it, or one that would start a
          replay within :data:`REPLAY_COOLDOWN_MS` of the end of the last: nothing now; the client
          asks again and is answered when the replay in flight has ended and the cooldown passed.
        """
        r = self.active.get(sid)
        if r is not None:
            if last_seq < r.start:
                r.start = r.cursor = last_seq
                r.nonce = nonce
                return "welcome"
            if nonce == r.nonce:
                return "again"
            self.coalesced += 1
            return "coalesced"
        if last_seq < server_seq:
            ended = self.ended.get(sid)
            if ended is not None and now_ms - ended < REPLAY_COOLDOWN_MS:
                self.coalesced += 1
                return "coalesced"
            self.active[sid] = ReplayState(nonce, last_seq, last_seq)
            self.started += 1
        return "welcome"

    def chunks(self) -> list[tuple[str, int, int]]:
        """The next step: (strategy, replay the reports after this seq, at most this many), in turn."""
        if not self.active:
            return []
        each = max(1, self.step // len(self.active))
        out = []
        for sid, r in list(self.active.items())[: self.step]:
            out.append((sid, r.cursor, each))
            self.active.move_to_end(sid)
        return out

    def sent(self, sid: str, after: int, limit: int, last_sent: int | None, now_ms: int = 0) -> None:
        """A chunk was sent (``last_sent``: the seq of its last report, None: it was empty). A short
        chunk ends the replay: the strategy has every report the journal holds."""
        r = self.active.get(sid)
        if r is None or r.cursor != after:
            return  # rewound meanwhile
        if last_sent is not None:
            r.cursor = last_sent
        if last_sent is None or last_sent - after < limit:
            del self.active[sid]
            if len(self.ended) > 1_000:
                self.ended = {k: t for k, t in self.ended.items() if now_ms - t < REPLAY_COOLDOWN_MS}
            self.ended[sid] = now_ms

    def cancel(self, sid: str) -> None:
        self.active.pop(sid, None)


class KeyedRateLog:
    """One log line per ``key`` per ``interval_ms``; the next one says how many were skipped."""

    def __init__(self, logger: logging.Logger, interval_ms: int = 5_000) -> None:
        self.log = logger
        self.interval_ms = interval_ms
        self._last: dict[str, tuple[int, int]] = {}  # key -> (ms of the last line, lines skipped since)

    def __call__(self, key: str, now_ms: int, level: int, msg: str, *args: object) -> None:
        last, skipped = self._last.get(key, (-(10**18), 0))
        if now_ms - last < self.interval_ms:
            self._last[key] = (last, skipped + 1)
            return
        if len(self._last) > 1_000:
            self._last.clear()
        self._last[key] = (now_ms, 0)
        if skipped:
            msg += f" (and {skipped} more like it)"
        self.log.log(level, msg, *args)
