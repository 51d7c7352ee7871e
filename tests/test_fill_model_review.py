"""A second reading of the backtest's faster paths (the fill model's book read once per side and price,
``advance`` skipped when nothing is due, ``_available`` without a sum; the replay's batches merged
through ``itertools.chain``; window rows numbered through ``_PLANS``), trying to break "exact": the
cases the random sessions of tests/test_fill_model_fast.py do not reach, each played through the model
and through the implementation it replaced (``Before``, kept there), and checked against the rules."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seqtrade import fill_model, replay, wire
from seqtrade.fill_model import (
    AtLeast,
    ConstantLatency,
    Contract,
    EmpiricalLatency,
    Fees,
    Fill,
    FillModel,
    Latency,
    LogNormalLatency,
    SimOrder,
    Status,
)
from seqtrade.models import Book, FundingRate, MarkPrice, OrderType, Side, Ticker, Trade
from seqtrade.replay_backtest import BacktestVenue
from seqtrade.replay_fills import SimExchange
from seqtrade.venues.base import OrderEvent, VenueOrder
from tests.test_fill_model_fast import Before, _available_before

S = "X"
MS = 1_000_000
FEES = Fees(0.0002, 0.0005)


def _both(latency: Any = None, **kw: Any) -> tuple[FillModel, FillModel]:
    """The model and the one it replaced, with the same (fresh) latency."""
    lat = latency or ConstantLatency(0)
    fresh = {k: v for k, v in vars(lat).items() if not k.startswith("_")}
    return FillModel(FEES, type(lat)(**fresh), **kw), Before(FEES, type(lat)(**fresh), **kw)


def _state(m: FillModel) -> list[Any]:
    orders = [
        (o.order_id, o.status, o.filled, o.notional, o.fee, o.ahead, o.price, o.quantity, o.seq)
        for o in m.orders.values()
    ]
    return [orders, dict(m.position), m.cash, m.fees_paid, m.funding_paid, [p[:3] for p in m._pending]]


def _run(m: FillModel, steps: list[tuple[Any, ...]]) -> list[Any]:
    """``steps`` played through ``m``: every call's events, each with the state after it."""
    out: list[Any] = []
    for kind, *args in steps:
        if kind == "book":
            out.append(m.on_book(*args))
        elif kind == "trade":
            out.append(m.on_trade(*args))
        elif kind == "funding":
            out.append(m.on_funding(*args))
        elif kind == "new":
            oid, sym, side, otype, price, qty, t = args
            m.submit(SimOrder(oid, sym, side, otype, price, qty), t)
        elif kind == "cancel":
            m.cancel(*args)
        elif kind == "amend":
            m.amend(*args)
        else:
            out.append(m.advance(args[0]))
        out.append(_state(m))
    return out


def _same(steps: list[tuple[Any, ...]], latency: Any = None, **kw: Any) -> list[Any]:
    new, old = _both(latency, **kw)
    got = _run(new, steps)
    assert got == _run(old, steps)
    return got


def _fills(events: list[Any]) -> list[tuple[str, float, float]]:
    return [(e.order_id, e.price, e.quantity) for e in events if isinstance(e, Fill)]


# ---------------------------------------------------------------------- one (side, price), several orders


def test_two_orders_at_one_price_keep_their_own_queue_places() -> None:
    """a joins behind 5, b behind 8 (a later book, a bigger level) and a's 1: one read of the level per
    book, but each order's ``ahead`` only shrinks to it from its own place."""
    steps: list[tuple[Any, ...]] = [
        ("book", S, [[100.0, 5.0]], [[101.0, 1.0]], 1 * MS),
        ("new", "a", S, "buy", "limit", 100.0, 1.0, 1 * MS),
        ("book", S, [[100.0, 8.0]], [[101.0, 1.0]], 2 * MS),
        ("new", "b", S, "buy", "limit", 100.0, 1.0, 2 * MS),
        ("book", S, [[100.0, 7.0]], [[101.0, 1.0]], 3 * MS),
        ("book", S, [[100.0, 4.0]], [[101.0, 1.0]], 4 * MS),
    ]
    new, old = _both()
    got = _run(new, steps)
    assert got == _run(old, steps)
    a, b = new.orders["a"], new.orders["b"]
    assert (a.ahead, b.ahead) == (4.0, 4.0)  # a: min(5, 7, 4); b: min(9, 7, 4)
    new.on_book(S, [[100.0, 6.0]], [[101.0, 1.0]], 5 * MS)  # the level grows again: nobody goes back
    assert (a.ahead, b.ahead) == (4.0, 4.0)


def test_an_order_filled_by_a_book_leaves_the_others_at_its_price_the_whole_book() -> None:
    """Three buys at 100 (1, 2 and 5 lots) and a book whose asks come to 100 with 3 lots: each meets the
    3 lots (the book's fills take nothing from it), the first two end filled in the loop, the third
    (read from the cache after two state changes) fills 3, as each did on its own before."""
    steps: list[tuple[Any, ...]] = [
        ("book", S, [[99.0, 5.0]], [[101.0, 1.0]], 1 * MS),
        ("new", "a", S, "buy", "limit", 100.0, 1.0, 1 * MS),
        ("new", "b", S, "buy", "limit", 100.0, 2.0, 1 * MS),
        ("new", "c", S, "buy", "limit", 100.0, 5.0, 1 * MS),
        ("advance", 2 * MS),
        ("book", S, [[99.0, 5.0]], [[100.0, 3.0], [100.5, 9.0]], 3 * MS),
    ]
    got = _same(steps)
    assert _fills(got[-2]) == [("a", 100.0, 1.0), ("b", 100.0, 2.0), ("c", 100.0, 3.0)]
    assert [e.order_id for e in got[-2] if isinstance(e, Status)] == ["a", "b"]


def test_a_cancel_or_amend_that_arrives_before_the_book_changes_what_the_book_reads() -> None:
    """A cancel of a (arriving 1 ns before the book) and an amend of b to 99.5 (likewise): the book then
    reads 100 for c only and 99.5 for b, on their new state; an amend arriving at the book's own ns
    waits (the book happened without it)."""
    steps: list[tuple[Any, ...]] = [
        ("book", S, [[100.0, 5.0], [99.5, 2.0]], [[101.0, 1.0]], 1 * MS),
        ("new", "a", S, "buy", "limit", 100.0, 1.0, 1 * MS),
        ("new", "b", S, "buy", "limit", 100.0, 1.0, 1 * MS),
        ("new", "c", S, "buy", "limit", 100.0, 1.0, 1 * MS),
        ("new", "d", S, "buy", "limit", 100.0, 1.0, 1 * MS),
        ("advance", 2 * MS),
        ("cancel", "a", 4 * MS - 1),
        ("amend", "b", 99.5, None, 4 * MS - 1),
        ("amend", "d", 99.0, None, 4 * MS),
        ("book", S, [[100.0, 1.0], [99.5, 1.0]], [[99.5, 2.0]], 4 * MS),
    ]
    got = _same(steps)
    last = got[-2]
    assert [(e.order_id, e.status) for e in last if isinstance(e, Status)][:2] == [
        ("a", "cancelled"),
        ("b", "amended"),
    ]
    # c and d (still at 100: its amend waits) fill at 100 from the asks at 99.5, then b (amended to a new
    # price: the back of the resting list) at 99.5
    assert _fills(last) == [("c", 100.0, 1.0), ("d", 100.0, 1.0), ("b", 99.5, 1.0)]


def test_a_crossed_book_with_one_price_on_both_sides_reads_each_side_for_its_own_orders() -> None:
    steps: list[tuple[Any, ...]] = [
        ("book", S, [[99.0, 5.0]], [[101.0, 5.0]], 1 * MS),
        ("new", "b", S, "buy", "limit", 100.0, 4.0, 1 * MS),
        ("new", "s", S, "sell", "limit", 100.0, 4.0, 1 * MS),
        ("advance", 2 * MS),
        ("book", S, [[100.0, 2.0], [99.0, 1.0]], [[100.0, 3.0], [101.0, 1.0]], 3 * MS),
    ]
    got = _same(steps)
    assert _fills(got[-2]) == [("b", 100.0, 3.0), ("s", 100.0, 2.0)]


# ---------------------------------------------------------------------- keys: equal floats, other types


@pytest.mark.parametrize(
    ("p1", "p2"),
    [
        (0.1 + 0.2, 0.3),  # different keys, the same level (within the tolerance)
        (-0.0, 0.0),  # one key, two signs
        (100, 100.0),  # one key, an int and a float
        (2**53, float(2**53)),
        (100.0, 100.0 + 1e-10),  # different keys and levels
    ],
)
def test_prices_equal_as_floats_or_as_keys_fill_as_before(p1: Any, p2: Any) -> None:
    level = float(p2)
    steps: list[tuple[Any, ...]] = [
        ("book", S, [[level, 3.0], [level - 1, 1.0]], [[level + 1, 2.0]], 1 * MS),
        ("new", "a", S, "buy", "limit", p1, 1.0, 1 * MS),
        ("new", "b", S, "buy", "limit", p2, 5.0, 1 * MS),
        ("new", "c", S, "sell", "limit", p1, 1.0, 1 * MS),  # crosses the bid: takes at once
        ("advance", 2 * MS),
        ("book", S, [[level, 2], [level - 1, 1]], [[level + 1, 2]], 3 * MS),  # integer sizes
        ("book", S, [[level - 1, 1.0]], [[level + 0.5, 1], [level, 2.0]], 4 * MS),  # asks out of order
        ("book", S, [], [], 5 * MS),  # both sides empty
        ("book", S, [[level - 1, 1.0]], [[level - 1e-13, 0.5]], 6 * MS),  # an ask within the tolerance
    ]
    _same(steps)


@pytest.mark.parametrize("limit", [100.0, 100.0 + 1e-12, 100.0 - 1e-12, 100.0 + 2e-12, 100.0 - 2e-12, 100])
def test_available_at_a_level_exactly_at_the_price_or_at_the_tolerance(limit: float) -> None:
    for levels in ([[100.0, 1.0], [101.0, 2.0]], [[101.0, 2.0], [100.0, 1.0]], [[100, 3]], [], [[99.0, 1.0]]):
        for buy in (True, False):
            got = fill_model._available(levels, limit, buy)
            assert got == _available_before(levels, limit, buy)
            assert type(got) is type(_available_before(levels, limit, buy))


# ---------------------------------------------------------------------- advance skipped: the boundary


def test_an_order_arriving_at_a_messages_own_ns_waits_for_the_next_one() -> None:
    """Latency 1 ms: an order sent at 1 ms arrives at 2 ms; a book and a trade at exactly 2 ms happened
    without it (no events, still pending), the trade at 2 ms + 1 ns sees it arrive (accepted) first."""
    steps: list[tuple[Any, ...]] = [
        ("book", S, [[100.0, 5.0]], [[101.0, 1.0]], 1 * MS),
        ("new", "a", S, "buy", "limit", 100.0, 1.0, 1 * MS),
        ("book", S, [[100.0, 5.0]], [[100.0, 1.0]], 2 * MS),
        ("trade", S, 100.0, 9.0, "sell", 2 * MS),
        ("trade", S, 100.0, 1.0, "sell", 2 * MS + 1),
    ]
    got = _same(steps, ConstantLatency(MS))
    assert got[3] == [] and got[5] == []  # (a "new" step gives its state only, no events)
    assert got[6][0][0][1] == "pending"
    # it met the book of 2 ms at its arrival (the ask at 100: a taker fill), not the trade of 2 ms
    assert [(type(e).__name__, e.ts_ns) for e in got[7]] == [("Fill", 2 * MS), ("Status", 2 * MS)]


def test_drawn_latencies_that_land_on_and_between_messages_give_the_same_sessions() -> None:
    """Random sessions on two symbols whose latencies are drawn (lognormal, measured samples, a floor)
    from values that put arrivals exactly on a later message's ns, 1 ns before or after it, or between
    messages; orders at prices that are equal floats but different keys (0.1+0.2 and 0.3), ints; funding
    on a linear and an inverse swap. Old and new: the same events and state after every call."""
    maker_fills = 0
    for seed in range(16):
        rng = random.Random(seed)
        steps = _session(rng)
        latencies: list[Latency] = [
            EmpiricalLatency([0, 1, MS - 1, MS, MS + 1, 2 * MS, 3 * MS // 2], seed=seed),
            LogNormalLatency(MS, 0.8, seed=seed),
        ]
        for lat in latencies:
            for queue in ("book", "none"):
                kw = {"queue": queue, "contracts": {"X": Contract(0.01), "Y": Contract(100.0, inverse=True)}}
                got = _same(steps, lat, **kw)
                maker_fills += sum(isinstance(e, Fill) and e.maker for r in got[::2] for e in r)
        floor = AtLeast(LogNormalLatency(MS // 2, 1.0, seed=seed), MS // 2)
        new, old = (
            FillModel(FEES, floor),
            Before(FEES, AtLeast(LogNormalLatency(MS // 2, 1.0, seed=seed), MS // 2)),
        )
        assert _run(new, steps) == _run(old, steps)
    assert maker_fills > 300  # the sessions do rest and fill orders (925 with these seeds)


def _session(rng: random.Random) -> list[tuple[Any, ...]]:
    prices: list[Any] = [0.1 + 0.2, 0.3, 0.4, 0.2, 0.30000000000000004, 1, 1.0]
    steps: list[tuple[Any, ...]] = []
    ids: list[str] = []
    t = 0
    for i in range(300):
        t += rng.choice((0, 1, MS // 2, MS - 1, MS, MS + 1))
        sym = rng.choice(("X", "Y"))
        r = rng.random()
        if r < 0.4:
            mid = rng.choice((0.3, 0.2, 0.4, 1.0))
            bids = [[mid - 0.1 * (k + 1), rng.choice((1.0, 2, 0.5))] for k in range(rng.randint(0, 3))]
            asks = [[mid + 0.1 * k, rng.choice((1.0, 2, 0.25))] for k in range(rng.randint(0, 3))]
            if rng.random() < 0.15:
                rng.shuffle(asks)
            if rng.random() < 0.1:  # crossed: one price on both sides
                bids.insert(0, [mid, 1.0])
            steps.append(("book", sym, bids, asks, t))
        elif r < 0.65:
            steps.append(
                ("trade", sym, rng.choice(prices), rng.choice((0.5, 1.0, 3)), rng.choice(("buy", "sell")), t)
            )
        elif r < 0.68:
            steps.append(("funding", sym, rng.choice((0.0001, -0.0002)), rng.choice((0.3, 1.0)), t))
        elif r < 0.86 or not ids:
            oid = f"o{i}"
            ids.append(oid)
            kind = rng.choice(("limit", "limit", "limit", "post_only", "market", "ioc", "fok"))
            price = None if kind == "market" else rng.choice(prices)
            steps.append(
                ("new", oid, sym, rng.choice(("buy", "sell")), kind, price, rng.choice((0.5, 1, 2.5)), t)
            )
        elif r < 0.93:
            steps.append(("cancel", rng.choice(ids), t))
        else:
            steps.append(
                ("amend", rng.choice(ids), rng.choice((None, *prices)), rng.choice((None, 0.25, 1, 3.0)), t)
            )
    steps.append(("advance", t + 10 * MS))
    return steps


# ---------------------------------------------------------------------- the replay's merge through chain


def _write(root: Path, table: str, sym: str, name: str, msgs: list[Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = root / table / "2026-12-01" / sym
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([wire.CODECS[m.__class__].encode(m) for m in msgs]), d / name)


def _file_messages_before(stream: int, table: str, files: list[Path]) -> Iterator[Any]:
    """``replay._file_messages`` as it was (a generator resumed per row)."""
    import pyarrow.parquet as pq

    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=replay._READ_BATCH):
            yield from replay._keyed(stream, table, batch)


def _read_messages_before(data: Path, symbols: list[str]) -> list[tuple[int, Any]]:
    streams = [_file_messages_before(i, t, fs) for i, (t, fs) in enumerate(replay._chains(data, symbols))]
    return [(ns, msg) for ns, _t, _s, _i, msg in heapq.merge(*streams) if msg is not None]


def test_ties_across_files_types_and_symbols_merge_in_the_same_order(tmp_path: Path) -> None:
    """Books, trades and tickers of two symbols, several files per chain, every row at one of three
    gw_ns and many with the same seq: the merge through chain gives the old order, which is read_rows'
    (gw_ns, type, seq) and then the chains' (table, key) order."""
    rng = random.Random(7)
    for sym in ("A-USDT", "B-USDT"):
        for f in range(3):
            books = [Book(sym, 1, [[1.0, float(rng.randint(1, 9))]], [[2.0, 1.0]], rng.randint(1, 3), 10 + f)
                     for _ in range(4)]  # fmt: skip
            trades = [Trade(sym, 1, f"t{f}{k}", 1.5, 1.0, "buy", rng.randint(1, 3), 10 + f) for k in range(4)]
            tickers = [Ticker(sym, 1, 1.5, 1.0, 2.0, 1.0, 1.0, 5.0, 1, 10 + f)]
            for table, msgs in (("book", books), ("trade", trades), ("ticker", tickers)):
                msgs.sort(key=lambda m: m.seq)
                _write(tmp_path, table, sym, f"00000{f}-1-00000{f}.parquet", msgs)
    want = _read_messages_before(tmp_path, ["A-USDT", "B-USDT"])
    got = list(replay.read_messages(tmp_path, ["A-USDT", "B-USDT"]))
    assert len(got) == len(want) == 2 * 3 * 9
    assert got == want
    rows = list(replay.read_rows(tmp_path, ["A-USDT", "B-USDT"]))
    assert [(r["gw_ns"], r["type"], r["symbol"], r["seq"]) for r in rows] == [
        (m.gw_ns, wire.CODECS[m.__class__].encode(m)["type"], m.symbol, m.seq) for _, m in got
    ]


# ---------------------------------------------------------------------- _PLANS


def test_plans_number_a_symbol_seen_first_as_another_type_and_a_subclass_as_before(tmp_path: Path) -> None:
    from seqtrade.bench.replay import write_recording

    class MyBook(Book):
        pass

    venue = BacktestVenue(write_recording(tmp_path / "rec", 10, 10), ["BTC-USDT"])
    venue._md_seqs = {}
    ticker = Ticker("A", 1, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 0, 0)
    book = Book("A", 1, [[1.0, 1.0]], [[2.0, 1.0]], 0, 0)
    trade = Trade("A", 1, "t", 1.0, 1.0, "buy", 0, 0)
    rows = [venue._numbered(m, ns) for ns, m in ((5, ticker), (6, book), (7, trade), (8, book))]
    assert [r[0] for r in rows] == ["ticker", "book", "trade", "book"]
    assert (ticker.seq, book.seq, trade.seq) == (1, 2, 1)  # each type its own topic, its own count
    with pytest.raises(KeyError):  # neither path knows a subclass (as before: no codec of its own)
        venue._numbered(MyBook("A", 1, [], [], 0, 0), 9)
    with pytest.raises(KeyError):
        wire.CODECS[MyBook]


# ---------------------------------------------------------------------- SimExchange.on_market's joins


class _ExchangeBefore(SimExchange):
    """``SimExchange.on_market`` as it was for books and trades (every result joined)."""

    def on_market(self, msg: object, ns: int) -> list[OrderEvent]:
        if isinstance(msg, Book | Trade):
            out = self._settle(ns) if self._rates else []
            if isinstance(msg, Book):
                return out + self._events(self.model.on_book(msg.symbol, msg.bids, msg.asks, ns))
            return out + self._events(self.model.on_trade(msg.symbol, msg.price, msg.size, msg.side, ns))
        return super().on_market(msg, ns)


def test_a_settlement_an_arrival_and_a_fill_at_one_message_come_in_the_same_order() -> None:
    """A swap: a resting buy, a second order arriving at the settlement's message, the book there filling
    the resting one: the settlement (with what arrived before it), then the book's fills, as before."""
    swap = "S-SWAP"
    runs = []
    for cls in (SimExchange, _ExchangeBefore):
        x = cls(Fees(0.0, 0.0), ConstantLatency(MS), contracts={swap: Contract(0.01, False, "USDT")})
        got: list[Any] = [x.on_market(Book(swap, 1, [[99.0, 5.0]], [[100.0, 5.0]]), 1 * MS)]
        got.append(x.submit(VenueOrder("m", swap, Side.BUY, OrderType.MARKET, None, 2.0), 1 * MS))
        got.append(x.submit(VenueOrder("l", swap, Side.BUY, OrderType.LIMIT, 99.0, 3.0), 1 * MS))
        got.append(x.on_market(Trade(swap, 3, "t", 99.0, 1.0, "sell"), 3 * MS))
        got.append(x.on_market(MarkPrice(swap, 4, 100.0, 100.0), 4 * MS))
        got.append(x.on_market(FundingRate(swap, 5, 0.0002, 10, 10), 5 * MS))
        got.append(x.submit(VenueOrder("n", swap, Side.BUY, OrderType.LIMIT, 98.0, 1.0), 8 * MS))
        got.append(x.on_market(Book(swap, 10, [[98.0, 1.0]], [[98.5, 9.0]]), 10 * MS))  # settles, crosses
        got.append(x.on_market(Trade(swap, 11, "u", 98.0, 4.0, "sell"), 11 * MS))
        got.append(x.on_market(Book(swap, 12, [[98.0, 1.0]], [[99.5, 9.0]]), 12 * MS))  # nothing moves
        runs.append((got, x.account_events, x.fills, x.funding))
    assert runs[0] == runs[1]
    (got, events, _, _) = runs[0]

    def states(i: int) -> list[tuple[str, str]]:
        return [(e.venue_order_id, str(e.status)) for e in got[i]]

    # n arrives (9 ms) while the settlement plays what is due before it; then the book fills l
    assert states(7) == [("n", "accepted"), ("l", "filled")]
    assert states(8) == [("n", "filled")] and got[9] == []
    # paid on the position before the book's fill: m's 2 contracts, not l's 3 more
    assert [e.amount for e in events] == [pytest.approx(-2 * 0.01 * 100.0 * 0.0002)]
