"""The guard: trading states, the venue's dead-man's switch and the accounts' reconciliation.

The risk gate and the accounts are the engine's (:mod:`seqtrade.server.engine` checks every order with
them and feeds them every journaled report); the guard owns what happens around them: the
``halt``/``reduce``/``resume`` control commands, the guard's part of ``status``, and one task
(:meth:`Guard.run`) that keeps the venue's cancel-all-after armed and reconciles the accounts with the
venue's positions. Trading states are kept in the journal's meta table, so a halt survives a restart.

The two dead-man's switches:

- a strategy whose heartbeats stop is handled by ``server.dead_strategy_policy`` (the engine's
  :meth:`~seqtrade.server.engine.Engine.on_strategy_dead`): its open orders are cancelled (``cancel``)
  or left (``leave``);
- the server itself: :func:`run_venue_switch` re-arms the venue's cancel-all-after every third of
  ``server.cancel_all_after`` seconds, so that if the server or its network dies, the exchange cancels
  our orders. A clean stop disarms it (:meth:`Guard.stop`), so that ``shutdown_policy = "leave"``
  really leaves the orders.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

import trio

from ..config import STRATEGY_ID_RE, Config
from ..models import AccountEventKind
from ..venues import venue_class
from ..venues.base import Venue, VenueAccountEvent, VenuePosition
from .accounts import Accounts, Mismatch
from .control import ControlCommands
from .journal import Journal
from .orders import OrderRecord
from .positions import EXTERNAL
from .risk import RiskGate, TradingState


class EventSink(Protocol):
    async def account_event(self, event: VenueAccountEvent) -> None: ...


__all__ = ["Guard", "format_guard_status", "run_venue_switch", "venue_switch_timeout"]

log = logging.getLogger(__name__)

_STATES_KEY = "risk.trading_states"
RECONCILE_SETTLE = 1.0  # seconds: a mismatch must still be there this much later to be reported


def venue_switch_timeout(config: Config) -> float:
    """The cancel-all-after timeout the server keeps armed (0: the server does not).

    ``server.cancel_all_after`` if set; otherwise the venue's ``default_cancel_all_after``.
    """
    if config.server.cancel_all_after is not None:
        return config.server.cancel_all_after
    return venue_class(config.venue.kind).default_cancel_all_after


async def run_venue_switch(
    venue: Venue, timeout: float, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Arm the venue's cancel-all-after for ``timeout`` s, then re-arm it every ``timeout / 3`` s.

    Owns nothing but the refresh timer. Cancelled with the server; cancellation does not disarm it
    (that is the point: the exchange cancels our orders if nobody refreshes). Backpressure: a slow
    venue call delays the next refresh by as much; the margin of two thirds of the timeout absorbs it.
    """
    await venue.cancel_all_after(timeout)
    log.info(
        "venue %s: cancel-all-after armed (%g s), refreshed every %g s", venue.name, timeout, timeout / 3
    )
    task_status.started()
    while True:
        await trio.sleep(timeout / 3)
        await venue.cancel_all_after(timeout)


class Guard:
    """Trading states, the venue's switch and reconciliation around one gate and its accounts. Built by ``serve``."""

    def __init__(
        self,
        config: Config,
        venue: Venue,
        journal: Journal,
        gate: RiskGate,
        accounts: Accounts,
        in_flight: Callable[[], list[OrderRecord]] = list,
        sink: EventSink | None = None,
        marks: dict[str, float] | None = None,
    ) -> None:
        """``in_flight``: the orders open as the server sees them (the engine's ``open_records``);
        ``sink``: where adjustments of the ``external`` account go (the gateway's report stage)."""
        self.config = config
        self.venue = venue
        self.journal = journal
        self.gate = gate
        self.accounts = accounts
        self.in_flight = in_flight
        self.sink = sink
        self.marks = marks if marks is not None else {}  # symbol -> the venue's mark price (status)
        self._adjusted = False  # the first reconciliation after start took what remained as external
        self.mismatch_since: dict[str, int] = {}  # symbol -> when (ms) its mismatch was first seen
        self.venue_positions: dict[str, float] = {}  # the venue's, as of the last reconciliation
        self.venue_details: list[VenuePosition] = []
        self._load_states()
        self.switch_timeout = venue_switch_timeout(config)
        self._switch_armed = False

    # ------------------------------------------------------------------ tasks

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the venue's dead-man's switch armed and reconcile the accounts with the venue.

        Owns the refresh timer and the reconciliation timer (``risk.reconcile_interval``, first check
        at start). Cancelled with the server. Reports ``started`` once the switch is armed.
        """
        async with trio.open_nursery() as nursery:
            if self.switch_timeout > 0:
                await nursery.start(run_venue_switch, self.venue, self.switch_timeout)
                self._switch_armed = True
            if self.config.risk.reconcile_interval > 0:
                nursery.start_soon(self._reconcile_loop)
            task_status.started()

    async def stop(self) -> None:
        """On a clean stop: disarm the venue's switch (the shutdown policy has done its work)."""
        if self._switch_armed:
            await self.venue.cancel_all_after(0)
            self._switch_armed = False
            log.info("venue %s: cancel-all-after disarmed", self.venue.name)

    async def _reconcile_loop(self) -> None:
        while True:
            await self.reconcile()
            await trio.sleep(self.config.risk.reconcile_interval)

    async def reconcile(self) -> list[str]:
        """Per instrument, the strategies' positions plus ``external`` must equal the venue's; a WARNING
        per instrument that disagrees, with by how much and since when.

        A fill on its way is not a mismatch: a difference within what the orders open when the venue
        was asked may still fill is not one (their fills may be done at the venue, their reports not
        yet applied), and a difference must survive ``RECONCILE_SETTLE`` seconds. The first check after
        start (every order of ours resolved, every venue event replayed) takes a position in an
        instrument that no strategy and no external trade ever touched as the ``external`` account's
        (it predates seqtrade): an ``adjustment`` event, journaled, logged. Positions traded outside
        seqtrade while it runs reach ``external`` through the venue's own events. Any other difference
        is a mismatch, and with
        ``venue.derivatives.on_mismatch = "reducing"`` the strategies holding the instrument go to
        ``reducing``. Returns the warnings. Venues that cannot tell their positions are skipped.
        """
        tol = self.config.risk.reconcile_tolerance
        positions, in_flight = await self._positions()
        if positions is None:
            log.debug("venue %s does not report positions: reconciliation skipped", self.venue.name)
            return []
        only = self.venue.position_symbols()
        if not self.accounts.mismatches(positions, tol, in_flight, only):
            self._resolved(set())
            self._adjusted = True
            return []
        await trio.sleep(RECONCILE_SETTLE)
        positions, in_flight = await self._positions()
        found = self.accounts.mismatches(positions or {}, tol, in_flight, only)
        if not self._adjusted and self.sink is not None:
            # A position in an instrument no strategy ever traded predates seqtrade: external.
            fresh = [m for m in found if not self.accounts.ever_held(m.symbol)]
            await self._adjust(fresh)
            found = [m for m in found if m not in fresh]
        self._adjusted = True
        self._resolved({m.symbol for m in found})
        now = int(time.time() * 1000)
        warnings = []
        for m in found:
            since = self.mismatch_since.setdefault(m.symbol, now)
            warnings.append(
                f"position mismatch in {m.symbol}: the strategies and external hold {m.strategies:g} in total, "
                f"the venue {self.venue.name} holds {m.venue:g} (off by {m.venue - m.strategies:+g}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(since / 1000))} UTC)"
            )
        for w in warnings:
            log.warning("%s", w)
        if found and self.config.venue.derivatives.on_mismatch == "reducing":
            self._reduce_holders(found)
        return warnings

    async def _adjust(self, found: list[Mismatch]) -> None:
        assert self.sink is not None
        now = int(time.time() * 1000)
        for m in found:
            diff = m.venue - m.strategies
            log.warning("external position in %s: %+g (the venue holds %g, the strategies %g): taken into the "
                        "'external' account (traded outside seqtrade)", m.symbol, diff, m.venue, m.strategies)  # fmt: skip
            await self.sink.account_event(
                VenueAccountEvent(
                    AccountEventKind.ADJUSTMENT, m.symbol, f"adjust:{m.symbol}:{now}", quantity=diff, ts=now
                )  # fmt: skip
            )

    def _resolved(self, still: set[str]) -> None:
        for sym in [s for s in self.mismatch_since if s not in still]:
            log.warning("position mismatch in %s resolved", sym)
            del self.mismatch_since[sym]

    def _reduce_holders(self, found: list[Mismatch]) -> None:
        for m in found:
            for sid in sorted(self.accounts.holders(m.symbol)):
                if sid != EXTERNAL and self.gate.state_of(sid)[0] is TradingState.ACTIVE:
                    log.warning(
                        "strategy %s holds %s, which does not reconcile: moved to reducing", sid, m.symbol
                    )
                    self.set_state(TradingState.REDUCING, sid)

    async def _positions(self) -> tuple[dict[str, float] | None, list[OrderRecord]]:
        """The venue's positions, and every order that may have a fill in them not yet in the books:
        those open before the venue was asked and those open after (sent while it answered)."""
        before = self.in_flight()
        positions = await self.venue.positions()
        if positions is not None:
            self.venue_positions = dict(positions)
            self.venue_details = await self.venue.position_details() or []
        seen = {id(r) for r in before}
        return positions, before + [r for r in self.in_flight() if id(r) not in seen]

    # ------------------------------------------------------------------ trading states and commands

    def _load_states(self) -> None:
        raw = self.journal.get_meta(_STATES_KEY)
        if raw is None:
            return
        saved = json.loads(raw)
        self.gate.set_state(TradingState(saved["global"]))
        for sid, state in saved["strategies"].items():
            self.gate.set_state(TradingState(state), sid)
        if self.gate.global_state is not TradingState.ACTIVE or self.gate.strategy_states:
            log.warning("trading states from the journal: %s", self._states_line())

    def _save_states(self) -> None:
        data = {"global": str(self.gate.global_state),
                "strategies": {k: str(v) for k, v in self.gate.strategy_states.items()}}  # fmt: skip
        self.journal.set_meta(_STATES_KEY, json.dumps(data))

    def _states_line(self) -> str:
        own = "; ".join(f"{sid} {st}" for sid, st in sorted(self.gate.strategy_states.items()))
        return f"global {self.gate.global_state}" + (f"; {own}" if own else "")

    def set_state(self, state: TradingState, strategy_id: str | None) -> dict[str, Any]:
        """Change a trading state (a control command), persist it and log it."""
        if strategy_id is not None and not STRATEGY_ID_RE.match(strategy_id):
            raise ValueError(f"strategy id {strategy_id!r} must match [A-Za-z0-9_-]{{1,32}}")
        self.gate.set_state(state, strategy_id)
        self._save_states()
        log.warning(
            "trading state %s for %s (now: %s)", state, strategy_id or "every strategy", self._states_line()
        )
        return self.trading()

    def trading(self) -> dict[str, Any]:
        return {"global": str(self.gate.global_state),
                "strategies": {k: str(v) for k, v in sorted(self.gate.strategy_states.items())}}  # fmt: skip

    def status(self) -> dict[str, Any]:
        """Merged into the ``status`` command's answer."""
        return {
            "trading": self.trading(),
            "accounts": self.accounts.snapshot(self.marks),
            "cancel_all_after": self.switch_timeout if self._switch_armed else 0.0,
            "venue_positions": dict(self.venue_positions),
            "venue_details": [asdict(p) for p in self.venue_details],
            "venue_account": self.venue.account_summary() or {},
            "mismatches": dict(self.mismatch_since),
        }

    def register_commands(self, commands: ControlCommands) -> None:
        """``halt``, ``reduce`` and ``resume``, each with an optional ``strategy``."""
        for name, state in (("halt", TradingState.HALTED), ("reduce", TradingState.REDUCING),
                            ("resume", TradingState.ACTIVE)):  # fmt: skip
            commands.register(name, self._command(state))

    def _command(self, state: TradingState) -> Any:
        async def handler(req: dict[str, Any]) -> dict[str, Any]:
            sid = req.get("strategy")
            if sid is not None and not isinstance(sid, str):
                raise TypeError("'strategy' must be a string")
            return self.set_state(state, sid)

        return handler


def format_guard_status(st: dict[str, Any]) -> list[str]:
    """The human form of the guard's part of a ``status`` answer (trading states, accounts)."""
    lines: list[str] = []
    trading = st.get("trading")
    if trading is not None:
        own = "; ".join(f"{sid} {s}" for sid, s in trading["strategies"].items())
        lines.append(f"trading: global {trading['global']}" + (f"; {own}" if own else ""))
    caa = st.get("cancel_all_after")
    if caa is not None:
        lines.append(f"venue cancel-all-after: {f'{caa:g} s, kept armed' if caa else 'off'}")
    accounts = st.get("accounts")
    if accounts and accounts["strategies"]:
        lines.append(
            f"{'account':<20} {'symbol':<14} {'position':>12} {'avg price':>12} {'realised':>12} {'fees':>10}"
        )
        for sid, books in accounts["strategies"].items():
            for sym, b in books.items():
                lines.append(f"{sid:<20} {sym:<14} {b['position']:>12.6g} {b['avg_price']:>12.6g}"
                             f" {b['realized_pnl']:>12.2f} {b['fees']:>10.4f}")  # fmt: skip
        for sym, t in accounts["account"].items():
            lines.append(f"{'= account net':<20} {sym:<14} {t['position']:>12.6g} {'':>12}"
                         f" {t['realized_pnl']:>12.2f} {t['fees']:>10.4f}")  # fmt: skip
    lines += _derivative_lines(st)
    return lines


def _derivative_lines(st: dict[str, Any]) -> list[str]:
    """Exchange vs attributed positions, margin, liquidation price, PnL at mark and funding."""
    accounts = st.get("accounts") or {"strategies": {}, "account": {}}
    venue = st.get("venue_positions") or {}
    details = st.get("venue_details") or []
    funding = {(sid, sym): b for sid, books in accounts["strategies"].items()
               for sym, b in books.items() if b.get("funding") or b.get("currency")}  # fmt: skip
    if not details and not funding:
        return []
    lines = [f"{'exchange vs attributed':<24} {'symbol':<16} {'exchange':>10} {'attributed':>10} {'diff':>8}"]
    ours = {sym: t["position"] for sym, t in accounts["account"].items()}
    mism = st.get("mismatches") or {}
    for sym in sorted(set(venue) | set(ours)):
        ex, at = venue.get(sym, 0.0), ours.get(sym, 0.0)
        flag = "  MISMATCH" if sym in mism else ""
        lines.append(f"{'':<24} {sym:<16} {ex:>10.6g} {at:>10.6g} {ex - at:>+8.6g}{flag}")
    if details:
        lines.append(f"{'position':<24} {'symbol':<16} {'qty':>10} {'mark':>10} {'liq price':>10} {'margin ratio':>12} "
                     f"{'upl':>12} {'funding':>10} ccy")  # fmt: skip
        for d in details:
            name = f"account {d['pos_side'] or 'net'} {d['margin_mode']}".rstrip()
            lines.append(f"{name:<24} {d['symbol']:<16} {d['quantity']:>10.6g} {d['mark_price']:>10.6g}"
                         f" {d['liquidation_price']:>10.6g} {d['margin_ratio']:>12.4g} {d['unrealised_pnl']:>12.6g}"
                         f" {d['funding_paid']:>10.6g} {d['currency']}")  # fmt: skip
    venue_account = st.get("venue_account") or {}
    if venue_account:
        lines.append(
            f"{'exchange account':<24} {'ccy':<8} {'equity':>14} {'available':>14} {'upl':>12} {'margin ratio':>12}"
        )
        for ccy, a in sorted(venue_account.items()):
            ratio = a.get("margin_ratio")
            lines.append(f"{'':<24} {ccy:<8} {a.get('equity', 0.0):>14.8g} {a.get('available', 0.0):>14.8g}"
                         f" {a.get('unrealised_pnl', 0.0):>12.6g} {'' if ratio is None else f'{ratio:.4g}':>12}")  # fmt: skip
    ccys = accounts.get("currencies") or {}
    if any(c not in ("quote", "") for c in ccys):
        lines.append(f"{'account by currency':<24} {'ccy':<8} {'realised':>14} {'fees':>12} {'funding':>12}")
        for ccy, t in sorted(ccys.items()):
            lines.append(
                f"{'':<24} {ccy:<8} {t['realized_pnl']:>14.8g} {t['fees']:>12.6g} {t['funding']:>12.6g}"
            )
    if funding:
        lines.append(
            f"{'per strategy':<24} {'symbol':<16} {'position':>10} {'upl at mark':>12} {'funding':>12} ccy"
        )
        for (sid, sym), b in sorted(funding.items()):
            upl = b.get("unrealised_pnl")
            lines.append(f"{sid:<24} {sym:<16} {b['position']:>10.6g} {'' if upl is None else f'{upl:.6g}':>12}"
                         f" {b.get('funding', 0.0):>12.6g} {b.get('currency', '')}")  # fmt: skip
    return lines
