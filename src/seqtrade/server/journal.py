"""The journal: what makes the protocol's promises survive restarts, written as an append-only log
with SQLite as its index.

What it holds: every accepted order (with the id the venue knows it by), every report with its
per-strategy seq, and the trade ids already applied. The rule is *persist, then send*: an order row
is persisted before the order goes to the venue, and a report before it is published.

The persistence point is the **log** (``<journal>-log`` beside the SQLite file, the layout of a
write-ahead log such as LevelDB's: records framed by length and CRC, a log number in the index's
meta table). A write (:meth:`Journal.add_records`, :meth:`Journal.add_reports`) appends one frame
holding everything it was given, with one ``pwritev(2)``: generic records (an order row, a report
row ``(strategy_id, seq, key, body)``, an applied trade id), not tables. When the call returns, the
records are in the kernel's page cache and survive the server process dying at any instant (kill
-9), exactly like a SQLite commit in WAL mode with ``synchronous = normal`` (which is what the
journal did before). The records are then *pending*: the SQLite index takes them later, in one
transaction per slice of ``INDEX_ENTRIES`` records (:meth:`Journal.index`), off the order path:
after a batch's reports are published, one piece of the oldest full slice's transaction at a time
(:meth:`Journal.index_step`: one statement of at most ``PIECE_ROWS`` rows, so that an order arriving
meanwhile waits for a piece, not for the whole slice), and before anything reads the journal (every
read finishes the open transaction and indexes the rest first, so reads see every write). SQLite's
checkpoints (the WAL copied into the database file, with fsyncs) run in a thread of their own
(:class:`_Checkpointer`), not inside whichever index transaction crossed SQLite's threshold. The index's transaction also records how far
into the log it has taken (meta ``log``: log number and offset), so a restart replays exactly the
frames after that point into the index (:meth:`Journal.__init__`) and nothing twice. A torn last
frame (killed in the middle of a write) fails its CRC and is cut off: its write never returned, so
nothing it held was sent or published. When the index has taken the whole log and the log is past
``ROTATE_BYTES``, the log starts over under the next number (committed in the index first, so a
crash in between leaves an old-numbered log that the restart knows is fully indexed).

Durability (``journal.synchronous``): ``normal`` (default) survives the server process dying at any
point (kill -9); an OS crash or power loss can lose the last writes. ``full`` adds an ``fdatasync``
of the log per write and survives those too (see docs/operations.md for the measured cost). ``off``
is for benchmarks only. The SQLite index runs with the same setting.

Checks that SQLite's constraints used to make at the commit are made at the write, before anything
is appended: a venue order id or (strategy, client order id) already journaled, or a report whose
seq is not above its strategy's last, is refused (:class:`JournalError`) and nothing of the write
is persisted. "Already journaled" is answered without a read on the order path: pending orders are
in exact sets, indexed ones in a Bloom filter (:class:`seqtrade.server.seen.SeenFilter`, no false
negatives, fixed size) that holds every order of the index once it is filled (from the index at open,
a chunk per :meth:`Journal.index`; orders written since the open are added by their write). The index
is read only while the filter is being filled and when it answers "maybe" (a false positive or a
real duplicate). A report's body is built once: :meth:`Journal.add_reports` returns the bodies it
stored, and the server publishes them (:func:`seqtrade.wire.encode_stored_report`).

Calls are synchronous and short; they run on the server's Trio thread so that their order is the
order of events (no locks; the one thread is the checkpoints', which never touches the index's rows).
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

import msgpack

from ..errors import JournalError
from ..models import AccountEvent, OrderReport, OrderStatus
from ..wire import report_from_body, stored_report_from_body, stored_report_to_body
from .orders import OrderRecord
from .seen import DEFAULT_SEEN_BYTES, SeenFilter

__all__ = ["Journal", "ReportRow", "INDEX_ENTRIES", "ROTATE_BYTES"]

_T = TypeVar("_T")

log = logging.getLogger(__name__)

# A report as the journal keeps it, whatever its type: (strategy_id, seq, key, encoded body, state of
# the keyed order after it: 1 open, 0 closed, -1 none or no order). ``key`` is the venue order id of
# an order report ("" for a report about no order, such as an account event).
ReportRow = tuple[str, int, str, bytes, int]

INDEX_ENTRIES = 512  # records per index slice (one transaction): a full slice pending and the writer indexes
PIECE_ROWS = 16  # rows per statement of an index transaction run in pieces (:meth:`Journal.index_step`)
BEHIND_SLICES = 4  # full slices waiting past which :meth:`Journal.index_step` takes slices whole
CHECKPOINT_EVERY = 8  # index transactions between two of SQLite's checkpoints (in their own thread)
ROTATE_BYTES = 32 << 20  # a fully indexed log past this size starts over under the next number (default)
WARM_ROWS = 2048  # orders of the index taken into the "already journaled" filter per index() after opening
_MAGIC = b"STJLOG1\n"
_HEADER = len(_MAGIC) + 8  # magic, log number (u64 little-endian)
_FRAME = struct.Struct("<II")  # payload length, crc32 of the payload
_ORDER, _REPORT, _FILL = 0, 1, 2  # record kinds in a frame's payload

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    venue_order_id TEXT PRIMARY KEY,
    strategy_id TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    order_type TEXT NOT NULL,
    price REAL,
    quantity REAL NOT NULL,
    created_ms INTEGER NOT NULL,
    sent INTEGER NOT NULL DEFAULT 1,
    open INTEGER NOT NULL DEFAULT 1,
    last_seq INTEGER NOT NULL DEFAULT 0,
    closing INTEGER NOT NULL DEFAULT 0,
    UNIQUE (strategy_id, client_order_id)
);
CREATE INDEX IF NOT EXISTS orders_open ON orders (open) WHERE open = 1;
CREATE TABLE IF NOT EXISTS reports (
    strategy_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    venue_order_id TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (strategy_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fills (
    venue_order_id TEXT NOT NULL,
    trade_id TEXT NOT NULL,
    PRIMARY KEY (venue_order_id, trade_id)
) WITHOUT ROWID;
"""


_INSERT_ORDER_STATE_HEAD = (
    "INSERT INTO orders (venue_order_id, strategy_id, client_order_id, symbol, side, order_type,"
    " price, quantity, created_ms, sent, open, last_seq, closing) VALUES "
)
_MAX_PARAMS = 30_000  # per statement (SQLite's limit is 32,766 since 3.32)


def _many(db: sqlite3.Connection, head: str, tail: str, width: int, flat: list[Any]) -> None:
    """``head`` + ``(?,...),(?,...)`` + ``tail`` over ``flat`` (``width`` values a row), in as few
    statements as the parameter limit allows."""
    per = _MAX_PARAMS // width * width
    one = "(" + ",".join("?" * width) + ")"
    for i in range(0, len(flat), per):
        chunk = flat[i : i + per]
        db.execute(head + ",".join([one] * (len(chunk) // width)) + tail, chunk)


def _add_closing(db: sqlite3.Connection, schema: str) -> None:
    """A journal (or archive) from before swaps gets the ``closing`` column (no order of it was):
    the last column, so that ``SELECT *`` copies between journal and archive line up."""
    columns = {str(r[1]) for r in db.execute(f"PRAGMA {schema}table_info(orders)")}
    if "closing" not in columns:
        db.execute(f"ALTER TABLE {schema}orders ADD COLUMN closing INTEGER NOT NULL DEFAULT 0")


@contextmanager
def _mapped(what: str, path: Path) -> Iterator[None]:
    """sqlite3 and OS errors enter here and leave as :class:`JournalError`, saying what failed and where."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise JournalError(f"journal {path}: {what} failed: {exc}") from exc


# A copy interrupted by a crash leaves a row in both files: UNION keeps one (the rows are identical).
_ARCHIVED_REPORTS_AFTER = """
SELECT seq, body FROM reports WHERE strategy_id=? AND seq>?
UNION
SELECT seq, body FROM arch.reports WHERE strategy_id=? AND seq>?
ORDER BY seq LIMIT ?
"""

_LAST_SEQS = """
WITH RECURSIVE s(id) AS (
    SELECT (SELECT MIN(strategy_id) FROM reports)
    UNION ALL
    SELECT (SELECT MIN(strategy_id) FROM reports WHERE strategy_id > s.id) FROM s WHERE s.id IS NOT NULL
)
SELECT id, (SELECT MAX(seq) FROM reports WHERE strategy_id = s.id) FROM s WHERE id IS NOT NULL
"""


class _Batch:
    """Records staged for one index transaction, already as the index's rows: an order new in the
    batch carries the state its reports in the batch leave it in (no UPDATE for it); the other
    orders' newest state, one UPDATE each."""

    __slots__ = ("orders", "reports", "states", "fills", "n", "end")

    def __init__(self) -> None:
        self.orders: dict[str, list[Any]] = {}
        self.reports: list[Any] = []  # flat: strategy_id, seq, venue_order_id, body, ...
        self.states: dict[str, tuple[int, int, str]] = {}
        self.fills: list[str] = []  # flat: venue_order_id, trade_id, ...
        self.n = 0  # records staged
        self.end = 0  # the log's offset after the last frame staged

    def stage(self, records: list[tuple[Any, ...]]) -> None:
        orders, states = self.orders, self.states
        for rec in records:
            kind = rec[0]
            if kind == _REPORT:
                _, sid, seq, vid, body, is_open = rec
                self.reports += (sid, seq, vid, body)
                if vid and is_open >= 0:
                    row = orders.get(vid)
                    if row is None:
                        states[vid] = (is_open, seq, vid)
                    else:
                        row[10], row[11] = is_open, seq
            elif kind == _ORDER:
                # open = sent, last_seq 0 until a report; ``closing`` (absent from older logs' records)
                orders[rec[1]] = [*rec[1:11], rec[10], 0, rec[11] if len(rec) > 11 else 0]
            else:
                self.fills += (rec[1], rec[2])
        self.n += len(records)


class _Checkpointer:
    """SQLite's checkpoints (the WAL copied into the database file, with their fsyncs) in a thread of
    their own, on a connection of its own, instead of inside whichever index transaction crossed
    SQLite's automatic threshold (that one held the server's thread for 5-20 ms). A checkpoint only
    copies committed pages: the index's contents and the log, the persistence point, are untouched by
    it, and sqlite3 releases the GIL while it runs. ``PASSIVE``: it never waits for the writer. The
    owner asks for one every ``checkpoint_every`` index transactions; asks while one runs coalesce (an
    ask before :meth:`close` is still done).
    ``lock`` is held during a checkpoint: the owner takes it for its own (the log's rotation)."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.paths = [path]  # databases checkpointed (the archive joins when attached)
        self.lock = threading.Lock()
        self.runs = 0  # checkpoints done (tests)
        self._synchronous = synchronous
        self._cond = threading.Condition()
        self._asked = self._stop = self._running = False
        self._thread = threading.Thread(target=self._run, name="journal-checkpoint", daemon=True)
        self._thread.start()

    def ask(self) -> None:
        with self._cond:
            self._asked = True
            self._cond.notify_all()

    @property
    def busy(self) -> bool:
        """A checkpoint is asked or running."""
        return self._asked or self._running

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no checkpoint is asked or running (tests); whether it is so."""
        with self._cond:
            return self._cond.wait_for(lambda: not self.busy, timeout)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        dbs: dict[Path, sqlite3.Connection] = {}
        try:
            while True:
                with self._cond:
                    while not self._asked and not self._stop:
                        self._cond.wait()
                    if not self._asked:  # stopped (an ask before the stop is still done)
                        return
                    self._asked, self._running = False, True
                with self.lock:
                    for path in list(self.paths):
                        try:
                            db = dbs.get(path)
                            if db is None:
                                db = dbs[path] = sqlite3.connect(path, isolation_level=None)
                                db.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
                            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                        except sqlite3.Error as exc:  # the next one tries again; the index is unharmed
                            log.warning("journal: checkpoint of %s failed: %s", path, exc)
                        except Exception:  # the thread's boundary: said, and the next ask tries again
                            log.exception("journal: checkpoint of %s failed", path)
                    self.runs += 1
                with self._cond:
                    self._running = False
                    self._cond.notify_all()
        finally:
            for db in dbs.values():
                db.close()


class Journal:
    """The journal (log + SQLite index). Not thread-safe: one owner (the server's Trio thread)."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "normal",
        rotate_bytes: int = ROTATE_BYTES,
        seen_bytes: int = DEFAULT_SEEN_BYTES,
        warm_rows: int = WARM_ROWS,
        slice_records: int = INDEX_ENTRIES,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ) -> None:
        self.path = path
        self.rotate_bytes = rotate_bytes
        self.slice_records = slice_records
        self.checkpoint_every = checkpoint_every
        self.log_path = path.with_name(path.name + "-log")
        self._fsync = synchronous.lower() == "full"
        self._durable = synchronous.lower() != "off"
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self.db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints: :class:`_Checkpointer`
            self.db.executescript(_SCHEMA)
            _add_closing(self.db, "")
        except sqlite3.Error as exc:
            raise JournalError(
                f"cannot open journal {path}: {exc} (is its directory writable, the disk not full?)"
            ) from exc
        self._packer = msgpack.Packer(use_bin_type=True)
        self.archived = False  # an archive is attached (:meth:`attach_archive`)
        # Written to the log, not yet in the index: records in log order, in slices of about
        # ``slice_records`` (full ones waiting, then the one being filled), and what the write checks need.
        self._slices: deque[_Batch] = deque()
        self._pending = _Batch()
        self._npending = 0
        self._since_checkpoint = 0
        self._written = 0  # records written since the last index_step (its pieces keep pace with them)
        self._ckpt: _Checkpointer | None = None
        # The index transaction :meth:`index_step` runs in pieces: its slice and the statements left.
        self._txn: tuple[_Batch, deque[tuple[str, str, int, list[Any]]]] | None = None
        self._pending_vids: set[str] = set()
        self._pending_keys: set[tuple[str, str]] = set()
        self.indexed = 0  # index transactions so far (status, tests)
        self.seen_reads = 0  # "already journaled?" checks the filter could not answer (tests, status)
        self._fd = -1
        # The orders the index holds, as a filter (the "already journaled?" check without a read):
        # complete once every row up to the highest rowid after the log's replay is taken (``_warm``,
        # a chunk here and one per :meth:`index`); orders written from then on are added by their write.
        self._seen = SeenFilter(seen_bytes)
        self._warm_rows = warm_rows
        self._warm_from = self._warm_upto = 0
        with _mapped("open the log", self.log_path):
            self._open_log()
        self._last_seq: dict[str, int] = self.last_seqs()
        with _mapped("read", self.path):
            self._warm_upto = int(self.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM orders").fetchone()[0])
        self._warm()
        self._ckpt = _Checkpointer(path, synchronous)

    def close(self) -> None:
        """Index what is pending, then close (a clean stop leaves the log fully indexed)."""
        try:
            if self._fd >= 0:
                self.index()
        finally:
            if self._ckpt is not None:
                self._ckpt.close()
                self._ckpt = None
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self.db.close()

    # ------------------------------------------------------------------ the log

    def _open_log(self) -> None:
        """Find where the index stands in the log, replay the frames after it into the index, cut a
        torn last frame off, and open the log for appending."""
        row = self.db.execute("SELECT value FROM meta WHERE key='log'").fetchone()
        exists = self.log_path.exists()
        if row is None:  # a new journal (or one written before the log): its log starts now
            if exists and self.log_path.stat().st_size > _HEADER:
                raise JournalError(
                    f"journal {self.path}: the log {self.log_path} does not belong to it (the journal was"
                    " replaced and its log left behind?); move the log away or put its journal back"
                )
            gen, offset = 0, _HEADER
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('log', ?)", (f"{gen} {offset}",))
        else:
            gen_s, off_s = str(row[0]).split()
            gen, offset = int(gen_s), int(off_s)
        fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT, 0o600)
        opened = False
        try:
            with open(fd, "rb", closefd=False) as f:
                head = f.read(_HEADER)
                file_gen: int | None = None
                if len(head) == _HEADER and head.startswith(_MAGIC):
                    file_gen = int.from_bytes(head[len(_MAGIC) :], "little")
                elif not _MAGIC.startswith(head[: len(_MAGIC)]):
                    raise JournalError(f"journal {self.path}: {self.log_path} is not a journal log")
                # (else: empty, or a header torn by a crash while the log started over: nothing in it)
                if row is None:
                    file_gen = None  # at most a header: nothing to take
                elif file_gen is not None and file_gen > gen:
                    raise JournalError(
                        f"journal {self.path}: the log {self.log_path} is newer than the journal (log"
                        f" {file_gen}, journal at {gen}): it belongs to another journal"
                    )
                tail = b""
                if file_gen == gen:
                    f.seek(offset)
                    tail = f.read()
            if file_gen != gen:  # no log, a torn header, or an older log the index took before a rotation
                self._reset_log(fd, gen)
                offset = _HEADER
            records, good = _parse_frames(tail)
            if good < len(tail):  # a torn last write: it never returned, so nothing of it was sent
                os.ftruncate(fd, offset + good)
            opened = True
        finally:
            if not opened:
                os.close(fd)
        self._fd = fd
        self._gen = gen
        self._offset = offset + good  # where the next frame goes
        for frame_records in records:  # one batch: its transaction takes the whole replay or nothing
            self._pending.stage(frame_records)
        self._pending.end = self._offset
        self._npending = self._pending.n
        if self._pending.n:
            self.index()

    @staticmethod
    def _reset_log(fd: int, gen: int) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, _MAGIC + gen.to_bytes(8, "little"), 0)

    def _append(self, records: list[tuple[Any, ...]]) -> None:
        """The persistence point: one frame, one write (and an fdatasync with ``synchronous = full``).
        The frame's header and payload go out together with ``pwritev``: no copy to join them."""
        payload = self._packer.pack(records)
        head = _FRAME.pack(len(payload), zlib.crc32(payload))
        size = len(head) + len(payload)
        fd = self._fd
        if fd < 0:
            raise JournalError(f"journal {self.path}: write failed: the journal is closed")
        try:
            n = os.pwritev(fd, (head, payload), self._offset)
            if n < size:  # a short write (a full disk, a signal): write the rest, or fail
                rest = (head + payload)[n:]
                done = 0
                while done < len(rest):
                    done += os.pwrite(fd, rest[done:], self._offset + n + done)
            if self._fsync:
                os.fdatasync(fd)
        except OSError as exc:
            try:  # nothing of this write may stay: the next one would follow garbage
                os.ftruncate(fd, self._offset)
            except OSError:
                os.close(fd)
                self._fd = -1
            raise JournalError(f"journal {self.path}: write to {self.log_path} failed: {exc}") from exc
        self._offset += size
        batch = self._pending
        batch.stage(records)
        batch.end = self._offset
        self._npending += len(records)
        self._written += len(records)
        if batch.n >= self.slice_records:  # a slice ends at a frame's end: its offset is the index's
            self._slices.append(batch)
            self._pending = _Batch()

    def due(self) -> bool:
        """A full slice is pending: the caller should :meth:`index_step` (once its sends are done)."""
        return bool(self._slices)

    @property
    def log_number(self) -> int:
        """The log's number (it grows by one each time the log starts over)."""
        return self._gen

    @property
    def pending(self) -> int:
        """Records written to the log and not yet in the index."""
        return self._npending

    def index_step(self) -> None:
        """One piece of indexing, for the order path between its batches: the index transaction of
        the oldest full slice is opened, goes on by statements of at most ``PIECE_ROWS`` rows (tens
        of µs each; one per ``PIECE_ROWS`` records written since the last step, so that the index
        keeps pace with the writes), or commits. An order arriving meanwhile waits for a piece,
        not for a whole slice (1-2 ms for 512 records). The order path never touches the index
        between two pieces (its writes go to the log; "already journaled?" reads see the open
        transaction's rows), and every other use of the index finishes the transaction first
        (:meth:`index`). When ``BEHIND_SLICES`` or more full slices wait, the transaction is
        finished and the oldest slices taken whole (throughput before tails)."""
        written, self._written = self._written, 0
        if self._txn is None:
            if not self._slices:
                return
            if self._ckpt is not None and self._ckpt.busy and len(self._slices) < BEHIND_SLICES:
                # A write transaction open while SQLite's checkpoint runs keeps the WAL from starting
                # over at the next one (it grew for as long as orders flowed): the slice waits for it.
                return
            self._open(self._slices[0])
            written = 0  # (what filled the slice is the slice)
        self._advance(max(1, -(-written // PIECE_ROWS)))  # as many pieces as rows written meanwhile
        if len(self._slices) >= BEHIND_SLICES:
            self._finish()
            while len(self._slices) >= BEHIND_SLICES:
                self._take(self._slices[0])
        if self._txn is None:
            self._warm()
            self._maybe_rotate()

    def _statements(self, batch: _Batch) -> list[tuple[str, str, int, list[Any]]]:
        """The index's statements for ``batch``: (head, tail, width, flat values) per table."""
        return [
            (_INSERT_ORDER_STATE_HEAD, "", 13, list(chain.from_iterable(batch.orders.values()))),
            ("INSERT INTO reports (strategy_id, seq, venue_order_id, body) VALUES ", "", 4, batch.reports),
            ("UPDATE orders SET open=v.column1, last_seq=v.column2 FROM (VALUES ",
             ") AS v WHERE orders.venue_order_id=v.column3", 3, list(chain.from_iterable(batch.states.values()))),
            ("INSERT OR IGNORE INTO fills VALUES ", "", 2, batch.fills),
        ]  # fmt: skip

    def _open(self, batch: _Batch) -> None:
        """Begin the index transaction of ``batch`` (the oldest full slice), to go on in pieces."""
        pieces: deque[tuple[str, str, int, list[Any]]] = deque()
        for head, tail, width, flat in self._statements(batch):
            per = PIECE_ROWS * width
            pieces.extend((head, tail, width, flat[i : i + per]) for i in range(0, len(flat), per))
        with _mapped("index", self.path):
            self.db.execute("BEGIN")
        self._txn = (batch, pieces)

    def _advance(self, n: int) -> None:
        """Run up to ``n`` pieces of the open index transaction, and commit it (with how far into the
        log the index then stands) after its last. A failure rolls it back: the slice stays pending
        and the next call starts it again."""
        assert self._txn is not None
        batch, pieces = self._txn
        db = self.db
        ok = False  # any failure (not only SQLite's: a value it cannot bind, an interrupt) rolls back:
        try:  # a piece popped but not run must never be left out of a later commit
            with _mapped("index", self.path):
                while pieces and n > 0:
                    head, tail, width, flat = pieces.popleft()
                    _many(db, head, tail, width, flat)
                    n -= 1
                if pieces:
                    ok = True
                    return
                db.execute("INSERT OR REPLACE INTO meta VALUES ('log', ?)", (f"{self._gen} {batch.end}",))
                db.execute("COMMIT")
            ok = True
        finally:
            if not ok:
                self._txn = None
                if db.in_transaction:
                    with _mapped("index (rollback)", self.path):
                        db.execute("ROLLBACK")
        self._txn = None
        self._slices.popleft()
        self._took(batch)

    def _finish(self) -> None:
        """Finish the open index transaction, if any (before anything else uses the index)."""
        if self._txn is not None:
            self._advance(len(self._txn[1]))

    def _take(self, batch: _Batch) -> None:
        """Apply one slice, the oldest, whole (it stays pending if that fails: the next call tries
        again)."""
        self._apply(batch, batch.end)
        if self._slices and self._slices[0] is batch:
            self._slices.popleft()
        self._took(batch)

    def _took(self, batch: _Batch) -> None:
        """``batch`` is in the index: its orders leave the exact sets only now."""
        self.indexed += 1
        self._npending -= batch.n
        vids, keys = self._pending_vids, self._pending_keys
        for vid, row in batch.orders.items():
            vids.discard(vid)
            keys.discard((row[1], row[2]))
        self._since_checkpoint += 1
        if self._since_checkpoint >= self.checkpoint_every and self._ckpt is not None:
            self._since_checkpoint = 0
            self._ckpt.ask()

    def index(self) -> None:
        """Take every pending record into the SQLite index; then start the log over if it is fully
        indexed and large. Every read does this first, so reads see every write. The open
        transaction of :meth:`index_step` is finished first, then each full slice is one transaction
        (that also records how far into the log the index stands), then the slice being filled.

        On the owner's thread, by design: an index built by a thread of its own (tried: a second
        connection, one batch in flight) made the server slower, because every ZeroMQ send and SQLite
        step releases the GIL and the two threads then queue for it (the report sends took twice as
        long, order throughput fell by a third). Only SQLite's checkpoints run in a thread
        (:class:`_Checkpointer`): they are C and I/O, and never on the order path."""
        self._finish()
        while self._slices:
            self._take(self._slices[0])
        if self._pending.n:
            batch = self._pending
            self._apply(batch, batch.end)
            self._pending = _Batch()
            self._took(batch)
        self._warm()
        self._maybe_rotate()

    def _apply(self, batch: _Batch, offset: int) -> None:
        """Take ``batch`` (the log up to ``offset``) into the index in one transaction, which also
        records how far into the log the index stands: each table's rows in one multi-row statement
        (a few statements per batch, not one per row)."""
        db = self.db
        with _mapped("index", self.path), db:
            db.execute("BEGIN")
            for head, tail, width, flat in self._statements(batch):
                _many(db, head, tail, width, flat)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('log', ?)", (f"{self._gen} {offset}",))

    def _maybe_rotate(self) -> None:
        """Start the log over under the next number once it is fully indexed and large (the index
        says so first: a crash in between leaves an old-numbered log the restart knows is taken).
        Before the log's records are dropped, the index is made durable (a checkpoint fsyncs SQLite's
        WAL and database), so that even an OS crash cannot lose records the log no longer holds."""
        if self._npending or self._offset < self.rotate_bytes:
            return
        with _mapped("start the log over", self.log_path), self._checkpoint_lock():
            # (SQLite's checkpoint thread is held off by the lock: this checkpoint never finds it busy)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('log', ?)", (f"{self._gen + 1} {_HEADER}",))
            if self._durable:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            self._gen += 1
            self._reset_log(self._fd, self._gen)
        self._offset = _HEADER

    @contextmanager
    def _checkpoint_lock(self) -> Iterator[None]:
        if self._ckpt is None:
            yield
        else:
            with self._ckpt.lock:
                yield

    # ------------------------------------------------------------------ writes

    def add_order(
        self,
        *,
        venue_order_id: str,
        strategy_id: str,
        client_order_id: str,
        symbol: str,
        side: str,
        order_type: str,
        price: float | None,
        quantity: float,
        created_ms: int,
        sent: bool,
    ) -> None:
        """Persist a new order before it is sent (``sent`` False: rejected locally, never sent)."""
        rec = OrderRecord(venue_order_id, strategy_id, client_order_id, symbol, side, order_type, price, quantity,
                          created_ms)  # fmt: skip
        self.add_records([(rec, sent)])

    def add_record(self, rec: OrderRecord, *, sent: bool) -> None:
        """:meth:`add_order` for a record."""
        self.add_records([(rec, sent)])

    def add_records(self, records: list[tuple[OrderRecord, bool]]) -> None:
        """Persist several (record, sent) in one write: all of them or, when one is refused (already
        journaled), none."""
        out: list[tuple[Any, ...]] = []
        vids: set[str] = set()
        keys: set[tuple[str, str]] = set()
        for r, sent in records:
            key = (r.strategy_id, r.client_order_id)
            if self._known(r.venue_order_id, key) or r.venue_order_id in vids or key in keys:
                raise JournalError(
                    f"journal {self.path}: write failed: order {r.venue_order_id} ({r.strategy_id},"
                    f" {r.client_order_id}) is already journaled"
                )
            vids.add(r.venue_order_id)
            keys.add(key)
            out.append((_ORDER, r.venue_order_id, r.strategy_id, r.client_order_id, r.symbol, r.side,
                        r.order_type, r.price, r.quantity, r.created_ms, int(sent), int(r.closing)))  # fmt: skip
        self._append(out)
        self._pending_vids |= vids
        self._pending_keys |= keys
        add = self._seen.add
        for vid in vids:
            add(vid)
        for key in keys:
            add(key)

    def _known(self, vid: str, key: tuple[str, str]) -> bool:
        """Whether the order is journaled: pending (exact sets) or in the index. The index is asked
        only when the filter cannot answer: it is not complete yet (the first seconds after opening a
        large journal) or it says "maybe" (a false positive, or a real duplicate)."""
        if vid in self._pending_vids or key in self._pending_keys:
            return True
        seen = self._seen
        if self.seen_complete and vid not in seen and key not in seen:
            return False
        self.seen_reads += 1
        with _mapped("read", self.path):
            return (
                self.db.execute(
                    "SELECT 1 FROM orders WHERE venue_order_id=? OR (strategy_id=? AND client_order_id=?)",
                    (vid, *key),
                ).fetchone()
                is not None
            )

    @property
    def seen_complete(self) -> bool:
        """The filter holds every order of the index (then a new order costs no read)."""
        return self._warm_from >= self._warm_upto

    def _warm(self) -> None:
        """Take the next ``warm_rows`` orders of the index (by rowid, up to the highest at open) into
        the filter; orders written after the open are added by their write."""
        if self._warm_from >= self._warm_upto:
            return
        with _mapped("read", self.path):
            rows = self.db.execute(
                "SELECT rowid, venue_order_id, strategy_id, client_order_id FROM orders"
                " WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
                (self._warm_from, self._warm_upto, self._warm_rows),
            ).fetchall()
        add = self._seen.add
        for _, vid, sid, coid in rows:
            add(vid)
            add((sid, coid))
        self._warm_from = int(rows[-1][0]) if len(rows) == self._warm_rows else self._warm_upto

    def add_reports(
        self,
        reports: Iterable[tuple[str, OrderReport | AccountEvent, bool]],
        trade_ids: Iterable[tuple[str, str]] = (),
    ) -> list[dict[str, Any]]:
        """Persist reports (venue_order_id, report, still open) and applied trade ids in one write;
        the reports' bodies as stored (:func:`seqtrade.wire.stored_report_to_body`), in order: the
        server publishes them (:func:`seqtrade.wire.encode_stored_report`) without building them again."""
        pack = self._packer.pack
        bodies: list[dict[str, Any]] = []
        rows: list[ReportRow] = []
        for vid, r, is_open in reports:
            body = stored_report_to_body(r)
            bodies.append(body)
            rows.append((r.strategy_id, r.seq, vid, pack(body), int(is_open)))
        self.add_report_rows(rows, trade_ids)
        return bodies

    def add_report_rows(self, rows: Iterable[ReportRow], trade_ids: Iterable[tuple[str, str]] = ()) -> None:
        """Persist report rows of any report type (:data:`ReportRow`) and applied trade ids in one
        write; a seq not above its strategy's last is refused and nothing is persisted."""
        last = self._last_seq
        seen: dict[str, int] = {}
        out: list[tuple[Any, ...]] = []
        for sid, seq, vid, body, is_open in rows:
            prev = seen.get(sid)
            if prev is None:
                prev = last.get(sid, 0)
            if seq <= prev:
                raise JournalError(
                    f"journal {self.path}: write failed: report {sid} seq {seq} is not after seq {prev}"
                )
            seen[sid] = seq
            out.append((_REPORT, sid, seq, vid, body, is_open))
        out.extend((_FILL, vid, tid) for vid, tid in trade_ids)
        if out:
            self._append(out)
            last.update(seen)

    def set_meta(self, key: str, value: str) -> None:
        if key == "log":
            raise ValueError("meta 'log' is the journal's own")
        self._finish()  # (not inside the index's open transaction: this write commits on its own)
        with _mapped("write", self.path):
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self._read(lambda db: db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone())
        return None if row is None else str(row[0])

    def _read(self, query: Callable[[sqlite3.Connection], _T]) -> _T:
        """Every read indexes what is pending first: reads see every write."""
        self.index()
        with _mapped("read", self.path):
            return query(self.db)

    # ------------------------------------------------------------------ reads

    def last_seqs(self) -> dict[str, int]:
        """Each strategy's last seq: O(strategies x log reports), never a scan of the reports (a skip
        scan over the primary key, then one MAX per strategy)."""
        return self._read(lambda db: dict(db.execute(_LAST_SEQS)))

    def order_keys(self) -> list[tuple[str, str]]:
        """Every (strategy_id, client_order_id) the journal knows (loaded once at start)."""
        sql = "SELECT strategy_id, client_order_id FROM orders"
        if self.archived:
            sql += " UNION SELECT strategy_id, client_order_id FROM arch.orders"
        rows = self._read(lambda db: db.execute(sql).fetchall())
        return [(str(a), str(b)) for a, b in rows]

    def reports_after(self, strategy_id: str, seq: int, limit: int) -> list[OrderReport | AccountEvent]:
        """The strategy's reports after ``seq``, in order (from the archive too, when one is attached)."""
        if self.archived:
            sql = _ARCHIVED_REPORTS_AFTER
            args: tuple[Any, ...] = (strategy_id, seq, strategy_id, seq, limit)
        else:
            sql = "SELECT seq, body FROM reports WHERE strategy_id=? AND seq>? ORDER BY seq LIMIT ?"
            args = (strategy_id, seq, limit)
        rows = self._read(lambda db: db.execute(sql, args).fetchall())
        return [stored_report_from_body(msgpack.unpackb(b, raw=False)) for (_, b) in rows]

    def _report(self, strategy_id: str, seq: int) -> OrderReport | None:
        row = self.db.execute(
            "SELECT body FROM reports WHERE strategy_id=? AND seq=?", (strategy_id, seq)
        ).fetchone()
        if row is None and self.archived:
            row = self.db.execute(
                "SELECT body FROM arch.reports WHERE strategy_id=? AND seq=?", (strategy_id, seq)
            ).fetchone()
        return None if row is None else report_from_body(msgpack.unpackb(row[0], raw=False))

    def _order_from_row(self, row: Any) -> OrderRecord:
        """The order as the server holds it: its terms, brought up to date by its last report."""
        (vid, sid, coid, symbol, side, ot, price, qty, created, sent, _open, last_seq, closing) = row
        tids = {t for (t,) in self.db.execute("SELECT trade_id FROM fills WHERE venue_order_id=?", (vid,))}
        if self.archived:
            tids.update(
                t
                for (t,) in self.db.execute("SELECT trade_id FROM arch.fills WHERE venue_order_id=?", (vid,))
            )
        rec = OrderRecord(vid, sid, coid, symbol, side, ot, price, qty, created, trade_ids=tids,
                          closing=bool(closing))  # fmt: skip
        r = self._report(sid, last_seq) if last_seq else None
        if r is not None:
            rec.status = r.status
            rec.exchange_order_id = r.exchange_order_id
            rec.filled_quantity = r.filled_quantity
            rec.avg_price = r.filled_price
            rec.fee = r.fee
            rec.last_report = r
            if r.price:
                rec.price = r.price
            rec.quantity = r.quantity or rec.quantity
        elif not sent:
            rec.status = OrderStatus.REJECTED
        return rec

    _COLS = (
        "venue_order_id, strategy_id, client_order_id, symbol, side, order_type, price, quantity,"
        " created_ms, sent, open, last_seq, closing"
    )

    def find_order(self, strategy_id: str, client_order_id: str) -> OrderRecord | None:
        def query(db: sqlite3.Connection) -> OrderRecord | None:
            row = db.execute(
                f"SELECT {self._COLS} FROM orders WHERE strategy_id=? AND client_order_id=?",
                (strategy_id, client_order_id),
            ).fetchone()
            if row is None and self.archived:  # an audit of an old id: the archive's unique index
                row = db.execute(
                    f"SELECT {self._COLS} FROM arch.orders WHERE strategy_id=? AND client_order_id=?",
                    (strategy_id, client_order_id),
                ).fetchone()
            return None if row is None else self._order_from_row(row)

        return self._read(query)

    def open_orders(self) -> list[OrderRecord]:
        """Orders the journal holds as open or in flight (for restart recovery)."""
        rows = self._read(lambda db: db.execute(f"SELECT {self._COLS} FROM orders WHERE open=1").fetchall())
        return self._read(lambda _: [self._order_from_row(r) for r in rows])

    # ------------------------------------------------------------------ restart from a snapshot (reads)

    def identity(self) -> str:
        """A random id given to this journal file when first asked (a snapshot names the journal it
        belongs to, so that one of another journal is never applied)."""
        jid = self.get_meta("journal_id")
        if jid is None:
            jid = secrets.token_hex(16)
            self.set_meta("journal_id", jid)
        return jid

    def max_order_rowid(self) -> int:
        row = self._read(lambda db: db.execute("SELECT MAX(rowid) FROM orders").fetchone())
        return int(row[0] or 0)

    def keys_after(self, rowid: int) -> list[tuple[str, str]]:
        """The (strategy_id, client_order_id) of the orders journaled after ``rowid`` (a snapshot's)."""
        rows = self._read(
            lambda db: db.execute(
                "SELECT strategy_id, client_order_id FROM orders WHERE rowid > ?", (rowid,)
            ).fetchall()
        )
        return [(str(a), str(b)) for a, b in rows]

    # ------------------------------------------------------------------ the archive (journal maintenance)
    #
    # Closed orders older than ``journal.archive_after_days`` move, with their fills, to another SQLite
    # file attached as ``arch`` (same tables), and so do each strategy's reports older than that (by
    # their timestamp), except its newest one. The reads above look there too, so replays from seq 1
    # and lookups of old client_order_ids still answer. A move copies committed rows (INSERT OR IGNORE)
    # in one transaction on the archive, then deletes them in another on the journal: a crash between
    # the two leaves identical rows in both, which the reads take once and the next pass deletes.
    # Never moved: open orders, the order with the highest rowid (the snapshot's position in the orders
    # table), each strategy's newest report (its last seq).

    def attach_archive(self, path: Path) -> None:
        self.index()
        with _mapped("attach the archive", path):
            self.db.execute("ATTACH DATABASE ? AS arch", (str(path),))
            self.db.execute("PRAGMA arch.journal_mode=WAL")
            self.db.executescript(_SCHEMA.replace("IF NOT EXISTS ", "IF NOT EXISTS arch."))
            _add_closing(self.db, "arch.")
        jid = self.identity()
        row = self._read(
            lambda db: db.execute("SELECT value FROM arch.meta WHERE key='journal_id'").fetchone()
        )
        if row is None:
            with _mapped("write the archive", path):
                self.db.execute("INSERT INTO arch.meta VALUES ('journal_id', ?)", (jid,))
        elif row[0] != jid:  # the journal was replaced: its seqs start again, the archive's would mix in
            self.db.execute("DETACH DATABASE arch")
            raise JournalError(
                f"the archive {path} belongs to another journal than {self.path}; move it away (or put its"
                " journal back) and start again"
            )
        if self._ckpt is not None:  # the connection's automatic checkpoints are off for the archive too
            self._ckpt.paths.append(path)
        self.archived = True

    def archive_reports(self, strategy_id: str, before_ms: int, limit: int) -> int:
        """Move up to ``limit`` of the strategy's oldest reports timestamped before ``before_ms``
        (never its newest); how many moved."""

        def horizon(db: sqlite3.Connection) -> int:
            lo, hi = db.execute(
                "SELECT MIN(seq), MAX(seq) FROM reports WHERE strategy_id=?", (strategy_id,)
            ).fetchone()
            if lo is None:
                return 0
            top = min(hi - 1, lo + limit - 1)
            best = lo - 1
            while lo <= top:  # the last seq whose report is older than before_ms (timestamps rise with seq)
                mid = (lo + top) // 2
                row = db.execute(
                    "SELECT body FROM reports WHERE strategy_id=? AND seq>=? ORDER BY seq LIMIT 1",
                    (strategy_id, mid),
                ).fetchone()
                ts = int(msgpack.unpackb(row[0], raw=False).get("timestamp", 0))
                if ts < before_ms:
                    best, lo = mid, mid + 1
                else:
                    top = mid - 1
            return int(best)

        upto = self._read(horizon)
        if not upto:
            return 0
        args = (strategy_id, upto)
        with _mapped("archive", self.path), self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT OR IGNORE INTO arch.reports SELECT * FROM reports WHERE strategy_id=? AND seq<=?",
                args,
            )
        with _mapped("archive", self.path), self.db:
            self.db.execute("BEGIN")
            n = self.db.execute("DELETE FROM reports WHERE strategy_id=? AND seq<=?", args).rowcount
        return int(n)

    def archive_orders(self, before_ms: int, limit: int) -> int:
        """Move up to ``limit`` closed orders created before ``before_ms`` (and their fills); how many."""
        rows = self._read(
            lambda db: db.execute(
                "SELECT rowid, venue_order_id FROM orders WHERE open=0 AND created_ms<?"
                " AND rowid < (SELECT MAX(rowid) FROM orders) ORDER BY rowid LIMIT ?",
                (before_ms, limit),
            ).fetchall()
        )
        if not rows:
            return 0
        rowids = [(r,) for r, _ in rows]
        vids = [(v,) for _, v in rows]
        with _mapped("archive", self.path), self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR IGNORE INTO arch.orders SELECT * FROM orders WHERE rowid=?", rowids
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO arch.fills SELECT * FROM fills WHERE venue_order_id=?", vids
            )
        with _mapped("archive", self.path), self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM fills WHERE venue_order_id=?", vids)
            self.db.executemany("DELETE FROM orders WHERE rowid=?", rowids)
        return len(rows)


def _parse_frames(data: bytes) -> tuple[list[list[tuple[Any, ...]]], int]:
    """The whole frames at the start of ``data`` (each a list of records) and where they end: the
    first frame that is short or fails its CRC ends the log (a write the process died in)."""
    out: list[list[tuple[Any, ...]]] = []
    pos = 0
    size = _FRAME.size
    while pos + size <= len(data):
        n, crc = _FRAME.unpack_from(data, pos)
        payload = data[pos + size : pos + size + n]
        if len(payload) < n or zlib.crc32(payload) != crc:
            break
        out.append([tuple(r) for r in msgpack.unpackb(payload, raw=False, use_list=True)])
        pos += size + n
    return out, pos
