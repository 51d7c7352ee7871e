"""A wrong OKX secret at start ends `seqtrade serve` with one clean line (exit code 2), not an
exception-group traceback: the refused login travels through two nurseries before the command sees it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from tests.fakeokx import open_fake_okx

from .test_okx_e2e import write_okx_config


async def test_a_wrong_okx_secret_ends_serve_with_one_line(base_dir: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_okx() as fake:
            cfg = write_okx_config(base_dir, fake)
            env = dict(os.environ, OKX_API_KEY="fake-key", OKX_SECRET_KEY="wrong", OKX_PASSPHRASE="fake-pass")
            r = await trio.run_process(
                [sys.executable, "-m", "seqtrade.cli", "serve", "--config", str(cfg)],
                env=env, capture_stdout=True, capture_stderr=True, check=False,
            )  # fmt: skip
    err = r.stderr.decode()
    errors = [line for line in err.splitlines() if line.startswith("seqtrade: error:")]
    assert r.returncode == 2, err
    assert "Traceback" not in err and "ExceptionGroup" not in err, err
    assert len(errors) == 1 and "login refused" in errors[0], err
    assert "wrong" not in err  # never the secret
