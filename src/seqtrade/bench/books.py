"""``seqtrade bench`` book scenario: full-depth book updates verified and fanned out to 3 strategies.

What the server does for one OKX ``books`` push, in one process and with the server's own code:
decode the WebSocket text (:func:`seqtrade.venues.okx.messages.ws_message`), check its shape
(:func:`~seqtrade.venues.okx.parse.books_push_from_okx`), verify it against the seqId chain and apply
it (:class:`seqtrade.books.BookKeeper`, checksum 0 as OKX sends today, or a real CRC32), encode what it
publishes (``fullbook`` delta, ``depth`` when the top changed) and send it on a ZeroMQ PUB socket. Three
strategy processes (SUB, :class:`~seqtrade.client.protocol.ClientProtocol`) each keep the whole book
from the deltas. Queues are unbounded, so nothing is dropped: the rate is the number of updates over
the time from the first send until the slowest strategy has applied the last one, i.e. the rate the
whole chain sustains. Zero loss is checked, not assumed: every strategy must have received every frame,
seen no gap, and end with a book equal to the server's.

The same run measures the ticker fan-out the same way (``tickers`` text -> Ticker -> frame -> 3 strategies
decoding it) and reports the book rate as a ratio to it.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from multiprocessing.connection import Connection
from typing import Any

import zmq

from .. import wire
from ..books import BookKeeper, OrderBook, crc_checksum
from ..client.protocol import ClientProtocol
from ..models import Ticker
from ..venues.okx.messages import WsPush, ws_message
from ..venues.okx.parse import books_push_from_okx, ticker_from_okx

__all__ = ["COUNTS", "run_books", "format_books", "scenario_books", "books_section"]

SYMBOL = "BTC-USDT"
STRATEGIES = 3
COUNTS = {"smoke": 2_000, "quick": 20_000, "full": 100_000}  # book updates (and tickers) per plan


def _book_texts(n: int, *, crc: bool, seed: int = 13) -> list[str]:
    """A snapshot of 400 levels a side and ``n`` updates of 1-6 levels, as OKX sends them."""
    rng = random.Random(seed)
    book = OrderBook()
    bids = {9_999 - i: f"{rng.randint(1, 5000) / 1000:.3f}" for i in range(400)}
    asks = {10_001 + i: f"{rng.randint(1, 5000) / 1000:.3f}" for i in range(400)}

    def lv(t: int, s: str) -> list[str]:
        return [f"{t / 10:.1f}", s, "0", "1"]

    snap_b = [lv(t, s) for t, s in sorted(bids.items(), reverse=True)]
    snap_a = [lv(t, s) for t, s in sorted(asks.items())]
    book.apply_raw(snap_b, snap_a)
    seq = 1000

    def text(action: str, prev: int, b: list[list[str]], a: list[list[str]]) -> str:
        item = {"asks": a, "bids": b, "ts": "1700000000000", "checksum": crc_checksum(book) if crc else 0,
                "prevSeqId": prev, "seqId": seq}  # fmt: skip
        return json.dumps({"arg": {"channel": "books", "instId": SYMBOL}, "action": action, "data": [item]})

    out = [text("snapshot", -1, snap_b, snap_a)]
    for _ in range(n):
        b: list[list[str]] = []
        a: list[list[str]] = []
        for _ in range(rng.randint(1, 6)):
            is_bid = rng.random() < 0.5
            t = (9_999 - rng.randint(0, 30)) if is_bid else (10_001 + rng.randint(0, 30))
            size = "0" if rng.random() < 0.3 else f"{rng.randint(1, 5000) / 1000:.3f}"
            (b if is_bid else a).append(lv(t, size))
        book.apply_raw(b, a)
        prev, seq = seq, seq + rng.randint(1, 3)
        out.append(text("update", prev, b, a))
    return out


def _ticker_texts(n: int) -> list[str]:
    return [
        json.dumps(
            {
                "arg": {"channel": "tickers", "instId": SYMBOL},
                "data": [
                    {
                        "instType": "SPOT",
                        "instId": SYMBOL,
                        "last": f"{100 + i % 50 / 10:.1f}",
                        "lastSz": "0.1",
                        "askPx": f"{100.1 + i % 50 / 10:.1f}",
                        "askSz": "11",
                        "bidPx": f"{100 + i % 50 / 10:.1f}",
                        "bidSz": "5",
                        "vol24h": "2222",
                        "ts": str(1_700_000_000_000 + i),
                    }
                ],
            }
        )  # fmt: skip
        for i in range(n)
    ]


def _subscriber(endpoint: str, kind: str, conn: Connection) -> None:  # pragma: no cover - a child process
    """A strategy: SUB, decode every frame with the client protocol; report when told the total."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.connect(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"sync/")
    topics = (b"ticker/",) if kind == "ticker" else (b"fullbook/", b"book_status/", b"depth/")
    for t in topics:
        sub.setsockopt(zmq.SUBSCRIBE, t)
    proto = ClientProtocol("bench")
    if kind == "book":
        proto.books.want(SYMBOL, "full")
    synced = False
    got = 0
    last = 0.0
    expected = -1
    while expected < 0 or got < expected:
        if conn.poll():
            expected = conn.recv()
        if not sub.poll(10):
            continue
        while True:
            try:
                frame = sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if frame.startswith(b"sync/"):
                if not synced:
                    synced = True
                    conn.send("synced")
                continue
            proto.receive_md_frame(frame)
            got += 1
            last = time.perf_counter()
    book = proto.books.books.get(SYMBOL)
    levels = (book.bids, book.asks) if book is not None and book.state == "valid" else None
    conn.send({"got": got, "last": last, "md_gaps": proto.md_gaps, "book_gaps": proto.books.counters.gaps,
               "mismatches": proto.books.counters.mismatches, "levels": levels})  # fmt: skip
    sub.close(linger=0)
    ctx.term()


def _fan(kind: str, texts: list[str], endpoint: str) -> dict[str, Any]:
    mp = multiprocessing.get_context("spawn")
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.bind(endpoint)
    pipes, procs = [], []
    try:
        for _ in range(STRATEGIES):
            here, there = mp.Pipe()
            p = mp.Process(target=_subscriber, args=(endpoint, kind, there), daemon=True)
            p.start()
            pipes.append(here)
            procs.append(p)
        deadline = time.monotonic() + 30
        waiting = set(range(STRATEGIES))
        while waiting:  # slow joiners: sync frames until every strategy has one
            if time.monotonic() > deadline:
                raise RuntimeError("bench book scenario: a strategy process never connected")
            pub.send(b"sync/x/\x80")
            for i in list(waiting):
                if pipes[i].poll(0.01):
                    pipes[i].recv()
                    waiting.discard(i)
        keeper = BookKeeper(SYMBOL, stale_after=1e9, snapshot_interval=1e9)
        seqs: dict[bytes, int] = {}
        send = pub.send
        sent = 0
        t0 = time.perf_counter()
        if kind == "book":
            for text in texts:
                msg = ws_message(text)
                assert isinstance(msg, WsPush)
                push = books_push_from_okx(msg.data[0], msg.action)  # type: ignore[arg-type]
                assert push is not None
                _, out = keeper.push(bids=push.bids, asks=push.asks, prev_seq=push.prev_seq, seq=push.seq,
                                     checksum=push.checksum, ts=push.ts, snapshot=push.snapshot)  # fmt: skip
                for m in out:
                    topic = wire.CODECS[type(m)].topic(m)
                    seqs[topic] = m.seq = seqs.get(topic, 0) + 1
                    m.gw_ns = time.time_ns()
                    send(wire.encode_message(m))
                    sent += 1
        else:
            topic = wire.topic("ticker", SYMBOL)
            for text in texts:
                msg = ws_message(text)
                assert isinstance(msg, WsPush)
                t: Ticker = ticker_from_okx(msg.data[0])  # type: ignore[arg-type]
                seqs[topic] = t.seq = seqs.get(topic, 0) + 1
                t.gw_ns = time.time_ns()
                send(wire.encode_ticker(topic, t))
                sent += 1
        t_sent = time.perf_counter()
        for pipe in pipes:
            pipe.send(sent)
        reports = [pipe.recv() for pipe in pipes]
        for p in procs:
            p.join(10)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        pub.close(linger=0)
        ctx.term()
    updates = len(texts) - (1 if kind == "book" else 0)
    elapsed = max(r["last"] for r in reports) - t0
    server_levels = keeper.feed.book.snapshot() if kind == "book" else None
    lost = sum(sent - r["got"] for r in reports)
    return {
        "updates": updates,
        "frames": sent,
        "rate": round(updates / elapsed),
        "server_rate": round(updates / (t_sent - t0)),  # verify + encode + send, before the fan-out drains
        "lost": lost,
        "gaps": sum(r["md_gaps"] + r["book_gaps"] for r in reports),
        "books_equal": all(r["levels"] == server_levels for r in reports) if kind == "book" else None,
    }


def run_books(plan_name: str, root: Any) -> dict[str, Any]:
    """The book scenario of one ``seqtrade bench`` run (checksum 0 and CRC32) and its ticker baseline."""
    n = COUNTS.get(plan_name, COUNTS["quick"])
    ticker = _fan("ticker", _ticker_texts(n), f"ipc://{root}/bt.ipc")
    out: dict[str, Any] = {"strategies": STRATEGIES, "ticker": ticker}
    for name, crc in (("checksum0", False), ("crc32", True)):
        r = _fan("book", _book_texts(n, crc=crc), f"ipc://{root}/bb{int(crc)}.ipc")
        r["ratio_to_ticker"] = round(r["rate"] / ticker["rate"], 3) if ticker["rate"] else None
        out[name] = r
    return out


def format_books(r: dict[str, Any]) -> list[str]:
    """The table lines of the book scenario."""
    t = r["ticker"]
    lines = [f"Book fan-out to {r['strategies']} strategies, zero loss checked (verify + apply + encode + PUB -> SUB)",
             f"{'tickers':<22}{t['updates']:>9} updates {t['rate']:>10,}/s   lost {t['lost']}"]  # fmt: skip
    for name in ("checksum0", "crc32"):
        b = r[name]
        lines.append(
            f"{'books ' + name:<22}{b['updates']:>9} updates {b['rate']:>10,}/s   lost {b['lost']}, gaps {b['gaps']},"
            f" books equal {b['books_equal']}; {b['ratio_to_ticker']}x the ticker rate"
        )
    return lines


def scenario_books(run: Any) -> None:
    """The scenario of ``seqtrade bench`` (``--only books``): ``run`` is its :class:`~seqtrade.bench.run.Run`."""
    run.progress("book fan-out to 3 strategies: tickers, then books (checksum 0, CRC32)")
    run.results["books"] = run_books(run.plan.name, run.root)


def books_section(r: dict[str, Any]) -> list[str]:
    """The table section of the scenario (none when it did not run)."""
    return [*format_books(r["books"]), ""] if r.get("books") else []
