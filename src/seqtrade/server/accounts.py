"""Per-strategy accounts on one exchange account: positions, average prices, realised PnL and fees.

Pure: reports in, numbers out. The server attributes every fill to the strategy that owns the order
(the report's ``strategy_id``) and keeps, per strategy and symbol, the net position (base units,
+ long), its average entry price, the realised PnL (quote units, before fees) and the fees paid.
The account's net is the sum over strategies.

A fill is a report with ``last_fill_quantity > 0``; a report's ``fee`` is the order's cumulative fee,
so the fee of one report is the growth since the order's previous report; only open orders' fees are
remembered (a closed order's fee is final). The numbers survive restarts through the snapshot
(:mod:`seqtrade.server.snapshot`: :meth:`Accounts.state` at a journal position) and the journal's reports
after it (:meth:`Accounts.rebuild` from the snapshot's seqs), or every journaled report without one.

Realised PnL uses the average-cost method of :mod:`seqtrade.positions` (shared with the client).

Swaps and futures: quantities are contracts, PnL and fees are in the instrument's settlement currency
(``instrument`` gives the contract value and whether it is inverse). ``account_event`` reports
(funding, liquidation, ADL, delivery) move a book's position by their quantity and its ``funding`` by
their amount; the ``external`` account (positions seqtrade did not open) has books like a strategy.
Each event id is applied once (:meth:`Accounts.event_seen`), also across restarts: the ids ride in
the snapshot and in the journaled events.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..instruments import Instrument, money_currency, unrealised_pnl
from ..models import OPEN_STATUSES, AccountEvent, OrderReport
from ..positions import FeeLedger, apply_fill, apply_fill_to
from .orders import OrderRecord

__all__ = ["Accounts", "Book", "Mismatch", "ReportSource"]

_EPS = 1e-12
_PAGE = 10_000
MAX_EVENT_IDS = 100_000  # account event ids remembered (newest); far more than years of funding


@dataclass(slots=True)
class Book:
    """One strategy's holding in one symbol."""

    position: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0
    fills: int = 0
    funding: float = 0.0  # account events' money (funding, liquidation, ADL, delivery), + received
    currency: str = ""  # of the money figures: the settlement currency ("" for spot as before)

    def apply_fill(self, side: str, quantity: float, price: float, inst: Instrument | None = None) -> None:
        if inst is not None:
            self.position, self.avg_price, realised = apply_fill_to(
                inst, self.position, self.avg_price, side, quantity, price
            )
        else:
            self.position, self.avg_price, realised = apply_fill(
                self.position, self.avg_price, side, quantity, price
            )
        self.realized_pnl += realised
        self.fills += 1


class ReportSource(Protocol):
    """Where journaled reports are read back from (the journal)."""

    def last_seqs(self) -> dict[str, int]: ...

    def reports_after(self, strategy_id: str, seq: int, limit: int) -> list[OrderReport | AccountEvent]: ...


@dataclass(frozen=True, slots=True)
class Mismatch:
    symbol: str
    strategies: float  # the sum of the strategies' positions
    venue: float


class Accounts:
    """Every strategy's books, fed with reports in each strategy's seq order."""

    def __init__(self) -> None:
        self.books: dict[tuple[str, str], Book] = {}  # (strategy_id, symbol)
        self._fees = FeeLedger()  # per (strategy_id, client_order_id), open orders only
        self.seqs: dict[str, int] = {}  # the last seq applied per strategy (a snapshot's position)
        self._event_ids: set[str] = set()  # account events applied (bounded: the newest MAX_EVENT_IDS)
        self._event_order: deque[str] = deque()
        # the instrument facts (contract value, inverse) by symbol; set by the server
        self.instrument: Callable[[str], Instrument | None] = lambda symbol: None

    def _book(self, sid: str, symbol: str) -> Book:
        book = self.books.get((sid, symbol))
        if book is None:
            inst = self.instrument(symbol)
            ccy = money_currency(inst) if inst is not None and inst.is_derivative else ""
            book = self.books[(sid, symbol)] = Book(currency=ccy)
        return book

    def event_seen(self, event_id: str) -> bool:
        """This account event id was applied already."""
        return event_id in self._event_ids

    def _remember(self, event_id: str) -> None:
        if event_id and event_id not in self._event_ids:
            self._event_ids.add(event_id)
            self._event_order.append(event_id)
            while len(self._event_order) > MAX_EVENT_IDS:
                self._event_ids.discard(self._event_order.popleft())

    def apply_event(self, ev: AccountEvent) -> None:
        """Apply one holder's share of an account event (its position change and its money)."""
        self.seqs[ev.strategy_id] = ev.seq
        self._remember(ev.event_id)
        if not ev.quantity and not ev.amount:
            return
        book = self._book(ev.strategy_id, ev.symbol)
        if ev.quantity:
            book.position += ev.quantity
            if abs(book.position) <= 1e-9:
                book.position, book.avg_price = 0.0, 0.0
        book.funding += ev.amount

    def ever_held(self, symbol: str) -> bool:
        """A strategy or the external account ever had a book in ``symbol``."""
        return any(sym == symbol for (_, sym) in self.books)

    def holders(self, symbol: str) -> dict[str, float]:
        """Every holder's (strategies and ``external``) position in ``symbol``."""
        return {sid: b.position for (sid, sym), b in self.books.items() if sym == symbol and b.position}

    def apply(self, report: OrderReport) -> None:
        """Attribute one report's fill and fee to its strategy."""
        self.seqs[report.strategy_id] = report.seq
        if not report.symbol:
            return  # a reject of a request that never was an order
        key = (report.strategy_id, report.client_order_id)
        if report.status in OPEN_STATUSES:
            fee = self._fees.change(key, report.fee)
        else:
            fee = self._fees.close(key, report.fee, report.last_fill_quantity > 0)
        if report.last_fill_quantity > 0 or abs(fee) > _EPS:
            book = self._book(report.strategy_id, report.symbol)
            if report.last_fill_quantity > 0:
                inst = self.instrument(report.symbol)
                book.apply_fill(report.side, report.last_fill_quantity, report.last_fill_price, inst)
            if abs(fee) > _EPS:  # a maker rebate is a negative cost
                book.fees += fee

    def on_report(self, rec: OrderRecord | None, report: OrderReport) -> None:
        """Follow one journaled report (``rec`` None: a reject of something that never was an order)."""
        if rec is not None:
            self.apply(report)

    def rebuild(self, journal: ReportSource, after: Mapping[str, int] | None = None) -> int:
        """Replay the journaled reports (each strategy in seq order) after ``after[strategy]`` (every
        report without it: a restart without a snapshot); the number of reports read."""
        n = 0
        start = after or {}
        for sid in sorted(journal.last_seqs()):
            seq = start.get(sid, 0)
            while page := journal.reports_after(sid, seq, _PAGE):
                for r in page:
                    if type(r) is AccountEvent:
                        self.apply_event(r)
                    else:
                        assert type(r) is OrderReport
                        self.apply(r)
                n += len(page)
                seq = page[-1].seq
        return n

    def open_fee_count(self) -> int:
        """How many orders' fees are remembered (the open ones)."""
        return len(self._fees)

    # ------------------------------------------------------------------ snapshot

    def state(self) -> dict[str, Any]:
        """Everything the accounts hold, as plain data (for the snapshot)."""
        return {
            "books": [
                [sid, sym, b.position, b.avg_price, b.realized_pnl, b.fees, b.fills, b.funding, b.currency]
                for (sid, sym), b in self.books.items()
            ],  # fmt: skip
            "fees": [[*key, fee] for key, fee in self._fees.open_fees().items()],  # type: ignore[misc]
            "seqs": dict(self.seqs),
            "event_ids": list(self._event_order),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Accounts:
        acc = cls()
        for row in state["books"]:
            sid, sym, pos, avg, pnl, fees, fills = row[:7]
            acc.books[(sid, sym)] = Book(pos, avg, pnl, fees, fills, *row[7:9])  # older snapshots: 7 columns
        acc._fees.restore({(sid, coid): fee for sid, coid, fee in state["fees"]})
        acc.seqs = dict(state.get("seqs", {}))
        for event_id in state.get("event_ids", []):
            acc._remember(event_id)
        return acc

    def load(self, other: Accounts) -> None:
        """Take ``other``'s numbers (the risk gate holds this object: it is filled in place)."""
        self.books = other.books
        self._fees = other._fees
        self.seqs = other.seqs
        self._event_ids, self._event_order = other._event_ids, other._event_order

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

    def mismatches(
        self,
        venue_positions: Mapping[str, float],
        tolerance: float,
        in_flight: Iterable[OrderRecord] = (),
        symbols: set[str] | None = None,
    ) -> list[Mismatch]:
        """Symbols where the strategies' positions do not add up to the venue's.

        ``in_flight``: the orders open as the server sees them when the venue's positions were read. A
        fill of one of them may be done at the venue and not yet in these books (its report on its
        way): a difference within what they may still fill (buys up, sells down) is not a mismatch.
        """
        ours = self.nets()
        up: dict[str, float] = {}
        down: dict[str, float] = {}
        for rec in in_flight:
            room = max(rec.quantity - rec.filled_quantity, 0.0)
            side = up if rec.side == "buy" else down
            side[rec.symbol] = side.get(rec.symbol, 0.0) + room
        out = []
        for sym in sorted(set(ours) | set(venue_positions)):
            if symbols is not None and sym not in symbols:
                continue  # the venue does not tell this symbol's position (spot at OKX)
            diff = venue_positions.get(sym, 0.0) - ours.get(sym, 0.0)
            if not -down.get(sym, 0.0) - tolerance <= diff <= up.get(sym, 0.0) + tolerance:
                out.append(Mismatch(sym, ours.get(sym, 0.0), venue_positions.get(sym, 0.0)))
        return out

    def snapshot(self, marks: Mapping[str, float] | None = None) -> dict[str, Any]:
        """For the ``status`` command: each strategy's books and the account's totals per symbol;
        with ``marks`` (symbol -> mark price) each book's unrealised PnL at mark, in its currency."""
        strategies: dict[str, dict[str, Any]] = {}
        account: dict[str, dict[str, float]] = {}
        for (sid, sym), b in sorted(self.books.items()):
            row = strategies.setdefault(sid, {})[sym] = asdict(b)
            inst, mark = self.instrument(sym), (marks or {}).get(sym)
            if inst is not None and mark:
                row["unrealised_pnl"] = unrealised_pnl(inst, b.position, b.avg_price, mark)
            tot = account.setdefault(sym, {"position": 0.0, "realized_pnl": 0.0, "fees": 0.0, "funding": 0.0})
            tot["position"] += b.position
            tot["realized_pnl"] += b.realized_pnl
            tot["fees"] += b.fees
            tot["funding"] += b.funding
        # money per currency over every book (USDT and BTC never add up): the account view
        by_ccy: dict[str, dict[str, float]] = {}
        for (_, sym), b in self.books.items():
            inst = self.instrument(sym)
            ccy = b.currency or (money_currency(inst) if inst is not None else "")
            t = by_ccy.setdefault(ccy or "quote", {"realized_pnl": 0.0, "fees": 0.0, "funding": 0.0})
            t["realized_pnl"] += b.realized_pnl
            t["fees"] += b.fees
            t["funding"] += b.funding
        return {"strategies": strategies, "account": account, "currencies": by_ccy}
