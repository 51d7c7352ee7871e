"""OKX REST over httpx: signing as an ``httpx.Auth`` flow, the exchange clock, error mapping.

httpx exceptions enter seqtrade here and nowhere else: a transport failure or timeout becomes
:class:`VenueError` (for a write: *outcome unknown*, resolve by query), an authentication failure
(HTTP 401 / codes 501xx) :class:`VenueAuthError` where the caller asks for it (:meth:`checked`).
Business answers, successful or not, are returned as the parsed envelope.

The exchange clock is kept here too, in one place: any ``50102 Timestamp request expired`` (the
request was signed more than 30 s off the exchange clock and refused before processing, docs/okx.md
§1.5) re-measures it at once against ``public/time``, and requests that are safe to repeat are sent
once more (:meth:`OkxRestClient.request`). Re-syncs are coalesced (one ``public/time`` call however
many requests fail together) and run in the client's own nursery, so that a re-sync outlives the
task or socket session that asked for it (:meth:`OkxRestClient.resync_soon`).
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
import trio

from ...errors import VenueAuthError, VenueError
from .auth import OkxCredentials, iso_timestamp, rest_sign
from .errors import SUCCESS, is_auth, is_clock
from .messages import PATH_TIME, Envelope
from .parse import dumps

__all__ = ["ExchangeClock", "OkxAuth", "OkxRestClient", "open_rest_client"]

log = logging.getLogger(__name__)


class ExchangeClock:
    """Local wall clock corrected by the measured offset to OKX server time (``GET public/time``)."""

    def __init__(self) -> None:
        self.offset_ms = 0.0
        self.syncs = 0  # +1 per measurement: a request signed before the latest one used an older offset

    def now_ms(self) -> int:
        return int(time.time() * 1000 + self.offset_ms)

    def update(self, server_ms: int, sent_ms: float, received_ms: float) -> None:
        """Offset from one round trip, assuming the server stamped it half-way."""
        self.offset_ms = server_ms - (sent_ms + received_ms) / 2
        self.syncs += 1


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
    """The REST half of the adapter: one ``httpx.AsyncClient``, signed private calls, the clock.

    ``nursery`` runs clock re-syncs (see :meth:`resync_soon`); it must live as long as the client.
    """

    def __init__(
        self, http: httpx.AsyncClient, creds: OkxCredentials, clock: ExchangeClock, nursery: trio.Nursery
    ) -> None:
        self._http = http
        self._auth = OkxAuth(creds, clock)
        self._nursery = nursery
        self._sync_done: trio.Event | None = None  # set when the re-sync in flight is over
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
        retry_on_clock: bool | None = None,
        retry_spacing: float = 0.0,
    ) -> Envelope:
        """One call; the parsed envelope of any JSON answer. Raises VenueError on transport failure.

        A private request answered ``50102`` (signed more than 30 s off the exchange clock, refused
        before processing) re-syncs the clock at once (:meth:`resync_soon`). If ``retry_on_clock``
        (default: for GET, which changes nothing) it then waits for that re-sync and is sent once
        more, freshly signed, no sooner than ``retry_spacing`` s after the refusal came back (for
        endpoints allowed once per interval); the second answer is returned whatever it is. Callers pass True
        for writes that are safe to repeat (a cancel, a cancel-all-after refresh) and leave places and
        amends at False: never re-sent (an order is never sent twice); their 50102 is returned and
        reported as a rejection (nothing was done at OKX), and the clock is re-synced all the same.
        """
        clock_gen = self.clock.syncs
        env = await self._send(method, path, params, body, private, headers, timeout)
        if not is_clock(env["code"]) or not private:
            return env
        refused_at = trio.current_time()
        retry = method == "GET" if retry_on_clock is None else retry_on_clock
        log.warning(
            "OKX %s %s refused: %s %s (clock offset %.0f ms); re-syncing the clock%s",
            method,
            path,
            env["code"],
            env.get("msg", ""),
            self.clock.offset_ms,
            " and sending it again" if retry else "",
        )
        done = self.resync_soon(since=clock_gen)
        if not retry:
            return env
        await done.wait()
        await trio.sleep_until(refused_at + retry_spacing)
        return await self._send(method, path, params, body, private, headers, timeout)

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Any,
        private: bool,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> Envelope:
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
        if env["code"] != SUCCESS:
            log.debug(
                "OKX %s %s -> HTTP %s code %s %s", method, path, resp.status_code, env["code"], env.get("msg")
            )
        return env  # type: ignore[return-value]

    async def checked(self, method: str, path: str, **kwargs: Any) -> list[Any]:
        """Like :meth:`request` but any non-zero code is an error; returns ``data``."""
        env = await self.request(method, path, **kwargs)
        code = env.get("code", "")
        if code == SUCCESS:
            return list(env.get("data") or [])
        msg = f"OKX {method} {path}: {code} {env.get('msg', '')}".strip()
        if is_auth(code):  # 501xx but the clock's 50102 and 50112 (docs/okx.md §1.6)
            raise VenueAuthError(msg)
        raise VenueError(msg)

    async def sync_clock(self) -> None:
        """Measure the offset to OKX server time now (raises VenueError on failure)."""
        sent = time.time() * 1000
        data = await self.checked("GET", PATH_TIME, private=False)
        received = time.time() * 1000
        try:
            server_ms = int(data[0]["ts"])
        except (IndexError, KeyError, TypeError, ValueError):
            raise VenueError(f"OKX {PATH_TIME}: unexpected answer {data!r:.200}") from None
        self.clock.update(server_ms, sent, received)
        log.debug("OKX clock offset %.0f ms", self.clock.offset_ms)

    def resync_soon(self, *, since: int | None = None) -> trio.Event:
        """Re-measure the clock in the background; returns an event set when that is over.

        Coalesced: while a re-sync is in flight, callers share it. ``since`` is ``clock.syncs`` as it
        was when the refused request (or WS login, or expTime) was signed: if a measurement has
        finished since then, the clock is already corrected and nothing starts (the event is set).
        The re-sync runs in the client's nursery, not the caller's: cancelling the caller (e.g. the
        socket session whose login was refused and that OKX then closes) does not cancel it. A
        failure is logged (the next refusal or the periodic sync tries again).
        """
        if self._sync_done is not None:
            return self._sync_done
        done = trio.Event()
        if since is not None and since != self.clock.syncs:
            done.set()
            return done
        self._sync_done = done
        self._nursery.start_soon(self._resync, done)
        return done

    async def resync_clock(self, *, since: int | None = None) -> None:
        """:meth:`resync_soon` and wait for it to be over."""
        await self.resync_soon(since=since).wait()

    async def clock_settled(self) -> None:
        """Wait for the re-sync in flight, if any (sign a WS login only after it)."""
        if self._sync_done is not None:
            await self._sync_done.wait()

    async def _resync(self, done: trio.Event) -> None:
        try:
            await self.sync_clock()
        except VenueError as exc:
            log.warning("OKX clock sync failed: %s", exc)
        finally:
            self._sync_done = None
            done.set()


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
    """An :class:`OkxRestClient` owning its connection pool and its re-sync nursery for the block.

    Leaving the block cancels a clock re-sync still in flight.
    """
    headers = {"x-simulated-trading": "1"} if demo else {}
    async with (
        httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, transport=transport) as http,
        trio.open_nursery() as nursery,
    ):
        try:
            yield OkxRestClient(http, creds, clock, nursery)
        finally:
            nursery.cancel_scope.cancel()
