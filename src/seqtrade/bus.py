"""Trio <-> ZeroMQ: socket ownership, waiting on the edge-triggered FD, endpoints and the run directory.

pyzmq has no Trio integration, so this module is the bridge. The rules:

- Each socket has exactly one owner task. A send from another task consumes the edge the owner is
  waiting for, and two waiters raise ``BusyResourceError``.
- The ZeroMQ FD signals *edges*: after every wake-up read ``zmq.EVENTS`` and drain with ``NOBLOCK``
  until ``zmq.Again`` before waiting again; check ``zmq.EVENTS`` before every wait.
- Never a blocking send inside Trio: sends are ``NOBLOCK``; the caller decides what ``zmq.Again`` means.
- Closing calls ``trio.lowlevel.notify_closing`` first so a waiter gets ``ClosedResourceError``.

Errors enter here and leave as the project's: a bind that fails is a :class:`TransportError`, a run
directory that cannot be made or locked a :class:`RunDirError` (:class:`RunDirLocked` when another
server holds it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio
import zmq

from .errors import RunDirError, RunDirLocked, TransportError

__all__ = [
    "TrioSocket",
    "ipc_path",
    "prepare_run_dir",
    "run_dir_refusal",
    "private_files",
    "bind_secure",
    "lock_run_dir",
    "IPC_PATH_MAX",
]

_EVENTS, _POLLIN = zmq.EVENTS, int(zmq.POLLIN)  # (an int: ``int & IntFlag`` takes enum's slow path)

# The longest ipc path the system takes (sizeof(sockaddr_un.sun_path) - 1: 107 on Linux, 103 on macOS).
IPC_PATH_MAX: int = getattr(zmq, "IPC_PATH_MAX_LEN", 0) or 107


class TrioSocket:
    """A ZeroMQ socket driven from one Trio task.

    Owns the socket: ``close()`` (or leaving the ``with`` block) notifies Trio and closes it with the
    LINGER that was set. ``recv_batch`` returns everything that is ready (up to ``max_batch``) per
    wake-up, which is what makes a Trio receiver fast.
    """

    __slots__ = ("sock", "fd", "spin_ns", "_closed")

    def __init__(self, sock: zmq.Socket[bytes], *, spin_us: int = 0) -> None:
        self.sock = sock
        self.fd: int = int(sock.getsockopt(zmq.FD))
        self.spin_ns = spin_us * 1000
        self._closed = False

    def __enter__(self) -> TrioSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def wait(self, flag: int) -> None:
        """Wait until ``zmq.EVENTS`` has ``flag`` (POLLIN/POLLOUT): check first, then sleep on the FD."""
        sock = self.sock
        while not int(sock.getsockopt(zmq.EVENTS)) & flag:
            await trio.lowlevel.wait_readable(self.fd)

    async def recv_batch(self, max_batch: int = 1024) -> list[bytes]:
        """Every frame ready now (at least one, at most ``max_batch``); waits when none is.

        Cancellation is safe: a frame is either returned or left in the socket. Readiness is read
        from ``zmq.EVENTS`` (about 1.7 µs) rather than learnt from a ``zmq.Again`` (about 3.6 µs: an
        exception object per empty read), and once per step: after a wake-up, after each frame, and
        the read that found none before the wait is the wait's check (each read of ``zmq.EVENTS`` is
        a ``poll`` of the socket's mailbox: three a wake-up, not five).
        """
        sock = self.sock
        recv = sock.recv
        events: Any = sock.getsockopt  # int for zmq.EVENTS
        out: list[bytes] = []
        waited = False
        while True:
            checked = True  # the last call on the socket was a read of zmq.EVENTS that found no frame
            try:
                while len(out) < max_batch and events(_EVENTS) & _POLLIN:
                    out.append(recv(zmq.NOBLOCK, copy=True))
            except zmq.Again:  # readiness said yes and the read said no: take it as no
                checked = False
            if out:
                if not waited:
                    # Yield to the other tasks under constant load, but never lose what we hold.
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return out
            if self.spin_ns:
                deadline = time.perf_counter_ns() + self.spin_ns
                while time.perf_counter_ns() < deadline:
                    if events(_EVENTS) & _POLLIN:
                        break
                if events(_EVENTS) & _POLLIN:
                    continue
            if checked:  # zmq.EVENTS read just now, nothing since: the check before the wait is made
                await trio.lowlevel.wait_readable(self.fd)
            else:
                await self.wait(zmq.POLLIN)
            waited = True

    def send_nowait(self, frame: bytes) -> bool:
        """Send without blocking; False when the high-water mark is reached (the caller decides)."""
        try:
            self.sock.send(frame, zmq.NOBLOCK, copy=len(frame) < 65536)
            return True
        except zmq.Again:
            return False

    async def send(self, frame: bytes) -> None:
        """Send, waiting (without blocking Trio) while the high-water mark is reached."""
        while not self.send_nowait(frame):
            await self.wait(zmq.POLLOUT)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            trio.lowlevel.notify_closing(self.fd)
        except RuntimeError:
            pass  # not inside trio.run: nobody can be waiting on it
        self.sock.close()


def ipc_path(endpoint: str) -> Path | None:
    """The filesystem path of an ``ipc://`` endpoint, None for other transports."""
    return Path(endpoint[len("ipc://") :]) if endpoint.startswith("ipc://") else None


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run directory with mode 0700, or check the one that exists and tighten it to 0700.

    Refused (:class:`RunDirError`, one line saying why): a run directory that is not a directory (a
    symlink included), that another user owns, or that group or others may write. Whoever can write
    to it can replace ``order.ipc`` and receive our orders, or plant the journal; a shared /tmp makes
    that easy, so the server never uses such a directory, it does not repair it.
    """
    try:
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(run_dir)
    except OSError as exc:
        raise RunDirError(f"cannot create the run directory {run_dir}: {exc.strerror or exc}") from exc
    why = run_dir_refusal(st.st_mode, st.st_uid, os.geteuid())
    if why:
        raise RunDirError(f"refusing the run directory {run_dir}: {why}")
    try:
        os.chmod(run_dir, 0o700)
    except OSError as exc:
        raise RunDirError(
            f"cannot set the mode of the run directory {run_dir}: {exc.strerror or exc}"
        ) from exc


def run_dir_refusal(mode: int, uid: int, euid: int) -> str:
    """Why a run directory with this ``lstat`` mode and owner may not be used ("" when it may)."""
    if stat.S_ISLNK(mode):
        return "it is a symbolic link (use the real path)"
    if not stat.S_ISDIR(mode):
        return "it is not a directory"
    if uid != euid:
        return f"it is owned by uid {uid}, not by this user (uid {euid}); use a directory of your own"
    if mode & 0o022:
        return (f"group or others may write to it (mode {stat.S_IMODE(mode):04o}); "
                f"chmod 700 it or use another server.run_dir")  # fmt: skip
    return ""


def private_files(*paths: Path) -> None:
    """Make files the server created (and SQLite's -wal/-shm and the journal's -log beside them) 0600,
    whatever the umask."""
    for path in paths:
        for p in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-log"))):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(p, 0o600)


@contextlib.contextmanager
def lock_run_dir(run_dir: Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``run_dir/server.lock`` for the life of the server.

    A second server on the same run directory fails with RunDirLocked instead of silently taking over
    the sockets (binding an ipc path another process bound steals it). The lock is an ``flock``, so a
    server killed with SIGKILL leaves no stale lock behind.
    """
    path = run_dir / "server.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise RunDirError(f"cannot create the lock file {path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            holder = ""
            with contextlib.suppress(OSError):
                holder = path.read_text().strip()
            raise RunDirLocked(
                f"another seqtrade server (pid {holder or '?'}) is running on {run_dir}; "
                "stop it first or use another server.run_dir"
            ) from None
        raise RunDirError(f"cannot lock {path}: {exc.strerror or exc}") from exc
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def bind_secure(sock: zmq.Socket[Any], endpoint: str) -> None:
    """Bind; an ipc socket file is created 0600 whatever the umask (and a stale file is replaced).

    Raises :class:`TransportError` when the endpoint cannot be bound (its message names it).
    """
    path = ipc_path(endpoint)
    if path is None:
        _bind(sock, endpoint)
        return
    if len(os.fsencode(path)) > IPC_PATH_MAX:
        raise TransportError(
            f"cannot bind {endpoint}: the ipc path is {len(os.fsencode(path))} bytes, the system allows"
            f" {IPC_PATH_MAX}; use a shorter server.run_dir (or bus.*_endpoint)"
        )
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a stale file from a server that was killed; the run-dir lock proves it is stale
    old = os.umask(0o177)
    try:
        _bind(sock, endpoint)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)


def _bind(sock: zmq.Socket[Any], endpoint: str) -> None:
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        raise TransportError(f"cannot bind {endpoint}: {exc.strerror}") from exc
