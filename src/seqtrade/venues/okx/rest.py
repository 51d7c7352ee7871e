"""OKX REST over httpx: signing as an ``httpx.Auth`` flow, the exchange clock, error mapping.

httpx exceptions enter seqtrade here and nowhere else: a transport failure or timeout becomes
:class:`VenueError` (for a write: *outcome unknown*, resolve by query), an authentication failure
(HTTP 401 / codes 501xx) :class:`VenueAuthError` where the caller asks for it (:meth:`checked`).
Business answers, successful or not, are returned as the parsed envelope.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Generator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import httpx

from ...errors import VenueAuthError, VenueError
from .auth import OkxCredentials, iso_timestamp, rest_sign
from .messages import PATH_TIME, Envelope
from .parse import dumps

__all__ = ["ExchangeClock", "OkxAuth", "OkxRestClient", "open_rest_client"]

log = logging.getLogger(__name__)


class ExchangeClock:
    """Local wall clock corrected by the measured offset to OKX server time (``GET public/time``)."""

    def __init__(self) -> None:
        self.offset_ms = 0.0

    def now_ms(self) -> int:
        return int(time.time() * 1000 + self.offset_ms)

    def update(self, server_ms: int, sent_ms: float, received_ms: float) -> None:
        """Offset from one round trip, assuming the server stamped it half-way."""
        self.offset_ms = server_ms - (sent_ms + received_ms) / 2


class OkxAuth(httpx.Auth):
    """Signs private requests (docs/okx.md §1.2-§1.3) over the exact target and body bytes sent."""

    def __init__(self, creds: OkxCredentials, clock: ExchangeClock) -> None:
        self._creds = creds
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        ts = iso_timestamp(self._clock.now_ms())
        target = request.url.raw_path.decode("ascii")  # path + "?" + raw query, as on the wire
        body = request.content.decode("utf-8") if request.content else ""
        request.headers["OK-ACCESS-KEY"] = self._creds.api_key
        request.headers["OK-ACCESS-SIGN"] = rest_sign(
            self._creds.secret_key, ts, request.method, target, body
        )
        request.headers["OK-ACCESS-TIMESTAMP"] = ts
        request.headers["OK-ACCESS-PASSPHRASE"] = self._creds.passphrase
        yield request


class OkxRestClient:
    """The REST half of the adapter: one ``httpx.AsyncClient``, signed private calls, the clock."""

    def __init__(self, http: httpx.AsyncClient, creds: OkxCredentials, clock: ExchangeClock) -> None:
        self._http = http
        self._auth = OkxAuth(creds, clock)
        self.clock = clock

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        private: bool = True,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Envelope:
        """One call; the parsed envelope of any JSON answer. Raises VenueError on transport failure."""
        target = path + ("?" + urlencode(params) if params else "")
        content = dumps(body) if body is not None else None
        hdrs = {"Content-Type": "application/json"} | dict(headers or {})
        try:
            resp = await self._http.request(
                method,
                target,
                content=content,
                headers=hdrs,
                auth=self._auth if private else httpx.USE_CLIENT_DEFAULT,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TimeoutException as exc:
            raise VenueError(f"OKX {method} {path}: timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise VenueError(f"OKX {method} {path}: {type(exc).__name__}: {exc}") from exc
        try:
            env = json.loads(resp.content)
        except ValueError:
            raise VenueError(f"OKX {method} {path}: HTTP {resp.status_code}, not JSON") from None
        if not isinstance(env, dict):
            raise VenueError(f"OKX {method} {path}: HTTP {resp.status_code}, unexpected body")
        env["code"] = str(env.get("code", ""))  # older servers sent a number (§1.6)
        if env["code"] != "0":
            log.debug(
                "OKX %s %s -> HTTP %s code %s %s", method, path, resp.status_code, env["code"], env.get("msg")
            )
        return env  # type: ignore[return-value]

    async def checked(self, method: str, path: str, **kwargs: Any) -> list[Any]:
        """Like :meth:`request` but any non-zero code is an error; returns ``data``."""
        env = await self.request(method, path, **kwargs)
        code = env.get("code", "")
        if code == "0":
            return list(env.get("data") or [])
        msg = f"OKX {method} {path}: {code} {env.get('msg', '')}".strip()
        if code.startswith(("501", "6000")) and code not in ("50102", "50112"):  # clock: not fatal
            raise VenueAuthError(msg)
        raise VenueError(msg)

    async def sync_clock(self) -> None:
        """Measure the offset to OKX server time."""
        sent = time.time() * 1000
        data = await self.checked("GET", PATH_TIME, private=False)
        received = time.time() * 1000
        self.clock.update(int(data[0]["ts"]), sent, received)
        log.debug("OKX clock offset %.0f ms", self.clock.offset_ms)


@asynccontextmanager
async def open_rest_client(
    base_url: str,
    creds: OkxCredentials,
    clock: ExchangeClock,
    *,
    demo: bool,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[OkxRestClient]:
    """An :class:`OkxRestClient` owning its connection pool for the duration of the block."""
    headers = {"x-simulated-trading": "1"} if demo else {}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=timeout, transport=transport
    ) as http:
        yield OkxRestClient(http, creds, clock)
