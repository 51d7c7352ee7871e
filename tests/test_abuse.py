"""Fairness under abuse on the order socket (issue 12), with the real server on real sockets.

A peer that sends malformed frames naming its strategy is answered within its budget
(``server.bad_frame_burst``, then ``server.bad_frame_rate`` per second) and throttled beyond: its frames
are dropped unanswered, counted, and logged at most once per interval with a count. Meanwhile another
strategy's orders are all answered.
"""

from __future__ import annotations

import logging
import time

import msgpack
import trio

from seqtrade.client import Endpoints
from seqtrade.models import OrderStatus
from seqtrade.server.app import serve
from seqtrade.venues.paper import PaperVenue

from .peer import Peer
from .test_engine import server_config

S = "BTC-USDT"
BURST, RATE = 20, 5.0


async def test_a_bad_frame_budget_throttles_one_peer_while_another_is_answered(
    nursery, base_dir, zctx, caplog
):
    caplog.set_level(logging.INFO, logger="seqtrade.server.gateway")
    config = server_config(base_dir, bad_frame_burst=BURST, bad_frame_rate=RATE)
    with trio.fail_after(60):
        gw = await nursery.start(serve, config, PaperVenue(config.venue.paper, list(config.venue.symbols)))
        eps = Endpoints.from_config(config)
        bad, good = Peer(zctx, eps, "bad"), Peer(zctx, eps, "good")
        try:
            await bad.join()
            await good.join()
            await gw.venue.set_market(S, 100.0, 100.2)
            t0 = time.monotonic()
            n_bad, coids = 3_000, []
            garbage = b"order_request/bad/" + msgpack.packb({"type": "order_request", "strategy_id": "bad",
                                                              "client_order_id": 7})  # fmt: skip
            for i in range(n_bad):
                await bad.send_raw(garbage)
                if i % 30 == 0:
                    coids.append(await good.order(S, "buy", "limit", 99.0, 0.01))
            answered = set()
            while len(answered) < len(coids):
                r = await good.report()
                assert r.status is OrderStatus.ACCEPTED, r
                answered.add(r.client_order_id)
            assert answered == set(coids)  # every order of the well-behaved strategy, none stale
            while gw.counters.bad_frames < n_bad:  # every bad frame has been read
                await trio.sleep(0.01)
            elapsed = time.monotonic() - t0
            allowed = BURST + RATE * (elapsed + 1)
            dropped = gw.counters.bad_frames_dropped
            assert n_bad - allowed <= dropped < n_bad
            rejects = n_bad - dropped  # the budgeted ones are answered, each with a rejected report
            for _ in range(rejects):
                r = await bad.report()
                assert r.status is OrderStatus.REJECTED
            welcome = await bad.join()  # the welcome comes after every report queued before the hello
            assert welcome.last_seq == bad.last_seq and not bad.reports[rejects:]  # and nothing more
            lines = [r for r in caplog.records if "bad frames dropped" in r.getMessage()]
            assert 1 <= len(lines) <= 1 + elapsed / 10 + 1  # one line per 10 s, with a count
            per_frame = [r for r in caplog.records if "rejected order_request from bad" in r.getMessage()]
            assert len(per_frame) == rejects  # a line for each answered one (INFO), none for the dropped
            assert rejects >= BURST
        finally:
            bad.close()
            good.close()
        gw.request_stop()
