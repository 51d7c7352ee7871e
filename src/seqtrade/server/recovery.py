"""Start-up recovery: what the server takes back from the journal, and what it decides about the orders
that were open when it stopped.

Pure: the journal is read through :class:`JournalReader` (the shell passes the real one), the venue's
answers come in as values. The order of a restart (:mod:`seqtrade.server.app`):

1. :func:`restore` reads the journal: each strategy's last seq, the order keys, the orders still open
   or in flight, and the accounts. With a valid :class:`Snapshot` (accounts, open orders' fees and
   the key filter as of a journal position) only the journal after it is read: the reports after its
   seqs and the order keys after its order rowid; without one (or one that does not match the
   journal), every journaled report and key. The engine starts from them, so that events the venue
   sends while it starts are applied, not dropped.
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
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..models import AccountEvent, OrderReport, OrderStatus
from ..venues.base import OrderEvent
from .accounts import Accounts
from .bounded import KeyFilter
from .orders import OrderRecord

__all__ = ["JournalReader", "Restored", "Snapshot", "snapshot_refusal", "restore", "to_query", "resolve"]

log = logging.getLogger("seqtrade.server.gateway")

NEVER_SENT = "order never reached the venue (server restarted before it was sent)"
LOST = "the venue no longer knows this order (venue state was lost); taken as cancelled"


class JournalReader(Protocol):
    """What recovery reads from the journal."""

    def last_seqs(self) -> dict[str, int]: ...

    def order_keys(self) -> list[tuple[str, str]]: ...

    def open_orders(self) -> list[OrderRecord]: ...

    def reports_after(self, strategy_id: str, seq: int, limit: int) -> list[OrderReport | AccountEvent]: ...

    def identity(self) -> str: ...

    def keys_after(self, rowid: int) -> list[tuple[str, str]]: ...


@dataclass(slots=True)
class Snapshot:
    """The accounts and the key filter as of a journal position: every report up to ``seqs[strategy]``
    applied, every order up to ``order_rowid`` in the filter. Written by :mod:`seqtrade.server.snapshot`."""

    journal_id: str
    seqs: dict[str, int]
    order_rowid: int
    accounts: dict[str, Any]
    key_filter: bytes
    written_ms: int = 0


@dataclass(slots=True)
class Restored:
    """The engine's starting state (the keyword arguments of :class:`seqtrade.server.engine.Engine`)."""

    seqs: dict[str, int]
    known_keys: list[tuple[str, str]]
    open_orders: list[OrderRecord]
    key_filter: KeyFilter | None = None  # from the snapshot (``known_keys`` are the ones after it)
    reports_read: int = 0
    snapshot_used: bool = False
    notes: list[str] = field(default_factory=list)


def snapshot_refusal(snap: Snapshot, journal_id: str, last_seqs: dict[str, int], filter_bytes: int) -> str:
    """Why a snapshot may not be used with this journal ("" when it may)."""
    if snap.journal_id != journal_id:
        return "it belongs to another journal"
    if len(snap.key_filter) != filter_bytes:
        return f"its key filter is {len(snap.key_filter)} bytes, server.key_filter_bytes is {filter_bytes}"
    ahead = sorted(sid for sid, seq in snap.seqs.items() if seq > last_seqs.get(sid, 0))
    if ahead:
        # Only after an OS crash with journal.synchronous = normal: commits the snapshot saw were lost.
        return f"it is ahead of the journal for {', '.join(ahead[:5])}"
    return ""


def restore(
    journal: JournalReader, accounts: Accounts, snapshot: Snapshot | None = None, *, filter_bytes: int = 0
) -> Restored:
    """Read back what the journal holds; ``accounts`` from the snapshot and the reports after it, or
    from every journaled report when there is no usable snapshot."""
    last = journal.last_seqs()
    notes = []
    if snapshot is not None:
        why = snapshot_refusal(snapshot, journal.identity(), last, filter_bytes)
        if why:
            notes.append(f"snapshot not used: {why}; reading the whole journal")
            log.warning("%s", notes[-1])
            snapshot = None
    if snapshot is None:
        n = accounts.rebuild(journal)
        if n:
            log.info("accounts rebuilt from %d journaled reports", n)
        return Restored(last, journal.order_keys(), journal.open_orders(), reports_read=n, notes=notes)
    accounts.load(Accounts.from_state(snapshot.accounts))
    n = accounts.rebuild(journal, after=snapshot.seqs)
    log.info("accounts from the snapshot and the %d reports after it", n)
    return Restored(
        last,
        journal.keys_after(snapshot.order_rowid),
        journal.open_orders(),
        key_filter=KeyFilter(len(snapshot.key_filter), snapshot.key_filter),
        reports_read=n,
        snapshot_used=True,
    )


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
