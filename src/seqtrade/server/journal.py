"""The journal: one SQLite file (WAL) that makes the protocol's promises survive restarts.

What it holds: every accepted order (with the id the venue knows it by), every report with its
per-strategy seq, and the trade ids already applied. The rule is *persist, then send*: an order row
is committed before the order goes to the venue, and a report is committed before it is published.

Durability (``journal.synchronous``): ``normal`` (default) survives the server process dying at any
point (kill -9), since WAL commits reach the OS before the call returns; an OS crash or power loss
can lose the last commits. ``full`` fsyncs every commit and survives those too, at the cost of an
fsync per commit (see docs/operations.md for the measured cost). ``off`` is for benchmarks only.

Calls are synchronous and short; they run on the server's Trio thread so that their order is the
order of events (no locks, no threads).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgpack

from ..errors import JournalError
from ..models import AccountEvent, OrderReport, OrderStatus
from ..wire import report_from_body, stored_report_from_body, stored_report_to_body
from .orders import OrderRecord

__all__ = ["Journal"]

_T = TypeVar("_T")

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


_INSERT_ORDER = (
    "INSERT INTO orders (venue_order_id, strategy_id, client_order_id, symbol, side, order_type,"
    " price, quantity, created_ms, sent, open) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


@contextmanager
def _mapped(what: str, path: Path) -> Iterator[None]:
    """sqlite3 errors enter here and leave as :class:`JournalError`, saying what failed and where."""
    try:
        yield
    except sqlite3.Error as exc:
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


class Journal:
    """SQLite journal. Not thread-safe: one owner (the server's Trio thread)."""

    def __init__(self, path: Path, *, synchronous: str = "normal") -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise JournalError(
                f"cannot open journal {path}: {exc} (is its directory writable, the disk not full?)"
            ) from exc
        self._packer = msgpack.Packer(use_bin_type=True)
        self.archived = False  # an archive is attached (:meth:`attach_archive`)

    def close(self) -> None:
        self.db.close()

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
        """Commit a new order before it is sent (``sent`` False: rejected locally, never sent)."""
        with _mapped("write", self.path):
            self.db.execute(
                _INSERT_ORDER,
                (
                    venue_order_id, strategy_id, client_order_id, symbol, side, order_type,
                    price, quantity, created_ms, int(sent), int(sent),
                ),
            )  # fmt: skip

    def add_record(self, rec: OrderRecord, *, sent: bool) -> None:
        """:meth:`add_order` for a record."""
        self.add_order(
            venue_order_id=rec.venue_order_id, strategy_id=rec.strategy_id, client_order_id=rec.client_order_id,
            symbol=rec.symbol, side=rec.side, order_type=rec.order_type, price=rec.price, quantity=rec.quantity,
            created_ms=rec.created_ms, sent=sent,
        )  # fmt: skip

    def add_records(self, records: list[tuple[OrderRecord, bool]]) -> None:
        """:meth:`add_record` for several (record, sent) in one transaction (one commit for a batch)."""
        if len(records) == 1:
            rec, sent = records[0]
            self.add_record(rec, sent=sent)
            return
        rows = [
            (r.venue_order_id, r.strategy_id, r.client_order_id, r.symbol, r.side, r.order_type, r.price,
             r.quantity, r.created_ms, int(sent), int(sent))
            for r, sent in records
        ]  # fmt: skip
        with _mapped("write", self.path), self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                _INSERT_ORDER,
                rows,
            )

    def add_reports(
        self,
        reports: Iterable[tuple[str, OrderReport | AccountEvent, bool]],
        trade_ids: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Commit reports (venue_order_id, report, still open) and applied trade ids in one transaction."""
        pack = self._packer.pack
        rows = []
        states = []
        for vid, r, is_open in reports:
            rows.append((r.strategy_id, r.seq, vid, pack(stored_report_to_body(r))))
            if vid:
                states.append((int(is_open), r.seq, vid))
        with _mapped("write", self.path), self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO reports (strategy_id, seq, venue_order_id, body) VALUES (?,?,?,?)", rows
            )
            self.db.executemany("UPDATE orders SET open=?, last_seq=? WHERE venue_order_id=?", states)
            self.db.executemany("INSERT OR IGNORE INTO fills VALUES (?,?)", list(trade_ids))

    def set_meta(self, key: str, value: str) -> None:
        with _mapped("write", self.path):
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self._read(lambda db: db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone())
        return None if row is None else str(row[0])

    def _read(self, query: Callable[[sqlite3.Connection], _T]) -> _T:
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
        (vid, sid, coid, symbol, side, ot, price, qty, created, sent, _open, last_seq) = row
        tids = {t for (t,) in self.db.execute("SELECT trade_id FROM fills WHERE venue_order_id=?", (vid,))}
        if self.archived:
            tids.update(
                t
                for (t,) in self.db.execute("SELECT trade_id FROM arch.fills WHERE venue_order_id=?", (vid,))
            )
        rec = OrderRecord(vid, sid, coid, symbol, side, ot, price, qty, created, trade_ids=tids)
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
        " created_ms, sent, open, last_seq"
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
        with _mapped("attach the archive", path):
            self.db.execute("ATTACH DATABASE ? AS arch", (str(path),))
            self.db.execute("PRAGMA arch.journal_mode=WAL")
            self.db.executescript(_SCHEMA.replace("IF NOT EXISTS ", "IF NOT EXISTS arch."))
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
