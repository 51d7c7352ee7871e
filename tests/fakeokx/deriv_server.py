"""The derivative half of ``FakeOkx``: test controls and the fan-out of derivative pushes.

``FakeOkx`` inherits ``DerivControls``.  The controls (``set_mark_price``, ``settle_funding``,
``liquidate``, ``adl``, ``deliver``, ``order_by_hand``, ``set_price_limit``, ``set_funding_rate``,
``send_liquidation_warning``, ``account``...) drive ``DerivExchange`` (``derivs.py``); the engine
calls back the ``DerivSink`` methods here, which push to the subscribed connections
(``deriv_ws.py`` keeps the subscriptions).  Numbers may be given as str, float or Decimal.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import trio

from .deriv_ws import DerivSubs, matches
from .derivs import AccountConfig, DerivExchange, DerivOrder

if TYPE_CHECKING:
    from .ws import WsConn

__all__ = ["DerivControls"]


def _dec(value: float | str | Decimal | None) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


class DerivControls:
    """Mixin of FakeOkx (see the module docstring).  Needs ``exchange``, ``uid``, ``_conns`` and
    ``private_pushes_paused`` from FakeOkx."""

    exchange: DerivExchange
    uid: str
    _conns: set[WsConn]
    _nursery: trio.Nursery | None
    private_pushes_paused: bool

    def _init_derivs(self) -> None:
        self._deriv_subs: dict[WsConn, DerivSubs] = {}
        # observation: every item generated (also while private pushes are paused)
        self.position_pushes: list[dict[str, Any]] = []  # positions rows (event_update)
        self.bap_pushes: list[dict[str, Any]] = []  # balance_and_position data[0] items
        self.public_deriv_pushes: list[tuple[str, dict[str, Any]]] = []  # (channel, item)
        # [account channel]: the account channel pushes an initial snapshot (False: the older reading, §9)
        self.account_snapshot = True
        # [positions channel]: periodic snapshots (updateInterval "2000"/"3000"/"4000" ms, ~5 s when
        # omitted, none for "0").  Off by default (CHOICE: tests see event pushes only); True turns them on.
        self.positions_periodic = False

    # ------------------------------------------------------------------ observation

    @property
    def account(self) -> AccountConfig:
        """The account configuration (acct_lv, pos_mode, ...): assign fields to change it."""
        return self.exchange.account

    @property
    def bills(self) -> list[dict[str, Any]]:
        return list(self.exchange.bills)

    def positions(self) -> list[dict[str, Any]]:
        """Open positions as REST rows (§2.10)."""
        return self.exchange.positions_query({})

    def position(self, inst_id: str, pos_side: str = "net", mgn_mode: str = "cross") -> dict[str, Any] | None:
        pos = self.exchange.positions.get((inst_id, mgn_mode, pos_side))
        return self.exchange.position_row(pos) if pos is not None else None

    def deriv_subs(self, conn: WsConn) -> DerivSubs:
        subs = self._deriv_subs.get(conn)
        if subs is None:
            subs = self._deriv_subs[conn] = DerivSubs()
        return subs

    def _live_subs(self) -> list[tuple[WsConn, DerivSubs]]:
        return [(c, s) for c, s in self._deriv_subs.items() if c in self._conns]

    # ------------------------------------------------------------------ controls

    def set_mark_price(
        self, inst_id: str, mark_px: float | str | Decimal, index_px: float | str | Decimal | None = None
    ) -> None:
        """Set the mark (and index) price; pushes mark-price and price-limit (the band follows the mark)."""
        mark = _dec(mark_px)
        assert mark is not None
        self.exchange.set_mark(inst_id, mark, _dec(index_px))

    def set_price_limit(
        self,
        inst_id: str,
        buy: float | str | Decimal | None,
        sell: float | str | Decimal | None,
        *,
        enabled: bool = True,
    ) -> None:
        """Fix buyLmt / sellLmt (instead of the band around the mark); pushes price-limit."""
        self.exchange.set_price_limit(inst_id, _dec(buy), _dec(sell), enabled)

    def set_funding_rate(
        self, inst_id: str, rate: float | str | Decimal, *, interval_h: int | None = None
    ) -> None:
        """The predicted rate of the next settlement (and the interval); pushes funding-rate."""
        value = _dec(rate)
        assert value is not None
        interval = interval_h * 3600 * 1000 if interval_h is not None else None
        self.exchange.set_funding_rate(inst_id, value, interval)

    def settle_funding(self, inst_id: str, rate: float | str | Decimal | None = None) -> list[dict[str, Any]]:
        """A funding settlement now ([funding, liquidation, ADL, delivery]); returns its bills (type 8)."""
        return self.exchange.settle_funding(inst_id, _dec(rate))

    def liquidate(
        self,
        inst_id: str,
        *,
        pos_side: str = "",
        mgn_mode: str | None = None,
        sz: float | str | Decimal | None = None,
        px: float | str | Decimal | None = None,
    ) -> dict[str, Any]:
        """Liquidate one position (all of it, or ``sz`` contracts: partial) at ``px`` (default mark).
        Returns the liquidation order (REST shape)."""
        order = self.exchange.forced_close(
            inst_id, "liquidation", pos_side=pos_side, mgn_mode=mgn_mode, sz=_dec(sz), px=_dec(px)
        )
        return self.exchange.order_rest(order)

    def adl(
        self,
        inst_id: str,
        *,
        pos_side: str = "",
        mgn_mode: str | None = None,
        sz: float | str | Decimal | None = None,
        px: float | str | Decimal | None = None,
    ) -> dict[str, Any]:
        """Auto-deleverage one position (all, or ``sz`` contracts) at ``px`` (default mark)."""
        order = self.exchange.forced_close(
            inst_id, "adl", pos_side=pos_side, mgn_mode=mgn_mode, sz=_dec(sz), px=_dec(px)
        )
        return self.exchange.order_rest(order)

    def deliver(self, inst_id: str, px: float | str | Decimal | None = None) -> list[dict[str, Any]]:
        """Deliver a dated future now at ``px`` (default mark); returns the bills (type 3)."""
        return self.exchange.deliver(inst_id, _dec(px))

    def order_by_hand(
        self,
        inst_id: str,
        side: str,
        sz: float | str | Decimal,
        px: float | str | Decimal,
        *,
        td_mode: str = "cross",
        pos_side: str | None = None,
    ) -> dict[str, Any]:
        """An order from outside the API (web UI, another program), filled at once at ``px``:
        opens / changes a position seqtrade did not place.  Returns the order (REST shape)."""
        size, price = _dec(sz), _dec(px)
        assert size is not None and price is not None
        order: DerivOrder = self.exchange.order_by_hand(
            inst_id, side, size, price, td_mode=td_mode, pos_side=pos_side
        )
        return self.exchange.order_rest(order)

    def send_liquidation_warning(
        self, inst_id: str, *, pos_side: str = "", mgn_mode: str | None = None
    ) -> int:
        """Push liquidation-warning items for the matching open positions; returns how many."""
        items = self.exchange.liquidation_warning_items(inst_id, pos_side, mgn_mode)
        if items:
            self.liquidation_warning(items)
        return len(items)

    # ------------------------------------------------------------------ snapshots (on subscribe)

    def positions_snapshot(self, arg: dict[str, Any]) -> list[dict[str, Any]]:
        """[positions channel]: non-zero positions matching ``arg`` in pages (curPage int, lastPage bool)."""
        ex = self.exchange
        rows = [
            ex.position_row(p)
            for p in ex.positions.values()
            if p.pos != 0
            and matches(arg, p.inst.record["instType"], p.inst.inst_id, ex.inst_family(p.inst.inst_id))
        ]
        size = max(1, ex.positions_page_size)
        pages = [rows[i : i + size] for i in range(0, len(rows), size)] or [[]]
        return [
            {
                "arg": {**arg, "uid": self.uid},
                "eventType": "snapshot",
                "curPage": n + 1,
                "lastPage": n == len(pages) - 1,
                "data": page,
            }
            for n, page in enumerate(pages)
        ]

    def account_snapshot_message(self, arg: dict[str, Any]) -> dict[str, Any]:
        """[account channel]: top-level eventType "snapshot" with curPage / lastPage."""
        record = self.exchange.balance_record()
        return {"arg": arg, "eventType": "snapshot", "curPage": 1, "lastPage": True, "data": [record]}

    def start_periodic_positions(self, conn: WsConn, arg: dict[str, Any]) -> None:
        """With ``positions_periodic``: push the snapshot of ``arg`` every updateInterval while the
        subscription lasts."""
        if not self.positions_periodic or self._nursery is None:
            return
        try:
            extra = json.loads(arg.get("extraParams") or "{}")
        except ValueError:
            extra = {}
        interval = str(extra.get("updateInterval", "")) if isinstance(extra, dict) else ""
        if interval == "0":
            return
        seconds = int(interval) / 1000 if interval in ("2000", "3000", "4000") else 5.0
        self._nursery.start_soon(self._periodic_positions, conn, dict(arg), seconds)

    async def _periodic_positions(self, conn: WsConn, arg: dict[str, Any], seconds: float) -> None:
        while True:
            await trio.sleep(seconds)
            if conn not in self._conns or arg not in self.deriv_subs(conn).positions:
                return
            if not self.private_pushes_paused:
                for page in self.positions_snapshot(arg):
                    conn.send_json(page, activity=True)

    def bap_snapshot(self) -> dict[str, Any]:
        """[balance and position channel]: non-zero balances and positions, ``eventType`` inside data[0]."""
        ex = self.exchange
        item = {
            "pTime": str(ex.now_ms()),
            "eventType": "snapshot",
            "balData": [ex.bal_data(c) for c, b in sorted(ex.balances.items()) if b.cash != 0],
            "posData": [ex.pos_data(p) for p in ex.positions.values() if p.pos != 0],
            "trades": [],
        }
        return {"arg": {"channel": "balance_and_position", "uid": self.uid}, "data": [item]}

    # ------------------------------------------------------------------ DerivSink (called by the engine)

    def position_rows(self, rows: list[dict[str, Any]]) -> None:
        self.position_pushes.extend(rows)
        if self.private_pushes_paused:
            return
        ex = self.exchange
        for conn, subs in self._live_subs():
            if not conn.logged_in:
                continue
            for arg in subs.positions:
                mine = [
                    r for r in rows if matches(arg, r["instType"], r["instId"], ex.inst_family(r["instId"]))
                ]
                if mine:
                    message = {"arg": {**arg, "uid": self.uid}, "eventType": "event_update", "data": mine}
                    conn.send_json(message, activity=True)

    def balance_and_position(self, item: dict[str, Any]) -> None:
        self.bap_pushes.append(item)
        if self.private_pushes_paused:
            return
        for conn, subs in self._live_subs():
            if subs.bap is not None and conn.logged_in:
                arg = {"channel": "balance_and_position", "uid": self.uid}
                conn.send_json({"arg": arg, "data": [item]}, activity=True)

    def deriv_public(self, channel: str, inst_id: str, item: dict[str, Any]) -> None:
        self.public_deriv_pushes.append((channel, item))
        for conn, subs in self._live_subs():
            arg = subs.public.get((channel, inst_id))
            if arg is not None:
                conn.send_json({"arg": arg, "data": [item]}, activity=True)

    def liquidation_warning(self, items: list[dict[str, Any]]) -> None:
        if self.private_pushes_paused:
            return
        ex = self.exchange
        for conn, subs in self._live_subs():
            for arg in subs.warnings:
                mine = [
                    i for i in items if matches(arg, i["instType"], i["instId"], ex.inst_family(i["instId"]))
                ]
                if mine:
                    conn.send_json({"arg": {**arg, "uid": self.uid}, "data": mine}, activity=True)
