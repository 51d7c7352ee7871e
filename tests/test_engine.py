"""The gateway engine on its own: what it decides for requests and venue events, driven without sockets.

A small in-memory shell (:class:`Shell`) performs the engine's outputs the way the gateway does (journal
first, then the report stage, then the venue), over a real journal in memory and a venue model that
keeps every event it ever sent, so that events can be delivered twice, late or out of order. Property
tests (hypothesis) check the protocol's promises whatever the interleaving. Then recovery, with the
real gateway and paper venue: the order channel opens only once every recovery event is applied.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
import trio.testing
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqtrade.bus import TrioSocket
from seqtrade.config import Config, parse_config
from seqtrade.errors import JournalError
from seqtrade.models import (
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    AmendRequest,
    CancelAll,
    CancelRequest,
    Hello,
    OrderReport,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Ticker,
    Welcome,
)
from seqtrade.server.accounts import Accounts
from seqtrade.server.app import build
from seqtrade.server.engine import (
    RECOVERED,
    Amend,
    Cancel,
    Commit,
    Engine,
    Output,
    Place,
    Replay,
    Reply,
    ReportItem,
)
from seqtrade.server.journal import Journal
from seqtrade.server.risk import RiskGate
from seqtrade.venues.base import EventKind, Instrument, MarketData, OrderEvent, VenueOrder
from seqtrade.venues.paper import PaperVenue

from .conftest import QUIET_MARKET, make_config

S = "BTC-USDT"
INSTRUMENTS = {S: Instrument(S, 0.1, 0.001, 0.001)}
STRATEGIES = ("a", "b")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def server_config(base_dir: Path, **server: object) -> Config:
    """The tests' config with these ``[server]`` settings."""
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in server.items())
    return parse_config(QUIET_MARKET.replace("[server]\n", "[server]\n" + lines, 1), base_dir=str(base_dir))


# ----------------------------------------------------------------------------- an in-memory shell


@dataclass
class VenueOrderState:
    """The venue's side of one order, and every event it ever sent for it."""

    order: VenueOrder
    status: OrderStatus | None = None  # None: not acknowledged yet
    filled: float = 0.0
    cost: float = 0.0
    fee: float = 0.0
    history: list[OrderEvent] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status is None or self.status in OPEN_STATUSES

    def event(self, kind: EventKind = EventKind.UPDATE, **extra: object) -> OrderEvent:
        assert self.status is not None
        ev = OrderEvent(
            self.order.venue_order_id, self.status, kind, exchange_order_id="x" + self.order.venue_order_id,
            price=self.order.price, quantity=self.order.quantity, filled_quantity=self.filled,
            avg_price=self.cost / self.filled if self.filled else 0.0, fee=self.fee, **extra,  # type: ignore[arg-type]
        )  # fmt: skip
        self.history.append(ev)
        return ev


class Shell:
    """Performs the engine's outputs like :class:`seqtrade.server.gateway.Gateway`, in memory."""

    def __init__(self, config: Config, tmp: Path) -> None:
        self.config = config
        self.journal = Journal(tmp / "journal.sqlite", synchronous="off")
        self.accounts = Accounts()
        self.clock = 0.0
        self.risk = RiskGate(
            config.risk, positions=self.accounts, mid=lambda _: 100.0, instrument=INSTRUMENTS.get,
            clock=lambda: self.clock,
        )  # fmt: skip
        self.engine = Engine(
            config, instruments=lambda: INSTRUMENTS, risk=self.risk, accounts=self.accounts,
            find_order=self.journal.find_order,
        )  # fmt: skip
        self.queue: list[ReportItem] = []  # the report stage's channel
        self.venue: dict[str, VenueOrderState] = {}
        self.trades = 0
        self.published: dict[str, list[OrderReport]] = {
            sid: [] for sid in STRATEGIES
        }  # new reports, in order
        self.welcomes: list[
            tuple[Welcome, list[OrderReport], int]
        ] = []  # (welcome, replayed, hello.last_seq)
        self.accepting = False
        self.replay_ms = 0

    # the request stage
    def request(self, req: object) -> None:
        self.perform(self.engine.on_request(req, now_ms()))  # type: ignore[arg-type]

    def perform(self, out: Output) -> None:
        for rec, sent in out.journal:
            self.journal.add_record(rec, sent=sent)
        self.queue.extend(out.replies)
        for cmd in out.venue:
            if isinstance(cmd, Place):
                assert cmd.order.venue_order_id not in self.venue, "an order was sent twice"
                self.venue[cmd.order.venue_order_id] = VenueOrderState(cmd.order)
            elif isinstance(cmd, Cancel):
                v = self.venue[cmd.venue_order_id]
                if v.status is not None and v.open:
                    v.status = OrderStatus.CANCELLED
                    self.queue.append(v.event())
                elif v.status is not None:
                    self.queue.append(v.event(EventKind.CANCEL_FAILED, error_msg="already closed"))
                else:  # not acknowledged yet: refused as a venue that does not know it yet would
                    self.queue.append(OrderEvent(cmd.venue_order_id, OrderStatus.REJECTED, EventKind.CANCEL_FAILED,
                                                 error_msg="order not acknowledged yet"))  # fmt: skip
            elif isinstance(cmd, Amend):
                v = self.venue[cmd.venue_order_id]
                if v.status is not None and v.open and (cmd.quantity is None or cmd.quantity > v.filled):
                    if cmd.quantity is not None:
                        v.order.quantity = cmd.quantity
                    if cmd.price is not None:
                        v.order.price = cmd.price
                    self.queue.append(v.event())
                elif v.status is not None:
                    self.queue.append(v.event(EventKind.AMEND_FAILED, error_msg="cannot amend"))

    # the venue
    def venue_step(self, i: int, what: int, amount: float) -> None:
        """The venue moves order ``i``: ``what`` 0 acknowledges it (or fills part of it once it is),
        1 fills, 2 cancels, 3 rejects it if it was not acknowledged yet (else cancels). A fill or a
        cancel may come before any acknowledgement, as a venue's push can overtake its answer."""
        if not self.venue:
            return
        v = list(self.venue.values())[i % len(self.venue)]
        if not v.open:
            return
        if v.status is None and what in (0, 3):
            v.status = OrderStatus.REJECTED if what == 3 else OrderStatus.ACCEPTED
            self.queue.append(v.event())
        elif what == 2 or (what == 3 and v.status is not None):
            # a cancel, also of an order not acknowledged yet (its push overtook the place's answer)
            v.status = OrderStatus.CANCELLED
            self.queue.append(v.event())
        else:
            qty = round(min(v.order.quantity - v.filled, amount), 3)
            if qty <= 0:
                return
            self.trades += 1
            price = v.order.price or 100.0
            v.filled = round(v.filled + qty, 9)
            v.cost += qty * price
            v.fee += qty * price * 0.001
            v.status = (
                OrderStatus.FILLED if v.filled >= v.order.quantity - 1e-9 else OrderStatus.PARTIALLY_FILLED
            )
            self.queue.append(
                v.event(last_fill_quantity=qty, last_fill_price=price, trade_id=f"t{self.trades}")
            )

    def redeliver(self, i: int, j: int) -> None:
        """An event the venue sent before, again: a duplicate, a late or an out-of-order one."""
        with_history = [v for v in self.venue.values() if v.history]
        if with_history:
            h = with_history[i % len(with_history)].history
            self.queue.append(h[j % len(h)])

    # the report stage
    def drain(self) -> None:
        batch, self.queue = self.queue, []
        for step in self.engine.report_steps(batch):
            if isinstance(step, Commit):
                self.journal.add_reports(step.rows, step.fills)
                self.engine.committed(step)
                for r in step.reports:
                    self.published[r.strategy_id].append(r)
            elif isinstance(step, Reply):
                assert step.report is not None and step.resend
            elif isinstance(step, Replay):
                # the welcome first, then the replay it announces (here all of it at once)
                self.replay_ms += 10_000  # hellos far apart: no replay cooldown in the way
                welcome = self.engine.on_hello(step.hello, self.replay_ms * 1_000_000)
                assert welcome is not None and step.refusal is None
                replayed = []
                while chunks := self.engine.replay_chunks():
                    for sid, after, limit in chunks:
                        got = self.journal.reports_after(sid, after, limit)
                        self.engine.replayed(sid, after, limit, got, self.replay_ms)
                        replayed += got
                self.welcomes.append((welcome, replayed, step.hello.last_seq))
            else:
                assert step is RECOVERED
                self.accepting = True

    def journaled(self, sid: str) -> list[OrderReport]:
        return self.journal.reports_after(sid, 0, 1_000_000)


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    return Shell(make_config(tmp_path), tmp_path)


def order(
    sid: str, coid: str, side: str = "buy", price: float | None = 99.0, qty: float = 1.0
) -> OrderRequest:
    ot = OrderType.MARKET if price is None else OrderType.LIMIT
    return OrderRequest(sid, coid, S, Side(side), ot, price, qty, now_ms())


# ----------------------------------------------------------------------------- what the engine decides


def test_a_new_order_is_journaled_before_it_is_sent_and_a_reject_is_journaled_never_sent(
    shell: Shell,
) -> None:
    out = shell.engine.on_request(order("a", "c1", price=99.04, qty=1.0004), now_ms())
    ((rec, sent),) = out.journal
    (place,) = out.venue
    assert sent and isinstance(place, Place) and not out.replies and out.strategy == "a"
    assert place.order == VenueOrder(rec.venue_order_id, S, Side.BUY, OrderType.LIMIT, 99.0, 1.0)  # rounded
    out = shell.engine.on_request(order("a", "c2", qty=0.0004), now_ms())
    ((rec, sent),) = out.journal
    (reply,) = out.replies
    assert not sent and not out.venue and isinstance(reply, Reply) and reply.report is not None
    assert reply.report.status is OrderStatus.REJECTED and "below the minimum" in reply.report.error_msg


def test_a_repeated_order_request_is_never_sent_again(shell: Shell) -> None:
    shell.request(order("a", "c1"))
    shell.venue_step(0, 0, 0.0)  # accepted
    shell.drain()
    out = shell.engine.on_request(order("a", "c1"), now_ms())
    assert not out.journal and not out.venue
    (reply,) = out.replies
    assert isinstance(reply, Reply) and reply.resend and reply.report is not None and reply.report.seq == 1


def test_a_strategy_not_allowed_is_refused_without_an_answer(tmp_path: Path) -> None:
    config = server_config(
        tmp_path, allow_unknown_strategies=False
    )  # and no [[strategies]]: nobody may trade
    sh = Shell(config, tmp_path)
    assert sh.engine.on_request(order("stranger", "c1"), now_ms()) == Output()
    assert sh.engine.counters.bad_frames == 1 and sh.engine.lookup("stranger", "c1") is None


def test_a_stale_order_is_rejected_and_its_id_remembered(shell: Shell) -> None:
    stale = order("a", "c1")
    stale.timestamp -= 10_000
    out = shell.engine.on_request(stale, now_ms())
    (reply,) = out.replies
    assert (
        isinstance(reply, Reply)
        and reply.report is not None
        and "stale order request" in reply.report.error_msg
    )
    assert [sent for _, sent in out.journal] == [False]
    shell.perform(out)
    shell.drain()
    again = shell.engine.on_request(order("a", "c1"), now_ms())  # fresh now, but the id is taken
    assert not again.venue and [r.resend for r in again.replies if isinstance(r, Reply)] == [True]


def test_cancel_all_and_a_dead_strategy(shell: Shell) -> None:
    for coid in ("c1", "c2"):
        shell.request(order("a", coid))
    shell.request(order("b", "c1"))
    for i in range(3):
        shell.venue_step(i, 0, 0.0)
    shell.drain()
    out = shell.engine.on_request(CancelAll("a"), now_ms())
    assert sorted(c.venue_order_id for c in out.venue if isinstance(c, Cancel)) == sorted(
        r.venue_order_id for r in shell.engine.open_records("a")
    )
    assert shell.config.server.dead_strategy_policy == "cancel"
    (cancel,) = shell.engine.on_strategy_dead("b").venue
    assert cancel == Cancel(shell.engine.open_records("b")[0].venue_order_id, S)


def test_a_welcome_names_the_last_seq_and_the_open_orders_and_the_replay_follows(shell: Shell) -> None:
    shell.request(order("a", "c1"))
    shell.request(order("a", "c2"))
    shell.venue_step(0, 0, 0.0)  # c1 accepted
    shell.venue_step(1, 0, 0.0)
    shell.venue_step(1, 2, 0.0)  # c2 cancelled
    shell.request(Hello("a", 1, "n1"))
    shell.drain()
    ((welcome, replayed, _),) = shell.welcomes
    assert [r.seq for r in replayed] == [2, 3] and welcome.last_seq == 3
    assert [r.client_order_id for r in welcome.open_orders] == ["c1"]


def test_an_amend_of_an_order_on_a_symbol_no_longer_served_fails_and_leaves_the_order_as_it_is(
    shell: Shell,
) -> None:
    """A restart with another symbol list leaves an order open on a symbol the server no longer trades.
    An amend of it must fail with the order's status and a reason. It used to raise KeyError, which
    the order task answers with a ``rejected`` report: the strategy dropped an order still live."""
    from seqtrade.server.orders import OrderRecord

    live = OrderRecord("v1", "a", "c1", "ETH-USDT", "buy", "limit", 99.0, 1.0, 0, status=OrderStatus.ACCEPTED)
    engine = Engine(
        shell.config, instruments=lambda: INSTRUMENTS, risk=shell.risk, accounts=shell.accounts,
        find_order=shell.journal.find_order, known_keys=[("a", "c1")], open_orders=[live],
    )  # fmt: skip
    out = engine.on_request(AmendRequest("a", "c1", 98.0, None), now_ms())
    assert not out.venue and not out.journal
    (reply,) = out.replies
    assert isinstance(reply, Reply)
    pending = engine.on_reply(reply)
    assert pending is not None
    _, report, _ = pending
    assert report.status is OrderStatus.ACCEPTED and report.client_order_id == "c1"
    assert report.error_msg == "amend failed: unknown symbol 'ETH-USDT' (this server trades BTC-USDT)"


def test_a_refusal_before_the_acknowledgement_is_told_after_it_and_never_reopens(shell: Shell) -> None:
    """A cancel refused (even as "rejected") before the venue acknowledged the order says nothing of
    the order's status: the strategy hears "accepted" first, then the refusal, never "rejected" then
    "accepted"."""
    shell.request(order("a", "c1"))
    shell.request(CancelRequest("a", "c1"))  # the venue does not know it yet: refused
    shell.drain()
    assert shell.published["a"] == []
    shell.venue_step(0, 0, 0.0)  # accepted
    shell.drain()
    first, second = shell.published["a"]
    assert first.status is OrderStatus.ACCEPTED and first.error_msg == ""
    assert second.status is OrderStatus.ACCEPTED and "not acknowledged" in second.error_msg
    assert shell.engine.lookup("a", "c1").is_open  # type: ignore[union-attr]


def test_an_internal_error_on_a_cancel_leaves_a_live_order_as_it_is(shell: Shell) -> None:
    """The shell answers a request whose handling raised with ``on_internal_error``: for a cancel of an
    acknowledged order, the order's own state with the reason, never a "rejected" for a live order."""
    shell.request(order("a", "c1"))
    shell.venue_step(0, 0, 0.0)
    shell.drain()
    out = shell.engine.on_internal_error(CancelRequest("a", "c1"), KeyError("boom"), now_ms())
    shell.perform(out)
    shell.drain()
    last = shell.published["a"][-1]
    assert last.status is OrderStatus.ACCEPTED and "internal error" in last.error_msg
    out = shell.engine.on_internal_error(order("a", "c9"), KeyError("boom"), now_ms())
    (reply,) = out.replies
    assert reply.report is not None and reply.report.status is OrderStatus.REJECTED


# ----------------------------------------------------------------------------- properties

_KINDS = ["order"] * 3 + ["venue"] * 4 + ["again"] * 2 + ["cancel", "amend", "hello", "drain", "drain"]
_QTY = (1.0, 0.5, 2.0, 0.25, 0.0004, 1.2345)  # 0.0004: below the minimum; 1.2345: rounded to the lot
_ACTIONS = st.lists(
    st.tuples(st.sampled_from(_KINDS), st.integers(0, 1_000), st.integers(0, 1_000), st.integers(0, 1_000)),
    min_size=20,
    max_size=150,
)


def _run(shell: Shell, actions: list[tuple[str, int, int, int]]) -> None:
    for kind, i, j, k in actions:
        sid = STRATEGIES[i % 2]
        coid = f"c{j % 5}"
        if kind == "order":
            side = "buy" if j % 3 else "sell"
            price = None if k % 5 == 0 else 95.0 + (k % 10)
            shell.request(order(sid, coid, side, price, _QTY[i % len(_QTY)]))
        elif kind == "cancel":
            shell.request(CancelRequest(sid, coid))
        elif kind == "amend":
            price = None if k % 3 == 0 else 90.0 + k % 7
            shell.request(AmendRequest(sid, coid, price, None if k % 2 else _QTY[k % len(_QTY)]))
        elif kind == "hello":
            shell.request(Hello(sid, k % (shell.engine.seqs.get(sid, 0) + 1), str(i)))
        elif kind == "venue":
            shell.venue_step(i, j % 4, (0.3, 1.0, 0.5, 5.0)[k % 4])
        elif kind == "again":
            shell.redeliver(i, j)
        else:
            shell.drain()
    # The end: the venue tells the final state of every order once more (as recovery would), then
    # everything queued is applied.
    for v in shell.venue.values():
        if v.history:
            shell.queue.append(v.history[-1])
    shell.drain()


def _check(shell: Shell) -> None:
    for sid in STRATEGIES:
        journaled = shell.journaled(sid)
        # seqs per strategy contiguous from 1, published in that order, the same reports
        assert [r.seq for r in journaled] == list(range(1, len(journaled) + 1))
        assert [r.seq for r in shell.published[sid]] == [r.seq for r in journaled]
        assert shell.engine.seqs.get(sid, 0) == len(journaled)
        # a filled, cancelled or rejected order never reopens; every order is first accepted or rejected
        closed: set[str] = set()
        seen: set[str] = set()
        for r in journaled:
            if not r.symbol:
                continue  # a reject of something that never was an order
            if r.client_order_id not in seen:
                seen.add(r.client_order_id)
                assert r.status in (OrderStatus.ACCEPTED, OrderStatus.REJECTED), f"first report: {r}"
            assert not (r.client_order_id in closed and r.status in OPEN_STATUSES), f"reopened: {r}"
            if r.status in TERMINAL_STATUSES:
                closed.add(r.client_order_id)
        # fills never double-count: each order's fills add up to its cumulative fill, which is the venue's
        fills: dict[str, float] = {}
        last: dict[str, OrderReport] = {}
        for r in journaled:
            fills[r.client_order_id] = fills.get(r.client_order_id, 0.0) + r.last_fill_quantity
            if r.symbol:
                last[r.client_order_id] = r
        position = 0.0
        for coid, r in last.items():
            assert fills[coid] == pytest.approx(r.filled_quantity, abs=1e-9)
            rec = shell.engine.lookup(sid, coid)
            assert rec is not None and rec.filled_quantity == pytest.approx(r.filled_quantity, abs=1e-9)
            if rec.venue_order_id in shell.venue:
                assert rec.filled_quantity == pytest.approx(shell.venue[rec.venue_order_id].filled, abs=1e-9)
            position += r.filled_quantity if r.side == "buy" else -r.filled_quantity
        assert shell.accounts.position(sid, S) == pytest.approx(position, abs=1e-9)
    # every welcome names the last seq, and the replay after it is exactly the reports after the hello's seq
    for welcome, replayed, after in shell.welcomes:
        assert [r.seq for r in replayed] == list(range(after + 1, welcome.last_seq + 1))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=_ACTIONS)
def test_seqs_contiguous_no_reopen_no_double_fill(tmp_path_factory: pytest.TempPathFactory, actions) -> None:
    tmp = tmp_path_factory.mktemp("engine")
    shell = Shell(make_config(tmp), tmp)
    try:
        _run(shell, actions)
        _check(shell)
    finally:
        shell.journal.close()


@settings(max_examples=60, deadline=None)
@given(actions=_ACTIONS)
def test_the_same_with_closed_orders_read_back_from_the_journal(
    tmp_path_factory: pytest.TempPathFactory, actions
) -> None:
    """With no closed order kept in memory, every question about one goes to the journal."""
    tmp = tmp_path_factory.mktemp("engine")
    shell = Shell(server_config(tmp, closed_orders_in_memory=0), tmp)
    try:
        _run(shell, actions)
        _check(shell)
    finally:
        shell.journal.close()


# ----------------------------------------------------------------------------- the journal at its boundary


def test_an_unwritable_journal_is_a_journal_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="cannot open journal .*missing"):
        Journal(tmp_path / "missing" / "journal.sqlite")
    j = Journal(tmp_path / "journal.sqlite")
    j.close()
    with pytest.raises(JournalError, match="journal .*: read failed"):
        j.last_seqs()
    with pytest.raises(JournalError, match="journal .*: write failed"):
        j.add_reports(
            [("", OrderReport(1, "c", "", "a", S, "buy", "limit", 1.0, 1.0, OrderStatus.ACCEPTED), False)]
        )


# ----------------------------------------------------------------------------- recovery


class _Sink:
    """Takes what a venue produces while it runs alone (between two server runs)."""

    def publish_market(self, msg: MarketData) -> None:
        pass

    async def order_event(self, event: OrderEvent) -> None:
        pass

    def set_connected(self, connected: bool) -> None:
        pass


async def test_orders_are_accepted_only_once_every_recovery_event_is_applied(base_dir: Path, zctx) -> None:
    """An order journaled as open filled at the venue while the server was down. The order channel must
    not open before that fill is applied: a first order must be checked against the position as it is
    (long 1, nothing open), not as the journal left it (flat, a buy of 1 open). Here a sell of 2 with a
    position limit of 1 must pass (worst case -1); against the stale state it would be refused (-2).
    It used to fail: ``accepting`` was set as soon as the recovery events were queued."""
    config = make_config(base_dir, "[risk]\nmax_position = 1.0\n")
    config.run_dir.mkdir(mode=0o700)
    state = config.run_dir / "paper.sqlite"
    symbols = list(config.venue.symbols)
    with trio.fail_after(10):
        # the first run left the order open in the journal ...
        j = Journal(config.journal_path)
        j.add_order(venue_order_id="x1", strategy_id="s1", client_order_id="c1", symbol=S, side="buy",
                    order_type="limit", price=99.0, quantity=1.0, created_ms=now_ms(), sent=True)  # fmt: skip
        j.add_reports([("x1", OrderReport(1, "c1", "e1", "s1", S, "buy", "limit", 99.0, 1.0, OrderStatus.ACCEPTED,
                                          timestamp=now_ms()), True)])  # fmt: skip
        j.close()
        # ... and at the venue it filled while the server was down
        async with trio.open_nursery() as nursery:
            venue = PaperVenue(config.venue.paper, symbols, state_path=state)
            await nursery.start(venue.run, _Sink())
            await venue.place_order(VenueOrder("x1", S, Side.BUY, OrderType.LIMIT, 99.0, 1.0))
            await venue.set_market(S, 98.0, 98.5)
            assert (await venue.query_order("x1", S)).status is OrderStatus.FILLED  # type: ignore[union-attr]
            nursery.cancel_scope.cancel()

        journal = Journal(config.journal_path)
        venue = PaperVenue(config.venue.paper, symbols, state_path=state)
        gw, guard = build(config, venue, journal)
        pub = zctx.socket(zmq.PUB)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(venue.run, gw)
                gw.publish_market(Ticker(S, now_ms(), 98.2, 98.0, 98.5, 1.0, 1.0, 0.0))
                nursery.start_soon(gw.recover)
                await trio.testing.wait_all_tasks_blocked()
                # the recovery event is queued, nothing has applied it: not accepting yet
                assert not gw.accepting.is_set()
                assert guard.accounts.position("s1", S) == 0.0
                await nursery.start(gw.report_task, TrioSocket(pub))
                await gw.accepting.wait()
                # accepting: the fill is applied everywhere
                assert gw.engine.lookup("s1", "c1").status is OrderStatus.FILLED  # type: ignore[union-attr]
                assert guard.accounts.position("s1", S) == 1.0
                out = gw.engine.on_request(order("s1", "c2", "sell", 99.0, 2.0), now_ms())
                assert not out.replies and [type(c) for c in out.venue] == [Place]
                nursery.cancel_scope.cancel()
        finally:
            pub.close(linger=0)
            journal.close()


def test_recovery_decisions() -> None:
    from seqtrade.server import recovery
    from seqtrade.server.orders import OrderRecord

    never_acked = OrderRecord("v1", "s1", "c1", S, "buy", "limit", 99.0, 1.0, 0)
    acked = OrderRecord("v2", "s1", "c2", S, "buy", "limit", 99.0, 2.0, 0, status=OrderStatus.PARTIALLY_FILLED,
                        filled_quantity=1.0, avg_price=99.0, fee=0.1)  # fmt: skip
    done = OrderRecord("v3", "s1", "c3", S, "buy", "limit", 99.0, 1.0, 0, status=OrderStatus.FILLED)
    assert recovery.to_query([never_acked, acked, done]) == [never_acked, acked]
    ev = recovery.resolve(never_acked, None)  # the venue never saw it: rejected, never sent again
    assert (ev.status, ev.error_msg) == (OrderStatus.REJECTED, recovery.NEVER_SENT)
    ev = recovery.resolve(acked, None)  # the venue lost it: cancelled with the fills we have
    assert (ev.status, ev.filled_quantity, ev.avg_price, ev.fee) == (OrderStatus.CANCELLED, 1.0, 99.0, 0.1)
    answer = OrderEvent("v2", OrderStatus.FILLED, filled_quantity=2.0, avg_price=99.0)
    assert recovery.resolve(acked, answer) is answer  # the venue knows: its word
