"""A wrong OKX secret at start ends `seqtrade serve` with one clean line (exit code 2), not an
exception-group traceback: the refused login travels through two nurseries before the command sees it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from tests.fakeokx import open_fake_okx


async def test_a_wrong_okx_secret_ends_serve_with_one_line(base_dir: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_okx() as fake:
            cfg = base_dir / "okx.toml"
            cfg.write_text(f"""
[server]
run_dir = "run"
status_interval = 0
[venue]
kind = "okx"
symbols = ["BTC-USDT"]
[venue.okx]
demo = true
rest_url = "{fake.rest_url}"
ws_public_url = "{fake.ws_public_url}"
ws_private_url = "{fake.ws_private_url}"
""")
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
