"""Safe files (issue 12): the server refuses a run directory another user owns, or that others may write
(another local user could replace ``order.ipc`` and receive our orders); every file it creates is 0600
and every directory 0700, even when it is started with umask 000. Real commands, real directories."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from seqtrade.bus import run_dir_refusal
from seqtrade.server.control import request

from .test_startup_errors import serve_fails, write_config

NOBODY = 65534


def test_run_dir_refusal_rules() -> None:
    me = os.geteuid()
    assert run_dir_refusal(stat.S_IFDIR | 0o700, me, me) == ""
    assert run_dir_refusal(stat.S_IFDIR | 0o755, me, me) == ""  # tightened to 0700 when used
    assert "owned by uid 65534" in run_dir_refusal(stat.S_IFDIR | 0o700, NOBODY, me)
    assert "group or others may write" in run_dir_refusal(stat.S_IFDIR | 0o777, me, me)
    assert "group or others may write" in run_dir_refusal(stat.S_IFDIR | 0o770, me, me)
    assert "symbolic link" in run_dir_refusal(stat.S_IFLNK | 0o777, me, me)
    assert "not a directory" in run_dir_refusal(stat.S_IFREG | 0o600, me, me)


def test_a_run_dir_owned_by_another_user_is_refused(base_dir: Path) -> None:
    run_dir = base_dir / "run"
    run_dir.mkdir(mode=0o700)
    os.chown(run_dir, NOBODY, NOBODY)  # another local user made it first (we are root in this test)
    line = serve_fails(write_config(base_dir, run_dir))
    assert line.startswith(f"seqtrade: error: refusing the run directory {run_dir}: it is owned by uid 65534")
    assert not (run_dir / "order.ipc").exists() and not (run_dir / "journal.sqlite").exists()


def test_a_world_writable_run_dir_is_refused(base_dir: Path) -> None:
    run_dir = base_dir / "run"
    run_dir.mkdir()
    os.chmod(run_dir, 0o777)
    line = serve_fails(write_config(base_dir, run_dir))
    assert "group or others may write to it (mode 0777)" in line and "chmod 700" in line
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o777  # refused, not repaired behind the user's back
    assert not (run_dir / "journal.sqlite").exists()


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_every_file_is_0600_under_umask_000(base_dir: Path) -> None:
    """The real `seqtrade serve` in a process whose umask is 000: the journal (and SQLite's -wal and
    -shm), the paper account and the snapshot are 0600, the run directory 0700."""
    cfg = write_config(base_dir, base_dir / "run", 'state_path = "paper.sqlite"\n')
    code = "import os, sys; os.umask(0); from seqtrade.cli import main; sys.exit(main(sys.argv[1:]))"
    err = base_dir / "server.err"
    run = base_dir / "run"
    with open(err, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=out)  # fmt: skip
    try:
        t0 = time.monotonic()
        while True:  # until the server answers on its control socket
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() - t0 < 30, "server did not come up"
            try:
                if request(f"ipc://{run / 'control.ipc'}", "status", timeout=1.0):
                    break
            except ConnectionError:
                pass
            time.sleep(0.05)
        assert _mode(run) == 0o700
        for name in (
            "journal.sqlite",
            "journal.sqlite-wal",
            "journal.sqlite-shm",
            "paper.sqlite",
            "server.lock",
        ):
            assert _mode(run / name) == 0o600, name
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, err.read_text()
    assert _mode(run / "snapshot.sqlite") == 0o600  # written at the clean stop
    made = [p for p in run.rglob("*")]
    assert made and all(_mode(p) == (0o700 if p.is_dir() else 0o600) for p in made), [
        (p.name, oct(_mode(p))) for p in made
    ]


def test_reset_deletes_the_snapshot_and_the_archive_with_the_journal(base_dir: Path) -> None:
    """They belong to the journal: a new journal with the old archive would mix two histories."""
    run = base_dir / "run"
    run.mkdir(mode=0o700)
    cfg = write_config(base_dir, run)
    files = [run / n for n in ("journal.sqlite", "snapshot.sqlite", "archive.sqlite")]
    for f in files:
        f.write_bytes(b"")
    r = subprocess.run([sys.executable, "-m", "seqtrade.cli", "reset", "--config", str(cfg), "--yes"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0 and "deleted 3 file(s)" in r.stdout, r.stdout + r.stderr
    assert not any(f.exists() for f in files)
