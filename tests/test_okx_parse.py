"""Pure OKX conversions against payloads from docs/okx.md (tests/fixtures/okx/*.json)."""

from __future__ import annotations

import ast
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seqtrade.models import OrderStatus, OrderType, Side
from seqtrade.venues.base import EventKind, VenueOrder
from seqtrade.venues.okx import parse
from seqtrade.venues.okx.parse import (
    amend_args,
    book_from_okx,
    cancel_args,
    check_order,
    format_on_grid,
    instrument_from_okx,
    order_event_from_okx,
    place_args,
    ticker_from_okx,
    trade_from_okx,
    write_error,
)
from seqtrade.venues.okx.tracking import OrderTracker

FIX = Path(__file__).parent / "fixtures" / "okx"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIX / name).read_text())


SPEC = instrument_from_okx(load("instruments_spot.json")["data"][0])


def test_pure_modules_import_no_io_libraries() -> None:
    src = Path(parse.__file__).parent
    for name in ("messages.py", "parse.py", "auth.py", "tracking.py", "errors.py"):
        tree = ast.parse((src / name).read_text())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            for mod in mods:
                assert mod.split(".")[0] not in {"trio", "zmq", "httpx", "trio_websocket"}, (name, mod)


def test_instrument() -> None:
    assert SPEC.symbol == "BTC-USDT" and SPEC.code == 1000000000
    assert (SPEC.tick, SPEC.lot, SPEC.min_size) == (Decimal("0.1"), Decimal("0.00000001"), Decimal("0.00001"))
    inst = SPEC.to_instrument()
    assert (inst.symbol, inst.tick_size, inst.lot_size, inst.min_size, inst.code) == (
        "BTC-USDT",
        0.1,
        1e-8,
        1e-5,
        1000000000,
    )
    assert (
        instrument_from_okx(
            {"instId": "X-Y", "tickSz": "1", "lotSz": "1", "minSz": "1", "instIdCode": None}
        ).code
        is None
    )


def test_market_data() -> None:
    t = ticker_from_okx(load("ws_tickers.json")["data"][0])
    assert (t.symbol, t.ts, t.last_price, t.bid_price, t.ask_price, t.bid_size, t.ask_size, t.volume_24h) == (
        "BTC-USDT",
        1597026383085,
        9999.99,
        8888.88,
        9999.99,
        5.0,
        11.0,
        2222.0,
    )
    b = book_from_okx(load("ws_books5.json")["data"][0], "BTC-USDT")
    assert b.bids == [[8476.97, 256.0], [8475.55, 101.0]] and b.asks[0] == [8476.98, 415.0]
    tr = trade_from_okx(load("ws_trades.json")["data"][0])
    assert (tr.trade_id, tr.price, tr.size, tr.side, tr.ts) == (
        "130639474",
        42219.9,
        0.12060306,
        "buy",
        1630048897897,
    )
    assert ticker_from_okx({"instId": "A-B", "askPx": "", "bidPx": ""}).ask_price == 0.0


def test_order_event_from_push_and_rest() -> None:
    push = load("ws_orders_filled.json")["data"][0] | {"clOrdId": "c1"}
    e = order_event_from_okx(push)
    assert e is not None
    assert (e.venue_order_id, e.status, e.exchange_order_id) == (
        "c1",
        OrderStatus.FILLED,
        "452197707845865472",
    )
    # a stateless event is a snapshot: state and cumulative fields, never "this fill" (trade_id etc.)
    assert (e.filled_quantity, e.avg_price, e.last_fill_quantity, e.last_fill_price) == (
        0.001,
        31527.1,
        0.0,
        0.0,
    )
    assert e.fee == pytest.approx(0.02522168) and e.trade_id == "" and e.ts == 1654084353264
    rest = order_event_from_okx(load("order_details_market_filled.json")["data"][0])
    # a spot buy's fee is charged in BTC: reported in USDT at avgPx (51858)
    assert rest is not None and rest.price is None and rest.fee == pytest.approx(0.00000192834 * 51858)


@pytest.mark.parametrize(
    ("value", "step", "text"),
    [
        (0.1 + 0.2, "0.01", "0.3"),
        (100.0, "0.1", "100"),
        (100.15000000000001, "0.1", "100.2"),
        (1e-8, "0.00000001", "0.00000001"),
        (0.00012345678, "0.00000001", "0.00012346"),
        (12345678.9, "0.1", "12345678.9"),
        (2.675, "0.01", "2.68"),
        (3.0, "1", "3"),
    ],
)
def test_format_on_grid(value: float, step: str, text: str) -> None:
    assert format_on_grid(value, Decimal(step)) == text


@given(st.integers(min_value=1, max_value=10**12), st.sampled_from(["0.1", "0.01", "0.00000001", "1", "0.5"]))
def test_format_on_grid_is_exact_on_the_grid(n: int, step: str) -> None:
    s = Decimal(step)
    value = float(n * s)  # a grid point after a float round trip
    text = format_on_grid(value, s)
    assert "e" not in text.lower()
    assert Decimal(text) % s == 0
    assert abs(Decimal(text) - n * s) <= s / 2 or Decimal(text) == Decimal(repr(value)).quantize(s)


def order(
    t: OrderType, side: Side = Side.BUY, price: float | None = 100.1, qty: float = 0.3, vid: str = "abc1"
) -> VenueOrder:
    return VenueOrder(vid, "BTC-USDT", side, t, price, qty)


def test_place_args_rest_and_ws() -> None:
    rest = place_args(order(OrderType.LIMIT, price=0.1 + 100.2), SPEC, "cash", ws=False)
    assert rest == {
        "instId": "BTC-USDT",
        "tdMode": "cash",
        "clOrdId": "abc1",
        "side": "buy",
        "ordType": "limit",
        "sz": "0.3",
        "px": "100.3",
    }
    ws = place_args(order(OrderType.POST_ONLY, Side.SELL), SPEC, "cash", ws=True)
    assert ws["instIdCode"] == 1000000000 and "instId" not in ws and ws["ordType"] == "post_only"
    for t, name in [(OrderType.IOC, "ioc"), (OrderType.FOK, "fok")]:
        assert place_args(order(t), SPEC, "cash", ws=False)["ordType"] == name


def test_market_buy_sends_base_ccy() -> None:
    buy = place_args(order(OrderType.MARKET, price=None), SPEC, "cash", ws=False)
    assert buy["tgtCcy"] == "base_ccy" and "px" not in buy and buy["ordType"] == "market"
    sell = place_args(order(OrderType.MARKET, Side.SELL, price=None), SPEC, "cash", ws=False)
    assert "tgtCcy" not in sell


def test_cancel_and_amend_args() -> None:
    assert cancel_args("abc1", SPEC, ws=True) == {"instIdCode": 1000000000, "clOrdId": "abc1"}
    assert cancel_args("abc1", SPEC, ws=False) == {"instId": "BTC-USDT", "clOrdId": "abc1"}
    a = amend_args("abc1", SPEC, 99.95000000000001, 0.1 + 0.2, "a1", ws=False)
    assert a == {"instId": "BTC-USDT", "clOrdId": "abc1", "newSz": "0.3", "newPx": "100", "reqId": "a1"}
    assert "newPx" not in amend_args("abc1", SPEC, None, 1.0, "a2", ws=True)


def test_check_order() -> None:
    assert check_order(order(OrderType.LIMIT), SPEC) is None
    assert "unknown symbol" in (check_order(order(OrderType.LIMIT), None) or "")
    assert "letters and digits" in (check_order(order(OrderType.LIMIT, vid="a-b"), SPEC) or "")
    assert "letters and digits" in (check_order(order(OrderType.LIMIT, vid="x" * 33), SPEC) or "")
    assert "needs a price" in (check_order(order(OrderType.LIMIT, price=None), SPEC) or "")
    assert "> 0" in (check_order(order(OrderType.LIMIT, qty=0.0), SPEC) or "")


def test_write_error() -> None:
    assert write_error(load("place_ok.json")) is None
    assert write_error(load("ws_order_op_response.json")) is None
    assert (
        write_error(load("place_rejected.json")) == "54109 You haven't activated trading for this pair. ..."
    )
    assert write_error(load("rate_limited.json")) == "50011 Too Many Requests"
    ok_with_msg = {"code": "0", "data": [{"sCode": "0", "sMsg": "Order placed"}]}
    assert write_error(ok_with_msg) is None


# ----------------------------------------------------------------------------- OrderTracker


def push(
    state: str,
    acc: str,
    *,
    trade: str = "",
    fill_sz: str = "0",
    fill_px: str = "",
    fee: str = "0",
    avg: str = "0",
    utime: int = 1,
    px: str = "100.1",
    sz: str = "1",
    **extra: str,
) -> dict[str, Any]:
    return {
        "instId": "BTC-USDT",
        "clOrdId": "abc1",
        "ordId": "9001",
        "state": state,
        "accFillSz": acc,
        "tradeId": trade,
        "fillSz": fill_sz,
        "fillPx": fill_px,
        "fee": fee,
        "avgPx": avg,
        "uTime": str(utime),
        "px": px,
        "sz": sz,
    } | extra


def tracked() -> OrderTracker:
    t = OrderTracker()
    t.track(order(OrderType.LIMIT, qty=1.0))
    return t


def test_tracker_lifecycle_and_duplicates() -> None:
    t = tracked()
    [acc] = t.placed("abc1", "9001", 1)
    assert acc.status is OrderStatus.ACCEPTED and acc.exchange_order_id == "9001"
    assert t.on_order(push("live", "0")) == []  # the push repeats what the ack said
    p1 = push(
        "partially_filled",
        "0.4",
        trade="t1",
        fill_sz="0.4",
        fill_px="100.1",
        fee="-0.0004",
        avg="100.1",
        utime=2,
    )
    [e1] = t.on_order(p1)
    assert (e1.status, e1.filled_quantity, e1.last_fill_quantity, e1.trade_id) == (
        OrderStatus.PARTIALLY_FILLED,
        0.4,
        0.4,
        "t1",
    )
    assert e1.fee == pytest.approx(0.0004)
    assert t.on_order(p1) == []  # duplicate push (same tradeId)
    [e2] = t.on_order(
        push("filled", "1", trade="t2", fill_sz="0.6", fill_px="100", fee="-0.001", avg="100.04", utime=3)
    )
    assert (e2.status, e2.filled_quantity, e2.last_fill_quantity, e2.avg_price) == (
        OrderStatus.FILLED,
        1.0,
        0.6,
        100.04,
    )
    assert t.on_order(push("filled", "1", trade="t2", fill_sz="0.6", utime=3)) == []
    assert t.open_ids() == []


def test_tracker_push_before_ack_and_reject_only_unacked() -> None:
    t = tracked()
    [e] = t.on_order(push("live", "0"))
    assert e.status is OrderStatus.ACCEPTED
    assert t.placed("abc1", "9001", 2) == []
    assert t.rejected("abc1", "51008 nope", 3) == []
    t2 = tracked()
    [r] = t2.rejected("abc1", "51008 Insufficient USDT balance", 3)
    assert r.status is OrderStatus.REJECTED and r.error_msg.startswith("51008")
    assert t2.on_order(push("live", "0")) == []  # terminal stays terminal


def test_tracker_reconcile_fills_then_snapshot_each_once() -> None:
    t = tracked()
    t.placed("abc1", "9001", 1)
    fills = [
        {
            "ordId": "9001",
            "tradeId": "t1",
            "fillPx": "100",
            "fillSz": "0.25",
            "fee": "-0.00025",
            "fillTime": "5",
        },
        {
            "ordId": "9001",
            "tradeId": "t2",
            "fillPx": "101",
            "fillSz": "0.25",
            "fee": "-0.00025",
            "fillTime": "6",
        },
    ]
    events = [e for f in fills for e in t.on_fill(f)]
    assert [(e.filled_quantity, e.last_fill_quantity, e.trade_id) for e in events] == [
        (0.25, 0.25, "t1"),
        (0.5, 0.25, "t2"),
    ]
    assert events[-1].avg_price == pytest.approx(100.5) and events[-1].fee == pytest.approx(0.0005)
    # the REST snapshot of the same state adds nothing; a stale one does not go backwards
    assert (
        t.on_order(
            push("partially_filled", "0.5", trade="t2", fill_sz="0.25", fee="-0.0005", avg="100.5", utime=6)
        )
        == []
    )
    assert t.on_order(push("live", "0", utime=1)) == []
    # the later push of a fill already learnt over REST is a duplicate
    assert t.on_order(push("partially_filled", "0.25", trade="t1", fill_sz="0.25", utime=5)) == []
    [c] = t.on_order(push("canceled", "0.5", utime=9, cancelSource="14"))
    assert c.status is OrderStatus.CANCELLED and c.filled_quantity == 0.5 and "IOC" in c.error_msg


def test_tracker_late_rest_fill_inside_a_pushed_cumulative_is_not_counted_twice() -> None:
    t = tracked()
    t.placed("abc1", "9001", 1)
    # t1's push was lost; t2's push (cumulative 0.5, includes t1) came before reconcile read the fills
    [e] = t.on_order(
        push("partially_filled", "0.5", trade="t2", fill_sz="0.2", fill_px="101", avg="100.4", utime=6)
    )
    assert (e.filled_quantity, e.last_fill_quantity) == (0.5, 0.2)
    t1 = {
        "ordId": "9001",
        "tradeId": "t1",
        "fillPx": "100",
        "fillSz": "0.3",
        "fee": "-0.0003",
        "fillTime": "5",
    }
    t2 = {
        "ordId": "9001",
        "tradeId": "t2",
        "fillPx": "101",
        "fillSz": "0.2",
        "fee": "-0.0002",
        "fillTime": "6",
    }
    assert t.on_fill(t1) == [] and t.on_fill(t2) == []
    [e3] = t.on_fill({"ordId": "9001", "tradeId": "t3", "fillPx": "102", "fillSz": "0.5", "fee": "-0.0005"})
    assert (
        e3.filled_quantity == 1.0 and e3.status is OrderStatus.FILLED and e3.avg_price == pytest.approx(101.2)
    )


def test_tracker_amend_and_amend_failure() -> None:
    t = tracked()
    t.placed("abc1", "9001", 1)
    [a] = t.on_order(push("live", "0", px="99.5", sz="2", utime=4, amendResult="0", reqId="a1"))
    assert (a.price, a.quantity) == (99.5, 2.0)
    failed = push(
        "live",
        "0",
        px="99.5",
        sz="2",
        utime=5,
        amendResult="-1",
        reqId="a2",
        code="51503",
        msg="amend failed",
    )
    [f] = t.on_order(failed)
    assert f.kind is EventKind.AMEND_FAILED and f.error_msg == "51503 amend failed"
    assert t.on_order(failed) == []


def test_tracker_unknown_orders_and_foreign_pushes() -> None:
    t = OrderTracker()
    [e] = t.on_order(push("live", "0") | {"clOrdId": "restart7"})
    assert e.venue_order_id == "restart7"
    assert t.on_order(push("live", "0") | {"clOrdId": "", "ordId": "x"}) == []
    [cf] = t.request_failed("nope", EventKind.CANCEL_FAILED, "51400 gone", 1)
    assert cf.kind is EventKind.CANCEL_FAILED and cf.error_msg == "51400 gone"


def test_tracker_forgets_old_terminal_orders() -> None:
    t = OrderTracker(keep_terminal=2)
    for i in range(4):
        t.track(order(OrderType.LIMIT, vid=f"o{i}"))
        t.rejected(f"o{i}", "x", 1)
    assert "o0" not in t and "o1" not in t and "o3" in t
