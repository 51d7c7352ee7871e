"""Full-depth books through the real server: paper venue -> gateway feed -> ZeroMQ PUB -> strategies
in their own threads (``run_strategy``), one keeping the whole book, one the top 10."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from seqtrade.client import LocalBook, Strategy, run_strategy
from seqtrade.models import BookStatus
from seqtrade.venues.paper import PaperVenue

S = "BTC-USDT"


class Keeper(Strategy):
    symbols = [S]

    def on_start(self) -> None:
        self.seen: list[tuple[int, list[list[float]], list[list[float]]]] = []
        self.unverified = 0
        self.statuses: list[str] = []

    def on_depth(self, book: LocalBook) -> None:
        if self.book(S) is not book or book.state != "valid":
            self.unverified += 1  # the book handed over must be the valid copy
        self.seen.append((book.book_seq, book.bids, book.asks))
        target = self.params.get("target")
        if target is not None and book.book_seq >= target[0]:
            self.stop()

    def on_book_status(self, status: BookStatus) -> None:
        self.statuses.append(status.state)


class Full(Keeper):
    book_depth = {S: "full"}


class Top(Keeper):
    book_depth = {S: 10}


async def test_strategies_keep_the_servers_book_through_the_real_bus(
    server: Any, endpoints: Any, zctx: Any
) -> None:
    venue = server.venue
    assert isinstance(venue, PaperVenue)
    depth = venue._depths[S]  # noqa: SLF001 - the venue's book is what the strategies must equal
    target: list[int] = [10**9]
    full, top = Full(target=target), Top(target=target)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            codes: list[int] = []

            async def run(s: Strategy, sid: str) -> None:
                codes.append(
                    await trio.to_thread.run_sync(
                        lambda: run_strategy(s, sid, endpoints, join_timeout=20, context=zctx)
                    )
                )

            nursery.start_soon(run, full, "full")
            nursery.start_soon(run, top, "top")
            # the market moves until both have a book; then 40 more changes
            price = 100.0
            while not (getattr(full, "seen", None) and getattr(top, "seen", None)):
                price += 0.1
                await venue.set_market(S, round(price, 1), round(price + 0.2, 1))
                await trio.sleep(0.05)
            for _ in range(40):
                price += 0.1
                await venue.set_market(S, round(price, 1), round(price + 0.2, 1))
                await trio.lowlevel.checkpoint()
            # one more change (the best bid's size: one delta); the strategies stop once they hold it
            target[0] = depth.publisher.book_seq + 1
            await venue.set_market(S, round(price, 1), round(price + 0.2, 1), bid_size=7.0)
            assert depth.publisher.book_seq == target[0]
    assert codes == [0, 0]
    assert full.unverified == top.unverified == 0
    last_seq, bids, asks = full.seen[-1]
    assert last_seq == depth.publisher.book_seq and (bids, asks) == depth.book.snapshot()
    assert len(bids) == len(asks) == 200
    _, tb, ta = top.seen[-1]
    assert (tb, ta) == depth.book.top(10) and tb[0] == [round(price, 1), 7.0]
    assert len(full.seen) >= 40  # every change of the whole book


async def test_the_market_making_example_quotes_off_the_full_book(
    server: Any, endpoints: Any, zctx: Any
) -> None:
    """examples/market_maker.py, in process against the paper server: both quotes rest inside the
    book it keeps, and follow it when the market moves."""
    from seqtrade.client import load_strategy

    cls = load_strategy(str(Path(__file__).resolve().parent.parent / "examples" / "market_maker.py"))
    venue = server.venue
    mm = cls(size=0.01)
    assert mm.book_depth == {S: "full"}
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            code: list[int] = []

            async def run() -> None:
                code.append(
                    await trio.to_thread.run_sync(
                        lambda: run_strategy(mm, "mm", endpoints, join_timeout=20, context=zctx)
                    )
                )

            nursery.start_soon(run)
            price = 100.0
            while len(server.open_records("mm")) < 2:  # both quotes accepted
                await venue.set_market(S, price, price + 0.5)
                await trio.sleep(0.05)
            quotes = {r.side: r.price for r in server.open_records("mm")}
            assert quotes["buy"] < quotes["sell"] and 100.0 <= quotes["buy"] and quotes["sell"] <= 100.5
            while (
                min(r.price for r in server.open_records("mm")) < 101.0
            ):  # the market moves up 2: they follow
                await venue.set_market(S, 102.0, 102.5)
                await trio.sleep(0.05)
            mm.stop()
    assert code == [0]
