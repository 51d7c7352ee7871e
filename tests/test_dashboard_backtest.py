"""The dashboard's backtest page (docs/dashboard.md, "A backtest's results"): when the server runs a
backtest with the dashboard on, ``/api/backtest`` gives its progress and the same results as the
results.json it writes, and ``/backtest`` draws them in a real headless browser.

The pure part (:func:`~seqtrade.server.dashboard.model.backtest_doc`) is tested directly; then a real
``seqtrade backtest --hold`` (a recording by the real server, two real strategy processes) is read over
HTTP while it runs and after it finished, and stopped by SIGTERM like a user's Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from seqtrade.backtest_results import FillRecord, Mark, results, to_json
from seqtrade.server.dashboard.model import backtest_doc

from .test_backtest import journaled_reports
from .test_dashboard import http
from .test_dashboard_browser import Browser, browser_missing, cells
from .test_replay import STRATEGIES, record

# ------------------------------------------------------------------ the pure part


def test_the_document_carries_the_progress_and_the_results_of_results_json() -> None:
    r = results([FillRecord(2_000, "a", "X", "buy", 10.0, 1.0, 0.01), FillRecord(5_000, "a", "X", "sell", 12.0, 1.0, 0.01)],
                marks=[Mark(1_000, "X", 10.0), Mark(6_000, "X", 12.0)], strategies=["a", "b"],
                start_ns=1_000, end_ns=6_000)  # fmt: skip
    text = to_json(r)
    running = backtest_doc(250, 1_000, False, text)
    assert running["state"] == "running" and running["pct"] == 25.0
    assert (running["done"], running["total"]) == (250, 1_000)
    assert running["results"] == json.loads(text)  # the very document of results.json
    assert running["results"]["strategies"]["a"]["realised_pnl"] == pytest.approx(2.0)
    assert running["results"]["strategies"]["b"]["fills"] == 0
    done = backtest_doc(1_000, 1_000, True, text)
    assert done["state"] == "finished" and done["pct"] == 100.0
    # a total the progress outgrew (the rows counted before the run), or none counted: never above 100 %
    assert backtest_doc(1_200, 1_000, False, text)["pct"] == 100.0
    assert backtest_doc(1_200, 1_000, False, text)["total"] == 1_200
    assert backtest_doc(0, 0, False, text)["pct"] == 0.0  # before the rows are counted: not done
    assert backtest_doc(0, 0, True, text)["state"] == "finished"


# ------------------------------------------------------------------ a real backtest, dashboard on


@dataclass
class Run:
    proc: trio.Process
    url: str
    out: Path
    log: list[str] = field(default_factory=list)


def config_text(out: Path) -> str:
    strategies = "".join(f"""
[[strategies]]
id = "{sid}"
path = "{STRATEGIES / "bt_maker.py"}"
restart = "never"
params = {{ symbol = "{sym}", out = "{out / sid}.jsonl", every = {every} }}
""" for sid, sym, every in (("mk1", "BTC-USDT", 0.2), ("mk2", "ETH-USDT", 0.3)))  # fmt: skip
    return f"""
[server]
run_dir = "run"
status_interval = 0

[venue]
kind = "paper"
symbols = ["BTC-USDT", "ETH-USDT"]

[dashboard]
enabled = true
port = 0
{strategies}"""


async def _read_log(run: Run, stream: Any, url_ready: trio.Event, holder: list[str]) -> None:
    buf = b""
    async for chunk in stream:
        buf += chunk
        *lines, rest = buf.split(b"\n")
        buf = rest
        for line in lines:
            text = line.decode(errors="replace")
            run.log.append(text)
            m = re.search(r"dashboard on (http://\S+)", text)
            if m and not url_ready.is_set():
                holder.append(m.group(1))
                url_ready.set()


async def start_backtest(nursery: trio.Nursery, base_dir: Path) -> AsyncIterator[Run]:
    """``seqtrade backtest --hold`` over a fresh recording, dashboard on; yields once the dashboard
    listens; at the end, SIGTERM (the user's Ctrl-C) and the exit code must be 0."""
    data = await record(nursery, base_dir, 1500)
    out = base_dir / "bt"
    out.mkdir()
    cfg = base_dir / "bt.toml"
    cfg.write_text(config_text(out))
    cmd = [sys.executable, "-m", "seqtrade.cli", "backtest", "--data", str(data), "--config", str(cfg),
           "--out", str(out / "results"), "--log-level", "INFO", "--hold", "--no-plot"]  # fmt: skip
    proc = await trio.lowlevel.open_process(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    url_ready = trio.Event()
    holder: list[str] = []
    run = Run(proc, "", out)
    assert proc.stderr is not None
    nursery.start_soon(_read_log, run, proc.stderr, url_ready, holder)
    try:
        with trio.fail_after(60):
            await url_ready.wait()
        run.url = holder[0]
        yield run
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        with trio.fail_after(60):
            code = await proc.wait()
    assert code == 0, "\n".join(run.log[-40:])


async def until_finished(run: Run) -> list[dict[str, Any]]:
    """Every ``/api/backtest`` document read until the backtest finished (it runs in another process:
    asked again a tenth of a second later, as the page asks every second)."""
    docs: list[dict[str, Any]] = []
    with trio.fail_after(120):
        while not docs or docs[-1]["state"] != "finished":
            ans = await http(run.url, "/api/backtest")
            assert ans.status == 200 and ans.headers["content-type"] == "application/json"
            docs.append(ans.json())
            if docs[-1]["state"] != "finished":
                await trio.sleep(0.1)
    return docs


async def test_the_results_endpoint_is_results_json_and_follows_the_progress(nursery, base_dir) -> None:
    agen = start_backtest(nursery, base_dir)
    run = await agen.__anext__()
    try:
        docs = await until_finished(run)
        assert all(d["state"] in ("running", "finished") for d in docs)
        pcts = [d["pct"] for d in docs]
        assert pcts == sorted(pcts) and pcts[-1] == 100.0  # the progress only goes forward, to the end
        assert [d["done"] for d in docs] == sorted(d["done"] for d in docs)
        final = docs[-1]
        # every recorded message was played (the total counts the recorded rows, some not replayed)
        assert 0 < final["done"] <= final["total"]
        page = await http(run.url, "/backtest")
        assert page.status == 200 and b'src="static/backtest.js"' in page.body
        for method in ("POST", "PUT", "DELETE"):  # read-only like every other endpoint
            assert (await http(run.url, "/api/backtest", method=method)).status == 405
        again = (await http(run.url, "/api/backtest")).json()
        assert again == final  # held: the results stay as they were
    finally:
        with pytest.raises(StopAsyncIteration):
            await agen.__anext__()  # SIGTERM, exit code 0, results.json written
    written = json.loads((run.out / "results" / "results.json").read_text())
    assert final["results"] == written  # the endpoint's results are results.json's, all of them
    assert written["strategies"]["mk1"]["fills"] > 0 and written["strategies"]["mk2"]["fills"] > 0
    assert final["results"]["account"]["equity"]  # the curves the page draws
    assert journaled_reports(base_dir / "run-backtest" / "journal.sqlite")  # it traded through the server


@pytest.fixture
def page_browser() -> Iterator[Browser]:
    why = browser_missing()
    if why is not None:
        import os

        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests: {why}")
        pytest.skip(why)
    b = Browser()
    yield b
    b.close()


async def test_the_results_page_renders_the_strategies_rows_in_a_browser(
    nursery, base_dir, page_browser
) -> None:
    agen = start_backtest(nursery, base_dir)
    run = await agen.__anext__()
    try:
        final = (await until_finished(run))[-1]
        await page_browser.started()
        with trio.fail_after(60):
            await page_browser.call(lambda p: p.goto(run.url + "/backtest"))
            await page_browser.call(
                lambda p: p.wait_for_selector("#progress [data-k=state][data-v=finished]", timeout=30_000)
            )
            names = await page_browser.call(
                lambda p: p.eval_on_selector_all("#results tbody tr", "rs => rs.map(r => r.dataset.strategy)")
            )
            rows = {n: await page_browser.call(lambda p, n=n: cells(p, f'#results tr[data-strategy="{n}"]'))
                    for n in names}  # fmt: skip
            canvases = await page_browser.call(
                lambda p: p.eval_on_selector_all("#equity canvas", "cs => cs.length")
            )
        assert names == ["mk1", "mk2", "account"]
        for name in ("mk1", "mk2"):
            s = final["results"]["strategies"][name]
            assert float(rows[name]["net_pnl"]) == pytest.approx(s["net_pnl"])
            assert int(rows[name]["fills"]) == s["fills"] > 0
        assert int(rows["account"]["fills"]) == final["results"]["account"]["fills"]
        assert canvases >= 1  # uPlot drew the equity curves
        assert page_browser.errors == []  # no script error on the page
    finally:
        with pytest.raises(StopAsyncIteration):
            await agen.__anext__()
