"""``seqtrade serve`` that kills itself with SIGKILL at one point of the first funding's hand-over,
for tests/test_paper_handover_kill.py.

Usage: ``python tests/kill_serve.py CONFIG POINT MARKER ARMED``. The real server (``seqtrade.server.app``)
on the real paper venue, built from CONFIG as ``seqtrade serve`` builds them; the one difference is
at the boundary between the two: the sink the server gives the venue is wrapped, and when the venue
hands over its first funding once the file ARMED exists (the test makes it when every strategy holds
its position), the process writes the event id to MARKER and sends itself SIGKILL

- ``handover``: as the venue calls ``account_event``, after the paper account committed the funding
  and before the server saw it: the window between the paper account's commit and the journal write;
- ``returned``: as ``account_event`` returns, before the venue goes on (before it marks the funding
  handed over in its account).

Nothing of the server or the venue is changed: the wrapper forwards every call as it is.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path
from typing import Any

import trio

from seqtrade.cli import setup_logging
from seqtrade.config import load_config
from seqtrade.models import AccountEventKind
from seqtrade.server.app import run_until_signal
from seqtrade.venues.base import MarketData, OrderEvent, VenueAccountEvent, VenueSink
from seqtrade.venues.paper import PaperVenue


class KillingSink:
    """Forwards everything to the server's sink; dies at ``point`` of the first funding's hand-over."""

    def __init__(self, sink: VenueSink, point: str, marker: Path, armed: Path) -> None:
        self.sink, self.point, self.marker, self.armed = sink, point, marker, armed

    def publish_market(self, msg: MarketData) -> None:
        self.sink.publish_market(msg)

    async def order_event(self, event: OrderEvent) -> None:
        await self.sink.order_event(event)

    def set_connected(self, connected: bool) -> None:
        self.sink.set_connected(connected)

    async def account_event(self, event: VenueAccountEvent) -> None:
        funding = event.kind == AccountEventKind.FUNDING and self.armed.exists()
        if funding and self.point == "handover":
            self._die(event)
        await self.sink.account_event(event)
        if funding and self.point == "returned":
            self._die(event)

    def _die(self, event: VenueAccountEvent) -> None:
        self.marker.write_text(event.event_id)
        os.kill(os.getpid(), signal.SIGKILL)


class KillingPaperVenue(PaperVenue):
    point = ""
    marker = armed = Path()

    async def run(self, sink: VenueSink, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await super().run(KillingSink(sink, self.point, self.marker, self.armed), task_status=task_status)


def main(config_path: str, point: str, marker: str, armed: str) -> int:
    assert point in ("handover", "returned"), point
    config = load_config(config_path)
    setup_logging(config.server.log_level)
    v = config.venue
    assert v.kind == "paper" and v.paper.state_path and not v.paper.bench_rate
    # as seqtrade.venues.venue_from_config builds the paper venue
    venue = KillingPaperVenue(v.paper, list(v.symbols), state_path=config.run_dir / v.paper.state_path,
                              bars=config.candles.bars, keep=config.candles.keep, derivatives=v.derivatives)  # fmt: skip
    venue.point, venue.marker, venue.armed = point, Path(marker), Path(armed)
    return trio.run(functools.partial(run_until_signal, config, venue))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
