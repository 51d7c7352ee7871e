"""The strategy process: sockets, the join handshake, seq de-duplication and the event loop.

The loop is a plain blocking ``zmq.Poller`` loop on the strategy's own thread, not Trio or asyncio:
a strategy's callback latency is the product, and a blocking wait is what raw pyzmq measures
(bench/README.md, "The strategy's event loop": an async loop costs tens of µs per wake-up). Timers and the heartbeat are driven by the
poll timeout. ``seqtrade bench`` measures the result against raw pyzmq in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import zmq

from .. import wire
from ..config import Config, load_config
from ..errors import SeqtradeError, WireError
from ..models import Book, Heartbeat, Hello, OrderReport, Ticker, Trade, VenueStatus, Welcome
from ..security import ClientCurve, apply_client_curve, client_curve
from .strategy import Strategy

__all__ = ["Endpoints", "Connection", "run_strategy", "run", "load_strategy", "main"]

log = logging.getLogger("seqtrade.client")
_decode_ticker = wire.decode_ticker_frame

HELLO_INTERVAL = 0.1  # docs/protocol.md: re-send hello every 100 ms until welcome
HEARTBEAT_INTERVAL = 1.0  # docs/protocol.md: a heartbeat every second
# A hello now and then, even with no gap in sight: a report the server's PUB dropped at the end of a
# burst leaves no gap until the next report arrives. The welcome's last_seq shows it, and the server
# replays it. One journal query per strategy per interval on the server.
SYNC_INTERVAL = 5.0
MAX_POLL = 0.25  # the longest the loop sleeps: bounds how late stop() is noticed
STALL = 1.0  # a loop iteration this late (SIGSTOP, a slow callback): re-join, the tail may have been dropped


@dataclass(frozen=True)
class Endpoints:
    """Where the server's three sockets are: market data, orders, reports (docs/protocol.md)."""

    md: str
    order: str
    report: str
    curve: ClientCurve | None = None  # CurveZMQ keys, required for tcp:// endpoints

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str] | None = None) -> Endpoints:
        """The config's endpoints; for tcp:// ones also the CURVE keys (the secret from the environment)."""
        curve = client_curve(config, os.environ if environ is None else environ)
        return cls(config.endpoint("md"), config.endpoint("order"), config.endpoint("report"), curve)

    @classmethod
    def from_run_dir(cls, run_dir: str | os.PathLike[str]) -> Endpoints:
        d = Path(run_dir).resolve()
        return cls(f"ipc://{d / 'md.ipc'}", f"ipc://{d / 'order.ipc'}", f"ipc://{d / 'report.ipc'}")


class Connection:
    """The strategy's three sockets. Owned by the strategy's thread."""

    def __init__(
        self, endpoints: Endpoints, strategy_id: str, *, context: zmq.Context[Any] | None = None
    ) -> None:
        self.ctx = context or zmq.Context.instance()
        self.strategy_id = strategy_id
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 2000)  # let the last orders/cancels out on stop
        self.push.setsockopt(zmq.SNDHWM, 100_000)
        apply_client_curve(self.push, endpoints.order, endpoints.curve)
        self.push.connect(endpoints.order)
        self.md = self.ctx.socket(zmq.SUB)
        self.md.setsockopt(zmq.RCVHWM, 1_000_000)
        self.md.setsockopt(zmq.LINGER, 0)
        apply_client_curve(self.md, endpoints.md, endpoints.curve)
        self.md.connect(endpoints.md)
        self.reports = self.ctx.socket(zmq.SUB)
        self.reports.setsockopt(zmq.RCVHWM, 1_000_000)
        self.reports.setsockopt(zmq.LINGER, 0)
        self.reports.setsockopt(zmq.SUBSCRIBE, wire.topic("report", strategy_id))
        apply_client_curve(self.reports, endpoints.report, endpoints.curve)
        # (Re)connections of the report socket: reports published while it was disconnected (a server
        # restart) never arrive, so the session re-joins with a hello after each one.
        self.report_events = self.reports.get_monitor_socket(zmq.EVENT_CONNECTED)
        self.reports.connect(endpoints.report)

    def subscribe(self, kind: str, key: str) -> None:
        self.md.setsockopt(zmq.SUBSCRIBE, wire.topic(kind, key))

    def send(self, msg: Any) -> None:
        """Queue one request frame; raises if the order channel stays full for a second."""
        frame = wire.encode_message(msg)
        try:
            self.push.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            if not self.push.poll(1000, zmq.POLLOUT):
                raise SeqtradeError(
                    "order channel is full: the server is not reading (is it running?)"
                ) from None
            self.push.send(frame, zmq.NOBLOCK)

    def close(self) -> None:
        self.md.close()
        self.reports.disable_monitor()
        self.report_events.close(linger=0)
        self.reports.close()
        self.push.close()


def _overrides(strategy: Strategy, name: str) -> bool:
    return getattr(type(strategy), name) is not getattr(Strategy, name)


class _Session:
    """Handshake, report de-duplication and dispatch for one running strategy."""

    def __init__(self, strategy: Strategy, conn: Connection) -> None:
        self.s = strategy
        self.conn = conn
        self.last_seq = 0
        self.nonce: str = ""
        self.joined = False
        self.next_hello = 0.0
        self.status_seq = 0
        self.md_seq: dict[tuple[str, str], int] = {}
        self.ticker_seq: dict[str, int] = {}  # the fast path's own seq per symbol
        self.errors = 0

    # -------------------------------------------------------------- reports

    def hello(self) -> None:
        self.nonce = secrets.token_hex(8)
        self.conn.send(Hello(self.conn.strategy_id, self.last_seq, self.nonce))
        self.next_hello = time.monotonic() + HELLO_INTERVAL

    def resend_hello_if_due(self, now: float) -> None:
        if self.nonce and now >= self.next_hello:
            # Same nonce is not required; the newest last_seq is what matters.
            self.conn.send(Hello(self.conn.strategy_id, self.last_seq, self.nonce))
            self.next_hello = now + HELLO_INTERVAL

    def on_report_frame(self, frame: bytes) -> None:
        try:
            msg = wire.decode_message(frame)
        except WireError as exc:
            log.warning("dropped a bad report frame: %s", exc)
            return
        if isinstance(msg, Welcome):
            if msg.nonce == self.nonce:
                if msg.last_seq > self.last_seq:
                    # Part of the replay was dropped on the way (PUB high-water mark): ask again.
                    log.info("welcome at seq %d but we have %d: re-joining", msg.last_seq, self.last_seq)
                    self.hello()
                    return
                self.nonce = ""
                if msg.last_seq < self.last_seq:
                    # The server's journal is behind us (an OS crash with synchronous=normal, or a reset):
                    # its next reports reuse seqs we saw. Follow the server, or we would drop them as
                    # duplicates.
                    log.error("server holds reports up to seq %d but we handled %d: following the server",
                              msg.last_seq, self.last_seq)  # fmt: skip
                    self.last_seq = msg.last_seq
                self.s._reset_open_orders({r.client_order_id: r for r in msg.open_orders})
                if not self.joined:
                    self.joined = True
            return
        if not isinstance(msg, OrderReport):
            return
        if msg.seq <= self.last_seq:
            return  # a duplicate: already handled
        if msg.seq != self.last_seq + 1:
            # A gap: something was dropped on the way. Ask again from where we are.
            if not self.nonce:
                log.info("report gap: have %d, got %d: re-joining", self.last_seq, msg.seq)
                self.hello()
            return
        self.last_seq = msg.seq
        self.s._apply_report(msg)
        if self.joined:
            self.call(self.s.on_order, msg)

    # -------------------------------------------------------------- market data

    def on_md_frame(self, frame: bytes) -> None:
        # Tickers are most of the traffic: the specialised decoder, the gap check and the callback
        # inline. Anything else, or a ticker the fast decoder does not take, is decoded the long way.
        t = _decode_ticker(frame)
        if t is None:
            try:
                msg = wire.decode_message(frame)
            except WireError as exc:
                log.warning("dropped a bad market-data frame: %s", exc)
                return
            if not isinstance(msg, Ticker):
                self._on_other_md(msg)
                return
            t = msg
        last = self.ticker_seq.get(t.symbol)
        if last is not None and t.seq > last + 1:
            self.s.md_gaps += t.seq - last - 1
        self.ticker_seq[t.symbol] = t.seq
        try:
            self.s.on_ticker(t)
        except Exception:  # a strategy's bug must not end its process silently mid-trade
            self.errors += 1
            log.exception("on_ticker raised")

    def _on_other_md(self, msg: Any) -> None:
        if isinstance(msg, Book):
            self._gap("book", msg.symbol, msg.seq)
            self.call(self.s.on_book, msg)
        elif isinstance(msg, Trade):
            self._gap("trade", msg.symbol, msg.seq)
            self.call(self.s.on_trade, msg)
        elif isinstance(msg, VenueStatus):
            if msg.seq < self.status_seq and not self.nonce:
                # The server restarted: re-join so nothing published before we reconnected is lost.
                log.info("server restarted: re-joining from seq %d", self.last_seq)
                self.hello()
            self.status_seq = msg.seq
            self.call(self.s.on_status, msg)

    def _gap(self, kind: str, symbol: str, seq: int) -> None:
        key = (kind, symbol)
        last = self.md_seq.get(key)
        if last is not None and seq > last + 1:
            self.s.md_gaps += seq - last - 1
        self.md_seq[key] = seq

    def call(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a strategy's bug must not end its process silently mid-trade
            self.errors += 1
            log.exception("%s raised", getattr(fn, "__name__", fn))


def run_strategy(
    strategy: Strategy,
    strategy_id: str,
    endpoints: Endpoints,
    *,
    join_timeout: float | None = None,
    context: zmq.Context[Any] | None = None,
) -> int:
    """Run ``strategy`` until it stops; returns a process exit code.

    Joins as docs/protocol.md says (hello every 100 ms until the welcome with our nonce; every report
    replayed while joining updates state without calling ``on_order``), then calls ``on_start`` and
    dispatches until ``stop()``, SIGINT or SIGTERM. ``join_timeout`` None waits for the server for ever.
    """
    if not wire.STRATEGY_ID_RE.match(strategy_id):
        raise SeqtradeError(f"strategy id {strategy_id!r} must match [A-Za-z0-9_-]{{1,32}}")
    conn = Connection(endpoints, strategy_id, context=context)
    strategy.strategy_id = strategy_id
    strategy._conn = conn
    sess = _Session(strategy, conn)
    subscribed = []
    for sym in strategy.symbols:
        conn.subscribe("ticker", sym)
        if _overrides(strategy, "on_book"):
            conn.subscribe("book", sym)
        if _overrides(strategy, "on_trade"):
            conn.subscribe("trade", sym)
        subscribed.append(sym)
    conn.md.setsockopt(zmq.SUBSCRIBE, b"status/")
    poller = zmq.Poller()
    poller.register(conn.reports, zmq.POLLIN)
    poller.register(conn.md, zmq.POLLIN)
    poller.register(conn.report_events, zmq.POLLIN)
    rep_sock, md_sock = conn.reports, conn.md
    restore = _install_stop_signals(strategy)
    started = False
    try:
        # ---------------------------------------------------------- join
        sess.hello()
        deadline = None if join_timeout is None else time.monotonic() + join_timeout
        while not sess.joined and not strategy._stop:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                log.error(
                    "no welcome from the server within %.1f s (is it running at %s?)",
                    join_timeout,
                    endpoints.report,
                )
                return 2
            sess.resend_hello_if_due(now)
            if rep_sock.poll(int(HELLO_INTERVAL * 1000), zmq.POLLIN):
                _drain(rep_sock, sess.on_report_frame)
        if strategy._stop:
            return 0
        log.info("%s joined as %s: last seq %d, %d open orders, symbols %s", type(strategy).__name__, strategy_id,
                 sess.last_seq, len(strategy.open_orders), ", ".join(subscribed) or "-")  # fmt: skip
        _drain(conn.report_events, lambda _: None)  # the first connection: the join covered it
        started = True
        sess.call(strategy.on_start)
        # ---------------------------------------------------------- run
        next_hb = 0.0
        last_loop = time.monotonic()
        next_sync = last_loop + SYNC_INTERVAL
        while not strategy._stop:
            now = time.monotonic()
            if now - last_loop > STALL and not sess.nonce:
                # Reports dropped at the PUB high-water mark while we were not reading leave no gap
                # if nothing follows them: ask for everything after the last one we handled.
                log.info(
                    "event loop stalled for %.1f s: re-joining from seq %d", now - last_loop, sess.last_seq
                )
                sess.hello()
            last_loop = now
            if now >= next_sync:
                if not sess.nonce:
                    sess.hello()
                next_sync = now + SYNC_INTERVAL
            if now >= next_hb:
                conn.send(Heartbeat(strategy_id, time.time_ns() // 1_000_000))
                next_hb = now + HEARTBEAT_INTERVAL
            sess.resend_hello_if_due(now)
            next_timer = strategy._run_due_timers(now) if strategy._timers else None
            wake = min(next_hb, now + MAX_POLL, next_timer if next_timer is not None else next_hb)
            if sess.nonce:
                wake = min(wake, sess.next_hello)
            timeout = max(0, int((wake - time.monotonic()) * 1000))
            ready = dict(poller.poll(timeout))
            if rep_sock in ready:
                _drain(rep_sock, sess.on_report_frame)
            if md_sock in ready:
                _drain(md_sock, sess.on_md_frame, 4096)
            if conn.report_events in ready:
                _drain(conn.report_events, lambda _: None)
                if not sess.nonce:
                    log.info("report channel (re)connected: re-joining from seq %d", sess.last_seq)
                    sess.hello()
        return 0
    finally:
        if started:
            sess.call(strategy.on_stop)
        restore()
        conn.close()
        strategy._conn = None


def _drain(sock: zmq.Socket[Any], handle: Any, limit: int = 100_000) -> None:
    recv = sock.recv
    for _ in range(limit):
        try:
            frame = recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        handle(frame)


def _install_stop_signals(strategy: Strategy) -> Any:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        strategy.stop()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore


# ---------------------------------------------------------------------- entry points


def load_strategy(target: str) -> type[Strategy]:
    """The Strategy subclass in a ``.py`` file or an importable module (exactly one, or one named by ``:``)."""
    name = None
    if ":" in target and not (len(target) > 1 and target[1] == ":"):
        target, name = target.rsplit(":", 1)
    module: ModuleType
    if target.endswith(".py") or os.sep in target:
        path = Path(target)
        if not path.is_file():
            raise SeqtradeError(f"strategy file not found: {target}")
        spec = importlib.util.spec_from_file_location(f"seqtrade_user_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    if name is not None:
        cls = getattr(module, name, None)
        if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
            raise SeqtradeError(f"{target} has no Strategy subclass named {name!r}")
        return cls
    found = [
        c for c in vars(module).values()
        if inspect.isclass(c) and issubclass(c, Strategy) and c is not Strategy and c.__module__ == module.__name__
    ]  # fmt: skip
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise SeqtradeError(
            f"{target} must define exactly one Strategy subclass (found {names}); name one with file.py:Class"
        )
    return found[0]


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--param takes KEY=VALUE, got {text!r}")
    import tomllib

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
        "--join-timeout", type=float, default=None, help="give up if the server does not answer (seconds)"
    )
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
    return run_strategy(strategy, sid, endpoints_from_args(args), join_timeout=args.join_timeout)


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
