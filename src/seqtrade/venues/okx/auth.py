"""OKX v5 signing: credentials, prehash strings and HMAC-SHA256 signatures (docs/okx.md §1, §4.3).

Pure: no I/O, no trio, no httpx. The ``httpx.Auth`` flow that puts these on the wire lives in
:mod:`seqtrade.venues.okx.rest`. Secrets are never logged and never appear in a ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ...errors import VenueAuthError

if TYPE_CHECKING:
    from ...config import OkxConfig

__all__ = [
    "OkxCredentials",
    "sign",
    "rest_prehash",
    "rest_sign",
    "iso_timestamp",
    "ws_login_args",
    "WS_LOGIN_PATH",
]

WS_LOGIN_PATH = "/users/self/verify"


@dataclass(frozen=True, slots=True)
class OkxCredentials:
    """An OKX API key, its secret and passphrase. The repr shows none of them."""

    api_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    passphrase: str = field(repr=False)

    def __repr__(self) -> str:
        return "OkxCredentials(api_key='***')"

    __str__ = __repr__

    @classmethod
    def from_env(cls, cfg: OkxConfig, environ: Mapping[str, str]) -> OkxCredentials:
        """Read the three secrets from the environment variables named in ``cfg``.

        A missing or empty variable raises :class:`VenueAuthError` naming the variable (never a value).
        """
        values: list[str] = []
        for var in (cfg.api_key_env, cfg.secret_key_env, cfg.passphrase_env):
            value = environ.get(var, "")
            if not value:
                raise VenueAuthError(f"OKX credentials: environment variable {var} is not set")
            values.append(value)
        return cls(api_key=values[0], secret_key=values[1], passphrase=values[2])


def sign(secret: str, prehash: str) -> str:
    """base64(HMAC-SHA256(secret as UTF-8 bytes, prehash))."""
    digest = hmac.new(secret.encode(), prehash.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def iso_timestamp(ms: int) -> str:
    """``OK-ACCESS-TIMESTAMP`` for a ms epoch time: UTC ISO-8601 with 3 ms digits and ``Z``."""
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def rest_prehash(timestamp: str, method: str, request_path: str, body: str = "") -> str:
    """``timestamp + METHOD + requestPath (with ?query for GET) + body``."""
    return f"{timestamp}{method.upper()}{request_path}{body}"


def rest_sign(secret: str, timestamp: str, method: str, request_path: str, body: str = "") -> str:
    """The ``OK-ACCESS-SIGN`` value of one REST request."""
    return sign(secret, rest_prehash(timestamp, method, request_path, body))


def ws_login_args(creds: OkxCredentials, timestamp_s: int) -> dict[str, str]:
    """The single ``args`` item of a WebSocket ``login`` op (timestamp in **seconds**)."""
    ts = str(int(timestamp_s))
    return {
        "apiKey": creds.api_key,
        "passphrase": creds.passphrase,
        "timestamp": ts,
        "sign": sign(creds.secret_key, ts + "GET" + WS_LOGIN_PATH),
    }
