"""WebSocket side of the fake OKX (§4, §5, §6): /ws/v5/public, /ws/v5/private, /ws/v5/business.

Per connection three tasks run in one nursery: the reader (this module's ``_reader``: parses
messages and answers them), the writer (drains the connection's bounded outbound channel, the only
task that sends, so answers and pushes keep their order) and the idle watchdog (§4.4: close 4004
after ``idle_timeout`` seconds of trio time without inbound messages or outbound data pushes).
A full outbound channel closes the connection with 4005 (§4.5 "buffer full").
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
    serve_websocket,
)

from . import deriv_ws
from .auth import AuthError, check_ws_login
from .exchange import OkxError

if TYPE_CHECKING:
    from .server import FakeOkx

__all__ = ["WsConn", "serve"]

_PATHS = {"/ws/v5/public": "public", "/ws/v5/private": "private", "/ws/v5/business": "business"}
_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_PUBLIC_CHANNELS = ("tickers", "books5", "bbo-tbt", "trades", "books")
_PRIVATE_CHANNELS = ("orders", "account")
_COUNTED_CHANNELS = ("orders", "account")  # §4.5: 30 connections per channel per sub-account
_INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION", "EVENTS", "ANY")
_PLACE_OPS = ("order", "batch-orders")
_CANCEL_OPS = ("cancel-order", "batch-cancel-orders")
_AMEND_OPS = ("amend-order", "batch-amend-orders")
_TRADE_OPS = _PLACE_OPS + _CANCEL_OPS + _AMEND_OPS


def _is_business_channel(channel: str) -> bool:
    """§4.1: candles and trades-all live on /business."""
    return channel.startswith("candle") or channel == "trades-all"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


@dataclass
class _Close:
    code: int
    reason: str
    abrupt: bool = False


class WsConn:
    """State of one accepted WebSocket connection."""

    def __init__(self, fake: FakeOkx, ws: WebSocketConnection, kind: str, path: str) -> None:
        self.fake = fake
        self.ws = ws
        self.kind = kind
        self.path = path
        self.conn_id = fake.next_conn_id()
        self.send_ch, self.recv_ch = trio.open_memory_channel[str | _Close](fake.ws_queue_size)
        self.public_subs: dict[tuple[str, str], dict[str, Any]] = {}
        self.business_subs: dict[tuple[str, str], dict[str, Any]] = {}
        self.orders_args: list[dict[str, Any]] = []
        self.account_arg: dict[str, Any] | None = None
        self.logged_in = False
        self.last_activity = trio.current_time()
        self.closing = False
        self.done = trio.Event()

    # ---- outbound

    def send_json(self, obj: Any, *, activity: bool = False) -> None:
        self.send_text(_dumps(obj), activity=activity)

    def send_text(self, text: str, *, activity: bool = False) -> None:
        if self.closing:
            return
        try:
            self.send_ch.send_nowait(text)
        except trio.WouldBlock:
            self.request_close(4005, "buffer full", force=True)
            return
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        if activity:
            self.last_activity = trio.current_time()

    def request_close(self, code: int, reason: str, *, abrupt: bool = False, force: bool = False) -> None:
        """Close after what is already queued has been sent."""
        if self.closing:
            return
        self.closing = True
        try:
            self.send_ch.send_nowait(_Close(code, reason, abrupt))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            if self.fake._nursery is not None:
                self.fake._nursery.start_soon(self._do_close, _Close(code, reason, abrupt))

    async def close_now(self, code: int, reason: str, abrupt: bool) -> None:
        """Close immediately (pending outbound messages are lost) and wait until torn down."""
        self.closing = True
        await self._do_close(_Close(code, reason, abrupt))
        with trio.move_on_after(5):
            await self.done.wait()

    async def _do_close(self, close: _Close) -> None:
        if close.abrupt:
            # No close frame: drop the TCP connection (as a crashed server / network would).
            await self.ws._close_stream()  # noqa: SLF001 -- trio-websocket has no public abort
            return
        with trio.move_on_after(5):
            await self.ws.aclose(close.code, close.reason or None)
        if not self.done.is_set():
            await self.ws._close_stream()  # noqa: SLF001

    # ---- subscriptions lookup (used by FakeOkx push fan-out)

    def public_sub(self, channel: str, inst_id: str) -> dict[str, Any] | None:
        return self.public_subs.get((channel, inst_id))

    def orders_args_matching(self, push: dict[str, Any]) -> list[dict[str, Any]]:
        if not self.logged_in:
            return []
        out = []
        for arg in self.orders_args:
            if arg.get("instType") not in ("ANY", push["instType"]):
                continue
            if arg.get("instId") and arg["instId"] != push["instId"]:
                continue
            if arg.get("instFamily") and arg["instFamily"] != self.fake.exchange.inst_family(push["instId"]):
                continue  # spot instruments have no instFamily
            out.append(arg)
        return out

    def push_market(self, inst_id: str) -> None:
        ex = self.fake.exchange
        arg = self.public_subs.get(("tickers", inst_id))
        if arg is not None:
            ticker = ex.ticker(inst_id)
            if ticker is not None:
                self.send_json({"arg": arg, "data": [ticker]}, activity=True)
        book = None
        arg = self.public_subs.get(("bbo-tbt", inst_id))
        if arg is not None:
            book = ex.books5(inst_id)
            if book is not None:
                bbo = {
                    "asks": book["asks"][:1],
                    "bids": book["bids"][:1],
                    "ts": book["ts"],
                    "seqId": book["seqId"],
                }
                self.send_json({"arg": arg, "data": [bbo]}, activity=True)
        arg = self.public_subs.get(("books5", inst_id))
        if arg is not None:
            book = book or ex.books5(inst_id)
            if book is not None:
                self.send_json({"arg": arg, "data": [book]}, activity=True)


async def serve(fake: FakeOkx, host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run the WebSocket listener; ``task_status.started(WebSocketServer)`` once bound."""

    async def handler(request: WebSocketRequest) -> None:
        await _handle(fake, request)

    async with trio.open_nursery() as nursery:
        server: WebSocketServer = await nursery.start(
            partial(serve_websocket, handler, host, port, None, handler_nursery=nursery)
        )
        task_status.started(server)


async def _handle(fake: FakeOkx, request: WebSocketRequest) -> None:
    path = request.path.partition("?")[0]  # ?brokerId=9999 is tolerated (§4.1)
    kind = _PATHS.get(path)
    if kind is None:
        await request.reject(404)
        return
    ws = await request.accept()
    conn = WsConn(fake, ws, kind, path)
    fake.ws_connects.append(trio.current_time())
    fake._conns.add(conn)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_writer, conn)
            nursery.start_soon(_watchdog, conn)
            await _reader(conn, nursery)
            nursery.cancel_scope.cancel()
    finally:
        fake._conns.discard(conn)
        conn.closing = True
        conn.done.set()
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(conn.ws._stream)  # noqa: SLF001


async def _writer(conn: WsConn) -> None:
    async for item in conn.recv_ch:
        if isinstance(item, _Close):
            await conn._do_close(item)
            return
        try:
            await conn.ws.send_message(item)
        except ConnectionClosed:
            return


async def _watchdog(conn: WsConn) -> None:
    """§4.4: no data for idle_timeout seconds -> close 4004."""
    while True:
        deadline = conn.last_activity + conn.fake.idle_timeout
        if trio.current_time() >= deadline:
            conn.request_close(4004, f"No data received in {conn.fake.idle_timeout:g}s")
            return
        await trio.sleep_until(deadline)


async def _reader(conn: WsConn, nursery: trio.Nursery) -> None:
    from .server import RecordedRequest

    fake = conn.fake
    while True:
        try:
            message = await conn.ws.get_message()
        except ConnectionClosed:
            return
        conn.last_activity = trio.current_time()
        text = message if isinstance(message, str) else message.decode("utf-8", errors="replace")
        in_us = time.time_ns() // 1000 + fake.clock_offset_ms * 1000
        if text == "ping":  # §4.4: text ping -> text pong
            fake.requests.append(
                RecordedRequest(
                    "ws", "WS", conn.path, "ping", None, fake.now_ms(), raw=text, conn_id=conn.conn_id
                )
            )
            conn.send_text("pong")
            continue
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        op = msg.get("op") if isinstance(msg, dict) and isinstance(msg.get("op"), str) else None
        fake.requests.append(
            RecordedRequest("ws", "WS", conn.path, op, msg, fake.now_ms(), raw=text, conn_id=conn.conn_id)
        )
        if op is None or not isinstance(msg, dict):
            # §4.2: invalid JSON, or JSON {"op":"ping"}... -> 60012 (an "op":"ping" lands below)
            out: list[Any] = [_error_event(conn, None, "60012", f"Invalid request: {text}")]
        elif (late := fake.take_late(op)) is not None:
            nursery.start_soon(_late, conn, late.seconds, op, msg, fake.requests[-1])
            continue
        else:
            out = _dispatch(conn, op, msg, in_us)
            fake.note_answers(fake.requests[-1], out)  # no checkpoint since it was appended
        stall = fake.take_stall("ws", "WS", conn.path, op)
        if stall is None:
            _emit(conn, out)
        else:
            nursery.start_soon(_stalled, conn, stall, out, msg if isinstance(msg, dict) else {}, op)


def _emit(conn: WsConn, out: list[Any]) -> None:
    for item in out:
        if isinstance(item, _Close):
            conn.request_close(item.code, item.reason, abrupt=item.abrupt)
        else:
            conn.send_json(item)


async def _late(conn: WsConn, seconds: float, op: str, msg: dict[str, Any], request: Any) -> None:
    """``process_late_next``: carry the request out (and answer it) ``seconds`` after it came in."""
    await trio.sleep(seconds)
    out = _dispatch(conn, op, msg, time.time_ns() // 1000 + conn.fake.clock_offset_ms * 1000)
    conn.fake.note_answers(request, out)
    _emit(conn, out)


async def _stalled(conn: WsConn, stall: Any, out: list[Any], msg: dict[str, Any], op: str | None) -> None:
    await trio.sleep(stall.seconds)
    if stall.drop:
        await conn.close_now(1006, "", True)
        return
    if stall.error_code is not None:
        text = conn.fake.messages.get(stall.error_code, "")
        out = [{"id": msg.get("id", ""), "op": op, "code": stall.error_code, "msg": text, "data": []}]
    _emit(conn, out)


def _error_event(conn: WsConn, req_id: Any, code: str, msg: str) -> dict[str, Any]:
    event: dict[str, Any] = {}
    if req_id is not None:
        event["id"] = req_id
    event.update({"event": "error", "code": code, "msg": msg, "connId": conn.conn_id})
    return event


def _dispatch(conn: WsConn, op: str, msg: dict[str, Any], in_us: int) -> list[Any]:
    if op in ("subscribe", "unsubscribe"):
        return _subscribe(conn, op, msg)
    if op == "login":
        return _login(conn, msg)
    if op in _TRADE_OPS and conn.kind == "private":
        return _trade_op(conn, op, msg, in_us)
    return [_error_event(conn, msg.get("id"), "60012", f"Invalid request: {_dumps(msg)}")]


# ---------------------------------------------------------------------------- login (§4.3)


def _login(conn: WsConn, msg: dict[str, Any]) -> list[Any]:
    fake = conn.fake
    req_id = msg.get("id")
    if conn.logged_in:
        return [
            _error_event(
                conn, req_id, "60031", "The WebSocket endpoint does not allow multiple or repeated logins."
            )
        ]
    args = msg.get("args")
    arg = args[0] if isinstance(args, list) and args else None
    try:
        check_ws_login(arg, fake.credentials, fake.now_ms(), allow_fraction=fake.ws_login_allow_fraction)
    except AuthError as exc:
        out: list[Any] = [_error_event(conn, req_id, exc.code, exc.msg)]
        if fake.close_on_login_failure:
            out.append(_Close(4001, "Login failed."))
        return out
    conn.logged_in = True
    ack: dict[str, Any] = {"id": req_id} if req_id is not None else {}
    ack.update({"event": "login", "code": "0", "msg": "", "connId": conn.conn_id})
    return [ack]


# ---------------------------------------------------------------------------- subscribe (§4.2, §4.5)


def _subscribe(conn: WsConn, op: str, msg: dict[str, Any]) -> list[Any]:
    fake, ex = conn.fake, conn.fake.exchange
    req_id = msg.get("id")
    args = msg.get("args")
    if not isinstance(args, list) or not args:
        return [_error_event(conn, req_id, "60012", f"Invalid request: {_dumps(msg)}")]
    out: list[Any] = []
    for arg in args:
        if isinstance(arg, dict) and arg.get("channel") in deriv_ws.CHANNELS:
            out.extend(deriv_ws.subscribe(conn, op, req_id, arg))
            continue
        error = _check_arg(conn, arg)
        if error is not None:
            out.append(_error_event(conn, req_id, *error))
            continue
        channel = arg["channel"]
        ack: dict[str, Any] = {"id": req_id} if req_id is not None else {}
        ack.update({"event": op, "arg": arg, "connId": conn.conn_id})
        if op == "unsubscribe":
            _remove_sub(conn, arg)
            out.append(ack)
            continue
        # One ack per arg (§4.2 "inferred, not stated" -- §9).
        out.append(ack)
        if channel in _PUBLIC_CHANNELS:
            canonical = {"channel": channel, "instId": arg["instId"]}
            conn.public_subs[(channel, arg["instId"])] = canonical
            if channel in ("tickers",):
                ticker = ex.ticker(arg["instId"])
                if ticker is not None:
                    out.append({"arg": canonical, "data": [ticker]})
            elif channel == "books":  # §5.3: the first push is the 400-level snapshot
                inst = arg["instId"]
                fake.book_subscribes[inst] = fake.book_subscribes.get(inst, 0) + 1
                if not fake.books_silent:
                    out.append(
                        {"arg": canonical, "action": "snapshot", "data": [fake.book_feed.snapshot(inst)]}
                    )
            elif channel in ("books5", "bbo-tbt"):
                book = ex.books5(arg["instId"])
                if book is not None:
                    if channel == "bbo-tbt":
                        book = {
                            "asks": book["asks"][:1],
                            "bids": book["bids"][:1],
                            "ts": book["ts"],
                            "seqId": book["seqId"],
                        }
                    out.append({"arg": canonical, "data": [book]})
        elif _is_business_channel(channel):
            conn.business_subs[(channel, arg.get("instId", ""))] = arg  # acked, never pushed
        elif channel in _COUNTED_CHANNELS:
            was_subscribed = bool(conn.orders_args if channel == "orders" else conn.account_arg)
            if channel == "orders":
                if arg not in conn.orders_args:
                    conn.orders_args.append(dict(arg))
            else:
                conn.account_arg = {"channel": "account", **({"ccy": arg["ccy"]} if arg.get("ccy") else {})}
            count = sum(1 for c in fake._conns if (c.orders_args if channel == "orders" else c.account_arg))
            if count > fake.max_private_channel_conns and not was_subscribed:
                out.append(
                    {
                        "event": "channel-conn-count-error",
                        "channel": channel,
                        "connCount": str(fake.max_private_channel_conns),
                        "connId": conn.conn_id,
                    }
                )
                _remove_sub(conn, arg)
            else:
                out.append(
                    {
                        "event": "channel-conn-count",
                        "channel": channel,
                        "connCount": str(count),
                        "connId": conn.conn_id,
                    }
                )
                if channel == "account" and fake.account_snapshot and conn.account_arg is not None:
                    out.append(fake.account_snapshot_message(conn.account_arg))  # [account channel]
    return out


def _remove_sub(conn: WsConn, arg: dict[str, Any]) -> None:
    channel = arg.get("channel")
    if channel in _PUBLIC_CHANNELS:
        conn.public_subs.pop((channel, arg.get("instId", "")), None)
    elif channel == "orders":
        conn.orders_args = [a for a in conn.orders_args if a != arg]
    elif channel == "account":
        conn.account_arg = None
    else:
        conn.business_subs.pop((str(channel), arg.get("instId", "")), None)


def _check_arg(conn: WsConn, arg: Any) -> tuple[str, str] | None:
    """Return (code, msg) of the error event for a bad subscription arg, else None."""
    ex = conn.fake.exchange
    if not isinstance(arg, dict) or not isinstance(arg.get("channel"), str):
        return "60013", f"Invalid args: {_dumps(arg)}"
    channel = arg["channel"]
    inst_id = arg.get("instId", "")

    def not_found() -> tuple[str, str]:
        return (
            "60018",
            f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. "
            "Please use the correct URL, channel and parameters referring to API document.",
        )

    if _is_business_channel(channel):
        if conn.kind != "business":
            return (
                "64001",
                f"This channel {channel} has been migrated to the '/business' URL. "
                "Please subscribe using the new URL.",
            )
        return None if inst_id in ex.instruments else not_found()
    if conn.kind == "business":
        return (
            "64002",
            f"This channel {channel} is not supported by business URL. "
            'Please use "/private" URL(for private channels), or "/public" URL(for public channels).',
        )
    if channel in _PUBLIC_CHANNELS:
        if conn.kind != "public":
            return not_found()
        if not inst_id:
            return "60013", f"Invalid args: {_dumps(arg)}"
        return None if inst_id in ex.instruments else not_found()
    if channel in _PRIVATE_CHANNELS:
        if conn.kind != "private":
            return not_found()
        if not conn.logged_in:
            return "60011", "Please log in"  # §4.2
        if channel == "orders":
            if arg.get("instType") not in _INST_TYPES:
                return "60013", f"Invalid args: {_dumps(arg)}"
            if inst_id and inst_id not in ex.instruments:
                return not_found()
        return None
    return not_found()


# ---------------------------------------------------------------------------- trading ops (§6)


def _trade_op(conn: WsConn, op: str, msg: dict[str, Any], in_us: int) -> list[Any]:
    fake, ex = conn.fake, conn.fake.exchange
    req_id = msg.get("id")

    def envelope(code: str, text: str, data: list[Any]) -> dict[str, Any]:
        out_us = time.time_ns() // 1000 + fake.clock_offset_ms * 1000
        return {
            "id": req_id if req_id is not None else "",
            "op": op,
            "code": code,
            "msg": text,
            "data": data,
            "inTime": str(in_us),
            "outTime": str(out_us),
        }

    if not conn.logged_in:
        return [envelope("60011", "Please log in", [])]
    args = msg.get("args")
    # §6: id required (<=32 alphanumerics); malformed -> 60013 "Invalid args" with empty data.
    if (
        not isinstance(req_id, str)
        or not _ID.match(req_id)
        or not isinstance(args, list)
        or not args
        or not all(isinstance(a, dict) for a in args)
        or (not op.startswith("batch") and len(args) != 1)
    ):
        return [envelope("60013", "Invalid args", [])]
    if len(args) > 20:
        code = {"batch-orders": "51111", "batch-cancel-orders": "51406", "batch-amend-orders": "51501"}[op]
        return [envelope(code, ex.msg(code, n=20) or "Maximum 20 orders", [])]
    exp = msg.get("expTime")
    expired = op not in _CANCEL_OPS and isinstance(exp, str) and exp.isdigit() and fake.now_ms() > int(exp)
    family = "place" if op in _PLACE_OPS else "cancel" if op in _CANCEL_OPS else "amend"
    kind = family if len(args) == 1 else f"batch-{family}"
    taken: set[str] = set()
    items = []
    for arg in args:
        if family == "place":
            items.append(_ws_place(conn, arg, kind, taken, expired))
        elif family == "cancel":
            items.append(_ws_cancel(conn, arg, kind))
        else:
            items.append(_ws_amend(conn, arg, kind, expired))
    ok = sum(1 for i in items if i["sCode"] == "0")
    # Observed WS wire (ccxt/ccxt#27805): code "1" comes with msg "".
    code = "0" if ok == len(items) else "1" if ok == 0 else "2"
    return [envelope(code, "", items)]


def _resolve(conn: WsConn, arg: dict[str, Any]) -> dict[str, Any]:
    """§0/§6: WS ops carry instIdCode (integer) instead of instId."""
    fake, ex = conn.fake, conn.fake.exchange
    code = arg.get("instIdCode")
    if code is None:
        if fake.ws_accept_inst_id and arg.get("instId"):
            return dict(arg)
        # Observed wire text (ccxt/ccxt#27805) ends with a period; sCode 50014 per item.
        raise OkxError("50014", "Parameter instIdCode can not be empty.")
    if isinstance(code, bool) or not isinstance(code, int):
        if not fake.ws_strict_inst_id_code_type and isinstance(code, str) and code.isdigit():
            code = int(code)
        else:
            raise OkxError("51000", "Parameter instIdCode error")
    inst = ex.inst_by_code(code)
    if inst is None:
        raise ex.err("51001")
    resolved = {k: v for k, v in arg.items() if k not in ("instIdCode", "instId")}
    resolved["instId"] = inst.inst_id
    return resolved


def _rate_limited_item(conn: WsConn, base: dict[str, Any]) -> dict[str, Any]:
    return {**base, "ts": str(conn.fake.now_ms()), "sCode": "50011", "sMsg": conn.fake.messages["50011"]}


def _ws_place(conn: WsConn, arg: dict[str, Any], kind: str, taken: set[str], expired: bool) -> dict[str, Any]:
    fake, ex = conn.fake, conn.fake.exchange
    base = {"clOrdId": arg.get("clOrdId", "") or "", "ordId": "", "tag": arg.get("tag", "") or ""}
    try:
        resolved = _resolve(conn, arg)
        if not ex.rate_limit_ok(kind, resolved["instId"]):
            return _rate_limited_item(conn, {**base, "subCode": ""})
        spec = ex.validate_place(resolved)
    except OkxError as exc:
        return {**base, "ts": str(fake.now_ms()), "sCode": exc.code, "sMsg": exc.msg, "subCode": exc.sub_code}
    if expired:
        return {
            **base,
            "ts": str(fake.now_ms()),
            "sCode": ex.exp_time_code,
            "sMsg": ex.msg("exp_time"),
            "subCode": "",
        }
    item = ex.place(spec, taken_cl_ids=taken)
    if item["sCode"] == "0":
        item["sMsg"] = ex.msg("ws_place_ok")
    return item


def _ws_cancel(conn: WsConn, arg: dict[str, Any], kind: str) -> dict[str, Any]:
    fake, ex = conn.fake, conn.fake.exchange
    base = {"clOrdId": arg.get("clOrdId", "") or "", "ordId": arg.get("ordId", "") or ""}
    try:
        inst_id, ord_id, cl = ex.validate_ref(_resolve(conn, arg))
        if not ex.rate_limit_ok(kind, inst_id):
            return _rate_limited_item(conn, base)
    except OkxError as exc:
        return {**base, "ts": str(fake.now_ms()), "sCode": exc.code, "sMsg": exc.msg}
    item, order = ex.cancel(inst_id, ord_id, cl)
    if order is not None:
        item["ts"] = str(order.c_time)  # §6: WS cancel/amend item ts = order creation time
    return item


def _ws_amend(conn: WsConn, arg: dict[str, Any], kind: str, expired: bool) -> dict[str, Any]:
    fake, ex = conn.fake, conn.fake.exchange
    base = {
        "clOrdId": arg.get("clOrdId", "") or "",
        "ordId": arg.get("ordId", "") or "",
        "reqId": arg.get("reqId", "") or "",
        "subCode": "",
    }
    try:
        resolved = _resolve(conn, arg)
        inst_id, ord_id, cl = ex.validate_ref(resolved)
        if not ex.rate_limit_ok(kind, inst_id):
            return _rate_limited_item(conn, base)
        amend = ex.validate_amend(resolved, ex.instruments.get(inst_id))
    except OkxError as exc:
        return {**base, "ts": str(fake.now_ms()), "sCode": exc.code, "sMsg": exc.msg}
    if expired:
        return {**base, "ts": str(fake.now_ms()), "sCode": ex.exp_time_code, "sMsg": ex.msg("exp_time")}
    item, order = ex.amend(inst_id, ord_id, cl, amend)
    if order is not None:
        item["ts"] = str(order.c_time)
    return item
