"""The serve console: what ``seqtrade serve`` shows on a terminal, a compact view refreshed in place.

On a terminal (stdout and stderr both), ``serve`` shows one line for the venue and one per strategy
(state, position, realised PnL net of fees, open orders, heartbeat age, callback errors), then a line
per supervised strategy left down by a failure with the line of its log that says why, refreshed
twice a second with ``rich``'s Live display; warnings and notable log lines print above it; fill lines
and the periodic status line do not (the view shows their effect), and the whole log, fills included,
goes to ``<run_dir>/logs/serve.log``. When the output is not a terminal (CI, a log file, a pipe) or
with ``serve --plain``, ``serve`` logs plain lines as always.

The view is fed by the answers of the control commands ``status`` and ``strategies`` (what
``seqtrade status`` and ``seqtrade strategies`` print), asked for by a thread of the serve process
over the control socket: the server's tasks do not know the console exists.

:func:`view_rows` (the rules: what each line says) is pure; :class:`LiveConsole` is the shell.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ["fatal_notes", "view_rows", "venue_line", "LiveConsole", "ConsoleLogHandler", "is_flood", "HEADER"]

log = logging.getLogger(__name__)

REFRESH = 0.5  # seconds between two looks at the server
HEADER = ("strategy", "state", "position", "pnl (net)", "open", "heartbeat", "errors")


def venue_line(status: Mapping[str, Any], md_rate: float | None) -> str:
    """The venue, its symbols and the order counters, in one line."""
    c = status.get("counters", {})
    trading = status.get("trading", {}).get("global")
    parts = [
        f"venue {status.get('venue', '?')}: {'connected' if status.get('connected') else 'DISCONNECTED'}",
        f"symbols {', '.join(status.get('symbols', []))}",
        f"orders {c.get('orders_in', 0):,} in, {c.get('orders_sent', 0):,} sent, {c.get('rejected', 0):,} rejected",
        f"reports {c.get('reports_out', 0):,}",
    ]
    if md_rate is not None:
        parts.append(f"market data {md_rate:,.0f}/s")
    if c.get("md_dropped"):
        parts.append(f"dropped {c['md_dropped']:,}")
    if trading is not None:
        parts.append(f"trading {trading}")
    return " | ".join(parts)


def _position(books: Mapping[str, Mapping[str, Any]]) -> str:
    held = [(sym, b) for sym, b in sorted(books.items()) if b.get("position")]
    if not held:
        return "flat"
    return ", ".join(f"{sym} {b['position']:+.6g} @ {b.get('avg_price', 0.0):.6g}" for sym, b in held)


def view_rows(
    status: Mapping[str, Any], strategies: Sequence[Mapping[str, Any]] | None
) -> list[tuple[str, ...]]:
    """One row per strategy (the columns of :data:`HEADER`): the supervised ones in config order,
    then every other strategy the server has seen."""
    gw = status.get("strategies", {})
    books = status.get("accounts", {}).get("strategies", {}) if status.get("accounts") else {}
    own = status.get("trading", {}).get("strategies", {})
    rows_by_id: dict[str, Mapping[str, Any]] = {r["id"]: r for r in strategies or ()}
    ids = list(rows_by_id) + [sid for sid in sorted({*gw, *books}) if sid not in rows_by_id]
    out: list[tuple[str, ...]] = []
    for sid in ids:
        g, r, b = gw.get(sid, {}), rows_by_id.get(sid, {}), books.get(sid, {})
        if r:
            state = r["state"]
        elif g:
            state = "connected" if g.get("alive") else "left" if g.get("left") else "silent"
        else:
            state = "-"
        if sid in own:
            state += f" ({own[sid]})"
        pnl = sum(x.get("realized_pnl", 0.0) - x.get("fees", 0.0) for x in b.values())
        age = g.get("heartbeat_age", r.get("heartbeat_age"))
        errors = g.get("errors") or r.get("errors") or {}
        out.append((
            sid,
            state,
            _position(b),
            f"{pnl:+,.2f}" if b else "-",
            str(g.get("open_orders", 0)),
            "-" if age is None else f"{age:.1f}s",
            ", ".join(f"{name} {n:,}" for name, n in sorted(errors.items()) if n) or "-",
        ))  # fmt: skip
    return out


def fatal_notes(strategies: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """One line per supervised strategy that is not running because its last run failed: its id,
    state and why (``last_error``: the exit and the fatal line of its log)."""
    return [
        f"{r['id']} {r['state']}: {r['last_error']}"
        for r in strategies or ()
        if r.get("last_error") and r.get("state") not in ("running", "stopping", "stopped")
    ]


def is_flood(record: logging.LogRecord) -> bool:
    """The log lines the live view replaces on a terminal: one per fill, and the periodic status line."""
    if record.name != "seqtrade.server.gateway" or not isinstance(record.msg, str):
        return False
    return record.msg.startswith("fill ") or record.getMessage().startswith("venue=")


class ConsoleLogHandler(logging.Handler):
    """Log lines printed above the live view (through its console, so the view is redrawn below)."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.addFilter(lambda r: not is_flood(r))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(Text(self.format(record)), soft_wrap=True)
        except Exception:  # a logging handler must never raise into the code that logs
            self.handleError(record)


Fetch = Callable[[], tuple[dict[str, Any], list[dict[str, Any]] | None]]


class LiveConsole:
    """The live view: a thread asks ``fetch`` for (status, strategies) every :data:`REFRESH` seconds
    and redraws. ``fetch`` raising ConnectionError or RuntimeError means "no answer yet"."""

    def __init__(self, console: Console, fetch: Fetch, *, log_file: str = "") -> None:
        self.console = console
        self.fetch = fetch
        self.log_file = log_file
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = Live(self._render(None, None), console=console, refresh_per_second=4,
                          redirect_stdout=False, redirect_stderr=False)  # fmt: skip
        self._last_md: tuple[float, int] | None = None
        self._last: tuple[dict[str, Any], list[dict[str, Any]] | None] | None = None  # the last answers

    def __enter__(self) -> LiveConsole:
        self._live.start()
        self._thread = threading.Thread(target=self._run, name="seqtrade-console", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._last is not None:  # the server has gone: keep its last state, saying so
            self._live.update(self._render(*self._last, note="the server has stopped; its last state above"))
        self._live.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, strategies = self.fetch()
            except (ConnectionError, RuntimeError) as exc:
                last = self._last
                self._live.update(
                    self._render(*last, note=f"no answer from the server: {exc}")
                    if last
                    else self._render(None, None, note=str(exc))
                )
            else:
                self._last = (status, strategies)
                self._live.update(self._render(status, strategies))
            self._stop.wait(REFRESH)

    def _md_rate(self, status: Mapping[str, Any]) -> float | None:
        now, n = time.monotonic(), int(status.get("counters", {}).get("md_out", 0))
        last, self._last_md = self._last_md, (now, n)
        return None if last is None or now <= last[0] else (n - last[1]) / (now - last[0])

    def _render(
        self, status: dict[str, Any] | None, strategies: list[dict[str, Any]] | None, *, note: str = ""
    ) -> Group:
        if status is None:
            head = Text(f"starting: waiting for the server's first status ({note})" if note
                        else "starting ...", style="dim")  # fmt: skip
            return Group(head)
        table = Table(*HEADER, box=None, pad_edge=False, header_style="bold")
        for row in view_rows(status, strategies):
            table.add_row(*row)
        foot = note or "Ctrl-C stops the server"
        if self.log_file:
            foot += f"; the full log, fills included: {self.log_file}"
        parts: list[Any] = [Text(venue_line(status, self._md_rate(status)))]
        parts.append(table if table.row_count else Text("no strategies yet", style="dim"))
        parts.extend(Text(line, style="bold red") for line in fatal_notes(strategies))
        parts.append(Text(foot, style="dim"))
        return Group(*parts)
