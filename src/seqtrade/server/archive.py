"""Journal maintenance: closed orders and reports older than ``journal.archive_after_days`` move from the
journal to the archive (``journal.archive_path``), so that the journal's size follows recent activity.

The archive is another SQLite file with the journal's tables, attached to the journal's connection;
replays (a strategy asking from seq 1) and audits (``lookup`` of an old client_order_id) read both
(:class:`seqtrade.server.journal.Journal`). The moves read and copy rows already committed: the journal's
write path is untouched. They run on the server's Trio thread (the journal's connection is its own) in
batches of ``BATCH`` rows, each a pause of a few milliseconds, with a checkpoint between batches so that
orders and reports keep flowing; a pass every ``INTERVAL`` seconds. (In a thread with a connection of
its own, a move would hold the journal's write lock against the order path.)
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from ..bus import private_files
from ..config import Config
from .journal import Journal

__all__ = ["archive_pass", "archive_task", "BATCH", "INTERVAL"]

log = logging.getLogger(__name__)

BATCH = 200  # rows per transaction: a pause of about 7 ms on the server's thread (measured)
INTERVAL = 60.0  # seconds between passes


async def archive_pass(journal: Journal, before_ms: int, seqs: dict[str, int]) -> tuple[int, int]:
    """Move what is older than ``before_ms``: (orders, reports) moved. ``seqs``: the strategies."""
    orders = reports = 0
    while n := journal.archive_orders(before_ms, BATCH):
        orders += n
        await trio.lowlevel.checkpoint()
    for sid in list(seqs):
        while n := journal.archive_reports(sid, before_ms, BATCH):
            reports += n
            await trio.lowlevel.checkpoint()
    return orders, reports


async def archive_task(
    journal: Journal, config: Config, seqs: dict[str, int], *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Cancelled with the server. ``seqs``: the engine's (every strategy with reports)."""
    task_status.started()
    age_ms = int(config.journal.archive_after_days * 86_400_000)
    while True:
        orders, reports = await archive_pass(journal, time.time_ns() // 1_000_000 - age_ms, seqs)
        if orders or reports:
            private_files(config.archive_path)
            log.info("archived %d orders and %d reports older than %g days to %s", orders, reports,
                     config.journal.archive_after_days, config.archive_path)  # fmt: skip
        await trio.sleep(INTERVAL)
