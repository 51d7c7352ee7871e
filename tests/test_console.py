"""What a person sees from ``seqtrade serve`` and ``seqtrade status`` (issue 14), each run as the real
command in a subprocess: on a terminal (a real pseudo-terminal) a live view with one line per
strategy, refreshed in place, and no fill lines; through a pipe the plain log lines of old; a
strategy's callback errors counted in ``status`` and ``strategies``; ``status | head`` exits quietly.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from seqtrade.server.console import HEADER, venue_line, view_rows

from .conftest import QUIET_MARKET
from .test_cli_safety import CLI, seqtrade, started, write

ECHO = str(Path(__file__).resolve().parent / "strategies" / "echo.py")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

RAISER = """
from seqtrade.client import Strategy

class Raiser(Strategy):
    symbols = ["BTC-USDT"]

    def on_ticker(self, t):
        raise ValueError(f"no good: {t.bid_price}")
"""


def serve_config(base_dir: Path, strategies: str) -> Path:
    """The still test market, ticking every 0.1 s, with ``strategies`` supervised."""
    text = QUIET_MARKET.replace("tick_interval = 3600.0", "tick_interval = 0.1").replace(
        "status_interval = 0", "status_interval = 0.2"
    )
    return write(base_dir / "config.toml", text + strategies)


BUYER = f"""
[[strategies]]
id = "buyer"
path = "{ECHO}"
params = {{ side = "buy", price = 101.0, qty = 0.01 }}
"""


class Terminal:
    """A process on a pseudo-terminal of 140 x 30, and everything it wrote there."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 140, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "140", "LINES": "30"}
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                                     start_new_session=True)  # fmt: skip
        os.close(slave)
        self.master = master
        self.raw = b""

    def read_until(self, done: object, timeout: float = 60.0) -> str:
        """Read until ``done(text)`` (the screen's bytes so far, escape codes removed) is true."""
        deadline = time.monotonic() + timeout
        while not done(self.text()):  # type: ignore[operator]
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; the terminal showed:\n{self.text()[-4000:]}"
            ready, _, _ = select.select([self.master], [], [], min(left, 1.0))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the process closed the terminal
                    chunk = b""
                assert chunk or done(self.text()), f"the process left; it showed:\n{self.text()[-4000:]}"  # type: ignore[operator]
                self.raw += chunk
        return self.text()

    def text(self) -> str:
        return ANSI.sub("", self.raw.decode(errors="replace")).replace("\r", "")

    def close(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait()
        os.close(self.master)
        return code


def test_on_a_terminal_serve_shows_a_live_view_refreshed_in_place_and_no_fill_lines(base_dir: Path) -> None:
    cfg = serve_config(base_dir, BUYER)
    term = Terminal([*CLI, "serve", "--config", str(cfg)], cwd=base_dir)
    try:
        row = re.compile(
            r"buyer +running +BTC-USDT \+0\.01 @ 10[01](\.\d+)? +[-+]\d+\.\d\d +0 +(\d+\.\d)s +-"
        )
        term.read_until(lambda t: row.search(t))
        start = len(term.raw)
        # Refreshed in place: the view is drawn again and again, each time after moving the cursor back
        # up over the last one, and the heartbeat age in the strategy's line changes.
        term.read_until(lambda t: len(row.findall(t)) >= 6)
        redraws = term.raw[start:]
        assert redraws.count(b"\x1b[1A") >= 5 and redraws.count(b"venue paper: connected") >= 3
        ages = {m.group(2) for m in row.finditer(term.text())}
        assert len(ages) >= 2, ages
        text = term.text()
        assert "strategy" in text and all(h in text for h in HEADER)
        assert "the full log, fills included:" in text
        # The flood is gone from the terminal (no fill line, no status line) and is in the log file.
        assert "fill buyer" not in text and "venue=paper" not in text
        log = (base_dir / "run" / "logs" / "serve.log").read_text()
        assert re.search(r"fill buyer \S+ BTC-USDT buy 0\.01 @ 10[01]", log) and "venue=paper up" in log
        term.proc.send_signal(signal.SIGINT)
        term.read_until(lambda t: "server stopped" in t)
        assert term.proc.wait(timeout=30) == 0
    finally:
        term.close()


def test_through_a_pipe_serve_logs_plain_lines_fills_included(base_dir: Path) -> None:
    cfg = serve_config(base_dir, BUYER)
    with started("serve", "--config", str(cfg)) as server:
        fill = server.until("fill buyer")
        server.until("venue=paper up")
        server.proc.send_signal(signal.SIGINT)
        out = server.rest()
    assert server.proc.returncode == 0
    assert re.search(r"INFO +seqtrade\.server\.gateway: fill buyer \S+ BTC-USDT buy 0\.01 @ 10[01]", fill)
    assert "\x1b[" not in out and "strategy  state" not in out  # no live view, no escape codes
    assert not (base_dir / "run" / "logs" / "serve.log").exists()


def test_a_callback_that_raises_on_every_tick_is_told_once_and_counted_in_status_and_strategies(
    base_dir: Path,
) -> None:
    write(base_dir / "raiser.py", RAISER)
    cfg = serve_config(base_dir, '[[strategies]]\nid = "bad"\npath = "raiser.py"\n')
    with started("serve", "--config", str(cfg)) as server:
        server.until("strategy bad connected")
        deadline = time.monotonic() + 60
        while True:  # tickers every 0.1 s, a heartbeat every second
            st = seqtrade("status", "--config", str(cfg))
            m = re.search(r"bad: callbacks raised: on_ticker ([\d,]+) \(the strategy's log has", st.stdout)
            if m and int(m.group(1).replace(",", "")) >= 5:
                break
            assert time.monotonic() < deadline, st.stdout + st.stderr
            time.sleep(0.2)
        assert re.search(r"^bad +yes +\d+\.\ds +\d+ +0 +\d+$", st.stdout, re.M), st.stdout
        sp = seqtrade("strategies", "--config", str(cfg))
        assert re.search(r"bad: callbacks raised: on_ticker [\d,]+ ", sp.stdout), sp.stdout
        js = seqtrade("status", "--config", str(cfg), "--json")
        assert '"errors": {' in js.stdout and '"on_ticker":' in js.stdout
        server.proc.send_signal(signal.SIGINT)
        server.rest()
    log = (base_dir / "run" / "logs" / "bad.log").read_text()
    assert log.count("Traceback") == 1 and "ValueError: no good" in log  # the first, in full
    assert "on_ticker raised (counted from now on: one line per 10 s" in log
    # ... and on the way out the count of the rest, in one line
    assert re.search(
        r"on_ticker raised [\d,]+ more times in the last \d+ s \([\d,]+ in all\); the last: ValueError: no good",
        log,
    )


BROKEN = """
raise RuntimeError("no exchange key for this strategy")
"""


def test_a_supervised_strategy_that_dies_at_start_shows_why_in_the_live_view_and_in_strategies(
    base_dir: Path,
) -> None:
    """The first line a person looks for in the strategy's log, without opening it (issue 14)."""
    write(base_dir / "broken.py", BROKEN)
    cfg = serve_config(base_dir, '[[strategies]]\nid = "broken"\npath = "broken.py"\nrestart = "never"\n')
    term = Terminal([*CLI, "serve", "--config", str(cfg)], cwd=base_dir)
    try:
        why = r"exited with code \d+: RuntimeError: no exchange key for this strategy"
        term.read_until(lambda t: re.search(r"^broken failed: " + why, t, re.M))
        # the warning above the view says it too
        assert re.search(
            r"strategy broken exited with code \d+ after [\d.]+ s \(RuntimeError: no exchange", term.text()
        )
        sp = seqtrade("strategies", "--config", str(cfg))
        assert re.search(r"^broken: last failed exit: " + why + "$", sp.stdout, re.M), sp.stdout
        term.proc.send_signal(signal.SIGINT)
        term.read_until(lambda t: "server stopped" in t)
        assert term.proc.wait(timeout=30) == 0
    finally:
        term.close()


QUITTER = """
from seqtrade.client import Strategy

class Quitter(Strategy):
    symbols = ["BTC-USDT"]

    def on_start(self):
        self.stop()
"""


def test_a_strategy_that_said_goodbye_is_shown_as_left_not_as_silent(base_dir: Path) -> None:
    """A clean departure is not a strategy gone quiet: ``status`` and ``strategies`` tell them apart."""
    write(base_dir / "quitter.py", QUITTER)
    cfg = serve_config(base_dir, "")
    with started("serve", "--config", str(cfg)) as server:
        server.until("venue paper ready")
        run = seqtrade("run", str(base_dir / "quitter.py"), "--id", "quitter", "--config", str(cfg))
        assert run.returncode == 0, run.stderr
        server.until("strategy quitter left (goodbye)")
        st = seqtrade("status", "--config", str(cfg))
        assert re.search(r"^quitter +left +\d+\.\ds ", st.stdout, re.M), st.stdout
        sp = seqtrade("strategies", "--config", str(cfg))
        assert re.search(r"^quitter +external \(left\) ", sp.stdout, re.M), sp.stdout
        server.proc.send_signal(signal.SIGINT)
        server.rest()
    assert server.proc.returncode == 0


def test_status_into_a_pipe_whose_reader_is_gone_exits_quietly(base_dir: Path) -> None:
    """``seqtrade status | head -1``: the reader leaves after one line; no traceback, no noise."""
    cfg = serve_config(base_dir, BUYER)
    with started("serve", "--config", str(cfg)) as server:
        server.until("strategy buyer connected")
        for cmd in (["status"], ["strategies"], ["status", "--json"]):
            r, w = os.pipe()
            os.close(r)  # the reader is gone before the first write: every write fails (EPIPE)
            proc = subprocess.run([*CLI, *cmd, "--config", str(cfg)], stdout=w, stderr=subprocess.PIPE,
                                  text=True, timeout=60)  # fmt: skip
            os.close(w)
            assert proc.stderr == "" and proc.returncode == 141, (cmd, proc.returncode, proc.stderr)
        head = subprocess.run(f"{sys.executable} -m seqtrade.cli status --config {cfg} | head -1", shell=True,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert head.stdout.startswith("venue paper: connected") and head.stderr == ""
        server.proc.send_signal(signal.SIGINT)
        server.rest()


# ----------------------------------------------------------------------------- the view's rules


def test_the_view_has_one_row_per_strategy_with_position_net_pnl_open_orders_heartbeat_and_errors() -> None:
    status = {
        "venue": "paper", "connected": True, "symbols": ["BTC-USDT", "ETH-USDT"],
        "counters": {"orders_in": 12, "orders_sent": 11, "rejected": 1, "reports_out": 30, "md_out": 500},
        "strategies": {
            "mom1": {"alive": True, "heartbeat_age": 0.4, "last_seq": 9, "open_orders": 1, "errors": {}},
            "ext": {"alive": False, "heartbeat_age": 12.0, "last_seq": 2, "open_orders": 0,
                    "errors": {"on_ticker": 1234, "on_order": 0}},
        },
        "trading": {"global": "active", "strategies": {"mom1": "reducing"}},
        "accounts": {"strategies": {"mom1": {
            "BTC-USDT": {"position": 0.02, "avg_price": 60113.2, "realized_pnl": 3.5, "fees": 1.25},
            "ETH-USDT": {"position": 0.0, "avg_price": 0.0, "realized_pnl": -1.0, "fees": 0.25},
        }}, "account": {}},
    }  # fmt: skip
    rows = [{"id": "mr1", "state": "crash-loop", "heartbeat_age": None, "errors": {}},
            {"id": "mom1", "state": "running", "heartbeat_age": 0.4, "errors": {}}]  # fmt: skip
    assert view_rows(status, rows) == [
        ("mr1", "crash-loop", "flat", "-", "0", "-", "-"),
        ("mom1", "running (reducing)", "BTC-USDT +0.02 @ 60113.2", "+1.00", "1", "0.4s", "-"),
        ("ext", "silent", "flat", "-", "0", "12.0s", "on_ticker 1,234"),
    ]
    assert venue_line(status, 25.0) == (
        "venue paper: connected | symbols BTC-USDT, ETH-USDT | orders 12 in, 11 sent, 1 rejected"
        " | reports 30 | market data 25/s | trading active"
    )


def test_the_view_tells_a_strategy_that_left_from_one_gone_silent() -> None:
    def row(**g: object) -> tuple[str, ...]:
        base = {"alive": False, "heartbeat_age": 9.0, "last_seq": 1, "open_orders": 0, "errors": {}}
        return view_rows({"strategies": {"q": {**base, **g}}}, None)[0]

    assert row(left=True)[1] == "left"
    assert row()[1] == "silent"
    assert row(alive=True)[1] == "connected"
