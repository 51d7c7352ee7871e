"""The fake OKX itself, exercised with raw httpx / trio-websocket clients (no seqtrade code).

Every expectation cites docs/okx.md.  Synchronisation is by awaiting messages, never by sleeping
(sleeps appear only to move virtual time under ``autojump_clock``).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.fakeokx import FakeOkx, open_fake_okx, rest_prehash, sign, ws_login_prehash

TIMEOUT = 10

# ---------------------------------------------------------------------------- helpers


def iso_ms(epoch_ms: int) -> str:
    dt = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def signed_headers(
    fake: FakeOkx,
    method: str,
    target: str,
    body: str = "",
    *,
    skew_ms: int = 0,
    key: str | None = None,
    secret: str | None = None,
    passphrase: str | None = None,
    simulated: str | None = "1",
    timestamp: str | None = None,
) -> dict[str, str]:
    creds = fake.credentials
    ts = timestamp if timestamp is not None else iso_ms(int(time.time() * 1000) + skew_ms)
    headers = {
        "OK-ACCESS-KEY": key if key is not None else creds.api_key,
        "OK-ACCESS-SIGN": sign(
            secret if secret is not None else creds.secret_key, rest_prehash(ts, method, target, body)
        ),
        "OK-ACCESS-TIMESTAMP": ts,
        "OK-ACCESS-PASSPHRASE": passphrase if passphrase is not None else creds.passphrase,
        "Content-Type": "application/json",
    }
    if simulated is not None:
        headers["x-simulated-trading"] = simulated
    return headers


async def private(
    client: httpx.AsyncClient, fake: FakeOkx, method: str, target: str, body: Any = None, **kw: Any
) -> httpx.Response:
    text = json.dumps(body, separators=(",", ":")) if body is not None else ""
    headers = signed_headers(fake, method, target, text, **kw)
    return await client.request(method, target, content=text.encode() if text else None, headers=headers)


@asynccontextmanager
async def rest_client(fake: FakeOkx) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake.rest_url, timeout=60) as client:
        yield client


async def recv(ws: WebSocketConnection) -> Any:
    text = await ws.get_message()
    return text if text == "pong" else json.loads(text)


async def recv_until(ws: WebSocketConnection, pred: Any) -> Any:
    while True:
        msg = await recv(ws)
        if pred(msg):
            return msg


def login_msg(fake: FakeOkx, *, skew_s: int = 0, secret: str | None = None) -> str:
    ts = str(int(time.time()) + skew_s)
    creds = fake.credentials
    return json.dumps(
        {
            "op": "login",
            "args": [
                {
                    "apiKey": creds.api_key,
                    "passphrase": creds.passphrase,
                    "timestamp": ts,
                    "sign": sign(secret or creds.secret_key, ws_login_prehash(ts)),
                }
            ],
        }
    )


@asynccontextmanager
async def private_ws(fake: FakeOkx, *, subscribe_orders: bool = True) -> AsyncIterator[WebSocketConnection]:
    async with open_websocket_url(fake.ws_private_url) as ws:
        await ws.send_message(login_msg(fake))
        assert (await recv(ws))["event"] == "login"
        if subscribe_orders:
            await ws.send_message(
                json.dumps({"op": "subscribe", "args": [{"channel": "orders", "instType": "SPOT"}]})
            )
            ack = await recv(ws)
            assert ack["event"] == "subscribe" and ack["connId"]
            count = await recv(ws)
            assert count["event"] == "channel-conn-count" and count["channel"] == "orders"
        yield ws


async def order_push(ws: WebSocketConnection) -> dict[str, Any]:
    msg = await recv_until(ws, lambda m: isinstance(m, dict) and m.get("arg", {}).get("channel") == "orders")
    assert msg["arg"]["uid"]
    assert len(msg["data"]) == 1
    return msg["data"][0]


def limit(
    px: str, sz: str, side: str = "buy", cl: str = "", ord_type: str = "limit", inst: str = "BTC-USDT"
) -> dict[str, Any]:
    body = {"instId": inst, "tdMode": "cash", "side": side, "ordType": ord_type, "px": px, "sz": sz}
    if cl:
        body["clOrdId"] = cl
    return body


# ---------------------------------------------------------------------------- §1.4 vectors


SECRET = "chNOOS4KvNXR_Xq4k4c9qsfoKWvnDecLATCRlcBwyKDYnWgO"


@pytest.mark.parametrize(
    ("prehash", "expected"),
    [
        (
            "2020-12-08T09:08:57.715ZGET/api/v5/account/balance",
            "PJ61e1nb2F2Qd7D8SPiaIcx2gjdELc+o0ygzre9z33k=",
        ),
        (
            "2020-12-08T09:08:57.715ZGET/api/v5/account/balance?ccy=BTC",
            "ebNz0sDoc3LoFm1hqjP8LDT0fnRlDERj5C+I4ZqB4Cw=",
        ),
        (
            '2020-12-08T09:08:57.715ZPOST/api/v5/trade/order{"instId":"BTC-USD-200925","tdMode":"isolated","side":"buy","ordType":"limit","px":"432.11","sz":"2"}',
            "nEpHMx6gZYYjWVfzXtwccJAPmWrrmDHvV4cNsi10d6o=",
        ),
        (
            '2020-12-08T09:08:57.715ZPOST/api/v5/trade/cancel-batch-orders[{"instId":"BTC-USDT","ordId":"590908157585625111"}]',
            "k2NsE5KdJ0owpobMMqb9q7pCOOPkfXEKE8CsAbeiyE8=",
        ),
        ("1538054050GET/users/self/verify", "ENpPNQ8mQv8YzDMPhBsB4SrjaKK+FaEh2nozTRW6KU0="),
    ],
)
def test_signature_vectors(prehash: str, expected: str) -> None:
    assert sign(SECRET, prehash) == expected


def test_prehash_builders() -> None:
    assert rest_prehash("2020-12-08T09:08:57.715Z", "get", "/api/v5/account/balance?ccy=BTC", "") == (
        "2020-12-08T09:08:57.715ZGET/api/v5/account/balance?ccy=BTC"
    )
    assert ws_login_prehash("1538054050") == "1538054050GET/users/self/verify"


# ---------------------------------------------------------------------------- REST auth


async def test_public_endpoints() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            r = await client.get("/api/v5/public/time")
            assert r.status_code == 200
            body = r.json()
            assert body["code"] == "0" and isinstance(body["data"][0]["ts"], str)
            r = await client.get("/api/v5/public/instruments?instType=SPOT")
            items = {i["instId"]: i for i in r.json()["data"]}
            btc = items["BTC-USDT"]
            assert (btc["tickSz"], btc["lotSz"], btc["minSz"], btc["instIdCode"]) == (
                "0.1",
                "0.00000001",
                "0.00001",
                1000000000,
            )
            assert items["ETH-USDT"]["instIdCode"] == 1000000001
            assert btc["futureSettlement"] is False
            r = await client.get("/api/v5/public/instruments")
            assert r.status_code == 400 and r.json()["code"] == "50014"


async def test_rest_auth_errors() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            target = "/api/v5/account/balance?ccy=BTC"
            ok = await private(client, fake, "GET", target)
            assert ok.status_code == 200 and ok.json()["code"] == "0"

            async def code_of(**kw: Any) -> tuple[int, str]:
                r = await private(client, fake, "GET", target, **kw)
                return r.status_code, r.json()["code"]

            assert await code_of(secret="wrong") == (401, "50113")
            assert await code_of(key="nope") == (401, "50111")
            assert await code_of(passphrase="nope") == (401, "50105")
            assert await code_of(simulated=None) == (401, "50101")  # demo key without the demo header
            assert await code_of(simulated="0") == (401, "50101")
            assert await code_of(timestamp="1607418537") == (401, "50112")  # seconds, not ISO
            assert await code_of(timestamp="2020-12-08T09:08:57Z") == (401, "50112")  # no ms
            assert await code_of(skew_ms=-31_000) == (401, "50102")
            # the signature covers the raw query: signing the bare path is a bad signature
            ts = iso_ms(int(time.time() * 1000))
            headers = signed_headers(fake, "GET", "/api/v5/account/balance", timestamp=ts)
            r = await client.get(target, headers=headers)
            assert (r.status_code, r.json()["code"]) == (401, "50113")
            r = await client.get(target)
            assert (r.status_code, r.json()["code"]) == (401, "50103")


async def test_clock_offset_50102() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx(clock_offset_ms=45_000) as fake, rest_client(fake) as client:
            r = await private(client, fake, "GET", "/api/v5/trade/orders-pending")
            assert (r.status_code, r.json()["code"], r.json()["msg"]) == (
                401,
                "50102",
                "Timestamp request expired",
            )
            # syncing with /public/time (§1.5) fixes it
            server_ms = int((await client.get("/api/v5/public/time")).json()["data"][0]["ts"])
            skew = server_ms - int(time.time() * 1000)
            r = await private(client, fake, "GET", "/api/v5/trade/orders-pending", skew_ms=skew)
            assert r.json() == {"code": "0", "msg": "", "data": []}
            fake.clock_offset_ms = 0  # runtime change
            r = await private(client, fake, "GET", "/api/v5/trade/orders-pending", skew_ms=skew)
            assert r.json()["code"] == "50102"


# ---------------------------------------------------------------------------- REST trading


async def test_place_partial_fill_cancel_rest() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.set_market("BTC-USDT", bid=100.0, ask=100.2, bid_sz=1.0, ask_sz=1.0)
            r = await private(client, fake, "POST", "/api/v5/trade/order", limit("99.9", "0.5", cl="abc1"))
            body = r.json()
            assert r.status_code == 200 and body["code"] == "0"
            assert body["inTime"].isdigit() and body["outTime"].isdigit()
            item = body["data"][0]
            assert item["sCode"] == "0" and item["clOrdId"] == "abc1" and int(item["ordId"]) > 2**53
            ord_id = item["ordId"]
            assert fake.place_count("abc1") == 1
            pending = (
                await private(client, fake, "GET", "/api/v5/trade/orders-pending?instId=BTC-USDT")
            ).json()["data"]
            assert [o["ordId"] for o in pending] == [ord_id]
            assert pending[0]["avgPx"] == "" and pending[0]["fillPx"] == "" and pending[0]["state"] == "live"

            # the ask drops through our bid with only 0.2 at the touch -> partial maker fill at 99.9
            fake.set_market("BTC-USDT", bid=99.5, ask=99.8, bid_sz=1.0, ask_sz=0.2)
            r = await private(client, fake, "GET", f"/api/v5/trade/order?instId=BTC-USDT&ordId={ord_id}")
            o = r.json()["data"][0]
            assert (o["state"], o["accFillSz"], o["fillSz"], o["avgPx"], o["fillPx"]) == (
                "partially_filled",
                "0.2",
                "0.2",
                "99.9",
                "99.9",
            )
            assert o["fee"] == "-0.00016" and o["feeCcy"] == "BTC" and o["reduceOnly"] == "false"
            fills = (await private(client, fake, "GET", "/api/v5/trade/fills?instId=BTC-USDT")).json()["data"]
            assert len(fills) == 1 and fills[0]["execType"] == "M" and fills[0]["fee"] == "-0.00016"

            # cancel: accepted now, effective later (§2.3)
            r = await private(
                client, fake, "POST", "/api/v5/trade/cancel-order", {"instId": "BTC-USDT", "clOrdId": "abc1"}
            )
            assert r.json()["code"] == "0" and r.json()["data"][0]["ordId"] == ord_id
            await trio.testing.wait_all_tasks_blocked()
            assert fake.orders[ord_id]["state"] == "canceled" and fake.orders[ord_id]["cancelSource"] == "1"
            r = await private(
                client, fake, "POST", "/api/v5/trade/cancel-order", {"instId": "BTC-USDT", "ordId": ord_id}
            )
            assert (
                r.status_code == 200 and r.json()["code"] == "1" and r.json()["data"][0]["sCode"] == "51400"
            )
            r = await private(client, fake, "GET", "/api/v5/trade/order?instId=BTC-USDT&ordId=123")
            assert r.json() == {"code": "51603", "msg": "Order does not exist", "data": []}
            # clOrdId reusable once the previous order is terminal (§3.5)
            r = await private(client, fake, "POST", "/api/v5/trade/order", limit("99.0", "0.1", cl="abc1"))
            assert r.json()["code"] == "0" and fake.place_count("abc1") == 2
            bal = (await private(client, fake, "GET", "/api/v5/account/balance")).json()["data"]
            assert len(bal) == 1 and {d["ccy"] for d in bal[0]["details"]} >= {"BTC", "USDT"}


async def test_order_validation_rest() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.set_market("BTC-USDT", bid=100.0, ask=100.2)

            async def place(body: Any) -> httpx.Response:
                return await private(client, fake, "POST", "/api/v5/trade/order", body)

            r = await place(limit("99.9", "0.1", cl="bad-id"))
            assert (r.status_code, r.json()["code"], r.json()["msg"]) == (
                400,
                "51000",
                "Parameter clOrdId  error",
            )
            r = await place(limit("99.9", "0.1", cl="x" * 33))
            assert r.json()["code"] == "51000"
            r = await place(limit("99.9", "0.1", cl="under_score"))
            assert r.json()["code"] == "51000"
            r = await place({**limit("99.9", "0.1"), "sz": 0.1})  # number instead of string (§3.3)
            assert r.json()["code"] == "51000"
            r = await place({k: v for k, v in limit("99.9", "0.1").items() if k != "side"})
            assert (r.status_code, r.json()["code"]) == (400, "50014")
            r = await place(limit("99.9", "0.000001"))  # below minSz -> 51121 per item
            assert (r.status_code, r.json()["code"], r.json()["data"][0]["sCode"]) == (200, "1", "51121")
            assert r.json()["data"][0]["ordId"] == ""
            r = await place(limit("99.95", "0.1"))  # off tick
            assert r.json()["code"] == "51000"
            r = await place(limit("99.9", "5000"))  # 51008 insufficient USDT
            item = r.json()["data"][0]
            assert (item["sCode"], item["subCode"]) == ("51008", "1000")
            r = await place(limit("99.9", "0.1", cl="dup1"))
            assert r.json()["code"] == "0"
            r = await place(limit("99.8", "0.1", cl="dup1"))
            assert r.json()["data"][0]["sCode"] == "51016"
            # batch: mixed -> code 2; duplicate within the request -> 51016
            r = await private(
                client,
                fake,
                "POST",
                "/api/v5/trade/batch-orders",
                [limit("99.0", "0.1", cl="b1"), limit("99.0", "0.1", cl="b1"), limit("98.0", "0.1", cl="b2")],
            )
            assert r.json()["code"] == "2"
            assert [i["sCode"] for i in r.json()["data"]] == ["0", "51016", "0"]
            r = await client.post(
                "/api/v5/trade/order",
                content=b"{not json",
                headers=signed_headers(fake, "POST", "/api/v5/trade/order", "{not json"),
            )
            assert (r.status_code, r.json()["code"]) == (400, "50002")


async def test_order_types_and_market_quote_sizing() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client, private_ws(fake) as ws:
            fake.set_market("BTC-USDT", bid=100.0, ask=100.2, bid_sz=1.0, ask_sz=1.0)

            async def place(body: Any) -> dict[str, Any]:
                r = await private(client, fake, "POST", "/api/v5/trade/order", body)
                assert r.json()["code"] == "0", r.json()
                return r.json()["data"][0]

            # post_only that would take -> accepted, then canceled with cancelSource 31 (§3.2)
            item = await place(limit("100.2", "0.1", ord_type="post_only"))
            assert (await order_push(ws))["state"] == "live"
            p = await order_push(ws)
            assert (p["ordId"], p["state"], p["cancelSource"]) == (item["ordId"], "canceled", "31")
            # fok larger than the touch -> canceled 13, nothing filled
            await place(limit("100.2", "2", ord_type="fok"))
            assert (await order_push(ws))["state"] == "live"
            p = await order_push(ws)
            assert (p["state"], p["cancelSource"], p["accFillSz"]) == ("canceled", "13", "0")
            # ioc for 1.5 against 1.0 at the touch -> partial taker fill then canceled 14
            await place(limit("100.3", "1.5", ord_type="ioc"))
            assert (await order_push(ws))["state"] == "live"
            p = await order_push(ws)
            assert (p["state"], p["fillSz"], p["fillPx"], p["execType"]) == (
                "partially_filled",
                "1",
                "100.2",
                "T",
            )
            p = await order_push(ws)
            assert (p["state"], p["cancelSource"], p["accFillSz"], p["fillSz"], p["tradeId"]) == (
                "canceled",
                "14",
                "1",
                "0",
                "",
            )
            # market buy WITHOUT tgtCcy: sz is a QUOTE amount (§3.4, §8.9)
            fake.set_market("BTC-USDT", bid=100.0, ask=100.2, bid_sz=1.0, ask_sz=1.0)
            await place(
                {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": "50.1"}
            )
            assert (await order_push(ws))["tgtCcy"] == "quote_ccy"
            p = await order_push(ws)
            assert (p["state"], p["fillSz"], p["fillPx"], p["sz"]) == (
                "partially_filled",
                "0.5",
                "100.2",
                "50.1",
            )
            p = await order_push(ws)  # then filled with fillSz "0" and no tradeId (§5.6 (2))
            assert (p["state"], p["fillSz"], p["tradeId"], p["accFillSz"]) == ("filled", "0", "", "0.5")
            # ... so a base size sent without tgtCcy is a tiny quote amount -> 51020
            r = await private(
                client,
                fake,
                "POST",
                "/api/v5/trade/order",
                {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": "0.001"},
            )
            assert r.json()["data"][0]["sCode"] == "51020"
            # with tgtCcy base_ccy the size is base
            await place(
                {
                    "instId": "BTC-USDT",
                    "tdMode": "cash",
                    "side": "buy",
                    "ordType": "market",
                    "sz": "0.2",
                    "tgtCcy": "base_ccy",
                }
            )
            assert (await order_push(ws))["state"] == "live"
            p = await order_push(ws)
            assert (p["state"], p["fillSz"], p["accFillSz"], p["avgPx"]) == ("filled", "0.2", "0.2", "100.2")


# ---------------------------------------------------------------------------- WS private


async def test_ws_login_errors_and_60011() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake:
            async with open_websocket_url(fake.ws_private_url) as ws:
                await ws.send_message(
                    json.dumps({"op": "subscribe", "args": [{"channel": "orders", "instType": "ANY"}]})
                )
                err = await recv(ws)
                assert (err["event"], err["code"]) == ("error", "60011")
                await ws.send_message(login_msg(fake, secret="wrong"))
                err = await recv(ws)
                assert (err["event"], err["code"]) == ("error", "60007")
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason.code == 4001
            async with open_websocket_url(fake.ws_private_url) as ws:
                await ws.send_message(login_msg(fake, skew_s=-40))
                assert (await recv(ws))["code"] == "60006"
            async with open_websocket_url(fake.ws_private_url) as ws:
                await ws.send_message(login_msg(fake))
                ok = await recv(ws)
                assert (ok["event"], ok["code"], ok["msg"]) == ("login", "0", "")


async def test_ws_orders_push_lifecycle() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client, private_ws(fake) as ws:
            fake.set_market("BTC-USDT", bid=100.0, ask=100.2, bid_sz=1.0, ask_sz=1.0)
            r = await private(
                client, fake, "POST", "/api/v5/trade/order", limit("100.1", "0.5", side="sell", cl="s1")
            )
            ord_id = r.json()["data"][0]["ordId"]
            # no snapshot on subscribe: the first orders message is our new order (§5.6)
            p = await order_push(ws)
            assert (p["ordId"], p["state"], p["fillSz"], p["tradeId"], p["avgPx"], p["code"]) == (
                ord_id,
                "live",
                "0",
                "",
                "0",
                "0",
            )
            fake.print_trade("BTC-USDT", px=100.1, sz=0.2, side="buy")
            p1 = await order_push(ws)
            assert (p1["state"], p1["fillSz"], p1["fillPx"], p1["accFillSz"], p1["execType"]) == (
                "partially_filled",
                "0.2",
                "100.1",
                "0.2",
                "M",
            )
            assert p1["fee"].startswith("-") and p1["feeCcy"] == "USDT" and p1["fillFee"] == p1["fee"]
            fake.duplicate_pushes = True
            fake.print_trade("BTC-USDT", px=100.2, sz=1.0, side="buy")
            p2 = await order_push(ws)
            p2_dup = await order_push(ws)
            assert p2 == p2_dup and p2["tradeId"] != p1["tradeId"]
            assert (p2["state"], p2["fillSz"], p2["accFillSz"]) == ("filled", "0.3", "0.5")
            assert abs(float(p2["fee"])) > abs(float(p1["fee"]))  # accumulated
            fake.duplicate_pushes = False
            # lost push: REST still shows the change
            fake.private_pushes_paused = True
            r = await private(client, fake, "POST", "/api/v5/trade/order", limit("99.0", "0.1", cl="lost1"))
            lost_id = r.json()["data"][0]["ordId"]
            assert fake.dropped_pushes[-1]["ordId"] == lost_id
            fake.private_pushes_paused = False
            r = await private(
                client,
                fake,
                "POST",
                "/api/v5/trade/amend-order",
                {"instId": "BTC-USDT", "ordId": lost_id, "newPx": "99.5", "reqId": "r1"},
            )
            assert r.json()["data"][0]["sCode"] == "0" and r.json()["data"][0]["reqId"] == "r1"
            p = await order_push(ws)
            assert (p["ordId"], p["amendResult"], p["reqId"], p["px"]) == (lost_id, "0", "r1", "99.5")


async def test_ws_trading_ops() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, private_ws(fake) as ws:
            fake.set_market("ETH-USDT", bid=10.0, ask=10.02)
            arg = {
                "side": "buy",
                "tdMode": "cash",
                "ordType": "limit",
                "px": "9.5",
                "sz": "1",
                "clOrdId": "w1",
            }
            # instId instead of instIdCode -> 50014 per item, code "1" (§0, §8.13)
            await ws.send_message(
                json.dumps({"id": "1", "op": "order", "args": [{**arg, "instId": "ETH-USDT"}]})
            )
            resp = await recv_until(ws, lambda m: m.get("id") == "1")
            assert (resp["op"], resp["code"]) == ("order", "1")
            assert resp["data"][0]["sCode"] == "50014"
            assert resp["data"][0]["sMsg"].startswith("Parameter instIdCode can not be empty")
            assert fake.place_count("w1") == 0
            # unknown instIdCode -> 51001
            await ws.send_message(json.dumps({"id": "2", "op": "order", "args": [{**arg, "instIdCode": 42}]}))
            assert (await recv_until(ws, lambda m: m.get("id") == "2"))["data"][0]["sCode"] == "51001"
            # malformed args -> 60013 with empty data
            await ws.send_message(json.dumps({"id": "3", "op": "order", "args": {"nope": 1}}))
            resp = await recv_until(ws, lambda m: m.get("id") == "3")
            assert (resp["code"], resp["data"]) == ("60013", [])
            # a good one
            await ws.send_message(
                json.dumps({"id": "4", "op": "order", "args": [{**arg, "instIdCode": 1000000001}]})
            )
            resp = await recv_until(ws, lambda m: m.get("id") == "4")
            assert (resp["op"], resp["code"]) == ("order", "0") and resp["inTime"] and resp["outTime"]
            ord_id = resp["data"][0]["ordId"]
            assert fake.place_count("w1") == 1 and fake.orders[ord_id]["instId"] == "ETH-USDT"
            # amend then cancel through WS; ts of the items = order creation time (§6)
            await ws.send_message(
                json.dumps(
                    {
                        "id": "5",
                        "op": "amend-order",
                        "args": [{"instIdCode": 1000000001, "ordId": ord_id, "newSz": "2", "reqId": "a1"}],
                    }
                )
            )
            resp = await recv_until(ws, lambda m: m.get("id") == "5")
            assert resp["data"][0]["sCode"] == "0" and resp["data"][0]["ts"] == fake.orders[ord_id]["cTime"]
            p = await recv_until(
                ws, lambda m: m.get("arg", {}).get("channel") == "orders" and m["data"][0]["reqId"] == "a1"
            )
            assert p["data"][0]["sz"] == "2"
            await ws.send_message(
                json.dumps(
                    {
                        "id": "6",
                        "op": "batch-cancel-orders",
                        "args": [
                            {"instIdCode": 1000000001, "ordId": ord_id},
                            {"instIdCode": 1000000001, "ordId": "1"},
                        ],
                    }
                )
            )
            resp = await recv_until(ws, lambda m: m.get("id") == "6")
            assert resp["code"] == "2" and [i["sCode"] for i in resp["data"]] == ["0", "51400"]
            p = await order_push(ws)
            assert (p["state"], p["cancelSource"]) == ("canceled", "1")


async def test_rate_limit_shared_rest_ws() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_fake_okx() as fake,
            rest_client(fake) as client,
            private_ws(fake, subscribe_orders=False) as ws,
        ):
            fake.rate_limit_per_2s = 2
            for px in ("90.0", "90.1"):
                r = await private(client, fake, "POST", "/api/v5/trade/order", limit(px, "0.01"))
                assert r.json()["code"] == "0"
            await ws.send_message(
                json.dumps(
                    {
                        "id": "9",
                        "op": "order",
                        "args": [
                            {
                                "instIdCode": 1000000000,
                                "side": "buy",
                                "tdMode": "cash",
                                "ordType": "limit",
                                "px": "90.2",
                                "sz": "0.01",
                            }
                        ],
                    }
                )
            )
            resp = await recv_until(ws, lambda m: m.get("id") == "9")
            assert resp["data"][0]["sCode"] == "50011"
            r = await private(client, fake, "POST", "/api/v5/trade/order", limit("90.3", "0.01"))
            assert (r.status_code, r.json()) == (429, {"msg": "Too Many Requests", "code": "50011"})
            # another instrument has its own bucket
            r = await private(
                client, fake, "POST", "/api/v5/trade/order", limit("9.0", "0.01", inst="ETH-USDT")
            )
            assert r.json()["code"] == "0"


# ---------------------------------------------------------------------------- WS public, keepalive


async def test_public_subscribe_and_pushes() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, open_websocket_url(fake.ws_public_url) as ws:
            fake.set_market("BTC-USDT", bid=100.0, ask=100.2, bid_sz=1.0, ask_sz=2.0)
            await ws.send_message(
                json.dumps(
                    {
                        "id": "7",
                        "op": "subscribe",
                        "args": [
                            {"channel": "tickers", "instId": "BTC-USDT"},
                            {"channel": "books5", "instId": "BTC-USDT"},
                            {"channel": "trades", "instId": "BTC-USDT"},
                            {"channel": "tickers", "instId": "NOPE-USDT"},
                            {"channel": "candle1m", "instId": "BTC-USDT"},
                        ],
                    }
                )
            )
            acks = [await recv(ws) for _ in range(7)]
            events = [(a.get("event"), a.get("code")) for a in acks if "event" in a]
            assert events == [("subscribe", None)] * 3 + [("error", "60018"), ("error", "64001")]
            assert all(a["connId"] for a in acks if "event" in a)
            fake.set_market("BTC-USDT", bid=100.1, ask=100.3, bid_sz=1.0, ask_sz=2.0)
            tick = await recv_until(ws, lambda m: m.get("arg", {}).get("channel") == "tickers")
            assert (tick["data"][0]["bidPx"], tick["data"][0]["askPx"], tick["data"][0]["askSz"]) == (
                "100.1",
                "100.3",
                "2",
            )
            book = await recv_until(ws, lambda m: m.get("arg", {}).get("channel") == "books5")
            level = book["data"][0]["asks"][0]
            assert level == ["100.3", "2", "0", "1"] and isinstance(book["data"][0]["seqId"], int)
            assert len(book["data"][0]["bids"]) == 5
            fake.print_trade("BTC-USDT", px=100.2, sz=0.5, side="sell")
            trade = await recv_until(ws, lambda m: m.get("arg", {}).get("channel") == "trades")
            t = trade["data"][0]
            assert (t["px"], t["sz"], t["side"], t["count"]) == ("100.2", "0.5", "sell", "1")
            assert isinstance(t["seqId"], int)
            await ws.send_message(
                json.dumps({"op": "unsubscribe", "args": [{"channel": "trades", "instId": "BTC-USDT"}]})
            )
            assert (await recv_until(ws, lambda m: m.get("event") == "unsubscribe"))["arg"][
                "channel"
            ] == "trades"
            await ws.send_message("ping")
            assert await recv_until(ws, lambda m: m == "pong") == "pong"
            await ws.send_message(json.dumps({"op": "ping"}))  # JSON ping is not a ping (§4.2)
            assert (await recv_until(ws, lambda m: m != "pong" and "event" in m))["code"] == "60012"
            await fake.send_notice("public")
            notice = await recv_until(ws, lambda m: m.get("event") == "notice")
            assert notice["code"] == "64008"


async def test_idle_close_and_ping(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(200):
        async with open_fake_okx(idle_timeout=30.0) as fake:
            async with open_websocket_url(fake.ws_public_url) as ws:
                for _ in range(3):  # pinging every 20 s keeps the connection open
                    await trio.sleep(20)
                    await ws.send_message("ping")
                    assert await ws.get_message() == "pong"
                t0 = trio.current_time()
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason.code == 4004
                assert 29.9 <= trio.current_time() - t0 <= 31
            async with open_websocket_url(fake.ws_public_url) as ws:
                await fake.disconnect("public")
                with pytest.raises(ConnectionClosed):
                    await ws.get_message()
                assert fake.connections("public") == []


# ------------------------------------------------------------------- outcome unknown, dead man's switch


async def test_stall_next(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            fake.stall_next("POST /api/v5/trade/order", 15)
            t0 = trio.current_time()
            r = await private(client, fake, "POST", "/api/v5/trade/order", limit("90.0", "0.01", cl="slow1"))
            assert r.json()["code"] == "0" and trio.current_time() - t0 >= 15
            fake.stall_next("/api/v5/trade/order", 5, drop=True)
            with pytest.raises(httpx.TransportError):
                await private(client, fake, "POST", "/api/v5/trade/order", limit("90.0", "0.01", cl="lost2"))
            assert fake.place_count("lost2") == 1  # placed, answer never came
            fake.stall_next("/api/v5/trade/order", 1, error_code="50004")
            r = await private(client, fake, "POST", "/api/v5/trade/order", limit("90.0", "0.01", cl="lost3"))
            assert (r.status_code, r.json()["code"]) == (400, "50004") and fake.place_count("lost3") == 1
            async with private_ws(fake, subscribe_orders=False) as ws:
                fake.stall_next("order", 10, drop=True)
                await ws.send_message(
                    json.dumps(
                        {
                            "id": "1",
                            "op": "order",
                            "args": [
                                {
                                    "instIdCode": 1000000000,
                                    "side": "buy",
                                    "tdMode": "cash",
                                    "ordType": "limit",
                                    "px": "90",
                                    "sz": "0.01",
                                    "clOrdId": "wslost",
                                }
                            ],
                        }
                    )
                )
                with pytest.raises(ConnectionClosed):
                    await ws.get_message()
                assert fake.place_count("wslost") == 1


async def test_cancel_all_after(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        async with open_fake_okx() as fake, rest_client(fake) as client, private_ws(fake) as ws:
            r = await private(client, fake, "POST", "/api/v5/trade/cancel-all-after", {"timeOut": "5"})
            assert (r.status_code, r.json()["code"]) == (400, "51000")
            await trio.sleep(1.1)  # 1 request / s
            r = await private(client, fake, "POST", "/api/v5/trade/cancel-all-after", {"timeOut": "10"})
            data = r.json()["data"][0]
            assert (
                r.json()["code"] == "0" and int(data["triggerTime"]) > int(data["ts"]) and data["tag"] == ""
            )
            assert fake.cancel_all_after_state.timeout_s == 10
            r = await private(client, fake, "POST", "/api/v5/trade/order", limit("90.0", "0.01"))
            assert (await order_push(ws))["state"] == "live"
            t0 = trio.current_time()
            p = await order_push(ws)
            assert (p["state"], p["cancelSource"]) == ("canceled", "20")
            assert 8 <= trio.current_time() - t0 <= 10.5
            assert fake.cancel_all_after_state.fired_count == 1
            await trio.sleep(1.1)
            r = await private(client, fake, "POST", "/api/v5/trade/cancel-all-after", {"timeOut": "0"})
            assert r.json()["data"][0]["triggerTime"] == "0"


async def test_recorded_requests() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client:
            await private(client, fake, "GET", "/api/v5/trade/orders-pending?instType=SPOT")
            req = fake.requests[-1]
            assert (req.transport, req.method, req.path, req.op, req.query) == (
                "rest",
                "GET",
                "/api/v5/trade/orders-pending",
                None,
                {"instType": "SPOT"},
            )
            async with private_ws(fake, subscribe_orders=False):
                pass
            assert [r.op for r in fake.requests if r.transport == "ws"] == ["login"]


async def test_amend_edge_cases() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake, rest_client(fake) as client, private_ws(fake) as ws:
            fake.set_market("BTC-USDT", bid=100.0, ask=100.2, bid_sz=1.0, ask_sz=0.3)
            r = await private(client, fake, "POST", "/api/v5/trade/order", limit("100.2", "1", cl="am1"))
            ord_id = r.json()["data"][0]["ordId"]
            assert (await order_push(ws))["state"] == "live"
            p = await order_push(ws)  # took 0.3 at the touch, rests for the remaining 0.7
            assert (p["state"], p["accFillSz"]) == ("partially_filled", "0.3")
            # newSz (total) <= filled -> the order becomes filled (§2.5)
            r = await private(
                client,
                fake,
                "POST",
                "/api/v5/trade/amend-order",
                {"instId": "BTC-USDT", "clOrdId": "am1", "newSz": "0.3", "reqId": "r2"},
            )
            assert r.json()["data"][0]["sCode"] == "0"
            p = await order_push(ws)
            assert (p["state"], p["amendResult"], p["reqId"], p["fillSz"]) == ("filled", "0", "r2", "0")
            r = await private(
                client,
                fake,
                "POST",
                "/api/v5/trade/amend-order",
                {"instId": "BTC-USDT", "ordId": ord_id, "newSz": "0.5"},
            )
            assert (r.json()["code"], r.json()["data"][0]["sCode"]) == ("1", "51503")
            # 51513: more than 3 amends in flight for one order
            fake.effect_delay = 1.0
            r = await private(client, fake, "POST", "/api/v5/trade/order", limit("90.0", "0.1", cl="am2"))
            codes = []
            for i in range(4):
                r = await private(
                    client,
                    fake,
                    "POST",
                    "/api/v5/trade/amend-order",
                    {"instId": "BTC-USDT", "clOrdId": "am2", "newPx": f"9{i}.1"},
                )
                codes.append(r.json()["data"][0]["sCode"])
            assert codes == ["0", "0", "0", "51513"]


async def test_business_path_and_conn_count() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_okx() as fake:
            fake.max_private_channel_conns = 1
            async with open_websocket_url(fake.ws_business_url) as ws:
                await ws.send_message(
                    json.dumps(
                        {
                            "op": "subscribe",
                            "args": [
                                {"channel": "candle1m", "instId": "BTC-USDT"},
                                {"channel": "tickers", "instId": "BTC-USDT"},
                            ],
                        }
                    )
                )
                assert (await recv(ws))["event"] == "subscribe"
                assert (await recv(ws))["code"] == "64002"
            async with private_ws(fake), open_websocket_url(fake.ws_private_url) as ws2:
                await ws2.send_message(login_msg(fake))
                await recv(ws2)
                await ws2.send_message(
                    json.dumps({"op": "subscribe", "args": [{"channel": "orders", "instType": "ANY"}]})
                )
                assert (await recv(ws2))["event"] == "subscribe"
                err = await recv(ws2)
                assert (err["event"], err["channel"], err["connCount"]) == (
                    "channel-conn-count-error",
                    "orders",
                    "1",
                )


async def test_standalone_main(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.fakeokx.__main__ import parse_args, run

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            fake = await nursery.start(run, parse_args(["--port-rest", "0", "--port-ws", "0", "--seed", "7"]))
            info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
            assert info["rest_url"] == fake.rest_url and info["ws_private_url"] == fake.ws_private_url
            assert (info["api_key"], info["secret_key"], info["passphrase"]) == (
                "fake-key",
                "fake-secret",
                "fake-pass",
            )
            async with rest_client(fake) as client, private_ws(fake) as ws:
                book = fake.exchange.books5("BTC-USDT")
                assert book is not None
                bid = book["bids"][0][0]
                await private(client, fake, "POST", "/api/v5/trade/order", limit(bid, "0.01"))
                assert (await order_push(ws))["state"] == "live"
                await ws.send_message("ping")  # keep the connection alive across virtual time
                p = await order_push(ws)  # the random walk eventually crosses it
                assert p["state"] == "filled"
            nursery.cancel_scope.cancel()


async def test_exp_time_and_live_key() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_fake_okx() as fake,
            rest_client(fake) as client,
            private_ws(fake, subscribe_orders=False) as ws,
        ):
            body = json.dumps(limit("90.0", "0.01", cl="late1"), separators=(",", ":"))
            headers = signed_headers(fake, "POST", "/api/v5/trade/order", body)
            headers["expTime"] = str(fake.now_ms() - 1)
            r = await client.post("/api/v5/trade/order", content=body.encode(), headers=headers)
            assert r.json()["code"] == "1" and r.json()["data"][0]["sCode"] == fake.exchange.exp_time_code
            headers = signed_headers(fake, "POST", "/api/v5/trade/order", body)
            headers["expTime"] = str(fake.now_ms() + 60_000)
            r = await client.post("/api/v5/trade/order", content=body.encode(), headers=headers)
            assert r.json()["code"] == "0"
            await ws.send_message(
                json.dumps(
                    {
                        "id": "1",
                        "op": "order",
                        "expTime": str(fake.now_ms() - 1),
                        "args": [
                            {
                                "instIdCode": 1000000000,
                                "side": "buy",
                                "tdMode": "cash",
                                "ordType": "limit",
                                "px": "90",
                                "sz": "0.01",
                                "clOrdId": "late2",
                            }
                        ],
                    }
                )
            )
            resp = await recv_until(ws, lambda m: m.get("id") == "1")
            assert resp["code"] == "1" and fake.place_count("late2") == 0 and fake.place_count("late1") == 1
        async with open_fake_okx(demo=False) as fake, rest_client(fake) as client:
            r = await private(client, fake, "GET", "/api/v5/account/balance")
            assert (r.status_code, r.json()["code"]) == (401, "50101")  # live key + demo header
            r = await private(client, fake, "GET", "/api/v5/account/balance", simulated=None)
            assert r.json()["code"] == "0"
