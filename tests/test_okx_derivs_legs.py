"""Positions leg by leg against the fake OKX: the ``positions`` channel keeps the account's legs live
(paged snapshot on subscribe, ``event_update`` rows, ``pos "0"`` rows; a REST snapshot at start and
after every reconnect), a funding bill in long/short mode goes to the holders of the leg it was for,
and reconciliation in long/short mode checks each leg, not only the net."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import zmq

from seqtrade.models import AccountEvent, AccountEventKind, FundingRate
from seqtrade.server.positions import EXTERNAL
from seqtrade.venues.base import VenueAccountEvent
from seqtrade.venues.okx.derivs import LivePositions, funding_leg
from tests.fakeokx import open_fake_okx

from .peer import Peer
from .test_okx_derivs import SWAP, next_event, okx_swap, trade

LONG_SHORT = '[venue.derivatives]\nposition_mode = "long_short"\n'
POSITIONS_PATH = "/api/v5/account/positions"


def legs(venue: Any) -> dict[tuple[str, str], float]:
    rows = venue.live_positions()
    assert rows is not None, "the private socket is up: the live view is fresh"
    return {(p.symbol, p.pos_side): p.quantity for p in rows}


def rest_reads(fake: Any) -> int:
    return sum(1 for r in fake.requests if r.method == "GET" and r.path == POSITIONS_PATH)


async def barrier(fake: Any, p: Peer) -> None:
    """Every private push the fake sent before now has been handled by the server: a liquidation
    warning (sent after them on the same socket) reached the strategy ``p`` (it holds a position)."""
    assert fake.send_liquidation_warning(SWAP) >= 1
    warn = await next_event(p)
    assert warn.kind == "liquidation_warning"


def test_live_positions_take_paged_snapshots_updates_and_zero_rows_in_the_fakes_shapes() -> None:
    """The channel's messages as the fake builds them (three positions, pages of two)."""

    async def main() -> None:
        async with open_fake_okx() as fake:
            fake.account.pos_mode = "long_short_mode"
            fake.exchange.positions_page_size = 2
            fake.set_market(SWAP, bid=60000.0, ask=60000.1, bid_sz=50, ask_sz=50)
            fake.set_market("BTC-USD-SWAP", bid=60000.0, ask=60000.1, bid_sz=500, ask_sz=500)
            fake.order_by_hand(SWAP, "buy", 2, 60000.1, pos_side="long")
            fake.order_by_hand(SWAP, "sell", 1, 60000.0, pos_side="short")
            fake.order_by_hand("BTC-USD-SWAP", "buy", 5, 60000.1, pos_side="long")
            live = LivePositions([SWAP, "BTC-USD-SWAP"])
            live.reset([])  # a stale REST snapshot: the channel's snapshot replaces it
            pages = fake.positions_snapshot({"channel": "positions", "instType": "ANY"})
            assert [(m["curPage"], m["lastPage"]) for m in pages] == [(1, False), (2, True)]
            for m in pages[:1]:
                live.on_push(m["eventType"], m["data"], m["curPage"], m["lastPage"])
            assert live.legs == {}  # not replaced before the last page
            for m in pages[1:]:
                live.on_push(m["eventType"], m["data"], m["curPage"], m["lastPage"])
            assert {k: p.quantity for k, p in live.legs.items()} == {
                (SWAP, "long"): 2.0, (SWAP, "short"): -1.0, ("BTC-USD-SWAP", "long"): 5.0,
            }  # fmt: skip
            assert live.leg_sizes(SWAP) == {"long": 2.0, "short": 1.0}
            # the short leg closes: its own pos "0" row; the long leg is untouched
            before = len(fake.position_pushes)
            fake.order_by_hand(SWAP, "buy", 1, 60000.1, pos_side="short")
            rows = fake.position_pushes[before:]
            assert [r["pos"] for r in rows if r["posSide"] == "short"] == ["0"]
            live.on_push("event_update", rows)
            assert {k: p.quantity for k, p in live.legs.items()} == {
                (SWAP, "long"): 2.0, ("BTC-USD-SWAP", "long"): 5.0,
            }  # fmt: skip
            live.lost()
            assert not live.fresh

    trio.run(main)


def test_the_leg_of_a_funding_bill_from_the_legs_held() -> None:
    ev = VenueAccountEvent(AccountEventKind.FUNDING, SWAP, "bill:1", amount=-0.1)
    assert funding_leg(ev, {"sz": "2"}, {"long": 2.0, "short": 1.0}) == "long"
    assert funding_leg(ev, {"sz": "1"}, {"long": 2.0, "short": 1.0}) == "short"
    assert funding_leg(ev, {"sz": "1"}, {"short": 1.0}) == "short"
    assert funding_leg(ev, {"sz": "1"}, {"long": 1.0, "short": 1.0}) == ""  # the bill does not tell
    liq = VenueAccountEvent(AccountEventKind.LIQUIDATION, SWAP, "bill:2", pos_side="long")
    assert funding_leg(liq, {"sz": "1"}, {"short": 1.0}) == "long"  # only funding bills are looked at


async def test_the_positions_channel_keeps_the_legs_live_and_rest_takes_over_after_a_reconnect(
    base_dir: Path, zctx: Any
) -> None:
    with trio.fail_after(30):
        async with okx_swap(base_dir, zctx, "a") as (fake, config, gw, (a,)):
            await a.join()
            assert legs(gw.venue) == {}
            reads = rest_reads(fake)
            await trade(a, SWAP, "buy", 2)
            await barrier(fake, a)
            assert legs(gw.venue) == {(SWAP, ""): 2.0}  # from the channel's event_update
            await trade(a, SWAP, "sell", 2)  # flat: OKX pushes a pos "0" row
            assert [r["pos"] for r in fake.position_pushes][-1] == "0"
            await trade(a, SWAP, "buy", 1)
            await barrier(fake, a)
            assert legs(gw.venue) == {(SWAP, ""): 1.0}
            assert rest_reads(fake) == reads  # no REST read for any of it
            # pushes lost while the socket is down: the REST snapshot after the reconnect has them
            fake.private_pushes_paused = True
            fake.order_by_hand(SWAP, "buy", 4, 60000.1)
            await fake.disconnect("private")
            fake.private_pushes_paused = False
            while True:  # until the server is subscribed again (a warning before that is lost)
                assert fake.send_liquidation_warning(SWAP) == 1
                with trio.move_on_after(0.2):
                    await next_event(a)
                    break
            assert rest_reads(fake) > reads
            assert legs(gw.venue) == {(SWAP, ""): 5.0}


async def test_long_short_mode_funding_goes_to_the_holders_of_each_leg_even_when_the_net_is_flat(
    base_dir: Path, zctx: Any
) -> None:
    with trio.fail_after(30):
        async with okx_swap(base_dir, zctx, "a", "b", extra=LONG_SHORT, pos_mode="long_short_mode") as (
            fake,
            config,
            gw,
            (a, b),
        ):
            a.mdsub.sock.setsockopt(zmq.SUBSCRIBE, f"funding/{SWAP}/".encode())
            await a.join()
            await b.join()
            fake.set_funding_rate(SWAP, 0.0001)
            while not (isinstance(md := await a.next_md(), FundingRate) and md.funding_rate == 0.0001):
                pass  # the server has it too (it published it)
            await trade(a, SWAP, "buy", 1)  # a: the long leg
            await trade(b, SWAP, "sell", 1)  # b: the short leg; the account's net is 0
            await barrier(fake, a)
            assert (await next_event(b)).kind == "liquidation_warning"  # b's leg was warned too
            bills = fake.settle_funding(SWAP, 0.0001)
            by_leg = {("long" if b_["subType"] == "173" else "short"): float(b_["balChg"]) for b_ in bills}
            assert by_leg["long"] < 0 < by_leg["short"]  # the rate > 0: the long pays the short
            fa, fb = await next_event(a), await next_event(b)
            assert (fa.kind, fa.pos_side, fb.pos_side) == ("funding", "long", "short")
            assert fa.amount == pytest.approx(by_leg["long"]) and fb.amount == pytest.approx(by_leg["short"])
            books = gw.engine.accounts.books
            assert (EXTERNAL, SWAP) not in books or books[(EXTERNAL, SWAP)].funding == 0.0
            assert books[("a", SWAP)].funding == pytest.approx(by_leg["long"])
            assert books[("b", SWAP)].funding == pytest.approx(by_leg["short"])
            assert sum(isinstance(r, AccountEvent) and r.kind == "funding" for r in a.reports) == 1


async def test_long_short_mode_reconciles_each_leg_not_only_the_net(base_dir: Path, zctx: Any) -> None:
    from seqtrade.server.guard import Guard, format_guard_status

    with trio.fail_after(30):
        async with okx_swap(
            base_dir,
            zctx,
            "a",
            "b",
            extra=LONG_SHORT + 'on_mismatch = "reducing"',
            pos_mode="long_short_mode",
        ) as (fake, config, gw, (a, b)):
            await a.join()
            await b.join()
            await trade(a, SWAP, "buy", 2)
            await trade(b, SWAP, "sell", 1)
            guard = Guard(gw.config, gw.venue, gw.journal, gw.engine.risk, gw.engine.accounts,
                          in_flight=gw.engine.open_records, sink=gw)  # fmt: skip
            guard._adjusted = True  # a check after start
            assert await guard.reconcile() == []  # long 2 (a), short 1 (b): exact, leg by leg
            # by hand, unheard of: one more contract on each leg; the net (1) does not move
            fake.private_pushes_paused = True
            fake.order_by_hand(SWAP, "buy", 1, 60000.1, pos_side="long")
            fake.order_by_hand(SWAP, "sell", 1, 60000.0, pos_side="short")
            assert await gw.venue.positions() == {SWAP: 1.0}
            warnings = await guard.reconcile()
            assert [w.split(" (off by")[0] for w in warnings] == [
                "position mismatch in BTC-USDT-SWAP (long leg): the strategies and external hold 2 in "
                "total, the venue okx holds 3",
                "position mismatch in BTC-USDT-SWAP (short leg): the strategies and external hold -1 in "
                "total, the venue okx holds -2",
            ]
            assert "off by +1, since" in warnings[0] and "off by -1, since" in warnings[1]
            assert set(guard.status()["mismatches"]) == {f"{SWAP} long", f"{SWAP} short"}
            assert "MISMATCH" in "\n".join(format_guard_status(guard.status()))
            from seqtrade.server.risk import TradingState

            assert gw.engine.risk.state_of("a")[0] is TradingState.REDUCING
            assert gw.engine.risk.state_of("b")[0] is TradingState.REDUCING


async def test_a_fill_made_by_hand_while_the_private_socket_was_down_reaches_external_once(
    base_dir: Path, zctx: Any
) -> None:
    from seqtrade.server.guard import Guard

    with trio.fail_after(30):
        async with okx_swap(base_dir, zctx, "a") as (fake, config, gw, (a,)):
            await a.join()
            await trade(a, SWAP, "buy", 2)
            guard = Guard(gw.config, gw.venue, gw.journal, gw.engine.risk, gw.engine.accounts,
                          in_flight=gw.engine.open_records, sink=gw)  # fmt: skip
            guard._adjusted = True  # a check after start
            assert await guard.reconcile() == []
            opened = gw.venue.socket_stats["private"].opened
            fake.private_pushes_paused = True  # the socket is dying: its pushes never arrive
            fake.order_by_hand(SWAP, "sell", 0.5, 60000.0)
            await fake.disconnect("private")
            fake.private_pushes_paused = False
            # the reconnect reads the trade bills since the loss; the server applies the fill
            while (
                gw.venue.socket_stats["private"].opened == opened
                or gw.engine.accounts.position(EXTERNAL, SWAP) != -0.5
            ):
                await trio.sleep(0.01)  # a condition to reach, bounded by fail_after (no timing asserted)
            assert await guard.reconcile() == []  # explained: the external account's fill
            await fake.disconnect("private")  # a second reconnect reads the same bill: applied once
            while gw.venue.socket_stats["private"].opened < opened + 2:
                await trio.sleep(0.01)
            ext = [r for r in gw.journal.reports_after(EXTERNAL, 0, 100) if isinstance(r, AccountEvent)]
            assert [(e.kind, e.quantity) for e in ext] == [("adjustment", -0.5)]
            assert gw.engine.accounts.position(EXTERNAL, SWAP) == -0.5
