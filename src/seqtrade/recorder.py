"""The market recorder: the server's market data and order latencies, in Parquet files (docs/backtesting.md).

The rows and where they go are :mod:`seqtrade.recorder_rows`; this module is the shell around them.

The live path never waits for it. The feed task appends each frame it published to :attr:`Recorder.md`
(a ``deque.append``, no Python call) and calls :meth:`Recorder.trim` once per batch, which drops what
is beyond ``recorder.queue`` (counted in :attr:`Recorder.dropped`, logged once per episode). Every
``recorder.flush_interval`` the :meth:`Recorder.run` task takes what is queued and hands it to a worker
thread (``trio.to_thread``), which decodes the frames and writes them; while a write is slow the
queue fills and the recorder drops, the feed does not. A write that fails (a full disk, a directory
that cannot be made) drops that batch, counted and logged once, and the next batch tries again.

Files: ``<root>/<table>/<UTC day>/<key>/<HHMMSS>-<pid>-<nnnnnn>.parquet`` (in time order by name),
zstd-compressed Parquet. A file is written as ``...parquet.partial`` and renamed when it is closed
(after ``recorder.roll_seconds``, at a schema change, or when the server stops), so a reader globbing
``*.parquet`` only ever sees complete files; a crash loses the open ones (at most ``roll_seconds`` of
data).
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from .clock import WALL, Clock
from .config import RecorderConfig
from .errors import WireError
from .recorder_rows import GAPS, ORDERS, GapTracker, OrderLatencies, day_of, frame_row, safe_key
from .venues.base import OrderEvent, VenueOrder

__all__ = ["Recorder", "ROW_GROUP", "CHUNK"]

log = logging.getLogger(__name__)

ROW_GROUP = 16_384  # rows buffered per file before a row group is written
# The writer thread shares the GIL with the Trio thread. Every time the feed's thread releases it (a
# socket call), a busy writer would take it for up to the interpreter's switch interval (5 ms): the
# feed would stall for that long many times a batch. So the writer works in chunks of CHUNK rows
# (about a millisecond) and sleeps PAUSE_S between them, when the feed's thread takes the GIL back.
CHUNK = 256
PAUSE_S = 0.0002
_DAY_NS = 86_400 * 1_000_000_000


def _pause() -> None:
    time.sleep(PAUSE_S)


class Recorder:
    """Records what the server publishes; see the module docstring. Built by ``serve`` when
    ``[recorder] enabled``; the gateway calls the hooks, ``serve`` runs :meth:`run` and :meth:`close`."""

    def __init__(
        self,
        config: RecorderConfig,
        root: Path,
        venue: str,
        *,
        md_dropped: Callable[[], int] = lambda: 0,
        clock: Clock = WALL,
    ) -> None:
        """``clock``: the server's (the venue's) time: orders' send and acknowledgement times, files'
        ages and names (the market data carries the gateway's own stamps)."""
        self.config = config
        self.clock = clock
        self.root = root
        self.md: deque[bytes] = deque()  # frames published, not yet handed to the writer
        self.orders: deque[dict[str, Any]] = deque()  # orders rows (send and first answer), likewise
        self.max = config.queue
        self.dropped = 0  # messages not recorded: queue full or write failed
        self.written = 0  # rows written
        self.write_errors = 0
        self._md_dropped = md_dropped  # the server's own market-data drops (a gap in the recording too)
        self._server_dropped_seen = md_dropped()
        self._dropped_seen = 0  # self.dropped at the last flush
        self._episode = 0  # messages dropped in the episode being logged; 0: not dropping
        self._latency = OrderLatencies()
        self._writer = _Writer(root, config, venue)
        self._lock = trio.Lock()
        self._closed = False

    # ------------------------------------------------------------------ hooks (the Trio thread)

    def trim(self) -> None:
        """After a feed batch: drop (and count) what is beyond the queue's bound, newest first."""
        over = len(self.md) - self.max
        if over > 0:
            pop = self.md.pop
            for _ in range(over):
                pop()
            self._drop(over, "queue full: the writer is behind")

    def order_sent(self, order: VenueOrder) -> None:
        """The server hands ``order`` to the venue now."""
        evicted = self._latency.sent(self.clock.time_ns(), order.venue_order_id, order.symbol, str(order.side),
                                     str(order.order_type), order.price, order.quantity)  # fmt: skip
        if evicted is not None:  # never answered, and too many others waiting: recorded unanswered
            self._queue_order(evicted)

    def order_event(self, event: OrderEvent) -> None:
        """An order event from the venue: the first one of an order sent is its acknowledgement."""
        row = self._latency.event(
            self.clock.time_ns(), event.venue_order_id, event.status, event.exchange_order_id
        )
        if row is not None:
            self._queue_order(row)

    def _queue_order(self, row: dict[str, Any]) -> None:
        if len(self.orders) < self.max:
            self.orders.append(row)
        else:
            self._drop(1, "queue full: the writer is behind")

    def _drop(self, n: int, why: str) -> None:
        self.dropped += n
        if not self._episode:
            log.warning("recorder: dropping market data (%s); the recording has a gap, the feed is not"
                        " affected (counted in recorder dropped)", why)  # fmt: skip
        self._episode += n

    # ------------------------------------------------------------------ the writer task

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Flush every ``flush_interval`` until cancelled (``serve`` then calls :meth:`close`)."""
        task_status.started()
        while True:
            await trio.sleep(self.config.flush_interval)
            await self.flush()

    async def flush(self, *, final: bool = False) -> None:
        """Hand what is queued to the writer thread; ``final``: then close every file. One at a time
        (the last flush at the stop may come while the periodic one is writing)."""
        async with self._lock:
            await self._flush(final)

    async def _flush(self, final: bool) -> None:
        md, self.md = self.md, deque()
        orders, self.orders = self.orders, deque()
        if final:
            orders.extend(self._latency.close())
        server = self._md_dropped()
        drops = {
            "recorder_dropped": self.dropped - self._dropped_seen,
            "server_dropped": server - self._server_dropped_seen,
        }
        self._dropped_seen, self._server_dropped_seen = self.dropped, server
        try:
            n = await trio.to_thread.run_sync(
                self._writer.write, md, orders, drops, self.clock.time_ns(), final
            )
        except (OSError, ValueError, TypeError) as exc:  # pyarrow's I/O errors are OSErrors
            self.write_errors += 1
            self._drop(len(md) + len(orders), f"cannot write {self.root}: {exc}")
            self._dropped_seen = self.dropped  # counted now: the next flush's gap row includes them
            self._writer.carry("recorder_dropped", len(md) + len(orders))
            return
        self.written += n
        if self._episode and drops["recorder_dropped"] == 0 and md:  # written, none dropped since:
            log.info("recorder: recording again after %d messages dropped", self._episode)
            self._episode = 0

    async def close(self) -> None:
        """The last flush: everything queued is written and every file closed (renamed to .parquet)."""
        if self._closed:
            return
        self._closed = True
        await self.flush(final=True)

    def status(self) -> dict[str, Any]:
        return {"dir": str(self.root), "written": self.written, "dropped": self.dropped,
                "queued": len(self.md), "write_errors": self.write_errors}  # fmt: skip


class _Writer:
    """The worker thread's side: decodes frames into rows and writes them (one call at a time)."""

    def __init__(self, root: Path, config: RecorderConfig, venue: str) -> None:
        self.root = root
        self.compression = None if config.compression == "none" else config.compression
        self.roll_ns = int(config.roll_seconds * 1e9)
        self.venue = venue
        self.gaps = GapTracker(venue)
        self.parts: dict[tuple[str, str, str], _Part] = {}
        self.n = 0
        self._gap_rows: list[dict[str, Any]] = []  # written with the next successful batch
        self._carried: dict[str, int] = {}

    def carry(self, kind: str, n: int) -> None:
        """Drops counted after a failed write: added to the next batch's."""
        self._carried[kind] = self._carried.get(kind, 0) + n

    def write(
        self, frames: deque[bytes], orders: deque[dict[str, Any]], drops: dict[str, int], now_ns: int,
        final: bool,
    ) -> int:  # fmt: skip
        """Record one batch (in the worker thread); on an error every open file is abandoned first."""
        try:
            return self._write(frames, orders, drops, now_ns, final)
        except (OSError, ValueError, TypeError):
            self.abandon()
            raise

    def _write(
        self, frames: deque[bytes], orders: deque[dict[str, Any]], drops: dict[str, int], now_ns: int,
        final: bool,
    ) -> int:  # fmt: skip
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        gaps = self.gaps
        days: dict[int, str] = {}
        for i, frame in enumerate(frames):
            if i % CHUNK == CHUNK - 1:
                _pause()
            try:
                typ, key, row = frame_row(frame)
            except WireError:  # the server publishes only protocol frames: nothing to record
                continue
            if typ == "status":
                self._gap_rows += gaps.status(row)
            ns = row.get("gw_ns") or now_ns
            day = days.get(ns // _DAY_NS)
            if day is None:
                day = days[ns // _DAY_NS] = day_of(ns)
            groups.setdefault((typ, day, key), []).append(row)
        for row in orders:
            groups.setdefault((ORDERS, day_of(row["send_ns"]), row["symbol"]), []).append(row)
        for kind, n in drops.items():
            self._gap_rows += gaps.dropped(kind, n + self._carried.pop(kind, 0), now_ns)
        if final:
            self._gap_rows += gaps.close(now_ns)
        for row in self._gap_rows:
            groups.setdefault((GAPS, day_of(row["start_ns"]), row["venue"]), []).append(row)
        for where, part in list(self.parts.items()):  # roll: files open this long are closed first
            if now_ns - part.opened_ns >= self.roll_ns:
                part.close()
                del self.parts[where]
        n = 0
        for where, rows in groups.items():
            self._add(where, rows, now_ns)
            n += len(rows)
        self._gap_rows = []
        if final:
            for part in self.parts.values():
                part.close()
            self.parts.clear()
        return n

    def _add(self, key: tuple[str, str, str], rows: list[dict[str, Any]], now_ns: int) -> None:
        part = self.parts.get(key)
        if part is None:
            part = self.parts[key] = self._open(key, now_ns)
        if part.add(rows):
            return
        part.close()  # the rows do not fit the file's schema (a field changed type): a new file for them
        part = self.parts[key] = self._open(key, now_ns)
        if not part.add(rows):  # rows that disagree among themselves: one at a time, a file per shape
            for row in rows:
                self._add(key, [row], now_ns)

    def _open(self, key: tuple[str, str, str], now_ns: int) -> _Part:
        table, day, k = key
        self.n += 1
        stem = time.strftime("%H%M%S", time.gmtime(now_ns // 1_000_000_000)) + f"-{os.getpid()}-{self.n:06d}"
        return _Part(self.root / safe_key(table) / day / safe_key(k), stem, self.compression, now_ns)

    def abandon(self) -> None:
        """After a failed write: forget the open files (their .partial files stay, unreadable as Parquet
        and never globbed as ``*.parquet``)."""
        for part in self.parts.values():
            part.abandon()
        self.parts.clear()


class _Part:
    """One file being written: batches buffered into row groups of at least ``ROW_GROUP`` rows."""

    def __init__(self, directory: Path, stem: str, compression: str | None, opened_ns: int) -> None:
        self.directory = directory
        self.path = directory / f"{stem}.parquet"
        self.partial = directory / f"{stem}.parquet.partial"
        self.compression = compression
        self.opened_ns = opened_ns
        self.tables: list[Any] = []  # pyarrow Tables not yet written
        self.buffered = 0
        self.schema: Any = None  # the first batch's
        self.writer: Any = None

    def add(self, rows: list[dict[str, Any]]) -> bool:
        """Buffer ``rows``; False (nothing taken) when they do not fit the file's schema."""
        table = _table(rows, self.schema)
        if table is None:
            return False
        if self.writer is None:  # the file exists from the first rows on: a directory that fails, fails now
            import pyarrow.parquet as pq

            self.directory.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.partial, table.schema, compression=self.compression)
        self.schema = table.schema
        self.tables.append(table)
        self.buffered += len(rows)
        if self.buffered >= ROW_GROUP:
            self._write_buffer()
        return True

    def _write_buffer(self) -> None:
        import pyarrow as pa

        if not self.tables:
            return
        self.writer.write_table(pa.concat_tables(self.tables))
        self.tables, self.buffered = [], 0

    def close(self) -> None:
        self._write_buffer()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            os.replace(self.partial, self.path)

    def abandon(self) -> None:
        self.tables, self.buffered = [], 0
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError:
                pass
            self.writer = None


def _table(rows: list[dict[str, Any]], schema: Any) -> Any:
    """The rows as a pyarrow Table (columns: the union of their keys; a key a row lacks is null), with
    ``schema`` if given, else one inferred from them; None when they do not fit it.

    Converted :data:`CHUNK` rows per call: a conversion holds the GIL, and the feed's thread waits for
    it no longer than one chunk takes (a few ms on a loaded machine)."""
    import pyarrow as pa

    shapes = sorted({tuple(row) for row in rows})  # the key lists (a few), in a stable order
    names = dict.fromkeys(k for shape in shapes for k in shape)
    try:
        if schema is None:
            schema = _infer(rows, names)
        elif any(k not in schema.names for k in names):
            return None
        parts = []
        for i in range(0, len(rows), CHUNK):
            if i:
                _pause()
            parts.append(pa.Table.from_pylist(rows[i : i + CHUNK], schema=schema))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return None
    return pa.concat_tables(parts)


def _infer(rows: list[dict[str, Any]], names: dict[str, None]) -> Any:
    """A schema for ``rows``: each column's type from the first chunk, or from its first value found
    further on when the first chunk has only nulls in it."""
    import pyarrow as pa

    head = rows[:CHUNK]
    fields = []
    for k in names:
        t = pa.array([r.get(k) for r in head]).type
        if t == pa.null():
            v = next((r[k] for r in rows if r.get(k) is not None), None)
            t = pa.array([v]).type
        fields.append(pa.field(k, t))
    return pa.schema(fields)
