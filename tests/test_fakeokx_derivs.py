"""The fake OKX's derivatives (SWAP / FUTURES), exercised with raw signed REST calls and WebSocket
subscriptions (no seqtrade code), so that the adapter's tests can rely on each rule and event.

Expectations come from OKX's docs (bracketed page names, as in tests/fakeokx/README.md); arithmetic
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
import trio.testing
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.fakeokx import DEFAULT_INSTRUMENTS, FakeOkx, open_fake_okx

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
    """[get instruments] captured rows (strings, instIdCode int, extra fields), dated futures at 08:00 UTC
    on a Friday; [get account configuration] config with string acctLv / posMode and Boolean autoLoan."""
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
    """[place order: posSide] / [error codes]: long/short mode + posSide missing or "net" -> per-item sCode 51000
    "Parameter posSide error " (top code "1", "All operations failed", HTTP 200); net mode refuses
    long/short the same way.  [set position mode]: set-position-mode refused (59000) with a position open."""
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
    """[place order: reduceOnly]: no position 51169, same direction 51170, oversize rejected 51148
    (``reduce_only_oversize="trim"``: trimmed, amendSource "4"); [get instruments] sz in contracts, lot 51121;
    [price limit] a price outside the band 51006 with both limits in sMsg; public price-limit agrees."""
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
    """[units, PnL and fees] inverse: sz in contracts of 100 USD, fee and pnl in BTC:
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
    """[set leverage]: posSide required only for isolated in long/short mode (top-level 51000
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
    """[funding rate; bills]: funding = position value at mark x rate, a long pays a positive rate: one
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
    """[order channel]: pending orders cancelled with cancelSource 3; an exchange order (clOrdId "",
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
    """[order channel] ADL (category adl, other orders cancelSource 6, bill type 9 subType 128 for a net
    long) and [futures delivery] delivery of a dated future (orders cancelSource 7, bill type 3 subType 112,
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


# ---------------------------------------------------------------------------- channels


async def test_public_derivative_channels() -> None:
    """[mark price channel]-6.3: mark-price, funding-rate and price-limit push the current value after the ack and
    on every change; funding-rate exists for swaps only (a dated future -> 60018)."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, open_websocket_url(fake.ws_public_url) as ws:
            fake.set_mark_price(SWAP, "60000", index_px="60010")
            args = [
                {"channel": "mark-price", "instId": SWAP},
                {"channel": "funding-rate", "instId": SWAP},
                {"channel": "price-limit", "instId": SWAP},
            ]
            await ws.send_message(json.dumps({"id": "sub1", "op": "subscribe", "args": args}))
            got: dict[str, Any] = {}
            while len(got) < 3:
                msg = await recv(ws)
                if "data" in msg:
                    got[msg["arg"]["channel"]] = msg["data"][0]
            assert got["mark-price"] == {
                "instType": "SWAP",
                "instId": SWAP,
                "markPx": "60000",
                "ts": got["mark-price"]["ts"],
            }
            funding = got["funding-rate"]
            assert int(funding["nextFundingTime"]) - int(funding["fundingTime"]) == 8 * 3600 * 1000
            assert (
                int(funding["fundingTime"]) % (8 * 3600 * 1000) == 0 and funding["method"] == "current_period"
            )
            limits = got["price-limit"]
            assert (limits["buyLmt"], limits["sellLmt"], limits["enabled"]) == ("63000", "57000", True)
            fake.set_mark_price(SWAP, "61000")
            mark = await next_on(ws, "mark-price")
            assert mark["data"][0]["markPx"] == "61000"
            assert (await next_on(ws, "price-limit"))["data"][0]["buyLmt"] == "64050"
            fake.set_funding_rate(SWAP, "-0.0003")
            assert (await next_on(ws, "funding-rate"))["data"][0]["fundingRate"] == "-0.0003"
            fake.set_price_limit(SWAP, None, None, enabled=False)
            off = (await next_on(ws, "price-limit"))["data"][0]
            assert (off["buyLmt"], off["sellLmt"], off["enabled"]) == ("", "", False)
            fut = next(i for i in fake.exchange.instruments if i.startswith("BTC-USD-2"))
            await ws.send_message(
                json.dumps({"op": "subscribe", "args": [{"channel": "funding-rate", "instId": fut}]})
            )
            error = await recv_until(ws, lambda m: m.get("event") == "error")
            assert error["code"] == "60018"


async def test_positions_snapshot_pages_filters_and_account_snapshot() -> None:
    """[positions channel]: the snapshot is paged (curPage int, lastPage bool) and filtered by instType /
    instFamily / instId; [account channel]: the account channel starts with a snapshot (top-level eventType)."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake:
            fake.exchange.positions_page_size = 2
            fake.order_by_hand(SWAP, "buy", "1", "60000")
            fake.order_by_hand("ETH-USDT-SWAP", "buy", "1", "3000")
            fake.order_by_hand(INV, "sell", "7", "60000")
            fut = next(i for i in fake.exchange.instruments if i.startswith("BTC-USDT-2"))
            fake.order_by_hand(fut, "buy", "0.5", "61000")
            async with private_ws(
                fake, {"channel": "positions", "instType": "ANY"}, {"channel": "account"}
            ) as (ws, snaps):
                pages = snaps["positions"]
                assert [(p["curPage"], p["lastPage"]) for p in pages] == [(1, False), (2, True)]
                assert sorted(r["instId"] for p in pages for r in p["data"]) == sorted(
                    [SWAP, "ETH-USDT-SWAP", INV, fut]
                )
                account = await next_on(ws, "account")
                assert account["eventType"] == "snapshot" and account["data"][0]["details"]
                for arg, expected in (
                    ({"channel": "positions", "instType": "SWAP", "instFamily": "BTC-USD"}, [INV]),
                    ({"channel": "positions", "instType": "FUTURES"}, [fut]),
                    (
                        {"channel": "positions", "instType": "SWAP", "instId": "ETH-USDT-SWAP"},
                        ["ETH-USDT-SWAP"],
                    ),
                ):
                    await ws.send_message(json.dumps({"op": "subscribe", "args": [arg]}))
                    snap = await recv_until(
                        ws,
                        lambda m, arg=arg: (
                            m.get("eventType") == "snapshot" and m["arg"] == {**arg, "uid": fake.uid}
                        ),
                    )
                    assert [r["instId"] for r in snap["data"]] == expected
                fake.order_by_hand(INV, "buy", "7", "60000")
                # the first subscription (ANY) and the BTC-USD family one each get the pos "0" row
                updates = [await next_on(ws, "positions"), await next_on(ws, "positions")]
                assert sorted(u["arg"].get("instFamily", "") for u in updates) == ["", "BTC-USD"]
                assert all(u["data"][0]["pos"] == "0" and u["eventType"] == "event_update" for u in updates)


async def test_push_order_is_a_knob() -> None:
    """[cross-channel push order: not documented]: ``push_order`` permutes the pushes of one fill."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake:
            fake.exchange.push_live_first = False
            fake.exchange.push_order = ("positions", "account", "balance_and_position", "orders")
            async with private_ws(
                fake,
                {"channel": "orders", "instType": "ANY"},
                {"channel": "positions", "instType": "ANY"},
                {"channel": "balance_and_position"},
                {"channel": "account"},
            ) as (ws, _):
                await next_on(ws, "account")  # the subscription snapshot
                fake.order_by_hand(SWAP, "buy", "1", "60000")
                seen = [(await recv(ws))["arg"]["channel"] for _ in range(4)]
            assert seen == ["positions", "account", "balance_and_position", "orders"]


async def test_liquidation_warning_and_partial_liquidation_long_short() -> None:
    """[position risk warning channel] items for the position; a partial liquidation of the short side in
    long/short mode: category partial_liquidation, bill subType 101, the long side untouched."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            await post(client, fake, "/api/v5/account/set-position-mode", {"posMode": "long_short_mode"})
            fake.order_by_hand(SWAP, "sell", "3", "60000", td_mode="isolated")
            fake.order_by_hand(SWAP, "buy", "2", "60000", td_mode="isolated")
            short = fake.position(SWAP, "short", "isolated")
            assert short is not None and short["pos"] == "3" and dec(short["liqPx"]) > dec("60000")
            async with private_ws(
                fake,
                {"channel": "liquidation-warning", "instType": "SWAP"},
                {"channel": "orders", "instType": "SWAP"},
            ) as (ws, _):
                fake.set_mark_price(SWAP, "65000")
                assert fake.send_liquidation_warning(SWAP, pos_side="short") == 1
                warning = (await next_on(ws, "liquidation-warning"))["data"][0]
                assert (warning["posSide"], warning["pos"], warning["markPx"], warning["mgnMode"]) == (
                    "short",
                    "3",
                    "65000",
                    "isolated",
                )
                fake.liquidate(SWAP, pos_side="short", sz="1", px="65500")
                item = (await next_on(ws, "orders"))["data"][0]
            assert (item["category"], item["posSide"], item["side"], item["fillSz"]) == (
                "partial_liquidation",
                "short",
                "buy",
                "1",
            )
            assert dec(item["fillPnl"]) == (dec("60000") - dec("65500")) * dec("0.01")
            [bill] = (await get(client, fake, "/api/v5/account/bills?type=5"))["data"]
            assert bill["subType"] == "101"
            rows = {p["posSide"]: p["pos"] for p in fake.positions()}
            assert rows == {"short": "2", "long": "2"}
            # upl at mark 65000 of the short (entry 60000): negative; literal formula reading: positive
            upl = (dec("60000") - dec("65000")) * dec("2") * dec("0.01")
            assert dec(fake.position(SWAP, "short", "isolated")["upl"]) == upl  # type: ignore[index]
            fake.exchange.upl_short_flip = False
            assert dec(fake.position(SWAP, "short", "isolated")["upl"]) == -upl  # type: ignore[index]


async def test_close_position_and_amend_margin() -> None:
    """[close positions] close-position: answer without ordId; with a pending close order and no autoCxl ->
    ``close_pending_code``.  Amending an opening order beyond the margin -> amendResult -1, 51008."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx(balances={"USDT": "1000", "BTC": "1"}) as fake, rest_client(fake) as client:
            fake.set_market(SWAP, bid=60000, ask=60000.1, bid_sz=100, ask_sz=100)
            fake.order_by_hand(SWAP, "buy", "1", "60000")
            _, body = await place(client, fake, order("sell", "0.5", "61000", reduce_only=True))
            assert body["code"] == "0"
            status, body = await post(
                client, fake, "/api/v5/trade/close-position", {"instId": SWAP, "mgnMode": "cross"}
            )
            assert (status, body["code"]) == (200, "51115")
            status, body = await post(
                client,
                fake,
                "/api/v5/trade/close-position",
                {"instId": SWAP, "mgnMode": "cross", "autoCxl": True},
            )
            assert body == {
                "code": "0",
                "msg": "",
                "data": [{"clOrdId": "", "instId": SWAP, "posSide": "net", "tag": ""}],
            }
            assert fake.positions() == []
            # 1000 USDT at lever 10 carries at most ~16 contracts at 60000 (0.01 BTC each)
            _, body = await place(client, fake, order("buy", "20", "59000"))
            assert (body["data"][0]["sCode"], body["data"][0]["subCode"]) == ("51008", "1001")
            assert body["data"][0]["sMsg"] == "Order failed. Insufficient USDT margin in account "
            _, body = await place(client, fake, order("buy", "5", "59000", cl="amendme"))
            assert body["code"] == "0"
            async with private_ws(fake, {"channel": "orders", "instType": "SWAP"}) as (ws, _):
                _, answer = await post(
                    client,
                    fake,
                    "/api/v5/trade/amend-order",
                    {"instId": SWAP, "clOrdId": "amendme", "newSz": "30"},
                )
                assert answer["data"][0]["sCode"] == "0"
                push = (await next_on(ws, "orders"))["data"][0]
                assert (push["amendResult"], push["code"]) == ("-1", "51008")
                _, answer = await post(
                    client,
                    fake,
                    "/api/v5/trade/amend-order",
                    {"instId": SWAP, "clOrdId": "amendme", "newSz": "6"},
                )
                push = (await next_on(ws, "orders"))["data"][0]
                assert (push["amendResult"], push["sz"]) == ("0", "6")
            pending = (await get(client, fake, "/api/v5/trade/orders-pending?instType=SWAP"))["data"]
            assert [o["clOrdId"] for o in pending] == ["amendme"]
            assert (await get(client, fake, "/api/v5/trade/orders-pending?instType=SPOT"))["data"] == []
            balance = (await get(client, fake, "/api/v5/account/balance?ccy=USDT"))["data"][0]["details"][0]
            margin = dec("6") * dec("0.01") * dec("59000") / 10
            assert (
                dec(balance["ordFrozen"]) == margin and dec(balance["availEq"]) == dec(balance["eq"]) - margin
            )


async def test_unverified_switches() -> None:
    """The UNVERIFIED readings of the docs are switchable: isolated refused ([place order]), posData
    in funding_fee, a category "delivery" order push ([funding, liquidation, ADL, delivery]), subType
    1/2 in long/short mode ([bills])."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            ex = fake.exchange
            fake.set_market(SWAP, bid=60000, ask=60000.1, bid_sz=100, ask_sz=100)
            ex.isolated_derivs = False
            _, body = await place(client, fake, order("buy", "1", "59000", td="isolated"))
            assert (body["code"], body["data"][0]["sCode"]) == ("1", "51010")
            ex.funding_pos_data = True
            fake.order_by_hand(SWAP, "buy", "1", "60000")
            fake.settle_funding(SWAP)
            assert (
                fake.bap_pushes[-1]["eventType"] == "funding_fee"
                and fake.bap_pushes[-1]["posData"][0]["pos"] == "1"
            )
            ex.delivery_order_push = True
            fut = next(i for i in ex.instruments if i.startswith("BTC-USD-2"))
            fake.order_by_hand(fut, "sell", "3", "61000")
            fake.deliver(fut, "60000")
            delivery = [p for p in fake.order_pushes if p["category"] == "delivery"]
            assert len(delivery) == 1 and delivery[0]["side"] == "buy" and delivery[0]["fillSz"] == "3"
            assert [b["subType"] for b in fake.bills if b["type"] == "3"] == ["113"]
            fake.order_by_hand(SWAP, "sell", "1", "60000")  # flat again
            await post(client, fake, "/api/v5/account/set-position-mode", {"posMode": "long_short_mode"})
            fake.order_by_hand(SWAP, "buy", "1", "60000")
            ex.subtypes_by_mode = False
            fake.order_by_hand(SWAP, "buy", "1", "60000")
            assert [f["subType"] for f in fake.fills[-2:]] == ["3", "1"]


async def test_resting_orders_fill_as_makers_and_batch_items() -> None:
    """A resting SWAP order crossed by the market fills as a maker at its own price (maker fee,
    partially_filled then filled, accFillSz in contracts); a batch with one bad posSide item answers
    top code "2" with that item's sCode 51000; set-position-mode is refused (59000) while an order
    rests; cross and isolated positions of one instrument live side by side."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.set_market(SWAP, bid=60000, ask=60000.1, bid_sz=100, ask_sz=100)
            batch = [
                order("buy", "0.5", "59990", cl="rest2"),
                order("buy", "1", "59990", pos_side="long"),
                order("buy", "0.2", "60000.1", td="isolated"),
            ]
            r = await private(client, fake, "POST", "/api/v5/trade/batch-orders", batch)
            body = r.json()
            assert r.status_code == 200 and body["code"] == "2"
            assert [i["sCode"] for i in body["data"]] == ["0", "51000", "0"]
            status, answer = await post(
                client, fake, "/api/v5/account/set-position-mode", {"posMode": "long_short_mode"}
            )
            assert answer["code"] == "59000"
            async with private_ws(fake, {"channel": "orders", "instType": "SWAP", "instId": SWAP}) as (ws, _):
                fake.set_market(SWAP, bid=59980, ask=59990, bid_sz=100, ask_sz=0.3)
                first = (await next_on(ws, "orders"))["data"][0]
                fake.set_market(SWAP, bid=59980, ask=59990, bid_sz=100, ask_sz=1)
                second = (await next_on(ws, "orders"))["data"][0]
            assert (first["state"], first["fillSz"], first["execType"]) == ("partially_filled", "0.3", "M")
            assert (second["state"], second["fillSz"], second["accFillSz"]) == ("filled", "0.2", "0.5")
            maker_fee = -(dec("0.3") * dec("0.01") * dec("59990") * dec("0.0008"))
            assert dec(first["fillFee"]) == maker_fee
            rows = {(p["mgnMode"], p["posSide"]): p for p in fake.positions()}
            assert rows[("cross", "net")]["pos"] == "0.5" and rows[("isolated", "net")]["pos"] == "0.2"
            iso = rows[("isolated", "net")]
            assert dec(iso["margin"]) == dec("0.2") * dec("0.01") * dec("60000.1") / 10
            assert rows[("cross", "net")]["margin"] == "" and rows[("cross", "net")]["liqPx"] == ""


async def test_linear_future_long_short_isolated_round_trip() -> None:
    """A dated linear future in long/short mode, isolated long: open, add (avgPx = contract-weighted
    mean), close with the same posSide; REST fills subType 3 then 5; bills type 2."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fut = next(i for i in fake.exchange.instruments if i.startswith("BTC-USDT-2"))
            await post(client, fake, "/api/v5/account/set-position-mode", {"posMode": "long_short_mode"})
            await post(
                client,
                fake,
                "/api/v5/account/set-leverage",
                {"instId": fut, "lever": "20", "mgnMode": "isolated", "posSide": "long"},
            )
            fake.set_market(fut, bid=61000, ask=61000.1, bid_sz=100, ask_sz=100)
            _, body = await place(
                client, fake, order("buy", "0.2", "61000.1", inst=fut, td="isolated", pos_side="long")
            )
            assert body["code"] == "0"
            fake.set_market(fut, bid=61999.9, ask=62000, bid_sz=100, ask_sz=100)
            _, body = await place(
                client, fake, order("buy", "0.3", "62000", inst=fut, td="isolated", pos_side="long")
            )
            assert body["code"] == "0"
            pos = fake.position(fut, "long", "isolated")
            assert pos is not None
            avg = (dec("0.2") * dec("61000.1") + dec("0.3") * dec("62000")) / dec("0.5")
            assert dec(pos["avgPx"]) == avg.quantize(dec("1e-10")) and pos["lever"] == "20"
            _, body = await place(
                client, fake, order("sell", "0.5", "61999.9", inst=fut, td="isolated", pos_side="long")
            )
            assert body["code"] == "0"
            fills = (await get(client, fake, f"/api/v5/trade/fills?instId={fut}"))["data"]
            assert [f["subType"] for f in fills] == ["5", "3", "3"]
            pnl = (dec("61999.9") - avg.quantize(dec("1e-10"))) * dec("0.5") * dec("0.01")
            assert dec(fills[0]["fillPnl"]) == pnl
            assert fake.positions() == []


async def test_market_orders_stay_inside_the_band_and_size_caps() -> None:
    """Market / optimal_limit_ioc orders never trade beyond the price-limit band (remainder
    cancelled, cancelSource 14); sz above maxMktSz -> ``max_size_code``; ``ccy`` on a SWAP order is
    accepted and ignored; ``duplicate_pushes`` repeats an orders push with the same tradeId and fee."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.set_market(SWAP, bid=60000, ask=60000.1, bid_sz=100, ask_sz=100)
            fake.set_price_limit(SWAP, "59999", "59000")  # the ask is above the max buy price
            for ord_type in ("market", "optimal_limit_ioc"):
                _, body = await place(
                    client, fake, order("buy", "1", ord_type=ord_type, cl=f"band{ord_type[:3]}")
                )
                assert body["code"] == "0", body
                ord_id = body["data"][0]["ordId"]
                info = (await get(client, fake, f"/api/v5/trade/order?instId={SWAP}&ordId={ord_id}"))["data"][
                    0
                ]
                assert (info["state"], info["accFillSz"], info["cancelSource"]) == ("canceled", "0", "14")
            _, body = await place(client, fake, order("buy", "12000.01", ord_type="market"))
            assert body["data"][0]["sCode"] == "51005"
            fake.set_price_limit(SWAP, "61000", "59000")
            fake.duplicate_pushes = True
            async with private_ws(fake, {"channel": "orders", "instType": "SWAP"}) as (ws, _):
                _, body = await place(
                    client, fake, {**order("sell", "2", ord_type="optimal_limit_ioc"), "ccy": "USDT"}
                )
                assert body["code"] == "0"
                fills = []
                while len(fills) < 2:
                    item = (await next_on(ws, "orders"))["data"][0]
                    if item["tradeId"]:
                        fills.append(item)
            assert (
                fills[0] == fills[1]
                and fills[0]["fillPx"] == "60000"
                and fills[0]["ordType"] == "optimal_limit_ioc"
            )


async def test_ws_amend_cancel_and_missed_pushes_recovered_by_rest() -> None:
    """WS amend / cancel of a SWAP order by instIdCode; with private pushes paused (a client that
    was down), a fill and a funding settlement are visible afterwards through REST only: positions,
    fills and bills (type 2 and 8) -- what a restarted adapter reconciles from.  ``fills`` -> 64003."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.set_market(SWAP, bid=60000, ask=60000.1, bid_sz=100, ask_sz=100)
            async with private_ws(fake, {"channel": "orders", "instType": "SWAP"}) as (ws, _):
                place_msg = {
                    "id": "p1",
                    "op": "order",
                    "args": [
                        {
                            "instIdCode": 10459,
                            "tdMode": "cross",
                            "side": "buy",
                            "ordType": "limit",
                            "px": "59000",
                            "sz": "1",
                            "clOrdId": "wsswap1",
                        }
                    ],
                }
                await ws.send_message(json.dumps(place_msg))
                assert (await recv_until(ws, lambda m: m.get("id") == "p1"))["code"] == "0"
                amend = {
                    "id": "a1",
                    "op": "amend-order",
                    "args": [{"instIdCode": 10459, "clOrdId": "wsswap1", "newSz": "2"}],
                }
                await ws.send_message(json.dumps(amend))
                pushed = await recv_until(
                    ws,
                    lambda m: (
                        m.get("arg", {}).get("channel") == "orders" and m["data"][0]["amendResult"] == "0"
                    ),
                )
                assert pushed["data"][0]["sz"] == "2" and pushed["data"][0]["posSide"] == "net"
                cancel = {
                    "id": "c1",
                    "op": "cancel-order",
                    "args": [{"instIdCode": 10459, "clOrdId": "wsswap1"}],
                }
                await ws.send_message(json.dumps(cancel))
                gone = await recv_until(
                    ws,
                    lambda m: (
                        m.get("arg", {}).get("channel") == "orders" and m["data"][0]["state"] == "canceled"
                    ),
                )
                assert gone["data"][0]["cancelSource"] == "1"
                await ws.send_message(json.dumps({"op": "subscribe", "args": [{"channel": "fills"}]}))
                assert (await recv_until(ws, lambda m: m.get("event") == "error"))["code"] == "64003"
            fake.private_pushes_paused = True
            _, body = await place(client, fake, order("buy", "2", "60000.1"))
            assert body["code"] == "0"
            fake.settle_funding(SWAP, "0.0005")
            fake.private_pushes_paused = False
            [pos] = (await get(client, fake, "/api/v5/account/positions"))["data"]
            assert pos["pos"] == "2" and dec(pos["fundingFee"]) < 0
            bills = (await get(client, fake, f"/api/v5/account/bills?instId={SWAP}"))["data"]
            assert [b["type"] for b in bills] == ["8", "2"]  # newest first
            later = (
                await get(client, fake, f"/api/v5/account/bills?instId={SWAP}&before={bills[1]['billId']}")
            )["data"]
            assert [b["billId"] for b in later] == [bills[0]["billId"]]
            assert len((await get(client, fake, "/api/v5/trade/fills?instType=SWAP"))["data"]) == 1


async def test_periodic_positions_snapshots_when_switched_on(autojump_clock: trio.testing.MockClock) -> None:
    """[positions channel] periodic snapshots (``positions_periodic``): every updateInterval ms
    ("2000"), none for "0" -- the event pushes alone."""
    with trio.fail_after(60):
        async with open_fake_okx(idle_timeout=1000) as fake:
            fake.positions_periodic = True
            fake.order_by_hand(SWAP, "buy", "1", "60000")
            every_2s = {
                "channel": "positions",
                "instType": "SWAP",
                "extraParams": '{"updateInterval": "2000"}',
            }
            events_only = {
                "channel": "positions",
                "instType": "ANY",
                "extraParams": '{"updateInterval": "0"}',
            }
            async with private_ws(fake, every_2s, events_only) as (ws, _):
                start = trio.current_time()
                snaps = []
                while len(snaps) < 3:
                    msg = await next_on(ws, "positions")
                    assert msg["arg"]["instType"] == "SWAP"  # never the events-only subscription
                    snaps.append((msg["eventType"], trio.current_time() - start))
            assert [kind for kind, _ in snaps] == ["snapshot"] * 3
            assert [round(t) for _, t in snaps] == [2, 4, 6]


async def test_partial_derivative_rows_take_sizes_from_config() -> None:
    """Lot / min sizes change over time: ``instruments=`` may give a partial row
    (``{"instId": "BTC-USDT-SWAP", "lotSz": "0.1", "minSz": "0.1"}``, the older sizes); the rest comes
    from the default row, and the order rules follow the given sizes."""
    with trio.fail_after(TIMEOUT):
        rows = [
            DEFAULT_INSTRUMENTS[0],
            {"instId": SWAP, "lotSz": "0.1", "minSz": "0.1"},
        ]
        async with open_fake_okx(instruments=rows) as fake, rest_client(fake) as client:
            [row] = (await client.get("/api/v5/public/instruments?instType=SWAP")).json()["data"]
            assert (row["instId"], row["lotSz"], row["minSz"], row["ctVal"], row["instIdCode"]) == (
                SWAP,
                "0.1",
                "0.1",
                "0.01",
                10459,
            )
            fake.set_market(SWAP, bid=60000, ask=60000.1, bid_sz=100, ask_sz=100)
            _, body = await place(client, fake, order("buy", "0.05", "59000"))
            assert body["data"][0]["sCode"] == "51121"
            _, body = await place(client, fake, order("buy", "0.2", "59000"))
            assert body["code"] == "0"


async def test_orders_history_and_opt_in_rate_limits() -> None:
    """§2.7 orders-history (instType required) lists terminal orders, a liquidation findable by
    ``category``; with ``deriv_rate_limits_on`` the derivative endpoints answer 50011 / HTTP 429 past
    their budget (positions 10 / 2 s), counted on the engine's clock (frozen here, then moved)."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.order_by_hand(SWAP, "buy", "2", "60000")
            fake.liquidate(SWAP, px="55000")
            r = await private(client, fake, "GET", "/api/v5/trade/orders-history")
            assert (r.status_code, r.json()["code"]) == (400, "50014")
            history = (await get(client, fake, "/api/v5/trade/orders-history?instType=SWAP"))["data"]
            assert [o["category"] for o in history] == ["full_liquidation", "normal"]
            liq = (
                await get(
                    client, fake, "/api/v5/trade/orders-history?instType=SWAP&category=full_liquidation"
                )
            )["data"]
            assert len(liq) == 1 and liq[0]["tradeId"] == "0" and liq[0]["state"] == "filled"
            now = [1000.0]
            fake.exchange.mono = lambda: now[0]
            fake.exchange.deriv_rate_limits_on = True
            for _ in range(10):
                assert (await private(client, fake, "GET", "/api/v5/account/positions")).status_code == 200
            r = await private(client, fake, "GET", "/api/v5/account/positions")
            assert (r.status_code, r.json()["code"]) == (429, "50011")
            now[0] += 2.0
            assert (await private(client, fake, "GET", "/api/v5/account/positions")).status_code == 200
            assert ("positions", "", 1000.0) in fake.rate_limited


async def test_account_setting_errors() -> None:
    """A portfolio-margin account (acctLv "4") stays in net mode (51041); leverage below 1 -> 59105
    (HTTP 400); a missing mgnMode -> 50014; an unknown instrument in leverage-info -> 51001."""
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.account.acct_lv = "4"
            _, body = await post(
                client, fake, "/api/v5/account/set-position-mode", {"posMode": "long_short_mode"}
            )
            assert body["code"] == "51041"
            status, body = await post(
                client,
                fake,
                "/api/v5/account/set-leverage",
                {"instId": SWAP, "lever": "0.5", "mgnMode": "cross"},
            )
            assert (status, body["code"], body["data"]) == (400, "59105", [])
            status, body = await post(
                client, fake, "/api/v5/account/set-leverage", {"instId": SWAP, "lever": "5"}
            )
            assert (status, body["code"]) == (400, "50014")
            r = await private(
                client, fake, "GET", "/api/v5/account/leverage-info?instId=NOPE-USDT-SWAP&mgnMode=cross"
            )
            assert r.json()["code"] == "51001"


async def test_x_perp_future_pays_funding() -> None:
    """[funding rate]: a FUTURES row with ``ruleType "xperp"`` (an X-Perp) pays funding like a swap;
    its funding-rate item says instType FUTURES."""
    with trio.fail_after(TIMEOUT):
        rows = [{"instId": "BTC-USDT-271231", "ruleType": "xperp", "expTime": ""}]
        async with open_fake_okx(instruments=rows) as fake, rest_client(fake) as client:
            item = (await client.get("/api/v5/public/funding-rate?instId=BTC-USDT-271231")).json()["data"][0]
            assert item["instType"] == "FUTURES"
            fake.order_by_hand("BTC-USDT-271231", "sell", "1", "60000")
            fake.set_mark_price("BTC-USDT-271231", "60000")
            [bill] = fake.settle_funding("BTC-USDT-271231", "0.0001")
            assert (bill["instType"], bill["subType"]) == ("FUTURES", "174")
            assert dec(bill["pnl"]) == dec("1") * dec("0.01") * dec("60000") * dec("0.0001")
