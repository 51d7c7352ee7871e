"""Restarting a strategy right after kill -9: the new process always takes the id over, and a
process whose id is really in use always gives up.

The client's protocol (seqtrade.client.protocol, pure) against the server's rule (seqtrade.server.
joins.Sessions, pure) in virtual time, with the delays a loaded machine adds: frames take a while
each way, and the client's event loop wakes late. The owner of the id heartbeats once a second
until it is killed (or for ever); the new process says hello some time after the kill.

A restart was once refused under load (tests/test_faults.py::test_strategy_kill9_and_restart): the
client asked again once a second and gave up on a timer, ``retry_after`` + 1 s after the first
refusal, so a hello that left a little late could find the owner not yet free and the next one come
after the timer: given up although the owner was dead.
"""

from __future__ import annotations

import heapq
import itertools

from hypothesis import example, given, settings
from hypothesis import strategies as st

from seqtrade import wire
from seqtrade.client.protocol import TAKEOVER_MARGIN, ClientProtocol, Refused, Synced
from seqtrade.models import Hello, Refusal, Welcome
from seqtrade.server.joins import Sessions

SID = "s1"


def simulate(
    *,
    kill_s: float | None,
    start_s: float,
    first_beat_s: float,
    late_s: list[float],
    there_s: float,
    back_s: float,
) -> str:
    """Run the new process's join; "joined" or "gave up" (or "undecided" after 60 s).

    The owner (session "old") heartbeats at ``first_beat_s`` + k s while ``kill_s`` (None: never)
    has not come. The new process (session "new") starts its join at ``start_s``; each of its wake-ups
    comes ``late_s[i]`` after the time it asked for (cycled), each frame takes ``there_s`` to the
    server and ``back_s`` back."""
    sessions = Sessions(timeout_ms=60_000)
    beats = itertools.count()
    next_beat = first_beat_s
    n = itertools.count(1)
    p = ClientProtocol(SID, nonce_factory=lambda: f"n{next(n)}", session="new")
    lateness = itertools.cycle(late_s)
    inbox: list[tuple[float, int, bytes]] = []  # frames on their way to the client: (arrival, order, frame)
    order = itertools.count()

    def server_until(t: float) -> None:
        nonlocal next_beat
        while next_beat <= t and (kill_s is None or next_beat < kill_s):
            sessions.heartbeat(SID, "old", round(next_beat * 1000))
            next(beats)
            next_beat += 1.0

    def send(t: float) -> None:
        for msg in p.requests_to_send():
            if not isinstance(msg, Hello):
                continue
            at = t + there_s
            server_until(at)
            refusal, _ = sessions.hello(SID, msg.session, round(at * 1000))
            if refusal:
                answer: Refusal | Welcome = Refusal(
                    SID, msg.nonce, msg.session, refusal, sessions.retry_after(SID, round(at * 1000))
                )
            else:
                answer = Welcome(SID, msg.nonce, 0, [])
            heapq.heappush(inbox, (at + back_s, next(order), wire.encode_message(answer)))

    server_until(start_s)
    t = start_s
    p.hello(t)
    send(t)
    while t < start_s + 60:
        due = p.next_wakeup()
        wake = (due if due is not None else t + 1.0) + next(lateness)
        if inbox and inbox[0][0] <= wake:
            t, _, frame = heapq.heappop(inbox)
            ev = p.receive_report_frame(frame, t)
            if isinstance(ev, Synced):
                return "joined"
            assert ev is None or isinstance(ev, Refused)
        else:
            t = max(t, wake)
        p.tick(t, round(t * 1000))
        if p.gave_up:
            return "gave up"
        send(t)
    return "undecided"


delays = st.floats(min_value=0.0005, max_value=0.2)


@settings(max_examples=300, deadline=None)
@given(
    first_beat=st.floats(min_value=0.0, max_value=1.0),
    kill=st.floats(min_value=1.0, max_value=3.0),
    start_after=st.floats(min_value=0.0, max_value=4.0),
    late=st.lists(st.floats(min_value=0.0, max_value=0.3), min_size=1, max_size=8),
    there=delays,
    back=delays,
)
@example(
    first_beat=0.25, kill=1.375, start_after=2.75, late=[0.25], there=0.125, back=0.125
)  # gave up before
def test_a_process_started_after_the_owner_was_killed_always_takes_the_id_over(
    first_beat: float, kill: float, start_after: float, late: list[float], there: float, back: float
) -> None:
    outcome = simulate(kill_s=kill, start_s=kill + start_after, first_beat_s=first_beat, late_s=late,
                       there_s=there, back_s=back)  # fmt: skip
    assert outcome == "joined"


@settings(max_examples=150, deadline=None)
@given(
    first_beat=st.floats(min_value=0.0, max_value=1.0),
    start=st.floats(min_value=1.0, max_value=5.0),
    late=st.lists(st.floats(min_value=0.0, max_value=0.3), min_size=1, max_size=8),
    there=delays,
    back=delays,
)
def test_a_process_whose_id_is_in_use_by_a_live_one_gives_up(
    first_beat: float, start: float, late: list[float], there: float, back: float
) -> None:
    outcome = simulate(
        kill_s=None, start_s=start, first_beat_s=first_beat, late_s=late, there_s=there, back_s=back
    )
    assert outcome == "gave up"


def test_the_deciding_hello_leaves_once_the_owner_could_be_taken_over() -> None:
    n = itertools.count(1)
    p = ClientProtocol(SID, nonce_factory=lambda: f"n{next(n)}", session="new")
    p.hello(0.0)
    p.requests_to_send()
    ev = p.receive_report_frame(wire.encode_message(Refusal(SID, "n1", "new", "in use", 0.3)), 0.1)
    assert isinstance(ev, Refused) and ev.first
    assert p.next_wakeup() == 0.1 + 0.3 + TAKEOVER_MARGIN  # before the next once-a-second hello
    p.tick(0.5, 500)
    assert p.requests_to_send() == []
    p.tick(0.65, 650)
    (h,) = p.requests_to_send()
    assert isinstance(h, Hello) and h.nonce == "n2"  # a fresh nonce: its answer decides
    assert (
        p.receive_report_frame(wire.encode_message(Refusal(SID, "n1", "new", "in use", 0.0)), 0.7) is not None
    )
    assert not p.gave_up  # a late answer to an earlier hello decides nothing
    p.receive_report_frame(wire.encode_message(Refusal(SID, "n2", "new", "in use", 2.5)), 0.75)
    assert p.gave_up and p.nonce == ""  # refused after the owner could have been taken over: it is live
