"""Candles against the fake OKX: the business socket's candle channel and REST history within OKX's
limits (page sizes, the 1,440-row reach of market/candles, history-candles beyond it), through a real
server to a strategy peer: history then live candles form one unbroken series. Also the fake's own
rules (written from docs/okx.md §5.5) and the adapter's row parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import zmq

from seqtrade import wire
from seqtrade.candles import Candle, CandleJoin, History, HistoryRequest
from seqtrade.client import Endpoints
from seqtrade.config import OkxConfig
from seqtrade.venues.okx import OkxCredentials, OkxVenue
from seqtrade.venues.okx.candles import candle_from_row
from tests.conftest import make_config
from tests.fakeokx.candles import CandleError, FakeCandles
from tests.fakeokx.server import open_fake_okx
from tests.peer import Peer
from tests.test_candles import T0, M, _closed, assert_unbroken
from tests.test_deadman import _serve

S = "BTC-USDT"


def test_rows_become_candles_with_base_volume():
    row = ["1597026383085", "8533.02", "8553.74", "8527.17", "8548.26", "45247", "529.5", "5529.5", "0"]
    c = candle_from_row(row, S, "1m")
    assert (c.ts, c.open, c.high, c.low, c.close, c.volume, c.confirm) == (
        1597026383085, 8533.02, 8553.74, 8527.17, 8548.26, 45247.0, False)  # fmt: skip
    swap = candle_from_row({"ts": "1", "o": "1", "h": "2", "l": "0.5", "c": "1.5", "vol": "10", "volCcy": "0.1",
                            "confirm": "1"}, "BTC-USDT-SWAP", "1H")  # fmt: skip
    assert swap.volume == 0.1 and swap.confirm  # contracts -> base units for derivatives
    with pytest.raises(ValueError):
        candle_from_row(["x", "1", "1", "1", "1", "1", "1"], S, "1m")


async def test_the_fake_enforces_okx_limits(autojump_clock: object) -> None:
    fc = FakeCandles()
    for i in range(1500):
        fc.push(S, "1m", T0 + i * M, 1, 1, 1, 1, 1, True)
    with pytest.raises(CandleError, match="limit"):
        fc.answer("/api/v5/market/candles", {"instId": S, "bar": "1m", "limit": "301"})
    with pytest.raises(CandleError, match="limit"):
        fc.answer("/api/v5/market/history-candles", {"instId": S, "bar": "1m", "limit": "101"})
    rows = fc.answer("/api/v5/market/candles", {"instId": S, "bar": "1m", "limit": "300"})
    assert int(rows[0][0]) == T0 + 1499 * M and len(rows) == 300  # newest first
    beyond = fc.answer("/api/v5/market/candles", {"instId": S, "bar": "1m", "limit": "300",
                                                 "after": str(T0 + 60 * M)})  # fmt: skip
    assert beyond == []  # only the newest 1,440 rows are reachable
    older = fc.answer("/api/v5/market/history-candles", {"instId": S, "bar": "1m", "limit": "100",
                                                        "after": str(T0 + 100 * M)})  # fmt: skip
    assert [int(r[0]) for r in older[:2]] == [T0 + 99 * M, T0 + 98 * M] and len(older) == 100
    for _ in range(18):
        fc.answer("/api/v5/market/history-candles", {"instId": S, "bar": "1m", "limit": "1"})
    with pytest.raises(CandleError, match="Too Many"):  # 20 per 2 s
        fc.answer("/api/v5/market/history-candles", {"instId": S, "bar": "1m", "limit": "1"})


async def test_okx_history_then_live_candles_are_unbroken(nursery: trio.Nursery, base_dir: Path,
                                                          zctx: zmq.Context) -> None:  # fmt: skip
    config = make_config(base_dir, '\n[candles]\nbars = ["1m"]\n')
    with trio.fail_after(60):
        async with open_fake_okx() as fake:
            fake.set_market(S, bid=100.0, ask=100.2)
            n_closed = 1500  # more than market/candles reaches: history-candles serves the oldest
            for i in range(n_closed):
                fake.candles.push(S, "1m", T0 + i * M, 100 + i % 7, 101 + i % 7, 99, 100.5, 2.0, True)
            open_ts = T0 + n_closed * M
            fake.candles.push(S, "1m", open_ts, 100, 100.4, 99.9, 100.1, 0.5, False)
            okx = OkxConfig(demo=True, rest_url=fake.rest_url, ws_public_url=fake.ws_public_url,
                            ws_private_url=fake.ws_private_url, ws_business_url=fake.ws_business_url,
                            order_transport="rest")  # fmt: skip
            venue = OkxVenue(okx, [S], OkxCredentials("fake-key", "fake-secret", "fake-pass"), bars=["1m"])
            gw, _, _ = await _serve(nursery, config, venue)
            peer = Peer(zctx, Endpoints.from_config(config), "k1")
            try:
                peer.mdsub.sock.setsockopt(zmq.SUBSCRIBE, wire.topic("candle", f"{S}@1m"))
                await peer.join()
                while not any(c.business_subs for c in fake.connections("all")):
                    await trio.sleep(0.01)
                # The peer's subscription has reached the server's PUB once a candle reaches the peer:
                # the open bar, unchanged, again until one does (the live join drops these copies).
                while True:
                    fake.candles.push(S, "1m", open_ts, 100, 100.4, 99.9, 100.1, 0.5, False)
                    with trio.move_on_after(0.1):
                        await peer.next_md()
                        break
                peer.md_pending.clear()
                # The open bar changes, then closes, before the strategy asks for history: both copies
                # of the closed bar (history's and the live one) reach it; it must see it once.
                fake.candles.push(S, "1m", open_ts, 100, 100.6, 99.9, 100.3, 0.7, False)
                fake.candles.push(S, "1m", open_ts, 100, 100.6, 99.9, 100.2, 0.9, True)
                fake.candles.push(S, "1m", open_ts + M, 100.2, 100.2, 100.2, 100.2, 0.0, False)
                await peer.send(HistoryRequest("k1", "h-okx", S, "1m", 1440))
                answer = await peer.next_message()
                while not isinstance(answer, History):
                    answer = await peer.next_message()
                assert answer.error == "" and len(answer.candles) == 1440
                assert_unbroken(answer.candles, M)
                assert answer.candles[-1].ts == open_ts and answer.candles[-1].close == 100.2
                paths = [p for p, _ in fake.candles.requests]
                assert (
                    paths.count("/api/v5/market/candles") == 5 and "/api/v5/market/history-candles" in paths
                )
                assert fake.candles.rate_limited == 0
                join = CandleJoin()
                series = join.seed(answer.candles)
                for i in range(1, 4):  # three more bars close live
                    fake.candles.push(S, "1m", open_ts + i * M, 100, 101, 99, 100 + i, 1.0, True)
                live: list[Candle] = []
                while not live or live[-1].ts < open_ts + 3 * M or not live[-1].confirm:
                    c = await peer.next_md()
                    if join.accept(c) is not None:
                        live.append(c)
                series += _closed(live)
                assert_unbroken(series, M)
                assert len(series) == 1443 and series[-1].close == 103
                feeds = {(f["channel"], f["symbol"]): f for f in gw.status()["feeds"]}
                assert feeds[("candle:1m", S)]["messages"] >= 6
                assert feeds[("candle:1m", S)]["resubscriptions"] == 0
                # The business socket drops: the adapter reconnects, subscribes again and says so.
                lost = set(fake.connections("business"))
                await fake.disconnect(which="business")
                while not (row := _feed(gw, "candle:1m"))["resubscriptions"]:
                    await trio.sleep(0.01)
                assert row["resubscriptions"] == 1
                # counted when the adapter sent its subscribe: the bar is pushed once the fake has it (a
                # bar pushed before went to nobody, and the test waited for it forever on a loaded machine)
                while not any(c.business_subs for c in fake.connections("business") if c not in lost):
                    await trio.sleep(0.01)
                fake.candles.push(S, "1m", open_ts + 4 * M, 100, 101, 99, 104, 1.0, True)
                c = await peer.next_md()
                while not c.confirm:
                    c = await peer.next_md()
                assert join.accept(c) is not None and c.ts == open_ts + 4 * M  # live again, the next bar
            finally:
                peer.close()
                gw.request_stop()


def _feed(gw: object, channel: str) -> dict[str, object]:
    rows = gw.status()["feeds"]  # type: ignore[attr-defined]
    return next(r for r in rows if (r["channel"], r["symbol"]) == (channel, S))
