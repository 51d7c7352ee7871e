"""``serve``: sockets, journal, venue and the gateway's tasks under one nursery."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
import zmq

from ..bus import TrioSocket, bind_secure, ipc_path, lock_run_dir, prepare_run_dir, private_files
from ..clock import WALL, Clock, VirtualClock
from ..config import Config
from ..instruments import Instrument, instrument_from_map, instrument_to_map
from ..security import KeyPair
from ..venues import venue_class
from ..venues.base import Venue
from . import gcpolicy, recovery, stalls
from .accounts import Accounts
from .archive import archive_task
from .auth import TcpSecurity
from .control import ControlCommands, control_task
from .dashboard.model import dashboard_token
from .engine import Engine
from .gateway import Gateway
from .guard import Guard
from .journal import Journal
from .metrics import metrics_task, render_metrics
from .orders import IdGenerator
from .risk import Quotes, RiskGate
from .snapshot import Snapshots
from .snapshot import read as read_snapshot
from .supervisor import Supervisor

if TYPE_CHECKING:
    from ..recorder import Recorder

__all__ = ["build", "serve", "run_until_signal"]

log = logging.getLogger(__name__)


async def serve(
    config: Config,
    venue: Venue,
    *,
    curve_keys: KeyPair | None = None,
    environ: Mapping[str, str] | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway until cancelled or until ``gateway.request_stop()``.

    ``curve_keys``: the server's CurveZMQ key pair, required when an endpoint is tcp:// (the CLI reads
    it from the variable ``security.server_secret_key_env`` names). Supervised ``[[strategies]]`` start once
    orders are accepted and stop first on the way out.

    Owns the run directory (locked), the journal, the three sockets and the venue connection; on the
    way out (stop, cancellation or error) sockets close and their files and the lock are removed.
    ``task_status.started(gateway)`` once orders are accepted. ``environ`` (default ``os.environ``):
    where the dashboard's token is read (a non-loopback ``[dashboard]`` bind without one is refused here,
    before anything is bound).
    """
    token = (
        dashboard_token(config, os.environ if environ is None else environ)
        if config.dashboard.enabled
        else ""
    )
    run_dir = config.run_dir
    prepare_run_dir(run_dir)
    with lock_run_dir(run_dir):
        endpoints = [config.endpoint(c) for c in ("md", "order", "report")]
        control_ep = f"ipc://{run_dir / 'control.ipc'}"
        clock = venue_clock(venue)
        virtual = isinstance(clock, VirtualClock)  # a backtest: its journal is the same bytes every run
        journal = Journal(config.journal_path, synchronous=config.journal.synchronous,
                          **({"rotate_bytes": 1 << 62} if virtual else {}))  # fmt: skip
        ctx: zmq.Context[Any] = zmq.Context()
        try:
            _attach_archive(config, journal)
            gw, guard = build(config, venue, journal)
            recorder = _recorder(config, gw)
            snapshots = Snapshots(gw.engine, journal, config.snapshot_path, clock=clock,
                                  interval=config.server.snapshot_interval, reports=config.server.snapshot_reports)  # fmt: skip
            tcp = TcpSecurity(config, curve_keys)  # checks keys and allow-list before any socket exists
            supervisor = Supervisor(config, gw)
            bus = config.bus
            md = ctx.socket(zmq.PUB)
            md.setsockopt(zmq.SNDHWM, bus.md_sndhwm)
            md.setsockopt(zmq.LINGER, bus.linger_ms)
            rep = ctx.socket(tcp.socket_type("report"))  # an XPUB over tcp://: it polices subscriptions
            rep.setsockopt(zmq.SNDHWM, bus.report_sndhwm)
            rep.setsockopt(zmq.LINGER, bus.linger_ms)
            pull = ctx.socket(zmq.PULL)
            pull.setsockopt(zmq.RCVHWM, bus.order_rcvhwm)
            pull.setsockopt(zmq.LINGER, 0)
            # Bounded: at most order_rcvhwm frames of at most max_frame_bytes queued per connection
            # (docs/operations.md, "Memory"); libzmq drops a larger frame (and that connection) itself.
            pull.setsockopt(zmq.MAXMSGSIZE, bus.max_frame_bytes)
            ctl = ctx.socket(zmq.REP)
            ctl.setsockopt(zmq.LINGER, 0)
            ctl.setsockopt(zmq.MAXMSGSIZE, 65536)
            commands = ControlCommands()

            async def status(_: dict[str, Any]) -> dict[str, Any]:
                rec = {"recorder": recorder.status()} if recorder is not None else {}
                return {**gw.status(), **guard.status(), **rec}

            commands.register("status", status)
            guard.register_commands(commands)
            supervisor.register_commands(commands)
            with (
                tcp.open(ctx),  # the ZAP handler's socket: bound before the channels, closed after them
                tcp.wrap(md, "md") as md_s,
                tcp.wrap(rep, "report") as rep_s,
                tcp.wrap(pull, "order", spin_us=bus.spin_us) as pull_s,
                TrioSocket(ctl) as ctl_s,
            ):
                for sock, ep in zip((md, pull, rep, ctl), [*endpoints, control_ep], strict=True):
                    bind_secure(sock, ep)
                log.info("listening: md %s, orders %s, reports %s", *endpoints)
                stalls.install()  # SEQTRADE_STALLS: long task steps and collections, for the tails
                async with trio.open_nursery() as nursery:
                    await tcp.start(nursery)
                    if recorder is not None:
                        await nursery.start(recorder.run)
                    await nursery.start(gw.feed_task, md_s)
                    await nursery.start(gw.report_task, rep_s)
                    await nursery.start(gw.replay_task, rep_s)
                    await nursery.start(gw.history_task)
                    await nursery.start(venue.run, gw)
                    log.info("venue %s ready: %s", venue.name, ", ".join(sorted(venue.instruments)))
                    instruments_to_journal(journal, venue)
                    await nursery.start(gw.order_task, pull_s)
                    await gw.recover()
                    await nursery.start(gw.monitor_task)
                    await nursery.start(guard.run)
                    await nursery.start(control_task, ctl_s, commands)
                    board = None
                    if config.dashboard.enabled:  # read-only: it samples the state between the tasks' awaits
                        from .dashboard.serve import make_collector, serve_dashboard  # the web stack, when on

                        board = make_collector(config, gw, guard, supervisor)
                        await nursery.start(serve_dashboard, config, board, token)
                    if config.metrics.enabled:
                        auth = tcp.stats if tcp.active else None
                        await nursery.start(
                            metrics_task, config.metrics, lambda: render_metrics(gw, supervisor, auth, board)
                        )
                    await nursery.start(supervisor.run)
                    await nursery.start(snapshots.run)
                    if config.journal.archive_after_days > 0 and not virtual:  # (by the wall clock's age)
                        await nursery.start(archive_task, journal, config, gw.engine.seqs)
                    _private_files(config)
                    task_status.started(gw)
                    await gw.stop_requested.wait()
                    await supervisor.stop()  # strategies first, in reverse order
                    await gw.shutdown()
                    snapshots.write_at_stop()  # a clean stop: the next start reads no journal tail
                    await guard.stop()  # last: nothing may wait (and refresh the switch) after it
                    if recorder is not None:
                        await recorder.close()  # what is queued is written, every file closed
                    nursery.cancel_scope.cancel()
        finally:
            journal.close()
            ctx.term()
            for ep in [*endpoints, control_ep]:
                path = ipc_path(ep)
                if path is not None:
                    with contextlib.suppress(OSError):
                        path.unlink()
        if virtual:  # a clean end of a backtest: its index in a form that depends on its content only
            canonical_index(config.journal_path)
    log.info("server stopped")


def canonical_index(path: Path) -> None:
    """The journal's SQLite index rebuilt in a form that depends on its content only (a backtest's, at
    its end): the same records give the same file, however many index transactions took them.

    Two things in the file follow the index's timing (``Journal.index`` runs when enough is pending,
    once a quiet second, and before reads): the row id of each ``meta`` row (``INSERT OR REPLACE``
    gives the replaced row a new one, once per index transaction) and the pages' layout (an order
    indexed with its reports is one insert; indexed before them, an insert and updates). The meta rows
    are written again in key order into the emptied table (row ids 1, 2, ...), then ``VACUUM`` writes
    every table afresh in row order."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        rows = db.execute("SELECT key, value FROM meta ORDER BY key").fetchall()
        db.execute("DELETE FROM meta")
        db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", rows)
        db.execute("COMMIT")
        db.execute("VACUUM")
    finally:
        db.close()


def _recorder(config: Config, gw: Gateway) -> Recorder | None:
    """The market recorder ([recorder] enabled), hooked into the gateway."""
    if not config.recorder.enabled:
        return None
    from ..recorder import Recorder

    rec = Recorder(config.recorder, config.recorder_path, gw.venue.name,
                   md_dropped=lambda: gw.counters.md_dropped, clock=gw.clock)  # fmt: skip
    gw.recorder = rec
    log.info("recording market data to %s", config.recorder_path)
    return rec


def _attach_archive(config: Config, journal: Journal) -> None:
    """The archive answers replays and audits of what was moved there (also once archiving is off)."""
    if config.journal.archive_after_days > 0 or config.archive_path.exists():
        journal.attach_archive(config.archive_path)
        private_files(config.archive_path)


def _private_files(config: Config) -> None:
    """The server's files are 0600 whatever the umask of an in-process caller (the command sets its
    umask to 077 first, :func:`run_until_signal`): the journal, SQLite's -wal and -shm, the venue's
    state files."""
    private_files(
        config.journal_path, *venue_class(config.venue.kind).state_files(config.venue, config.run_dir)
    )


def venue_clock(venue: Venue) -> Clock:
    """The server's time (:mod:`seqtrade.clock`): the venue's ``clock`` (a paper venue's runs
    ``time_scale`` times faster than the wall clock, a backtest's is the recording's), else the wall
    clock. The server stamps what it publishes and records with it; its timers stay on Trio's clock."""
    clock = getattr(venue, "clock", None)
    return clock if isinstance(clock, Clock) else WALL


def build(config: Config, venue: Venue, journal: Journal) -> tuple[Gateway, Guard]:
    """The server's parts, from what the journal holds: accounts and risk gate, the engine that checks
    every order with them, the gateway (its shell) and the guard (trading states, switch, reconciliation).

    With a virtual clock (a backtest), nothing of the wall clock or of chance reaches the journal: its
    id is fixed and the venue order ids count from the clock's start (``s0x1``, ``s0x2``, ...)."""
    clock = venue_clock(venue)
    if isinstance(clock, VirtualClock) and journal.get_meta("journal_id") is None:
        journal.set_meta("journal_id", "virtual-clock")  # (a backtest starts from an empty journal)
    accounts = Accounts()
    # Contract facts for the books (PnL of contracts): the venue's once it runs; until then (the
    # journal's reports are applied at start, before the venue is up) those it had last time.
    known = instruments_from_journal(journal)
    accounts.instrument = lambda symbol: venue.instruments.get(symbol) or known.get(symbol)
    journal.identity()  # named once, before anything is written (snapshots name the journal)
    restored = recovery.restore(
        journal, accounts, read_snapshot(config.snapshot_path), filter_bytes=config.server.key_filter_bytes
    )
    quotes = Quotes()
    gate = RiskGate(
        config.risk,
        positions=accounts,
        mid=quotes.mid,
        instrument=lambda symbol: venue.instruments.get(symbol),
        # rate windows: Trio's clock (wall time), a backtest's on the recording's (its refusals are the same)
        clock=(lambda: clock.time_ns() / 1e9) if isinstance(clock, VirtualClock) else trio.current_time,
    )
    engine = Engine(
        config,
        instruments=lambda: venue.instruments,
        risk=gate,
        accounts=accounts,
        find_order=journal.find_order,
        seqs=restored.seqs,
        known_keys=restored.known_keys,
        open_orders=restored.open_orders,
        key_filter=restored.key_filter,
        ids=IdGenerator(clock.time_ms()),
    )
    engine.quotes = quotes  # price limits: refused before the venue refuses them
    gw = Gateway(config, venue, journal, engine, quotes)
    gw.clock = clock
    guard = Guard(
        config, venue, journal, gate, accounts, in_flight=engine.open_records, sink=gw, marks=quotes.marks
    )
    return gw, guard


INSTRUMENTS_META = "instruments"


def instruments_from_journal(journal: Journal) -> dict[str, Instrument]:
    """The instrument facts the venue gave in the previous run (journal meta), by symbol."""
    raw = journal.get_meta(INSTRUMENTS_META)
    if not raw:
        return {}
    return {d["symbol"]: instrument_from_map(d) for d in json.loads(raw)}


def instruments_to_journal(journal: Journal, venue: Venue) -> None:
    maps = [instrument_to_map(i) for _, i in sorted(venue.instruments.items())]
    journal.set_meta(INSTRUMENTS_META, json.dumps(maps))


async def run_until_signal(config: Config, venue: Venue, *, curve_keys: KeyPair | None = None) -> int:
    """``serve`` until SIGINT or SIGTERM, then stop cleanly; the process exit code: 0, or 130 when a
    second signal cut the clean stop short (what it skipped is logged).

    The process's umask becomes 077 first: every file and directory the server, SQLite or a strategy
    it starts creates is private to its user (0600, 0700), whatever umask it was started with.
    """
    umask = os.umask(0o077)
    try:
        return await _run_until_signal(config, venue, curve_keys)
    finally:
        os.umask(umask)


async def _run_until_signal(config: Config, venue: Venue, curve_keys: KeyPair | None) -> int:
    code = 0
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def serve_then_stop(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                await serve(config, venue, curve_keys=curve_keys, task_status=task_status)
                nursery.cancel_scope.cancel()

            gw: Gateway = await nursery.start(serve_then_stop)
            # The process is the server's own (not a library user's): what start-up built goes out of
            # the cyclic collector's sight, and young collections come far less often.
            gcpolicy.settle()
            async for sig in signals:
                if gw.stop_requested.is_set():
                    log.warning("received %s again: stopping now, %s", signal.Signals(sig).name,
                                await _what_is_skipped(config, venue))  # fmt: skip
                    code = 130
                    nursery.cancel_scope.cancel()
                    break
                log.info("received %s: stopping", signal.Signals(sig).name)
                gw.request_stop()
    return code


async def _what_is_skipped(config: Config, venue: Venue) -> str:
    """For a stop cut short: the shutdown policy not finished and the open orders left at the venue."""
    n: int | None = None
    with trio.move_on_after(2.0):
        n = len(await venue.open_orders())
    left = (
        "an unknown number of open orders (the venue did not answer)" if n is None else f"{n} open order(s)"
    )
    return (f"without finishing the shutdown policy ({config.server.shutdown_policy} open orders): {left} left"
            f" at the venue {venue.name}")  # fmt: skip
