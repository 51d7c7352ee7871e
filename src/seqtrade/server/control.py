"""The control channel: ``seqtrade status``, ``halt``, ``resume``, ``strategies`` talk to a running server.

A REP socket on ``ipc://<run_dir>/control.ipc`` (0600 in a 0700 directory: only the same user can
reach it). One request, one reply, both MessagePack maps: ``{"cmd": "status", ...}`` ->
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. Components register commands in
:class:`ControlCommands`; a failing command answers an error and never ends the task.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import trio
import zmq

from ..bus import TrioSocket

__all__ = ["ControlCommands", "control_task", "request"]

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlCommands:
    """Name -> async handler taking the request map and returning a MessagePack-able result."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler) -> None:
        self.handlers[name] = handler

    async def dispatch(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            return {"ok": False, "error": "a request is a map with a 'cmd' string"}
        handler = self.handlers.get(req["cmd"])
        if handler is None:
            return {
                "ok": False,
                "error": f"unknown command {req['cmd']!r} (known: {', '.join(sorted(self.handlers))})",
            }
        try:
            return {"ok": True, "result": await handler(req)}
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


async def control_task(
    sock: TrioSocket, commands: ControlCommands, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Own the control REP socket: one request, one reply, for ever. Cancelled with the server."""
    task_status.started()
    while True:
        (frame,) = await sock.recv_batch(max_batch=1)  # REP: strictly one request at a time
        try:
            req = msgpack.unpackb(frame, raw=False)
        except Exception:  # any garbage: answer, never die
            req = None
        reply = await commands.dispatch(req)
        await sock.send(msgpack.packb(reply, default=str))


def request(endpoint: str, cmd: str, *, timeout: float = 3.0, **args: Any) -> Any:
    """Client side (blocking): send one command to a running server and return its result.

    Raises ConnectionError if the server does not answer, RuntimeError with the server's message
    if the command failed.
    """
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(msgpack.packb({"cmd": cmd, **args}))
        if not sock.poll(int(timeout * 1000)):
            raise ConnectionError(
                f"no answer from a server at {endpoint} within {timeout:g} s (is it running?)"
            )
        reply = msgpack.unpackb(sock.recv(), raw=False)
    finally:
        sock.close()
    if not reply.get("ok"):
        raise RuntimeError(reply.get("error", "command failed"))
    return reply.get("result")
