"""The ``seqtrade`` command: ``serve``, ``run``, ``check``, ``reset``, ``new-strategy``, ``replay``, ``bench``, ...

``main(argv) -> int`` is testable without a subprocess. This is the only module that reads files and
the environment on the server side (config file, venue keys). Every :class:`~seqtrade.errors.SeqtradeError`
ends a command with one ``seqtrade: error: ...`` line on stderr and exit code 2, start-up failures of
``serve`` included (a locked run dir, an ipc path too long, a journal that cannot be opened). A reader
that goes away (``seqtrade status | head``) ends a command quietly with exit code 141, as SIGPIPE
ends a Unix tool.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import BacktestConfig, Config, load_config, missing_limits
from .errors import ConfigError, SeqtradeError

if TYPE_CHECKING:
    from .fill_model import Latency

__all__ = ["main", "console_main", "setup_logging"]

log = logging.getLogger("seqtrade")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(
    level: str = "INFO", *, json_logs: bool = False, handlers: Sequence[logging.Handler] | None = None
) -> None:
    """Log to stderr (plain or JSON lines), or to ``handlers`` (the serve console's), all formatted alike."""
    for handler in handlers if handlers is not None else [logging.StreamHandler(sys.stderr)]:
        handler.setFormatter(_JsonFormatter() if json_logs else logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = handlers if handlers is not None else [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "trio-websocket"):  # one line per request: too much at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _serve(args: argparse.Namespace) -> int:
    import trio

    from .security import server_keypair
    from .server.app import run_until_signal
    from .venues import venue_from_config

    config = load_config(args.config)
    require_venue(config)
    live = not args.plain and not config.server.log_json and sys.stdout.isatty() and sys.stderr.isatty()
    console = _live_console(config) if live else None
    setup_logging(args.log_level or config.server.log_level, json_logs=config.server.log_json,
                  handlers=console.handlers if console is not None else None)  # fmt: skip
    for note in config.deprecations:
        log.warning("%s", note)
    for line in limit_warnings(config):
        (log.warning if line.startswith("WARNING") else log.info)("%s", line.removeprefix("WARNING: "))
    venue = venue_from_config(config, os.environ)
    curve_keys = server_keypair(config, os.environ)  # None unless an endpoint is tcp://
    log.info(
        "seqtrade serving %s on %s (run dir %s)",
        config.venue.kind,
        ", ".join(config.venue.symbols),
        config.run_dir,
    )
    try:
        with console.live if console is not None else contextlib.nullcontext():
            return trio.run(functools.partial(run_until_signal, config, venue, curve_keys=curve_keys))
    except BaseExceptionGroup as eg:
        raise _lone_error(eg) from None


@dataclasses.dataclass
class _Console:
    live: Any  # a seqtrade.server.console.LiveConsole
    handlers: list[logging.Handler]


def _live_console(config: Config) -> _Console:
    """The serve console on a terminal (seqtrade.server.console): the live view, log lines above it
    except the flood, and every line, fills included, in ``<run_dir>/logs/serve.log``."""
    from rich.console import Console

    from .bus import prepare_run_dir
    from .server.console import ConsoleLogHandler, LiveConsole
    from .server.control import request

    prepare_run_dir(config.run_dir)
    log_dir = Path(config.run_dir, "logs")
    log_dir.mkdir(mode=0o700, exist_ok=True)
    log_file = log_dir / "serve.log"
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    os.chmod(log_file, 0o600)
    console = Console(file=sys.stdout)
    endpoint = f"ipc://{config.run_dir / 'control.ipc'}"

    def fetch() -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
        return request(endpoint, "status", timeout=1.0), request(endpoint, "strategies", timeout=1.0)

    live = LiveConsole(console, fetch, log_file=str(log_file))
    return _Console(live, [ConsoleLogHandler(console), file_handler])


def _lone_error(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one SeqtradeError a failed start-up left in Trio's exception groups; the group itself
    (re-raised, with its traceback) when it holds anything else: that is a bug, not a start-up failure."""
    leaves: list[BaseException] = []
    todo: list[BaseException] = [eg]
    while todo:
        exc = todo.pop()
        if isinstance(exc, BaseExceptionGroup):
            todo.extend(exc.exceptions)
        else:
            leaves.append(exc)
    errors = [e for e in leaves if isinstance(e, SeqtradeError)]
    return errors[0] if errors and len(errors) == len(leaves) else eg


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    require_venue(config)
    print(describe(config))
    for note in config.deprecations:
        print(f"warning: {note}")
    for line in check_keys(config, os.environ):
        print(line)
    for line in limit_warnings(config):
        print(line)
    errors = check_strategies(config)
    for line in errors:
        print(f"seqtrade: error: {line}", file=sys.stderr)
    return 2 if errors else 0


def require_venue(config: Config) -> None:
    """``serve`` and ``check`` refuse a config file without ``[venue]``: which exchange to trade on
    (and which symbols) is never a default the person did not see. (Other commands, and a strategy
    host's config, need no venue.)"""
    if config.source_path and "venue" not in config.sections:
        raise ConfigError(
            f"{config.source_path}: no [venue] section: say which exchange to trade on and which symbols,"
            ' e.g.\n  [venue]\n  kind = "paper"   # or "okx"\n  symbols = ["BTC-USDT"]'
        )


def limit_warnings(config: Config) -> list[str]:
    """The pre-trade limits a config leaves unset: a WARNING block naming each one on a live venue,
    one note on the paper venue (whose balances still bound every order); one line when all are set."""
    from .venues import venue_class

    missing = missing_limits(config)
    if not missing:
        return ["risk: every pre-trade limit is set (docs/risk.md)"]
    kind = config.venue.kind
    if venue_class(kind).simulated:
        return [f"note: no risk limit for {', '.join(missing)} ({kind} venue: simulated, and its balances"
                " still refuse what the account cannot pay for; docs/risk.md)"]  # fmt: skip
    return [
        f"WARNING: venue {kind} (a live account) runs with these pre-trade limits unset"
        " (0 = no limit: any size, any price, any rate passes the server):",
        *(f"WARNING:   {name}" for name in missing),
        "WARNING: set them in [risk] or [risk.symbols.<symbol>] (docs/risk.md)",
    ]


def check_strategies(config: Config, *, timeout: float = 60.0) -> list[str]:
    """The ``[[strategies]]`` the server could not start: a path that does not exist (resolved
    relative to the config file's directory, as the supervisor does) or a file or module that does not
    load or defines no Strategy. Each is loaded as ``seqtrade run`` loads it, in a child process in the
    config file's directory with the venue's secrets kept out (as the supervisor starts it): its module
    code runs, no callback does, and a module that runs at import cannot hang ``check``."""
    import subprocess

    from .venues import secret_env_vars

    errors = []
    base = Path(config.base_dir)
    secrets = {config.security.server_secret_key_env, *secret_env_vars(config.venue)}
    env = {k: v for k, v in os.environ.items() if k.removesuffix("_FILE") not in secrets}
    for i, s in enumerate(config.strategies):
        if not s.enabled:
            continue
        where = f"strategies[{i}] (id {s.id!r})"
        target = (base / os.path.expanduser(s.path)).resolve() if s.path else None
        if target is not None and not target.is_file():
            errors.append(f"{where}: path {s.path!r} does not exist (resolved relative to the config"
                          f" file's directory {base}: {target})")  # fmt: skip
            continue
        what = str(target) if target is not None else s.module
        try:
            r = subprocess.run([sys.executable, "-c", _LOAD_STRATEGY, what], cwd=base, env=env,
                               capture_output=True, text=True, timeout=timeout)  # fmt: skip
        except subprocess.TimeoutExpired:
            errors.append(f"{where}: loading {what} did not finish within {timeout:g} s (does the module"
                          " run the strategy at import? guard that with `if __name__ == \"__main__\":`)")  # fmt: skip
            continue
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
            errors.append(
                f"{where}: {last}" if r.returncode == 3 else f"{where}: {what} cannot be loaded: {last}"
            )
    return errors


# How `check` loads a strategy: in a child process, with the loader `seqtrade run` uses (the client
# package's; it may move within it). Exit 3: the loader refused it, its reason on stderr.
_LOAD_STRATEGY = """import sys
sys.path.insert(0, "")
from seqtrade.client.loading import load_strategy
from seqtrade.errors import SeqtradeError
try:
    load_strategy(sys.argv[1])
except SeqtradeError as exc:
    print(exc, file=sys.stderr)
    sys.exit(3)
"""


def describe(config: Config) -> str:
    """What a config would do, in words (``seqtrade check``)."""
    from .venues import venue_class

    v = config.venue
    lines = [
        *venue_class(v.kind).describe(v),
        f"symbols: {', '.join(v.symbols)}",
        f"run dir: {config.run_dir} (0700; sockets 0600)",
        f"market data: {config.endpoint('md')}",
        f"orders:      {config.endpoint('order')}",
        f"reports:     {config.endpoint('report')}",
        f"journal: {config.journal_path} (synchronous={config.journal.synchronous})",
        f"stale order requests: older than {config.orders.max_age_ms} ms are rejected",
        f"dead strategy: silent > {config.server.heartbeat_timeout:g} s -> {config.server.dead_strategy_policy} its orders",
        f"on shutdown: {config.server.shutdown_policy} open orders",
        f"unknown strategies: {'allowed' if config.server.allow_unknown_strategies else 'refused'}",
        f"candles: {', '.join(config.candles.bars) or 'none'} of every symbol, with history;"
        f" a feed silent {config.feeds.stale_after:g} s is stale",
    ]
    if config.strategies:
        sv = config.supervisor
        lines.append(
            f"strategies (started and supervised by the server; output in {config.run_dir / sv.log_dir}/<id>.log):"
        )
        for s in config.strategies:
            lines.append(
                f"  {s.id}: {s.path or s.module} restart={s.restart}{'' if s.enabled else ' (disabled)'}"
            )
        lines.append(f"  restarts after {sv.backoff_min:g} s, doubling up to {sv.backoff_max:g} s; {sv.crash_loop_count} exits"
                     f" within {sv.crash_loop_window:g} s = crash loop, not restarted; on shutdown SIGTERM in reverse"
                     f" order, SIGKILL after {sv.stop_grace:g} s")  # fmt: skip
    if "backtest" in config.sections:  # read by `seqtrade backtest` only
        lines.append(
            describe_backtest(config.backtest, {}).replace(
                "backtest:", "backtest (seqtrade backtest only):", 1
            )
        )
    lines.extend(describe_deployment(config))
    return "\n".join(lines)


def _control(args: argparse.Namespace, cmd: str, **kw: Any) -> Any:
    from .server.control import request

    config = load_config(args.config)
    try:
        return request(f"ipc://{config.run_dir / 'control.ipc'}", cmd, **kw)
    except (ConnectionError, RuntimeError) as exc:
        raise SeqtradeError(str(exc)) from None


def _status(args: argparse.Namespace) -> int:
    result = _control(args, "status")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(format_status(result))
    return 0


def format_status(st: dict) -> str:  # type: ignore[type-arg]
    """The human form of the ``status`` command's answer."""
    c = st["counters"]
    lines = [
        f"venue {st['venue']}: {'connected' if st['connected'] else 'DISCONNECTED'}; symbols {', '.join(st['symbols'])}",
        f"orders in {c['orders_in']}, sent {c['orders_sent']}, rejected {c['rejected']}; reports {c['reports_out']};"
        f" bad frames {c['bad_frames']}; market data out {c['md_out']} (dropped {c['md_dropped']})",
    ]
    strategies = st.get("strategies", {})
    if strategies:
        lines.append(f"{'strategy':<20} {'alive':<6} {'heartbeat':>9} {'seq':>7} {'open':>5} {'errors':>8}")
        for sid, s in strategies.items():
            alive = "yes" if s["alive"] else "left" if s.get("left") else "NO"
            lines.append(f"{sid:<20} {alive:<6} {s['heartbeat_age']:>8.1f}s"
                         f" {s['last_seq']:>7} {s['open_orders']:>5} {sum(s.get('errors', {}).values()):>8}")  # fmt: skip
        lines.extend(callback_error_lines({sid: s.get("errors", {}) for sid, s in strategies.items()}))
    from .feedhealth import format_feeds
    from .server.guard import format_guard_status

    lines.extend(format_feeds(st.get("feeds", [])))
    lines.extend(format_guard_status(st))
    for extra in st.get("sections", []):
        lines.append(extra)
    return "\n".join(lines)


def _trading_state(args: argparse.Namespace) -> int:
    """``seqtrade halt|reduce|resume [--strategy ID]``: change a running server's trading state."""
    kw = {"strategy": args.strategy} if args.strategy else {}
    result = _control(args, args.command, **kw)
    assert isinstance(result, dict)
    own = "; ".join(f"{sid} {s}" for sid, s in result["strategies"].items())
    print(f"trading: global {result['global']}" + (f"; {own}" if own else ""))
    return 0


def describe_deployment(config: Config) -> list[str]:
    """TCP/CURVE and metrics, in words (part of ``describe``)."""
    lines = []
    tcp = [c for c in ("md", "order", "report") if config.endpoint(c).startswith("tcp://")]
    sec = config.security
    if tcp:
        lines.append(f"tcp: CurveZMQ required on {', '.join(tcp)} (ZAP domain {sec.zap_domain!r}); server secret key"
                     f" from ${sec.server_secret_key_env}, a strategy host's from ${sec.client_secret_key_env}")  # fmt: skip
        if "report" in tcp:
            lines.append("  reports: a client key receives only the report topics of its own strategies")
        for c in sec.clients:
            lines.append(f"  client {c.name}: may trade as {', '.join(c.strategies)}")
        if not sec.clients:
            lines.append("  no [[security.clients]]: the server would accept no remote strategy")
    m = config.metrics
    lines.append(f"metrics: http://{m.host}:{m.port}/metrics" if m.enabled else "metrics: off")
    return lines


def check_keys(config: Config, environ: Mapping[str, str]) -> list[str]:
    """For ``seqtrade check``: key files must load; say which secret keys the environment holds (masked)."""
    from .security import client_curve, mask, resolve_public_key, server_keypair, server_public_key, uses_tcp

    if not uses_tcp(config):
        return []
    sec = config.security
    server_public_key(config)  # a bad key file is a config error
    for i, c in enumerate(sec.clients):
        resolve_public_key(
            c.public_key, c.public_key_file, config.base_dir, f"security.clients[{i}].public_key"
        )
    out = []
    for what, load in (("server", server_keypair), ("strategy host", client_curve)):
        name = sec.server_secret_key_env if what == "server" else sec.client_secret_key_env
        try:
            load(config, environ)
            out.append(f"{what} secret key: {mask('x')} in ${name}")
        except ConfigError as exc:
            out.append(f"{what} secret key: {mask(None)} ({exc})")
    return out


def _strategies(args: argparse.Namespace) -> int:
    if args.restart:
        print(f"{args.restart}: {_control(args, 'restart_strategy', id=args.restart)}")
        return 0
    result = _control(args, "strategies")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(format_strategies(result))
    return 0


def format_strategies(rows: list[dict]) -> str:  # type: ignore[type-arg]
    """The human form of the ``strategies`` command's answer."""
    if not rows:
        return "no strategies (none in [[strategies]] and none connected)"
    lines = [f"{'strategy':<20} {'state':<18} {'pid':>7} {'restarts':>8} {'exit':>5} {'heartbeat':>9}"]
    for r in rows:
        hb = "-" if r["heartbeat_age"] is None else f"{r['heartbeat_age']:.1f}s"
        pid = "-" if r["pid"] is None else str(r["pid"])
        code = "-" if r["exit_code"] is None else str(r["exit_code"])
        lines.append(f"{r['id']:<20} {r['state']:<18} {pid:>7} {r['restarts']:>8} {code:>5} {hb:>9}")
    lines.extend(f"{r['id']}: last failed exit: {r['last_error']}" for r in rows if r.get("last_error"))
    lines.extend(callback_error_lines({r["id"]: r.get("errors", {}) for r in rows}))
    return "\n".join(lines)


def callback_error_lines(errors: Mapping[str, Mapping[str, int]]) -> list[str]:
    """One line per strategy whose callbacks raised: which, and how often (from its heartbeats)."""
    return [
        f"{sid}: callbacks raised: {', '.join(f'{name} {n:,}' for name, n in sorted(e.items()))}"
        " (the strategy's log has the first traceback of each)"
        for sid, e in errors.items()
        if e and any(e.values())
    ]


def _keygen(args: argparse.Namespace) -> int:
    from .security import keygen, write_public_key

    keys = keygen()
    public, secret = keys.public.decode(), keys.secret.decode()
    if args.out:
        path = write_public_key(
            f"{args.out}.pub", keys.public, comment=f"made by `seqtrade keygen` for {args.out}"
        )
        print(f"public key (written to {path}): {public}")
    else:
        print(f"public key: {public}")
    print(f"secret key: {secret}")
    print("\nThe secret key is shown only this once and is not stored anywhere. Keep it out of files in the repo:"
          "\nput it in the environment of the process that uses it, e.g."
          f"\n  export SEQTRADE_CLIENT_SECRET_KEY='{secret}'   # on a strategy host"
          f"\n  export SEQTRADE_SERVER_SECRET_KEY='{secret}'   # or: on the server"
          "\n(or in a 0600 file named by SEQTRADE_..._SECRET_KEY_FILE). The public key goes in the config:"
          "\nthe server's as security.server_public_key, a client's in [[security.clients]].")  # fmt: skip
    return 0


_CONFIG_HELP = "the config file (default: config.toml in the current directory)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("seqtrade")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _reset(args: argparse.Namespace) -> int:
    """``seqtrade reset``: delete the paper account and the journal (after asking), never while a
    server runs on the run dir; an exchange's journal only with ``--live-journal``."""
    from .bus import lock_run_dir
    from .venues import venue_class

    config = load_config(args.config)
    run_dir = config.run_dir
    venue = venue_class(config.venue.kind)
    files = venue.state_files(config.venue, run_dir)
    if venue.simulated or args.live_journal:
        files += [config.journal_path, config.snapshot_path, config.archive_path]  # the journal's own
    kept = ""
    if not (venue.simulated or args.live_journal):
        kept = (f"kept: {config.journal_path} (venue {config.venue.kind}: the journal maps the orders at the"
                " exchange; pass --live-journal to delete it, after cancelling them there)")  # fmt: skip
    present = [
        f
        for base in files
        for f in (base, *(Path(f"{base}{x}") for x in ("-wal", "-shm", "-log")))
        if f.exists()
    ]
    if kept:
        print(kept)
    if not present:
        print(f"nothing to reset in {run_dir}")
        return 0
    with lock_run_dir(run_dir):  # RunDirLocked (exit 2) while a server runs there
        print("seqtrade reset deletes:")
        for f in present:
            print(f"  {f} ({f.stat().st_size} bytes)")
        if not args.yes:
            try:
                answer = input("delete these files? [y/N] ")
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        for f in present:
            f.unlink()
    print(f"deleted {len(present)} file(s)")
    return 0


@contextlib.contextmanager
def _replay_config(args: argparse.Namespace, what: str) -> Iterator[Config]:
    """The config of a replay or a backtest: the one given, with its own run dir (never the live
    journal) and no recorder. The supervised strategies read the config file for the server's sockets:
    a copy beside it (its relative paths stay right) with that run dir, removed at the end."""
    from .replay import with_run_dir

    config = load_config(args.config)
    run_dir = args.run_dir or f"{config.server.run_dir.rstrip('/')}-{what}"
    source = Path(config.source_path)
    derived = source.with_name(f".{source.stem}.{what}.toml")
    try:
        derived.write_text(with_run_dir(source.read_text(encoding="utf-8"), run_dir), encoding="utf-8")
    except OSError as exc:
        raise SeqtradeError(f"{what}: cannot write {derived}: {exc.strerror or exc}") from None
    try:
        yield dataclasses.replace(
            load_config(derived),
            source_path=str(derived),
            recorder=dataclasses.replace(config.recorder, enabled=False),  # a replay is not recorded again
        )
    finally:
        derived.unlink(missing_ok=True)


def _replay(args: argparse.Namespace) -> int:
    """``seqtrade replay``: the server with a recording in place of the venue (docs/backtesting.md)."""
    import trio

    from .replay import ReplayVenue
    from .security import server_keypair
    from .server.app import run_until_signal

    with _replay_config(args, "replay") as config:
        setup_logging(args.log_level or config.server.log_level, json_logs=config.server.log_json)
        wait_for = args.wait_for if args.wait_for is not None else sum(s.enabled for s in config.strategies)
        venue = ReplayVenue(Path(args.data), list(config.venue.symbols), speed=args.speed, wait_for=wait_for,
                            linger=args.linger)  # fmt: skip
        curve_keys = server_keypair(config, os.environ)
        log.info("seqtrade replaying %s on %s (run dir %s)", args.data, ", ".join(config.venue.symbols),
                 config.run_dir)  # fmt: skip
        try:
            return trio.run(functools.partial(run_until_signal, config, venue, curve_keys=curve_keys))
        except BaseExceptionGroup as eg:
            raise _lone_error(eg) from None


def _backtest(args: argparse.Namespace) -> int:
    """``seqtrade backtest``: strategies trade a recording on its clock (docs/backtesting.md)."""
    import trio

    from .backtest_report import write_results
    from .backtest_results import progress_line
    from .fill_model import Fees
    from .replay_backtest import BacktestVenue
    from .security import server_keypair
    from .server.app import run_until_signal
    from .vclock import VIRTUAL_CLOCK_ENV
    from .venues.contracts import swap_contracts

    with _replay_config(args, "backtest") as config:
        setup_logging(args.log_level or config.server.log_level, json_logs=config.server.log_json)
        bt, flags = _backtest_settings(args, config)
        live = load_config(args.config)
        if config.run_dir == live.run_dir:
            raise SeqtradeError("backtest: --run-dir must not be the live server's run dir")
        latency = _backtest_latency(args, bt)
        print(describe_backtest(bt, flags))
        # A backtest starts from an empty journal: the same run gives the same journal.
        for f in config.journal_path.parent.glob(config.journal_path.name + "*"):
            f.unlink()
        os.environ[VIRTUAL_CLOCK_ENV] = "1"  # the supervised strategies' clock is the recording's
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            if not args.quiet:
                print(progress_line(done, total, time.monotonic() - started), file=sys.stderr, flush=True)

        wait_for = sum(s.enabled for s in config.strategies)
        venue = BacktestVenue(Path(args.data), list(config.venue.symbols),
                              fees=Fees(maker=bt.maker_fee, taker=bt.taker_fee),
                              latency=latency, lookahead_ns=int(bt.lookahead_ms * 1e6),
                              wait_for=wait_for, progress=progress, period_s=bt.sharpe_period,
                              hold=args.hold, queue=FILL_MODELS[bt.fill_model],
                              contracts=swap_contracts(config.venue),
                              play_ahead=not args.no_play_ahead)  # fmt: skip
        venue.settings = backtest_model(bt)  # in results.json and the dashboard's results
        curve_keys = server_keypair(config, os.environ)
        try:
            code = trio.run(functools.partial(run_until_signal, config, venue, curve_keys=curve_keys))
        except BaseExceptionGroup as eg:
            raise _lone_error(eg) from None
        if not venue.finished.is_set():
            return code or 1
        if "out" in flags:  # a flag's path is the shell's: relative to the current directory
            out = Path(bt.out)
        else:  # the file's relative to the file, as every path in it
            out = Path(config.base_dir, os.path.expanduser(bt.out)) if bt.out else Path("backtest-results")
        r = venue.results(bt.sharpe_period)
        written = write_results(r, out, plot=bt.plot)
        for name, summary in [*r.strategies.items(), ("account", r.account)]:
            print(f"{name}: net {summary.net_pnl:.6g} (realised {summary.realised_pnl:.6g}, unrealised "
                  f"{summary.unrealised_pnl:.6g}, fees {summary.fees:.6g}), {summary.fills} fills, "
                  f"{summary.trades} trades, max drawdown {summary.max_drawdown:.6g}")  # fmt: skip
        print("results: " + ", ".join(str(p) for p in written))
        if args.compare_live:
            from .backtest_live import compare_live

            _r, text, path = compare_live(venue, Path(args.compare_live), Path(args.data), out)
            print(text)
            print(f"live vs replay: {path}")
        return code


FILL_MODELS = {"queue": "book", "touch": "none"}  # backtest.fill_model -> fill_model.FillModel(queue=...)

# Each [backtest] key (seqtrade.config.BacktestConfig) and the flag of `seqtrade backtest` that overrides
# it (docs/backtesting.md, "Backtesting"). A flag left out is None in the parsed arguments: the file's
# value (or the key's default) stands. A new choice is a key there and a line here (and in the docs' table).
BACKTEST_FLAGS = {
    "fill_model": "--fill-model",
    "latency": "--latency",
    "latency_ms": "--latency-ms",
    "latency_sigma": "--latency-sigma",
    "latency_seed": "--latency-seed",
    "lookahead_ms": "--lookahead-ms",
    "maker_fee": "--maker-fee",
    "taker_fee": "--taker-fee",
    "sharpe_period": "--sharpe-period",
    "plot": "--plot/--no-plot",
    "out": "--out",
}


# The flags of BACKTEST_FLAGS: argparse's arguments and the help text (the key and its default follow).
_BACKTEST_FLAG_ARGS: list[tuple[str, dict[str, Any], str]] = [
    ("out", {"metavar": "DIR"}, "results.json and equity.png go here"),
    ("fill_model", {"choices": tuple(FILL_MODELS)},
     "queue: limit orders wait behind the recorded size at their price; touch: first at its level,"
     " filled by a trade at its price (the paper venue's matching rules)"),
    ("latency", {"choices": ("constant", "lognormal", "recorded")},
     "order, cancel and amend latency: --latency-ms each, log-normal around --latency-ms, or drawn"
     " from the latencies the recorder measured live"),
    ("latency_ms", {"type": float}, "the constant latency, or the log-normal's median"),
    ("latency_sigma", {"type": float}, "the log-normal's sigma, of the log"),
    ("latency_seed", {"type": int}, "seed of the latency draws"),
    ("lookahead_ms", {"type": float}, "the simulation's window, at most the latency"),
    ("maker_fee", {"type": float}, "fraction of the notional on resting fills"),
    ("taker_fee", {"type": float}, "fraction of the notional on fills at arrival"),
    ("sharpe_period", {"type": float, "metavar": "SECONDS"}, "the equity's sampling period for the Sharpe ratio"),
    ("plot", {"action": argparse.BooleanOptionalAction}, "--no-plot: no equity.png, no matplotlib needed"),
]  # fmt: skip


def _backtest_settings(args: argparse.Namespace, config: Config) -> tuple[BacktestConfig, dict[str, Any]]:
    """The config's ``[backtest]`` with the flags given over it, checked; and the flags given."""
    from .config import backtest_settings

    flags = {k: getattr(args, k) for k in BACKTEST_FLAGS if getattr(args, k) is not None}
    return backtest_settings(config.backtest, flags, BACKTEST_FLAGS), flags


def backtest_model(bt: BacktestConfig) -> dict[str, Any]:
    """The choices that make a backtest's fills and figures (results.json's ``settings``): not where its
    files go, so two runs into two directories give the same bytes."""
    out = dataclasses.asdict(bt)
    for key in ("out", "plot"):
        del out[key]
    return out


def describe_backtest(bt: BacktestConfig, flags: Mapping[str, Any]) -> str:
    """One line: the backtest's choices, and which came from flags rather than ``[backtest]``."""
    lat = {"constant": f"constant {bt.latency_ms:g} ms",
           "lognormal": f"lognormal median {bt.latency_ms:g} ms sigma {bt.latency_sigma:g} seed {bt.latency_seed}",
           "recorded": f"recorded (drawn, seed {bt.latency_seed})"}[bt.latency]  # fmt: skip
    given = [BACKTEST_FLAGS[k] for k in BACKTEST_FLAGS if k in flags]
    return (f"backtest: fill model {bt.fill_model}, latency {lat}, lookahead {bt.lookahead_ms:g} ms, fees maker"
            f" {bt.maker_fee:g} taker {bt.taker_fee:g}, sharpe period {bt.sharpe_period:g} s"
            f" ([backtest]{'; overridden by ' + ', '.join(given) if given else ''})")  # fmt: skip


def _backtest_latency(args: argparse.Namespace, bt: BacktestConfig | None = None) -> Latency:
    """The fill model's latency from ``bt.latency`` (docs/backtesting.md, "The fill model"); without
    ``bt``, from the flags over the defaults."""
    from .fill_model import AtLeast, ConstantLatency, EmpiricalLatency, LogNormalLatency

    if bt is None:
        bt = _backtest_settings(args, Config())[0]
    ns, floor = int(bt.latency_ms * 1e6), int(bt.lookahead_ms * 1e6)
    if bt.latency == "constant":
        return ConstantLatency(ns)
    if bt.latency == "lognormal":
        return AtLeast(LogNormalLatency(ns, bt.latency_sigma, bt.latency_seed), floor)
    from .backtest_live import recorded_latencies

    samples = recorded_latencies(Path(args.data))
    if not samples:
        given = "--latency recorded" if args.latency else "backtest.latency = 'recorded'"
        raise SeqtradeError(f"backtest: {given}, but {args.data} holds no measured order latency")
    return AtLeast(EmpiricalLatency(samples, bt.latency_seed), floor)


def _new_strategy(args: argparse.Namespace) -> int:
    from .strategy_template import NAME_RE, render_strategy

    if not NAME_RE.match(args.name):
        raise SeqtradeError(
            f"new-strategy: {args.name!r} is not a valid name (a letter, then letters, digits or '_'; at most 32)"
        )
    path = Path(args.dir, f"{args.name}.py")
    if path.exists():
        raise SeqtradeError(f"new-strategy: {path} exists; not overwritten")
    try:
        with open(path, "x", encoding="utf-8") as f:
            f.write(render_strategy(args.name))
    except OSError as exc:
        raise SeqtradeError(f"new-strategy: cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}\nrun it against a running server:  seqtrade run {path} --id {args.name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seqtrade", description="live-trading gateway for Python strategies")
    p.add_argument("--version", action="version", version=f"seqtrade {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway server")
    s.add_argument("--config", default="config.toml", help=_CONFIG_HELP)
    s.add_argument("--log-level", default=None)
    s.add_argument("--plain", action="store_true",
                   help="plain log lines even on a terminal (default there: a live view; docs/operations.md)")  # fmt: skip
    s.set_defaults(func=_serve)

    r = sub.add_parser(
        "run", help="run a strategy (a .py file or a module) against a running server", add_help=False
    )
    r.set_defaults(func=None)

    c = sub.add_parser("check", help="validate a config and print what it would do")
    c.add_argument("--config", default="config.toml", help=_CONFIG_HELP)
    c.set_defaults(func=_check)

    st = sub.add_parser("status", help="show a running server's state (venue, strategies, accounts)")
    st.add_argument("--config", default="config.toml", help=_CONFIG_HELP)
    st.add_argument("--json", action="store_true", help="print the raw answer as JSON")
    st.set_defaults(func=_status)

    for name, what in (("halt", "refuse every new order and amend (cancels pass)"),
                       ("reduce", "let through only orders that shrink a position"),
                       ("resume", "back to active trading")):  # fmt: skip
        t = sub.add_parser(name, help=f"{what}: globally, or for one strategy")
        t.add_argument("--config", default="config.toml", help=_CONFIG_HELP)
        t.add_argument("--strategy", default=None, metavar="ID", help="only this strategy")
        t.set_defaults(func=_trading_state)

    sp = sub.add_parser("strategies", help="list strategies: supervised state, pid, restarts, last heartbeat")
    sp.add_argument("--config", default="config.toml", help=_CONFIG_HELP)
    sp.add_argument("--json", action="store_true", help="print the raw answer as JSON")
    sp.add_argument(
        "--restart", metavar="ID", default=None, help="start a stopped or crash-looping strategy again"
    )
    sp.set_defaults(func=_strategies)

    rs = sub.add_parser(
        "reset", help="delete the paper account and the journal of a config's run dir (asks first)"
    )
    rs.add_argument("--config", default="config.toml", help=_CONFIG_HELP)
    rs.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    rs.add_argument(
        "--live-journal",
        action="store_true",
        help="with venue.kind other than paper: delete the journal too (it maps the orders at the exchange)",
    )
    rs.set_defaults(func=_reset)

    ns = sub.add_parser("new-strategy", help="write a commented starting point for a strategy: NAME.py")
    ns.add_argument("name", metavar="NAME", help="file and class name, e.g. my_strategy")
    ns.add_argument("--dir", default=".", help="where to write NAME.py (default: the current directory)")
    ns.set_defaults(func=_new_strategy)

    rp = sub.add_parser("replay", help="serve a recording's market data to strategies (no trading)")
    rp.add_argument(
        "--data", required=True, metavar="DIR", help="a recording: the [recorder] dir, e.g. run/recordings"
    )
    rp.add_argument(
        "--config", default="config.toml", help=_CONFIG_HELP + " (its symbols and [[strategies]])"
    )
    rp.add_argument("--speed", type=float, default=1.0,
                    help="1 = the recorded pace (default), 10 = ten times faster, 0 = as fast as possible")  # fmt: skip
    rp.add_argument("--run-dir", default=None, help="the replay server's run dir (default: <run_dir>-replay)")
    rp.add_argument("--wait-for", type=int, default=None, metavar="N",
                    help="start once N strategies joined (default: the config's [[strategies]])")  # fmt: skip
    rp.add_argument("--linger", type=float, default=1.0, metavar="SECONDS",
                    help="after the last message, this long before the server stops (default 1)")  # fmt: skip
    rp.add_argument("--log-level", default=None)
    rp.set_defaults(func=_replay)

    bt = sub.add_parser("backtest", help="strategies trade a recording on its clock, fills by the fill model",
                        epilog="Each choice of the fill model and the results is a key of the config's [backtest]"
                        " section (docs/backtesting.md); a flag given wins over it, one left out does not.")  # fmt: skip
    bt.add_argument("--data", required=True, metavar="DIR", help="a recording: the [recorder] dir")
    bt.add_argument(
        "--config", default="config.toml", help=_CONFIG_HELP + " (its symbols and [[strategies]])"
    )
    bt.add_argument(
        "--run-dir", default=None, help="the backtest server's run dir (default: <run_dir>-backtest)"
    )
    bt.add_argument("--compare-live", default=None, metavar="RUN_DIR",
                    help="then compare with the live run that made the recording: its run dir (journal)")  # fmt: skip
    bt.add_argument("--no-play-ahead", action="store_true",
                    help="the fill model plays each window only after every strategy's answer to the one"
                    " before (slower; the same results: docs/backtesting.md, \"How fast\")")  # fmt: skip
    # The fill model's and the results' choices: [backtest] in the config file, each overridden by its
    # flag when given (default None: not given). The defaults shown are BacktestConfig's.
    for key, kw, what in _BACKTEST_FLAG_ARGS:
        d = getattr(BacktestConfig(), key)
        shown = f"{d:g}" if isinstance(d, float) else str(d).lower() or "backtest-results"
        bt.add_argument(BACKTEST_FLAGS[key].split("/")[0], dest=key, default=None, **kw,
                        help=f"{what} (backtest.{key}; default {shown})")  # fmt: skip
    bt.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    bt.add_argument("--hold", action="store_true",
                    help="at the end, keep the server and its dashboard's results page up until Ctrl-C")  # fmt: skip
    bt.add_argument("--log-level", default=None)
    bt.set_defaults(func=_backtest)

    k = sub.add_parser("keygen", help="make a CurveZMQ key pair for tcp:// endpoints")
    k.add_argument("--out", metavar="NAME", default=None, help="write the public key to NAME.pub")
    k.set_defaults(func=_keygen)

    b = sub.add_parser(
        "bench", help="latency benchmark against raw pyzmq, measured in the same run", add_help=False
    )
    b.set_defaults(func=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        from .client.cli import main as run_main

        return run_main(argv[1:])
    if argv and argv[0] == "bench":
        from .bench import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, not at exit: a reader that went away is handled below
        return code
    except SeqtradeError as exc:
        print(f"seqtrade: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """stdout's reader went away (``seqtrade status | head``): stop quietly, as Unix tools do. stdout
    now points at /dev/null so that the interpreter's last flush at exit finds nowhere to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13  # killed by SIGPIPE, as the shell reports it: the output was cut short


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":  # `python -m seqtrade.cli`: how the supervisor starts strategies
    console_main()
