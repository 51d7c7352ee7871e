"""Full-depth books end to end: the fake OKX ``books`` channel -> OkxVenue -> the wire -> strategies.

The fake (tests/fakeokx/books.py, written from the sheet) sends 400-level books with real seqId
chains, heartbeats, resets, checksum 0 or CRC32, and on request a gap, a bad checksum, a reordered
pair or a silent (stale) channel. The venue publishes into :class:`Wire`, a real VenueSink that
numbers every message per topic as the gateway's feed task does, encodes it with the wire codec and
hands the frame to three strategies' :class:`ClientProtocol` (two keep the full book, one the top 10).

The done-means test checks, after every message: no ``fullbook``/``depth`` frame leaves while the
server's book is not valid, and a strategy's valid copy equals the server's book at that version; after
every recovery: the server's book equals the fake's; at the end: every injected fault was detected
(gaps and reorders as gaps, bad checksums as checksum errors, resets counted, silences as stale) and
each caused one resubscription. ``SEQTRADE_SOAK=1`` runs it with 1,000,000 updates.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
import trio

from seqtrade import wire
from seqtrade.books import BookState
from seqtrade.client.protocol import ClientProtocol
from seqtrade.config import OkxConfig
from seqtrade.models import BookStatus, BookUpdate, Depth
from seqtrade.venues.base import MarketData, OrderEvent
from seqtrade.venues.okx import OkxCredentials, OkxVenue
from tests.fakeokx import open_fake_okx
from tests.fakeokx.books import Fault

CREDS = OkxCredentials("fake-key", "fake-secret", "fake-pass")
SYM = "BTC-USDT"
SOAK = os.environ.get("SEQTRADE_SOAK") == "1"
FULL_CHECK = 500 if SOAK else 20


class Wire:
    """A VenueSink that sends every message through the codec to three strategies, checking as it goes."""

    def __init__(self) -> None:
        self.venue: OkxVenue | None = None
        self.seqs: dict[bytes, int] = {}
        self.strategies = [ClientProtocol(f"s{i}") for i in range(3)]
        for p, depth in zip(self.strategies, ("full", "full", 10), strict=True):
            p.books.want(SYM, depth)
        self.published: dict[type, int] = {BookUpdate: 0, Depth: 0, BookStatus: 0}
        self.states: list[str] = []
        self.frames = 0
        self._changed = trio.Event()

    def publish_market(self, msg: MarketData) -> None:
        if not isinstance(msg, (BookUpdate, Depth, BookStatus)) or msg.symbol != SYM:
            return
        assert self.venue is not None
        keeper = self.venue.book_state(SYM)
        assert keeper is not None
        if isinstance(msg, (BookUpdate, Depth)):
            # never a level from an unverified book
            assert keeper.feed.state is BookState.VALID, (
                type(msg).__name__,
                keeper.feed.state,
                keeper.feed.reason,
            )
        else:
            self.states.append(msg.state)
        topic = wire.CODECS[type(msg)].topic(msg)
        self.seqs[topic] = msg.seq = self.seqs.get(topic, 0) + 1
        frame = wire.encode_message(msg)
        self.frames += 1
        self.published[type(msg)] += 1
        # the whole book compared every FULL_CHECK-th frame (it is 800 levels), the top every frame
        full = (
            self.frames % FULL_CHECK == 0
            or isinstance(msg, BookStatus)
            or (isinstance(msg, BookUpdate) and msg.snapshot)
        )
        server_bids, server_asks = keeper.feed.book.top(None if full else 10)
        for p in self.strategies:
            p.receive_md_frame(frame)
            copy = p.books.get(SYM)
            if copy is None:
                continue
            # a valid copy is the server's book at its version (the server may be one delta ahead,
            # its message on the way: the status that comes first, the delta before its depth frame)
            assert copy.book_seq <= keeper.publisher.book_seq
            if copy.depth == 0 and copy.book_seq == keeper.publisher.book_seq:
                held = (copy.bids, copy.asks) if full else copy.top(10)
                assert held == (server_bids, server_asks)
            elif copy.depth and isinstance(msg, Depth):
                assert (copy.bids, copy.asks) == (server_bids[:10], server_asks[:10])
        self._changed.set()
        self._changed = trio.Event()

    async def order_event(self, event: OrderEvent) -> None:
        pass

    def set_connected(self, connected: bool) -> None:
        pass

    async def next_publish(self) -> None:
        await self._changed.wait()

    async def until(self, cond: Callable[[], Any]) -> Any:
        while not (result := cond()):
            await self._changed.wait()
        return result


@asynccontextmanager
async def running(fake: Any, **kw: Any) -> AsyncIterator[tuple[OkxVenue, Wire]]:
    cfg = OkxConfig(
        demo=True, rest_url=fake.rest_url, ws_public_url=fake.ws_public_url, ws_private_url=fake.ws_private_url,
        reconnect_min=0.05, reconnect_max=0.2, request_timeout=2.0,
    )  # fmt: skip
    venue = OkxVenue(replace(cfg, **kw), [SYM], CREDS)
    sink = Wire()
    sink.venue = venue
    async with trio.open_nursery() as nursery:
        await nursery.start(venue.run, sink)
        yield venue, sink
        nursery.cancel_scope.cancel()


def _in_sync(venue: OkxVenue, fake: Any) -> bool:
    keeper = venue.book_state(SYM)
    assert keeper is not None
    return keeper.feed.valid and keeper.feed.seq_id == fake.book_feed.books[SYM].seq_id


async def _settle(fake: Any, venue: OkxVenue, sink: Wire, also: Callable[[], bool] = lambda: True) -> None:
    """Until the server's book is valid at the fake's last seqId (and ``also`` holds).

    The test is the exchange here and the only one that pushes. A book that is verified and at the
    fake's seqId but turned stale before this task looked (the machine paused longer than
    ``book_stale_after`` between the last push and the check) becomes valid only with a next push:
    it gets the heartbeat the exchange sends an idle book. Waiting for ``valid`` alone waited forever.
    """
    keeper = venue.book_state(SYM)
    assert keeper is not None
    while not (_in_sync(venue, fake) and also()):
        if keeper.feed.state is BookState.STALE and keeper.feed.seq_id == fake.book_feed.books[SYM].seq_id:
            fake.book_heartbeat(SYM)  # its book_status "valid" ends the wait below
        await sink.next_publish()


async def test_subscribes_books_and_keeps_the_fakes_book() -> None:
    with trio.fail_after(20):
        async with open_fake_okx() as fake, running(fake) as (venue, sink):
            await sink.until(lambda: _in_sync(venue, fake))
            for _ in range(50):
                fake.book_update(SYM)
            fake.book_heartbeat(SYM)
            fake.book_update(SYM, reset=True)
            fake.book_update(SYM)
            await sink.until(lambda: _in_sync(venue, fake))
            keeper = venue.book_state(SYM)
            assert keeper is not None
            assert keeper.feed.book.snapshot() == fake.book_feed.books[SYM].levels()
            assert len(keeper.feed.book.bids) >= 390  # the full depth, not 5 levels
            c = venue.book_counters[SYM]
            assert (c.snapshots, c.updates, c.seq_resets, c.gaps, c.resubscribes) == (1, 52, 1, 0, 0)
            subs = [r.body for r in fake.requests if r.op == "subscribe"]
            assert {"channel": "books", "instId": SYM} in subs[0]["args"]


async def test_no_snapshot_is_asked_for_again_and_a_lost_socket_invalidates_until_the_next() -> None:
    with trio.fail_after(30):
        async with open_fake_okx() as fake:
            fake.books_silent = True  # the subscription is acked, but no snapshot comes
            async with running(fake, book_stale_after=0.3) as (venue, sink):
                keeper = venue.book_state(SYM)
                assert keeper is not None
                while fake.book_subscribes.get(SYM, 0) < 2:  # asked again after book_stale_after
                    await trio.sleep(0.05)
                assert not keeper.feed.valid
                fake.books_silent = False
                await _settle(fake, venue, sink)
                assert venue.book_counters[SYM].retries >= 1
                fake.book_update(SYM)
                await _settle(fake, venue, sink)
                states = len(sink.states)
                await fake.disconnect("public")
                await sink.until(lambda: "invalid" in sink.states[states:])  # told at once
                await _settle(fake, venue, sink, lambda: sink.states[-1] == "valid")
                assert keeper.feed.book.snapshot() == fake.book_feed.books[SYM].levels()
                assert keeper.feed.counters.gaps == 0  # a reconnect is not a gap


async def _soak(fake: Any, venue: OkxVenue, sink: Wire, updates: int, seed: int) -> dict[str, int]:
    """``updates`` book changes with faults of every kind among them; the injected counts."""
    rng = random.Random(seed)
    keeper = venue.book_state(SYM)
    assert keeper is not None
    injected = {"gap": 0, "bad_checksum": 0, "reorder": 0, "reset": 0, "stale": 0, "heartbeat": 0}
    kinds = list(injected)
    await _settle(fake, venue, sink)
    done = 0
    every = max(200, updates // 400)  # a fault every this many updates on average, each kind many times
    while done < updates:
        batch = min(rng.randint(1, 2 * every), updates - done)
        for _ in range(batch):
            fake.book_update(SYM)
        done += batch
        await _settle(fake, venue, sink)
        kind = kinds[(done // every) % len(kinds)] if done < updates else None
        if kind is None:
            break
        injected[kind] += 1
        resubscribes = keeper.feed.counters.resubscribes
        if kind in ("gap", "bad_checksum", "reorder"):
            fake.book_update(SYM, Fault(kind))
            fake.book_update(SYM)  # the push that shows a gap
            done += 3 if kind == "reorder" else 2
            await _settle(fake, venue, sink, lambda n=resubscribes: keeper.feed.counters.resubscribes > n)
        elif kind == "reset":
            fake.book_update(SYM, reset=True)
            done += 1
        elif kind == "heartbeat":
            fake.book_heartbeat(SYM)
        else:  # a silent channel: the book goes stale, then the feed goes on
            stale = keeper.feed.counters.stale
            await sink.until(lambda n=stale: keeper.feed.counters.stale > n)
            assert keeper.feed.state is BookState.STALE and venue.book_counters[SYM].stale > stale
            fake.book_heartbeat(SYM)
        await _settle(fake, venue, sink)
        # after every fault and its recovery: the server's book is the fake's
        assert keeper.feed.book.snapshot() == fake.book_feed.books[SYM].levels()
    return injected


@pytest.mark.parametrize(
    ("crc", "stale_after", "updates", "seed"),
    [(False, 0.3, 6_000, 16), (True, 0.3, 6_000, 17), (False, 0.002, 3_000, 19)],
    ids=["checksum0", "crc32", "stale-at-every-pause"],
)
async def test_done_means_faults_detected_books_equal_no_unverified_book(
    crc: bool, stale_after: float, updates: int, seed: int
) -> None:
    """``stale-at-every-pause``: a stale window shorter than the test's pauses, as a loaded machine makes
    0.3 s look: the book also goes stale between the last push and the test's look at it (it waited
    forever there before ``_settle``; seed 19 injects every fault kind at least twice in 3,000 updates)."""
    if SOAK and stale_after == 0.3:
        updates = 1_000_000
    with trio.fail_after(3600 if SOAK else 240):  # generous: the machine may be shared
        async with open_fake_okx() as fake:
            fake.book_feed.crc = crc
            fake.ws_queue_size = 100_000
            async with running(fake, book_stale_after=stale_after, book_snapshot_interval=0.5) as (
                venue,
                sink,
            ):
                t0 = time.perf_counter()
                injected = await _soak(fake, venue, sink, updates, seed)
                elapsed = time.perf_counter() - t0
                c = venue.book_counters[SYM]
                assert c.gaps == injected["gap"] + injected["reorder"]
                assert c.checksum_errors == injected["bad_checksum"]
                assert c.seq_resets == injected["reset"]
                assert c.heartbeats >= injected["heartbeat"] + injected["stale"]
                assert c.stale >= injected["stale"]  # a slow machine may see more silences than we made
                assert c.resubscribes == injected["gap"] + injected["reorder"] + injected["bad_checksum"]
                assert fake.book_subscribes[SYM] == 1 + c.resubscribes + c.retries  # retries: a slow snapshot
                assert c.malformed == 0 and min(injected.values()) >= 2
                if c.retries == 0:  # (a re-ask unsubscribes a moment: pushes made then come in its snapshot)
                    assert c.updates >= updates - sum(injected.values()) * 3, (c, injected)
                # every strategy's copy is the server's book (the delta form holds all 400+ levels)
                keeper = venue.book_state(SYM)
                assert keeper is not None
                for p in sink.strategies:
                    copy = p.books.get(SYM)
                    assert copy is not None and p.books.counters.mismatches == 0
                    n = copy.depth or None
                    assert (copy.bids, copy.asks) == tuple(side[:n] for side in keeper.feed.book.snapshot())
                assert "invalid" in sink.states and "stale" in sink.states
                if SOAK:
                    print(
                        f"\nsoak crc={crc}: {c.updates} updates, {elapsed:.1f} s, {c.updates / elapsed:,.0f}/s;"
                        f" injected {injected}; counters {c}; frames to strategies {sink.frames}"
                    )
