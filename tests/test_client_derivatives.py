"""The client side of derivatives, without sockets: the welcome's instruments are known before the
replay that follows it (so replayed fills of contracts get their PnL right), account events share the
order reports' seq and update ``positions``, and the order helpers carry ``reduce_only``."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from seqtrade import wire
from seqtrade.client import AccountEvent, Strategy
from seqtrade.client.protocol import ClientProtocol, Report, Synced
from seqtrade.instruments import Instrument, InstrumentKind
from seqtrade.models import AccountEventKind, OrderReport, OrderRequest, OrderStatus, Welcome

SID = "s1"
SWAP = "BTC-USDT-SWAP"
INV = "BTC-USD-SWAP"
LINEAR = Instrument(SWAP, 0.1, 0.01, 0.01, None, 0.01, InstrumentKind.SWAP, "BTC", "USDT", "BTC", "USDT",
                    False, 100.0)  # fmt: skip
INVERSE = Instrument(
    INV, 0.1, 1.0, 1.0, None, 100.0, InstrumentKind.SWAP, "USD", "BTC", "BTC", "USD", True, 100.0
)


def fill(seq: int, symbol: str, side: str, qty: float, price: float) -> OrderReport:
    return OrderReport(seq, f"c{seq}", f"x{seq}", SID, symbol, side, "limit", price, qty, OrderStatus.FILLED,
                       qty, price, qty, price, 0.0)  # fmt: skip


class Conn:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, msg: Any) -> None:
        self.sent.append(msg)

    def send_frame(self, frame: bytes, client_order_id: str = "") -> None:  # an order helper's frame
        self.sent.append(wire.parse_request(frame))


def test_replayed_contract_fills_and_events_rebuild_positions_with_pnl_in_the_settlement_currency() -> None:
    n = itertools.count(1)
    proto = ClientProtocol(SID, nonce_factory=lambda: f"n{next(n)}")
    s = Strategy()
    s._protocol = proto
    proto.hello(0.0)
    (hello,) = proto.requests_to_send()
    # the welcome comes first (last seq 4), then the replay of what happened before
    welcome = Welcome(SID, hello.nonce, 4, [], instruments=[LINEAR, INVERSE])
    assert proto.receive_report_frame(wire.encode_message(welcome), 0.0) is None
    assert proto.instruments == {SWAP: LINEAR, INV: INVERSE}
    funding = AccountEvent(
        SID, 3, AccountEventKind.FUNDING, SWAP, "", 0.0, 61000.0, -0.12, "USDT", "bill:1", 1
    )
    liq = AccountEvent(
        SID, 4, AccountEventKind.LIQUIDATION, INV, "", -100.0, 45000.0, -0.001, "BTC", "bill:2", 2
    )
    frames = [fill(1, SWAP, "buy", 3, 60000.0), fill(2, INV, "buy", 200, 50000.0), funding, liq]
    events = [proto.receive_report_frame(wire.encode_message(m), 0.0) for m in frames]
    assert all(isinstance(e, Report) and e.joining for e in events)
    assert isinstance(events[-1], Report) and isinstance(events[-1].synced, Synced)
    for e in events:
        assert isinstance(e, Report)
        if isinstance(e.report, AccountEvent):
            s._apply_account_event(e.report)
        else:
            s._apply_report(e.report)
    assert s.instrument(SWAP) == LINEAR and s.instrument(SWAP).contract_value == 0.01
    with pytest.raises(KeyError, match="ETH-USDT-SWAP"):
        s.instrument("ETH-USDT-SWAP")
    swap, inv = s.positions[SWAP], s.positions[INV]
    assert (swap.quantity, swap.currency, swap.funding) == (3, "USDT", -0.12)
    assert (inv.quantity, inv.currency, inv.funding) == (100, "BTC", -0.001)  # half liquidated
    # closing the linear position: PnL uses the contract value, in USDT
    swap.apply_fill("sell", 3, 61000.0)
    assert swap.realized_pnl == pytest.approx(30.0)


def test_order_helpers_send_reduce_only() -> None:
    s = Strategy()
    s.strategy_id = SID
    conn = Conn()
    s._conn = conn  # type: ignore[assignment]
    s.sell_limit(SWAP, 61000.0, 2, reduce_only=True)
    s.buy_market(SWAP, 1, reduce_only=True)
    s.buy_limit(SWAP, 59000.0, 1)
    sent = [m for m in conn.sent if isinstance(m, OrderRequest)]
    assert [m.reduce_only for m in sent] == [True, True, False]
    body = wire.codec_for(OrderRequest).encode(sent[0])
    assert body["reduce_only"] is True and "reduce_only" not in wire.codec_for(OrderRequest).encode(sent[2])
