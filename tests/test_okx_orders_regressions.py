"""Regression tests for issue 10, defects 4-6 of the OKX adapter (each failed before its fix).

4. reconcile reads every page of missed fills (``after`` = billId), not just the newest 100;
5. every order gets ``accepted`` (or ``rejected``) first, whatever order OKX's messages come in;
6. the rate governor never provokes 50011, even when the event loop is slow.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest
import trio
import trio.testing

from seqtrade.models import OrderStatus, OrderType, Side
from seqtrade.venues.base import EventKind
from seqtrade.venues.okx import OkxVenue
from seqtrade.venues.okx.governor import Governor, Op

from .fakeokx import open_fake_okx
from .test_okx_venue import CREDS, SYMBOLS, Collector, config, order, running

# --------------------------------------------------------------------------- 6. slow loop


class SlowLoop(trio.abc.Instrument):
    """Test harness: until ``slow_until``, every task step costs ``step`` s, as on a loaded machine.

    The clock is a ``MockClock`` running at real speed; each step jumps it, so the requests released
    together reach the fake spread out in time (counted in task steps, not in wall time), and the
    ones released after the slow spell reach it at once.
    """

    def __init__(self, clock: trio.testing.MockClock, step: float) -> None:
        self.clock = clock
        self.step = step
        self.slow_until = float("-inf")

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.clock.current_time() < self.slow_until:
            self.clock.jump(self.step)


async def test_governor_counts_a_request_until_its_answer(autojump_clock: trio.testing.MockClock) -> None:
    """With count_until_done a slot is held from release until done(), then for a whole period."""
    gov: Governor[str] = Governor(limit=2, period=1.0, margin=0.0, max_queue=10, count_until_done=True)
    sent: list[tuple[float, Op, str]] = []
    async with trio.open_nursery() as nursery:
        for i in range(4):
            assert gov.submit(Op.PLACE, "X", f"p{i}") is None
        await nursery.start(gov.run, lambda op, item: sent.append((trio.current_time(), op, item)))
        t0 = trio.current_time()
        await trio.sleep(5.0)  # no answer yet: nothing more goes, however long it takes
        assert [i for _, _, i in sent] == ["p0", "p1"]
        assert gov.submit(Op.CANCEL, "X", "c0") is None  # cancels have their own window
        await trio.sleep(0.001)
        assert [i for _, _, i in sent] == ["p0", "p1", "c0"]
        gov.done(Op.PLACE, "X")  # p0 answered at t0 + 5
        await trio.sleep(0.5)
        assert len(sent) == 3
        await trio.sleep(0.6)
        assert [i for _, _, i in sent] == ["p0", "p1", "c0", "p2"]
        assert sent[-1][0] - t0 == pytest.approx(6.0, abs=0.01)  # one period after the answer
        nursery.cancel_scope.cancel()


def test_slow_event_loop_never_provokes_50011() -> None:
    """150 REST places on one instrument while the loop is slow for the first second: the first 60
    leave the governor at once but reach the fake over that second; counted from their release, the
    next 60 went 2.1 s later, straight into the fake's window (60 x 50011 before the fix)."""
    n = 150
    out: dict[str, Any] = {}
    clock = trio.testing.MockClock(rate=1.0)
    slow = SlowLoop(clock, 0.004)

    async def main() -> None:
        with trio.fail_after(120):
            async with open_fake_okx() as fake:
                cfg = config(fake, order_transport="rest", request_timeout=60.0, ping_interval=60.0)
                venue = OkxVenue(cfg, SYMBOLS, CREDS, max_queue=n)
                sink = Collector()
                async with trio.open_nursery() as nursery:
                    await nursery.start(venue.run, sink)
                    fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
                    slow.slow_until = trio.current_time() + 1.0
                    for i in range(n):
                        await venue.place_order(order(f"sl{i}", OrderType.LIMIT, Side.BUY, 99.0, 0.001))
                    await sink.until(
                        lambda: all(
                            any(
                                e.status in (OrderStatus.ACCEPTED, OrderStatus.REJECTED)
                                for e in sink.of(f"sl{i}")
                            )
                            for i in range(n)
                        )
                    )
                    nursery.cancel_scope.cancel()
                out["limited"] = list(fake.rate_limited)
                out["counts"] = [fake.place_count(f"sl{i}") for i in range(n)]
                out["events"] = list(sink.events)
                places = [r for r in fake.requests if r.method == "POST" and r.path == "/api/v5/trade/order"]
                out["sent"] = [r.body["clOrdId"] for r in places]

    trio.run(main, clock=clock, instruments=[slow])
    assert out["limited"] == []  # the fake never answered 50011 / HTTP 429
    assert sorted(out["sent"]) == sorted(set(out["sent"]))  # none sent twice
    assert all(c <= 1 for c in out["counts"])
    firsts = {}
    for e in out["events"]:
        firsts.setdefault(e.venue_order_id, e)
    assert len(firsts) == n
    for e in firsts.values():
        assert e.status in (OrderStatus.ACCEPTED, OrderStatus.REJECTED)
        assert e.status is OrderStatus.ACCEPTED or e.error_msg
    assert not any("50011" in e.error_msg for e in out["events"])
    assert sum(e.status is OrderStatus.ACCEPTED for e in firsts.values()) == n


# --------------------------------------------------------------------------- 5. accepted first


def _statuses(events: list[Any]) -> list[tuple[OrderStatus, float]]:
    return [(e.status, e.filled_quantity) for e in events if e.kind is EventKind.UPDATE]


def test_tracker_reports_accepted_before_a_fill_that_beats_the_place_answer() -> None:
    from seqtrade.venues.okx.tracking import OrderTracker

    tracker = OrderTracker()
    tracker.track(order("f1", OrderType.MARKET, Side.BUY, None, 1.0))
    push = {"instId": "BTC-USDT", "clOrdId": "f1", "ordId": "77", "px": "", "sz": "1", "avgPx": "100"}
    push |= {"state": "filled", "accFillSz": "1", "fillSz": "1", "fillPx": "100", "tradeId": "t1"}
    push |= {"fee": "-0.001", "feeCcy": "BTC", "uTime": "5", "cTime": "4"}
    events = tracker.on_order(push)
    assert _statuses(events) == [(OrderStatus.ACCEPTED, 0.0), (OrderStatus.FILLED, 1.0)]
    assert events[0].exchange_order_id == "77" and events[0].trade_id == "" and events[0].fee == 0
    assert events[1].trade_id == "t1" and events[1].last_fill_quantity == 1.0
    assert tracker.placed("f1", "77", 6) == []  # the late place answer adds nothing
    assert tracker.on_order(push) == []

    # a REST fill (reconcile) first
    tracker.track(order("f2", OrderType.LIMIT, Side.BUY, 100.0, 2.0))
    fill = {"instId": "BTC-USDT", "clOrdId": "f2", "ordId": "78", "tradeId": "t2", "fillSz": "0.5"}
    fill |= {"fillPx": "100", "fee": "-0.1", "feeCcy": "USDT", "ts": "7"}
    assert _statuses(tracker.on_fill(fill)) == [
        (OrderStatus.ACCEPTED, 0.0),
        (OrderStatus.PARTIALLY_FILLED, 0.5),
    ]
    assert tracker.placed("f2", "78", 8) == []

    # a REST snapshot of a cancelled order first (post-only that would have taken)
    tracker.track(order("f3", OrderType.POST_ONLY, Side.BUY, 100.0, 1.0))
    snap = {"instId": "BTC-USDT", "clOrdId": "f3", "ordId": "79", "px": "100", "sz": "1", "avgPx": ""}
    snap |= {"state": "canceled", "accFillSz": "0", "cancelSource": "31", "uTime": "9"}
    events = tracker.on_order(snap)
    assert _statuses(events) == [(OrderStatus.ACCEPTED, 0.0), (OrderStatus.CANCELLED, 0.0)]
    assert "31" in events[1].error_msg and events[0].error_msg == ""

    # the usual order: one accepted, nothing added
    tracker.track(order("f4", OrderType.LIMIT, Side.BUY, 100.0, 1.0))
    assert _statuses(tracker.placed("f4", "80", 10)) == [(OrderStatus.ACCEPTED, 0.0)]
    # a rejection is a first report too
    tracker.track(order("f5", OrderType.LIMIT, Side.BUY, 100.0, 1.0))
    assert _statuses(tracker.rejected("f5", "51008 no money", 11)) == [(OrderStatus.REJECTED, 0.0)]


@pytest.mark.parametrize("transport", ["ws", "rest"])
async def test_accepted_first_when_the_fill_push_beats_the_place_answer(transport: str) -> None:
    with trio.fail_after(15):
        async with open_fake_okx() as fake:
            fake.exchange.push_live_first = False  # an order that trades at once is first pushed filled
            venue = OkxVenue(config(fake, order_transport=transport), SYMBOLS, CREDS)
            sink = Collector()
            async with trio.open_nursery() as nursery:
                await nursery.start(venue.run, sink)
                fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=5.0, ask_sz=5.0)
                cases = [
                    ("mk1", order("mk1", OrderType.MARKET, Side.BUY, None, 0.5), OrderStatus.FILLED),
                    ("io1", order("io1", OrderType.IOC, Side.BUY, 100.5, 0.5), OrderStatus.FILLED),
                    ("po1", order("po1", OrderType.POST_ONLY, Side.BUY, 100.5, 0.5), OrderStatus.CANCELLED),
                ]
                for vid, o, final in cases:
                    # the pushes go out before the answer (WS: same socket; REST: answer held back)
                    stall = fake.stall_next("POST /api/v5/trade/order", 0.3) if transport == "rest" else None
                    await venue.place_order(o)
                    done = await sink.final(vid)
                    assert done.status is final
                    if stall is not None:
                        assert stall.hit.is_set()
                    # a cancel waits for the place answer: its refusal comes after that answer was handled
                    await venue.cancel_order(vid, "BTC-USDT")
                    await sink.until(
                        lambda vid=vid: any(e.kind is EventKind.CANCEL_FAILED for e in sink.of(vid))
                    )
                seen = [p["state"] for p in fake.order_pushes if p["clOrdId"] == "mk1"]
                assert "live" not in seen  # the scenario: no `live` push at all
                for vid, _, final in cases:
                    statuses = _statuses(sink.of(vid))
                    assert statuses[0] == (OrderStatus.ACCEPTED, 0.0), (vid, statuses)
                    assert [s for s, _ in statuses].count(OrderStatus.ACCEPTED) == 1, (vid, statuses)
                    assert statuses[-1][0] is final
                    assert fake.place_count(vid) == 1
                nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- 4. fills paging


async def test_reconcile_reports_every_missed_fill_across_pages() -> None:
    """250 fills while the orders channel was down: each is reported with its own size (three pages of
    trade/fills, paged by billId), not the newest 100 plus one jump."""
    n = 250
    with trio.fail_after(60):
        async with open_fake_okx() as fake, running(fake, order_transport="rest") as (venue, sink):
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            await venue.place_order(order("pg1", OrderType.LIMIT, Side.BUY, 100.1, 1.0))
            await sink.final("pg1", OrderStatus.ACCEPTED)
            fake.private_pushes_paused = True
            sizes = [Decimal("0.001") * (1 + i % 3) for i in range(n)]
            for sz in sizes:
                fake.print_trade("BTC-USDT", px=100.1, sz=str(sz), side="sell")
            fills_before = sum(r.path == "/api/v5/trade/fills" for r in fake.requests)
            await fake.disconnect(which="private")
            fake.private_pushes_paused = False
            total = float(sum(sizes))
            await sink.until(lambda: any(e.filled_quantity == pytest.approx(total) for e in sink.of("pg1")))
            at_okx = {f["tradeId"]: Decimal(f["fillSz"]) for f in fake.fills if f["clOrdId"] == "pg1"}
            assert len(at_okx) == n
            reported = [e for e in sink.of("pg1") if e.trade_id]
            assert len(reported) == n  # before the fix: 100 (the newest page) and one jump
            assert {e.trade_id for e in reported} == set(at_okx)
            for e in reported:
                assert e.last_fill_quantity == pytest.approx(float(at_okx[e.trade_id]))
                assert e.last_fill_price == pytest.approx(100.1)
            cumulative = [e.filled_quantity for e in reported]
            assert cumulative == sorted(cumulative) and cumulative[-1] == pytest.approx(total)
            reads = [r for r in fake.requests if r.path == "/api/v5/trade/fills"][fills_before:]
            assert len(reads) == 3 and "after" not in reads[0].query
            assert all(r.query.get("after") for r in reads[1:])
            assert fake.rate_limited == []


def _fill_rows(first: int, count: int, ts0: int) -> list[dict[str, Any]]:
    """``count`` fills rows newest first, billIds first+count-1 .. first, one second apart."""
    rows = []
    for k in reversed(range(first, first + count)):
        ms = str(ts0 + k * 1000)
        rows.append(
            {"billId": str(k), "tradeId": f"t{k}", "ordId": "1", "fillSz": "1", "ts": ms, "fillTime": ms}
        )
    return rows


def test_fill_pager_pages_back_until_the_gap_is_covered() -> None:
    from seqtrade.venues.okx.tracking import FillPager

    day = 24 * 3600 * 1000
    now = 10 * day
    # a gap of 2.5 minutes with 250 fills one second apart: three pages, then a row older than the gap
    pager = FillPager("SPOT", since_ms=now - 150_000, now_ms=now, max_pages=30)
    ts0 = now - 250_000
    assert pager.request() == ("/api/v5/trade/fills", {"instType": "SPOT", "limit": "100"})
    pager.feed(_fill_rows(150, 100, ts0))
    assert pager.request() == ("/api/v5/trade/fills", {"instType": "SPOT", "limit": "100", "after": "150"})
    pager.feed(_fill_rows(50, 100, ts0))
    assert pager.request() is None and not pager.exceeded  # row 50 is older than the gap
    assert [f["billId"] for f in pager.fills()] == [str(k) for k in range(50, 250)]

    # fewer than 100 rows: nothing older exists
    short = FillPager("SPOT", since_ms=now - 3600_000, now_ms=now, max_pages=30)
    short.feed(_fill_rows(0, 40, now - 100_000))
    assert short.request() is None and len(short.fills()) == 40


def test_fill_pager_goes_on_in_fills_history_past_three_days() -> None:
    from seqtrade.venues.okx.tracking import FillPager

    day = 24 * 3600 * 1000
    now = 100 * day
    pager = FillPager("SPOT", since_ms=now - 5 * day, now_ms=now, max_pages=30)
    pager.feed(_fill_rows(900, 100, now - 2 * day))
    pager.feed(_fill_rows(870, 30, now - 2 * day - 100_000))  # trade/fills has no more (3 days)
    assert pager.request() == (
        "/api/v5/trade/fills-history",
        {"instType": "SPOT", "limit": "100", "after": "870"},
    )
    pager.feed(_fill_rows(800, 70, now - 4 * day))  # fewer than 100: the history has no more either
    assert pager.request() is None and not pager.exceeded
    assert len(pager.fills()) == 200
    # within 3 days trade/fills running out is the end
    recent = FillPager("SPOT", since_ms=now - 2 * day, now_ms=now, max_pages=30)
    recent.feed(_fill_rows(0, 30, now - day))
    assert recent.request() is None


def test_fill_pager_stops_at_its_bound() -> None:
    from seqtrade.venues.okx.tracking import FillPager

    pager = FillPager("SPOT", since_ms=0, now_ms=10**9, max_pages=2)
    pager.feed(_fill_rows(500, 100, 10**8))
    assert pager.request() is not None
    pager.feed(_fill_rows(400, 100, 10**8))
    assert pager.request() is None and pager.exceeded


async def test_too_many_pages_of_fills_fall_back_to_snapshots(caplog: pytest.LogCaptureFixture) -> None:
    """Past its bound the reconcile logs an ERROR and reports each order's cumulative state instead."""
    caplog.set_level(logging.ERROR, logger="seqtrade.venues.okx")
    n = 250
    with trio.fail_after(60):
        async with open_fake_okx() as fake, running(fake, order_transport="rest") as (venue, sink):
            venue.max_fill_pages = 2  # 250 fills need 3 pages
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=1.0, ask_sz=1.0)
            await venue.place_order(order("pb1", OrderType.LIMIT, Side.BUY, 100.1, 1.0))
            await sink.final("pb1", OrderStatus.ACCEPTED)
            fake.private_pushes_paused = True
            for _ in range(n):
                fake.print_trade("BTC-USDT", px=100.1, sz="0.002", side="sell")
            await fake.disconnect(which="private")
            fake.private_pushes_paused = False
            await sink.until(lambda: any(e.filled_quantity == pytest.approx(0.5) for e in sink.of("pb1")))
            last = sink.of("pb1")[-1]
            assert last.status is OrderStatus.PARTIALLY_FILLED and last.avg_price == pytest.approx(100.1)
            assert len(sink.of("pb1")) == 2  # accepted, then one jump to the total (not one by one)
            assert any(
                "pages of fills" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR
            )
            reads = [r for r in fake.requests if r.path == "/api/v5/trade/fills"]
            assert len(reads) >= 2 and fake.rate_limited == []


async def test_fake_fills_history_and_read_limits() -> None:
    """The fake as the sheet has it: trade/fills = 3 days, fills-history = 3 months (instType
    required), both newest first paged by billId, read limits 60 and 10 per 2 s."""
    from seqtrade.venues.okx.rest import ExchangeClock, open_rest_client

    with trio.fail_after(30):
        async with open_fake_okx() as fake:
            fake.set_market("BTC-USDT", bid=100.0, ask=100.5, bid_sz=5.0, ask_sz=5.0)
            async with open_rest_client(fake.rest_url, CREDS, ExchangeClock(), demo=True, timeout=5) as rest:
                for i in range(3):
                    env = await rest.request(
                        "POST",
                        "/api/v5/trade/order",
                        body={"instId": "BTC-USDT", "tdMode": "cash", "clOrdId": f"h{i}", "side": "buy"}
                        | {"ordType": "limit", "px": "100.5", "sz": "0.01"},
                    )
                    assert env["code"] == "0", env
                assert len(fake.fills) == 3
                fake.exchange.age_fills(4 * 24 * 3600 * 1000)
                assert await rest.checked("GET", "/api/v5/trade/fills", params={"instType": "SPOT"}) == []
                hist = await rest.checked(
                    "GET", "/api/v5/trade/fills-history", params={"instType": "SPOT", "limit": "2"}
                )
                assert [f["clOrdId"] for f in hist] == ["h2", "h1"]
                older = await rest.checked(
                    "GET",
                    "/api/v5/trade/fills-history",
                    params={"instType": "SPOT", "after": hist[-1]["billId"]},
                )
                assert [f["clOrdId"] for f in older] == ["h0"]
                env = await rest.request("GET", "/api/v5/trade/fills-history", params={"limit": "1"})
                assert env["code"] == "50014"
                codes = [
                    (await rest.request("GET", "/api/v5/trade/fills-history", params={"instType": "SPOT"}))[
                        "code"
                    ]
                    for _ in range(10)
                ]
                assert "50011" in codes  # 10 per 2 s, and 3 were used just now
                codes = [
                    (await rest.request("GET", "/api/v5/trade/fills", params={"instType": "SPOT"}))["code"]
                    for _ in range(61)
                ]
                assert codes.count("50011") >= 1
