"""`seqtrade serve` pointed at the fake OKX exchange: a strategy trades through the OKX adapter,
unchanged from the paper run, and receives its fills. Server and strategy are real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from tests.fakeokx import open_fake_okx

from .test_client import StrategyProcess


def write_okx_config(base_dir: Path, fake: Any) -> Path:
    """A server config that trades BTC-USDT on ``fake`` (the fake OKX exchange), in demo mode."""
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
    return cfg


async def test_strategy_trades_through_okx_adapter_against_fake(base_dir: Path):
    with trio.fail_after(40):
        async with open_fake_okx() as fake:
            fake.set_market("BTC-USDT", bid=100.0, ask=100.2, bid_sz=1.0, ask_sz=1.0)
            cfg = write_okx_config(base_dir, fake)
            env = dict(
                os.environ, OKX_API_KEY="fake-key", OKX_SECRET_KEY="fake-secret", OKX_PASSPHRASE="fake-pass"
            )
            server = await trio.lowlevel.open_process(
                [sys.executable, "-m", "seqtrade.cli", "serve", "--config", str(cfg)],
                env=env, stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                strat = await StrategyProcess.start(
                    base_dir / "run", "okx1", side="buy", price=99.0, qty=0.01
                )
                await strat.event("start")
                acc = await strat.event("order", status="accepted")
                assert fake.place_count(fake.orders[next(iter(fake.orders))]["clOrdId"]) == 1
                fake.set_market("BTC-USDT", bid=98.8, ask=99.0, bid_sz=1.0, ask_sz=1.0)
                filled = await strat.event("order", status="filled", coid=acc["coid"])
                assert filled["position"] == 0.01 and filled["avg_price"] == 99.0
                code, _ = await strat.stop()
                assert code == 0
            finally:
                server.send_signal(signal.SIGINT)
                assert await server.wait() == 0
            assert server.stderr is not None
            chunks = []
            while chunk := await server.stderr.receive_some(1 << 16):
                chunks.append(chunk)
            log = b"".join(chunks).decode()
            assert "venue okx ready" in log
            assert "fake-secret" not in log and "fake-pass" not in log
