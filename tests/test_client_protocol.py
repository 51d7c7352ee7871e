"""The client protocol object on its own: frames and times in, events and requests out, no sockets."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrade import wire
from seqtrade.client.protocol import (
    CATCHUP_STALL,
    HEARTBEAT_INTERVAL,
    HELLO_INTERVAL,
    SERVER_SILENT,
    STALL,
    SYNC_INTERVAL,
    ClientProtocol,
    Refused,
    Report,
    ServerLost,
    Synced,
)
from seqtrade.models import (
    Book,
    Goodbye,
    Heartbeat,
    Hello,
    OrderReport,
    OrderStatus,
    Refusal,
    Ticker,
    Trade,
    VenueStatus,
    Welcome,
)

SID = "s1"
S = "BTC-USDT"


def report(seq: int, status: OrderStatus = OrderStatus.ACCEPTED, coid: str | None = None) -> OrderReport:
    return OrderReport(seq, coid or f"c{seq}", f"x{seq}", SID, S, "buy", "limit", 99.0, 1.0, status)


def frame(msg: object) -> bytes:
    return wire.encode_message(msg)


def protocol(last_seq: int = 0, session: str = "") -> ClientProtocol:
    """A protocol with nonces n1, n2, ... and (unless given) no session, as a client that does not
    name its session: the hellos below compare equal to Hello(SID, seq, nonce)."""
    n = itertools.count(1)
    return ClientProtocol(SID, last_seq=last_seq, nonce_factory=lambda: f"n{next(n)}", session=session)


def hellos(proto: ClientProtocol) -> list[Hello]:
    out = proto.requests_to_send()
    assert all(isinstance(m, Hello) for m in out), out
    return out  # type: ignore[return-value]


def joined(proto: ClientProtocol, now: float = 0.0, last_seq: int = 0) -> ClientProtocol:
    """``proto`` through a join with nothing to replay beyond ``last_seq``, its run phase started."""
    proto.hello(now)
    (h,) = hellos(proto)
    ev = proto.receive_report_frame(frame(Welcome(SID, h.nonce, last_seq, [])), now)
    assert isinstance(ev, Synced) and ev.first
    proto.start(now)
    proto.requests_to_send()
    return proto


def ticker(seq: int, symbol: str = S) -> Ticker:
    return Ticker(symbol, 1, 100.0, 99.9, 100.1, 1.0, 1.0, 10.0, seq, 5)


# ------------------------------------------------------------------------------------------ join


def test_join_handshake_replays_then_welcomes():
    p = protocol()
    p.hello(10.0)
    (h,) = hellos(p)
    assert (h.strategy_id, h.last_seq, h.nonce) == (SID, 0, "n1") and p.next_wakeup() == 10.0 + HELLO_INTERVAL
    p.tick(10.05, 0)
    assert p.requests_to_send() == []  # not due yet
    ev = p.receive_report_frame(frame(report(1)), 10.06)
    assert ev == Report(report(1), joining=True)
    p.tick(10.0 + HELLO_INTERVAL, 0)  # no welcome yet: the same nonce again, with the newest last_seq
    assert hellos(p) == [Hello(SID, 1, "n1")]
    assert p.receive_report_frame(frame(report(1)), 10.11) is None  # the second hello's replay: a duplicate
    assert p.receive_report_frame(frame(report(2)), 10.11) == Report(report(2), joining=True)
    ev = p.receive_report_frame(frame(Welcome(SID, "n1", 2, [report(2)])), 10.12)
    assert isinstance(ev, Synced) and ev.first and ev.welcome.open_orders == [report(2)]
    assert p.joined and p.nonce == "" and p.last_seq == 2
    p.tick(20.0, 0)
    assert p.requests_to_send() == []  # in sync, not started: nothing to send
    # a welcome for the hello sent twice arrives twice: the second is not news
    assert p.receive_report_frame(frame(Welcome(SID, "n1", 2, [])), 20.0) is None
    assert p.receive_report_frame(frame(report(3)), 20.0) == Report(report(3), joining=False)


def test_welcome_with_another_nonce_is_ignored():
    p = protocol()
    p.hello(0.0)
    hellos(p)
    assert p.receive_report_frame(frame(Welcome(SID, "someone-else", 0, [report(9)])), 0.01) is None
    assert p.receive_report_frame(frame(Welcome(SID, 12345, 0, [])), 0.01) is None
    assert not p.joined and p.nonce == "n1"
    p.tick(HELLO_INTERVAL, 0)
    assert hellos(p) == [Hello(SID, 0, "n1")]  # still joining
    assert isinstance(p.receive_report_frame(frame(Welcome(SID, "n1", 0, [])), 0.2), Synced)


def test_welcome_ahead_of_us_starts_the_catch_up_and_the_last_report_completes_the_join():
    """The welcome comes first and names the server's last seq; the join completes on the report
    that brings us to it, and no hello is sent while the replay comes."""
    p = protocol()
    p.hello(0.0)
    hellos(p)
    assert p.receive_report_frame(frame(Welcome(SID, "n1", 3, [report(3)])), 0.01) is None
    assert not p.joined and p.target == 3
    p.tick(0.5, 0)
    assert p.requests_to_send() == []  # catching up: no hello
    assert p.receive_report_frame(frame(report(1)), 0.02) == Report(report(1), joining=True)
    assert p.receive_report_frame(frame(report(5)), 0.02) is None  # live, beyond 3: the replay brings it
    assert p.requests_to_send() == [] and p.report_gaps == 0
    assert p.receive_report_frame(frame(report(2)), 0.02) == Report(report(2), joining=True)
    ev = p.receive_report_frame(frame(report(3)), 0.03)
    assert isinstance(ev, Report) and ev.joining and isinstance(ev.synced, Synced) and ev.synced.first
    assert ev.synced.welcome.open_orders == [report(3)]
    assert p.joined and p.nonce == "" and p.target is None
    assert p.receive_report_frame(frame(report(4)), 0.04) == Report(report(4), joining=False)


def test_a_gap_while_catching_up_asks_again_with_a_fresh_nonce():
    """A report lost from the replay: what follows is dropped, and one hello asks again from where we
    are (the server answers it once the replay in flight has ended)."""
    p = protocol()
    p.hello(0.0)
    hellos(p)
    assert p.receive_report_frame(frame(Welcome(SID, "n1", 10, [])), 0.0) is None
    assert p.receive_report_frame(frame(report(1)), 0.0) is not None
    assert p.receive_report_frame(frame(report(3)), 0.0) is None  # 2 lost
    assert hellos(p) == [Hello(SID, 1, "n2")] and p.report_gaps == 1 and p.target is None
    assert p.receive_report_frame(frame(report(4)), 0.0) is None  # the rest of that replay: dropped
    assert p.requests_to_send() == [] and p.report_gaps == 1
    p.tick(HELLO_INTERVAL, 0)
    assert hellos(p) == [Hello(SID, 1, "n2")]  # re-sent until its welcome
    assert p.receive_report_frame(frame(Welcome(SID, "n2", 10, [])), 0.2) is None
    for seq in range(2, 10):
        assert p.receive_report_frame(frame(report(seq)), 0.2) == Report(report(seq), joining=True)
    ev = p.receive_report_frame(frame(report(10)), 0.2)
    assert isinstance(ev, Report) and ev.synced is not None and p.joined


def test_a_catch_up_that_stops_is_asked_again():
    """The replay stopped coming (the server restarted mid-replay): after CATCHUP_STALL, a hello."""
    p = protocol()
    p.hello(0.0)
    hellos(p)
    p.receive_report_frame(frame(Welcome(SID, "n1", 5, [])), 0.0)
    p.receive_report_frame(frame(report(1)), 1.0)
    assert p.next_wakeup() == 1.0 + CATCHUP_STALL
    p.tick(1.0 + CATCHUP_STALL - 0.01, 0)
    assert p.requests_to_send() == []
    p.tick(1.0 + CATCHUP_STALL + 0.01, 0)
    assert hellos(p) == [Hello(SID, 1, "n2")]


def test_a_repeated_welcome_only_moves_the_target_on():
    p = protocol()
    p.hello(0.0)
    hellos(p)
    p.receive_report_frame(frame(Welcome(SID, "n1", 2, [])), 0.0)
    assert p.receive_report_frame(frame(Welcome(SID, "n1", 3, [report(3)])), 0.0) is None
    assert p.receive_report_frame(frame(Welcome(SID, "n1", 1, [])), 0.0) is None  # an older copy
    assert p.target == 3 and p.last_seq == 0
    p.receive_report_frame(frame(report(1)), 0.0)
    assert p.receive_report_frame(frame(report(2)), 0.0) == Report(report(2), joining=True)
    ev = p.receive_report_frame(frame(report(3)), 0.0)
    assert isinstance(ev, Report) and ev.synced is not None and ev.synced.welcome.last_seq == 3


def test_hellos_and_heartbeats_name_the_session_and_a_refusal_for_it_stops_the_join():
    p = protocol(session="sess-a")
    p.hello(0.0)
    (h,) = hellos(p)
    assert h.session == "sess-a"
    assert p.receive_report_frame(frame(Refusal(SID, "n1", "sess-b", "in use")), 0.0) is None  # not ours
    ev = p.receive_report_frame(frame(Refusal(SID, "n1", "sess-a", "in use by another process", 2.0)), 0.0)
    assert isinstance(ev, Refused) and ev.first and ev.refusal.reason == "in use by another process"
    # asked again once a second; once the owner could have been taken over (2 s and a margin), a hello
    # with a fresh nonce decides: refused too (the owner heartbeats), so given up
    sent = []
    for i in range(1, 41):
        p.tick(i / 10, 0)
        for h in hellos(p):
            sent.append(h)
            ev = p.receive_report_frame(frame(Refusal(SID, h.nonce, "sess-a", "in use", 2.0)), i / 10)
            assert isinstance(ev, Refused) and not ev.first
    assert [h.nonce for h in sent] == ["n1", "n1", "n2"] and p.gave_up and p.nonce == ""
    # a process that was refused a while, then let in (the owner was gone): joined
    r = protocol(session="sess-a")
    r.hello(0.0)
    hellos(r)
    r.receive_report_frame(frame(Refusal(SID, "n1", "sess-a", "in use", 1.0)), 0.0)
    r.tick(1.0, 0)
    assert [h.nonce for h in hellos(r)] == ["n1"]
    assert r.receive_report_frame(frame(Welcome(SID, "n1", 1, [])), 1.1) is None  # let in, catching up
    r.tick(2.5, 0)  # past the refusal's retry_after: no deciding hello, the welcome came
    assert not r.gave_up and r.refused is None
    ev = r.receive_report_frame(frame(report(1)), 2.6)
    assert isinstance(ev, Report) and ev.synced is not None and r.joined
    q = joined(protocol(session="sess-a"))
    q.tick(1.0, 5)
    q.goodbye()
    assert [m for m in q.requests_to_send() if not isinstance(m, Hello)] == [
        Heartbeat(SID, 5, "sess-a"), Goodbye(SID, "sess-a")
    ]  # fmt: skip


def test_a_process_that_gave_up_sends_nothing_more_when_the_owners_reports_pass_by(caplog):
    """Refused, given up: the reports the owner of the id receives are no gap of ours to fill."""
    p = protocol(session="sess-a")
    p.hello(0.0)
    hellos(p)
    p.receive_report_frame(frame(Refusal(SID, "n1", "sess-a", "in use", 0.5)), 0.0)
    for i in range(1, 10):
        p.tick(i / 10, 0)
    (deciding,) = hellos(p)  # 0.5 s and the margin after the refusal
    p.receive_report_frame(frame(Refusal(SID, deciding.nonce, "sess-a", "in use", 2.0)), 0.9)
    assert p.gave_up
    hellos(p)
    caplog.set_level("INFO", logger="seqtrade.client")
    caplog.clear()
    assert p.receive_report_frame(frame(report(68)), 2.1) is None
    p.tick(2.2, 0)
    assert hellos(p) == [] and p.last_seq == 0
    assert "report gap" not in caplog.text


def test_a_silent_server_is_lost_once_then_rejoined_and_back():
    p = joined(protocol(last_seq=2), now=0.0, last_seq=2)
    status = VenueStatus("paper", True, [S], 1, seq=1)
    t = 0.0
    while t < 3.0:  # status every second: alive
        p.receive_md_frame(frame(status))
        assert p.tick(t, 0) is None
        t += 0.25
    p.requests_to_send()
    lost = []
    after_loss: list[Hello] = []
    while t < 3.0 + SERVER_SILENT + 3.0:  # silence
        ev = p.tick(t, 0)
        if ev is not None:
            lost.append((t, ev))
        sent = [m for m in p.requests_to_send() if isinstance(m, Hello)]
        if lost:
            after_loss += sent
        t = round(t + 0.25, 2)
    ((t_lost, ev),) = lost
    assert isinstance(ev, ServerLost) and ev.silent > SERVER_SILENT and p.lost
    assert after_loss[0].nonce == p.nonce and after_loss[0].last_seq == 2
    assert len(after_loss) <= 4  # one hello a second while lost (about 3 s here), not ten a second
    ev2 = p.receive_report_frame(frame(Welcome(SID, p.nonce, 2, [])), t)
    assert isinstance(ev2, Synced) and ev2.back and not ev2.first and not p.lost


def test_a_new_server_after_a_loss_is_joined_once_not_twice(caplog):
    """Lost, re-joined with the new server: its first status (seq from 0) is no second restart."""
    p = joined(protocol(last_seq=2), now=0.0, last_seq=2)
    p.receive_md_frame(frame(VenueStatus("paper", True, [S], 1, seq=50)))  # the old server's count
    t = 0.0
    while not p.lost:
        p.tick(t, 0)
        t = round(t + 0.25, 2)
    p.requests_to_send()
    assert isinstance(p.receive_report_frame(frame(Welcome(SID, p.nonce, 2, [])), t), Synced)
    caplog.set_level("INFO", logger="seqtrade.client")
    p.receive_md_frame(frame(VenueStatus("paper", True, [S], 2, seq=1)))  # the new server's first
    p.tick(t + 0.1, 0)
    assert [m for m in p.requests_to_send() if isinstance(m, Hello)] == []
    assert "server restarted" not in caplog.text


def test_a_server_of_another_protocol_version_is_named_in_the_log(caplog):
    p = protocol()
    p.hello(0.0)
    ev = p.receive_report_frame(frame(Welcome(SID, "n1", 0, [], protocol=2)), 0.0)
    assert isinstance(ev, Synced)  # keys and types a client does not know are ignored, not fatal
    assert [r.getMessage() for r in caplog.records] == ["the server speaks protocol 2, this client 1"]


def test_duplicate_reports_are_dropped():
    p = joined(protocol(last_seq=3), last_seq=3)
    for seq in (1, 2, 3):
        assert p.receive_report_frame(frame(report(seq, OrderStatus.FILLED)), 1.0) is None
    assert p.last_seq == 3 and p.report_gaps == 0
    assert p.receive_report_frame(frame(report(4)), 1.0) == Report(report(4), joining=False)
    assert p.receive_report_frame(frame(report(4)), 1.0) is None


def test_a_gap_sends_one_hello_and_the_replay_fills_it():
    p = joined(protocol())
    assert p.receive_report_frame(frame(report(1)), 1.0) == Report(report(1), joining=False)
    assert p.receive_report_frame(frame(report(3)), 1.0) is None
    assert hellos(p) == [Hello(SID, 1, "n2")] and p.report_gaps == 1
    assert p.receive_report_frame(frame(report(4)), 1.0) is None  # a hello is in flight: no second one
    assert p.requests_to_send() == [] and p.report_gaps == 1
    got = [p.receive_report_frame(frame(report(seq)), 1.01) for seq in (2, 3, 4)]
    assert got == [Report(report(seq), joining=False) for seq in (2, 3, 4)]
    ev = p.receive_report_frame(frame(Welcome(SID, "n2", 4, [report(4)])), 1.01)
    assert isinstance(ev, Synced) and not ev.first and ev.welcome.open_orders == [report(4)]
    assert p.nonce == ""


def test_welcome_open_orders_are_handed_over():
    p = protocol(last_seq=7)
    p.hello(0.0)
    hellos(p)
    opened = [report(5, coid="a"), report(7, OrderStatus.PARTIALLY_FILLED, coid="b")]
    ev = p.receive_report_frame(frame(Welcome(SID, "n1", 7, opened)), 0.0)
    assert isinstance(ev, Synced) and ev.welcome.open_orders == opened and ev.welcome.last_seq == 7


def test_a_server_whose_journal_is_behind_is_followed():
    p = joined(protocol(last_seq=5), last_seq=5)
    p.hello(1.0)
    (h,) = hellos(p)
    assert h.last_seq == 5
    assert isinstance(p.receive_report_frame(frame(Welcome(SID, h.nonce, 3, [])), 1.0), Synced)
    assert p.last_seq == 3
    assert p.receive_report_frame(frame(report(4)), 1.0) == Report(report(4), joining=False)


def test_bad_frames_and_unknown_messages_are_dropped():
    p = joined(protocol())
    assert p.receive_report_frame(b"report/s1/\xc1", 1.0) is None
    assert p.receive_report_frame(b"garbage", 1.0) is None
    assert p.receive_md_frame(b"ticker/X/\xc1") is None
    assert p.receive_md_frame(frame(Hello(SID, 0, "n"))) is None
    assert p.last_seq == 0 and p.md_gaps == 0 and p.requests_to_send() == []


# ------------------------------------------------------------------------------------------ time


def test_heartbeat_every_second_and_a_periodic_sync_hello():
    p = joined(protocol(), now=100.0)
    sent: list[tuple[float, object]] = []
    now = 100.0
    while now < 100.0 + 2 * SYNC_INTERVAL + 0.05:
        p.tick(now, int(now * 1000))
        sent += [(now, m) for m in p.requests_to_send()]
        if p.nonce:  # answer the sync hello at once: nothing was missing
            ev = p.receive_report_frame(frame(Welcome(SID, p.nonce, 0, [])), now)
            assert isinstance(ev, Synced) and not ev.first
        now = round(now + 0.05, 2)
    beats = [t for t, m in sent if isinstance(m, Heartbeat)]
    assert beats[0] == 100.0 and len(beats) == 11
    assert all(b - a == HEARTBEAT_INTERVAL for a, b in itertools.pairwise(beats))
    assert [m.timestamp for t, m in sent if isinstance(m, Heartbeat)][:2] == [100_000, 101_000]
    syncs = [(t, m.last_seq) for t, m in sent if isinstance(m, Hello)]
    assert syncs == [(100.0 + SYNC_INTERVAL, 0), (100.0 + 2 * SYNC_INTERVAL, 0)]


def test_next_wakeup_covers_hellos_heartbeats_and_the_sync():
    p = protocol()
    assert p.next_wakeup() is None
    p.hello(1.0)
    assert p.next_wakeup() == 1.0 + HELLO_INTERVAL
    p = joined(protocol(), now=2.0)
    p.tick(2.0, 0)
    assert p.next_wakeup() == 2.0 + HEARTBEAT_INTERVAL


def test_a_report_dropped_at_the_end_of_a_burst_arrives_with_the_sync():
    p = joined(protocol())
    assert p.receive_report_frame(frame(report(1)), 0.1) is not None
    # report 2 was journaled and published, and dropped on the way: nothing shows a gap
    sent = []
    for i in range(1, 11):  # the loop comes round every half second
        p.tick(i * 0.5, 0)
        sent += [(i * 0.5, m) for m in p.requests_to_send() if isinstance(m, Hello)]
    ((t, h),) = sent
    assert t == SYNC_INTERVAL and h.last_seq == 1
    assert p.receive_report_frame(frame(report(2)), SYNC_INTERVAL) == Report(report(2), joining=False)
    assert isinstance(p.receive_report_frame(frame(Welcome(SID, h.nonce, 2, [])), SYNC_INTERVAL), Synced)


def test_rejoin_after_a_stall():
    p = joined(protocol(last_seq=4), now=0.0, last_seq=4)
    p.tick(0.5, 0)
    assert not [m for m in p.requests_to_send() if isinstance(m, Hello)]
    p.tick(0.5 + STALL + 0.01, 0)  # the loop did not come round for over a second
    assert [m for m in p.requests_to_send() if isinstance(m, Hello)] == [Hello(SID, 4, "n2")]
    p.tick(0.5 + 2 * STALL + 0.1, 0)  # stalled again with a hello in flight: it is re-sent, not renewed
    assert [m for m in p.requests_to_send() if isinstance(m, Hello)] == [Hello(SID, 4, "n2")]


def test_no_stall_detection_before_start():
    p = protocol()
    p.hello(0.0)
    hellos(p)
    assert isinstance(p.receive_report_frame(frame(Welcome(SID, "n1", 0, [])), 0.0), Synced)
    p.tick(60.0, 0)  # on_start took a minute: not a stall, and no heartbeat before start()
    assert p.requests_to_send() == []
    p.start(60.0)
    p.tick(60.2, 0)
    assert [type(m) for m in p.requests_to_send()] == [Heartbeat]


def test_report_socket_reconnect_and_server_restart_rejoin():
    p = joined(protocol())
    p.reconnected(0.1)
    assert hellos(p) == [Hello(SID, 0, "n2")]
    p.reconnected(0.11)  # a hello is in flight already
    assert p.requests_to_send() == []
    assert isinstance(p.receive_report_frame(frame(Welcome(SID, "n2", 0, [])), 0.12), Synced)
    status = VenueStatus("paper", True, [S], 1, seq=50)
    assert p.receive_md_frame(frame(status)) == status
    p.tick(0.2, 0)
    assert not [m for m in p.requests_to_send() if isinstance(m, Hello)]
    restarted = VenueStatus("paper", True, [S], 2, seq=1)  # the status seq went backwards
    assert p.receive_md_frame(frame(restarted)) == restarted
    assert p.requests_to_send() == []  # no time came with the frame: the next tick sends the hello
    p.tick(0.3, 0)
    assert [m for m in p.requests_to_send() if isinstance(m, Hello)] == [Hello(SID, 0, "n3")]


# ------------------------------------------------------------------------------------------ market data


def test_market_data_seq_gaps_are_counted_per_topic():
    p = joined(protocol())
    for seq in (1, 2, 5):  # 3 and 4 lost
        assert p.receive_md_frame(frame(ticker(seq))) == ticker(seq)
    assert p.md_gaps == 2
    assert p.receive_md_frame(frame(ticker(40, "ETH-USDT"))) is not None  # a first message: no gap
    assert p.receive_md_frame(frame(ticker(6))) is not None and p.md_gaps == 2
    book = Book(S, 1, [[99.9, 1.0]], [[100.1, 1.0]], seq=1)
    trade = Trade(S, 1, "t1", 100.0, 0.1, "buy", seq=7)
    assert p.receive_md_frame(frame(book)) == book
    assert p.receive_md_frame(frame(trade)) == trade
    assert p.receive_md_frame(frame(Book(S, 2, [], [], seq=4))) is not None  # 2 and 3 lost
    assert p.receive_md_frame(frame(Trade(S, 2, "t2", 100.0, 0.1, "sell", seq=8))) is not None
    assert p.md_gaps == 4
    assert p.receive_md_frame(frame(ticker(6))) is not None and p.md_gaps == 4  # a repeat is no gap


# ------------------------------------------------------------------------------------------ property


class _Server:
    """A journal of ``n`` reports answering hellos as the server does: welcome, replay after last_seq."""

    def __init__(self, n: int) -> None:
        self.journal = [report(seq) for seq in range(1, n + 1)]

    def answer(self, hello: Hello) -> list[object]:
        return [Welcome(SID, hello.nonce, len(self.journal), []), *self.journal[hello.last_seq :]]


OPS = st.lists(
    st.tuples(
        st.sampled_from(["append", "publish", "answer", "stale", "tick", "rewelcome"]), st.integers(0, 2**16)
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 20), ops=OPS)
def test_any_delivery_hands_each_report_over_once_in_seq_order(n, ops):
    """New reports published or lost on the way, old ones duplicated and re-sent in any order,
    replays cut short (a frame dropped, a subscription that went live mid-replay), welcomes for other
    hellos, time jumping: the strategy gets each report of the journal exactly once, in seq order,
    and a welcome only once it has every report the welcome counts."""
    server = _Server(n)
    p = protocol()
    handed: list[Report] = []
    syncs = 0
    joined_at = -1
    now = 0.0
    sent: list[Hello] = []
    answered: list[object] = []

    def deliver(msg: object) -> None:
        nonlocal syncs, joined_at
        ev = p.receive_report_frame(frame(msg), now)
        if isinstance(ev, Report):
            handed.append(ev)
            ev = ev.synced
        if isinstance(ev, Synced):
            assert p.last_seq == ev.welcome.last_seq, "a join completed before we held the welcome's seq"
            assert ev.first == (syncs == 0)
            syncs += 1
            if ev.first:
                joined_at = len(handed)
                p.start(now)

    def collect() -> None:
        sent.extend(m for m in p.requests_to_send() if isinstance(m, Hello))

    p.hello(now)
    collect()
    for op, k in ops:  # an unreliable channel
        if op == "append":  # the server journals a new report and publishes it; bit 0 of k: lost
            server.journal.append(report(len(server.journal) + 1))
            if not k & 1:
                deliver(server.journal[-1])
        elif op == "publish" and server.journal:  # an old report again (a duplicate order request)
            deliver(server.journal[k % len(server.journal)])
        elif op == "answer" and sent:
            hello = sent.pop(0)
            for i, msg in enumerate(server.answer(hello)):
                if not (k >> (i % 16)) & 1:  # the bits of k that are set drop a frame
                    deliver(msg)
                    answered.append(msg)
        elif op == "stale":
            deliver(Welcome(SID, f"other{k}", k % (len(server.journal) + 2), []))
        elif op == "rewelcome" and answered:
            deliver(answered[k % len(answered)])
        elif op == "tick":
            now += (k % 2000) / 1000
            p.tick(now, 0)
        collect()
    for _ in range(20):  # then a reliable one: the protocol must get everything by itself
        if p.joined and not p.nonce and p.last_seq == len(server.journal):
            break
        now += SYNC_INTERVAL
        p.tick(now, 0)
        collect()
        while sent:
            for msg in server.answer(sent.pop(0)):
                deliver(msg)
            collect()
    assert [ev.report.seq for ev in handed] == list(range(1, len(server.journal) + 1))
    assert p.joined and syncs >= 1
    # the reports before the join completed rebuild state; every later one is news
    assert [ev.joining for ev in handed] == [i < joined_at for i in range(len(handed))]
