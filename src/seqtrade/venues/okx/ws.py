"""OKX WebSocket plumbing on trio-websocket: one session per socket, keepalive, reconnects.

- :class:`WsSession` wraps one connected socket: one reader task (text ``ping`` keepalive, docs/okx.md
  §4.4), request/answer matching for login, subscribe and trading ops, and the reason it ended.
- :func:`run_reconnecting` connects, runs a session until it is lost, and connects again after a
  :class:`Backoff` delay (immediately after a 64008 service-upgrade notice). A session that got
  ready (logged in and subscribed) resets the backoff, however short it lived: the next connect
  comes within the backoff's minimum. :class:`SocketStats` records each loss and delay (for status).

trio_websocket exceptions enter seqtrade here: a lost connection ends the session (and fails its
in-flight requests with :class:`VenueError`, outcome unknown); only :class:`VenueAuthError` is fatal.
Frames are decoded here too, once, into the typed messages of :mod:`.messages` (:func:`.messages.ws_message`):
the handlers and the answers to :meth:`WsSession.call` are :class:`.messages.WsEvent`,
:class:`.messages.WsPush` or :class:`.messages.WriteAnswer`.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from ...errors import VenueAuthError, VenueError
from .governor import RateWindow, take_slot
from .messages import WriteAnswer, WsMessage, ws_message
from .parse import dumps

__all__ = [
    "Backoff",
    "Drop",
    "MessageHandler",
    "OpenHandler",
    "SocketStats",
    "WsSession",
    "run_reconnecting",
]

log = logging.getLogger(__name__)

MessageHandler = Callable[["WsSession", WsMessage], Awaitable[None]]
OpenHandler = Callable[["WsSession"], Awaitable[None]]


class Backoff:
    """Exponential reconnect delays with jitter: the n-th is uniform in [d/2, d], d = min*2^n <= max.

    The first delay (and the first after :meth:`reset`) is at most ``min_s``.
    """

    def __init__(self, min_s: float, max_s: float, rng: Callable[[], float] = random.random) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        d: float = min(self.max_s, self.min_s * 2.0**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return d / 2 + d / 2 * self._rng()

    def reset(self) -> None:
        self._attempt = 0


@dataclass(frozen=True, slots=True)
class Drop:
    """One lost session: why, whether it had got ready, how long it lived, the delay before the next try."""

    reason: str
    got_ready: bool
    lifetime: float  # seconds from connect to loss (0 when the connect itself failed)
    delay: float  # seconds waited before connecting again


@dataclass(slots=True)
class SocketStats:
    """What one reconnect loop did, for status reports and tests. Updated by :func:`run_reconnecting`."""

    up: bool = False  # a session is ready now
    ready_sessions: int = 0  # sessions that got ready, since start
    opened: int = 0  # sessions whose open handler finished (private: login, subscribe and reconcile)
    drops: int = 0  # sessions lost (or connects failed), since start
    recent: deque[Drop] = field(default_factory=lambda: deque(maxlen=100))  # the latest drops

    @property
    def last(self) -> Drop | None:
        return self.recent[-1] if self.recent else None


@dataclass(slots=True)
class _Waiter:
    match: Callable[[WsMessage], bool]
    done: trio.Event = field(default_factory=trio.Event)
    answer: WsMessage | None = None


class WsSession:
    """One connected OKX socket. Created and ended by :func:`run_reconnecting`."""

    _ids = itertools.count(1)

    def __init__(
        self,
        ws: WebSocketConnection,
        name: str,
        cancel_scope: trio.CancelScope,
        stats: SocketStats | None = None,
    ) -> None:
        self.name = name
        self._ws = ws
        self._scope = cancel_scope
        self._stats = stats
        self._waiters: list[_Waiter] = []
        self._ready = False
        self.got_ready = False  # ever ready: stays True after end() (the backoff reset reads it)
        self.started_at = trio.current_time()
        self.end_reason = ""
        self.fatal: VenueAuthError | None = None

    @property
    def ready(self) -> bool:
        """Set by the open handler once the session is usable; cleared by :meth:`end`."""
        return self._ready

    @ready.setter
    def ready(self, value: bool) -> None:
        if value and not self._ready and not self.end_reason:
            self.got_ready = True
            if self._stats is not None:
                self._stats.up = True
                self._stats.ready_sessions += 1
        self._ready = value and not self.end_reason

    @property
    def alive(self) -> bool:
        return not self.end_reason

    def end(self, reason: str, *, fatal: VenueAuthError | None = None) -> None:
        """Close the session: fail in-flight requests, stop its tasks; run_reconnecting reconnects."""
        if self.end_reason:
            return
        self.end_reason = reason
        self.fatal = fatal
        self._ready = False  # got_ready keeps the record that it was
        if self._stats is not None:
            self._stats.up = False
        for w in self._waiters:
            w.done.set()
        self._scope.cancel()

    async def send(self, obj: Any) -> None:
        if self.end_reason:
            raise VenueError(f"OKX {self.name} socket: {self.end_reason}")
        try:
            await self._ws.send_message(obj if isinstance(obj, str) else dumps(obj))
        except ConnectionClosed as exc:
            self.end(f"closed while sending ({exc.reason})")
            raise VenueError(f"OKX {self.name} socket closed while sending") from exc

    async def call(
        self, msg: dict[str, Any], match: Callable[[WsMessage], bool], timeout: float
    ) -> WsMessage:
        """Send ``msg`` and wait for the first message that ``match`` accepts.

        Raises :class:`VenueError` when no answer comes within ``timeout`` or the socket is lost: the
        outcome is then unknown.
        """
        waiter = _Waiter(match)
        self._waiters.append(waiter)
        try:
            await self.send(msg)
            with trio.move_on_after(timeout):
                await waiter.done.wait()
        finally:
            self._waiters.remove(waiter)
        if waiter.answer is None:
            why = self.end_reason or f"no answer within {timeout:g} s"
            raise VenueError(f"OKX {self.name} {msg.get('op')}: {why} (outcome unknown)")
        return waiter.answer

    async def op(
        self, op: str, args: list[dict[str, Any]], timeout: float, exp_time_ms: int | None = None
    ) -> WriteAnswer:
        """A trading op (§6): ``{"id","op","args"[,"expTime"]}``; returns the answer with the same id."""
        req_id = f"{op.replace('-', '')[:8]}{next(self._ids)}"
        msg: dict[str, Any] = {"id": req_id, "op": op, "args": args}
        if exp_time_ms is not None:
            msg["expTime"] = str(exp_time_ms)
        answer = await self.call(msg, lambda m: isinstance(m, WriteAnswer) and m.id == req_id, timeout)
        assert isinstance(answer, WriteAnswer)
        return answer

    def _resolve(self, msg: WsMessage) -> bool:
        for w in self._waiters:
            if w.answer is None and w.match(msg):
                w.answer = msg
                w.done.set()
                return True
        return False

    async def read_loop(self, on_message: MessageHandler, ping_interval: float) -> None:
        """The session's one reader: keepalive, answers to :meth:`call`, everything else to ``on_message``.

        Sends a text ``ping`` after ``ping_interval`` s of silence and ends the session when another
        ``ping_interval`` passes without any message. ``on_message`` may block (backpressure): the
        socket is then not read meanwhile. Ends (without raising) when the connection is lost.
        """
        awaiting_pong = False
        try:
            while not self.end_reason:
                with trio.move_on_after(ping_interval) as cs:
                    raw = await self._ws.get_message()
                if cs.cancelled_caught:
                    if awaiting_pong:
                        self.end(f"no pong within {ping_interval:g} s")
                        return
                    await self._ws.send_message("ping")
                    awaiting_pong = True
                    continue
                awaiting_pong = False
                msg = ws_message(raw)
                if msg is None or self._resolve(msg):
                    continue
                await on_message(self, msg)
        except ConnectionClosed as exc:
            why = exc.reason
            self.end(f"closed by peer ({why.code}, {why.reason or 'no reason'})" if why else "closed by peer")


async def _run_connection(
    url: str,
    name: str,
    on_open: OpenHandler,
    on_message: MessageHandler,
    ping_interval: float,
    connect_timeout: float,
    stats: SocketStats | None,
) -> tuple[str, WsSession | None]:
    """One connection from connect to loss; returns why it ended and its session (None: no connect)."""
    session: WsSession | None = None
    try:
        async with (
            open_websocket_url(
                url, connect_timeout=connect_timeout, disconnect_timeout=min(connect_timeout, 2.0)
            ) as ws,
            trio.open_nursery() as nursery,
        ):
            session = WsSession(ws, name, nursery.cancel_scope, stats)
            nursery.start_soon(session.read_loop, on_message, ping_interval)
            try:
                await on_open(session)
                if stats is not None and session.alive:
                    stats.opened += 1
            except VenueAuthError as exc:
                session.end(str(exc), fatal=exc)
            except VenueError as exc:
                session.end(f"setup failed: {exc}")
    except (HandshakeError, ConnectionClosed, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if session is None:
            return f"connect failed: {reason}", None
        session.end(reason)
    assert session is not None
    if session.fatal is not None:
        raise session.fatal
    return session.end_reason or "closed", session


async def run_reconnecting(
    url: str,
    *,
    name: str,
    on_open: OpenHandler,
    on_message: MessageHandler,
    on_down: Callable[[str], None],
    backoff: Backoff,
    ping_interval: float,
    connect_timeout: float = 10.0,
    stats: SocketStats | None = None,
    connects: RateWindow | None = None,
) -> NoReturn:
    """Keep one session to ``url`` alive for ever.

    Owns the socket. ``on_open`` runs after each connect (login, subscribe; set ``session.ready`` when
    done); ``on_message`` gets every push and event. After a loss ``on_down(reason)`` is called, then it
    waits a backoff delay and connects again: none after a service-upgrade notice; the first step
    (``backoff.min_s``/2 to ``min_s``) after a session that got ready, however short it lived.
    Chosen so: a session that got ready and died within ms counts as good too, so that every drop
    after a working session is followed by a prompt reconnect; a peer that keeps accepting the
    login and then dropping is still never hammered (``connects`` bounds the rate), and
    each drop is logged with the session's lifetime and kept in ``stats`` so flapping shows.
    Connects or logins that fail get a growing delay. ``stats`` (optional) records every drop.
    ``connects`` (optional, shared by the sockets of one IP): every connect first takes a slot in it,
    so that however the sessions flap, OKX's limit on new connections (docs/okx.md §4.5) holds.
    Cancel to stop; raises only :class:`VenueAuthError`.
    """
    while True:
        if connects is not None:
            await take_slot(connects)
        reason, session = await _run_connection(
            url, name, on_open, on_message, ping_interval, connect_timeout, stats
        )
        on_down(reason)
        got_ready = session is not None and session.got_ready
        if got_ready:
            backoff.reset()
        delay = 0.0 if reason.startswith("notice") else backoff.next()
        lifetime = trio.current_time() - session.started_at if session is not None else 0.0
        if stats is not None:
            stats.up = False
            stats.drops += 1
            stats.recent.append(Drop(reason, got_ready, lifetime, delay))
        log.warning(
            "OKX %s socket down (%s) after %.3f s%s; reconnecting in %.2f s",
            name,
            reason,
            lifetime,
            "" if got_ready else " (never ready)",
            delay,
        )
        await trio.sleep(delay)
