"""Start-up recovery: what the server takes back from the journal, and what it decides about the orders
that were open when it stopped.

Pure: the journal is read through :class:`JournalReader` (the shell passes the real one), the venue's
answers come in as values. The order of a restart (:mod:`seqtrade.server.app`):

1. :func:`restore` reads the journal: each strategy's last seq, every order key ever used, the orders
   still open or in flight, and the accounts (every journaled report replayed). The engine starts
   from them, so that events the venue sends while it starts are applied, not dropped.
2. Once the venue runs, the shell asks it about each order of :func:`to_query` and feeds
   :func:`resolve`'s event to the report stage, like any venue event: an order that filled or was
   cancelled while the server was down gets its reports; an order journaled but never acknowledged is
   resolved by the venue's answer, never by sending it again.
3. Then the shell queues :data:`seqtrade.server.engine.RECOVERED`; the report stage opens the order
   channel when it reaches it, that is once every recovery event before it is *applied* (records,
   accounts and risk exposure up to date), so that a first order is checked against the positions
   as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ..models import OrderReport, OrderStatus
from ..venues.base import OrderEvent
from .accounts import Accounts
from .orders import OrderRecord

__all__ = ["JournalReader", "Restored", "restore", "to_query", "resolve"]

log = logging.getLogger("seqtrade.server.gateway")

NEVER_SENT = "order never reached the venue (server restarted before it was sent)"
LOST = "the venue no longer knows this order (venue state was lost); taken as cancelled"


class JournalReader(Protocol):
    """What recovery reads from the journal."""

    def last_seqs(self) -> dict[str, int]: ...

    def order_keys(self) -> list[tuple[str, str]]: ...

    def open_orders(self) -> list[OrderRecord]: ...

    def reports_after(self, strategy_id: str, seq: int, limit: int) -> list[OrderReport]: ...


@dataclass(slots=True)
class Restored:
    """The engine's starting state (the keyword arguments of :class:`seqtrade.server.engine.Engine`)."""

    seqs: dict[str, int]
    known_keys: list[tuple[str, str]]
    open_orders: list[OrderRecord]


def restore(journal: JournalReader, accounts: Accounts) -> Restored:
    """Read back what the journal holds; rebuild ``accounts`` from every journaled report."""
    n = accounts.rebuild(journal)
    if n:
        log.info("accounts rebuilt from %d journaled reports", n)
    return Restored(journal.last_seqs(), journal.order_keys(), journal.open_orders())


def to_query(records: Iterable[OrderRecord]) -> list[OrderRecord]:
    """The orders to ask the venue about: every one the server holds as open or in flight."""
    return [rec for rec in records if rec.is_open]


def resolve(rec: OrderRecord, answer: OrderEvent | None) -> OrderEvent:
    """The event that brings ``rec`` up to date from the venue's answer (None: the venue does not know it).

    Not known and never acknowledged: it never reached the venue, so it is rejected (and never sent
    again). Not known but acknowledged before: the venue lost its state; taken as cancelled with the
    fills the server has.
    """
    if answer is not None:
        return answer
    if rec.status is None:
        return OrderEvent(rec.venue_order_id, OrderStatus.REJECTED, error_msg=NEVER_SENT)
    return OrderEvent(
        rec.venue_order_id, OrderStatus.CANCELLED, filled_quantity=rec.filled_quantity, avg_price=rec.avg_price,
        fee=rec.fee, error_msg=LOST,
    )  # fmt: skip
