"""Does the dashboard slow the order path? The order round trip with the dashboard open and updating,
against the same without it, in one run (interleaved rounds, same machine, same moment).

    .venv/bin/python bench/dashboard_bench.py [--count 2000] [--rounds 3] [--clients 4] [--no-browser]

Each round starts ``seqtrade serve`` three times, as ``seqtrade bench``'s order round trip does (the
paper venue, a still market, the journal on): without ``[dashboard]``; with it on and nobody watching
(``idle``); with it on, a headless Chromium showing the page (live state over server-sent events,
charts redrawn, the journal page loaded) and ``--clients`` more event-stream readers (``watched``). The strategy is the benchmark's own
(``seqtrade.bench._strategy orders``): market orders, buy then sell, call -> ``filled``. Prints p50
and p99 of each variant, the server's CPU time per order (the lowest of the rounds), and the ratios
to the run without the dashboard.
Reads the ratios, not the absolute figures: those depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from seqtrade.bench.hist import new_hist, read_result, summary
from seqtrade.bench.run import (
    SYMBOL,
    BenchError,
    Procs,
    load_per_core,
    process_cpu_s,
    scenario,
    server_config,
)

CHROMIUM = os.environ.get("SEQTRADE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Viewers:
    """What keeps the dashboard open and updating: event-stream readers and a browser, on threads."""

    def __init__(self, url: str, clients: int, browser: bool) -> None:
        self.url = url
        self.stop = threading.Event()
        self.events = 0
        self.renders = 0
        self.threads = [threading.Thread(target=self._reader, daemon=True) for _ in range(clients)]
        if browser:
            self.threads.append(threading.Thread(target=self._browser, daemon=True))
        self.error: str | None = None

    def __enter__(self) -> Viewers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def _reader(self) -> None:
        try:
            with urllib.request.urlopen(self.url + "/api/events", timeout=30) as r:
                for line in r:
                    if line.startswith(b"event: state"):
                        self.events += 1
                    if self.stop.is_set():
                        return
        except OSError as exc:
            self.error = f"event stream: {exc}"

    def _browser(self) -> None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(self.url + "/")
            last = ""
            while not self.stop.is_set():
                v = page.get_attribute("body", "data-version") or ""
                if v != last:
                    self.renders += 1
                    last = v
                page.wait_for_timeout(100)
            b.close()


def round_trip(root: Path, tag: str, count: int, warmup: int, dashboard: bool, clients: int,
               browser: bool) -> tuple[dict[str, Any], dict[str, HdrHistogram]]:  # fmt: skip
    with scenario(root, tag) as (d, procs):
        port = free_port()
        text = server_config(rate=0)
        if dashboard:
            text += f"\n[dashboard]\nenabled = true\nport = {port}\n"
        (d / "server.toml").write_text(text)
        server = procs.start("server", ["-m", "seqtrade.cli", "serve", "--config", str(d / "server.toml")])
        _wait_for(lambda: (d / "run" / "order.ipc").exists(), server, procs)
        url = f"http://127.0.0.1:{port}"
        if dashboard:
            _wait_for(lambda: _up(url), server, procs)
        viewers = Viewers(url, clients if dashboard else 0, browser and dashboard)
        with viewers:
            if dashboard and browser:
                time.sleep(3.0)  # the page loaded and drew once before the orders start
            cpu0 = process_cpu_s(server.pid)
            out = d / "orders.json"
            p = procs.start("strategy", [
                "-m", "seqtrade.bench._strategy", "orders", "--run-dir", str(d / "run"), "--id", "benchorders",
                "--out", str(out), "--symbols", SYMBOL, "--count", str(count), "--warmup-orders", str(warmup),
            ])  # fmt: skip
            procs.wait([("strategy", p)], 60 + count * 0.02)
            cpu1 = process_cpu_s(server.pid)
        procs.stop("server", server)
        res, hists = read_result(out)
        if res.get("errors"):
            raise BenchError(f"orders were rejected: {res.get('error_samples')}")
        if viewers.error:
            raise BenchError(viewers.error)
        res["state_events_per_reader"] = viewers.events // max(clients, 1) if dashboard else 0
        res["page_renders"] = viewers.renders
        if cpu0 is not None and cpu1 is not None and res.get("orders"):
            res["server_cpu_us_per_order"] = round((cpu1 - cpu0) / res["orders"] * 1e6, 1)
        return res, hists


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _wait_for(cond: Any, server: Any, procs: Procs) -> None:
    deadline = time.monotonic() + 30
    while not cond():
        if server.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"the server did not come up:\n{procs.log_tail('server')}")
        time.sleep(0.02)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=2000, help="orders per run (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each variant, interleaved")
    ap.add_argument("--clients", type=int, default=4, help="event-stream readers besides the browser")
    ap.add_argument("--no-browser", action="store_true", help="no Chromium page (event streams only)")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    browser = not args.no_browser and Path(CHROMIUM).exists()
    import tempfile

    load0 = load_per_core()
    variants = ("without", "idle", "dashboard")  # idle: on, nobody watching
    merged = {v: {"accepted": new_hist(), "filled": new_hist()} for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    extra: dict[str, list[Any]] = {"events": [], "renders": []}
    with tempfile.TemporaryDirectory(prefix="dash-bench-") as tmp:
        for i in range(args.rounds):
            for variant in variants if i % 2 == 0 else variants[::-1]:
                watched = variant == "dashboard"
                res, hists = round_trip(Path(tmp), f"{variant}{i}", args.count, args.warmup, variant != "without",
                                        args.clients if watched else 0, browser and watched)  # fmt: skip
                for k in ("accepted", "filled"):
                    merged[variant][k].add(hists[k])
                if "server_cpu_us_per_order" in res:
                    cpu[variant].append(res["server_cpu_us_per_order"])
                if variant == "dashboard":
                    extra["events"].append(res["state_events_per_reader"])
                    extra["renders"].append(res["page_renders"])
                print(f"round {i + 1} {variant:<9} filled p50 {summary(hists['filled'])['p50_us']:.0f} us"
                      f" p99 {summary(hists['filled'])['p99_us']:.0f} us", flush=True)  # fmt: skip
    out: dict[str, Any] = {"count_per_run": args.count, "rounds": args.rounds, "clients": args.clients,
                           "browser": browser, "load_per_core_before": round(load0, 2),
                           "load_per_core_after": round(load_per_core(), 2)}  # fmt: skip
    print(f"\norder round trip, {args.rounds} x {args.count} orders per variant; dashboard: {args.clients} event"
          f" streams{' + a Chromium page' if browser else ''}")  # fmt: skip
    names = {"without": "without", "idle": "idle", "dashboard": "watched"}
    print(
        f"{'':<24}"
        + "".join(f"{names[v]:>10}" for v in variants)
        + f"{'idle/without':>14}{'watched/without':>17}"
    )
    for k in ("accepted", "filled"):
        s = {v: summary(merged[v][k]) for v in variants}
        for pct in ("p50", "p99"):
            us = {v: s[v][f"{pct}_us"] for v in variants}
            ri, rw = us["idle"] / us["without"], us["dashboard"] / us["without"]
            print(f"{'call -> ' + k + ' ' + pct:<24}" + "".join(f"{us[v]:>8.0f}us" for v in variants)
                  + f"{ri:>14.2f}{rw:>17.2f}")  # fmt: skip
            out[f"{k}_{pct}"] = {
                **{f"{v}_us": us[v] for v in variants},
                "ratio_idle": round(ri, 3),
                "ratio": round(rw, 3),
            }
    if all(cpu.values()):
        low = {v: min(cpu[v]) for v in variants}
        print(f"{'server CPU per order':<24}" + "".join(f"{low[v]:>8.0f}us" for v in variants)
              + f"{low['idle'] / low['without']:>14.2f}{low['dashboard'] / low['without']:>17.2f}")  # fmt: skip
        out["server_cpu_us_per_order"] = cpu
    print(f"state events per reader per run: {extra['events']}; page renders per run: {extra['renders']}")
    out.update(extra)
    print(f"load per core: {out['load_per_core_before']} before, {out['load_per_core_after']} after")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
