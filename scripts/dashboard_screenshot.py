#!/usr/bin/env python3
"""The README's picture of the dashboard, taken by the system's Chromium (Playwright) from a real server.

    .venv/bin/python scripts/dashboard_screenshot.py [--seconds 40] [--out docs/img/dashboard.png]

Runs ``seqtrade serve`` on a copy of the shipped config.toml (the paper exchange and the two example
strategies; the dashboard on another free port) in a temporary directory, lets them trade, opens the
page and saves a full-page screenshot.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("SEQTRADE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=40.0, help="how long the strategies trade first")
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "dashboard.png"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="st-shot-") as tmp:
        work = Path(tmp)
        shutil.copytree(ROOT / "examples", work / "examples")
        config = (ROOT / "config.toml").read_text().replace("port = 8321", f"port = {port}")
        (work / "config.toml").write_text(config)
        log = open(work / "serve.log", "wb")  # noqa: SIM115 - closed below
        server = subprocess.Popen([sys.executable, "-m", "seqtrade.cli", "serve", "--plain", "--config", "config.toml"],
                                  cwd=work, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        print((work / "serve.log").read_text(), file=sys.stderr)
                        return 1
                    time.sleep(0.2)
            time.sleep(args.seconds)
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                page = b.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url + "/")
                page.wait_for_selector("#strategies tr[data-strategy]")
                page.wait_for_selector("#equity canvas")
                page.wait_for_selector('#journal-table[data-loaded="fills:1"]')
                page.wait_for_timeout(1500)  # one more series update drawn
                page.screenshot(path=args.out, full_page=True)
                b.close()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)
            log.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
