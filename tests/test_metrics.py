"""The opt-in Prometheus endpoint on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import socket

import pytest
import trio

from seqtrade.config import MetricsConfig, parse_config
from seqtrade.errors import ConfigError
from seqtrade.server.app import serve
from seqtrade.venues.paper import PaperVenue

from .conftest import make_config

S = "BTC-USDT"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def http_get(port: int, path: str) -> tuple[str, str]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return head, body


def sample(body: str, name: str) -> float:
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics:\n{body}")


async def test_metrics_endpoint(nursery, base_dir, zctx):
    with trio.fail_after(10):
        port = free_port()
        config = make_config(base_dir, f"[metrics]\nenabled = true\nport = {port}\n")
        venue = PaperVenue(config.venue.paper, list(config.venue.symbols))
        gw = await nursery.start(serve, config, venue)
        from seqtrade.client import Endpoints

        from .peer import Peer

        p = Peer(zctx, Endpoints.from_config(config), "s1")
        try:
            await p.join()
            await venue.set_market(S, 100.0, 100.2)
            await p.order(S, "buy", "market", None, 0.1)
            await p.report()
            await p.report()
            await p.order("DOGE-USDT", "buy", "limit", 1.0, 1.0)
            await p.report()
        finally:
            p.close()
        head, body = await http_get(port, "/metrics")
        assert head.startswith("HTTP/1.0 200") and "text/plain; version=0.0.4" in head
        assert sample(body, 'seqtrade_orders_total{outcome="received"}') == 2
        assert sample(body, 'seqtrade_orders_total{outcome="sent"}') == 1
        assert sample(body, 'seqtrade_orders_total{outcome="rejected"}') == 1
        assert sample(body, 'seqtrade_messages_total{channel="report"}') == gw.counters.reports_out >= 3
        assert sample(body, 'seqtrade_messages_total{channel="order"}') >= 3  # hello(s) and two orders
        assert sample(body, 'seqtrade_messages_total{channel="md"}') == gw.counters.md_out
        assert sample(body, "seqtrade_md_dropped_total") == 0
        assert sample(body, 'seqtrade_venue_connected{venue="paper"}') == 1
        assert 0 <= sample(body, 'seqtrade_strategy_heartbeat_age_seconds{strategy="s1"}') < 5
        assert sample(body, "seqtrade_journal_commit_seconds") > 0
        assert sample(body, "seqtrade_journal_lag_seconds") >= 0
        assert "# TYPE seqtrade_orders_total counter" in body
        head, _ = await http_get(port, "/")
        assert head.startswith("HTTP/1.0 404")
        # a client that connects and says nothing does not hold anything up
        idle = await trio.open_tcp_stream("127.0.0.1", port)
        head, _ = await http_get(port, "/metrics?x=1")
        assert head.startswith("HTTP/1.0 200")
        await idle.aclose()
        gw.request_stop()


def test_metrics_off_by_default_and_loopback_only():
    assert parse_config("").metrics == MetricsConfig(enabled=False, host="127.0.0.1", port=9464)
    with pytest.raises(ConfigError, match="metrics.host: '0.0.0.0' is not a loopback address"):
        parse_config("[metrics]\nenabled = true\nhost = '0.0.0.0'\n")
    with pytest.raises(ConfigError, match="metrics.port"):
        parse_config("[metrics]\nport = 0\n")
    assert dataclasses.replace(MetricsConfig(), port=1).port == 1
