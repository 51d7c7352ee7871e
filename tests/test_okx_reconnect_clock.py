"""OKX adapter: reconnect backoff and exchange-clock recovery (issue 10, defects 1-3), in the fake.

- a session that got ready resets the reconnect backoff (the next connect comes within
  ``reconnect_min``), however many drops came before;
- any ``50102 Timestamp request expired`` re-syncs the clock at once, once for all requests that
  failed together, and requests safe to repeat (cancels, cancel-all-after refreshes, queries, pending
  lists) are sent once more; places are never re-sent (rejected: OKX did nothing);
- a WS login refused for its timestamp (60006, then close 4001) re-syncs the clock in a task that
  outlives the closed session, and the next login signs with the corrected clock;
- a soak: 20 drops of both sockets and two 40 s clock steps.

Real time with small reconnect delays (the venue talks to the fake over real sockets); every wait is
on an observable condition under ``trio.fail_after``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from seqtrade.models import OrderStatus, OrderType, Side
from seqtrade.venues.base import EventKind, OrderEvent

from .fakeokx import ClockRefusal, FakeOkx, open_fake_okx
from .test_fakeokx import limit, login_msg, private, recv, rest_client, signed_headers
from .test_okx_regressions import logins, poll
from .test_okx_venue import Collector, order, running

STEP_MS = 40_000  # more than OKX's 30 s window: every request signed with the old clock is refused
PATH_TIME = "/api/v5/public/time"
PATH_PENDING = "/api/v5/trade/orders-pending"
PATH_CANCEL = "/api/v5/trade/cancel-order"
PATH_CAA = "/api/v5/trade/cancel-all-after"
_DOWN = re.compile(r"^OKX (\w+) socket down .*reconnecting in ([0-9.]+) s$")


def time_calls(fake: FakeOkx) -> int:
    return sum(r.path == PATH_TIME for r in fake.requests)


def posts(fake: FakeOkx, path: str) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path == path]


def down_delays(records: list[logging.LogRecord]) -> list[tuple[str, float]]:
    """(socket, delay) of every "socket down ... reconnecting in X s" the venue logged."""
    out = []
    for rec in records:
        if (match := _DOWN.match(rec.getMessage())) is not None:
            out.append((match[1], float(match[2])))
    return out


async def until_ready(fake: FakeOkx, sink: Collector, n: int) -> None:
    """Wait until the n-th public session subscribed and the n-th private session got ready (its
    reconcile reads orders-pending only after login and subscribe: the session is ready by then)."""
    await sink.until(lambda: sink.connected.count(True) >= n)
    await poll(lambda: sum(r.path == PATH_PENDING for r in fake.requests) >= n)


def first_answer(sink: Collector, vid: str, done: Callable[[OrderEvent], bool]) -> Callable[[], Any]:
    return lambda: next((e for e in sink.of(vid) if done(e)), None)


# --------------------------------------------------------------------------- the fake's new knobs


async def test_fake_counts_clock_refusals() -> None:
    """step_clock moves the exchange clock; clock_refusals records REST 50102, WS login 60006 (then
    close 4001) and expTime drops, each with its request."""
    with trio.fail_after(10):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.step_clock(STEP_MS)
            r = await private(client, fake, "GET", PATH_PENDING)
            assert (r.status_code, r.json()["code"]) == (401, "50102")
            async with open_websocket_url(fake.ws_private_url) as ws:
                await ws.send_message(login_msg(fake))
                assert (await recv(ws))["code"] == "60006"
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason.code == 4001
            text = json.dumps(limit("99", "0.01", cl="ex1"), separators=(",", ":"))
            headers = signed_headers(fake, "POST", "/api/v5/trade/order", text, skew_ms=STEP_MS)
            headers["expTime"] = str(fake.now_ms() - 1)  # already past at the exchange
            r = await client.post("/api/v5/trade/order", content=text.encode(), headers=headers)
            assert r.json()["data"][0]["sCode"] == "50102"
            ok = await private(client, fake, "GET", PATH_PENDING, skew_ms=STEP_MS)
            assert ok.json()["code"] == "0"
            kinds = [(c.kind, c.code, c.request.path) for c in fake.clock_refusals]
            assert kinds == [
                ("auth", "50102", PATH_PENDING),
                ("login", "60006", "/ws/v5/private"),
                ("expTime", "50102", "/api/v5/trade/order"),
            ]
            assert fake.place_count("ex1") == 0


# --------------------------------------------------------------------------- 1. backoff reset


async def test_every_ready_session_reconnects_within_the_minimum_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 10 #1: end() cleared ``ready`` before the reconnect loop read it, so the backoff never
    reset: five drops after healthy sessions waited longer each time."""
    caplog.set_level(logging.WARNING, logger="seqtrade.venues.okx.ws")
    with trio.fail_after(20):
        async with (
            open_fake_okx() as fake,
            running(fake, reconnect_min=0.05, reconnect_max=5.0) as (venue, sink),
        ):
            for n in range(1, 6):
                await until_ready(fake, sink, n)
                await fake.disconnect(which="all")
            await until_ready(fake, sink, 6)
    delays = down_delays(caplog.records)
    assert sorted(name for name, _ in delays) == ["private"] * 5 + ["public"] * 5
    assert [d for _, d in delays if d > 0.05] == []
    for name in ("private", "public"):
        stats = venue.socket_stats[name]
        assert stats.drops == 5 and stats.ready_sessions == 6
        assert all(d.got_ready and d.delay <= 0.05 for d in stats.recent)


# --------------------------------------------------------------------------- 2. any 50102


async def test_rest_cancel_refused_for_the_clock_is_resynced_and_sent_again() -> None:
    """Issue 10 #2: after the exchange clock moved 40 s, REST cancels failed with 50102 until the
    periodic sync (only a refused place re-synced)."""
    with trio.fail_after(15):
        async with open_fake_okx() as fake, running(fake, order_transport="rest") as (venue, sink):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            await venue.place_order(order("ck1", OrderType.LIMIT, Side.BUY, 99.0, 0.01))
            await sink.final("ck1", OrderStatus.ACCEPTED)
            syncs = time_calls(fake)
            fake.step_clock(STEP_MS)
            await venue.cancel_order("ck1", "BTC-USDT")
            answer = await sink.until(
                first_answer(
                    sink,
                    "ck1",
                    lambda e: e.status is OrderStatus.CANCELLED or e.kind is EventKind.CANCEL_FAILED,
                )
            )
            assert (answer.kind, answer.status, answer.error_msg) == (
                EventKind.UPDATE,
                OrderStatus.CANCELLED,
                "",
            )
            assert len(posts(fake, PATH_CANCEL)) == 2  # refused once, sent once more
            assert [(c.kind, c.request.path) for c in fake.clock_refusals] == [("auth", PATH_CANCEL)]
            assert time_calls(fake) == syncs + 1


async def test_cancel_all_after_refresh_refused_for_the_clock_is_sent_again() -> None:
    """Issue 10 #2: every cancel-all-after refresh failed with 50102 after a clock step, and OKX
    cancelled every order when the dead man's switch ran out."""
    with trio.fail_after(15):
        async with open_fake_okx() as fake, running(fake, cancel_all_after=10.0) as (venue, _sink):
            fake.step_clock(STEP_MS)
            await venue.cancel_all_after(10.0)
            state = fake.cancel_all_after_state
            assert state.trigger_time_ms > fake.now_ms()  # armed from the exchange's new time
            assert state.fired_count == 0
            refused, retried = posts(fake, PATH_CAA)[-2:]
            assert [c.request for c in fake.clock_refusals] == [refused]
            assert retried.ts - refused.ts >= 1000  # OKX allows one call per second


async def test_queries_refused_together_cause_one_resync_and_each_is_sent_again() -> None:
    """Issue 10 #2: queries and pending lists refused with 50102 are sent again after one re-sync
    (coalesced: one public/time call for all of them)."""
    with trio.fail_after(20):
        async with open_fake_okx() as fake, running(fake) as (venue, sink):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            vids = [f"qr{i}" for i in range(8)]
            for vid in vids:
                await venue.place_order(order(vid, OrderType.LIMIT, Side.BUY, 99.0, 0.01))
            for vid in vids:
                await sink.final(vid, OrderStatus.ACCEPTED)
            syncs = time_calls(fake)
            fake.step_clock(STEP_MS)
            found: dict[str, OrderEvent | None] = {}

            async def query(vid: str) -> None:
                found[vid] = await venue.query_order(vid, "BTC-USDT")

            async with trio.open_nursery() as nursery:
                for vid in vids:
                    nursery.start_soon(query, vid)
            assert {vid: ev.status if ev else None for vid, ev in found.items()} == dict.fromkeys(
                vids, OrderStatus.ACCEPTED
            )
            assert time_calls(fake) == syncs + 1
            refused = [c.request.query.get("clOrdId") for c in fake.clock_refusals]
            assert refused and len(set(refused)) == len(refused)  # (all 8, unless one was signed late)
            mark = len(fake.clock_refusals)
            fake.step_clock(STEP_MS)
            assert sorted(e.venue_order_id for e in await venue.open_orders()) == vids
            assert time_calls(fake) == syncs + 2
            assert [c.request.path for c in fake.clock_refusals[mark:]] == [PATH_PENDING]


@pytest.mark.parametrize("transport", ["ws", "rest"])
async def test_place_refused_for_the_clock_is_rejected_never_resent_and_resyncs(transport: str) -> None:
    """A place refused for the clock (REST 50102 before processing; WS: dropped for its expTime) is
    rejected -- OKX did nothing -- and never sent again; the clock is re-synced so the next succeeds."""
    with trio.fail_after(15):
        async with open_fake_okx() as fake, running(fake, order_transport=transport) as (venue, sink):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            syncs = venue.clock_syncs
            fake.step_clock(STEP_MS)
            await venue.place_order(order("pr1", OrderType.LIMIT, Side.BUY, 99.0, 0.01))
            rejected = await sink.final("pr1", OrderStatus.ACCEPTED, OrderStatus.REJECTED)
            assert rejected.status is OrderStatus.REJECTED and rejected.error_msg.startswith("50102")
            assert fake.place_count("pr1") == 0
            await poll(lambda: venue.clock_syncs > syncs)
            await venue.place_order(order("pr2", OrderType.LIMIT, Side.BUY, 99.0, 0.01))
            await sink.final("pr2", OrderStatus.ACCEPTED)
            sent = [r for r in fake.requests if "pr1" in r.raw]
            assert len(sent) == 1  # never re-sent
            assert [c.kind for c in fake.clock_refusals] == ["expTime" if transport == "ws" else "auth"]


# --------------------------------------------------------------------------- 3. login re-sync


async def test_login_refused_for_the_clock_resyncs_beyond_the_closed_session() -> None:
    """Issue 10 #3: OKX sends the login error and closes with 4001; the close cancelled the re-sync
    started from the session, so every next login failed the same way (11-40 s to log in again)."""
    with trio.fail_after(10):
        async with open_fake_okx() as fake, running(fake) as (venue, sink):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            before = logins(fake)
            fake.step_clock(STEP_MS)
            # public/time answers after OKX's 4001 close has ended the session (a real round trip
            # is longer than the gap between the login error and the close that follows it)
            stall = fake.stall_next(f"GET {PATH_TIME}", 0.3)
            await fake.disconnect(which="private")
            await poll(lambda: any(c.logged_in and c.orders_args for c in fake.connections("private")))
            assert stall.hit.is_set()
            assert [c.kind for c in fake.clock_refusals] == ["login"]  # refused once, then logged in
            assert logins(fake) == before + 2
            await venue.place_order(order("lg1", OrderType.LIMIT, Side.BUY, 99.0, 0.01))
            await sink.final("lg1", OrderStatus.ACCEPTED)
            assert fake.clock_refusals[1:] == []


# --------------------------------------------------------------------------- soak


SOAK_CONFIG: dict[str, Any] = {
    "order_transport": "rest",  # cancels and places signed with the clock too
    "cancel_all_after": 120.0,  # refreshed every 40 s: only when the test asks, within the soak
    "reconnect_min": 0.05,
    "request_timeout": 5.0,  # longer than the stalled public/time below
}


def refused_twice(refusals: list[ClockRefusal]) -> list[tuple[str, str]]:
    """Requests refused more than once among ``refusals`` (one clock step's worth): a REST request
    and its retry have the same target and body; a login is one per socket."""
    seen: set[tuple[str, str]] = set()
    twice = []
    for c in refusals:
        key = ("login", c.request.path) if c.kind == "login" else (c.request.method, c.request.raw)
        if key in seen:
            twice.append(key)
        seen.add(key)
    return twice


async def soak(drops: int, steps: dict[int, str]) -> None:
    """``drops`` forced drops of both sockets. At each index in ``steps`` the exchange clock moves
    40 s while the sockets are up and idle, then: ``"trade"`` -- a cancel-all-after refresh, a query
    and a cancel at once (all refused: one re-sync, each sent again) and a place, then the drop;
    ``"drop"`` -- the drop at once, so the next private login is the first request signed with the
    old clock.
    """
    reconnect_min = SOAK_CONFIG["reconnect_min"]
    with trio.fail_after(60):
        async with (
            open_fake_okx() as fake,
            running(fake, **SOAK_CONFIG) as (venue, sink),
        ):
            stats = venue.socket_stats
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            serial = iter(range(1000))
            vid = f"sk{next(serial)}"
            await venue.place_order(order(vid, OrderType.LIMIT, Side.BUY, 99.0, 0.01))
            await sink.final(vid, OrderStatus.ACCEPTED)
            syncs = time_calls(fake)
            epochs = []  # index into fake.clock_refusals where each clock step began
            queried: list[OrderEvent | None] = []

            async def query(vid: str) -> None:
                queried.append(await venue.query_order(vid, "BTC-USDT"))

            for i in range(drops):
                # both up, and the private reconcile over: nothing is signed until the test asks
                await poll(lambda i=i: all(s.up and s.opened > i for s in stats.values()))
                if steps.get(i) == "trade":
                    epochs.append(len(fake.clock_refusals))
                    fake.step_clock(STEP_MS)
                    # a slow public/time: the cancel-all-after call (up to 1.05 s behind, OKX allows
                    # one a second) is signed while the re-sync is still in flight, and joins it
                    fake.stall_next(f"GET {PATH_TIME}", 2.5)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(venue.cancel_all_after, 120.0)
                        nursery.start_soon(query, vid)
                        await venue.cancel_order(vid, "BTC-USDT")
                        await sink.final(vid, OrderStatus.CANCELLED)
                    vid = f"sk{next(serial)}"
                    await venue.place_order(order(vid, OrderType.LIMIT, Side.BUY, 99.0, 0.01))
                    await sink.final(vid, OrderStatus.ACCEPTED)
                if steps.get(i) == "drop":  # the next login is the first request signed after the step
                    epochs.append(len(fake.clock_refusals))
                    fake.step_clock(STEP_MS)
                await fake.disconnect(which="all")
            await poll(lambda: all(s.up and s.opened > drops for s in stats.values()))
            caa = fake.cancel_all_after_state
            assert caa.fired_count == 0 and caa.trigger_time_ms > fake.now_ms()
            refusals = list(fake.clock_refusals)
            resyncs = time_calls(fake) - syncs
    for name, s in stats.items():
        ready_drops = [d for d in s.recent if d.got_ready]
        assert len(ready_drops) == drops, name
        assert [d.delay for d in ready_drops if d.delay > reconnect_min] == [], name
    bounds = [*epochs, len(refusals)]
    assert refusals[: bounds[0]] == []  # nothing refused before the first step
    for (i, kind), start, end in zip(sorted(steps.items()), bounds[:-1], bounds[1:], strict=True):
        assert refused_twice(refusals[start:end]) == [], i
        if kind == "drop":
            assert [c.kind for c in refusals[start:end]] == ["login"], i
        else:
            paths = sorted(c.request.path for c in refusals[start:end])
            assert paths == sorted([PATH_CAA, PATH_CANCEL, "/api/v5/trade/order"]), i
    assert resyncs == len(steps)  # one public/time per step, however many requests were refused
    assert all(q is not None for q in queried)
    failures = [e for e in sink.events if e.kind is not EventKind.UPDATE or e.status is OrderStatus.REJECTED]
    assert failures == []


async def test_soak_drops_and_clock_steps() -> None:
    """Issue 10, done means: 20 drops and two clock steps; every session that got ready reconnects
    within the minimum backoff, and no request is refused twice for the clock."""
    await soak(20, {6: "trade", 13: "drop"})


@pytest.mark.parametrize("body", [{"code": "0", "data": []}, {"code": "0", "data": [{"ts": "soon"}]}])
async def test_a_malformed_public_time_answer_is_a_venue_error_not_a_crash(body: dict[str, object]) -> None:
    """A re-sync that meets a malformed answer must fail as VenueError (logged, retried later): an
    IndexError/ValueError would escape the re-sync task and stop the whole venue."""
    import httpx

    from seqtrade.errors import VenueError
    from seqtrade.venues.okx.auth import OkxCredentials
    from seqtrade.venues.okx.rest import ExchangeClock, open_rest_client

    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    creds = OkxCredentials("k", "s", "p")
    with trio.fail_after(5):
        async with open_rest_client("http://okx.test", creds, ExchangeClock(), demo=True, timeout=1.0,
                                    transport=transport) as rest:  # fmt: skip
            with pytest.raises(VenueError, match="unexpected answer"):
                await rest.sync_clock()
            await rest.resync_clock()  # the background re-sync logs it and ends; nothing escapes
