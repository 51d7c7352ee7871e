"""Who may reach the server over TCP: the ZAP handler, handshake monitors, per-key strategy bindings.

Over ``ipc://`` the file permissions are the guard (run dir 0700, sockets 0600). A ``tcp://`` channel
is a CurveZMQ server instead, and :class:`TcpSecurity` adds everything CURVE alone does not give:

- **ZAP** (RFC 27): libzmq asks ``inproc://zeromq.zap.01`` about every CURVE handshake. Without a
  handler bound there, libzmq accepts *any* client key, so :func:`zap_task` is bound before any CURVE
  socket and lives as long as they do (if it dies, the server's nursery, and so the server, dies). It
  checks the ZAP domain (every CURVE socket of ours sets ``security.zap_domain``; a request from any
  other domain is refused) and the client's public key against ``[[security.clients]]``, and answers
  ``User-Id`` = the name of the client entry. An unknown key fails the handshake: the client gets
  nothing and can send nothing.
- **Handshake monitors**: a client with no CURVE at all never reaches ZAP (the mechanisms do not
  match); the monitor of each CURVE socket logs and counts those refusals.
- **Order channel** (:class:`AuthorizedPull`): every frame carries the ``User-Id`` of its connection;
  a request whose topic names a strategy id not bound to that key is dropped, logged and counted. The
  IPC path keeps the plain :class:`~seqtrade.bus.TrioSocket` (no per-frame cost).
- **Report channel** (:class:`PolicedXPub`): an XPUB in manual mode; a subscription is applied only
  if it is exactly ``report/<id>/`` for an id bound to the subscriber's key, so a key bound to
  strategy A never receives B's reports. Market data (plain PUB) is open to every allowed key.

Refusals are logged at WARNING, at most once a minute per (reason, key) with a count of the repeats,
because a refused client reconnects every 100 ms.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import trio
import zmq
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from .. import wire
from ..bus import TrioSocket
from ..config import Config
from ..errors import ConfigError
from ..security import KeyPair, apply_server_curve, is_tcp, resolve_public_key, uses_tcp

__all__ = [
    "AllowList",
    "AuthStats",
    "TcpSecurity",
    "AuthorizedPull",
    "PolicedXPub",
    "zap_reply",
    "zap_task",
    "monitor_task",
]

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
LOG_EVERY = 60.0  # seconds between two log lines about the same refusal

Channel = Literal["md", "order", "report"]


@dataclass(frozen=True)
class AllowList:
    """Allowed client keys (Z85) -> client name, and client name -> the strategy ids it may trade as."""

    names_by_key: Mapping[bytes, str]
    strategies: Mapping[str, frozenset[str]]

    @classmethod
    def from_config(cls, config: Config) -> AllowList:
        """Resolve ``[[security.clients]]`` (reads public key files; errors name the key)."""
        names: dict[bytes, str] = {}
        strategies: dict[str, frozenset[str]] = {}
        for i, c in enumerate(config.security.clients):
            key = resolve_public_key(c.public_key, c.public_key_file, config.base_dir,
                                     f"security.clients[{i}].public_key")  # fmt: skip
            if key in names:
                raise ConfigError(f"security.clients[{i}].public_key: the same key as client {names[key]!r}")
            names[key] = c.name
            strategies[c.name] = frozenset(c.strategies)
        return cls(names, strategies)


@dataclass
class AuthStats:
    """What the guards refused, by reason; read by ``seqtrade status`` and the metrics endpoint."""

    accepted: int = 0  # CURVE handshakes ZAP accepted
    refused: dict[str, int] = field(default_factory=dict)
    _last_log: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)

    def refuse(self, reason: str, who: str, message: str, *args: object) -> None:
        """Count a refusal and log it, at most once per ``LOG_EVERY`` seconds per (reason, who)."""
        self.refused[reason] = self.refused.get(reason, 0) + 1
        now = time.monotonic()
        last, repeats = self._last_log.get((reason, who), (-LOG_EVERY, 0))
        if now - last >= LOG_EVERY:
            suffix = f" ({repeats} more like it since the last message)" if repeats else ""
            log.warning(message + suffix, *args)
            self._last_log[(reason, who)] = (now, 0)
        else:
            self._last_log[(reason, who)] = (last, repeats + 1)


# ------------------------------------------------------------------------------------------- ZAP


def zap_reply(request: list[bytes], allow: AllowList, domain: str) -> tuple[list[bytes], str, str]:
    """The reply to one ZAP request (RFC 27), and (reason, who) when it is a refusal ("" if accepted).

    Pure: frames in, frames out. Accepts only CURVE, only our domain, only a key in the allow-list;
    ``User-Id`` is the client's name.
    """
    if len(request) < 6:
        return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""], "malformed", ""
    version, request_id, dom, address, _identity, mechanism = request[:6]
    if version != b"1.0":
        return [b"1.0", request_id, b"500", b"unsupported ZAP version", b"", b""], "malformed", ""

    def deny(text: str, reason: str, who: str) -> tuple[list[bytes], str, str]:
        return [b"1.0", request_id, b"400", text.encode(), b"", b""], reason, who

    peer = address.decode("ascii", "replace")
    if dom != domain.encode():
        return deny("wrong ZAP domain", "domain", dom.decode("ascii", "replace"))
    if mechanism != b"CURVE" or len(request) < 7 or len(request[6]) != 32:
        return deny("CURVE required", "mechanism", peer)
    key = z85.encode(request[6])
    name = allow.names_by_key.get(key)
    if name is None:
        return deny("unknown client key", "unknown_key", key.decode())
    return [b"1.0", request_id, b"200", b"OK", name.encode(), b""], "", name


async def zap_task(
    sock: TrioSocket,
    allow: AllowList,
    domain: str,
    stats: AuthStats,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Own the ZAP REP socket: answer every CURVE handshake of every CURVE socket in the context.

    Cancelled with the server (and must not end before the CURVE sockets close: without a handler
    libzmq would accept any key). Backpressure: handshakes wait in the REP queue; each answer is a
    dictionary lookup.
    """
    task_status.started()
    raw = sock.sock
    while True:
        try:
            request = raw.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            await sock.wait(zmq.POLLIN)
            continue
        reply, reason, who = zap_reply(request, allow, domain)
        if not reason:
            stats.accepted += 1
            log.info("CURVE client %s connected from %s", who, request[3].decode("ascii", "replace"))
        elif reason == "unknown_key":
            stats.refuse(reason, who, "refused a CURVE client from %s: unknown key %s (not in [[security.clients]])",
                         request[3].decode("ascii", "replace"), who)  # fmt: skip
        elif reason == "domain":
            stats.refuse(reason, who, "refused a ZAP request for domain %r (ours is %r)", who, domain)
        else:
            stats.refuse(reason, who, "refused a ZAP request from %s: %s", who or "?", reply[3].decode())
        while True:
            try:
                raw.send_multipart(reply, zmq.NOBLOCK)
                break
            except zmq.Again:
                await sock.wait(zmq.POLLOUT)
        await trio.lowlevel.checkpoint()


_PROTOCOL_ERRORS: dict[int, str] = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "the client does not use CURVE",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "CURVE handshake failed (wrong server key?)",
    zmq.PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE: "CURVE key exchange failed",
}

MONITORED_EVENTS = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


async def monitor_task(
    sock: TrioSocket, channel: str, stats: AuthStats, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Own one CURVE socket's monitor PAIR socket: log and count failed handshakes.

    Cancelled with the server. Backpressure: none needed; events are few (one per refused attempt).
    """
    task_status.started()
    raw = sock.sock
    while True:
        try:
            msg = raw.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            await sock.wait(zmq.POLLIN)
            continue
        ev = parse_monitor_message(msg)
        endpoint = (
            ev["endpoint"].decode("ascii", "replace") if isinstance(ev["endpoint"], bytes) else ev["endpoint"]
        )
        if ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            log.debug("%s channel %s: handshake refused by ZAP (status %s)", channel, endpoint, ev["value"])
        elif ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            why = _PROTOCOL_ERRORS.get(int(ev["value"]), f"protocol error 0x{int(ev['value']):x}")
            stats.refuse("handshake", f"{channel}:{ev['value']}", "refused a connection on the %s channel (%s): %s",
                         channel, endpoint, why)  # fmt: skip
        else:
            stats.refuse("handshake", f"{channel}:?", "refused a connection on the %s channel (%s): handshake failed"
                         " (a client without CURVE, or one that gave up)", channel, endpoint)  # fmt: skip
        await trio.lowlevel.checkpoint()


# ---------------------------------------------------------------------------- policed sockets


def _user_id(frame: zmq.Frame) -> str | None:
    try:
        value = frame.get("User-Id")
    except zmq.ZMQError:
        return None
    return value if isinstance(value, str) else None


def _topic_key(data: bytes) -> str | None:
    first = data.find(b"/")
    second = data.find(b"/", first + 1) if first >= 0 else -1
    if second < 0:
        return None
    try:
        return data[first + 1 : second].decode("ascii")
    except UnicodeDecodeError:
        return None


class AuthorizedPull(TrioSocket):
    """The order PULL socket over CURVE: only requests for strategy ids bound to the sender's key.

    ``recv_batch`` keeps the contract of :class:`TrioSocket` (bytes, at least one frame) but reads
    ``zmq.Frame`` objects to see each frame's ``User-Id``; refused frames are dropped and counted.
    """

    __slots__ = ("allow", "stats")

    def __init__(self, sock: zmq.Socket[bytes], allow: AllowList, stats: AuthStats) -> None:
        super().__init__(sock)
        self.allow = allow
        self.stats = stats

    async def recv_batch(self, max_batch: int = 1024) -> list[bytes]:
        recv = self.sock.recv
        out: list[bytes] = []
        while True:
            got = 0
            try:
                while got < max_batch:
                    f = recv(zmq.NOBLOCK, copy=False)
                    got += 1
                    data = f.bytes
                    name = _user_id(f)
                    sid = _topic_key(data)
                    if name is not None and sid is not None and sid in self.allow.strategies.get(name, ()):
                        out.append(data)
                    else:
                        self.stats.refuse("strategy_binding", f"{name}:{sid}",
                                          "refused a request as strategy %r from client %s: that id is not bound to "
                                          "its key ([[security.clients]] strategies)", sid, name)  # fmt: skip
            except zmq.Again:
                pass
            if out:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return out
            if got:
                await trio.lowlevel.checkpoint()  # only refused frames: let the others run, lose nothing
            else:
                await self.wait(zmq.POLLIN)


class PolicedXPub(TrioSocket):
    """The report XPUB over CURVE in manual mode: a key gets only its own strategies' report topics.

    Pending subscriptions are handled before every send (the welcome that completes a join is a send,
    so a subscription that has arrived is live before it). Only the owner task sends, so this runs
    in the socket's owner task as the one-owner rule requires.
    """

    __slots__ = ("allow", "stats")

    def __init__(self, sock: zmq.Socket[bytes], allow: AllowList, stats: AuthStats) -> None:
        sock.setsockopt(zmq.XPUB_MANUAL, 1)
        super().__init__(sock)
        self.allow = allow
        self.stats = stats

    def police(self) -> None:
        sock = self.sock
        while True:
            try:
                f = sock.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            data = f.bytes
            if not data:
                continue
            topic = data[1:]
            if data[0] == 0:
                sock.setsockopt(zmq.UNSUBSCRIBE, topic)  # no-op for a pipe already gone
                continue
            name = _user_id(f)
            sid = _topic_key(topic)
            allowed = self.allow.strategies.get(name or "", frozenset())
            if sid is not None and sid in allowed and topic == wire.topic("report", sid):
                sock.setsockopt(zmq.SUBSCRIBE, topic)
            else:
                self.stats.refuse("subscription", f"{name}:{topic[:64]!r}",
                                  "refused client %s a subscription to %r: only report/<id>/ of its own strategies",
                                  name, topic[:64])  # fmt: skip

    def send_nowait(self, frame: bytes) -> bool:
        self.police()
        return super().send_nowait(frame)


# ------------------------------------------------------------------------------------- wiring


class TcpSecurity:
    """Everything CURVE needs in ``serve``; inactive (and free) when every channel is ipc://.

    Build it before any socket (it validates the keys and the allow-list); ``open(ctx)`` binds the ZAP
    handler's socket before the channels bind and closes it after them; ``wrap`` gives each channel
    its socket wrapper; ``start`` runs the ZAP and monitor tasks in the server's nursery.
    """

    def __init__(self, config: Config, keys: KeyPair | None) -> None:
        self.config = config
        self.active = uses_tcp(config)
        self.stats = AuthStats()
        self.allow = AllowList({}, {})
        self.keys = keys
        self._zap: TrioSocket | None = None
        self._monitors: list[tuple[TrioSocket, str]] = []
        if self.active:
            if keys is None:
                env = config.security.server_secret_key_env
                raise ConfigError(
                    f"security.server_secret_key_env: a tcp:// endpoint needs the server's secret key in ${env}"
                )
            self.allow = AllowList.from_config(config)
            if not self.allow.names_by_key:
                log.warning("tcp:// endpoints but no [[security.clients]]: no remote client can connect")

    def socket_type(self, channel: Channel) -> int:
        """The ZeroMQ socket type of a channel (the report channel is an XPUB over TCP)."""
        if channel == "md":
            return zmq.PUB
        if channel == "order":
            return zmq.PULL
        return zmq.XPUB if is_tcp(self.config.endpoint("report")) else zmq.PUB

    @contextlib.contextmanager
    def open(self, ctx: zmq.Context[Any]) -> Iterator[TcpSecurity]:
        if not self.active:
            yield self
            return
        zap = ctx.socket(zmq.REP)
        zap.setsockopt(zmq.LINGER, 0)
        zap.bind(ZAP_ENDPOINT)
        self._zap = TrioSocket(zap)
        try:
            yield self
        finally:
            for mon, _ in self._monitors:
                mon.close()
            self._monitors.clear()
            self._zap.close()
            self._zap = None

    def wrap(self, sock: zmq.Socket[bytes], channel: Channel, *, spin_us: int = 0) -> TrioSocket:
        """Before bind: the channel's socket wrapper, with CURVE server options if it is tcp://."""
        endpoint = self.config.endpoint(channel)
        if not is_tcp(endpoint):
            return TrioSocket(sock, spin_us=spin_us)
        assert self.keys is not None and self._zap is not None, "open() first"
        apply_server_curve(sock, self.keys, self.config.security.zap_domain)
        mon = sock.get_monitor_socket(MONITORED_EVENTS)
        mon.setsockopt(zmq.LINGER, 0)
        self._monitors.append((TrioSocket(mon), channel))
        if channel == "order":
            return AuthorizedPull(sock, self.allow, self.stats)
        if channel == "report":
            return PolicedXPub(sock, self.allow, self.stats)
        return TrioSocket(sock)

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the ZAP handler and the handshake monitors (nothing when inactive)."""
        if self._zap is None:
            return
        await nursery.start(zap_task, self._zap, self.allow, self.config.security.zap_domain, self.stats)
        for mon, channel in self._monitors:
            await nursery.start(monitor_task, mon, channel, self.stats)
