"""The fake OKX's derivatives (SWAP / FUTURES), exercised with raw signed REST calls and WebSocket
subscriptions (no seqtrade code), so that the adapter's tests can rely on each rule and event.

Expectations come from the derivatives sheet (D§ numbers in tests/fakeokx/README.md); arithmetic
is recomputed here from OKX's formulas (linear / inverse), not read back from the fake.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.fakeokx import FakeOkx, open_fake_okx

from .test_fakeokx import login_msg, private, recv, recv_until, rest_client

SWAP = "BTC-USDT-SWAP"
INV = "BTC-USD-SWAP"
TIMEOUT = 10


def order(
    side: str,
    sz: str,
    px: str | None = None,
    *,
    inst: str = SWAP,
    td: str = "cross",
    pos_side: str | None = None,
    reduce_only: bool | None = None,
    cl: str = "",
    ord_type: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "instId": inst,
        "tdMode": td,
        "side": side,
        "ordType": ord_type or ("limit" if px else "market"),
        "sz": sz,
    }
    if px:
        body["px"] = px
    if pos_side is not None:
        body["posSide"] = pos_side
    if reduce_only is not None:
        body["reduceOnly"] = reduce_only
    if cl:
        body["clOrdId"] = cl
    return body


async def place(client: httpx.AsyncClient, fake: FakeOkx, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    r = await private(client, fake, "POST", "/api/v5/trade/order", body)
    return r.status_code, r.json()


async def get(client: httpx.AsyncClient, fake: FakeOkx, target: str) -> dict[str, Any]:
    r = await private(client, fake, "GET", target)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def post(client: httpx.AsyncClient, fake: FakeOkx, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    r = await private(client, fake, "POST", path, body)
    return r.status_code, r.json()


@asynccontextmanager
async def private_ws(
    fake: FakeOkx, *args: dict[str, Any]
) -> AsyncIterator[tuple[WebSocketConnection, dict[str, Any]]]:
    """Logged-in private socket subscribed to ``args``: acks and conn counts consumed, the
    subscription snapshots (positions pages, balance_and_position) returned by channel."""
    async with open_websocket_url(fake.ws_private_url) as ws:
        await ws.send_message(login_msg(fake))
        assert (await recv(ws))["event"] == "login"
        snapshots: dict[str, Any] = {}
        for arg in args:
            await ws.send_message(json.dumps({"op": "subscribe", "args": [arg]}))
            ack = await recv(ws)
            assert ack["event"] == "subscribe", ack
            count = await recv(ws)
            assert count["event"] == "channel-conn-count" and count["channel"] == arg["channel"], count
            if arg["channel"] == "positions":
                pages = [await recv(ws)]
                while not pages[-1]["lastPage"]:
                    pages.append(await recv(ws))
                snapshots["positions"] = pages
            elif arg["channel"] == "balance_and_position":
                snapshots["balance_and_position"] = await recv(ws)
        yield ws, snapshots


async def next_on(ws: WebSocketConnection, channel: str) -> dict[str, Any]:
    msg: dict[str, Any] = await recv_until(
        ws, lambda m: isinstance(m, dict) and m.get("arg", {}).get("channel") == channel and "data" in m
    )
    return msg


def dec(text: str) -> Decimal:
    return Decimal(text)


# ---------------------------------------------------------------------------- instruments, config


async def test_instruments_and_account_config() -> None:
    """D§1.3 rows (strings, instIdCode int, unknown extra fields), dated futures at 08:00 UTC
    on a Friday; D§3.1 config with string acctLv / posMode and Boolean autoLoan."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            swaps = (await client.get("/api/v5/public/instruments?instType=SWAP")).json()["data"]
            rows = {r["instId"]: r for r in swaps}
            assert set(rows) == {"BTC-USDT-SWAP", "ETH-USDT-SWAP", "BTC-USD-SWAP"}
            btc = rows[SWAP]
            assert (btc["ctVal"], btc["ctValCcy"], btc["ctType"], btc["settleCcy"]) == (
                "0.01",
                "BTC",
                "linear",
                "USDT",
            )
            assert (btc["lotSz"], btc["minSz"], btc["tickSz"], btc["lever"]) == ("0.01", "0.01", "0.1", "100")
            assert btc["instIdCode"] == 10459 and btc["baseCcy"] == "" and "maxPlatOILmt" in btc
            inv = rows[INV]
            assert (inv["ctVal"], inv["ctValCcy"], inv["ctType"], inv["settleCcy"], inv["lotSz"]) == (
                "100",
                "USD",
                "inverse",
                "BTC",
                "1",
            )
            futures = (await client.get("/api/v5/public/instruments?instType=FUTURES")).json()["data"]
            assert {f["instFamily"] for f in futures} == {"BTC-USDT", "BTC-USD"}
            for fut in futures:
                exp = datetime.fromtimestamp(int(fut["expTime"]) / 1000, tz=UTC)
                assert (exp.weekday(), exp.hour, exp.minute) == (4, 8, 0)
                assert fut["instId"].endswith(exp.strftime("-%y%m%d"))
                assert exp.timestamp() * 1000 > fake.now_ms()
            config = (await get(client, fake, "/api/v5/account/config"))["data"][0]
            assert config["acctLv"] == "2" and config["posMode"] == "net_mode"
            assert config["autoLoan"] is False


# ---------------------------------------------------------------------------- net mode: open, close, PnL


async def test_net_mode_open_close_linear_pnl_fees_and_pushes() -> None:
    """Net mode: a buy opens a long (pos signed), a sell closes it; fee = -(sz x ctVal x px x rate)
    in USDT; pnl = (exit - entry) x sz x ctVal on the closing fill only; positions pushes end with a
    pos "0" row; balance_and_position carries eventType "filled" with balData and posData."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.set_market(SWAP, bid=60000, ask=60000.1, bid_sz=100, ask_sz=100)
            usdt0 = dec(fake.balance("USDT")["cash"])
            async with private_ws(
                fake,
                {"channel": "orders", "instType": "SWAP"},
                {"channel": "positions", "instType": "ANY"},
                {"channel": "balance_and_position"},
            ) as (ws, snaps):
                [snap] = snaps["positions"]
                assert snap["eventType"] == "snapshot" and snap["curPage"] == 1 and snap["lastPage"] is True
                assert snap["data"] == [] and snap["arg"]["uid"] == fake.uid
                bap = snaps["balance_and_position"]
                assert bap["data"][0]["eventType"] == "snapshot" and bap["data"][0]["posData"] == []

                status, body = await place(client, fake, order("buy", "2", "60000.1", cl="open1"))
                assert status == 200 and body["code"] == "0", body
                live = await next_on(ws, "orders")
                assert live["data"][0]["state"] == "live"
                filled = (await next_on(ws, "orders"))["data"][0]
                assert filled["state"] == "filled" and filled["instType"] == "SWAP"
                assert filled["posSide"] == "net" and filled["tdMode"] == "cross"
                assert filled["fillSz"] == "2" and filled["accFillSz"] == "2"
                open_fee = -(dec("2") * dec("0.01") * dec("60000.1") * dec("0.001"))
                assert dec(filled["fillFee"]) == open_fee and filled["fillFeeCcy"] == "USDT"
                assert filled["fillPnl"] == "0" and filled["pnl"] == "0" and filled["category"] == "normal"
                assert filled["reduceOnly"] == "false"
                bap = (await next_on(ws, "balance_and_position"))["data"][0]
                assert bap["eventType"] == "filled"
                assert bap["posData"][0]["pos"] == "2" and bap["posData"][0]["posSide"] == "net"
                assert bap["balData"][0]["ccy"] == "USDT"
                assert bap["trades"] == [{"instId": SWAP, "tradeId": filled["tradeId"]}]
                row = (await next_on(ws, "positions"))["data"][0]
                assert row["pos"] == "2" and dec(row["avgPx"]) == dec("60000.1") and row["mgnMode"] == "cross"

                rest_pos = (await get(client, fake, "/api/v5/account/positions?instType=SWAP"))["data"]
                assert [(p["instId"], p["pos"], p["posSide"]) for p in rest_pos] == [(SWAP, "2", "net")]

                fake.set_market(SWAP, bid=60100, ask=60100.1, bid_sz=100, ask_sz=100)
                status, body = await place(client, fake, order("sell", "2", "60100", reduce_only=True))
                assert body["code"] == "0", body
                closing = await recv_until(
                    ws,
                    lambda m: (
                        m.get("arg", {}).get("channel") == "orders" and m["data"][0]["state"] == "filled"
                    ),
                )
                item = closing["data"][0]
                pnl = (dec("60100") - dec("60000.1")) * dec("2") * dec("0.01")
                assert dec(item["fillPnl"]) == pnl and dec(item["pnl"]) == pnl
                assert item["reduceOnly"] == "true"
                close_fee = -(dec("2") * dec("0.01") * dec("60100") * dec("0.001"))
                zero = await recv_until(
                    ws,
                    lambda m: m.get("arg", {}).get("channel") == "positions" and m["data"][0]["pos"] == "0",
                )
                assert zero["eventType"] == "event_update" and "curPage" not in zero
                assert dec(zero["data"][0]["realizedPnl"]) == pnl + open_fee + close_fee
            usdt1 = dec(fake.balance("USDT")["cash"])
            assert usdt1 - usdt0 == pnl + open_fee + close_fee
            assert (await get(client, fake, "/api/v5/account/positions"))["data"] == []
            fills = (await get(client, fake, "/api/v5/trade/fills?instType=SWAP"))["data"]
            assert [f["subType"] for f in fills] == ["2", "1"] and fills[0]["feeCcy"] == "USDT"
            assert dec(fills[0]["fillPnl"]) == pnl
            bills = (await get(client, fake, "/api/v5/account/bills?type=2"))["data"]
            assert len(bills) == 2 and all(b["ccy"] == "USDT" for b in bills)


# ---------------------------------------------------------------------------- order rules


async def test_pos_side_rules_and_position_mode() -> None:
    """D§10.2 / D§4.5: long/short mode + posSide missing or "net" -> per-item sCode 51000
    "Parameter posSide error " (top code "1", "All operations failed", HTTP 200); net mode refuses
    long/short the same way.  D§10.9: set-position-mode refused (59000) with a position open."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.set_market(SWAP, bid=60000, ask=60000.1, bid_sz=100, ask_sz=100)
            status, body = await place(client, fake, order("buy", "1", "59000", pos_side="long"))
            assert (status, body["code"], body["data"][0]["sCode"]) == (200, "1", "51000")
            status, body = await post(
                client, fake, "/api/v5/account/set-position-mode", {"posMode": "long_short_mode"}
            )
            assert (status, body) == (200, {"code": "0", "msg": "", "data": [{"posMode": "long_short_mode"}]})
            assert (await get(client, fake, "/api/v5/account/config"))["data"][0][
                "posMode"
            ] == "long_short_mode"
            for pos_side in (None, "net"):
                status, body = await place(client, fake, order("buy", "1", "59000", pos_side=pos_side))
                assert status == 200 and body["code"] == "1" and body["msg"] == "All operations failed"
                item = body["data"][0]
                assert (item["sCode"], item["sMsg"], item["ordId"]) == (
                    "51000",
                    "Parameter posSide error ",
                    "",
                )
            # open long, then open short: two positions side by side, pos positive on both
            assert (await place(client, fake, order("buy", "1", "60000.1", pos_side="long")))[1][
                "code"
            ] == "0"
            assert (await place(client, fake, order("sell", "3", "60000", pos_side="short")))[1][
                "code"
            ] == "0"
            rows = {p["posSide"]: p for p in (await get(client, fake, "/api/v5/account/positions"))["data"]}
            assert (rows["long"]["pos"], rows["short"]["pos"]) == ("1", "3")
            # closing = opposite side + same posSide, implicitly reduce-only: more than held -> 51112
            _, body = await place(client, fake, order("sell", "2", "60000", pos_side="long"))
            assert body["data"][0]["sCode"] == "51112"
            status, body = await post(
                client, fake, "/api/v5/account/set-position-mode", {"posMode": "net_mode"}
            )
            assert (status, body["code"], body["data"]) == (200, "59000", [])
            _, body = await place(client, fake, order("sell", "1", "60000", pos_side="long"))
            assert body["code"] == "0"
            _, body = await place(client, fake, order("buy", "3", "60000.1", pos_side="short"))
            assert body["code"] == "0"
            assert (await get(client, fake, "/api/v5/account/positions"))["data"] == []
            # flat and no order: back to net mode
            _, body = await post(client, fake, "/api/v5/account/set-position-mode", {"posMode": "net_mode"})
            assert body["code"] == "0"
            # close without a position -> 51169
            await post(client, fake, "/api/v5/account/set-position-mode", {"posMode": "long_short_mode"})
            _, body = await place(client, fake, order("sell", "1", "60000", pos_side="long"))
            assert body["data"][0]["sCode"] == "51169"


async def test_reduce_only_sizes_and_price_limit() -> None:
    """D§4.2: reduce-only without a position 51169, same direction 51170, oversize rejected 51148
    (``reduce_only_oversize="trim"``: trimmed, amendSource "4"); D§1.2 sz in contracts, lot 51121;
    D§6.3 a price outside the band 51006 with both limits in sMsg; public price-limit agrees."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.set_market(SWAP, bid=60000, ask=60000.1, bid_sz=100, ask_sz=100)
            _, body = await place(client, fake, order("sell", "1", "60000", reduce_only=True))
            assert body["data"][0]["sCode"] == "51169"
            assert (await place(client, fake, order("buy", "1", "60000.1")))[1]["code"] == "0"
            _, body = await place(client, fake, order("buy", "1", "59000", reduce_only=True))
            assert body["data"][0]["sCode"] == "51170"
            _, body = await place(client, fake, order("sell", "0.6", "61000", reduce_only=True))
            assert body["code"] == "0"
            _, body = await place(client, fake, order("sell", "0.5", "61000", reduce_only=True))
            assert body["data"][0]["sCode"] == "51148"  # 0.6 pending + 0.5 > 1 held
            fake.exchange.reduce_only_oversize = "trim"
            _, body = await place(client, fake, order("sell", "0.5", "61000", reduce_only=True, cl="trim1"))
            assert body["code"] == "0"
            trimmed = (await get(client, fake, f"/api/v5/trade/order?instId={SWAP}&clOrdId=trim1"))["data"][0]
            assert trimmed["sz"] == "0.4"
            _, body = await place(client, fake, order("buy", "0.015", "59000"))
            assert body["data"][0]["sCode"] == "51121"
            limits = (await client.get(f"/api/v5/public/price-limit?instId={SWAP}")).json()["data"][0]
            assert limits["enabled"] is True
            buy_lmt, sell_lmt = dec(limits["buyLmt"]), dec(limits["sellLmt"])
            mark = dec(
                (await client.get(f"/api/v5/public/mark-price?instType=SWAP&instId={SWAP}")).json()["data"][
                    0
                ]["markPx"]
            )
            assert sell_lmt < mark < buy_lmt
            _, body = await place(client, fake, order("buy", "1", str(buy_lmt + dec("0.1"))))
            item = body["data"][0]
            assert (
                item["sCode"] == "51006"
                and limits["buyLmt"] in item["sMsg"]
                and limits["sellLmt"] in item["sMsg"]
            )
            _, body = await place(client, fake, order("sell", "1", str(sell_lmt - dec("0.1"))))
            assert body["data"][0]["sCode"] == "51006"
            fake.set_price_limit(SWAP, "60500", "59500")
            _, body = await place(client, fake, order("buy", "1", "60500.1"))
            assert body["data"][0]["sCode"] == "51006"
            fake.account.acct_lv = "1"
            _, body = await place(client, fake, order("buy", "1", "59000"))
            assert body["data"][0]["sCode"] == "51010"


async def test_inverse_swap_pnl_in_coin_and_ws_order_by_inst_id_code() -> None:
    """D§2 inverse: sz in contracts of 100 USD, fee and pnl in BTC:
    fee = -(sz x ctVal / px x rate), pnl = (1/entry - 1/exit) x sz x ctVal.  The order goes over the
    WS ``order`` op with instIdCode (§0)."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.set_market(INV, bid=50000, ask=50000.1, bid_sz=1000, ask_sz=1000)
            btc0 = dec(fake.balance("BTC")["cash"])
            async with private_ws(
                fake, {"channel": "orders", "instType": "SWAP", "instFamily": "BTC-USD"}
            ) as (ws, _):
                msg = {
                    "id": "inv1",
                    "op": "order",
                    "args": [
                        {
                            "instIdCode": 10458,
                            "tdMode": "cross",
                            "side": "buy",
                            "ordType": "market",
                            "sz": "10",
                        }
                    ],
                }
                await ws.send_message(json.dumps(msg))
                # the pushes may precede the answer (README choice 18)
                push = await recv_until(
                    ws,
                    lambda m: (
                        m.get("arg", {}).get("channel") == "orders" and m["data"][0]["state"] == "filled"
                    ),
                )
                answer = await recv_until(ws, lambda m: m.get("id") == "inv1")
                assert answer["code"] == "0", answer
                item = push["data"][0]
                assert item["instId"] == INV and item["fillFeeCcy"] == "BTC" and item["fillSz"] == "10"
                open_fee = -(dec("10") * dec("100") / dec("50000.1") * dec("0.001"))
                assert abs(dec(item["fillFee"]) - open_fee) < dec("1e-15")
            fake.set_market(INV, bid=52000, ask=52000.1, bid_sz=1000, ask_sz=1000)
            _, body = await place(client, fake, order("sell", "10", inst=INV, reduce_only=True))
            assert body["code"] == "0"
            fills = (await get(client, fake, f"/api/v5/trade/fills?instId={INV}"))["data"]
            pnl = (1 / dec("50000.1") - 1 / dec("52000")) * dec("10") * dec("100")
            assert abs(dec(fills[0]["fillPnl"]) - pnl) < dec("1e-15") and fills[0]["feeCcy"] == "BTC"
            close_fee = -(dec("10") * dec("100") / dec("52000") * dec("0.001"))
            btc1 = dec(fake.balance("BTC")["cash"])
            assert abs((btc1 - btc0) - (pnl + open_fee + close_fee)) < dec("1e-14")


# ---------------------------------------------------------------------------- leverage


async def test_set_leverage_and_leverage_info() -> None:
    """D§10.8: posSide required only for isolated in long/short mode (top-level 51000
    "Parameter posSide  error", HTTP 400); lever above the instrument's -> 59102; pending orders ->
    59107 (cross) / 59101 (isolated); leverage-info has one row per side in long/short mode."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            path = "/api/v5/account/set-leverage"
            status, body = await post(client, fake, path, {"instId": SWAP, "lever": "5", "mgnMode": "cross"})
            assert (status, body["code"], body["data"]) == (
                200,
                "0",
                [{"lever": "5", "mgnMode": "cross", "instId": SWAP, "posSide": ""}],
            )
            info = (await get(client, fake, f"/api/v5/account/leverage-info?instId={SWAP}&mgnMode=cross"))[
                "data"
            ]
            assert info == [{"ccy": "", "instId": SWAP, "mgnMode": "cross", "posSide": "net", "lever": "5"}]
            status, body = await post(
                client, fake, path, {"instId": SWAP, "lever": "101", "mgnMode": "cross"}
            )
            assert (status, body["code"]) == (200, "59102")
            await post(client, fake, "/api/v5/account/set-position-mode", {"posMode": "long_short_mode"})
            status, body = await post(
                client, fake, path, {"instId": SWAP, "lever": "7", "mgnMode": "isolated"}
            )
            assert (status, body) == (400, {"code": "51000", "msg": "Parameter posSide  error", "data": []})
            body = {"instId": SWAP, "lever": "7", "mgnMode": "isolated", "posSide": "long"}
            status, answer = await post(client, fake, path, body)
            assert answer["data"] == [
                {"lever": "7", "mgnMode": "isolated", "instId": SWAP, "posSide": "long"}
            ]
            info = (await get(client, fake, f"/api/v5/account/leverage-info?instId={SWAP}&mgnMode=isolated"))[
                "data"
            ]
            assert [(r["posSide"], r["lever"]) for r in info] == [("long", "7"), ("short", "10")]
            info = (await get(client, fake, f"/api/v5/account/leverage-info?instId={SWAP}&mgnMode=cross"))[
                "data"
            ]
            assert [(r["posSide"], r["lever"]) for r in info] == [("long", "5"), ("short", "5")]
            fake.set_market(SWAP, bid=60000, ask=60000.1)
            assert (await place(client, fake, order("buy", "1", "59000", pos_side="long")))[1]["code"] == "0"
            status, body = await post(client, fake, path, {"instId": SWAP, "lever": "3", "mgnMode": "cross"})
            assert body["code"] == "59107"
            iso = order("buy", "1", "59000", pos_side="long", td="isolated")
            assert (await place(client, fake, iso))[1]["code"] == "0"
            status, body = await post(
                client,
                fake,
                path,
                {"instId": SWAP, "lever": "3", "mgnMode": "isolated", "posSide": "long"},
            )
            assert body["code"] == "59101"
            # the order carries the leverage of its margin mode / side
            pending = (await get(client, fake, "/api/v5/trade/orders-pending?instType=SWAP"))["data"]
            assert sorted((o["tdMode"], o["lever"], o["posSide"]) for o in pending) == [
                ("cross", "5", "long"),
                ("isolated", "7", "long"),
            ]


# ---------------------------------------------------------------------------- the exchange's own events


async def test_funding_settlement_arrives_once() -> None:
    """D§10.12: funding = position value at mark x rate, a long pays a positive rate: one
    balance_and_position ``funding_fee`` push (balData only), positions fundingFee, exactly one bill
    type 8 subType 173 (expense) with px = mark; no orders push; fundingTime rolls 8 h."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.set_market(SWAP, bid=60000, ask=60000.1, bid_sz=100, ask_sz=100)
            assert (await place(client, fake, order("buy", "3", "60000.1")))[1]["code"] == "0"
            fake.set_mark_price(SWAP, "61000")
            before = (await client.get(f"/api/v5/public/funding-rate?instId={SWAP}")).json()["data"][0]
            assert before["fundingRate"] == "0.0001"
            usdt0 = dec(fake.balance("USDT")["cash"])
            async with private_ws(
                fake,
                {"channel": "orders", "instType": "ANY"},
                {"channel": "balance_and_position"},
                {"channel": "positions", "instType": "SWAP", "instId": SWAP},
            ) as (ws, snaps):
                assert snaps["positions"][0]["data"][0]["pos"] == "3"
                bills = fake.settle_funding(SWAP)
                bap = (await next_on(ws, "balance_and_position"))["data"][0]
                row = (await next_on(ws, "positions"))["data"][0]
            amount = -(dec("3") * dec("0.01") * dec("61000") * dec("0.0001"))
            assert bap["eventType"] == "funding_fee" and bap["posData"] == []
            assert dec(bap["balData"][0]["cashBal"]) == usdt0 + amount
            assert dec(row["fundingFee"]) == amount
            assert len(bills) == 1
            listed = (await get(client, fake, "/api/v5/account/bills?type=8"))["data"]
            assert len(listed) == 1
            bill = listed[0]
            assert (bill["type"], bill["subType"], bill["px"], bill["sz"], bill["ccy"]) == (
                "8",
                "173",
                "61000",
                "3",
                "USDT",
            )
            assert dec(bill["pnl"]) == dec(bill["balChg"]) == amount
            archived = (await get(client, fake, "/api/v5/account/bills-archive?type=8&instType=SWAP"))["data"]
            assert [b["billId"] for b in archived] == [bill["billId"]]
            after = (await client.get(f"/api/v5/public/funding-rate?instId={SWAP}")).json()["data"][0]
            assert int(after["fundingTime"]) - int(before["fundingTime"]) == 8 * 3600 * 1000
            assert [p for p in fake.order_pushes if p["category"] != "normal"] == []
            # a short receives a positive rate (subType 174)
            fake.order_by_hand(SWAP, "sell", "5", "61000")  # net 3 -> -2
            [bill] = fake.settle_funding(SWAP, "0.0002")
            assert bill["subType"] == "174" and dec(bill["pnl"]) == dec("2") * dec("0.01") * dec(
                "61000"
            ) * dec("0.0002")


async def test_liquidation_cancels_orders_and_pushes_a_liquidation_order() -> None:
    """D§10.13: pending orders cancelled with cancelSource 3; an exchange order (clOrdId "",
    category full_liquidation) fills with a negative tradeId ("0" in order info); position -> pos
    "0"; balance_and_position ``liquidation``; bill type 5 (net long: 107 liq sell)."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.set_market(SWAP, bid=60000, ask=60000.1, bid_sz=100, ask_sz=100)
            assert (await place(client, fake, order("buy", "2", "60000.1", td="isolated")))[1]["code"] == "0"
            assert (await place(client, fake, order("buy", "1", "59000", td="isolated", cl="rest1")))[1][
                "code"
            ] == "0"
            async with private_ws(
                fake,
                {"channel": "orders", "instType": "SWAP"},
                {"channel": "balance_and_position"},
                {"channel": "positions", "instType": "ANY"},
            ) as (ws, snaps):
                row = snaps["positions"][0]["data"][0]
                assert row["mgnMode"] == "isolated" and row["liqPx"] and row["margin"]
                fake.set_mark_price(SWAP, "55000")
                liq = fake.liquidate(SWAP)
                cancelled = (await next_on(ws, "orders"))["data"][0]
                assert (cancelled["clOrdId"], cancelled["state"], cancelled["cancelSource"]) == (
                    "rest1",
                    "canceled",
                    "3",
                )
                item = (await next_on(ws, "orders"))["data"][0]
                bap = await recv_until(
                    ws, lambda m: m.get("arg", {}).get("channel") == "balance_and_position"
                )
                zero = (await next_on(ws, "positions"))["data"][0]
            assert (
                item["category"] == "full_liquidation" and item["clOrdId"] == "" and item["state"] == "filled"
            )
            assert item["tradeId"].startswith("-") and item["side"] == "sell" and item["fillSz"] == "2"
            pnl = (dec("55000") - dec("60000.1")) * dec("2") * dec("0.01")
            assert dec(item["fillPnl"]) == pnl
            assert liq["tradeId"] == "0" and liq["category"] == "full_liquidation"
            assert bap["data"][0]["eventType"] == "liquidation"
            assert zero["pos"] == "0" and dec(zero["liqPenalty"]) < 0
            [bill] = (await get(client, fake, "/api/v5/account/bills?type=5"))["data"]
            assert (bill["subType"], bill["sz"], bill["px"]) == ("107", "2", "55000")
            fills = (await get(client, fake, "/api/v5/trade/fills?instType=SWAP"))["data"]
            assert fills[0]["tradeId"] == item["tradeId"]


async def test_adl_partial_and_delivery() -> None:
    """D§10.13 ADL (category adl, other orders cancelSource 6, bill type 9 subType 128 for a net
    long) and D§10.14 delivery of a dated future (orders cancelSource 7, bill type 3 subType 112,
    balance_and_position ``delivered``, instrument gone from public/instruments)."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            futures = (await client.get("/api/v5/public/instruments?instType=FUTURES")).json()["data"]
            fut = next(f["instId"] for f in futures if f["settleCcy"] == "USDT")
            fake.set_market(SWAP, bid=60000, ask=60000.1, bid_sz=100, ask_sz=100)
            fake.set_market(fut, bid=61000, ask=61000.1, bid_sz=100, ask_sz=100)
            assert (await place(client, fake, order("buy", "2", "60000.1")))[1]["code"] == "0"
            assert (await place(client, fake, order("sell", "1", "60500", cl="resting1")))[1]["code"] == "0"
            assert (await place(client, fake, order("buy", "0.5", "61000.1", inst=fut)))[1]["code"] == "0"
            assert (await place(client, fake, order("buy", "0.3", "60000", inst=fut, cl="futrest")))[1][
                "code"
            ] == "0"
            async with private_ws(
                fake, {"channel": "orders", "instType": "ANY"}, {"channel": "balance_and_position"}
            ) as (ws, snaps):
                assert len(snaps["balance_and_position"]["data"][0]["posData"]) == 2
                fake.adl(SWAP, sz="0.5", px="60200")
                cancelled = (await next_on(ws, "orders"))["data"][0]
                assert (cancelled["clOrdId"], cancelled["cancelSource"]) == ("resting1", "6")
                adl = (await next_on(ws, "orders"))["data"][0]
                assert adl["category"] == "adl" and adl["fillSz"] == "0.5" and adl["tradeId"].startswith("-")
                assert (await next_on(ws, "balance_and_position"))["data"][0]["eventType"] == "adl"
                bills = fake.deliver(fut, "62000")
                cancelled = (await next_on(ws, "orders"))["data"][0]
                assert (cancelled["clOrdId"], cancelled["cancelSource"]) == ("futrest", "7")
                delivered = (await next_on(ws, "balance_and_position"))["data"][0]
                assert delivered["eventType"] == "delivered" and delivered["posData"][0]["pos"] == "0"
            assert fake.position(SWAP)["pos"] == "1.5"  # type: ignore[index]
            [adl_bill] = (await get(client, fake, "/api/v5/account/bills?type=9"))["data"]
            assert (adl_bill["subType"], adl_bill["sz"]) == ("128", "0.5")
            [bill] = bills
            assert (bill["type"], bill["subType"], bill["px"]) == ("3", "112", "62000")
            assert dec(bill["pnl"]) == (dec("62000") - dec("61000.1")) * dec("0.5") * dec("0.01")
            futures = (await client.get("/api/v5/public/instruments?instType=FUTURES")).json()["data"]
            assert fut not in [f["instId"] for f in futures]
            _, body = await place(client, fake, order("buy", "1", "61000", inst=fut))
            assert body["data"][0]["sCode"] == "51001"


async def test_position_opened_by_hand() -> None:
    """A web-UI order: no API request, an orders push with clOrdId "" and a position the API
    never placed; REST positions and balance_and_position show it."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            async with private_ws(
                fake, {"channel": "orders", "instType": "SWAP"}, {"channel": "positions", "instType": "SWAP"}
            ) as (ws, _):
                requests = len(fake.requests)
                fake.order_by_hand("ETH-USDT-SWAP", "sell", "4", "3000")
                push = await recv_until(
                    ws,
                    lambda m: (
                        m.get("arg", {}).get("channel") == "orders" and m["data"][0]["state"] == "filled"
                    ),
                )
                row = (await next_on(ws, "positions"))["data"][0]
                assert len(fake.requests) == requests
            assert push["data"][0]["clOrdId"] == "" and push["data"][0]["instId"] == "ETH-USDT-SWAP"
            assert (row["pos"], row["avgPx"], row["posSide"]) == ("-4", "3000", "net")
            [pos] = (await get(client, fake, "/api/v5/account/positions"))["data"]
            assert pos["pos"] == "-4" and pos["instId"] == "ETH-USDT-SWAP"
