"""The ``seqtrade`` command: ``serve``, ``run``, ``check``, ``bench``, ...

``main(argv) -> int`` is testable without a subprocess. This is the only module that reads files and
the environment on the server side (config file, venue keys). Every :class:`~seqtrade.errors.SeqtradeError`
ends a command with one ``seqtrade: error: ...`` line on stderr and exit code 2, start-up failures of
``serve`` included (a locked run dir, an ipc path too long, a journal that cannot be opened).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .config import Config, load_config
from .errors import ConfigError, SeqtradeError

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


def setup_logging(level: str = "INFO", *, json_logs: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "trio-websocket"):  # one line per request: too much at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _serve(args: argparse.Namespace) -> int:
    import trio

    from .security import server_keypair
    from .server.app import run_until_signal
    from .venues import venue_from_config

    config = load_config(args.config)
    setup_logging(args.log_level or config.server.log_level, json_logs=config.server.log_json)
    for note in config.deprecations:
        log.warning("%s", note)
    venue = venue_from_config(config, os.environ)
    curve_keys = server_keypair(config, os.environ)  # None unless an endpoint is tcp://
    log.info(
        "seqtrade serving %s on %s (run dir %s)",
        config.venue.kind,
        ", ".join(config.venue.symbols),
        config.run_dir,
    )
    try:
        return trio.run(functools.partial(run_until_signal, config, venue, curve_keys=curve_keys))
    except BaseExceptionGroup as eg:
        raise _lone_error(eg) from None


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
    print(describe(config))
    for note in config.deprecations:
        print(f"warning: {note}")
    for line in check_keys(config, os.environ):
        print(line)
    return 0


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
        lines.append(f"{'strategy':<20} {'alive':<6} {'heartbeat':>9} {'seq':>7} {'open':>5}")
        for sid, s in strategies.items():
            lines.append(f"{sid:<20} {'yes' if s['alive'] else 'NO':<6} {s['heartbeat_age']:>8.1f}s"
                         f" {s['last_seq']:>7} {s['open_orders']:>5}")  # fmt: skip
    from .server.guard import format_guard_status

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
    return "\n".join(lines)


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seqtrade", description="live-trading gateway for Python strategies")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway server")
    s.add_argument("--config", default="config.toml")
    s.add_argument("--log-level", default=None)
    s.set_defaults(func=_serve)

    r = sub.add_parser(
        "run", help="run a strategy (a .py file or a module) against a running server", add_help=False
    )
    r.set_defaults(func=None)

    c = sub.add_parser("check", help="validate a config and print what it would do")
    c.add_argument("--config", default="config.toml")
    c.set_defaults(func=_check)

    st = sub.add_parser("status", help="show a running server's state (venue, strategies, accounts)")
    st.add_argument("--config", default="config.toml")
    st.add_argument("--json", action="store_true", help="print the raw answer as JSON")
    st.set_defaults(func=_status)

    for name, what in (("halt", "refuse every new order and amend (cancels pass)"),
                       ("reduce", "let through only orders that shrink a position"),
                       ("resume", "back to active trading")):  # fmt: skip
        t = sub.add_parser(name, help=f"{what}: globally, or for one strategy")
        t.add_argument("--config", default="config.toml")
        t.add_argument("--strategy", default=None, metavar="ID", help="only this strategy")
        t.set_defaults(func=_trading_state)

    sp = sub.add_parser("strategies", help="list strategies: supervised state, pid, restarts, last heartbeat")
    sp.add_argument("--config", default="config.toml")
    sp.add_argument("--json", action="store_true", help="print the raw answer as JSON")
    sp.add_argument(
        "--restart", metavar="ID", default=None, help="start a stopped or crash-looping strategy again"
    )
    sp.set_defaults(func=_strategies)

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
        return int(args.func(args))
    except SeqtradeError as exc:
        print(f"seqtrade: error: {exc}", file=sys.stderr)
        return 2


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":  # `python -m seqtrade.cli`: how the supervisor starts strategies
    console_main()
