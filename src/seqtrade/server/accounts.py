"""Per-strategy accounts on one exchange account: positions, average prices, realised PnL and fees.

Pure: reports in, numbers out. The server attributes every fill to the strategy that owns the order
(the report's ``strategy_id``) and keeps, per strategy and symbol, the net position (base units,
+ long), its average entry price, the realised PnL (quote units, before fees) and the fees paid.
The account's net is the sum over strategies.

A fill is a report with ``last_fill_quantity > 0``; a report's ``fee`` is the order's cumulative fee,
so the fee of one report is the growth since the order's previous report. Nothing is stored apart from
the journal: :meth:`Accounts.rebuild` replays its reports at start, so the numbers survive restarts.

Realised PnL uses the average-cost method of :mod:`seqtrade.positions` (shared with the client).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..models import OrderReport
from ..positions import FeeLedger, apply_fill
from .orders import OrderRecord

__all__ = ["Accounts", "Book", "Mismatch", "ReportSource"]

_EPS = 1e-12
_PAGE = 10_000


@dataclass(slots=True)
class Book:
    """One strategy's holding in one symbol."""

    position: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0
    fills: int = 0

    def apply_fill(self, side: str, quantity: float, price: float) -> None:
        self.position, self.avg_price, realised = apply_fill(
            self.position, self.avg_price, side, quantity, price
        )
        self.realized_pnl += realised
        self.fills += 1


class ReportSource(Protocol):
    """Where journaled reports are read back from (the journal)."""

    def last_seqs(self) -> dict[str, int]: ...

    def reports_after(self, strategy_id: str, seq: int, limit: int) -> list[OrderReport]: ...


@dataclass(frozen=True, slots=True)
class Mismatch:
    symbol: str
    strategies: float  # the sum of the strategies' positions
    venue: float


class Accounts:
    """Every strategy's books, fed with reports in each strategy's seq order."""

    def __init__(self) -> None:
        self.books: dict[tuple[str, str], Book] = {}  # (strategy_id, symbol)
        self._fees = FeeLedger()  # per (strategy_id, client_order_id)

    def apply(self, report: OrderReport) -> None:
        """Attribute one report's fill and fee to its strategy."""
        if not report.symbol:
            return  # a reject of a request that never was an order
        fee = self._fees.change((report.strategy_id, report.client_order_id), report.fee)
        if report.last_fill_quantity > 0 or abs(fee) > _EPS:
            book = self.books.setdefault((report.strategy_id, report.symbol), Book())
            if report.last_fill_quantity > 0:
                book.apply_fill(report.side, report.last_fill_quantity, report.last_fill_price)
            if abs(fee) > _EPS:  # a maker rebate is a negative cost
                book.fees += fee

    def on_report(self, rec: OrderRecord | None, report: OrderReport) -> None:
        """Follow one journaled report (``rec`` None: a reject of something that never was an order)."""
        if rec is not None:
            self.apply(report)

    def rebuild(self, journal: ReportSource) -> int:
        """Replay every journaled report (each strategy in seq order); the number of reports read."""
        n = 0
        for sid in sorted(journal.last_seqs()):
            seq = 0
            while page := journal.reports_after(sid, seq, _PAGE):
                for r in page:
                    self.apply(r)
                n += len(page)
                seq = page[-1].seq
        return n

    # ------------------------------------------------------------------ reading

    def position(self, strategy_id: str, symbol: str) -> float:
        book = self.books.get((strategy_id, symbol))
        return book.position if book is not None else 0.0

    def net(self, symbol: str) -> float:
        return sum(b.position for (_, sym), b in self.books.items() if sym == symbol)

    def nets(self) -> dict[str, float]:
        """The account's net position per symbol (every symbol a strategy ever traded)."""
        out: dict[str, float] = {}
        for (_, sym), b in self.books.items():
            out[sym] = out.get(sym, 0.0) + b.position
        return out

    def mismatches(self, venue_positions: Mapping[str, float], tolerance: float) -> list[Mismatch]:
        """Symbols where the strategies' positions do not add up to the venue's."""
        ours = self.nets()
        return [
            Mismatch(sym, ours.get(sym, 0.0), venue_positions.get(sym, 0.0))
            for sym in sorted(set(ours) | set(venue_positions))
            if abs(ours.get(sym, 0.0) - venue_positions.get(sym, 0.0)) > tolerance
        ]

    def snapshot(self) -> dict[str, Any]:
        """For the ``status`` command: each strategy's books and the account's totals per symbol."""
        strategies: dict[str, dict[str, Any]] = {}
        account: dict[str, dict[str, float]] = {}
        for (sid, sym), b in sorted(self.books.items()):
            strategies.setdefault(sid, {})[sym] = asdict(b)
            tot = account.setdefault(sym, {"position": 0.0, "realized_pnl": 0.0, "fees": 0.0})
            tot["position"] += b.position
            tot["realized_pnl"] += b.realized_pnl
            tot["fees"] += b.fees
        return {"strategies": strategies, "account": account}
