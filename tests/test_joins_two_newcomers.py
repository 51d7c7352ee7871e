"""The server's session rule (seqtrade.server.joins.Sessions, pure) when two new processes take an
id over from an owner killed without a goodbye: one of them joins, the other is refused.

The client decides a refused join with one hello sent once the owner could be taken over
(seqtrade.client.protocol, ``Refused``): two processes started as one id against a dead owner send
theirs at nearly the same time. A new owner's welcome is its sign of life until its first heartbeat,
which follows its catch-up; before it, a second hello from another session must not be welcomed too
(both would trade as the id and read its reports).
"""

from __future__ import annotations

from seqtrade.server.joins import SESSION_SILENCE_MS, Sessions

SID = "s1"


def test_two_new_processes_taking_over_a_dead_owner_are_not_both_welcomed() -> None:
    s = Sessions(timeout_ms=60_000)
    assert s.hello(SID, "old", 0) == ("", "")
    s.heartbeat(SID, "old", 0)  # then killed: no more heartbeats
    t = SESSION_SILENCE_MS + 250  # both deciding hellos, 10 ms apart, before B's first heartbeat
    refusal, note = s.hello(SID, "B", t)
    assert refusal == "" and "takes over from old" in note
    refusal, _ = s.hello(SID, "C", t + 10)
    assert refusal, "C welcomed too: two live processes trade as one id"
    assert s.retry_after(SID, t + 10) > 0  # C asks again; its deciding hello finds B live
    s.heartbeat(SID, "B", t + 1_000)
    assert s.hello(SID, "C", t + 10 + SESSION_SILENCE_MS)[0], "B heartbeats: it stays the owner"


def test_a_new_owner_killed_before_its_first_heartbeat_is_taken_over_after_the_silence() -> None:
    s = Sessions(timeout_ms=60_000)
    s.hello(SID, "old", 0)
    s.heartbeat(SID, "old", 0)
    t = SESSION_SILENCE_MS + 250
    assert s.hello(SID, "B", t)[0] == ""  # takes over, then is killed before any heartbeat
    assert s.hello(SID, "C", t + SESSION_SILENCE_MS)[0]
    refusal, note = s.hello(SID, "C", t + SESSION_SILENCE_MS + 1)
    assert refusal == "" and "takes over from B" in note
