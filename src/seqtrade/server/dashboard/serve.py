"""The dashboard's task: the collector and Hypercorn's Trio worker (imported only when it is on)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from ...config import Config
from .collector import PANELS, Collector
from .web import build_app

if TYPE_CHECKING:
    from ..gateway import Gateway
    from ..guard import Guard
    from ..supervisor import Supervisor

__all__ = ["PANELS", "Collector", "make_collector", "serve_dashboard"]

log = logging.getLogger(__name__)


def make_collector(config: Config, gw: Gateway, guard: Guard, supervisor: Supervisor | None) -> Collector:
    """The dashboard's collector over the server's parts (the metrics endpoint reads it too)."""
    return Collector(config, gw, guard, supervisor)


async def serve_dashboard(
    config: Config,
    collector: Collector,
    token: str,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the collector and the HTTP server until cancelled.

    Owns both (cancelled with the server: open event streams end with it). ``task_status.started(url)``
    once it listens, with the port it got (``dashboard.port = 0``: any free one). Backpressure: each
    client's event stream sends the newest state only; a slow client skips versions, never queues them.
    """
    d = config.dashboard
    hc = HypercornConfig()
    host = f"[{d.host}]" if ":" in d.host else d.host
    hc.bind = [f"{host}:{d.port}"]
    hc.accesslog = None
    http_log = logging.getLogger("seqtrade.server.dashboard.http")
    if http_log.level == logging.NOTSET:
        http_log.setLevel(logging.WARNING)  # its "Running on ..." repeats the line below
    hc.errorlog = http_log
    hc.graceful_timeout = 0.5
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run)
        binds: list[str] = await nursery.start(hypercorn_serve, build_app(collector, token), hc)
        url = binds[0]
        log.info("dashboard on %s%s", url, " (a token is required)" if token else "")
        collector.gw.dashboard_url = url
        task_status.started(url)
