"""The paper exchange's account on disk: one SQLite file (WAL) that survives the server being killed.

A real exchange keeps its orders when the gateway dies; the paper exchange must too, or restart
recovery and the "never sent twice" promise cannot be tested against it. :class:`PaperStore` holds
every order the paper venue has seen (its full state and how many times it was submitted), the net
position per symbol, the quote cash per currency and the id counters.

The paper venue calls :meth:`PaperStore.save` with the events a request or a market update caused,
*before* it delivers them: what a strategy is told has happened is on disk. One small transaction per
call (``synchronous = NORMAL``: a WAL commit reaches the OS before the call returns, so a kill -9 of the
process loses nothing; an OS crash may lose the last commits, which is fine for a simulation).

Not thread-safe: one owner (the server's Trio thread), like the journal.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from ..errors import JournalError
from ..models import OrderStatus, OrderType, Side
from .base import OrderEvent
from .matching import MatchingEngine, PaperOrder, quote_currency

__all__ = ["PaperStore"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    venue_order_id TEXT PRIMARY KEY,
    exchange_order_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    order_type TEXT NOT NULL,
    price REAL,
    quantity REAL NOT NULL,
    lots INTEGER NOT NULL,
    status TEXT NOT NULL,
    filled_lots INTEGER NOT NULL,
    filled REAL NOT NULL,
    notional REAL NOT NULL,
    fee REAL NOT NULL,
    error_msg TEXT NOT NULL,
    ts INTEGER NOT NULL,
    submits INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS orders_open ON orders (status) WHERE status IN ('accepted', 'partially_filled');
CREATE TABLE IF NOT EXISTS positions (symbol TEXT PRIMARY KEY, lots INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cash (currency TEXT PRIMARY KEY, amount REAL NOT NULL);
"""

_UPSERT = (
    "INSERT INTO orders (venue_order_id, exchange_order_id, symbol, side, order_type, price, quantity, lots,"
    " status, filled_lots, filled, notional, fee, error_msg, ts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (venue_order_id) DO UPDATE SET price=excluded.price, quantity=excluded.quantity,"
    " lots=excluded.lots, status=excluded.status, filled_lots=excluded.filled_lots, filled=excluded.filled,"
    " notional=excluded.notional, fee=excluded.fee, error_msg=excluded.error_msg, ts=excluded.ts"
)
_COLS = (
    "venue_order_id, exchange_order_id, symbol, side, order_type, price, quantity, lots, status,"
    " filled_lots, filled, notional, fee, error_msg, ts"
)


def _row(o: PaperOrder) -> tuple[object, ...]:
    return (
        o.venue_order_id, o.exchange_order_id, o.symbol, str(o.side), str(o.order_type), o.price, o.quantity,
        o.lots, str(o.status), o.filled_lots, o.filled, o.notional, o.fee, o.error_msg, o.ts,
    )  # fmt: skip


def _order(row: tuple[object, ...]) -> PaperOrder:
    (vid, xid, symbol, side, ot, price, qty, lots, status, filled_lots, filled, notional, fee, err, ts) = row
    o = PaperOrder(
        str(vid), str(xid), str(symbol), Side(str(side)), OrderType(str(ot)),
        None if price is None else float(price),  # type: ignore[arg-type]
        float(qty), int(lots), OrderStatus(str(status)),  # type: ignore[arg-type]
    )  # fmt: skip
    o.filled_lots = int(filled_lots)  # type: ignore[call-overload]
    o.filled = float(filled)  # type: ignore[arg-type]
    o.notional = float(notional)  # type: ignore[arg-type]
    o.fee = float(fee)  # type: ignore[arg-type]
    o.error_msg = str(err)
    o.ts = int(ts)  # type: ignore[call-overload]
    return o


class PaperStore:
    """The paper account's SQLite file. :meth:`open` loads it into an engine; :meth:`save` keeps it."""

    def __init__(self, path: Path, engine: MatchingEngine) -> None:
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the paper account {path}: {exc}") from exc
        self.path = path
        self.engine = engine

    @classmethod
    def open(cls, path: Path, engine: MatchingEngine, *, max_closed: int = 100_000) -> PaperStore:
        """Open (or create) the account at ``path`` and load it into ``engine``: every open order and
        the newest ``max_closed`` closed ones, positions, cash and the id counters."""
        store = cls(path, engine)
        db = store.db
        meta = dict(db.execute("SELECT key, value FROM meta"))
        open_rows = db.execute(
            f"SELECT {_COLS} FROM orders WHERE status IN ('accepted', 'partially_filled') ORDER BY rowid"
        ).fetchall()
        closed_rows = db.execute(
            f"SELECT {_COLS} FROM orders WHERE status NOT IN ('accepted', 'partially_filled')"
            " ORDER BY rowid DESC LIMIT ?",
            (max_closed,),
        ).fetchall()
        orders = [_order(r) for r in reversed(closed_rows)] + [_order(r) for r in open_rows]
        engine.restore(
            orders,
            dict(db.execute("SELECT symbol, lots FROM positions")),
            dict(db.execute("SELECT currency, amount FROM cash")),
            int(meta.get("next_order_id", 1)),
            int(meta.get("next_trade_id", 1)),
        )
        if orders:
            log.info("paper account %s: %d open orders, %d recent closed ones loaded", path, len(open_rows), len(closed_rows))
        return store

    def close(self) -> None:
        self.db.close()

    def save(self, events: Iterable[OrderEvent], submitted: str = "") -> None:
        """Commit the current state of every order ``events`` name, and of the account, in one
        transaction. ``submitted``: a venue_order_id that was just submitted (its count goes up by one)."""
        engine = self.engine
        rows = []
        symbols = set()
        seen = set()
        for ev in events:
            vid = ev.venue_order_id
            if vid in seen:
                continue
            seen.add(vid)
            o = engine.order(vid)
            if o is not None:
                rows.append(_row(o))
                symbols.add(o.symbol)
        if not rows and not submitted:
            return
        lots, cash, next_oid, next_tid = engine.account_state()
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany(_UPSERT, rows)
                if submitted:
                    self.db.execute("UPDATE orders SET submits = submits + 1 WHERE venue_order_id=?", (submitted,))
                for sym in symbols:
                    if sym in lots:
                        self.db.execute("INSERT OR REPLACE INTO positions VALUES (?,?)", (sym, lots[sym]))
                    q = quote_currency(sym)
                    if q in cash:
                        self.db.execute("INSERT OR REPLACE INTO cash VALUES (?,?)", (q, cash[q]))
                self.db.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?,?)",
                    (("next_order_id", next_oid), ("next_trade_id", next_tid)),
                )
        except sqlite3.Error as exc:
            raise JournalError(f"paper account write failed: {exc}") from exc
