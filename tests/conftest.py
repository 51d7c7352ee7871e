"""Shared fixtures: a real server (paper venue) on real IPC sockets in a short temp run dir."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
import zmq

from seqtrade.client import Endpoints
from seqtrade.config import Config, parse_config
from seqtrade.server.app import serve
from seqtrade.server.gateway import Gateway
from seqtrade.venues.paper import PaperVenue

from .peer import Peer

QUIET_MARKET = """
[server]
run_dir = "run"
status_interval = 0
heartbeat_timeout = 30.0
shutdown_policy = "leave"

[venue]
kind = "paper"
symbols = ["BTC-USDT", "BTC-USDT-SWAP", "ETH-USDT"]

[venue.paper]
tick_interval = 3600.0   # the random walk stays still: tests move the market with set_market
tick_size = 0.1
lot_size = 0.001
min_size = 0.001
start_prices = { "BTC-USDT" = 100.0, "BTC-USDT-SWAP" = 100.0, "ETH-USDT" = 10.0 }
"""


@pytest.fixture
def base_dir() -> Iterator[Path]:
    # ipc paths are limited to ~107 bytes: keep the run dir short.
    d = Path(tempfile.mkdtemp(prefix="st-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def make_config(base_dir: Path, extra: str = "") -> Config:
    return parse_config(QUIET_MARKET + extra, base_dir=str(base_dir))


@pytest.fixture
def config(base_dir: Path) -> Config:
    return make_config(base_dir)


@pytest.fixture
def zctx() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)  # closes any socket a failed test left open, so teardown cannot hang


@pytest.fixture
async def server(nursery: trio.Nursery, config: Config) -> AsyncIterator[Gateway]:
    venue = PaperVenue(config.venue.paper, list(config.venue.symbols))
    gw: Gateway = await nursery.start(serve, config, venue)
    yield gw
    gw.request_stop()


@pytest.fixture
def endpoints(config: Config) -> Endpoints:
    return Endpoints.from_config(config)


@pytest.fixture
def peers(zctx: zmq.Context, endpoints: Endpoints) -> Iterator[dict[str, Peer]]:
    made: dict[str, Peer] = {}

    class _Peers(dict):
        def __missing__(self, sid: str) -> Peer:
            p = Peer(zctx, endpoints, sid)
            self[sid] = p
            return p

    made = _Peers()
    yield made
    for p in made.values():
        p.close()
