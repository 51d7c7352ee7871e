"""The dashboard's HTTP side: a Starlette application, read-only, served by Hypercorn on Trio.

Every route answers GET (and HEAD) only: any other method gets 405 before routing, on every path,
so nothing here can place, cancel or change anything. With a token (``dashboard.token_env``), every
request must carry it (``Authorization: Bearer``, the ``seqtrade_dashboard`` cookie the page sets,
or ``?token=``), compared in constant time. Without one (loopback binds only), the ``Host`` header
must name a loopback host, so that a web page elsewhere cannot reach the dashboard by DNS rebinding.

Routes: ``/`` (the page), ``/static/*`` (its script, style and the vendored uPlot), ``/api/state``,
``/api/series`` (every series whole), ``/api/status`` (what ``seqtrade status`` shows), ``/api/orders`` and
``/api/fills`` (journal pages: ``strategy``, ``symbol``, ``since``, ``until``, ``page``,
``per_page``), ``/api/events`` (server-sent events: ``state``, and ``series``: what the series gained since the previous one), ``/healthz``;
and, when the server runs a backtest, ``/backtest`` (its results page) and ``/api/backtest`` (its
progress and results: :func:`~.model.backtest_doc`; ``{"state": "none"}`` when the venue is not one).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ...backtest_results import to_json
from ...errors import JournalError
from .collector import Collector
from .journal_view import JournalView
from .model import QueryError, backtest_doc, is_loopback, parse_query, token_ok

__all__ = ["COOKIE", "build_app"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "seqtrade_dashboard"
KEEPALIVE = 15.0  # seconds between two SSE comments on a quiet stream (proxies close idle ones)
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _token_of(scope: Scope) -> str | None:
    headers: dict[str, str] = {
        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
    }
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if "cookie" in headers:
        c: SimpleCookie = SimpleCookie()
        try:
            c.load(headers["cookie"])
        except ValueError:  # http.cookies.CookieError
            c = SimpleCookie()
        if COOKIE in c:
            return str(c[COOKIE].value)
    qs = scope.get("query_string", b"").decode("latin-1")
    for part in qs.split("&"):
        k, _, v = part.partition("=")
        if k == "token":
            return unquote(v)
    return None


def _host_of(scope: Scope) -> str:
    k: bytes
    v: bytes
    for k, v in scope.get("headers", []):
        if k.lower() == b"host":
            host: str = v.decode("latin-1")
            if host.startswith("["):
                return host[1:].split("]", 1)[0]
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return ""


class Guard:
    """ASGI middleware: the token (or, without one, a loopback Host), then read-only methods."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no WebSocket: the live updates are server-sent events
            await send({"type": "websocket.close", "code": 1008})  # before accepting it: an HTTP 403
            return
        if self.token and not token_ok(_token_of(scope), self.token):  # first: nothing without it
            resp: Response = PlainTextResponse("a token is required: open /?token=<token>\n", 401,
                                     headers={"WWW-Authenticate": 'Bearer realm="seqtrade"'})  # fmt: skip
        elif not self.token and not is_loopback(_host_of(scope)):
            resp = PlainTextResponse(
                "refused: Host is not a loopback name (set a token to serve others)\n", 403
            )
        elif scope["method"] not in ("GET", "HEAD"):
            resp = PlainTextResponse("read-only: GET only\n", 405, headers={"Allow": "GET, HEAD"})
        else:
            await self.app(scope, receive, _with_headers(send))
            return
        await resp(scope, receive, _with_headers(send))


def _with_headers(send: Send) -> Any:
    async def wrapped(message: Any) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            have = {k.lower() for k, _ in headers}
            for k, v in _HEADERS.items():
                if k.lower().encode() not in have:
                    headers.append((k.lower().encode(), v.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def build_app(collector: Collector, token: str) -> ASGIApp:
    """The dashboard as an ASGI application over ``collector``."""

    async def index(request: Request) -> Response:
        resp = FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")
        given = request.query_params.get("token")
        if token and given is not None:  # the page's own requests then carry it as a cookie
            resp.set_cookie(COOKIE, given, httponly=True, samesite="strict", path="/")
        return resp

    async def state(_: Request) -> Response:
        if not collector.viewers:  # nobody watching: the state is built when asked
            collector.publish()
        return Response(collector.state_json, media_type="application/json")

    async def series(_: Request) -> Response:
        return Response(collector.series_full(), media_type="application/json")

    async def status(_: Request) -> Response:
        return JSONResponse(collector.status())

    async def journal_page(request: Request, kind: str) -> Response:
        try:
            q = parse_query(request.query_params)
        except QueryError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        view = JournalView(collector.view.path)
        try:
            collector.index_journal()  # the journal's log into its index: the page sees every write
        except JournalError as exc:
            return JSONResponse({"error": str(exc)}, 503)

        def read() -> dict[str, Any]:
            try:
                return view.orders_page(q) if kind == "orders" else view.fills_page(q)
            finally:
                view.close()

        try:
            return JSONResponse(await trio.to_thread.run_sync(read))
        except JournalError as exc:
            return JSONResponse({"error": str(exc)}, 503)

    async def orders(request: Request) -> Response:
        return await journal_page(request, "orders")

    async def fills(request: Request) -> Response:
        return await journal_page(request, "fills")

    async def events(request: Request) -> Response:
        if request.method == "HEAD":  # the head only: no stream left running for nobody
            return Response(b"", media_type="text/event-stream")
        return StreamingResponse(_events(collector), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})  # fmt: skip

    async def backtest_page(_: Request) -> Response:
        return FileResponse(STATIC / "backtest.html", media_type="text/html; charset=utf-8")

    cache: dict[tuple[int, bool], str] = {}  # the results at (published, finished): computed once each

    async def backtest(_: Request) -> Response:
        venue: Any = collector.gw.venue
        if not hasattr(venue, "sim") or not hasattr(venue, "results"):  # duck-typed: no replay import here
            return JSONResponse({"state": "none"})  # a live server: no backtest (the page says so)
        key = (venue.published, venue.finished.is_set())
        if key not in cache:
            cache.clear()
            cache[key] = to_json(venue.results())
        return JSONResponse(backtest_doc(key[0], venue.total, key[1], cache[key]))

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/state", state),
            Route("/api/series", series),
            Route("/api/status", status),
            Route("/api/orders", orders),
            Route("/api/fills", fills),
            Route("/api/events", events),
            Route("/backtest", backtest_page),
            Route("/api/backtest", backtest),
            Route("/healthz", healthz),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
    return Guard(app, token)


async def _events(collector: Collector) -> AsyncIterator[bytes]:
    """The SSE stream: the state at each new version, the series at each new series version, a
    comment when quiet. Ends when the client goes (Starlette cancels it) or the server stops."""
    version = series_version = -1
    collector.viewers += 1  # while a stream is open, the collector builds the state at every sample
    try:
        if collector.viewers == 1:
            collector.publish()  # the first viewer: the state may be as old as the last one's visit
        yield b"retry: 1000\n\n"
        while True:
            if collector.version != version:
                version = collector.version
                yield b"event: state\ndata: " + collector.state_json + b"\n\n"
            if collector.series_version != series_version:
                series_version = collector.series_version
                yield b"event: series\ndata: " + collector.series_json + b"\n\n"
            with trio.move_on_after(KEEPALIVE) as scope:
                await collector.wait_changed(version)
            if scope.cancelled_caught:
                yield b": keepalive\n\n"
    finally:
        collector.viewers -= 1
