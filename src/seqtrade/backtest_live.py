"""Live versus replay, the shell: a live run's orders and fills from its journal and recording, a
backtest's from its venue, compared by :mod:`seqtrade.backtest_compare` (the rules live there).

``seqtrade backtest --data DIR --config FILE --compare-live RUN_DIR`` (docs/backtesting.md, "Live
versus replay") backtests the recording ``DIR`` and then compares, order by order:

- **live**: the journal of the live server's run dir (``RUN_DIR/journal.sqlite``, or the file given):
  every order it sent (``orders``, in the order the server journaled it: each strategy's in the order it
  sent them) and every fill its reports carry (``last_fill_quantity`` > 0, at ``last_fill_price``, at
  the report's ``timestamp``: the venue's time of the fill, ms). The
  journal is read from a copy (the live run's files are never written; its log is indexed in the copy).
  The orders' send times are the recording's ``orders`` table (``send_ns``, by venue order id), so the
  recording must be the one the live run made; an order missing there (the recorder dropped it) counts
  with its journaled creation time.
- **replay**: the backtest venue's orders as sent (each strategy's in the order it sent them, sent at
  the window's end) and the fill model's fills, at the recording's time of the message that filled them.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from . import wire
from .backtest_compare import OrderFills, report, report_text
from .errors import SeqtradeError
from .recorder_rows import ORDERS

__all__ = ["live_orders", "replay_orders", "compare_live", "recorded_latencies"]


def _journal_file(run: Path) -> Path:
    path = run / "journal.sqlite" if run.is_dir() else run
    if not path.is_file():
        raise SeqtradeError(f"compare: no journal at {path} (give the live server's run dir)")
    return path


def _read_journal(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[str, bytes]]]:
    """(orders rows in journal order, (venue order id, report body) rows), from a copy of the journal."""
    from .server.journal import Journal

    with tempfile.TemporaryDirectory(prefix="seqtrade-compare-") as tmp:
        for f in path.parent.glob(path.name + "*"):  # the index, its WAL and the journal's log
            shutil.copy2(f, Path(tmp, f.name))
        j = Journal(Path(tmp, path.name))  # indexes what the log holds beyond the index
        try:
            orders = j.db.execute(
                "SELECT venue_order_id, strategy_id, symbol, side, order_type, price, quantity, created_ms"
                " FROM orders WHERE sent = 1 ORDER BY rowid"
            ).fetchall()
            reports = j.db.execute(
                "SELECT venue_order_id, body FROM reports WHERE venue_order_id != '' ORDER BY strategy_id, seq"
            ).fetchall()
        except sqlite3.Error as exc:
            raise SeqtradeError(f"compare: cannot read the journal {path}: {exc}") from exc
        finally:
            j.close()
    return orders, reports


def _send_times(data: Path) -> dict[str, int]:
    """venue order id -> ``send_ns`` from the recording's ``orders`` table."""
    import pyarrow.parquet as pq

    out: dict[str, int] = {}
    for f in sorted((data / ORDERS).rglob("*.parquet")):
        for row in pq.read_table(f, columns=["venue_order_id", "send_ns"]).to_pylist():
            out[str(row["venue_order_id"])] = int(row["send_ns"])
    return out


def recorded_latencies(data: Path) -> list[int]:
    """Every order latency the recorder measured live (``orders.latency_ns`` of the answered orders), in
    file order: what ``--latency recorded`` draws from."""
    import pyarrow.parquet as pq

    out: list[int] = []
    for f in sorted((data / ORDERS).rglob("*.parquet")):
        table = pq.read_table(f, columns=["ack_ns", "latency_ns"]).to_pydict()
        out += [
            int(lat) for ack, lat in zip(table["ack_ns"], table["latency_ns"], strict=True) if ack and lat > 0
        ]
    return out


def live_orders(run: Path, data: Path) -> list[OrderFills]:
    """The live run's orders with their fills (see the module docstring)."""
    orders, reports = _read_journal(_journal_file(run))
    sent = _send_times(data)
    fills: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for vid, body in reports:
        d = dict(wire._unpack(body))
        q = float(d.get("last_fill_quantity") or 0.0)
        if q > 0:
            ns = int(d.get("timestamp") or 0) * 1_000_000
            fills[vid].append((ns, float(d.get("last_fill_price") or 0.0), q))
    return [
        OrderFills(vid, symbol, str(side), tuple(sorted(fills.get(vid, ()))), sid, str(ot),
                   None if price is None else float(price), float(qty), sent.get(vid, int(created) * 1_000_000))
        for vid, sid, symbol, side, ot, price, qty, created in orders
    ]  # fmt: skip


def replay_orders(venue: Any) -> list[OrderFills]:
    """A finished :class:`~seqtrade.replay_backtest.BacktestVenue`'s orders with their fills."""
    fills: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for f in venue.sim.fills:
        fills[f.strategy].append((f.ts_ns, f.price, f.quantity))  # ``strategy``: the venue order id here
    out = []
    for vid, (sid, _coid) in venue.owners.items():
        if vid not in venue.sent:
            continue  # never reached the fill model
        ns, o = venue.sent[vid]  # as sent (the journal keeps live orders as sent too)
        out.append(OrderFills(vid, o.symbol, str(o.side), tuple(fills.get(vid, ())), sid, str(o.order_type),
                              o.price, o.quantity, ns))  # fmt: skip
    return out


def compare_live(venue: Any, run: Path, data: Path, out_dir: Path, *,
                 threshold: float = 0.95) -> tuple[dict[str, Any], str, Path]:  # fmt: skip
    """Compare a finished backtest with the live run: (the report, its text, ``out_dir/compare.json``)."""
    r = report(live_orders(run, data), replay_orders(venue), threshold=threshold)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "compare.json"
    path.write_text(json.dumps(r, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return r, report_text(r), path
