"""Strategy supervision: the server starts the ``[[strategies]]`` of its config and keeps them running.

Each strategy is ``python -m seqtrade.cli run <path or module> --id <id> --config <config> --param ...``
in a new session (its own process group), with stdout and stderr appended to
``<run_dir>/<supervisor.log_dir>/<id>.log`` (0600). When one exits, its ``restart`` policy decides:
``always`` restarts it, ``on-failure`` restarts it unless it exited with code 0, ``never`` leaves it.
Restarts wait ``backoff_min`` seconds, doubled for every exit within ``crash_loop_window``, up to
``backoff_max``; ``crash_loop_count`` exits within the window is a crash loop: the strategy is left
stopped in state ``crash-loop`` and an ERROR is logged (``seqtrade strategies --restart ID`` tries
again). Every failed exit also reads the tail of the strategy's log for the line that says why
(:func:`.exitline.fatal_line`, e.g. a traceback's ``ValueError: ...``): it is in the log line of the
exit and in ``last_error`` of the ``strategies`` answer, which ``seqtrade strategies`` and the serve
console show. A restarted strategy joins with ``last_seq`` 0 and gets every report it missed replayed.

On shutdown the strategies stop in reverse config order, one at a time: SIGTERM to the process group
(the client library then calls ``on_stop`` and exits), SIGKILL after ``stop_grace`` seconds.

The children inherit the server's environment minus the server's secrets: the server's CurveZMQ
secret key, every variable a venue section names for its keys (``Venue.secret_env_vars``), and any
other variable whose name says it holds a secret (a ``SECRET``, ``TOKEN``, ``PASSWORD``, ``PASSPHRASE``,
``API_KEY``, ``PRIVATE_KEY`` or ``CREDENTIALS`` part, like ``DB_PASSWORD``), each also with a ``_FILE``
suffix. A strategy trades through the server, never around it. The one secret a strategy may need,
its own CurveZMQ key (``security.client_secret_key_env``), stays.

Strategies that are not in the config may still connect on their own (``server.
allow_unknown_strategies``); ``seqtrade strategies`` lists them as ``external``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..config import Config, StrategyConfig
from ..errors import ConfigError
from ..venues import secret_env_vars
from .control import ControlCommands
from .exitline import fatal_line

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["Supervisor", "Supervised", "toml_value", "strategy_command"]

log = logging.getLogger(__name__)

LOG_TAIL = 64 * 1024  # bytes of a strategy's log read after a failed exit, for its fatal line

# A variable whose name says it holds a secret never reaches a strategy (with the venues' own names).
_SECRET_NAME = re.compile(
    r"(^|_)(API_?KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|PRIVATE_KEY|CREDENTIALS?)(_|$)", re.IGNORECASE
)


def toml_value(v: Any) -> str:
    """A TOML inline value that ``tomllib`` reads back as ``v`` (for ``--param KEY=VALUE``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, (datetime, date, dtime)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot pass {type(v).__name__} as a strategy parameter")


def strategy_command(config: Config, s: StrategyConfig) -> list[str]:
    """The command line that runs one ``[[strategies]]`` entry."""
    target = str(Path(config.base_dir, os.path.expanduser(s.path)).resolve()) if s.path else s.module
    cmd = [sys.executable, "-m", "seqtrade.cli", "run", target, "--id", s.id, "--config", config.source_path]
    for key, value in s.params.items():
        cmd += ["--param", f"{key}={toml_value(value)}"]
    return cmd


@dataclass
class Supervised:
    """One supervised strategy and what ``seqtrade strategies`` shows of it."""

    cfg: StrategyConfig
    log_path: Path
    state: str = "starting"  # starting, running, backoff, exited, failed, crash-loop, stopping, stopped
    pid: int | None = None
    starts: int = 0
    restarts: int = 0
    exit_code: int | None = None  # negative: killed by that signal
    last_error: str | None = None  # why its last failed run ended: the exit and the log's fatal line
    started_at: float = 0.0  # trio.current_time()
    exits: deque[float] = field(default_factory=deque)  # exit times inside the crash-loop window
    proc: trio.Process | None = None

    @property
    def id(self) -> str:
        return self.cfg.id


def _describe_exit(rc: int | None) -> str:
    if rc is None:
        return "could not be started"
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with code {rc}"


def _external_state(alive: bool, left: bool) -> str:
    return "external" if alive else "external (left)" if left else "external (silent)"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


class Supervisor:
    """Runs the config's enabled ``[[strategies]]`` as child processes; see the module docstring."""

    def __init__(
        self, config: Config, gateway: Gateway | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.cfg = config.supervisor
        self.log_dir = Path(config.run_dir, config.supervisor.log_dir)
        self.entries = [Supervised(s, self.log_dir / f"{s.id}.log") for s in config.strategies if s.enabled]
        if self.entries and not config.source_path:
            raise ConfigError("strategies: supervised strategies need a server started from a config file")
        self._environ = dict(os.environ if environ is None else environ)
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        self._done = trio.Event()

    # ------------------------------------------------------------------------------ processes

    def child_env(self) -> dict[str, str]:
        """The server's environment without the server's secrets, unbuffered output."""
        sec = self.config.security
        secrets = {sec.server_secret_key_env, *secret_env_vars(self.config.venue)}
        keep = {sec.client_secret_key_env, f"{sec.client_secret_key_env}_FILE"}

        def secret(name: str) -> bool:
            return name.removesuffix("_FILE") in secrets or _SECRET_NAME.search(name) is not None

        env = {k: v for k, v in self._environ.items() if k in keep or not secret(k)}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _log_line(self, e: Supervised, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            fd = os.open(e.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError:
            return
        try:
            os.write(fd, f"--- {stamp} seqtrade supervisor: {text}\n".encode())
        finally:
            os.close(fd)

    async def _spawn(self, e: Supervised) -> bool:
        cmd = strategy_command(self.config, e.cfg)
        e.starts += 1
        self._log_line(e, f"starting {e.id} (start {e.starts}): {' '.join(cmd)}")
        try:
            fd = os.open(e.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                e.proc = await trio.lowlevel.open_process(
                    cmd, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                    start_new_session=True, cwd=self.config.base_dir, env=self.child_env(),
                )  # fmt: skip
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("cannot start strategy %s: %s", e.id, exc)
            e.proc, e.pid, e.exit_code = None, None, None
            return False
        e.pid = e.proc.pid
        e.started_at = trio.current_time()
        e.state = "running"
        log.info("strategy %s started (pid %d), output in %s", e.id, e.pid, e.log_path)
        return True

    async def _keep_running(self, e: Supervised, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run one strategy and restart it per its policy until a crash loop, its policy or ``stop()``.

        Owns ``e.proc`` while it runs. Cancelled by ``stop()`` (the process is then terminated by
        ``run``). Backpressure: restarts are paced by the backoff and end at a crash loop.
        """
        cfg = self.cfg
        started = False
        while True:
            ok = await self._spawn(e)
            if not started:
                task_status.started()
                started = True
            rc: int | None = None
            if ok:
                assert e.proc is not None
                rc = await e.proc.wait()
                _signal_group(e.proc.pid, signal.SIGKILL)  # whatever it left behind in its group
            e.exit_code, e.pid = rc, None
            t = trio.current_time()
            ran = t - e.started_at if ok else 0.0
            line = None if rc == 0 else self._fatal_line(e)
            e.last_error = None if rc == 0 else _describe_exit(rc) + (f": {line}" if line else "")
            why = f" ({line})" if line else ""
            self._log_line(e, f"{e.id} {_describe_exit(rc)} after {ran:.1f} s")
            policy = e.cfg.restart
            if policy == "never" or (policy == "on-failure" and rc == 0):
                e.state = "exited" if rc == 0 else "failed"
                (log.info if rc == 0 else log.warning)(
                    "strategy %s %s after %.1f s%s; not restarted (restart = %r)",
                    e.id,
                    _describe_exit(rc),
                    ran,
                    why,
                    policy,
                )
                return
            e.exits.append(t)
            while e.exits and t - e.exits[0] > cfg.crash_loop_window:
                e.exits.popleft()
            if len(e.exits) >= cfg.crash_loop_count:
                e.state = "crash-loop"
                log.error(
                    "strategy %s %s%s: %d exits within %.0f s, a crash loop: not restarting it (see %s; "
                    "`seqtrade strategies --restart %s` tries again)",
                    e.id, _describe_exit(rc), why, len(e.exits), cfg.crash_loop_window, e.log_path, e.id,
                )  # fmt: skip
                return
            delay = min(cfg.backoff_max, cfg.backoff_min * 2 ** (len(e.exits) - 1))
            e.state = "backoff"
            log.warning("strategy %s %s after %.1f s%s; restarting in %.2f s (see %s)", e.id, _describe_exit(rc), ran,
                        why, delay, e.log_path)  # fmt: skip
            await trio.sleep(delay)
            e.restarts += 1

    def _fatal_line(self, e: Supervised) -> str | None:
        """The line of the strategy's log that says why its last run ended (:func:`.exitline.fatal_line`)."""
        try:
            with open(e.log_path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - LOG_TAIL))
                line = fatal_line(f.read().decode(errors="replace"))
        except OSError:
            return None
        return line

    async def _terminate(self, e: Supervised) -> None:
        proc = e.proc
        if proc is None or proc.returncode is not None:
            if e.state not in ("crash-loop", "exited", "failed"):
                e.state = "stopped"
            return
        e.state = "stopping"
        log.info("stopping strategy %s (pid %d)", e.id, proc.pid)
        _signal_group(proc.pid, signal.SIGTERM)
        with trio.move_on_after(self.cfg.stop_grace):
            await proc.wait()
        if proc.returncode is None:
            log.warning("strategy %s did not stop within %g s: killing it", e.id, self.cfg.stop_grace)
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)
        e.exit_code, e.pid, e.state = proc.returncode, None, "stopped"
        self._log_line(e, f"{e.id} stopped by the server ({_describe_exit(proc.returncode)})")

    # ------------------------------------------------------------------------------ the task

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Start every enabled ``[[strategies]]`` entry in config order and keep each one running.

        Owns the child processes. ``task_status.started()`` once each has been started once. Ends on
        ``stop()`` or cancellation; either way every child is then stopped in reverse order (shielded,
        each bounded by ``stop_grace`` plus a SIGKILL). Backpressure: not applicable.
        """
        if not self.entries:
            self._done.set()
            task_status.started()
            return
        self.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.log_dir, 0o700)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for e in self.entries:
                    await nursery.start(self._keep_running, e)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                for e in reversed(self.entries):
                    await self._terminate(e)
            self._done.set()

    async def stop(self) -> None:
        """Stop every strategy (reverse config order) and wait until they are gone."""
        self._stopping = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        await self._done.wait()

    def restart(self, strategy_id: str) -> str:
        """Start a strategy again that is not running (after a crash loop, or an exit)."""
        e = next((e for e in self.entries if e.id == strategy_id), None)
        if e is None:
            raise ValueError(f"{strategy_id!r} is not a supervised strategy")
        if self._nursery is None or self._stopping:
            raise ValueError("the supervisor is not running")
        if e.state not in ("crash-loop", "exited", "failed"):
            raise ValueError(f"{strategy_id} is {e.state}, not stopped")
        e.exits.clear()
        e.restarts += 1
        e.state = "starting"
        log.info("restarting strategy %s on request", strategy_id)
        self._nursery.start_soon(self._keep_running, e)
        return "starting"

    # ------------------------------------------------------------------------------ control

    def snapshot(self) -> list[dict[str, Any]]:
        """Every strategy: the supervised ones in config order, then those that connected on their own."""
        now = trio.current_time()
        known = self.gateway.strategies if self.gateway is not None else {}
        errors = self.gateway.engine.callback_errors if self.gateway is not None else {}
        out: list[dict[str, Any]] = []
        for e in self.entries:
            info = known.get(e.id)
            out.append({
                "id": e.id, "supervised": True, "state": e.state, "pid": e.pid, "restarts": e.restarts,
                "exit_code": e.exit_code, "restart": e.cfg.restart, "log": str(e.log_path),
                "last_error": e.last_error,
                "heartbeat_age": None if info is None else round(now - info.last_seen, 3),
                "errors": errors.get(e.id, {}),
            })  # fmt: skip
        supervised = {e.id for e in self.entries}
        for sid, info in sorted(known.items()):
            if sid not in supervised:
                out.append({
                    "id": sid, "supervised": False, "state": _external_state(info.alive, info.left),
                    "pid": None, "restarts": 0, "exit_code": None, "restart": "", "log": "", "last_error": None,
                    "heartbeat_age": round(now - info.last_seen, 3),
                    "errors": errors.get(sid, {}),
                })  # fmt: skip
        return out

    def register_commands(self, commands: ControlCommands) -> None:
        """Control commands: ``strategies`` (list), ``restart_strategy`` (``id``)."""

        async def strategies(_: dict[str, Any]) -> list[dict[str, Any]]:
            return self.snapshot()

        async def restart_strategy(req: dict[str, Any]) -> str:
            return self.restart(str(req["id"]))

        commands.register("strategies", strategies)
        commands.register("restart_strategy", restart_strategy)
