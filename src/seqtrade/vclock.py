"""The virtual clock of a backtest: the two messages that keep strategy processes in step with it.

Pure: models only (their codecs are in :mod:`seqtrade.wire`; docs/protocol.md, "Backtest clock").

In a backtest (``seqtrade backtest``) the server plays a recording in windows of one lookahead (the
smallest order latency: nothing a strategy sends can take effect sooner). After each window it
publishes a :class:`Sync` on the market-data socket, behind the window's market data: "everything
before ``t_ns`` has been sent to you; your reports up to ``reports[your id]`` too". A strategy reads its
reports up to that seq, sets its clock (``Strategy.now()``) to ``t_ns``, runs the timers due by then,
and answers with a :class:`SyncAck` on the order socket, behind the orders it sent meanwhile. The server
starts the next window once every strategy has acknowledged: a round trip per window, not per message.
Live servers never send a ``sync``; a strategy never sends ``sync_ack`` unless it got one.

A client that reads :class:`Window` frames says so in its acknowledgements (``SyncAck.batch``); once
every strategy of the backtest has, the server sends each window as one :class:`Window`: the window's
market data and its ``sync`` in one frame, instead of a frame per message and a ``sync`` behind them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Sync", "SyncAck", "Window", "VIRTUAL_CLOCK_ENV"]

VIRTUAL_CLOCK_ENV = "SEQTRADE_VIRTUAL_CLOCK"
"""Set (to ``1``) in the environment of the strategy processes a backtest starts: their clock is the
recording's from the first ``sync`` on, and their client order ids are deterministic."""


@dataclass(slots=True)
class Sync:
    """Server -> strategies, on ``sync/<venue>/`` (the market-data socket): the end of a window."""

    venue: str
    t_ns: int  # the recording's time, ns since the epoch: every message before it has been published
    step: int  # 1, 2, 3, ...: the window's number (the acknowledgement names it)
    reports: dict[str, int] = field(default_factory=dict)  # strategy id -> seq of its last report so far
    seq: int = 0
    gw_ns: int = 0


@dataclass(slots=True)
class SyncAck:
    """Strategy -> server, on the order socket: processed everything up to ``t_ns`` (window ``step``)."""

    strategy_id: str
    t_ns: int
    step: int
    session: str = ""
    batch: bool = False  # this client reads Window frames (the server may send the windows that way)


@dataclass(slots=True)
class Window(Sync):
    """Server -> strategies, on ``window/<venue>/``: a window's market data and its :class:`Sync` in one
    frame (sent once every strategy's ``sync_ack`` said ``batch``).

    ``md`` holds the window's market data in recorded order: the messages (a receiver's decoded models;
    the server may hold the frame's rows instead, built once for every subscriber). A receiver hands
    them to the strategy as if each had come in its own frame (only those of topics it subscribed to),
    then acts on the sync part as on a :class:`Sync`. ``step`` 0: market data only, the window goes on
    (a window split in parts, or cut by a change of the venue's connection); no answer is due.
    """

    md: list[Any] = field(default_factory=list)
    # The keys of each type's rows when ``md`` holds the rows of the frame (the server's side, see
    # seqtrade.wire): ``type -> [key, ...]``. Not part of the window's value.
    keys: dict[str, list[str]] = field(default_factory=dict, compare=False)
    # ``md`` already packed (the server's side: ``seqtrade.wire.pack_rows(md)``, made when the window was
    # read, off the round trip): the frame splices these bytes in place of packing ``md`` at the send.
    # None: packed at the send. Not part of the window's value.
    md_packed: bytes | None = field(default=None, compare=False, repr=False)
