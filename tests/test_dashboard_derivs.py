"""The dashboard with derivatives (the paper exchange's swaps): account events reach their panel and
the equity curve, each strategy's funding is the server's, the venue's positions have their panel."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from seqtrade.config import Config, parse_config
from seqtrade.server.gateway import Gateway

from .test_dashboard import DASHBOARD, by_id, http, sse_until
from .test_paper_derivs_server import CONFIG, SWAP, account_event, status, trade, two_strategies
from .test_paper_derivs_server import server as server  # noqa: F401 - the fixture, with this module's config


@pytest.fixture
def config(base_dir: Path) -> Config:
    return parse_config(CONFIG + DASHBOARD, base_dir=str(base_dir))


async def test_funding_and_a_liquidation_show_as_account_events(
    server: Gateway, peers, config: Config
) -> None:  # noqa: F811
    with trio.fail_after(20):
        a, b, venue = await two_strategies(server, peers)
        await trade(a, "buy", 30.0)
        await venue.settle_funding(rate=0.001)
        fund = await account_event(a)
        await venue.set_market(SWAP, 57400.0, 57400.2)  # warned
        warn = await account_event(a)
        await venue.set_market(SWAP, 56900.0, 56900.2)  # liquidated
        liq = await account_event(a)
        st = await sse_until(server.dashboard_url, lambda s: len(s["panels"]["account_events"]) == 3)
        events = st["panels"]["account_events"]
        assert [(e["kind"], e["seq"]) for e in events] == [
            ("liquidation", liq.seq), ("liquidation_warning", warn.seq), ("funding", fund.seq)]  # fmt: skip
        assert events[-1]["amount"] == pytest.approx(fund.amount) and events[-1]["currency"] == "USDT"
        assert events[0]["quantity"] == -30.0 and events[0]["price"] == liq.price
        books = (await status(config))["accounts"]["strategies"]["a"][SWAP]
        (book,) = [bk for bk in by_id(st)["a"]["books"] if bk["symbol"] == SWAP]
        assert book["position"] == books["position"] == 0.0
        assert book["funding"] == pytest.approx(books["funding"]) and book["currency"] == "USDT"
        assert isinstance(st["panels"]["venue_positions"], list)
        assert "b" not in {e["strategy"] for e in events}  # b holds nothing: nothing of it
        whole = (await http(server.dashboard_url, "/api/series")).json()["data"]
        equity = whole["equity"]["a"]
        assert equity["t"][-1] == liq.ts / 1000  # the liquidation is a point of the equity curve
        assert equity["marks"][-2:] == [0, 0]  # funding and liquidation: no fill markers
