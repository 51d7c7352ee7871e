"""Signing against the known vectors of docs/okx.md §1.4, credentials handling, the httpx.Auth flow."""

from __future__ import annotations

import json

import httpx
import pytest

from seqtrade.config import OkxConfig
from seqtrade.errors import VenueAuthError
from seqtrade.venues.okx.auth import (
    OkxCredentials,
    iso_timestamp,
    rest_prehash,
    rest_sign,
    sign,
    ws_login_args,
)
from seqtrade.venues.okx.rest import ExchangeClock, OkxAuth

SECRET = "chNOOS4KvNXR_Xq4k4c9qsfoKWvnDecLATCRlcBwyKDYnWgO"
TS = "2020-12-08T09:08:57.715Z"


@pytest.mark.parametrize(
    ("prehash", "expected"),
    [
        (f"{TS}GET/api/v5/account/balance", "PJ61e1nb2F2Qd7D8SPiaIcx2gjdELc+o0ygzre9z33k="),
        (f"{TS}GET/api/v5/account/balance?ccy=BTC", "ebNz0sDoc3LoFm1hqjP8LDT0fnRlDERj5C+I4ZqB4Cw="),
        (
            f'{TS}POST/api/v5/trade/order{{"instId":"BTC-USD-200925","tdMode":"isolated","side":"buy",'
            '"ordType":"limit","px":"432.11","sz":"2"}',
            "nEpHMx6gZYYjWVfzXtwccJAPmWrrmDHvV4cNsi10d6o=",
        ),
        (
            f'{TS}POST/api/v5/trade/cancel-batch-orders[{{"instId":"BTC-USDT","ordId":"590908157585625111"}}]',
            "k2NsE5KdJ0owpobMMqb9q7pCOOPkfXEKE8CsAbeiyE8=",
        ),
        ("1538054050GET/users/self/verify", "ENpPNQ8mQv8YzDMPhBsB4SrjaKK+FaEh2nozTRW6KU0="),
    ],
)
def test_sign_vectors(prehash: str, expected: str) -> None:
    assert sign(SECRET, prehash) == expected


def test_rest_prehash_and_sign() -> None:
    assert (
        rest_prehash(TS, "get", "/api/v5/account/balance?ccy=BTC")
        == f"{TS}GET/api/v5/account/balance?ccy=BTC"
    )
    assert (
        rest_sign(SECRET, TS, "GET", "/api/v5/account/balance")
        == "PJ61e1nb2F2Qd7D8SPiaIcx2gjdELc+o0ygzre9z33k="
    )


def test_iso_timestamp_has_three_ms_digits_and_z() -> None:
    assert iso_timestamp(1607418537715) == TS
    assert iso_timestamp(1607418537005) == "2020-12-08T09:08:57.005Z"
    assert iso_timestamp(1607418537000) == "2020-12-08T09:08:57.000Z"


def test_ws_login_args_seconds_timestamp() -> None:
    creds = OkxCredentials("key", SECRET, "pass")
    args = ws_login_args(creds, 1538054050)
    assert args == {
        "apiKey": "key",
        "passphrase": "pass",
        "timestamp": "1538054050",
        "sign": "ENpPNQ8mQv8YzDMPhBsB4SrjaKK+FaEh2nozTRW6KU0=",
    }


def test_credentials_from_env_and_masked_repr() -> None:
    cfg = OkxConfig()
    env = {"OKX_API_KEY": "k-123", "OKX_SECRET_KEY": "s-456", "OKX_PASSPHRASE": "p-789"}
    creds = OkxCredentials.from_env(cfg, env)
    assert (creds.api_key, creds.secret_key, creds.passphrase) == ("k-123", "s-456", "p-789")
    assert repr(creds) == "OkxCredentials(api_key='***')"
    assert str(creds) == repr(creds)
    for secret in env.values():
        assert secret not in repr(creds) and secret not in f"{creds!s} {[creds]}"


def test_credentials_missing_variable_is_named_not_valued() -> None:
    cfg = OkxConfig(passphrase_env="MY_PASS")
    with pytest.raises(VenueAuthError, match="MY_PASS") as info:
        OkxCredentials.from_env(cfg, {"OKX_API_KEY": "k-123", "OKX_SECRET_KEY": "s-456"})
    assert "k-123" not in str(info.value) and "s-456" not in str(info.value)
    with pytest.raises(VenueAuthError, match="OKX_SECRET_KEY"):
        OkxCredentials.from_env(
            OkxConfig(), {"OKX_API_KEY": "k", "OKX_SECRET_KEY": "", "OKX_PASSPHRASE": "p"}
        )


async def test_httpx_auth_flow_signs_raw_target_and_body() -> None:
    creds = OkxCredentials("key", SECRET, "pass")
    clock = ExchangeClock()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"code": "0", "msg": "", "data": []})

    async with httpx.AsyncClient(
        base_url="https://example.test", transport=httpx.MockTransport(handler)
    ) as c:
        body = json.dumps({"instId": "BTC-USDT", "sz": "2"}, separators=(",", ":"))
        await c.post("/api/v5/trade/order", content=body, auth=OkxAuth(creds, clock))
        await c.get("/api/v5/trade/order?instId=BTC-USDT&clOrdId=abc1", auth=OkxAuth(creds, clock))
    post, get = seen
    ts = post.headers["OK-ACCESS-TIMESTAMP"]
    assert ts.endswith("Z") and len(ts) == len(TS)
    assert post.headers["OK-ACCESS-KEY"] == "key" and post.headers["OK-ACCESS-PASSPHRASE"] == "pass"
    assert post.headers["OK-ACCESS-SIGN"] == sign(SECRET, f"{ts}POST/api/v5/trade/order{body}")
    gts = get.headers["OK-ACCESS-TIMESTAMP"]
    assert get.headers["OK-ACCESS-SIGN"] == sign(
        SECRET, f"{gts}GET/api/v5/trade/order?instId=BTC-USDT&clOrdId=abc1"
    )


def test_clock_offset_applies_to_timestamps() -> None:
    clock = ExchangeClock()
    clock.update(server_ms=1_000_040_000, sent_ms=999_999_990, received_ms=1_000_000_010)
    assert clock.offset_ms == 40_000
