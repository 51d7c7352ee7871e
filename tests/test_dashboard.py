"""The dashboard against a real server (paper venue, real sockets, real journal): read-only on every
route, the token from another address, the journal's pages, the live stream.

Helpers here (``http``, ``sse_until``, ``start_server``, ``trade``) serve the browser and Grafana tests too.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from starlette.routing import Mount

from seqtrade.client import Endpoints
from seqtrade.config import Config
from seqtrade.errors import ConfigError
from seqtrade.models import AmendRequest, OrderReport
from seqtrade.server.app import serve
from seqtrade.server.dashboard.web import COOKIE, build_app
from seqtrade.server.gateway import Gateway
from seqtrade.venues.paper import PaperVenue

from .conftest import make_config
from .peer import Peer

S, E = "BTC-USDT", "ETH-USDT"
DASHBOARD = "\n[dashboard]\nenabled = true\nport = 0\ninterval = 0.05\nreconcile_interval = 0.2\n"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def http(
    url: str,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    connect: str | None = None,
    source: str | None = None,
) -> Answer:
    """One HTTP/1.1 request on a fresh connection (``connect``: another address than the URL's;
    ``source``: the local address to send from); the whole answer."""
    u = urlsplit(url)
    host, port = connect or u.hostname or "127.0.0.1", int(u.port or 80)
    stream = await trio.open_tcp_stream(host, port, local_address=source)
    async with stream:
        if source is not None:
            assert stream.socket.getsockname()[0] == source  # the server sees this address, not 127.0.0.1
        hdrs = {"Host": f"{u.hostname}:{port}", "Connection": "close", **(headers or {})}
        req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        body = b"" if method in ("GET", "HEAD", "DELETE") else b"{}"
        if body:
            req += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        await stream.send_all(req.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            assert chunk, f"connection closed before the head: {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        h = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            h[k.strip().lower()] = v.strip()
        # the body: by its length, or chunked to the last chunk, or to the end of the connection
        if method == "HEAD":
            return Answer(status, h, b"")
        if "content-length" in h:
            while len(rest) < int(h["content-length"]):
                chunk = await stream.receive_some(65536)
                assert chunk, "connection closed inside the body"
                rest += chunk
        elif h.get("transfer-encoding") == "chunked":
            while not rest.endswith(b"0\r\n\r\n"):
                chunk = await stream.receive_some(65536)
                assert chunk, "connection closed inside the body"
                rest += chunk
            out, buf = b"", rest
            while buf:
                size_s, _, buf = buf.partition(b"\r\n")
                size = int(size_s, 16)
                if size == 0:
                    break
                out, buf = out + buf[:size], buf[size + 2 :]
            rest = out
        else:
            while chunk := await stream.receive_some(65536):
                rest += chunk
    return Answer(status, h, rest)


async def sse_until(url: str, pred: Callable[[dict[str, Any]], bool], *, headers: Mapping[str, str] | None = None,
                    event: str = "state") -> dict[str, Any]:  # fmt: skip
    """Read the dashboard's event stream until an ``event`` whose data satisfies ``pred``; that data."""
    u = urlsplit(url)
    stream = await trio.open_tcp_stream(u.hostname or "127.0.0.1", int(u.port or 80))
    async with stream:
        hdrs = {"Host": f"{u.hostname}:{u.port}", "Accept": "text/event-stream", **(headers or {})}
        await stream.send_all(("GET /api/events HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
                               + "\r\n").encode())  # fmt: skip
        buf = b""
        while True:
            chunk = await stream.receive_some(65536)
            assert chunk, "the event stream ended"
            buf += chunk
            # chunked transfer: the events are found by their own framing inside the chunks
            while b"\n\n" in buf:
                block, _, buf = buf.partition(b"\n\n")
                name, data = "", b""
                for line in block.split(b"\n"):
                    line = line.strip(b"\r")
                    if line.startswith(b"event: "):
                        name = line[7:].decode()
                    elif line.startswith(b"data: "):
                        data = line[6:]
                if name == event and data:
                    try:
                        value = json.loads(data)
                    except ValueError:
                        continue  # an event split across chunk framing: the next one will do
                    if pred(value):
                        return value  # type: ignore[no-any-return]


def by_id(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in state["panels"]["strategies"]}


async def start_server(nursery: trio.Nursery, config: Config, environ: Mapping[str, str] | None = None,
                       ) -> tuple[Gateway, PaperVenue]:  # fmt: skip
    venue = PaperVenue(config.venue.paper, list(config.venue.symbols))
    gw: Gateway = await nursery.start(
        lambda task_status: serve(config, venue, environ=environ or {}, task_status=task_status)
    )
    return gw, venue


async def fill_of(p: Peer, coid: str) -> list[OrderReport]:
    """The peer's reports up to its order's end (filled, cancelled or rejected)."""
    out = []
    while True:
        r = await p.report()
        out.append(r)
        if r.client_order_id == coid and str(r.status) in ("filled", "cancelled", "rejected"):
            return out


async def trade(p: Peer, symbol: str, side: str, qty: float) -> list[OrderReport]:
    coid = await p.order(symbol, side, "market", None, qty)
    return await fill_of(p, coid)


def journal_counts(path: Path) -> tuple[int, int, int, str]:
    db = sqlite3.connect(path)
    try:
        orders = db.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        reports = db.execute("SELECT COUNT(*) FROM reports").fetchone()[0]
        fills = db.execute("SELECT COUNT(*) FROM fills").fetchone()[0]
        meta = repr(db.execute("SELECT * FROM meta ORDER BY key").fetchall())
    finally:
        db.close()
    return orders, reports, fills, meta


def non_loopback_address() -> str | None:
    """This machine's address on its default route (no packet is sent: a UDP socket only picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            addr = str(s.getsockname()[0])
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


# --------------------------------------------------------------------------------------------- tests


async def test_no_route_changes_anything(nursery, base_dir, zctx):
    """Every route the application has (and an unknown one), with every method that could change
    something: 405, and the server's counters, trading states and journal are as they were."""
    with trio.fail_after(30):
        config = make_config(base_dir, DASHBOARD)
        gw, venue = await start_server(nursery, config)
        a = Peer(zctx, Endpoints.from_config(config), "a")
        try:
            await a.join()
            await venue.set_market(S, 100.0, 100.2)
            await trade(a, S, "buy", 0.5)
            await a.order(S, "buy", "limit", 99.0, 0.1)  # left open: a cancel would show
            await a.report()
            url = gw.dashboard_url
            await sse_until(url, lambda st: by_id(st).get("a", {}).get("open_orders") == 1)
            # every route of the application (a mount: a file under it), and one it does not have
            paths = [r.path + "/dashboard.js" if isinstance(r, Mount) else r.path for r in _routes()]
            paths += ["/static/uPlot.iife.min.js", "/static/", "/nowhere"]
            assert {"/", "/api/state", "/api/events", "/api/orders", "/static/dashboard.js"} <= set(paths)
            before = (dict(vars(gw.counters)), str(gw.status()["strategies"]["a"]["open_orders"]),
                      journal_counts(config.journal_path), len(gw.open_records()))  # fmt: skip
            for path in paths:
                for method in ("POST", "PUT", "DELETE", "PATCH"):
                    ans = await http(url, path, method=method)
                    assert ans.status == 405, (method, path, ans.status)
                    assert ans.headers["allow"] == "GET, HEAD"
            after = (dict(vars(gw.counters)), str(gw.status()["strategies"]["a"]["open_orders"]),
                     journal_counts(config.journal_path), len(gw.open_records()))  # fmt: skip
            before[0]["by_kind"].pop("Heartbeat", None)
            after[0]["by_kind"].pop("Heartbeat", None)
            assert after == before
            for path in paths:
                if path in ("/api/events", "/nowhere", "/static/"):
                    continue
                assert (await http(url, path)).status == 200, path
            assert (await http(url, "/nowhere")).status == 404
            head = await http(url, "/api/events", method="HEAD")
            assert head.status == 200 and head.headers["content-type"].startswith("text/event-stream")
            ws = await http(url, "/api/events", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                                         "Sec-WebSocket-Version": "13"})  # fmt: skip
            assert ws.status == 403  # no WebSocket at all
            assert (await http(url, "/static/")).status == 404  # no directory listing
        finally:
            a.close()


def _routes() -> list[Any]:
    """The Starlette application's routes (the guard wraps it)."""
    from seqtrade.server.dashboard.web import Guard

    class _C:
        view = type("V", (), {"path": Path("/nonexistent")})()

    app = build_app(_C(), "")  # type: ignore[arg-type]
    assert isinstance(app, Guard)
    return list(app.app.routes)  # type: ignore[attr-defined]


async def test_a_non_loopback_bind_without_a_token_is_refused_before_anything_binds(nursery, base_dir):
    config = make_config(base_dir, DASHBOARD.replace("port = 0", 'host = "0.0.0.0"\nport = 0'))
    with pytest.raises(ConfigError, match="SEQTRADE_DASHBOARD_TOKEN is not set"):
        await start_server(nursery, config, environ={})
    assert not (base_dir / "run").exists()


async def test_from_another_address_the_token_is_required(nursery, base_dir):
    """Bound to 0.0.0.0 with a token, reached at the machine's own non-loopback address (so the
    request's source address is not 127.0.0.1): nothing without the token, everything with it."""
    addr = non_loopback_address()
    if addr is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with trio.fail_after(30):
        config = make_config(base_dir, DASHBOARD.replace("port = 0", 'host = "0.0.0.0"\nport = 0'))
        gw, _ = await start_server(nursery, config, environ={"SEQTRADE_DASHBOARD_TOKEN": "t0k-long-enough"})
        url = gw.dashboard_url.replace("0.0.0.0", addr)
        for path in (
            "/",
            "/api/state",
            "/api/status",
            "/api/orders",
            "/api/fills",
            "/api/events",
            "/static/dashboard.js",
        ):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": f"{COOKIE}=wrong"}):
                ans = await http(url, path, headers=headers, source=addr)
                assert ans.status == 401, (path, headers)
                assert b"status" not in ans.body and b"strategies" not in ans.body
            assert (await http(url, path + "?token=wrong", source=addr)).status == 401
        ok = await http(url, "/api/status", headers={"Authorization": "Bearer t0k-long-enough"}, source=addr)
        assert ok.status == 200 and ok.json()["venue"] == "paper"
        page = await http(url, "/?token=t0k-long-enough", source=addr)
        assert page.status == 200 and b"<title>seqtrade dashboard</title>" in page.body
        cookie = page.headers["set-cookie"]
        assert (
            cookie.startswith(f"{COOKIE}=t0k-long-enough")
            and "HttpOnly" in cookie
            and "SameSite=strict" in cookie
        )
        state = await http(url, "/api/state", headers={"Cookie": f"{COOKIE}=t0k-long-enough"}, source=addr)
        assert state.status == 200 and "panels" in state.json()
        # checked on every request, from anywhere: loopback too
        assert (await http(url, "/api/state", connect="127.0.0.1")).status == 401
        # and the token does not open writes
        bearer = {"Authorization": "Bearer t0k-long-enough"}
        assert (await http(url, "/api/state", method="POST", headers=bearer, source=addr)).status == 405
        assert (await http(url, "/api/state", method="DELETE", source=addr)).status == 401  # the token first


async def test_loopback_without_a_token_refuses_a_foreign_host_name(nursery, base_dir):
    """DNS rebinding: a page elsewhere that resolves its name to 127.0.0.1 still says its own Host."""
    with trio.fail_after(20):
        config = make_config(base_dir, DASHBOARD)
        gw, _ = await start_server(nursery, config)
        url = gw.dashboard_url
        assert (await http(url, "/api/state", headers={"Host": "evil.example:80"})).status == 403
        assert (await http(url, "/api/state", headers={"Host": "localhost"})).status == 200
        assert (await http(url, "/api/state")).status == 200


async def test_journal_pages_filter_and_paginate(nursery, base_dir, zctx):
    with trio.fail_after(30):
        config = make_config(base_dir, DASHBOARD)
        gw, venue = await start_server(nursery, config)
        a = Peer(zctx, Endpoints.from_config(config), "a")
        b = Peer(zctx, Endpoints.from_config(config), "b")
        try:
            await a.join()
            await b.join()
            await venue.set_market(S, 100.0, 100.2)
            await venue.set_market(E, 10.0, 10.01)
            fills_a = [r for _ in range(3) for r in await trade(a, S, "buy", 0.1) if r.last_fill_quantity > 0]
            fills_b = [r for r in await trade(b, E, "buy", 1.0) if r.last_fill_quantity > 0]
            fills_b += [r for r in await trade(b, S, "buy", 0.2) if r.last_fill_quantity > 0]
            await b.order(
                "DOGE-USDT", "buy", "limit", 1.0, 1.0
            )  # rejected by the server: an order row, no fill
            await b.report()
        finally:
            a.close()
            b.close()
        url = gw.dashboard_url
        page = (await http(url, "/api/fills?strategy=a")).json()
        assert page["total"] == len(fills_a) >= 3
        assert [(i["seq"], i["quantity"], i["price"]) for i in page["items"]] == [
            (r.seq, r.last_fill_quantity, r.last_fill_price) for r in reversed(fills_a)]  # fmt: skip
        eth = (await http(url, "/api/fills?symbol=ETH-USDT")).json()
        assert eth["total"] == len([r for r in fills_b if r.symbol == E]) and {
            i["strategy"] for i in eth["items"]
        } == {"b"}
        p2 = (await http(url, "/api/fills?per_page=2&page=2")).json()
        everything = (await http(url, "/api/fills?per_page=500")).json()
        assert everything["total"] == len(fills_a) + len(fills_b)
        assert p2["items"] == everything["items"][2:4]
        future = fills_b[-1].timestamp + 3_600_000
        assert (await http(url, f"/api/fills?since={future}")).json()["total"] == 0
        assert (await http(url, f"/api/fills?until={fills_a[0].timestamp - 60_000}")).json()["total"] == 0
        orders_b = (await http(url, "/api/orders?strategy=b")).json()
        assert orders_b["total"] == 3
        newest = orders_b["items"][0]
        assert newest["symbol"] == "DOGE-USDT" and newest["status"] == "rejected" and not newest["open"]
        assert [o["status"] for o in orders_b["items"][1:]] == ["filled", "filled"]
        one = (await http(url, "/api/orders?strategy=b&per_page=1&page=3")).json()
        assert one["items"][0]["symbol"] == E and one["total"] == 3
        bad = await http(url, "/api/orders?page=zero")
        assert bad.status == 400 and bad.json() == {"error": "page: 'zero' is not an integer"}


async def test_the_live_state_follows_the_server(nursery, base_dir, zctx):
    """The stream's state carries each panel: strategies with their books as `status` has them, the
    reconciliation against the venue, feeds, histograms, rejections by rule, open orders, fills."""
    with trio.fail_after(30):
        config = make_config(base_dir, DASHBOARD + "\n[risk]\nmax_order_quantity = 1.0\n")
        gw, venue = await start_server(nursery, config)
        a = Peer(zctx, Endpoints.from_config(config), "a")
        try:
            await a.join()
            await venue.set_market(S, 100.0, 100.2)
            reports = await trade(a, S, "buy", 0.5)
            await a.order(S, "buy", "limit", 99.0, 5.0)  # refused: max_order_quantity
            rejected = await a.report()
            sell = await a.order(S, "sell", "limit", 101.0, 0.1)
            await a.report()
            await a.send(AmendRequest("a", sell, 101.5, None))  # reported "accepted" again: no second ack
            amended = await a.report()
        finally:
            a.close()
        assert (
            str(rejected.status) == "rejected"
            and str(amended.status) == "accepted"
            and amended.price == 101.5
        )
        url = gw.dashboard_url
        st = await sse_until(url, lambda s: by_id(s).get("a", {}).get("last_seq") == amended.seq
                             and any(r["strategies"] == 0.5 for r in s["panels"]["account"]["reconciliation"]) and s["panels"]["rejections"])  # fmt: skip
        status = gw.status() | {"accounts": gw.engine.accounts.snapshot()}
        (book,) = by_id(st)["a"]["books"]
        want = status["accounts"]["strategies"]["a"][S]
        assert {k: book[k] for k in want} == want
        assert st["panels"]["rejections"] == {"max_order_quantity": 1}
        assert by_id(st)["a"]["last_error"]["message"] == rejected.error_msg
        (recon,) = [r for r in st["panels"]["account"]["reconciliation"] if r["symbol"] == S]
        assert (
            recon["strategies"] == pytest.approx(0.5)
            and recon["venue"] == pytest.approx(0.5)
            and not recon["differs"]
        )
        fills = [r for r in reports if r.last_fill_quantity > 0]
        assert [(f["seq"], f["price"]) for f in st["panels"]["fills"]] == [
            (r.seq, r.last_fill_price) for r in reversed(fills)
        ]
        assert [o["side"] for o in st["panels"]["open_orders"]] == ["sell"]
        lat = st["panels"]["latency"]
        # the market buy and the limit sell, once each (the refused one never was; an amend is no ack)
        assert lat["order_ack"]["count"] == 2
        feeds = {f["topic"]: f for f in st["panels"]["feeds"]}
        assert feeds[f"ticker/{S}/"]["seq"] >= 1 and feeds["status/paper/"]["kind"] == "status"
        assert st["panels"]["venue"]["connected"] is True
        health = {(f["channel"], f["symbol"]): f for f in st["panels"]["feed_health"]}
        assert health[("ticker", S)]["messages"] >= 1 and health[("ticker", S)]["stale"] is False
        while True:  # the price series gets a point a second: wait for the first
            series = (await http(url, "/api/series")).json()["data"]
            if series["prices"].get(S, {}).get("t"):
                break
            await trio.sleep(0.05)
        assert series["equity"]["a"]["marks"] == [1] * len(fills)  # one buy marker per fill
        assert series["prices"][S]["fills"][-1]["price"] == fills[-1].last_fill_price


async def test_reports_the_tap_dropped_are_read_back_from_the_journal(nursery, base_dir, zctx):
    """The collector keeps at most ``tap_batches`` committed batches between two samples; the reports
    of the batches it dropped come back from the journal, in seq order, none twice."""
    from seqtrade.server.dashboard.collector import Collector
    from seqtrade.server.guard import Guard

    with trio.fail_after(30):
        config = make_config(base_dir, "\n[dashboard]\ninterval = 3600.0\nreconcile_interval = 0\n")
        gw, venue = await start_server(nursery, config)
        a = Peer(zctx, Endpoints.from_config(config), "a")
        try:
            await a.join()
            await venue.set_market(S, 100.0, 100.2)
            first = await trade(a, S, "buy", 0.1)  # before the collector: its history, from the journal
            guard = Guard(config, gw.venue, gw.journal, gw.engine.risk, gw.engine.accounts)
            board = Collector(config, gw, guard, None, tap_batches=2)
            await nursery.start(board.run)  # reads the history, samples once, then sleeps an hour
            await board.ready.wait()
            later = [r for _ in range(5) for r in await trade(a, S, "sell" if _ % 2 else "buy", 0.1)]
            assert len(board._taken) == 2  # the tap kept the last two batches only
            await board.refresh()
        finally:
            a.close()
        fills = [r for r in first + later if r.last_fill_quantity > 0]
        st = json.loads(board.state_json)
        assert [f["seq"] for f in st["panels"]["fills"]] == [r.seq for r in reversed(fills)]
        assert board._seqs["a"] == (first + later)[-1].seq
        assert st["panels"]["latency"]["order_ack"]["count"] == 6
        (book,) = by_id(st)["a"]["books"]
        assert book["position"] == pytest.approx(gw.engine.accounts.position("a", S))


async def test_a_broken_panel_shows_its_error_and_stops_nothing(nursery, base_dir):
    """Panels are a registry others extend (margin, account events, feed health): one that raises or
    returns what JSON cannot carry shows its error in its place; the others and the server go on."""
    from seqtrade.server.dashboard.collector import PANELS

    PANELS["boom"] = lambda c: 1 / 0
    PANELS["nan"] = lambda c: {"ratio": float("nan")}
    try:
        with trio.fail_after(20):
            config = make_config(base_dir, DASHBOARD)
            gw, _ = await start_server(nursery, config)
            st = await sse_until(gw.dashboard_url, lambda s: "boom" in s["panels"])
            assert st["panels"]["boom"] == {"error": "ZeroDivisionError: division by zero"}
            assert st["panels"]["nan"]["error"].startswith("ValueError: Out of range float values")
            assert st["panels"]["venue"]["connected"] is True
            assert (await http(gw.dashboard_url, "/healthz")).status == 200
            assert not gw.stop_requested.is_set()
    finally:
        del PANELS["boom"], PANELS["nan"]


async def test_nobody_watching_the_state_is_built_only_when_asked(nursery, base_dir, zctx):
    """A server left alone pays for the reports and the samples, not for building the page's state:
    the collector keeps up with the reports, builds the state for ``/api/state`` when asked, and at
    every sample only while an event stream is open."""
    with trio.fail_after(30):
        config = make_config(base_dir, DASHBOARD)
        gw, venue = await start_server(nursery, config)
        a = Peer(zctx, Endpoints.from_config(config), "a")
        try:
            await a.join()
            await venue.set_market(S, 100.0, 100.2)
            reports = await trade(a, S, "buy", 0.1)
        finally:
            a.close()
        url = gw.dashboard_url
        fill = [r for r in reports if r.last_fill_quantity > 0][-1]
        first = (await http(url, "/api/state")).json()
        asked = 0
        reconciled: set[int] = set()
        # The loop applies the fill and reads the venue's positions every 0.2 s (a new reconciled_ms):
        # three of them are a dozen samples at least, yet only the requests built the state.
        while True:
            st = (await http(url, "/api/state")).json()
            asked += 1
            reconciled.add(st["panels"]["account"]["reconciled_ms"])
            if st["panels"]["fills"] and st["panels"]["fills"][0]["seq"] == fill.seq and len(reconciled) >= 3:
                break
            await trio.sleep(0.02)
        assert st["version"] - first["version"] == asked
        v2 = st["version"]
        # an open stream: built at every sample
        st = await sse_until(url, lambda s: s["version"] >= v2 + 5)
        assert st["panels"]["fills"][0]["seq"] == fill.seq


def test_a_journal_read_that_fails_is_a_journal_error(tmp_path):
    """The dashboard's reads never take the server down: sqlite3's errors leave as JournalError (the
    collector logs it and tries again; a journal page answers 503), and nothing is created."""
    from seqtrade.errors import JournalError
    from seqtrade.server.dashboard.journal_view import JournalView
    from seqtrade.server.dashboard.model import Query

    missing = JournalView(tmp_path / "missing.sqlite")
    with pytest.raises(JournalError, match="read failed"):
        missing.strategies()
    assert not (tmp_path / "missing.sqlite").exists()  # read-only: not even an empty file
    (tmp_path / "garbage.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(JournalError, match="read failed"):
        JournalView(tmp_path / "garbage.sqlite").orders_page(Query())


async def test_series_events_carry_what_the_series_gained(nursery, base_dir, zctx):
    """A page takes the series whole once (/api/series), then each ``series`` event carries only the
    points and fills added since the previous one, chained by version."""
    with trio.fail_after(30):
        config = make_config(base_dir, DASHBOARD)
        gw, venue = await start_server(nursery, config)
        url = gw.dashboard_url
        a = Peer(zctx, Endpoints.from_config(config), "a")
        got: dict[str, Any] = {}

        def has_fill(m: dict[str, Any]) -> bool:
            return bool(m["delta"]) and any(f["strategy"] == "a" for p in m["delta"]["prices"].values()
                                            for f in p.get("fills", []))  # fmt: skip

        async def watch() -> None:
            got["first"] = await sse_until(url, lambda m: True, event="series")
            got["fill"] = await sse_until(url, has_fill, event="series")

        try:
            await a.join()
            await venue.set_market(S, 100.0, 100.2)
            async with trio.open_nursery() as n:
                n.start_soon(watch)
                while "first" not in got:  # the stream is open: the next fill comes as a delta
                    await trio.sleep(0.01)
                reports = await trade(a, S, "buy", 0.1)
        finally:
            a.close()
        fill = [r for r in reports if r.last_fill_quantity > 0][-1]
        m = got["fill"]
        assert m["from"] == m["version"] - 1
        (marker,) = [f for p in m["delta"]["prices"].values() for f in p.get("fills", [])]
        assert marker["key"] == f"a:{fill.seq}" and marker["price"] == fill.last_fill_price
        assert m["delta"]["equity"]["a"]["marks"] == [1]
        whole = (await http(url, "/api/series")).json()
        assert whole["version"] >= m["version"] and whole["data"]["equity"]["a"]["marks"] == [1]
