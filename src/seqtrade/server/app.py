"""``serve``: sockets, journal, venue and the gateway's tasks under one nursery."""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import Any

import trio
import zmq

from ..bus import TrioSocket, bind_secure, ipc_path, lock_run_dir, prepare_run_dir
from ..config import Config
from ..venues.base import Venue
from .control import ControlCommands, control_task
from .gateway import Gateway
from .journal import Journal

__all__ = ["serve", "run_until_signal"]

log = logging.getLogger(__name__)


async def serve(config: Config, venue: Venue, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run the gateway until cancelled or until ``gateway.request_stop()``.

    Owns the run directory (locked), the journal, the three sockets and the venue connection; on the
    way out (stop, cancellation or error) sockets close and their files and the lock are removed.
    ``task_status.started(gateway)`` once orders are accepted.
    """
    run_dir = config.run_dir
    prepare_run_dir(run_dir)
    with lock_run_dir(run_dir):
        endpoints = [config.endpoint(c) for c in ("md", "order", "report")]
        control_ep = f"ipc://{run_dir / 'control.ipc'}"
        journal = Journal(config.journal_path, synchronous=config.journal.synchronous)
        ctx: zmq.Context[Any] = zmq.Context()
        try:
            gw = Gateway(config, venue, journal)
            bus = config.bus
            md = ctx.socket(zmq.PUB)
            md.setsockopt(zmq.SNDHWM, bus.md_sndhwm)
            md.setsockopt(zmq.LINGER, bus.linger_ms)
            rep = ctx.socket(zmq.PUB)
            rep.setsockopt(zmq.SNDHWM, bus.report_sndhwm)
            rep.setsockopt(zmq.LINGER, bus.linger_ms)
            pull = ctx.socket(zmq.PULL)
            pull.setsockopt(zmq.RCVHWM, bus.order_rcvhwm)
            pull.setsockopt(zmq.LINGER, 0)
            pull.setsockopt(zmq.MAXMSGSIZE, bus.max_frame_bytes * 4)
            ctl = ctx.socket(zmq.REP)
            ctl.setsockopt(zmq.LINGER, 0)
            ctl.setsockopt(zmq.MAXMSGSIZE, 65536)
            commands = ControlCommands()
            gw.register_commands(commands)
            with (
                TrioSocket(md) as md_s,
                TrioSocket(rep) as rep_s,
                TrioSocket(pull, spin_us=bus.spin_us) as pull_s,
                TrioSocket(ctl) as ctl_s,
            ):
                for sock, ep in zip((md, pull, rep, ctl), [*endpoints, control_ep], strict=True):
                    bind_secure(sock, ep)
                log.info("listening: md %s, orders %s, reports %s", *endpoints)
                async with trio.open_nursery() as nursery:
                    await nursery.start(gw.feed_task, md_s)
                    await nursery.start(gw.report_task, rep_s)
                    await nursery.start(venue.run, gw)
                    log.info("venue %s ready: %s", venue.name, ", ".join(sorted(venue.instruments)))
                    await nursery.start(gw.order_task, pull_s)
                    await gw.recover()
                    await nursery.start(gw.monitor_task)
                    await nursery.start(control_task, ctl_s, commands)
                    task_status.started(gw)
                    await gw.stop_requested.wait()
                    await gw.shutdown()
                    nursery.cancel_scope.cancel()
        finally:
            journal.close()
            ctx.term()
            for ep in [*endpoints, control_ep]:
                path = ipc_path(ep)
                if path is not None:
                    with contextlib.suppress(OSError):
                        path.unlink()
    log.info("server stopped")


async def run_until_signal(config: Config, venue: Venue) -> int:
    """``serve`` until SIGINT or SIGTERM, then stop cleanly; the process exit code."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def serve_then_stop(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                await serve(config, venue, task_status=task_status)
                nursery.cancel_scope.cancel()

            gw: Gateway = await nursery.start(serve_then_stop)
            async for sig in signals:
                if gw.stop_requested.is_set():
                    log.warning("received %s again: stopping now", signal.Signals(sig).name)
                    nursery.cancel_scope.cancel()
                    break
                log.info("received %s: stopping", signal.Signals(sig).name)
                gw.request_stop()
    return 0
