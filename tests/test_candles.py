"""Candles: bars from trades (pure), the client's join of history and live bars (pure), REST pages,
and on the paper venue through a real server: history then live candles form one unbroken series."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import zmq

from seqtrade import wire
from seqtrade.candles import (
    MAX_HISTORY,
    Candle,
    CandleBuilder,
    CandleJoin,
    History,
    HistoryRequest,
    merge_pages,
)
from seqtrade.client import Endpoints, Strategy, load_strategy, run_strategy
from seqtrade.models import Side
from seqtrade.server.app import serve
from seqtrade.server.gateway import Gateway
from seqtrade.venues.paper import PaperVenue
from tests.conftest import make_config
from tests.peer import Peer

S = "BTC-USDT"
T0 = 1_700_000_040_000  # a multiple of 60 s: bars of the tests open on it
M = 60_000


def _closed(cs: list[Candle]) -> list[Candle]:
    return [c for c in cs if c.confirm]


def assert_unbroken(bars: list[Candle], length_ms: int) -> None:
    """Closed bars, consecutive: each one bar after the previous, none missing, none twice."""
    assert bars, "no bars"
    ts = [c.ts for c in bars]
    assert all(c.confirm for c in bars)
    assert ts == list(range(ts[0], ts[0] + len(ts) * length_ms, length_ms)), ts


# --------------------------------------------------------------------------- the builder


def test_bars_from_trades_close_once_each_and_flat_bars_fill_quiet_intervals():
    b = CandleBuilder([S], ["1m"])
    opened = b.start(S, 100.0, T0 + 5)
    assert [(c.ts, c.open, c.confirm) for c in opened] == [(T0, 100.0, False)]
    (c,) = b.on_trade(S, 101.0, 2.0, T0 + 10_000)
    assert (c.open, c.high, c.low, c.close, c.volume, c.confirm) == (100.0, 101.0, 100.0, 101.0, 2.0, False)
    b.on_trade(S, 99.0, 1.0, T0 + 20_000)
    # A trade three minutes later closes the first bar and the two quiet ones (flat at the close).
    out = b.on_trade(S, 102.0, 0.5, T0 + 3 * M + 1)
    closed = _closed(out)
    assert [(c.ts, c.open, c.high, c.low, c.close, c.volume) for c in closed] == [
        (T0, 100.0, 101.0, 99.0, 99.0, 3.0),
        (T0 + M, 99.0, 99.0, 99.0, 99.0, 0.0),
        (T0 + 2 * M, 99.0, 99.0, 99.0, 99.0, 0.0),
    ]
    assert (out[-1].ts, out[-1].open, out[-1].close, out[-1].confirm) == (T0 + 3 * M, 99.0, 102.0, False)
    # Time alone closes bars too, each once: advancing twice to the same time closes nothing more.
    adv = b.advance(T0 + 5 * M)
    assert [c.ts for c in _closed(adv)] == [T0 + 3 * M, T0 + 4 * M] and not adv[-1].confirm
    assert b.advance(T0 + 5 * M + 10) == []
    assert b.next_close() == T0 + 6 * M
    assert_unbroken(b.closed(S, "1m", 100), M)
    assert [c.ts for c in b.closed(S, "1m", 2)] == [T0 + 3 * M, T0 + 4 * M]


def test_the_builder_keeps_a_bounded_history_and_bounded_work_after_a_long_pause():
    b = CandleBuilder([S, "ETH-USDT"], ["1s", "1m"], keep=50)
    b.start(S, 10.0, T0)
    out = b.advance(T0 + 10 * 24 * 3600 * 1000)  # ten days later: 864,000 seconds passed
    assert len(out) < 200  # only the bars that can be kept were made
    one_s = b.closed(S, "1s", 1000)
    assert len(one_s) == 50
    assert_unbroken(one_s, 1000)
    assert b.closed("ETH-USDT", "1m", 10) == []  # no price yet: no bars
    assert not b.serves(S, "5m") and b.bars == ["1s", "1m"]


# --------------------------------------------------------------------------- the join


def _bar(ts: int, confirm: bool = True, bar: str = "1m") -> Candle:
    return Candle(S, bar, ts, 1, 1, 1, 1, 0, confirm)


def test_the_join_drops_what_history_gave_and_finds_skipped_bars():
    j = CandleJoin()
    assert j.seed([_bar(T0), _bar(T0 + M), _bar(T0 + 2 * M, confirm=False)]) == [_bar(T0), _bar(T0 + M)]
    assert j.accept(_bar(T0 + M)) is None  # a closed bar history gave: a duplicate
    assert j.accept(_bar(T0 + M, confirm=False)) is None  # an old open bar
    assert j.accept(_bar(T0 + 2 * M, confirm=False)) is not None  # the open bar after it
    assert j.missing(_bar(T0 + 2 * M)) == 0
    assert j.accept(_bar(T0 + 2 * M)) is not None
    assert j.missing(_bar(T0 + 5 * M)) == 2  # T0+3M and T0+4M are missing
    assert j.missing(_bar(T0 + 5 * M, bar="5m")) == 0  # another stream: nothing handed over yet
    assert j.seed([_bar(T0 + 2 * M), _bar(T0 + 3 * M), _bar(T0 + 4 * M)]) == [
        _bar(T0 + 3 * M),
        _bar(T0 + 4 * M),
    ]


def test_merge_pages_keeps_closed_bars_once_oldest_first():
    newest_first = [_bar(T0 + 3 * M, confirm=False), _bar(T0 + 2 * M), _bar(T0 + M)]
    older = [_bar(T0 + M), _bar(T0)]  # overlaps the first page by one bar
    assert [c.ts for c in merge_pages([newest_first, older], 10)] == [T0, T0 + M, T0 + 2 * M]
    assert [c.ts for c in merge_pages([newest_first, older], 2)] == [T0 + M, T0 + 2 * M]
    assert merge_pages([newest_first], 0) == []


def test_history_requests_are_checked_on_the_way_in():
    ok = wire.parse_request(wire.encode_message(HistoryRequest("s1", "h-1", S, "1m", MAX_HISTORY)))
    assert ok == HistoryRequest("s1", "h-1", S, "1m", MAX_HISTORY)
    for bad, why in (
        (HistoryRequest("s1", "h-1", S, "7m", 10), "'bar' must be one of"),
        (HistoryRequest("s1", "h-1", S, "1m", MAX_HISTORY + 1), "'n' must be <= 1440"),
        (HistoryRequest("s1", "h-1", S, "1m", 0), "'n' must be >= 1"),
        (HistoryRequest("s1", "h 1", S, "1m", 5), "'request_id'"),
    ):
        with pytest.raises(wire.WireError, match=why):
            wire.parse_request(wire.encode_message(bad))


# --------------------------------------------------------------------------- paper, through a server


def _paper_config(base_dir: Path, bars: str = '["1m"]') -> Any:
    return make_config(base_dir, f"\n[candles]\nbars = {bars}\n")


async def _serve_paper(nursery: trio.Nursery, config: Any, clock: Any = None) -> tuple[Gateway, PaperVenue]:
    venue = PaperVenue(config.venue.paper, list(config.venue.symbols), bars=config.candles.bars, clock=clock)
    gw: Gateway = await nursery.start(serve, config, venue)
    return gw, venue


async def test_paper_history_then_live_candles_are_unbroken(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, base_dir: Path, zctx: zmq.Context
) -> None:
    """Bars built from the paper venue's trades on a virtual clock: a strategy that asks for history
    while live candles already flow gets every bar exactly once, in order, across the join."""
    config = _paper_config(base_dir)
    gw, venue = await _serve_paper(nursery, config, clock=lambda: T0 + int(trio.current_time() * 1000))
    peer = Peer(zctx, Endpoints.from_config(config), "c1")
    try:
        peer.mdsub.sock.setsockopt(zmq.SUBSCRIBE, wire.topic("candle", f"{S}@1m"))
        await peer.join()
        with trio.fail_after(3600):
            price = 100.0
            for i in range(8):  # trades over eight minutes: bars close behind them
                price += 0.1 if i % 3 else -0.2
                await venue.print_trade(S, round(price, 1), 0.01 * (i + 1), Side.BUY)
                await trio.sleep(55)
            # Live candles are queued on our md socket since we subscribed; history now.
            await peer.send(HistoryRequest("c1", "h-1", S, "1m", 5))
            answer = await peer.next_message()
            while not isinstance(answer, History):
                answer = await peer.next_message()
            assert answer.request_id == "h-1" and answer.error == "" and len(answer.candles) == 5
            join = CandleJoin()
            series = join.seed(answer.candles)
            await trio.sleep(4 * 60)  # four more bars close live
            live: list[Candle] = []
            while len(_closed(live)) < 4 + 8:  # everything queued since the subscription, and more
                c = await peer.next_md()
                if join.accept(c) is not None:
                    live.append(c)
                    if c.confirm:
                        series.append(c)
                if c.confirm and c.ts >= answer.candles[-1].ts + 4 * M:
                    break
        assert_unbroken(series, M)
        assert len(series) >= 5 + 4
        # The venue's own kept bars agree with what the strategy saw.
        kept = await venue.candles(S, "1m", 1440)
        assert [(c.ts, c.close, c.volume) for c in series] == [
            (c.ts, c.close, c.volume) for c in kept[-len(series) :]
        ]
    finally:
        peer.close()
        gw.request_stop()


async def test_history_of_a_bar_or_symbol_not_served_says_why(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, base_dir: Path, zctx: zmq.Context
) -> None:
    config = _paper_config(base_dir)
    gw, _ = await _serve_paper(nursery, config)
    peer = Peer(zctx, Endpoints.from_config(config), "c2")
    try:
        await peer.join()
        with trio.fail_after(60):
            await peer.send(HistoryRequest("c2", "h-5m", S, "5m", 10))
            await peer.send(HistoryRequest("c2", "h-x", "XRP-USDT", "1m", 10))
            got = {}
            while len(got) < 2:
                m = await peer.next_message()
                if isinstance(m, History):
                    got[m.request_id] = m
        assert (
            got["h-5m"].candles == []
            and "bar 5m of BTC-USDT is not served (bars served: 1m)" in got["h-5m"].error
        )
        assert "symbol XRP-USDT is not served" in got["h-x"].error
    finally:
        peer.close()
        gw.request_stop()


class _Bars(Strategy):
    """Warms up on history in on_start, then collects live closed bars."""

    symbols = [S]
    bars = ["1s"]

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.series: list[Candle] = []
        self.history_len = 0
        self.done = threading.Event()

    def on_start(self) -> None:
        hist = self.history(S, "1s", 3)
        self.history_len = len(hist)
        self.series.extend(hist)

    def on_candle(self, candle: Candle) -> None:
        if candle.confirm:
            self.series.append(candle)
        if len(self.series) >= self.history_len + 3:
            self.done.set()
            self.stop()


async def test_a_strategy_warms_up_on_history_and_continues_live_without_a_break(
    nursery: trio.Nursery, base_dir: Path
) -> None:
    """The product's strategy loop (real clock, 1 s bars): ``history`` in ``on_start`` then
    ``on_candle``: one series, no bar missing, none twice."""
    config = _paper_config(base_dir, '["1s"]')
    gw, venue = await _serve_paper(nursery, config)
    try:
        await _closed_bars(venue, 3)  # a few closed bars to warm up on
        strategy = _Bars()
        code = await trio.to_thread.run_sync(
            lambda: run_strategy(strategy, "bars1", Endpoints.from_config(config), join_timeout=20)
        )
        assert code == 0 and strategy.done.is_set()
        assert strategy.history_len == 3
        assert_unbroken(strategy.series, 1000)
    finally:
        gw.request_stop()


async def _closed_bars(venue: PaperVenue, n: int) -> None:
    """Until the venue has closed ``n`` bars of 1 s (bounded)."""
    with trio.fail_after(30):
        while len(await venue.candles(S, "1s", n)) < n:
            await trio.sleep(0.05)


class _LosesBars(_Bars):
    """Warms up, then misses the live bars of a few seconds (its candle subscription dropped, as a
    connection that lost them would): the client must fetch what it missed before going on. It
    subscribes again once the test saw two bars after its history go out on the server's PUB."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.dropped = threading.Event()
        self.resume = threading.Event()

    def on_start(self) -> None:
        super().on_start()
        assert self._conn is not None
        topic = wire.topic("candle", f"{S}@1s")
        self._conn.md.setsockopt(zmq.UNSUBSCRIBE, topic)  # the test's stand-in for lost messages
        self.dropped.set()
        assert self.resume.wait(30), "the test never saw the bars this strategy misses"
        self._conn.md.setsockopt(zmq.SUBSCRIBE, topic)


async def _resume_after_missed_bars(strategy: _LosesBars, peer: Peer) -> None:
    """Once ``strategy`` dropped its subscription, until ``peer`` (subscribed all along) received
    the closed bars two and three after the strategy's history: the strategy missed them (at least
    the later two); then lets it subscribe again."""
    with trio.fail_after(60):
        while not strategy.dropped.is_set():
            await trio.sleep(0.01)
        newest = strategy.series[-1].ts
        while True:
            c = await peer.next_md()
            if isinstance(c, Candle) and c.confirm and c.ts >= newest + 3000:
                break
    strategy.resume.set()


async def test_bars_lost_on_the_way_are_fetched_before_the_next_live_one(
    nursery: trio.Nursery, base_dir: Path, zctx: zmq.Context
) -> None:
    config = _paper_config(base_dir, '["1s"]')
    gw, venue = await _serve_paper(nursery, config)
    try:
        peer = Peer(zctx, Endpoints.from_config(config), "watch")
        peer.mdsub.sock.setsockopt(zmq.SUBSCRIBE, wire.topic("candle", f"{S}@1s"))
        await _closed_bars(venue, 3)
        strategy = _LosesBars()
        nursery.start_soon(_resume_after_missed_bars, strategy, peer)
        try:
            code = await trio.to_thread.run_sync(
                lambda: run_strategy(strategy, "bars2", Endpoints.from_config(config), join_timeout=20)
            )
        finally:
            strategy.resume.set()
            peer.close()
        assert code == 0 and strategy.done.is_set()
        assert_unbroken(strategy.series, 1000)
        assert len(strategy.series) >= 3 + 3
        assert gw.counters.by_kind["HistoryRequest"] >= 2  # the warm-up, and the fetch of the lost bars
    finally:
        gw.request_stop()


def test_the_strategies_of_the_candles_page_load(tmp_path: Path) -> None:
    """docs/candles.md's examples are strategies ``seqtrade run`` can load, using the names they show."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "candles.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "(Strategy):" in b]
    assert len(blocks) == 2
    for i, code in enumerate(blocks):
        path = tmp_path / f"example{i}.py"
        path.write_text(code)
        cls = load_strategy(str(path))
        assert issubclass(cls, Strategy)
    assert load_strategy(str(tmp_path / "example0.py")).bars == ["1m"]
