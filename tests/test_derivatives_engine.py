"""The engine's derivative rules, driven without sockets over a real journal: reduce-only and posSide
judged against the ACCOUNT's position, price limits refused before the venue, account events split
between the holders (strategies and ``external``) and applied once per event id, also after a restart
from the journal."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from seqtrade.config import Config, parse_config
from seqtrade.instruments import Instrument, InstrumentKind
from seqtrade.models import (
    AccountEvent,
    AccountEventKind,
    OrderReport,
    OrderRequest,
    OrderStatus,
    OrderType,
    PriceLimit,
    Side,
)
from seqtrade.server.accounts import Accounts
from seqtrade.server.engine import Commit, Engine, Place, ReportItem
from seqtrade.server.journal import Journal
from seqtrade.server.positions import EXTERNAL, attribute, position_effect
from seqtrade.server.risk import Quotes, RiskGate
from seqtrade.venues.base import OrderEvent, VenueAccountEvent, VenueOrder

SWAP = "BTC-USDT-SWAP"
INV = "BTC-USD-SWAP"
INSTRUMENTS = {
    SWAP: Instrument(SWAP, 0.1, 0.01, 0.01, None, 0.01, InstrumentKind.SWAP, "BTC", "USDT", "BTC", "USDT",
                     False, 100.0),
    INV: Instrument(INV, 0.1, 1.0, 1.0, None, 100.0, InstrumentKind.SWAP, "USD", "BTC", "BTC", "USD", True, 100.0),
    "BTC-USDT": Instrument("BTC-USDT", 0.1, 1e-8, 1e-5),
}  # fmt: skip

CONFIG = """
[venue]
symbols = ["BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-SWAP"]
[venue.derivatives]
position_mode = "{mode}"
"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Harness:
    """The engine with a journal, performing its outputs like the gateway; the venue fills what it
    is told to."""

    def __init__(self, tmp: Path, mode: str = "net") -> None:
        self.tmp = tmp
        self.config: Config = parse_config(CONFIG.format(mode=mode), base_dir=str(tmp))
        self.journal = Journal(tmp / "journal.sqlite", synchronous="off")
        self.start(Accounts())

    def start(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self.accounts.instrument = INSTRUMENTS.get
        self.quotes = Quotes()
        gate = RiskGate(self.config.risk, positions=self.accounts, mid=lambda _: 60000.0,
                        instrument=INSTRUMENTS.get, clock=lambda: 0.0)  # fmt: skip
        self.engine = Engine(self.config, instruments=lambda: INSTRUMENTS, risk=gate, accounts=self.accounts,
                             find_order=self.journal.find_order, seqs=self.journal.last_seqs())  # fmt: skip
        self.engine.quotes = self.quotes
        self.sent: dict[str, VenueOrder] = {}
        self.published: list[OrderReport | AccountEvent] = []

    def order(self, sid: str, coid: str, side: str, qty: float, price: float = 60000.0,
              reduce_only: bool = False) -> OrderReport | VenueOrder:  # fmt: skip
        """Send an order; the venue order it became, or the report that rejected it."""
        req = OrderRequest(sid, coid, SWAP if not coid.startswith("i") else INV, Side(side), OrderType.LIMIT,
                           price, qty, now_ms(), reduce_only)  # fmt: skip
        out = self.engine.on_request(req, now_ms())
        for rec, sent in out.journal:
            self.journal.add_record(rec, sent=sent)
        self.drain(list(out.replies))
        for cmd in out.venue:
            assert isinstance(cmd, Place)
            self.sent[coid] = cmd.order
            return cmd.order
        report = self.published[-1]
        assert isinstance(report, OrderReport) and report.status is OrderStatus.REJECTED
        return report

    def fill(self, coid: str) -> None:
        o = self.sent[coid]
        price = o.price or 60000.0
        self.drain([OrderEvent(o.venue_order_id, OrderStatus.FILLED, filled_quantity=o.quantity, avg_price=price,
                               last_fill_quantity=o.quantity, last_fill_price=price, trade_id=f"t-{coid}")])  # fmt: skip

    def drain(self, items: list[ReportItem]) -> None:
        for step in self.engine.report_steps(items):
            if isinstance(step, Commit):
                self.journal.add_reports(step.rows, step.fills)
                self.engine.committed(step)
                self.published += step.reports

    def events(self, sid: str) -> list[AccountEvent]:
        return [e for e in self.published if isinstance(e, AccountEvent) and e.strategy_id == sid]


@pytest.fixture
def net(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_two_strategies_on_opposite_sides_keep_their_own_positions_and_the_account_nets(net: Harness) -> None:
    net.order("a", "a1", "buy", 3)
    net.fill("a1")
    net.order("b", "b1", "sell", 1)
    net.fill("b1")
    assert net.accounts.position("a", SWAP) == 3 and net.accounts.position("b", SWAP) == -1
    assert net.accounts.net(SWAP) == pytest.approx(2)
    # a's reduce-only sell reduces the account's long: sent, flagged reduce-only, net mode: no posSide
    o = net.order("a", "a2", "sell", 2, reduce_only=True)
    assert isinstance(o, VenueOrder) and o.reduce_only and o.pos_side == ""
    # b's "close" (a buy of 1) increases the account's long: as reduce-only it is refused, never sent
    r = net.order("b", "b2", "buy", 1, reduce_only=True)
    assert isinstance(r, OrderReport) and "would not reduce the account's position" in r.error_msg
    assert "b2" not in net.sent
    # with a2 still open, another reduce-only sell of 1 would exceed the account's long of 2
    r = net.order("a", "a3", "sell", 1, reduce_only=True)
    assert isinstance(r, OrderReport) and "exceeds the account's position +2" in r.error_msg
    # PnL in the settlement currency with the contract value: a bought 3 at 60000, sells 2 at 61000
    net.sent["a2"].price = 61000.0
    net.fill("a2")
    book = net.accounts.books[("a", SWAP)]
    assert book.realized_pnl == pytest.approx(2 * 0.01 * 1000) and book.currency == "USDT"


def test_a_reduce_only_order_on_spot_is_refused_with_the_reason(net: Harness) -> None:
    out = net.engine.on_request(OrderRequest("a", "s1", "BTC-USDT", Side.SELL, OrderType.LIMIT, 60000.0, 0.1,
                                             now_ms(), True), now_ms())  # fmt: skip
    assert not out.venue
    net.drain(list(out.replies))
    last = net.published[-1]
    assert isinstance(last, OrderReport) and "reduce_only applies to swaps and futures" in last.error_msg


def test_long_short_mode_opens_and_closes_legs_and_never_sends_an_order_that_does_both(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, "long_short")
    o = h.order("a", "a1", "buy", 2)
    assert isinstance(o, VenueOrder) and o.pos_side == "long" and not o.reduce_only
    h.fill("a1")
    o = h.order("a", "a2", "sell", 1)  # closes part of a's long
    assert isinstance(o, VenueOrder) and o.pos_side == "long"
    r = h.order("a", "a3", "sell", 2)  # 1 left to close (a2 pending): closing 2 would also open a short
    assert isinstance(r, OrderReport) and "may not close and open at once" in r.error_msg
    o = h.order("b", "b1", "sell", 1)  # b holds nothing: opens a short leg
    assert isinstance(o, VenueOrder) and o.pos_side == "short"
    r = h.order("b", "b2", "buy", 1, reduce_only=True)  # b's short is not filled yet: nothing to reduce
    assert isinstance(r, OrderReport) and "holds no short position" in r.error_msg


def test_an_order_outside_the_price_limits_is_refused_before_the_venue(net: Harness) -> None:
    net.quotes.limits[SWAP] = PriceLimit(SWAP, 1, 61200.0, 58800.0)
    r = net.order("a", "a1", "buy", 1, price=61300.0)
    assert isinstance(r, OrderReport) and r.error_msg == (
        "price limit: a buy at 61300 is above the venue's buy limit 61200 for BTC-USDT-SWAP"
    )
    r = net.order("a", "a2", "sell", 1, price=58700.0)
    assert isinstance(r, OrderReport) and "below the venue's sell limit 58800" in r.error_msg
    assert isinstance(net.order("a", "a3", "buy", 1, price=61200.0), VenueOrder)


def test_account_events_are_split_pro_rata_applied_once_and_survive_a_restart(net: Harness) -> None:
    net.order("a", "a1", "buy", 3)
    net.fill("a1")
    net.order("b", "b1", "sell", 1)
    net.fill("b1")
    net.drain(
        [VenueAccountEvent(AccountEventKind.ADJUSTMENT, SWAP, "adj-1", quantity=0.5)]
    )  # by hand: external
    assert net.accounts.position(EXTERNAL, SWAP) == 0.5 and net.accounts.net(SWAP) == pytest.approx(2.5)
    funding = VenueAccountEvent(AccountEventKind.FUNDING, SWAP, "bill-8", price=60000.0, amount=-0.25,
                                currency="USDT")  # fmt: skip
    net.drain([funding, funding])  # twice in one batch
    net.drain([funding])  # and again later
    (fa,), (fb,), (fx,) = net.events("a"), net.events("b"), net.events(EXTERNAL)[1:]
    assert (fa.amount, fb.amount, fx.amount) == pytest.approx((-0.3, 0.1, -0.05))  # 3/2.5, -1/2.5, 0.5/2.5
    assert fa.currency == "USDT" and fa.event_id == "bill-8" and fa.quantity == 0
    # a liquidation of the whole net long: every holder is flat afterwards, and it is told to each
    liq = VenueAccountEvent(AccountEventKind.LIQUIDATION, SWAP, "liq-1", quantity=-2.5, price=55000.0,
                            amount=-12.5, currency="USDT")  # fmt: skip
    net.drain([liq])
    assert net.accounts.holders(SWAP) == {}
    assert [e.kind for e in net.events("a")] == ["funding", "liquidation"]
    # accepted, filled, then the two events: one seq stream
    assert [e.seq for e in net.published if e.strategy_id == "a"] == [1, 2, 3, 4]
    # a restart: the accounts rebuilt from the journal, the engine from its seqs; the same events
    # delivered again (a venue replaying its bills after a reconnect) are applied once still
    net.start(Accounts())
    net.accounts.rebuild(net.journal)
    before = dict(net.accounts.books)
    net.drain([funding, liq])
    assert net.published == [] and net.accounts.books == before
    journaled = net.journal.reports_after("a", 0, 100)
    assert [type(r).__name__ for r in journaled] == ["OrderReport"] * 2 + ["AccountEvent"] * 2


def test_attribution_adds_up_and_goes_to_external_when_nobody_holds() -> None:
    parts = attribute({"a": 3.0, "b": -1.0, EXTERNAL: 0.5}, -2.5, -0.7)
    assert sum(q for q, _ in parts.values()) == pytest.approx(-2.5)
    assert sum(a for _, a in parts.values()) == pytest.approx(-0.7)
    assert attribute({}, 1.0, 2.0) == {EXTERNAL: (1.0, 2.0)}
    assert set(attribute({"a": 2.0, "b": -1.0}, -1.0, 0.0, "short")) == {"b"}


def test_position_effect_in_net_mode_is_judged_against_the_account_not_the_strategy() -> None:
    # the strategy is short 1 (its "close" is a buy) but the account is long 2: not reduce-only
    e = position_effect(mode="net", symbol=SWAP, side="buy", quantity=1, reduce_only=True,
                        strategy_position=-1, account_position=2, pending_reduce=0)  # fmt: skip
    assert e.refusal and "the account is long (+2" in e.refusal
    e = position_effect(mode="net", symbol=SWAP, side="sell", quantity=1, reduce_only=False,
                        strategy_position=-1, account_position=-2, pending_reduce=0)  # fmt: skip
    assert e.pos_side == "" and not e.reduce_only and not e.refusal


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('"ETH-USDT-SWAP"]\nleverage = 5', "'ETH-USDT-SWAP' is not in venue.symbols"),
        ('"BTC-USDT"]\nmargin_mode = "cross"', "'BTC-USDT' is spot; margin mode and leverage apply to swaps"),
        ('"BTC-USDT-SWAP"]\nleverage = 200', "leverage: must be 0 (leave as set) or between 1 and 125"),
        ('"BTC-USDT-SWAP"]\nmargin_mode = "portfolio"', "margin_mode"),
    ],
)
def test_the_derivatives_config_names_what_is_wrong(tmp_path: Path, table: str, error: str) -> None:
    from seqtrade.errors import ConfigError

    text = CONFIG.format(mode="net") + f"[venue.derivatives.instruments.{table}\n"
    with pytest.raises(ConfigError, match=re.escape(error)):
        parse_config(text, base_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="position_mode"):
        parse_config(CONFIG.format(mode="hedge"), base_dir=str(tmp_path))


def test_an_event_after_a_fill_in_the_same_batch_is_split_by_the_position_after_the_fill(
    net: Harness,
) -> None:
    net.order("a", "a1", "buy", 1)
    net.fill("a1")
    o = net.order("b", "b1", "buy", 3)
    assert isinstance(o, VenueOrder)
    fill_b = OrderEvent(o.venue_order_id, OrderStatus.FILLED, filled_quantity=3, avg_price=60000.0,
                        last_fill_quantity=3, last_fill_price=60000.0, trade_id="t-b1")  # fmt: skip
    funding = VenueAccountEvent(AccountEventKind.FUNDING, SWAP, "bill-9", amount=-0.4, currency="USDT")
    net.drain([fill_b, funding])  # one batch: b's fill, then the funding on a position of 4
    (fa,), (fb,) = net.events("a"), net.events("b")
    assert (fa.amount, fb.amount) == pytest.approx((-0.1, -0.3))
