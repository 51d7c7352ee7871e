"""The join rules on their own (no sockets): replays that cannot storm, sessions, goodbye, new-id budget.

The engine is driven as the gateway drives it (see tests/test_engine.py's Shell): requests in, the
report stage's steps out; replays are read from a real journal file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from seqtrade.models import Goodbye, Heartbeat, Hello, OrderReport, OrderStatus
from seqtrade.server.engine import Cancel, Replay
from seqtrade.server.joins import NEW_IDS_PER_WINDOW, REPLAY_COOLDOWN_MS, KeyedRateLog, Replays, Sessions

from .test_engine import S, Shell, now_ms, order, server_config


def _history(shell: Shell, sid: str, n: int) -> None:
    """Reports of ``sid`` up to seq ``n`` in the journal and the engine's seqs, as a server that ran before."""
    rows = [
        ("", OrderReport(seq, f"c{seq}", "", sid, S, "buy", "limit", 99.0, 1.0, OrderStatus.REJECTED), False)
        for seq in range(shell.engine.seqs.get(sid, 0) + 1, n + 1)
    ]
    shell.journal.add_reports(rows, [])
    shell.engine.seqs[sid] = n


def _hello_step(shell: Shell, hello: Hello) -> Replay:
    out = shell.engine.on_request(hello, now_ms())
    (item,) = out.replies
    assert isinstance(item, Replay)
    return item


def _pump(shell: Shell) -> list[OrderReport]:
    """Every step of the replays in flight, as the replay task sends them."""
    sent: list[OrderReport] = []
    while chunks := shell.engine.replay_chunks():
        for sid, after, limit in chunks:
            got = shell.journal.reports_after(sid, after, limit)
            shell.engine.replayed(sid, after, limit, got, 0)
            sent += got
    return sent


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    return Shell(server_config(tmp_path), tmp_path)


def test_the_welcome_comes_first_and_names_the_last_seq_then_the_replay_in_bounded_steps(
    shell: Shell,
) -> None:
    _history(shell, "a", 1000)
    w = shell.engine.on_hello(Hello("a", 10, "n1"), 0)
    assert w is not None and w.last_seq == 1000 and w.nonce == "n1" and w.symbols == [S]
    steps = []
    while chunks := shell.engine.replay_chunks():
        ((sid, after, limit),) = chunks
        got = shell.journal.reports_after(sid, after, limit)
        shell.engine.replayed(sid, after, limit, got, 0)
        steps.append([r.seq for r in got])
    assert [seq for step in steps for seq in step] == list(range(11, 1001))  # each once, in order
    assert max(len(step) for step in steps) <= shell.engine.replays.step
    assert shell.engine.counters.replays == 1


def test_hellos_during_a_replay_are_coalesced_n_hellos_one_replay(shell: Shell) -> None:
    """A client saying hello every 100 ms while it catches up: one replay, each report sent once."""
    _history(shell, "a", 2000)
    assert shell.engine.on_hello(Hello("a", 0, "n1"), 0) is not None
    sent: list[OrderReport] = []
    repeats = 0
    for i in range(50):
        # a step of the replay, then a hello: the same nonce with the newest seq it holds ...
        for sid, after, limit in shell.engine.replay_chunks():
            got = shell.journal.reports_after(sid, after, limit)
            shell.engine.replayed(sid, after, limit, got, 0)
            sent += got
        last = sent[-1].seq if sent else 0
        again = shell.engine.on_hello(Hello("a", last, "n1"), 0)
        repeats += again is not None  # its welcome again (it may have lost the first), no reports
        # ... and a fresh nonce (an older client re-joining): nothing at all until the replay ends
        assert shell.engine.on_hello(Hello("a", last, f"x{i}"), 0) is None or not shell.engine.replays.active
    sent += _pump(shell)
    assert [r.seq for r in sent] == list(range(1, 2001))
    assert shell.engine.counters.replays == 1 and shell.engine.counters.hellos_coalesced >= 1
    assert repeats >= 1


def test_a_hello_from_before_the_replay_in_flight_rewinds_it(shell: Shell) -> None:
    _history(shell, "a", 600)
    shell.engine.on_hello(Hello("a", 300, "n1"), 0)
    first = [r.seq for sid, after, limit in shell.engine.replay_chunks()
             for r in _read(shell, sid, after, limit)]  # fmt: skip
    assert first[0] == 301
    w = shell.engine.on_hello(Hello("a", 100, "n2"), 0)
    assert w is not None and w.nonce == "n2"
    assert [r.seq for r in _pump(shell)] == list(range(101, 601))
    assert shell.engine.counters.replays == 1


def _read(shell: Shell, sid: str, after: int, limit: int) -> list[OrderReport]:
    got = shell.journal.reports_after(sid, after, limit)
    shell.engine.replayed(sid, after, limit, got, 0)
    return got


def test_replays_of_several_strategies_take_turns(shell: Shell) -> None:
    for sid in ("a", "b"):
        _history(shell, sid, 700)
        shell.engine.on_hello(Hello(sid, 0, "n"), 0)
    chunks = shell.engine.replay_chunks()
    assert {sid for sid, _, _ in chunks} == {"a", "b"}
    assert sum(limit for _, _, limit in chunks) <= shell.engine.replays.step


def test_a_strategy_in_sync_gets_its_welcome_and_no_replay(shell: Shell) -> None:
    _history(shell, "a", 5)
    assert shell.engine.on_hello(Hello("a", 5, "n"), 0) is not None
    assert shell.engine.replay_chunks() == []


def test_a_replay_goes_on_to_reports_made_while_it_runs(shell: Shell) -> None:
    _history(shell, "a", 300)
    shell.engine.on_hello(Hello("a", 0, "n"), 0)
    sent = [
        r.seq for sid, after, limit in shell.engine.replay_chunks() for r in _read(shell, sid, after, limit)
    ]
    _history(shell, "a", 310)  # ten more were journaled meanwhile
    sent += [r.seq for r in _pump(shell)]
    assert sent == list(range(1, 311))


# ----------------------------------------------------------------------------- sessions


def test_a_second_live_session_is_refused_and_the_owner_keeps_its_id(shell: Shell) -> None:
    t = now_ms()
    eng = shell.engine
    assert _hello_step(shell, Hello("a", 0, "n1", session="A")).refusal is None
    eng.on_request(Heartbeat("a", t, "A"), t)
    step = _hello_step(shell, Hello("a", 0, "n2", session="B"))
    assert step.refusal is not None and step.refusal.session == "B" and step.refusal.nonce == "n2"
    assert "in use by another live process" in step.refusal.reason and eng.counters.refused == 1
    # the owner re-joins as it likes
    assert _hello_step(shell, Hello("a", 0, "n3", session="A")).refusal is None
    assert eng.sessions.by_sid["a"].session == "A"


def test_a_session_whose_heartbeats_stopped_is_taken_over(shell: Shell) -> None:
    eng = shell.engine
    _hello_step(shell, Hello("a", 0, "n1", session="A"))
    eng.sessions.heartbeat("a", "A", 1_000)
    silence = eng.sessions.silence_ms  # SESSION_SILENCE_MS, or server.heartbeat_timeout if shorter
    assert eng.sessions.hello("a", "B", 1_000 + silence)[0]  # still live
    refusal, note = eng.sessions.hello("a", "B", 1_000 + silence + 1)
    assert refusal == "" and "takes over from A" in note
    assert eng.sessions.by_sid["a"].session == "B"


def test_a_session_that_said_goodbye_is_taken_over_at_once(shell: Shell) -> None:
    t = now_ms()
    _hello_step(shell, Hello("a", 0, "n1", session="A"))
    shell.engine.on_request(Heartbeat("a", t, "A"), t)
    shell.engine.on_request(Goodbye("a", "A"), t)
    assert _hello_step(shell, Hello("a", 0, "n2", session="B")).refusal is None


def test_clients_that_name_no_session_are_not_told_apart(shell: Shell) -> None:
    t = now_ms()
    _hello_step(shell, Hello("a", 0, "n1"))
    shell.engine.on_request(Heartbeat("a", t), t)
    assert _hello_step(shell, Hello("a", 0, "n2")).refusal is None


def test_goodbye_is_a_departure_that_applies_the_policy_at_once(shell: Shell, caplog) -> None:
    shell.request(order("a", "c1"))
    shell.venue_step(0, 0, 0.0)  # accepted: open
    shell.drain()
    t = now_ms()
    shell.engine.on_request(Heartbeat("a", t, "A"), t)
    with caplog.at_level(logging.INFO):
        out = shell.engine.on_request(Goodbye("a", "A"), t)
    assert out.departed == "a" and out.strategy is None
    assert out.venue == [Cancel(shell.engine.open_records("a")[0].venue_order_id, S)]
    assert any(
        "strategy a left (goodbye): cancelling its 1 open orders" in r.getMessage() for r in caplog.records
    )
    assert not any("taken for dead" in r.getMessage() for r in caplog.records)
    # a goodbye from a session that does not own the id changes nothing
    shell.engine.on_request(Heartbeat("b", t, "B1"), t)
    assert shell.engine.on_request(Goodbye("b", "B2"), t).departed is None


# ----------------------------------------------------------------------------- floods


def test_new_strategy_ids_are_admitted_within_a_budget_per_window() -> None:
    s = Sessions(5_000, known={"old"})
    admitted = [s.admit_new(f"x{i}", 10_000) for i in range(NEW_IDS_PER_WINDOW + 50)]
    assert admitted.count(True) == NEW_IDS_PER_WINDOW and s.throttled == 50
    assert s.admit_new("old", 10_000)  # an id with a history always may
    assert s.admit_new("x0", 10_000)  # and so may one admitted before
    assert s.admit_new("fresh", 11_000)  # the next window


def test_a_throttled_hello_is_dropped_without_a_welcome_or_a_log_line_each(shell: Shell, caplog) -> None:
    t = now_ms()
    with caplog.at_level(logging.WARNING):
        outs = [shell.engine.on_request(Hello(f"new{i}", 0, "n"), t) for i in range(NEW_IDS_PER_WINDOW + 100)]
    dropped = [o for o in outs if not o.replies]
    assert len(dropped) == 100 and all(o.strategy is None for o in dropped)
    assert shell.engine.counters.hellos_throttled == 100
    assert len([r for r in caplog.records if "too many new strategy ids" in r.getMessage()]) == 1


def test_per_strategy_lookups_do_not_scan_other_strategies_orders(shell: Shell) -> None:
    """The index behind a hello's welcome, a dead strategy and cancel_all: one strategy's records."""
    for i in range(50):
        shell.request(order("a", f"c{i}"))
    for i in range(50):
        shell.venue_step(i, 0, 0.0)
    shell.drain()
    assert set(shell.engine.by_sid) == {"a"}
    assert shell.engine.open_records("b") == [] and shell.engine.on_strategy_dead("b").venue == []
    w = shell.engine.on_hello(Hello("b", 0, "n"), 0)
    assert w is not None and w.open_orders == []
    assert len(shell.engine.open_records("a")) == 50


def test_rate_limited_log_says_how_many_it_skipped(caplog) -> None:
    rl = KeyedRateLog(logging.getLogger("t"), interval_ms=1000)
    with caplog.at_level(logging.INFO):
        for ms in range(0, 2500, 100):
            rl("k", ms, logging.INFO, "event %s", "x")
    assert [r.getMessage() for r in caplog.records] == [
        "event x", "event x (and 9 more like it)", "event x (and 9 more like it)"
    ]  # fmt: skip


def test_replays_object_alone() -> None:
    r = Replays(step=10)
    assert r.hello("a", 0, "n", 100) == "welcome" and r.started == 1
    assert r.hello("a", 5, "n", 100) == "again"
    assert r.hello("a", 5, "m", 100) == "coalesced" and r.coalesced == 1
    ((sid, after, limit),) = r.chunks()
    r.sent(sid, after, limit, 10)
    assert r.active["a"].cursor == 10
    r.sent("a", 10, 10, 13, now_ms=5_000)  # a short chunk: done
    assert not r.active
    # the next replay of that strategy waits for the cooldown: hellos meanwhile are coalesced
    assert r.hello("a", 0, "z", 100, now_ms=5_000 + REPLAY_COOLDOWN_MS - 1) == "coalesced"
    assert r.hello("a", 100, "z", 100, now_ms=5_001) == "welcome"  # nothing to replay: welcomed
    assert r.hello("a", 0, "z", 100, now_ms=5_000 + REPLAY_COOLDOWN_MS) == "welcome" and r.started == 2
