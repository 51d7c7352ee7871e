"""Command lines that run a strategy: ``seqtrade run file.py`` and ``python -m my_strategy``."""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import load_config
from ..errors import SeqtradeError
from .loading import load_strategy
from .runner import DEFAULT_JOIN_TIMEOUT, Endpoints, run_strategy
from .strategy import Strategy

__all__ = ["add_run_arguments", "endpoints_from_args", "run_from_args", "run", "main"]


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--param takes KEY=VALUE, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key, parsed


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--id", dest="strategy_id", help="strategy id (default: the class name in lower case)")
    p.add_argument(
        "--config",
        default=None,
        help="server config file, for its endpoints (default: ./config.toml if present)",
    )
    p.add_argument("--run-dir", default=None, help="the server's run directory (instead of --config)")
    p.add_argument("--param", action="append", default=[], type=_parse_param, metavar="KEY=VALUE",
                   help="a strategy parameter (TOML value); repeatable")  # fmt: skip
    p.add_argument(
        "--join-timeout", type=float, default=DEFAULT_JOIN_TIMEOUT, metavar="SECONDS",
        help=f"give up (exit code 2) if the server has not answered by then; 0: wait for ever "
             f"(default: {DEFAULT_JOIN_TIMEOUT:g})",
    )  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true")


def endpoints_from_args(args: argparse.Namespace) -> Endpoints:
    if args.run_dir:
        return Endpoints.from_run_dir(args.run_dir)
    cfg_path = args.config or ("config.toml" if Path("config.toml").is_file() else None)
    if cfg_path:
        return Endpoints.from_config(load_config(cfg_path))
    return Endpoints.from_run_dir("run")


def run_from_args(
    cls: type[Strategy], args: argparse.Namespace, extra_params: dict[str, Any] | None = None
) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    params = dict(extra_params or {})
    params.update(dict(args.param))
    strategy = cls(**params)
    sid = args.strategy_id or cls.__name__.lower()[:32]
    join_timeout = args.join_timeout if args.join_timeout > 0 else None
    return run_strategy(strategy, sid, endpoints_from_args(args), join_timeout=join_timeout)


def run(cls: type[Strategy], argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m my_strategy``: ``if __name__ == "__main__": sys.exit(run(MyStrategy))``."""
    p = argparse.ArgumentParser(description=f"run the {cls.__name__} strategy")
    add_run_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_from_args(cls, args)
    except SeqtradeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``seqtrade run path/to/strategy.py [--id NAME]``."""
    p = argparse.ArgumentParser(prog="seqtrade run", description="run a strategy against a running server")
    p.add_argument("target", help="a strategy .py file or an importable module (optionally :ClassName)")
    add_run_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_from_args(load_strategy(args.target), args)
    except SeqtradeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
