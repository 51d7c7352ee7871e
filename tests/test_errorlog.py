"""The callback guard's logging rules (seqtrade.client.errorlog), with explicit times: the first
exception of each callback is told in full, later ones in one summary line per interval, and the
counts (what the heartbeat carries) cover every exception."""

from __future__ import annotations

from seqtrade.client.errorlog import CallbackErrors


def test_the_first_exception_of_each_callback_is_told_in_full_and_the_rest_once_per_interval() -> None:
    e = CallbackErrors(interval=10.0)
    assert e.record("on_ticker", ValueError("bad 1"), 100.0) is True
    assert e.record("on_order", KeyError("k"), 100.5) is True  # another callback: its own first
    for i in range(2, 1235):
        assert e.record("on_ticker", ValueError(f"bad {i}"), 100.0 + i / 1000) is False
    assert e.due(109.9) == []  # not yet: one line per 10 s
    assert e.due(110.0) == [
        "on_ticker raised 1,233 more times in the last 10 s (1,234 in all); the last: ValueError: bad 1234"
    ]
    assert e.due(115.0) == []  # nothing new for on_ticker; on_order raised only once
    assert e.counts == {"on_ticker": 1234, "on_order": 1}


def test_a_callback_that_raises_again_later_is_summarised_no_sooner_than_an_interval_after_its_last_line() -> (
    None
):
    e = CallbackErrors(interval=10.0)
    e.record("tick", RuntimeError("x"), 0.0)
    e.record("tick", RuntimeError("y"), 1.0)
    assert e.due(10.0) == ["tick raised 1 more time in the last 10 s (2 in all); the last: RuntimeError: y"]
    e.record("tick", RuntimeError("z"), 12.0)
    assert e.due(19.0) == []
    assert e.due(20.0) == ["tick raised 1 more time in the last 10 s (3 in all); the last: RuntimeError: z"]


def test_on_the_way_out_everything_not_yet_told_is_told() -> None:
    e = CallbackErrors(interval=10.0)
    e.record("on_ticker", ValueError("a"), 0.0)
    e.record("on_ticker", ValueError("b"), 0.5)
    e.record("on_ticker", ValueError("c"), 1.0)
    assert e.final(2.0) == [
        "on_ticker raised 2 more times in the last 2 s (3 in all); the last: ValueError: c"
    ]
    assert e.final(3.0) == [] and e.due(100.0) == []


# ----------------------------------------------------------------------------- the heartbeat's 'errors'


def test_a_heartbeat_carries_the_counts_and_a_bad_errors_map_is_refused() -> None:
    import msgpack
    import pytest

    from seqtrade import wire
    from seqtrade.errors import WireError
    from seqtrade.models import Heartbeat

    hb = Heartbeat("s1", 1_700_000_000_000, errors={"on_ticker": 1234})
    assert wire.parse_request(wire.encode_message(hb)) == hb
    plain = Heartbeat("s1", 1_700_000_000_000)
    assert b"errors" not in wire.encode_message(plain)  # optional: absent unless sent
    assert wire.parse_request(wire.encode_message(plain)).errors is None

    def frame(errors: object) -> bytes:
        body = {"type": "heartbeat", "strategy_id": "s1", "timestamp": 1, "errors": errors}
        return wire.topic("heartbeat", "s1") + msgpack.packb(body)

    for bad in ([1], {"on_ticker": -1}, {"on_ticker": "3"}, {"on_ticker": True}, {"": 1}, {1: 2},
                {f"cb{i}": 1 for i in range(65)}, {"on_ticker": 2**64 - 1}):  # fmt: skip
        with pytest.raises(WireError):
            wire.parse_request(frame(bad))


def test_what_the_heartbeat_carries_is_always_a_valid_errors_map() -> None:
    """Many timers, long names (a functools.partial's repr): the map stays within what the server
    accepts, or every heartbeat would be refused and the strategy taken for dead."""
    from seqtrade import wire
    from seqtrade.models import Heartbeat

    e = CallbackErrors()
    for i in range(100):
        for _ in range(i + 1):
            e.record(f"timer_{i:03d}", ValueError(), 0.0)
    e.record(
        "functools.partial(<bound method X.y of <x.X object at 0x7f>>, " + "a" * 100 + ")", ValueError(), 0.0
    )
    e.record("", ValueError(), 0.0)
    sent = e.for_heartbeat()
    assert len(sent) == 64 and all(0 < len(k) <= 64 for k in sent)
    assert sent["timer_099"] == 100 and "timer_000" not in sent  # the largest counts are kept
    hb = Heartbeat("s1", 1, errors=sent)
    assert wire.parse_request(wire.encode_message(hb)) == hb
