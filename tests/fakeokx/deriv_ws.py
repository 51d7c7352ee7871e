"""WebSocket channels of derivatives on the fake OKX ([private channels], [public data]).

Public (``/ws/v5/public``): ``mark-price``, ``funding-rate``, ``price-limit`` ([mark price channel]-6.3), each
pushing the current value right after the ack when there is one.  Private (``/ws/v5/private``, login
first): ``positions`` (paged ``snapshot`` on subscribe, then ``event_update`` rows, [positions channel]),
``balance_and_position`` (``snapshot`` in ``data[0].eventType``, [balance and position channel])
and ``liquidation-warning`` ([position risk warning channel]).  ``ws.py`` hands every subscribe /
unsubscribe arg of these channels to ``subscribe`` here;
the fan-out of later pushes is in ``deriv_server.DerivControls``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ws import WsConn

__all__ = ["CHANNELS", "DerivSubs", "matches", "subscribe"]

PUBLIC_CHANNELS = ("mark-price", "funding-rate", "price-limit")
PRIVATE_CHANNELS = ("positions", "balance_and_position", "liquidation-warning")
CHANNELS = (*PUBLIC_CHANNELS, *PRIVATE_CHANNELS, "fills")
_INST_TYPES = ("MARGIN", "SWAP", "FUTURES", "OPTION", "EVENTS", "ANY")


@dataclass
class DerivSubs:
    """The derivative subscriptions of one connection."""

    public: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (channel, instId) -> arg
    positions: list[dict[str, Any]] = field(default_factory=list)
    bap: dict[str, Any] | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def has(self, channel: str) -> bool:
        if channel == "positions":
            return bool(self.positions)
        if channel == "balance_and_position":
            return self.bap is not None
        return bool(self.warnings)


def _error(conn: WsConn, req_id: Any, code: str, msg: str) -> dict[str, Any]:
    event: dict[str, Any] = {} if req_id is None else {"id": req_id}
    event.update({"event": "error", "code": code, "msg": msg, "connId": conn.conn_id})
    return event


def matches(arg: dict[str, Any], inst_type: str, inst_id: str, family: str) -> bool:
    """Does a positions / liquidation-warning arg select this instrument (instId wins over family)?"""
    if arg.get("instType") not in ("ANY", inst_type):
        return False
    if arg.get("instId"):
        return bool(arg["instId"] == inst_id)
    if arg.get("instFamily"):
        return bool(arg["instFamily"] == family)
    return True


def _check(conn: WsConn, arg: dict[str, Any]) -> tuple[str, str] | None:
    ex = conn.fake.exchange
    channel = arg["channel"]
    inst_id = arg.get("instId", "")

    def not_found() -> tuple[str, str]:
        return (
            "60018",
            f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. "
            "Please use the correct URL, channel and parameters referring to API document.",
        )

    if channel in PUBLIC_CHANNELS:
        if conn.kind != "public":
            return not_found()
        if not inst_id:
            return "60013", f"Invalid args: {json.dumps(arg, separators=(',', ':'))}"
        if inst_id not in ex.instruments or not ex.is_deriv(inst_id):
            return not_found()
        if channel == "funding-rate" and inst_id not in ex.funding:
            return not_found()  # dated futures pay no funding (X-Perps aside, [funding rate])
        return None
    if conn.kind != "private":
        return not_found()
    if not conn.logged_in:
        return "60011", "Please log in"
    if channel == "fills":
        # [fills channel]: VIP4 and above only; the fake account is VIP0
        return "64003", "Your trading fee tier doesn't meet the requirement to access this channel"
    if channel in ("positions", "liquidation-warning"):
        if arg.get("instType") not in _INST_TYPES:
            return "60013", f"Invalid args: {json.dumps(arg, separators=(',', ':'))}"
        if inst_id and inst_id not in ex.instruments:
            return not_found()
    return None


def subscribe(conn: WsConn, op: str, req_id: Any, arg: dict[str, Any]) -> list[Any]:
    """Answer one subscribe / unsubscribe arg of a derivative channel (ack, counts, first data)."""
    fake = conn.fake
    ex = fake.exchange
    error = _check(conn, arg)
    if error is not None:
        return [_error(conn, req_id, *error)]
    subs = fake.deriv_subs(conn)
    channel = arg["channel"]
    ack: dict[str, Any] = {} if req_id is None else {"id": req_id}
    ack.update({"event": op, "arg": arg, "connId": conn.conn_id})
    out: list[Any] = [ack]
    if op == "unsubscribe":
        if channel in PUBLIC_CHANNELS:
            subs.public.pop((channel, arg["instId"]), None)
        elif channel == "positions":
            subs.positions = [a for a in subs.positions if a != arg]
        elif channel == "balance_and_position":
            subs.bap = None
        else:
            subs.warnings = [a for a in subs.warnings if a != arg]
        return out
    if channel in PUBLIC_CHANNELS:
        inst_id = arg["instId"]
        canonical = {"channel": channel, "instId": inst_id}
        subs.public[(channel, inst_id)] = canonical
        if channel == "mark-price":
            first = ex.mark_item(inst_id)
        elif channel == "price-limit":
            first = ex.price_limit_item(inst_id)
        else:
            first = ex.funding_item(inst_id)
        if first is not None:
            out.append({"arg": canonical, "data": [first]})
        return out
    # §4.5: 30 connections per channel per sub-account; the count event follows the ack.
    if channel == "positions":
        if arg not in subs.positions:
            subs.positions.append(dict(arg))
    elif channel == "balance_and_position":
        subs.bap = {"channel": "balance_and_position"}
    elif arg not in subs.warnings:
        subs.warnings.append(dict(arg))
    count = sum(1 for c in fake.connections("private") if fake.deriv_subs(c).has(channel))
    out.append(
        {"event": "channel-conn-count", "channel": channel, "connCount": str(count), "connId": conn.conn_id}
    )
    if channel == "positions":
        out.extend(fake.positions_snapshot(arg))
        fake.start_periodic_positions(conn, arg)
    elif channel == "balance_and_position":
        out.append(fake.bap_snapshot())
    return out
