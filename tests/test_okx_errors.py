"""The OKX error-code table (venues/okx/errors.py) and the typed WebSocket messages (messages.py), pure.

The table is the one place the adapter learns what a code means; docs/okx.md §2.14 shows the same
table, and a test here keeps the two equal.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from seqtrade.venues.okx import messages as m
from seqtrade.venues.okx.errors import (
    CODES,
    FAMILIES,
    CodeClass,
    QueryResult,
    code_class,
    is_auth,
    is_clock,
    is_outcome_unknown,
    lookup,
    query_result,
)
from seqtrade.venues.okx.parse import MARKET_CHANNELS, book_from_okx, ticker_from_okx, trade_from_okx

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "okx"

U, R, A, C, T = (CodeClass.OUTCOME_UNKNOWN, CodeClass.REJECTED, CodeClass.AUTH, CodeClass.CLOCK,
                 CodeClass.RETRIABLE)  # fmt: skip


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        # answers that do not say whether a write was done: the adapter queries, never re-sends
        ("50001", U), ("50004", U), ("50013", U), ("50026", U),
        # signed off the exchange clock: re-sync (REST 50102, expTime drops, WS login 60004/60006)
        ("50102", C), ("60004", C), ("60006", C),
        # refusals reported with their reason (the REST check raises a plain VenueError for these)
        ("50011", R), ("50061", R), ("50014", R), ("51000", R), ("51008", R), ("51400", R),
        ("51503", R), ("51513", R), ("51603", R), ("50112", R), ("54109", R), ("1", R), ("2", R),
        # fatal: key, passphrase, signature
        ("50100", A), ("50101", A), ("50105", A), ("50111", A), ("50113", A), ("50114", A),
        ("50199", A), ("60005", A), ("60007", A), ("60009", A), ("60024", A), ("60032", A),
        ("60001", A),
        # the notice before a service upgrade: reconnect at once
        ("64008", T),
    ],
)  # fmt: skip
def test_each_code_the_adapter_meets_is_classified(code: str, cls: CodeClass) -> None:
    assert code_class(code) is cls
    assert is_auth(code) is (cls is A)
    assert is_clock(code) is (cls is C)
    assert is_outcome_unknown(code) is (cls is U)


def test_lookup_takes_numbers_and_says_what_a_code_means() -> None:
    assert lookup(50004) == lookup("50004")  # older servers sent numbers (§1.6)
    assert "timeout" in lookup("50004").meaning
    assert lookup("50199").code == "501xx" and lookup("60003").code == "6000x"  # the families
    assert lookup("99999").cls is R and lookup("99999").code == "99999"  # not listed: rejected
    assert all(e.meaning for e in CODES.values())


def _old_rest_auth_rule(code: str) -> bool:
    """What the REST check treated as fatal before the table (rest.py, issue 10)."""
    return code.startswith(("501", "6000")) and code not in ("50102", "50112")


def test_the_rest_auth_rule_is_the_old_one_but_for_four_ws_login_codes() -> None:
    """Over every 5-digit code, ``is_auth`` agrees with the prefix rule it replaced, except the WS login
    codes the table classifies by meaning (OKX sends them on the socket only, never over REST)."""
    differ = {c for n in range(10_000, 100_000) if is_auth(c := str(n)) != _old_rest_auth_rule(c)}
    assert differ == {"60004", "60006", "60024", "60032"}


def test_query_result() -> None:
    assert query_result("0", [{"clOrdId": "a"}]) is QueryResult.FOUND
    assert query_result("0", []) is QueryResult.NOT_FOUND  # seen as well as 51603 (§9)
    assert query_result("51603", []) is QueryResult.NOT_FOUND
    assert query_result(51603, []) is QueryResult.NOT_FOUND
    assert query_result("50004", []) is QueryResult.ERROR
    assert query_result("50011", [{"x": 1}]) is QueryResult.ERROR


def _docs_table() -> tuple[dict[str, CodeClass], dict[str, CodeClass]]:
    """docs/okx.md §2.14 as (code -> class, family prefix -> class)."""
    doc = (ROOT / "docs" / "okx.md").read_text(encoding="utf-8")
    section = doc[doc.index("### 2.14 ") : doc.index("\n## 3. ")]
    codes: dict[str, CodeClass] = {}
    families: dict[str, CodeClass] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[2] or cells[2] == "class" or set(cells[2]) <= {"-"}:
            continue
        cls = CodeClass(cells[2])
        family = re.match(r"(\d+)x+ other", cells[0])
        if family:
            families[family.group(1)] = cls
            continue
        for code in re.findall(r"\b\d{5}\b", cells[0]):  # (not the 3-digit HTTP statuses)
            assert code not in codes, f"{code} twice in docs/okx.md §2.14"
            codes[code] = cls
    return codes, families


def test_docs_table_and_code_table_agree() -> None:
    codes, families = _docs_table()
    assert len(codes) > 30  # the parse is not vacuous
    assert codes == {c: e.cls for c, e in CODES.items()}
    assert families == {p: e.cls for p, e in FAMILIES.items()}


# --------------------------------------------------------------------------- typed WebSocket messages


def _frame(name: str) -> str:
    return (FIX / name).read_text()


def test_a_trading_op_answer_decodes_as_a_write_answer() -> None:
    msg = m.ws_message(_frame("ws_order_op_response.json"))
    assert isinstance(msg, m.WriteAnswer)
    assert (msg.id, msg.op, msg.code) == ("1512", "order", "0")
    assert msg.error() is None and msg.first.get("ordId") == "12345689" and len(msg.items) == 1
    refused = m.ws_message(
        '{"id":"7","op":"order","code":"1","msg":"","data":[{"sCode":"51008","sMsg":"Insufficient"}]}'
    )
    assert isinstance(refused, m.WriteAnswer) and refused.error() == "51008 Insufficient"
    bare = m.ws_message('{"id":"8","op":"order","code":"60013","msg":"Invalid args","data":[]}')
    assert isinstance(bare, m.WriteAnswer) and bare.error() == "60013 Invalid args" and bare.items == []


def test_events_decode_with_their_fields() -> None:
    login = m.ws_message('{"event":"login","code":"0","msg":"","connId":"a4d3ae55"}')
    assert login == m.WsEvent(event="login", code="0")
    error = m.ws_message('{"event":"error","code":"60009","msg":"Login failed.","connId":"x"}')
    assert isinstance(error, m.WsEvent) and (error.event, error.code, error.msg) == (
        "error",
        "60009",
        "Login failed.",
    )
    sub = m.ws_message('{"event":"subscribe","arg":{"channel":"orders","instType":"SPOT"}}')
    assert sub == m.WsEvent(event="subscribe", code="0")  # no code: success
    count = m.ws_message('{"event":"channel-conn-count-error","channel":"orders","connCount":"30"}')
    assert isinstance(count, m.WsEvent) and (count.channel, count.conn_count) == ("orders", "30")
    notice = m.ws_message('{"event":"notice","code":"64008","msg":"upgrade"}')
    assert isinstance(notice, m.WsEvent) and code_class(notice.code) is T


def test_pushes_decode_by_channel() -> None:
    orders = m.ws_message(_frame("ws_orders_filled.json"))
    assert isinstance(orders, m.WsPush) and orders.channel == m.ORDERS_CHANNEL
    assert orders.orders() and orders.orders()[0].get("state") == "filled"
    for name, convert in (("ws_tickers.json", ticker_from_okx), ("ws_trades.json", trade_from_okx)):
        push = m.ws_message(_frame(name))
        raw = json.loads(_frame(name))
        assert isinstance(push, m.WsPush) and push.channel == raw["arg"]["channel"]
        assert [MARKET_CHANNELS[push.channel](d, push.inst_id) for d in push.data] == [
            convert(d) for d in raw["data"]
        ]
    book = m.ws_message(_frame("ws_books5.json"))
    raw = json.loads(_frame("ws_books5.json"))
    assert isinstance(book, m.WsPush) and book.inst_id == raw["arg"]["instId"]
    assert MARKET_CHANNELS["books5"](book.data[0], book.inst_id) == book_from_okx(
        raw["data"][0], raw["arg"]["instId"]
    )


def test_every_public_channel_subscribed_has_a_converter() -> None:
    assert set(MARKET_CHANNELS) == set(m.PUBLIC_CHANNELS)


@pytest.mark.parametrize("frame", ["pong", b"pong", "not json", "[1, 2]", "42", b"\xff\xfe"])
def test_frames_that_are_not_messages(frame: str | bytes) -> None:
    assert m.ws_message(frame) is None


def test_a_push_keeps_only_object_items() -> None:
    push = m.ws_message('{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"px":"1"},"junk",3]}')
    assert isinstance(push, m.WsPush) and push.data == ({"px": "1"},)
