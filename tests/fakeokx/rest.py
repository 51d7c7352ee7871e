"""REST side of the fake OKX: a small HTTP/1.1 server (h11 over trio streams) and the §2 endpoints.

One task per TCP connection (``serve_http_connection``): read a request (Content-Length body),
answer with a Content-Length JSON body, keep the connection alive until the client closes it or asks
for ``Connection: close``.  Cancelled with the fake's nursery.  Requests on one connection are
answered in order (HTTP/1.1 without pipelining surprises).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import h11
import trio

from .auth import AuthError, check_rest_auth
from .candles import CandleError
from .exchange import OkxError

if TYPE_CHECKING:
    from .server import FakeOkx

__all__ = ["http_status", "serve_http_connection"]

_MAX_BODY = 1 << 20

# §2.14 / §8.4: HTTP status per error code; business rejections are 200.
_STATUS = {
    "50000": 400,
    "50001": 503,
    "50002": 400,
    "50004": 400,
    "50011": 429,
    "50013": 429,
    "50014": 400,
    "50015": 400,
    "50016": 400,
    "50026": 500,
    "50100": 400,
    "51000": 400,
    "51406": 400,
    "51501": 400,
}


def http_status(code: str) -> int:
    """HTTP status for a top-level ``code`` (§1.6: 501xx auth errors are 401, except 50100)."""
    if code in _STATUS:
        return _STATUS[code]
    if code.startswith("501") and len(code) == 5:
        return 401
    return 200


@dataclass
class _Ctx:
    fake: FakeOkx
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    in_time_us: int

    def expired(self) -> bool:
        """§1.2: header expTime (ms); the request is dropped when exchange time > expTime."""
        exp = self.headers.get("exptime", "")
        return exp.isdigit() and self.fake.now_ms() > int(exp)


_Payload = tuple[int, dict[str, Any]]
_Handler = Callable[[_Ctx], _Payload]


# ---------------------------------------------------------------------------- HTTP plumbing


async def serve_http_connection(fake: FakeOkx, stream: trio.abc.Stream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_BODY)
    try:
        while True:
            got = await _read_request(conn, stream)
            if got is None:
                return
            request, body = got
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
            result = await handle(
                fake, request.method.decode("ascii"), request.target.decode("latin-1"), headers, body
            )
            if result is None:  # stall_next(..., drop=True): vanish without an answer
                await stream.aclose()
                return
            status, payload = result
            data = json.dumps(payload, separators=(",", ":")).encode()
            await _send(
                conn,
                stream,
                h11.Response(
                    status_code=status,
                    headers=[("content-type", "application/json"), ("content-length", str(len(data)))],
                ),
            )
            await _send(conn, stream, h11.Data(data=data))
            await _send(conn, stream, h11.EndOfMessage())
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                await stream.aclose()
                return
            conn.start_next_cycle()
    except h11.RemoteProtocolError:
        await _try_send_bad_request(conn, stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


async def _read_request(conn: h11.Connection, stream: trio.abc.Stream) -> tuple[h11.Request, bytes] | None:
    request: h11.Request | None = None
    chunks: list[bytes] = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)  # b"" = EOF
            continue
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, b"".join(chunks)


async def _send(conn: h11.Connection, stream: trio.abc.Stream, event: Any) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


async def _try_send_bad_request(conn: h11.Connection, stream: trio.abc.Stream) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = b'{"code":"50002","msg":"Bad request","data":[]}'
    try:
        await _send(
            conn,
            stream,
            h11.Response(
                status_code=400,
                headers=[
                    ("content-type", "application/json"),
                    ("content-length", str(len(body))),
                    ("connection", "close"),
                ],
            ),
        )
        await _send(conn, stream, h11.Data(data=body))
        await _send(conn, stream, h11.EndOfMessage())
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass


# ---------------------------------------------------------------------------- dispatch


async def handle(
    fake: FakeOkx, method: str, target: str, headers: dict[str, str], raw_body: bytes
) -> _Payload | None:
    """Process one REST request; returns (status, payload), or None to drop the connection."""
    from .server import RecordedRequest

    in_time_us = time.time_ns() // 1000 + fake.clock_offset_ms * 1000
    path, _, raw_query = target.partition("?")
    query = dict(parse_qsl(raw_query, keep_blank_values=True))
    body_text = raw_body.decode("utf-8", errors="replace")
    parsed: Any = None
    parse_error = False
    if body_text:
        try:
            parsed = json.loads(body_text)
        except ValueError:
            parse_error = True
    fake.requests.append(
        RecordedRequest(
            transport="rest",
            method=method,
            path=path,
            op=None,
            body=parsed,
            ts=fake.now_ms(),
            query=query,
            headers=headers,
            raw=target + body_text,
        )
    )
    result = _dispatch(fake, method, target, path, query, headers, body_text, parsed, parse_error, in_time_us)
    fake.note_answers(fake.requests[-1], [result[1]])  # no checkpoint since it was appended
    stall = fake.take_stall("rest", method, path, None)
    if stall is not None:
        await trio.sleep(stall.seconds)
        if stall.drop:
            return None
        if stall.error_code is not None:
            return _error(fake, OkxError(stall.error_code, fake.messages.get(stall.error_code, "")))
    return result


def _dispatch(
    fake: FakeOkx,
    method: str,
    target: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body_text: str,
    parsed: Any,
    parse_error: bool,
    in_time_us: int,
) -> _Payload:
    route = _ROUTES.get((method, path))
    if route is None:
        if any(p == path for (_, p) in _ROUTES):
            return 405, {"code": "405", "msg": "Method Not Allowed", "data": []}
        return 404, {"code": "404", "msg": "Not Found", "data": []}
    private, handler = route
    try:
        if private:
            try:
                check_rest_auth(
                    headers, method, target, body_text, fake.credentials, fake.now_ms(), fake.messages
                )
            except AuthError as exc:
                raise OkxError(exc.code, exc.msg) from None
        if method == "POST":
            if not body_text:
                raise OkxError("50000", fake.messages["50000"])
            if parse_error:
                raise OkxError("50002", fake.messages["50002"])
        ctx = _Ctx(fake, method, path, query, headers, parsed, in_time_us)
        return handler(ctx)
    except OkxError as exc:
        return _error(fake, exc)


def _error(fake: FakeOkx, exc: OkxError) -> _Payload:
    """Top-level error envelope (§2.0, §8.1): data [] (or absent, for codes observed that way)."""
    if exc.code in fake.omit_data_codes:
        return http_status(exc.code), {"msg": exc.msg, "code": exc.code}
    return http_status(exc.code), {"code": exc.code, "msg": exc.msg, "data": []}


def _ok(data: list[Any]) -> _Payload:
    return 200, {"code": "0", "msg": "", "data": data}


def _op_result(ctx: _Ctx, items: list[dict[str, Any]]) -> _Payload:
    """§2.0: top code 0 all ok / 1 all failed / 2 partial; inTime/outTime in µs strings."""
    ok = sum(1 for i in items if i["sCode"] == "0")
    if ok == len(items):
        code, msg = "0", ""
    elif ok == 0:
        code, msg = "1", ctx.fake.messages["1"]
    else:
        code, msg = "2", ctx.fake.messages["2"]
    out_us = time.time_ns() // 1000 + ctx.fake.clock_offset_ms * 1000
    return 200, {
        "code": code,
        "msg": msg,
        "data": items,
        "inTime": str(ctx.in_time_us),
        "outTime": str(out_us),
    }


def _object_body(ctx: _Ctx) -> dict[str, Any]:
    if not isinstance(ctx.body, dict):
        raise OkxError("51000", "Parameter body error")  # sheet silent; a JSON object is expected
    return ctx.body


def _array_body(ctx: _Ctx, max_items: int, too_many: str) -> list[Any]:
    if not isinstance(ctx.body, list) or not ctx.body:
        raise OkxError("51000", "Parameter body error")  # §2.2: body is a JSON array
    if len(ctx.body) > max_items:
        raise OkxError(
            too_many, ctx.fake.exchange.msg(too_many, n=max_items) or f"Maximum {max_items} orders"
        )
    return ctx.body


def _exp_item(ctx: _Ctx, arg: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    ex = ctx.fake.exchange
    return {
        "clOrdId": arg.get("clOrdId", "") or "",
        "ordId": arg.get("ordId", "") or "",
        **extra,
        "ts": str(ctx.fake.now_ms()),
        "sCode": ex.exp_time_code,
        "sMsg": ex.msg("exp_time"),
        "subCode": "",
    }


# ---------------------------------------------------------------------------- public endpoints


def _instruments(ctx: _Ctx) -> _Payload:
    """§2.11."""
    inst_type = ctx.query.get("instType", "")
    if not inst_type:
        raise OkxError("50014", "Parameter instType can not be empty")
    if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION", "EVENTS"):
        raise OkxError("51000", "Parameter instType error")
    items = [
        dict(inst.record)
        for inst in ctx.fake.exchange.instruments.values()
        if inst.record["instType"] == inst_type
        and (not ctx.query.get("instId") or inst.inst_id == ctx.query["instId"])
    ]
    return _ok(items)


def _time(ctx: _Ctx) -> _Payload:
    """§2.12."""
    return _ok([{"ts": str(ctx.fake.now_ms())}])


def _candles(ctx: _Ctx) -> _Payload:
    """§5.5 GET market/candles and market/history-candles (candles.py holds the rules)."""
    try:
        return _ok(ctx.fake.candles.answer(ctx.path, ctx.query))  # type: ignore[arg-type]
    except CandleError as exc:
        raise OkxError(exc.code, exc.msg) from None


# ---------------------------------------------------------------------------- trade endpoints


def _place(ctx: _Ctx) -> _Payload:
    """§2.1 POST /api/v5/trade/order."""
    ex = ctx.fake.exchange
    body = _object_body(ctx)
    inst_id = body.get("instId")
    if isinstance(inst_id, str) and inst_id and not ex.rate_limit_ok("place", inst_id):
        raise OkxError("50011", ex.msg("50011"))
    spec = ex.validate_place(body)
    if ctx.expired():
        return _op_result(ctx, [_exp_item(ctx, body, {"tag": spec["tag"]})])
    return _op_result(ctx, [ex.place(spec)])


def _batch_place(ctx: _Ctx) -> _Payload:
    """§2.2 POST /api/v5/trade/batch-orders (array, max 20, processed in turn)."""
    ex = ctx.fake.exchange
    args = _array_body(ctx, 20, "51111")
    specs = [ex.validate_place(a) for a in args]  # a malformed item rejects the whole request
    if ctx.expired():
        return _op_result(
            ctx, [_exp_item(ctx, a, {"tag": s["tag"]}) for a, s in zip(args, specs, strict=True)]
        )
    kind = "place" if len(specs) == 1 else "batch-place"  # §7: a 1-order batch counts as single
    taken: set[str] = set()
    items = []
    for spec in specs:
        if not ex.rate_limit_ok(kind, spec["instId"]):
            items.append(_rl_item(ctx, spec["clOrdId"], "", {"tag": spec["tag"], "subCode": ""}))
        else:
            items.append(ex.place(spec, taken_cl_ids=taken))
    return _op_result(ctx, items)


def _rl_item(ctx: _Ctx, cl: str, ord_id: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "clOrdId": cl,
        "ordId": ord_id,
        **extra,
        "ts": str(ctx.fake.now_ms()),
        "sCode": "50011",
        "sMsg": ctx.fake.messages["50011"],
    }


def _cancel(ctx: _Ctx) -> _Payload:
    """§2.3 POST /api/v5/trade/cancel-order."""
    ex = ctx.fake.exchange
    inst_id, ord_id, cl = ex.validate_ref(_object_body(ctx))
    if not ex.rate_limit_ok("cancel", inst_id):
        raise OkxError("50011", ex.msg("50011"))
    item, _ = ex.cancel(inst_id, ord_id, cl)
    return _op_result(ctx, [item])


def _batch_cancel(ctx: _Ctx) -> _Payload:
    """§2.4 POST /api/v5/trade/cancel-batch-orders."""
    ex = ctx.fake.exchange
    args = _array_body(ctx, 20, "51406")
    refs = [ex.validate_ref(a) for a in args]
    kind = "cancel" if len(refs) == 1 else "batch-cancel"
    items = []
    for inst_id, ord_id, cl in refs:
        if not ex.rate_limit_ok(kind, inst_id):
            items.append(_rl_item(ctx, cl, ord_id, {}))
        else:
            items.append(ex.cancel(inst_id, ord_id, cl)[0])
    return _op_result(ctx, items)


def _amend(ctx: _Ctx) -> _Payload:
    """§2.5 POST /api/v5/trade/amend-order."""
    ex = ctx.fake.exchange
    body = _object_body(ctx)
    inst_id, ord_id, cl = ex.validate_ref(body)
    if not ex.rate_limit_ok("amend", inst_id):
        raise OkxError("50011", ex.msg("50011"))
    amend = ex.validate_amend(body, ex.instruments.get(inst_id))
    if ctx.expired():
        return _op_result(ctx, [_exp_item(ctx, body, {"reqId": amend.req_id})])
    item, _ = ex.amend(inst_id, ord_id, cl, amend)
    return _op_result(ctx, [item])


def _batch_amend(ctx: _Ctx) -> _Payload:
    """§2.5 POST /api/v5/trade/amend-batch-orders."""
    ex = ctx.fake.exchange
    args = _array_body(ctx, 20, "51501")
    parsed = [
        (ex.validate_ref(a), ex.validate_amend(a, ex.instruments.get(str(a.get("instId"))))) for a in args
    ]
    if ctx.expired():
        return _op_result(
            ctx, [_exp_item(ctx, a, {"reqId": am.req_id}) for a, (_, am) in zip(args, parsed, strict=True)]
        )
    kind = "amend" if len(parsed) == 1 else "batch-amend"
    items = []
    for (inst_id, ord_id, cl), amend in parsed:
        if not ex.rate_limit_ok(kind, inst_id):
            items.append(_rl_item(ctx, cl, ord_id, {"reqId": amend.req_id, "subCode": ""}))
        else:
            items.append(ex.amend(inst_id, ord_id, cl, amend)[0])
    return _op_result(ctx, items)


def _get_order(ctx: _Ctx) -> _Payload:
    """§2.6 GET /api/v5/trade/order; unknown -> top-level 51603 with data [] (envelope unverified, §9)."""
    ex = ctx.fake.exchange
    inst_id = ctx.query.get("instId", "")
    if not inst_id:
        raise OkxError("50014", "Parameter instId can not be empty")
    ord_id, cl = ctx.query.get("ordId", ""), ctx.query.get("clOrdId", "")
    if not ord_id and not cl:
        raise OkxError("50015", "Either parameter ordId or clOrdId is required.")
    order = ex.find(inst_id, ord_id, cl)
    if order is None:
        raise OkxError("51603", ex.msg("51603"))
    return _ok([ex.order_rest(order)])


def _orders_pending(ctx: _Ctx) -> _Payload:
    """§2.7."""
    return _ok(ctx.fake.exchange.pending(ctx.query))


def _fills(ctx: _Ctx) -> _Payload:
    """§2.8: the last 3 days; 60 req / 2 s per UID (§7)."""
    ex = ctx.fake.exchange
    if not ex.query_rate_ok("fills"):
        raise OkxError("50011", ex.msg("50011"))
    return _ok(ex.fills_query(ctx.query))


def _fills_history(ctx: _Ctx) -> _Payload:
    """§2.8 (3-month history): instType required; 10 req / 2 s per UID (§7)."""
    ex = ctx.fake.exchange
    if not ctx.query.get("instType"):
        raise OkxError("50014", "Parameter instType can not be empty")
    if not ex.query_rate_ok("fills-history"):
        raise OkxError("50011", ex.msg("50011"))
    return _ok(ex.fills_query(ctx.query, history=True))


def _balance(ctx: _Ctx) -> _Payload:
    """§2.9: data = one object."""
    ccys = [c for c in ctx.query.get("ccy", "").split(",") if c]
    return _ok([ctx.fake.exchange.balance_record(ccys or None)])


def _cancel_all_after(ctx: _Ctx) -> _Payload:
    """§2.13 dead man's switch."""
    fake, ex = ctx.fake, ctx.fake.exchange
    body = _object_body(ctx)
    tag = body.get("tag", "") or ""
    if tag and (not isinstance(tag, str) or not tag.isalnum() or len(tag) > 16):
        raise OkxError("51000", "Parameter tag error")
    raw = body.get("timeOut")
    if raw is None or raw == "":
        raise OkxError("50014", "Parameter timeOut can not be empty")
    if not isinstance(raw, str) or not raw.isdigit():
        raise OkxError("51000", "Parameter timeOut error")
    timeout = int(raw)
    if timeout != 0 and not 10 <= timeout <= 120:
        # §8.15 / §9: the out-of-range code is undocumented; 51000 is the sheet's guess.
        raise OkxError("51000", "Parameter timeOut error")
    if not ex.caa_rate_ok(tag):
        raise OkxError("50011", ex.msg("50011"))
    caa = ex.set_cancel_all_after(timeout, tag)
    fake.arm_cancel_all_after(tag)
    div = 1 if ex.caa_times_in_ms else 1000  # §9: units unverified; docs example shows seconds
    now = fake.now_ms()
    item = {
        "triggerTime": str(caa.trigger_time_ms // div) if caa.trigger_time_ms else "0",
        "tag": tag,
        "ts": str(now // div),
    }
    out_us = time.time_ns() // 1000 + fake.clock_offset_ms * 1000
    return 200, {
        "code": "0",
        "msg": "",
        "data": [item],
        "inTime": str(ctx.in_time_us),
        "outTime": str(out_us),
    }


_ROUTES: dict[tuple[str, str], tuple[bool, _Handler]] = {
    ("GET", "/api/v5/public/instruments"): (False, _instruments),
    ("GET", "/api/v5/public/time"): (False, _time),
    ("GET", "/api/v5/market/candles"): (False, _candles),
    ("GET", "/api/v5/market/history-candles"): (False, _candles),
    ("POST", "/api/v5/trade/order"): (True, _place),
    ("POST", "/api/v5/trade/batch-orders"): (True, _batch_place),
    ("POST", "/api/v5/trade/cancel-order"): (True, _cancel),
    ("POST", "/api/v5/trade/cancel-batch-orders"): (True, _batch_cancel),
    ("POST", "/api/v5/trade/amend-order"): (True, _amend),
    ("POST", "/api/v5/trade/amend-batch-orders"): (True, _batch_amend),
    ("GET", "/api/v5/trade/order"): (True, _get_order),
    ("GET", "/api/v5/trade/orders-pending"): (True, _orders_pending),
    ("GET", "/api/v5/trade/fills"): (True, _fills),
    ("GET", "/api/v5/trade/fills-history"): (True, _fills_history),
    ("GET", "/api/v5/account/balance"): (True, _balance),
    ("POST", "/api/v5/trade/cancel-all-after"): (True, _cancel_all_after),
}

from .deriv_rest import DERIV_ROUTES  # noqa: E402 -- the derivative endpoints use the helpers above

_ROUTES.update(DERIV_ROUTES)
