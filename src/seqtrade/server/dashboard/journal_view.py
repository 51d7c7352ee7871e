"""Read-only queries on the journal for the dashboard, on a connection of their own.

The journal is SQLite in WAL mode: a reader on another connection sees every committed transaction
and never blocks the server's writer (nor is blocked by it). Every call here is synchronous and is
made from a worker thread (``trio.to_thread.run_sync``), so that a slow page of the journal never
holds the server's Trio thread. The connection is opened read-only (``mode=ro``): nothing here can
write. Orders and reports moved to the archive (``journal.archive_after_days``) are not shown.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgpack

from ...errors import JournalError
from ...models import AccountEvent, OrderReport
from ...wire import stored_report_from_body
from .model import Query

__all__ = ["JournalView"]

_ORDER_COLS = (
    "o.venue_order_id, o.strategy_id, o.client_order_id, o.symbol, o.side, o.order_type, o.price,"
    " o.quantity, o.created_ms, o.sent, o.open, r.body"
)


_F = TypeVar("_F", bound=Callable[..., Any])


def _mapped(fn: _F) -> _F:
    """sqlite3 errors leave as :class:`JournalError` (the dashboard shows them; the server goes on)."""

    @functools.wraps(fn)
    def wrapper(self: JournalView, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.Error as exc:
            self.close()  # the next call opens it again
            raise JournalError(f"journal {self.path}: read failed: {exc}") from exc

    return wrapper  # type: ignore[return-value]


def _where(q: Query, *, time_col: str | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if q.strategy is not None:
        clauses.append("o.strategy_id = ?")
        args.append(q.strategy)
    if q.symbol is not None:
        clauses.append("o.symbol = ?")
        args.append(q.symbol)
    if time_col is not None and q.since_ms is not None:
        clauses.append(f"{time_col} >= ?")
        args.append(q.since_ms)
    if q.until_ms is not None:  # an order is created before any of its fills: valid for both pages
        clauses.append("o.created_ms < ?")
        args.append(q.until_ms)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _stored(body: bytes) -> OrderReport | AccountEvent:
    return stored_report_from_body(msgpack.unpackb(body, raw=False))


def _report(body: bytes | None) -> OrderReport | None:
    r = None if body is None else _stored(body)
    return r if isinstance(r, OrderReport) else None


def fill_row(r: OrderReport) -> dict[str, Any]:
    return {
        "strategy": r.strategy_id, "seq": r.seq, "client_order_id": r.client_order_id, "symbol": r.symbol,
        "side": r.side, "quantity": r.last_fill_quantity, "price": r.last_fill_price, "status": str(r.status),
        "fee": r.fee, "ts": r.timestamp,
    }  # fmt: skip


class JournalView:
    """One read-only connection to the journal file. Not thread-safe: one call at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                       check_same_thread=False, isolation_level=None)  # fmt: skip
            self._db.execute("PRAGMA query_only = ON")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @_mapped
    def reports_after(self, after: Mapping[str, int], limit: int) -> list[OrderReport | AccountEvent]:
        """Each named strategy's reports (order reports and account events) after its seq (at most
        ``limit`` each), in seq order."""
        db = self._conn()
        out: list[OrderReport | AccountEvent] = []
        for sid, seq in after.items():
            rows = db.execute(
                "SELECT body FROM reports WHERE strategy_id=? AND seq>? ORDER BY seq LIMIT ?",
                (sid, seq, limit),
            ).fetchall()
            out.extend(_stored(b) for (b,) in rows)
        return out

    @_mapped
    def strategies(self) -> dict[str, int]:
        """Every strategy with a report, and its last seq."""
        rows = self._conn().execute("SELECT strategy_id, MAX(seq) FROM reports GROUP BY strategy_id")
        return {str(s): int(n) for s, n in rows}

    @_mapped
    def created_ms(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """When the server received each order (strategy_id, client_order_id) it journaled."""
        db = self._conn()
        out = {}
        for sid, coid in keys:
            row = db.execute(
                "SELECT created_ms FROM orders WHERE strategy_id=? AND client_order_id=?", (sid, coid)
            ).fetchone()
            if row is not None:
                out[(sid, coid)] = int(row[0])
        return out

    @_mapped
    def orders_page(self, q: Query) -> dict[str, Any]:
        """Orders, newest first, with their status from their last report."""
        where, args = _where(q, time_col="o.created_ms")
        db = self._conn()
        (total,) = db.execute(f"SELECT COUNT(*) FROM orders o{where}", args).fetchone()
        rows = db.execute(
            f"SELECT {_ORDER_COLS} FROM orders o LEFT JOIN reports r"
            f" ON r.strategy_id = o.strategy_id AND r.seq = o.last_seq{where}"
            " ORDER BY o.created_ms DESC, o.rowid DESC LIMIT ? OFFSET ?",
            [*args, q.per_page, q.offset],
        ).fetchall()
        items = []
        for vid, sid, coid, sym, side, ot, price, qty, created, sent, is_open, body in rows:
            r = _report(body)
            status = str(r.status) if r is not None else ("sent" if sent else "rejected")
            items.append({
                "venue_order_id": vid, "strategy": sid, "client_order_id": coid, "symbol": sym, "side": side,
                "order_type": ot, "price": price, "quantity": qty, "created_ms": created, "open": bool(is_open),
                "status": status, "filled": r.filled_quantity if r is not None else 0.0,
                "avg_price": r.filled_price if r is not None else 0.0, "fee": r.fee if r is not None else 0.0,
                "error": r.error_msg if r is not None else "",
            })  # fmt: skip
        return {"total": int(total), "page": q.page, "per_page": q.per_page, "items": items}

    @_mapped
    def fills_page(self, q: Query) -> dict[str, Any]:
        """Fills (reports with a fill), newest first: every report of the matching orders is read, so a
        page costs the reports of its filter (narrow it by strategy, symbol or time on a long journal)."""
        where, args = _where(q, time_col=None)
        rows = self._conn().execute(
            f"SELECT r.body FROM reports r JOIN orders o ON o.venue_order_id = r.venue_order_id{where}"
            " ORDER BY o.created_ms DESC, r.seq DESC",
            args,
        )
        fills = []
        for (body,) in rows:
            r = _report(body)
            if r is None or r.last_fill_quantity <= 0:
                continue
            if q.since_ms is not None and r.timestamp < q.since_ms:
                continue
            if q.until_ms is not None and r.timestamp >= q.until_ms:
                continue
            fills.append(r)
        fills.sort(key=lambda r: (r.timestamp, r.seq), reverse=True)
        page = fills[q.offset : q.offset + q.per_page]
        return {
            "total": len(fills),
            "page": q.page,
            "per_page": q.per_page,
            "items": [fill_row(r) for r in page],
        }
