"""FakeOkx: the in-process fake OKX v5 exchange (REST on one port, WebSocket on another).

Owns one trio nursery (opened by ``open_fake_okx``) in which run: the HTTP listener
(``rest.py``), the WebSocket listener (``ws.py``), one task per connection, the delayed effects of
cancel/amend (§2.3, §8.7), stalled responses, and the cancel-all-after timers (§2.13).  Cancelling
the nursery (leaving the ``async with``) closes everything.

Pushes go into one bounded memory channel per WS connection; a connection whose buffer fills up is
closed with 4005 "buffer full" (§4.5) instead of blocking the exchange.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import trio

from . import rest, ws
from .auth import Credentials
from .books import FakeBooks, Fault
from .candles import FakeCandles
from .deriv_instruments import derivative_instruments
from .deriv_server import DerivControls
from .derivs import DerivExchange
from .exchange import CancelAllAfter
from .instruments import DEFAULT_INSTRUMENTS

__all__ = ["ClockRefusal", "FakeOkx", "RecordedRequest", "Stall", "open_fake_okx"]

DEFAULT_BALANCES = {"USDT": "100000", "BTC": "1", "ETH": "10"}
FAKE_UID = "614488474791936"  # the docs example uid (§5.6)


@dataclass
class RecordedRequest:
    """One request as received (for assertions in tests)."""

    transport: str  # "rest" | "ws"
    method: str  # HTTP method; "WS" for WebSocket messages
    path: str  # REST path without query / WS path
    op: str | None  # WS op ("login", "subscribe", "order", "ping", ...); None for REST
    body: Any  # parsed JSON (REST body / WS message); None if absent or unparsable
    ts: int  # exchange time (ms) at receipt
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    raw: str = ""  # raw request target + body (REST) or raw text (WS)
    conn_id: str = ""


@dataclass
class ClockRefusal:
    """A request refused for its timestamp or dropped for its deadline (for assertions in tests).

    ``kind``: ``"auth"`` -- a private REST request whose OK-ACCESS-TIMESTAMP was more than 30 s from
    the exchange clock (§1.5, top-level 50102, nothing processed); ``"login"`` -- a WS login whose
    timestamp was more than 30 s away (§4.3, 60006, then close 4001); ``"expTime"`` -- a place/amend
    dropped because the exchange clock was past its ``expTime`` (§1.2; per-item ``exp_time_code``).
    """

    code: str
    kind: str
    request: RecordedRequest


# §4.3: the login refusal that means "timestamp more than 30 s away" (60004 is a malformed one)
_LOGIN_CLOCK_CODES = ("60006",)


@dataclass
class Stall:
    """A pending ``stall_next``: the request is processed, its answer delayed / dropped / replaced."""

    target: str
    seconds: float
    drop: bool = False
    error_code: str | None = None
    hit: trio.Event = field(default_factory=trio.Event)

    def matches(self, transport: str, method: str, path: str, op: str | None) -> bool:
        if transport == "ws":
            return op is not None and self.target == op
        return self.target in (path, f"{method} {path}")


class FakeOkx(DerivControls):
    """A faithful-enough OKX v5 (spot and derivatives, demo account) for adapter tests.  See README.md."""

    def __init__(
        self,
        *,
        instruments: list[dict[str, Any]] | None,
        api_key: str,
        secret_key: str,
        passphrase: str,
        demo: bool,
        idle_timeout: float,
        clock_offset_ms: int,
        balances: dict[str, str] | None,
        host: str,
    ) -> None:
        self.credentials = Credentials(api_key, secret_key, passphrase, demo)
        self.idle_timeout = idle_timeout
        self.clock_offset_ms = clock_offset_ms
        self.host = host
        self.uid = FAKE_UID
        self.exchange = DerivExchange(
            list(
                instruments
                if instruments is not None
                else DEFAULT_INSTRUMENTS + derivative_instruments(self.now_ms())
            ),
            dict(balances if balances is not None else DEFAULT_BALANCES),
            uid=self.uid,
            now_ms=self.now_ms,
            mono=trio.current_time,
            sink=self,
        )
        # ---- knobs (README.md lists them all)
        self.private_pushes_paused = False
        self.duplicate_pushes = False
        self.effect_delay = 0.0  # seconds between a cancel/amend ack and its effect
        self.close_on_login_failure = True  # §4.3: close code 4001 after a failed login
        self.ws_login_allow_fraction = True  # §9: fractional-second login timestamps unverified
        self.ws_accept_inst_id = False  # §0: since 2026-02 WS ops need instIdCode; True = legacy
        self.ws_strict_inst_id_code_type = True  # §0/§6: instIdCode is an integer
        self.omit_data_codes = {"50011"}  # §1.5/§2.0: observed error bodies without "data"
        self.max_private_channel_conns = 30  # §4.5
        self.ws_queue_size = 10_000
        # ---- the books channel (§5.3; books.py): 400 levels a side, seqId chains, checksum 0 or CRC32
        self.book_feed = FakeBooks()
        self.books_silent = False  # a stale channel: no push at all (not even the snapshot on subscribe)
        self.book_subscribes: dict[
            str, int
        ] = {}  # books subscriptions per instId (resubscriptions show here)
        # ---- observation
        self.requests: list[RecordedRequest] = []
        self.clock_refusals: list[ClockRefusal] = []  # see ClockRefusal; filled by note_answers
        self.order_pushes: list[dict[str, Any]] = []  # every orders-channel item generated
        self.dropped_pushes: list[dict[str, Any]] = []  # generated while private_pushes_paused
        self.ws_connects: list[float] = []  # trio time of each WS connection accepted (§4.5: 3 / s / IP)
        self.rest_url = ""
        self.ws_public_url = ""
        self.ws_private_url = ""
        self.ws_business_url = ""
        self._stalls: list[Stall] = []
        self._lates: list[Stall] = []  # process_late_next
        self._conns: set[ws.WsConn] = set()
        self.candles = FakeCandles(conns=self._conns)  # candles.py: business candle channels and REST
        self._nursery: trio.Nursery | None = None
        self._caa_scopes: dict[str, trio.CancelScope] = {}
        self._conn_counter = 0
        self._init_derivs()

    # ------------------------------------------------------------------ clock

    def now_ms(self) -> int:
        """Exchange clock: wall clock + clock_offset_ms (§1.5)."""
        return int(time.time() * 1000) + int(self.clock_offset_ms)

    def step_clock(self, delta_ms: int) -> None:
        """Move the exchange clock by ``delta_ms`` (an NTP step at OKX, or at the client: §1.5).

        Requests signed with the old clock are then refused (50102 / 60006) until the client
        re-measures it with ``GET public/time``."""
        self.clock_offset_ms += delta_ms

    def note_answers(self, request: RecordedRequest, answers: list[Any]) -> None:
        """Record in ``clock_refusals`` each refusal among ``answers`` (the messages produced for
        ``request``: REST envelope, WS op answer or login event)."""
        for answer in answers:
            if not isinstance(answer, dict):
                continue
            code = str(answer.get("code", ""))
            if code == "50102" and request.transport == "rest":
                self.clock_refusals.append(ClockRefusal(code, "auth", request))
            elif code in _LOGIN_CLOCK_CODES and answer.get("event") == "error" and request.op == "login":
                self.clock_refusals.append(ClockRefusal(code, "login", request))
            elif any(
                isinstance(d, dict) and d.get("sCode") == self.exchange.exp_time_code
                for d in answer.get("data") or ()
            ):
                self.clock_refusals.append(ClockRefusal(self.exchange.exp_time_code, "expTime", request))

    # ------------------------------------------------------------------ knobs proxied to the engine

    @property
    def rate_limit_per_2s(self) -> int:
        return self.exchange.rate_limit_per_2s

    @rate_limit_per_2s.setter
    def rate_limit_per_2s(self, value: int) -> None:
        self.exchange.rate_limit_per_2s = value

    @property
    def rate_limit_batch_per_2s(self) -> int:
        return self.exchange.rate_limit_batch_per_2s

    @rate_limit_batch_per_2s.setter
    def rate_limit_batch_per_2s(self, value: int) -> None:
        self.exchange.rate_limit_batch_per_2s = value

    @property
    def messages(self) -> dict[str, str]:
        return self.exchange.messages

    # ------------------------------------------------------------------ observation helpers

    @property
    def orders(self) -> dict[str, dict[str, Any]]:
        """ordId -> order state (REST §2.6 shape: dict of OKX string fields).  A fresh copy."""
        return {oid: self.exchange.order_rest(o) for oid, o in self.exchange.orders.items()}

    def place_count(self, cl_ord_id: str) -> int:
        """How many orders with this clOrdId were accepted for placement."""
        return self.exchange.place_counts[cl_ord_id]

    @property
    def cancel_all_after_state(self) -> CancelAllAfter:
        """Account-level dead man's switch: timeout_s, trigger_time_ms (0 = off), deadline (trio
        time), fired_count, last_fired_ms."""
        return self.exchange.caa[""]

    @property
    def cancel_all_after_states(self) -> dict[str, CancelAllAfter]:
        """All switches by tag ("" = account level)."""
        return self.exchange.caa

    @property
    def rate_limited(self) -> list[tuple[str, str, float]]:
        """Every request refused with 50011: (bucket kind, instId or "", trio time at receipt)."""
        return list(self.exchange.rate_limited)

    @property
    def fills(self) -> list[dict[str, Any]]:
        return list(self.exchange.fills)

    def balance(self, ccy: str) -> dict[str, str]:
        bal = self.exchange.balance(ccy)
        return {"cash": str(bal.cash), "frozen": str(bal.frozen), "avail": str(bal.avail)}

    def connections(self, which: str = "all") -> list[ws.WsConn]:
        return [c for c in self._conns if which in ("all", c.kind)]

    # ------------------------------------------------------------------ scenario controls

    def set_market(
        self,
        inst_id: str,
        bid: float | str,
        ask: float | str,
        bid_sz: float | str = 1.0,
        ask_sz: float | str = 1.0,
    ) -> None:
        """Set the top of book; push tickers + books5; fill resting orders crossed by it."""
        inst = self.exchange.instruments[inst_id]
        d_bid = _to_dec(bid).quantize(inst.tick_sz, rounding=ROUND_FLOOR)
        d_ask = _to_dec(ask).quantize(inst.tick_sz, rounding=ROUND_CEILING)
        if d_ask <= d_bid:
            raise ValueError(f"crossed market: bid {d_bid} >= ask {d_ask}")
        self.exchange.set_market(
            inst_id,
            d_bid,
            d_ask,
            _to_dec(bid_sz).quantize(inst.lot_sz, rounding=ROUND_FLOOR),
            _to_dec(ask_sz).quantize(inst.lot_sz, rounding=ROUND_FLOOR),
        )

    def print_trade(self, inst_id: str, px: float | str, sz: float | str, side: str = "buy") -> None:
        """Push a public trade; fill resting orders priced through it, up to ``sz``."""
        inst = self.exchange.instruments[inst_id]
        self.exchange.print_trade(
            inst_id,
            _to_dec(px).quantize(inst.tick_sz),
            _to_dec(sz).quantize(inst.lot_sz, rounding=ROUND_FLOOR),
            side,
        )

    async def disconnect(
        self, which: str = "all", *, code: int = 1001, reason: str = "", abrupt: bool = False
    ) -> None:
        """Close the ``which`` ("public"/"private"/"business"/"all") WS connections now.

        ``abrupt=True`` drops the TCP connection without a close frame."""
        conns = self.connections(which)
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(conn.close_now, code, reason, abrupt)

    async def send_notice(self, which: str = "all") -> None:
        """Push the 64008 service-upgrade notice (§4.4) on the ``which`` connections."""
        for conn in self.connections(which):
            conn.send_json(
                {
                    "event": "notice",
                    "code": "64008",
                    "msg": "The connection will soon be closed for a service upgrade. Please reconnect.",
                    "connId": conn.conn_id,
                }
            )

    def stall_next(
        self, op_or_path: str, seconds: float, *, drop: bool = False, error_code: str | None = None
    ) -> Stall:
        """Delay the answer to the next request matching ``op_or_path`` by ``seconds`` (trio time).

        The request IS processed (an order IS placed); only its answer is late.  ``op_or_path`` is a
        WS op ("order", "cancel-order", ...) or a REST path ("/api/v5/trade/order", optionally
        prefixed by the method: "POST /api/v5/trade/order").  ``drop=True``: after the delay the
        connection is closed instead of answering (REST: TCP close; WS: abrupt close).
        ``error_code="50004"``: answer with that top-level error instead (§2.14 "endpoint request
        timeout -- outcome unknown").  Returns the Stall; ``await stall.hit.wait()`` to know when it
        was consumed.
        """
        stall = Stall(op_or_path, seconds, drop, error_code)
        self._stalls.append(stall)
        return stall

    def process_late_next(self, op: str, seconds: float) -> Stall:
        """The next WS request with ``op`` reaches the engine ``seconds`` (trio time) after it came in,
        as after a delay inside OKX (what ``expTime`` is for, §1.2): its expTime is checked, and it is
        carried out and answered, only then. ``await stall.hit.wait()`` tells when it came in."""
        late = Stall(op, seconds)
        self._lates.append(late)
        return late

    def take_late(self, op: str | None) -> Stall | None:
        for late in self._lates:
            if late.matches("ws", "WS", "", op):
                self._lates.remove(late)
                late.hit.set()
                return late
        return None

    def take_stall(self, transport: str, method: str, path: str, op: str | None) -> Stall | None:
        for stall in self._stalls:
            if stall.matches(transport, method, path, op):
                self._stalls.remove(stall)
                stall.hit.set()
                return stall
        return None

    def fire_cancel_all_after(self, tag: str = "") -> int:
        """Fire the switch now (as if its timer expired); returns how many orders it canceled."""
        scope = self._caa_scopes.pop(tag, None)
        if scope is not None:
            scope.cancel()
        return self.exchange.fire_cancel_all_after(tag)

    # ------------------------------------------------------------------ Sink (called by Exchange)

    def order_update(self, push: dict[str, Any]) -> None:
        self.order_pushes.append(push)
        if self.private_pushes_paused:
            self.dropped_pushes.append(push)
            return
        copies = 2 if self.duplicate_pushes else 1
        for conn in list(self._conns):
            for arg in conn.orders_args_matching(push):
                message = {"arg": {**arg, "uid": self.uid}, "data": [push]}
                for _ in range(copies):
                    conn.send_json(message, activity=True)

    def public_trade(self, inst_id: str, trade: dict[str, Any]) -> None:
        for conn in list(self._conns):
            arg = conn.public_sub("trades", inst_id)
            if arg is not None:
                conn.send_json({"arg": arg, "data": [trade]}, activity=True)

    # ---- books (§5.3)

    def push_books(self, inst_id: str, item: dict[str, Any], action: str = "update") -> int:
        """Send one ``books`` item to every subscriber of ``inst_id``; how many got it."""
        if self.books_silent:
            return 0
        n = 0
        for conn in list(self._conns):
            arg = conn.public_sub("books", inst_id)
            if arg is not None:
                conn.send_json({"arg": arg, "action": action, "data": [item]}, activity=True)
                n += 1
        return n

    def book_update(self, inst_id: str, fault: Fault | None = None, *, reset: bool = False) -> None:
        """The book of ``inst_id`` changes once (twice for a reorder) and is pushed, with ``fault``."""
        feed = self.book_feed
        item = feed.update(inst_id, reset=reset)
        if fault is Fault.GAP:
            return  # the exchange's book moved; nobody is told
        if fault is Fault.BAD_CHECKSUM:
            item["checksum"] = (item["checksum"] or 0) ^ 0x5A5A5A5  # wrong and never 0
        if fault is Fault.REORDER:
            later = feed.update(inst_id)
            self.push_books(inst_id, later)
        self.push_books(inst_id, item)

    def book_heartbeat(self, inst_id: str) -> None:
        self.push_books(inst_id, self.book_feed.heartbeat(inst_id))

    def market_update(self, inst_id: str) -> None:
        for conn in list(self._conns):
            conn.push_market(inst_id)

    def balance_update(self) -> None:
        if self.private_pushes_paused:
            return
        subscribers = [c for c in self._conns if c.account_arg is not None]
        if not subscribers:
            return
        record = self.exchange.balance_record()
        for conn in subscribers:
            assert conn.account_arg is not None
            message = {
                "arg": conn.account_arg,
                "eventType": "event_update",
                "data": [record],
            }  # [account channel]
            conn.send_json(message, activity=True)

    def schedule(self, fn: Callable[[], None]) -> None:
        if self._nursery is None:
            fn()
            return
        self._nursery.start_soon(self._run_later, fn)

    async def _run_later(self, fn: Callable[[], None]) -> None:
        await trio.sleep(self.effect_delay)
        fn()

    # ------------------------------------------------------------------ cancel-all-after timers

    def arm_cancel_all_after(self, tag: str) -> None:
        old = self._caa_scopes.pop(tag, None)
        if old is not None:
            old.cancel()
        caa = self.exchange.caa[tag]
        if caa.deadline is None or self._nursery is None:
            return
        scope = trio.CancelScope()
        self._caa_scopes[tag] = scope
        self._nursery.start_soon(self._caa_timer, tag, caa.deadline, scope)

    async def _caa_timer(self, tag: str, deadline: float, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep_until(deadline)
            if self._caa_scopes.get(tag) is scope:
                del self._caa_scopes[tag]
            self.exchange.fire_cancel_all_after(tag)

    # ------------------------------------------------------------------ lifecycle

    def next_conn_id(self) -> str:
        self._conn_counter += 1
        return f"{0xA4D3AE55 + self._conn_counter * 0x9E37:08x}"[-8:]


def _to_dec(value: float | str | Decimal) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


@asynccontextmanager
async def open_fake_okx(
    instruments: list[dict[str, Any]] | None = None,
    api_key: str = "fake-key",
    secret_key: str = "fake-secret",
    passphrase: str = "fake-pass",
    demo: bool = True,
    idle_timeout: float = 30.0,
    clock_offset_ms: int = 0,
    *,
    balances: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    rest_port: int = 0,
    ws_port: int = 0,
) -> AsyncIterator[FakeOkx]:
    """Run a FakeOkx on ``host`` (port 0 = pick free ports) for the duration of the block."""
    fake = FakeOkx(
        instruments=instruments,
        api_key=api_key,
        secret_key=secret_key,
        passphrase=passphrase,
        demo=demo,
        idle_timeout=idle_timeout,
        clock_offset_ms=clock_offset_ms,
        balances=balances,
        host=host,
    )
    async with trio.open_nursery() as nursery:
        fake._nursery = nursery
        http_listeners = await trio.open_tcp_listeners(rest_port, host=host)
        await nursery.start(
            trio.serve_listeners, lambda s: rest.serve_http_connection(fake, s), http_listeners
        )
        http_port = http_listeners[0].socket.getsockname()[1]
        ws_server = await nursery.start(ws.serve, fake, host, ws_port)
        fake.rest_url = f"http://{host}:{http_port}"
        base = f"ws://{host}:{ws_server.port}"
        fake.ws_public_url = f"{base}/ws/v5/public"
        fake.ws_private_url = f"{base}/ws/v5/private"
        fake.ws_business_url = f"{base}/ws/v5/business"
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()
