"""The ``seqtrade`` command: ``serve``, ``run``, ``check``, ``bench``, ...

``main(argv) -> int`` is testable without a subprocess. This is the only module that reads files and
the environment on the server side (config file, OKX keys).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence

from .config import Config, load_config
from .errors import SeqtradeError

__all__ = ["main", "console_main", "setup_logging"]

log = logging.getLogger("seqtrade")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
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


def _serve(args: argparse.Namespace) -> int:
    import trio

    from .server.app import run_until_signal
    from .venues import make_venue

    config = load_config(args.config)
    setup_logging(args.log_level or config.server.log_level, json_logs=config.server.log_json)
    venue = make_venue(config, os.environ)
    log.info("seqtrade serving %s on %s (run dir %s)", config.venue.kind, ", ".join(config.venue.symbols), config.run_dir)
    return trio.run(run_until_signal, config, venue)


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(describe(config))
    return 0


def describe(config: Config) -> str:
    """What a config would do, in words (``seqtrade check``)."""
    v = config.venue
    lines = [
        f"venue: {v.kind} ({'demo' if v.okx.demo else 'LIVE'} trading)" if v.kind == "okx" else f"venue: {v.kind}",
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
    if v.kind == "okx":
        o = v.okx
        lines.append(f"okx: rest {o.rest_url}, orders over {o.order_transport}, keys from ${o.api_key_env}, "
                     f"${o.secret_key_env}, ${o.passphrase_env}")  # fmt: skip
    if config.strategies:
        lines.append("strategies:")
        for s in config.strategies:
            lines.append(f"  {s.id}: {s.path or s.module} restart={s.restart}{'' if s.enabled else ' (disabled)'}")
    return "\n".join(lines)


def _control(args: argparse.Namespace, cmd: str, **kw: object) -> object:
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
    for extra in st.get("sections", []):
        lines.append(extra)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seqtrade", description="live-trading gateway for Python strategies")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway server")
    s.add_argument("--config", default="config.toml")
    s.add_argument("--log-level", default=None)
    s.set_defaults(func=_serve)

    r = sub.add_parser("run", help="run a strategy (a .py file or a module) against a running server", add_help=False)
    r.set_defaults(func=None)

    c = sub.add_parser("check", help="validate a config and print what it would do")
    c.add_argument("--config", default="config.toml")
    c.set_defaults(func=_check)

    st = sub.add_parser("status", help="show a running server's state (venue, strategies, accounts)")
    st.add_argument("--config", default="config.toml")
    st.add_argument("--json", action="store_true", help="print the raw answer as JSON")
    st.set_defaults(func=_status)

    b = sub.add_parser("bench", help="latency benchmark against raw pyzmq, measured in the same run", add_help=False)
    b.set_defaults(func=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        from .client.runner import main as run_main

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


if __name__ == "__main__":
    console_main()
