"""REST endpoints of derivatives on the fake OKX ([account configuration], [close positions],
[public data], [bills], §2.10).

Private: ``GET account/config``, ``POST account/set-position-mode``, ``POST account/set-leverage``,
``GET account/leverage-info``, ``GET account/positions``, ``GET account/bills`` (7 days) and
``account/bills-archive`` (3 months), ``POST trade/close-position``.  Public: ``GET public/mark-price``,
``public/funding-rate``, ``public/funding-rate-history``, ``public/price-limit``.  Registered into
``rest._ROUTES`` at the end of ``rest.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .derivs import DerivExchange
from .exchange import OkxError

if TYPE_CHECKING:
    from .rest import _Ctx, _Handler, _Payload

__all__ = ["DERIV_ROUTES"]

# Top-level codes answered with HTTP 400 besides those of rest._STATUS ([set leverage]: 59105).
_EXTRA_400 = ("59105",)


def _ex(ctx: _Ctx) -> DerivExchange:
    ex = ctx.fake.exchange
    assert isinstance(ex, DerivExchange)
    return ex


def _limited(handler: _Handler) -> _Handler:
    """Count the request in ``deriv_rate_limits`` (by the last path segment) before ``handler``."""

    def run(ctx: _Ctx) -> _Payload:
        ex = _ex(ctx)
        if not ex.rate_ok(ctx.path.rsplit("/", 1)[-1]):
            raise OkxError("50011", ex.msg("50011"))
        return handler(ctx)

    return run


def _ok(data: list[object]) -> _Payload:
    return 200, {"code": "0", "msg": "", "data": data}


def _top_error(ctx: _Ctx, exc: OkxError) -> _Payload:
    from .rest import _error

    status, payload = _error(ctx.fake, exc)
    return (400 if exc.code in _EXTRA_400 else status), payload


def _body(ctx: _Ctx) -> dict[str, object]:
    if not isinstance(ctx.body, dict):
        raise OkxError("51000", "Parameter body error")
    return ctx.body


def _config(ctx: _Ctx) -> _Payload:
    """[get account configuration]."""
    return _ok([_ex(ctx).account.record(ctx.fake.uid)])


def _set_position_mode(ctx: _Ctx) -> _Payload:
    """[set position mode]; 59000 when positions or pending orders exist."""
    body = _body(ctx)
    if body.get("posMode") in (None, ""):
        raise OkxError("50014", "Parameter posMode can not be empty")
    return _ok([_ex(ctx).set_position_mode(body["posMode"])])


def _set_leverage(ctx: _Ctx) -> _Payload:
    """[set leverage / leverage info]."""
    try:
        return _ok([_ex(ctx).set_leverage(_body(ctx))])
    except OkxError as exc:
        return _top_error(ctx, exc)


def _leverage_info(ctx: _Ctx) -> _Payload:
    """[set leverage / leverage info]: instId up to 20 comma-separated, mgnMode required."""
    inst_ids = [i for i in ctx.query.get("instId", "").split(",") if i]
    mgn_mode = ctx.query.get("mgnMode", "")
    if not inst_ids:
        raise OkxError("50014", "Parameter instId can not be empty")
    if not mgn_mode:
        raise OkxError("50014", "Parameter mgnMode can not be empty")
    if mgn_mode not in ("cross", "isolated"):
        raise OkxError("51000", "Parameter mgnMode error")
    if len(inst_ids) > 20:
        raise OkxError("51000", "Parameter instId error")
    return _ok(list(_ex(ctx).leverage_info(inst_ids, mgn_mode)))


def _positions(ctx: _Ctx) -> _Payload:
    """§2.10: non-zero positions (pos "0" rows only with ``rest_zero_positions``)."""
    return _ok(list(_ex(ctx).positions_query(ctx.query)))


def _bills(ctx: _Ctx) -> _Payload:
    """[bills]: the last 7 days, newest first."""
    return _ok(list(_ex(ctx).bills_query(ctx.query)))


def _bills_archive(ctx: _Ctx) -> _Payload:
    """[bills]: the last 3 months, newest first."""
    return _ok(list(_ex(ctx).bills_query(ctx.query, archive=True)))


def _close_position(ctx: _Ctx) -> _Payload:
    """[close positions]: no ordId in the answer."""
    return _ok([_ex(ctx).close_position(_body(ctx))])


def _orders_history(ctx: _Ctx) -> _Payload:
    """§2.7 orders-history: instType required."""
    if not ctx.query.get("instType"):
        raise OkxError("50014", "Parameter instType can not be empty")
    return _ok(list(_ex(ctx).orders_history(ctx.query)))


def _deriv_inst(ctx: _Ctx, name: str = "instId") -> str:
    inst_id = ctx.query.get(name, "")
    if not inst_id:
        raise OkxError("50014", f"Parameter {name} can not be empty")
    ex = _ex(ctx)
    if inst_id not in ex.instruments or not ex.is_deriv(inst_id):
        raise OkxError("51001", ex.msg("51001"))
    return inst_id


def _mark_price(ctx: _Ctx) -> _Payload:
    """[mark price channel]: instType required; instId optional."""
    ex = _ex(ctx)
    inst_type = ctx.query.get("instType", "")
    if not inst_type:
        raise OkxError("50014", "Parameter instType can not be empty")
    items = []
    for inst_id, inst in ex.instruments.items():
        if inst.record.get("instType") != inst_type:
            continue
        if ctx.query.get("instId") and ctx.query["instId"] != inst_id:
            continue
        item = ex.mark_item(inst_id)
        if item is not None:
            items.append(item)
    return _ok(list(items))


def _funding_rate(ctx: _Ctx) -> _Payload:
    """[funding rate]: one item for instId (or every funded instrument for ``ANY``)."""
    ex = _ex(ctx)
    if ctx.query.get("instId") == "ANY":
        return _ok([ex.funding_item(i) for i in ex.funding if i in ex.instruments])
    inst_id = _deriv_inst(ctx)
    if inst_id not in ex.funding:
        raise OkxError("51001", ex.msg("51001"))
    return _ok([ex.funding_item(inst_id)])


def _funding_history(ctx: _Ctx) -> _Payload:
    """[funding rate]: newest first, limit <= 400."""
    ex = _ex(ctx)
    inst_id = _deriv_inst(ctx)
    if inst_id not in ex.funding:
        raise OkxError("51001", ex.msg("51001"))
    rows = list(reversed(ex.funding[inst_id].history))
    try:
        limit = max(1, min(400, int(ctx.query.get("limit") or 400)))
    except ValueError:
        limit = 400
    return _ok(list(rows[:limit]))


def _price_limit(ctx: _Ctx) -> _Payload:
    """[price limit]."""
    return _ok([_ex(ctx).price_limit_item(_deriv_inst(ctx))])


DERIV_ROUTES: dict[tuple[str, str], tuple[bool, _Handler]] = {
    ("GET", "/api/v5/account/config"): (True, _limited(_config)),
    ("POST", "/api/v5/account/set-position-mode"): (True, _limited(_set_position_mode)),
    ("POST", "/api/v5/account/set-leverage"): (True, _limited(_set_leverage)),
    ("GET", "/api/v5/account/leverage-info"): (True, _limited(_leverage_info)),
    ("GET", "/api/v5/account/positions"): (True, _limited(_positions)),
    ("GET", "/api/v5/account/bills"): (True, _limited(_bills)),
    ("GET", "/api/v5/account/bills-archive"): (True, _limited(_bills_archive)),
    ("POST", "/api/v5/trade/close-position"): (True, _limited(_close_position)),
    ("GET", "/api/v5/trade/orders-history"): (True, _limited(_orders_history)),
    ("GET", "/api/v5/public/mark-price"): (False, _mark_price),
    ("GET", "/api/v5/public/funding-rate"): (False, _funding_rate),
    ("GET", "/api/v5/public/funding-rate-history"): (False, _funding_history),
    ("GET", "/api/v5/public/price-limit"): (False, _price_limit),
}
