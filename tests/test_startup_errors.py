"""Start-up failures of ``seqtrade serve`` end with one ``seqtrade: error: ...`` line and exit code 2.

Each test runs the real command in a subprocess (as an operator would) against a real run directory:
an ipc path too long, a run dir another server holds, a journal that cannot be opened, a run dir that
cannot be created. None may print a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio
import zmq

from seqtrade.bus import bind_secure
from seqtrade.errors import TransportError

from .conftest import QUIET_MARKET

SERVE = [sys.executable, "-m", "seqtrade.cli", "serve", "--config"]


def write_config(where: Path, run_dir: Path, extra: str = "") -> Path:
    where.mkdir(parents=True, exist_ok=True)
    path = where / "config.toml"
    text = QUIET_MARKET.replace('run_dir = "run"', f'run_dir = "{run_dir}"', 1) + extra
    assert f'run_dir = "{run_dir}"' in text
    path.write_text(text)
    return path


def serve_fails(config: Path) -> str:
    """Run ``seqtrade serve``; it must fail at once with exit code 2 and one error line. That line."""
    r = subprocess.run([*SERVE, str(config)], capture_output=True, text=True, timeout=60)
    errors = [line for line in r.stderr.splitlines() if line.startswith("seqtrade: error:")]
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert len(errors) == 1, r.stderr
    assert r.stdout == ""
    return errors[0]


def test_an_ipc_path_too_long(base_dir: Path) -> None:
    run_dir = base_dir / ("d" * (109 - len(str(base_dir))))  # the run dir alone is 110 bytes
    assert len(str(run_dir)) == 110
    line = serve_fails(write_config(base_dir, run_dir))
    assert "md.ipc" in line and "107" in line and "server.run_dir" in line


def test_an_unwritable_journal(base_dir: Path) -> None:
    run_dir = base_dir / "run"
    run_dir.mkdir()
    (run_dir / "file").write_text("a regular file, not a directory")  # root ignores modes: this stops it
    line = serve_fails(write_config(base_dir, run_dir, '[journal]\npath = "file/journal.sqlite"\n'))
    assert line.startswith("seqtrade: error: cannot open journal") and "file/journal.sqlite" in line


def test_an_unwritable_paper_account(base_dir: Path) -> None:
    run_dir = base_dir / "run"
    run_dir.mkdir()
    (run_dir / "file").write_text("x")
    # QUIET_MARKET ends in [venue.paper]: the key lands there
    line = serve_fails(write_config(base_dir, run_dir, 'state_path = "file/paper.sqlite"\n'))
    assert line.startswith("seqtrade: error: cannot open the paper account") and "file/paper.sqlite" in line


def test_a_run_dir_that_cannot_be_created(base_dir: Path) -> None:
    (base_dir / "file").write_text("x")
    line = serve_fails(write_config(base_dir, base_dir / "file" / "run"))
    assert "cannot create the run directory" in line


async def test_a_run_dir_another_server_holds(base_dir: Path) -> None:
    config = write_config(base_dir, base_dir / "run")
    with trio.fail_after(60):
        first = await trio.lowlevel.open_process([*SERVE, str(config)], stderr=subprocess.PIPE)
        assert first.stderr is not None
        try:
            seen = b""
            while b"listening:" not in seen:  # it holds the lock and its sockets are bound
                chunk = await first.stderr.receive_some()
                assert chunk, f"the first server exited: {seen.decode()}"
                seen += chunk
            line = await trio.to_thread.run_sync(serve_fails, config)
            assert "another seqtrade server" in line and f"(pid {first.pid})" in line
            assert first.returncode is None  # the first server is untouched
        finally:
            first.terminate()
            assert await first.wait() == 0
            await first.stderr.aclose()


def test_a_bind_error_is_a_transport_error(base_dir: Path) -> None:
    """At the boundary itself: zmq's error enters as the project's, naming the endpoint."""
    ctx = zmq.Context()
    try:
        a, b = ctx.socket(zmq.PUB), ctx.socket(zmq.PUB)
        try:
            a.bind("tcp://127.0.0.1:0")
            taken = a.getsockopt(zmq.LAST_ENDPOINT).decode()
            with pytest.raises(TransportError, match=f"cannot bind {taken}: Address already in use"):
                bind_secure(b, taken)
        finally:
            a.close(0)
            b.close(0)
    finally:
        ctx.term()
