"""The paper exchange's account on disk: one SQLite file (WAL) that survives the server being killed.

A real exchange keeps its orders when the gateway dies; the paper exchange must too, or restart
recovery and the "never sent twice" promise cannot be tested against it. :class:`PaperStore` holds
every order the paper venue has seen (its full state and how many times it was submitted), the net
position per symbol, the balance (total) per currency and the id counters; what open orders
freeze is recomputed from them on load. For swaps also each position's average price, margin, PnL,
fees and funding, the last funding time settled (from the account's first start on, so that a restart
settles every funding time since: :mod:`seqtrade.venues.paper_funding`), and every funding or liquidation
(:class:`~seqtrade.venues.paper_derivs.AccountChange`) with whether the server has journaled it
(``delivered``, marked when the venue's hand-over returned, which is once the server's journal holds
it): every one not marked so is handed over again at the next start (the server applies an event id
once), so none is lost and none counts twice.

The paper venue calls :meth:`PaperStore.save` with the events a request or a market update caused,
*before* it delivers them: what a strategy is told has happened is on disk. One small transaction per
call, ``synchronous = OFF``: a WAL commit reaches the OS before the call returns, so a kill -9 of the
process loses nothing, and no commit or checkpoint ever waits for an fsync; an OS crash may lose the
newest state, which is acceptable for a simulation. Cost: about 30-40 µs per ``place_order`` on the
development VM (6 µs in memory); ``venue.paper.state_path = ""`` keeps the account in memory.

Not thread-safe: one owner (the server's Trio thread), like the journal.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from ..errors import JournalError
from ..models import OrderStatus, OrderType, Side
from .base import OrderEvent
from .matching import MatchingEngine, PaperOrder
from .paper_derivs import AccountChange, DerivPosition

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
CREATE TABLE IF NOT EXISTS balances (currency TEXT PRIMARY KEY, total REAL NOT NULL);
CREATE TABLE IF NOT EXISTS deriv_positions (
    symbol TEXT PRIMARY KEY, quantity REAL NOT NULL, avg_price REAL NOT NULL, margin REAL NOT NULL,
    realized_pnl REAL NOT NULL, fees REAL NOT NULL, funding REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS account_changes (
    event_id TEXT PRIMARY KEY, body TEXT NOT NULL, delivered INTEGER NOT NULL DEFAULT 0
);
"""

_UPSERT = (
    "INSERT INTO orders (venue_order_id, exchange_order_id, symbol, side, order_type, price, quantity, lots,"
    " status, filled_lots, filled, notional, fee, error_msg, ts, submits) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (venue_order_id) DO UPDATE SET submits=submits+excluded.submits, price=excluded.price, quantity=excluded.quantity,"
    " lots=excluded.lots, status=excluded.status, filled_lots=excluded.filled_lots, filled=excluded.filled,"
    " notional=excluded.notional, fee=excluded.fee, error_msg=excluded.error_msg, ts=excluded.ts"
)
_COLS = (
    "venue_order_id, exchange_order_id, symbol, side, order_type, price, quantity, lots, status,"
    " filled_lots, filled, notional, fee, error_msg, ts"
)


def _row(o: PaperOrder, submits: int) -> tuple[object, ...]:
    return (
        o.venue_order_id, o.exchange_order_id, o.symbol, o.side.value, o.order_type.value, o.price, o.quantity,
        o.lots, o.status.value, o.filled_lots, o.filled, o.notional, o.fee, o.error_msg, o.ts, submits,
    )  # fmt: skip


def _order(row: tuple[object, ...]) -> PaperOrder:
    (vid, xid, symbol, side, ot, price, qty, lots, status, filled_lots, filled, notional, fee, err, ts) = row
    o = PaperOrder(
        str(vid), str(xid), str(symbol), Side(str(side)), OrderType(str(ot)),
        None if price is None else float(price),  # type: ignore[arg-type]
        float(qty), int(lots), OrderStatus(str(status)),  # type: ignore[arg-type,call-overload]
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
            # OFF: commits are written to the OS at once (a kill -9 loses nothing) but never fsynced, so
            # no commit or checkpoint waits for the disk; an OS crash may lose the newest state.
            self.db.execute("PRAGMA synchronous=OFF")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the paper account {path}: {exc}") from exc
        self.path = path
        self.engine = engine
        self._saved: tuple[dict[str, int], dict[str, float], int, int] = ({}, {}, 0, 0)
        self._saved_derivs: dict[str, tuple[float, float, float, float, float, float]] = {}
        self.funding_ms = 0  # the last funding time settled (0: none yet)

    @classmethod
    def open(cls, path: Path, engine: MatchingEngine, *, max_closed: int = 10_000) -> PaperStore:
        """Open (or create) the account at ``path`` and load it into ``engine``: every open order and
        the newest ``max_closed`` closed ones, positions, cash and the id counters."""
        store = cls(path, engine)
        db = store.db
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
            open_rows = db.execute(
                f"SELECT {_COLS} FROM orders WHERE status IN ('accepted', 'partially_filled') ORDER BY rowid"
            ).fetchall()
            closed_rows = db.execute(
                f"SELECT {_COLS} FROM orders WHERE status NOT IN ('accepted', 'partially_filled')"
                " ORDER BY rowid DESC LIMIT ?",
                (max_closed,),
            ).fetchall()
            positions = dict(db.execute("SELECT symbol, lots FROM positions"))
            balances = dict(db.execute("SELECT currency, total FROM balances"))
            derivs = {
                str(r[0]): DerivPosition(str(r[0]), *(float(x) for x in r[1:]))
                for r in db.execute(
                    "SELECT symbol, quantity, avg_price, margin, realized_pnl, fees, funding FROM deriv_positions"
                )
            }
        except sqlite3.Error as exc:
            db.close()
            raise JournalError(f"cannot read the paper account {path}: {exc}") from exc
        orders = [_order(r) for r in reversed(closed_rows)] + [_order(r) for r in open_rows]
        engine.restore(
            orders,
            positions,
            balances if "balances" in meta else None,  # None: a new account (or one from before balances)
            int(meta.get("next_order_id", 1)),
            int(meta.get("next_trade_id", 1)),
            derivs,
        )
        store.funding_ms = int(meta.get("funding_ms", 0))
        store._saved_derivs = dict(engine.deriv_state())
        if "balances" not in meta:
            store._save_balances()
        store._saved = engine.account_state()
        if orders:
            log.info(
                "paper account %s: %d open orders, %d recent closed ones loaded",
                path,
                len(open_rows),
                len(closed_rows),
            )
        return store

    def _save_balances(self) -> None:
        """Write every balance (a new account's starting ones) and mark the account as having them."""
        _, totals, _, _ = self.engine.account_state()
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT OR REPLACE INTO balances VALUES (?,?)", list(totals.items()))
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('balances', 1)")
        except sqlite3.Error as exc:
            raise JournalError(f"paper account write failed: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    def pending(self) -> list[AccountChange]:
        """The account changes not known to be journaled by the server, oldest first."""
        try:
            rows = self.db.execute(
                "SELECT body FROM account_changes WHERE delivered = 0 ORDER BY rowid"
            ).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the paper account {self.path}: {exc}") from exc
        return [AccountChange(**json.loads(r[0])) for r in rows]

    def delivered(self, event_ids: Iterable[str]) -> None:
        """The server has journaled the account changes ``event_ids``: never handed over again."""
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany(
                    "UPDATE account_changes SET delivered = 1 WHERE event_id = ?", [(e,) for e in event_ids]
                )
        except sqlite3.Error as exc:
            raise JournalError(f"paper account write failed: {exc}") from exc

    def save(
        self,
        events: Iterable[OrderEvent],
        submitted: str = "",
        *,
        changes: Iterable[AccountChange] = (),
        funding_ms: int | None = None,
    ) -> None:
        """Commit the current state of every order ``events`` name, and of the account, in one
        transaction. ``submitted``: a venue_order_id that was just submitted (its count goes up by one).
        ``changes``: funding and liquidations to hand to the server (kept until :meth:`delivered`);
        ``funding_ms``: the funding time just settled."""
        order = self.engine.order
        rows = []
        seen = set()
        for ev in events:
            vid = ev.venue_order_id
            if vid in seen:
                continue
            seen.add(vid)
            o = order(vid)
            if o is not None:
                rows.append(_row(o, 1 if vid == submitted else 0))
        changes = list(changes)
        if not rows and not changes and funding_ms is None:
            return
        state = self.engine.account_state()
        derivs = self.engine.deriv_state()
        lots, totals, next_oid, next_tid = state
        old_lots, old_totals, old_oid, old_tid = self._saved
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany(_UPSERT, rows)
                if lots != old_lots:
                    self.db.executemany("INSERT OR REPLACE INTO positions VALUES (?,?)",
                                        [kv for kv in lots.items() if old_lots.get(kv[0]) != kv[1]])  # fmt: skip
                if totals != old_totals:
                    self.db.executemany("INSERT OR REPLACE INTO balances VALUES (?,?)",
                                        [kv for kv in totals.items() if old_totals.get(kv[0]) != kv[1]])  # fmt: skip
                if (next_oid, next_tid) != (old_oid, old_tid):
                    self.db.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('next_order_id', ?), ('next_trade_id', ?)",
                        (next_oid, next_tid),
                    )
                if derivs != self._saved_derivs:
                    self.db.executemany("INSERT OR REPLACE INTO deriv_positions VALUES (?,?,?,?,?,?,?)",
                                        [(k, *v) for k, v in derivs.items() if self._saved_derivs.get(k) != v])  # fmt: skip
                if changes:
                    self.db.executemany(
                        "INSERT OR IGNORE INTO account_changes (event_id, body) VALUES (?, ?)",
                        [(c.event_id, json.dumps(dataclasses.asdict(c))) for c in changes],
                    )
                if funding_ms is not None:
                    self.db.execute("INSERT OR REPLACE INTO meta VALUES ('funding_ms', ?)", (funding_ms,))
        except sqlite3.Error as exc:
            raise JournalError(f"paper account write failed: {exc}") from exc
        self._saved = state
        self._saved_derivs = derivs
        if funding_ms is not None:
            self.funding_ms = funding_ms
