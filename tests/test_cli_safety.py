"""What a person sees from the CLI's safety features (issue 14), each run as the real command in a
subprocess: ``--version``, ``check`` (no ``[venue]``, missing limits, bad strategy paths),
``new-strategy`` (the file runs as is against a real server), ``reset`` (asks; refuses while a server
runs; keeps an exchange's journal) and a double Ctrl-C of ``serve`` (says what it skipped, exits 130).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from seqtrade.bus import lock_run_dir
from seqtrade.config import load_config

from .conftest import QUIET_MARKET

CLI = [sys.executable, "-m", "seqtrade.cli"]
REPO = Path(__file__).resolve().parent.parent


def seqtrade(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=cwd)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class Lines:
    """A subprocess's output read line by line, waiting for a pattern (a watchdog kills the process
    after ``timeout`` s, so a missing line fails the test instead of hanging it)."""

    def __init__(self, proc: subprocess.Popen[str], timeout: float = 90.0) -> None:
        self.proc = proc
        self.seen: list[str] = []
        self._watchdog = threading.Timer(timeout, proc.kill)
        self._watchdog.start()

    def until(self, pattern: str) -> str:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.seen.append(line)
            if pattern in line:
                return line
        raise AssertionError(f"{pattern!r} never came; output:\n{''.join(self.seen)}")

    def rest(self) -> str:
        assert self.proc.stderr is not None
        self.seen.extend(self.proc.stderr)
        self.proc.wait()
        self._watchdog.cancel()
        return "".join(self.seen)


@contextmanager
def started(*args: str, cwd: Path | None = None) -> Iterator[Lines]:
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=cwd, start_new_session=True)  # fmt: skip
    proc.stderr = proc.stdout  # one stream, in order
    lines = Lines(proc)
    try:
        yield lines
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        lines._watchdog.cancel()


# ----------------------------------------------------------------------------- --version, check


def test_version() -> None:
    r = seqtrade("--version")
    assert r.returncode == 0 and r.stdout.startswith("seqtrade ") and r.stdout.strip() != "seqtrade unknown"


def test_every_config_option_says_its_default() -> None:
    for cmd in ("serve", "check", "status", "halt", "strategies", "reset"):
        r = seqtrade(cmd, "--help")
        assert "(default: config.toml" in " ".join(r.stdout.split()), (cmd, r.stdout)


def test_check_refuses_a_config_without_venue(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.toml", '[server]\nrun_dir = "run"\n')
    for cmd in ("check", "serve"):
        r = seqtrade(cmd, "--config", str(cfg))
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "no [venue] section" in r.stderr and 'kind = "paper"' in r.stderr


def test_check_warns_loudly_about_a_live_venue_without_limits(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.toml", '[venue]\nkind = "okx"\nsymbols = ["BTC-USDT", "ETH-USDT"]\n'
                '[risk]\nmax_order_quantity = 1.0\n[risk.symbols.BTC-USDT]\nmax_position = 2.0\n')  # fmt: skip
    r = seqtrade("check", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    block = [line for line in r.stdout.splitlines() if line.startswith("WARNING")]
    assert block[0].startswith("WARNING: venue okx (a live account) runs with these pre-trade limits unset")
    named = [line.removeprefix("WARNING:   ") for line in block[1:-1]]
    assert named == [
        "max_order_notional",
        "max_position (not set for ETH-USDT)",
        "max_account_position",
        "price_band_bps",
        "max_open_orders",
        "max_orders_per_window",
        "max_cancels_per_window",
    ]
    assert block[-1] == "WARNING: set them in [risk] or [risk.symbols.<symbol>] (docs/risk.md)"


def test_serve_logs_the_warning_block_at_start_up(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.toml", '[server]\nrun_dir = "run"\n[venue]\nkind = "okx"\n'
                '[risk]\nmax_order_quantity = 1.0\n')  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKX_")}
    r = subprocess.run(
        [*CLI, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 2 and "OKX_API_KEY" in r.stderr  # no keys: it stops, after the warning
    warned = [line.split(": ", 1)[1] for line in r.stderr.splitlines() if " WARNING " in line]
    assert warned[0].startswith("venue okx (a live account) runs with these pre-trade limits unset")
    assert "  max_order_notional" in warned and "  max_cancels_per_window" in warned
    assert "  max_order_quantity" not in warned


def test_check_notes_a_paper_venue_without_limits_in_one_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.toml", '[venue]\nkind = "paper"\n')
    r = seqtrade("check", "--config", str(cfg))
    assert r.returncode == 0 and "WARNING" not in r.stdout
    (note,) = [line for line in r.stdout.splitlines() if line.startswith("note:")]
    assert "max_order_quantity" in note and "balances" in note
    assert "starts with 100000 USDT, 1 BTC, 10 ETH" in r.stdout


def test_the_shipped_config_sets_every_limit() -> None:
    r = seqtrade("check", "--config", str(REPO / "config.toml"))
    assert r.returncode == 0, r.stderr
    assert "risk: every pre-trade limit is set" in r.stdout and "WARNING" not in r.stdout


def test_check_catches_a_missing_strategy_file_and_one_without_a_strategy(tmp_path: Path) -> None:
    (tmp_path / "strats").mkdir()
    write(tmp_path / "strats" / "empty.py", "X = 1\n")
    write(tmp_path / "strats" / "broken.py", "import no_such_module_anywhere\n")
    cfg = write(tmp_path / "config.toml", '[venue]\nkind = "paper"\n'
                '[[strategies]]\nid = "gone"\npath = "strats/nope.py"\n'
                '[[strategies]]\nid = "empty"\npath = "strats/empty.py"\n'
                '[[strategies]]\nid = "broken"\npath = "strats/broken.py"\n'
                '[[strategies]]\nid = "off"\npath = "strats/also_gone.py"\nenabled = false\n')  # fmt: skip
    r = seqtrade("check", "--config", str(cfg), cwd=Path("/"))  # paths resolve against the config's dir
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("seqtrade: error:")]
    assert len(errors) == 3, r.stderr
    assert errors[0].startswith(
        "seqtrade: error: strategies[0] (id 'gone'): path 'strats/nope.py' does not exist"
    )
    assert f"{tmp_path}/strats/nope.py" in errors[0]
    assert (
        "strategies[1] (id 'empty')" in errors[1] and "must define exactly one Strategy subclass" in errors[1]
    )
    assert "strategies[2] (id 'broken')" in errors[2] and "ModuleNotFoundError" in errors[2]
    assert "Traceback" not in r.stderr
    # the examples of the shipped config load
    assert seqtrade("check", "--config", str(REPO / "config.toml")).returncode == 0


# ----------------------------------------------------------------------------- new-strategy


def test_new_strategy_writes_a_file_that_runs_against_the_paper_server(base_dir: Path) -> None:
    r = seqtrade("new-strategy", "my_first", "--dir", str(base_dir))
    assert r.returncode == 0, r.stderr
    path = base_dir / "my_first.py"
    assert f"wrote {path}" in r.stdout and "class MyFirst(Strategy)" in path.read_text()
    again = seqtrade("new-strategy", "my_first", "--dir", str(base_dir))
    assert again.returncode == 2 and "exists; not overwritten" in again.stderr
    assert seqtrade("new-strategy", "9lives", "--dir", str(base_dir)).returncode == 2

    cfg = write(
        base_dir / "config.toml", QUIET_MARKET.replace("tick_interval = 3600.0", "tick_interval = 0.1")
    )
    with started("serve", "--config", str(cfg)) as server:
        server.until("note: no risk limit for max_order_quantity")  # the paper venue's one-line note
        server.until("venue paper ready")
        with started("run", str(path), "--id", "my_first", "--config", str(cfg)) as strat:
            strat.until("my_first on BTC-USDT: size 0.001")
            placed = strat.until("placed ")
            coid = placed.split("placed ", 1)[1].split(":", 1)[0]
            assert f"{coid} accepted" in strat.until(f"{coid} accepted")


# ----------------------------------------------------------------------------- reset


def _account_files(run_dir: Path) -> list[Path]:
    run_dir.mkdir(mode=0o700, exist_ok=True)
    files = [run_dir / "paper.sqlite", run_dir / "journal.sqlite"]
    for f in files:
        sqlite3.connect(f).execute("CREATE TABLE t (x)").connection.close()
    return files


def test_reset_asks_then_deletes_the_paper_account_and_the_journal(base_dir: Path) -> None:
    cfg = write(base_dir / "config.toml", QUIET_MARKET)
    files = _account_files(base_dir / "run")
    r = seqtrade("reset", "--config", str(cfg), stdin="n\n")
    assert r.returncode == 1 and "nothing deleted" in r.stdout
    assert all(f.exists() for f in files)
    assert f"  {files[0]} (" in r.stdout and f"  {files[1]} (" in r.stdout
    assert "delete these files? [y/N]" in r.stdout
    assert seqtrade("reset", "--config", str(cfg), stdin="").returncode == 1  # no answer (EOF): no
    r = seqtrade("reset", "--config", str(cfg), stdin="y\n")
    assert r.returncode == 0 and "deleted 2 file(s)" in r.stdout, r.stdout + r.stderr
    assert not any(f.exists() for f in files)
    assert "nothing to reset" in seqtrade("reset", "--config", str(cfg)).stdout
    _account_files(base_dir / "run")
    r = seqtrade("reset", "--config", str(cfg), "--yes")
    assert r.returncode == 0 and "[y/N]" not in r.stdout and not any(f.exists() for f in files)


def test_reset_refuses_while_a_server_runs_on_the_run_dir(base_dir: Path) -> None:
    cfg = write(base_dir / "config.toml", QUIET_MARKET)
    files = _account_files(base_dir / "run")
    with lock_run_dir(load_config(cfg).run_dir):  # what a running server holds
        r = seqtrade("reset", "--config", str(cfg), "--yes")
    assert r.returncode == 2 and "another seqtrade server" in r.stderr and "Traceback" not in r.stderr
    assert all(f.exists() for f in files)


def test_reset_keeps_an_exchange_journal_without_the_explicit_flag(base_dir: Path) -> None:
    cfg = write(base_dir / "config.toml", '[server]\nrun_dir = "run"\n[venue]\nkind = "okx"\n')
    paper, journal = _account_files(base_dir / "run")  # paper.sqlite: left from a paper setup, not OKX's
    r = seqtrade("reset", "--config", str(cfg), "--yes")
    assert r.returncode == 0 and f"kept: {journal}" in r.stdout and "--live-journal" in r.stdout
    assert "nothing to reset" in r.stdout and journal.exists() and paper.exists()
    r = seqtrade("reset", "--config", str(cfg), "--yes", "--live-journal")
    assert r.returncode == 0 and "deleted 1 file(s)" in r.stdout and not journal.exists() and paper.exists()


# ----------------------------------------------------------------------------- double Ctrl-C

STUBBORN = """
import os, signal
from seqtrade.client import Strategy

class Stubborn(Strategy):
    symbols = ["BTC-USDT"]

    def on_start(self):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # so that the server's clean stop hangs on it
        with open("stubborn.pid", "w") as f:
            f.write(str(os.getpid()))
        self.placed = False

    def on_ticker(self, t):
        if not self.placed:
            self.placed = True
            self.buy_limit("BTC-USDT", round(t.bid_price * 0.99, 1), 0.001)
"""


def test_a_second_ctrl_c_says_what_it_skipped_and_exits_non_zero(base_dir: Path) -> None:
    write(base_dir / "stubborn.py", STUBBORN)
    cfg = write(base_dir / "config.toml", QUIET_MARKET.replace("tick_interval = 3600.0", "tick_interval = 0.1")
                .replace("status_interval = 0", "status_interval = 0.2")
                .replace('shutdown_policy = "leave"', 'shutdown_policy = "cancel"')
                + '[supervisor]\nstop_grace = 10.0\n[[strategies]]\nid = "stub"\npath = "stubborn.py"\n')  # fmt: skip
    try:
        with started("serve", "--config", str(cfg)) as server:
            server.until(" open=1 ")  # the strategy's order rests at the venue
            server.proc.send_signal(signal.SIGINT)
            server.until("received SIGINT: stopping")
            server.until("stopping strategy stub")  # the clean stop waits for the stubborn strategy
            server.proc.send_signal(signal.SIGINT)
            out = server.rest()
            assert server.proc.returncode == 130, out
    finally:
        pid_file = base_dir / "stubborn.pid"
        if pid_file.exists():  # its own process group, orphaned by the cut-short stop
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
    line = next(line for line in out.splitlines() if "received SIGINT again" in line)
    assert (
        "without finishing the shutdown policy (cancel open orders): 1 open order(s) left at the venue paper"
        in line
    )
    db = sqlite3.connect(base_dir / "run" / "paper.sqlite")
    (n,) = db.execute("SELECT count(*) FROM orders WHERE status = 'accepted'").fetchone()
    assert n == 1  # what the message says: the order is still open at the venue


def test_check_does_not_hang_on_a_module_that_runs_at_import(tmp_path: Path) -> None:
    from seqtrade.cli import check_strategies

    write(
        tmp_path / "runs.py", "import threading\nthreading.Event().wait()  # what run(...) at import does\n"
    )
    cfg = write(tmp_path / "config.toml", '[venue]\n[[strategies]]\nid = "r"\npath = "runs.py"\n')
    (error,) = check_strategies(load_config(cfg), timeout=3.0)
    assert error.startswith("strategies[0] (id 'r'): loading ") and "did not finish within 3 s" in error
