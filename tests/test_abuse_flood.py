"""Floods of fresh strategy ids on the order socket (issue 12), and bench/abuse.py.

A bad frame naming a strategy the server has never admitted (no hello let in, no history) is charged
to one budget shared by all such ids: a flood that names a new id in every frame is answered (a
journaled ``rejected`` report and an INFO line each) ``bad_frame_burst`` times in all, not that many
times per id. A strategy that has joined keeps a budget of its own. The order task reads a bounded
batch at a time, and takes a cancellation between batches: a stop is honoured under a flood that
never lets the order socket empty.

The bench run is a smoke test: it completes and reports every figure; no figure is asserted (speed
depends on the machine: docs/operations.md has the full run's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgpack
import trio
import zmq

from seqtrade import wire
from seqtrade.bus import TrioSocket
from seqtrade.client import Endpoints
from seqtrade.errors import WireError
from seqtrade.models import Hello
from seqtrade.server.app import serve
from seqtrade.server.gateway import ORDER_BATCH
from seqtrade.venues.paper import PaperVenue

from .test_engine import Shell, now_ms, server_config

BURST = 5
ROOT = Path(__file__).resolve().parent.parent


def bad_frame(sid: str) -> WireError:
    frame = f"order_request/{sid}/".encode() + msgpack.packb(
        {"type": "order_request", "strategy_id": sid, "client_order_id": 7}
    )
    try:
        wire.parse_request(frame)
    except WireError as exc:
        return exc
    raise AssertionError("the frame parsed")


def test_bad_frames_from_fresh_ids_share_one_budget_and_a_joined_strategy_keeps_its_own(
    tmp_path: Path,
) -> None:
    sh = Shell(server_config(tmp_path, bad_frame_burst=BURST, bad_frame_rate=1.0), tmp_path)
    engine = sh.engine
    t = now_ms()
    sh.perform(engine.on_request(Hello("joined", 0, "n1"), t))
    answered = sum(bool(engine.on_bad_frame(bad_frame(f"g{i}"), t).replies) for i in range(1_000))
    assert answered == BURST  # before: 1,000 (a full bucket for every new id)
    assert engine.counters.bad_frames_dropped == 1_000 - BURST
    mine = sum(bool(engine.on_bad_frame(bad_frame("joined"), t).replies) for _ in range(3 * BURST))
    assert mine == BURST  # the flood did not spend it, and it is bounded too


def test_a_strategy_with_a_history_keeps_its_own_budget(tmp_path: Path) -> None:
    """Known from the journal (a restart): not a new id, though it has not said hello yet."""
    sh = Shell(server_config(tmp_path, bad_frame_burst=BURST, bad_frame_rate=1.0), tmp_path)
    engine = sh.engine
    engine.sessions.known.add("old")  # what the engine holds for an id with reports in the journal
    t = now_ms()
    for i in range(100):
        engine.on_bad_frame(bad_frame(f"g{i}"), t)
    assert sum(bool(engine.on_bad_frame(bad_frame("old"), t).replies) for _ in range(2 * BURST)) == BURST


async def test_the_order_task_reads_a_flood_a_bounded_batch_at_a_time(
    tmp_path: Path, zctx: zmq.Context
) -> None:
    """A valid order behind a flood waits for the batch being decided and its own, no more: the
    order task reads at most ``ORDER_BATCH`` frames before it performs them (the rest stay queued)."""
    pull = zctx.socket(zmq.PULL)
    push = zctx.socket(zmq.PUSH)
    for s in (pull, push):
        s.setsockopt(zmq.LINGER, 0)
    try:
        pull.bind(f"ipc://{tmp_path}/o.ipc")
        push.connect(f"ipc://{tmp_path}/o.ipc")
        n = 3 * ORDER_BATCH + 5
        for i in range(n):
            push.send(b"junk%d" % i)
        sock = TrioSocket(pull)
        got: list[bytes] = []
        with trio.fail_after(10):
            while len(got) < n:
                batch = await sock.recv_batch(ORDER_BATCH)
                assert 1 <= len(batch) <= ORDER_BATCH
                got.extend(batch)
        assert got == [b"junk%d" % i for i in range(n)]
        assert 1 <= ORDER_BATCH <= 256  # a batch is decided in well under a few ms at ~10 us a frame
    finally:
        push.close()
        pull.close()


FLOOD = """
import sys, zmq
from seqtrade import wire
from seqtrade.models import Hello
push = zmq.Context().socket(zmq.PUSH)
push.connect(sys.argv[1])
frames = [wire.encode_message(Hello(f"f{sys.argv[2]}x{i}", 0, "n")) for i in range(10_000)]
while True:
    for f in frames:
        push.send(f)
"""


async def test_a_stop_is_honoured_while_a_flood_never_lets_the_order_socket_empty(base_dir: Path) -> None:
    """The order task used to take a cancellation only when the socket was empty: under a flood from
    another process the server's stop waited for the flood to end (forever, for an endless one)."""
    config = server_config(base_dir)
    floods = []
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                gw = await nursery.start(
                    serve, config, PaperVenue(config.venue.paper, list(config.venue.symbols))
                )
                for i in range(3):  # together faster than the server reads
                    floods.append(
                        await trio.lowlevel.open_process(
                            [sys.executable, "-c", FLOOD, Endpoints.from_config(config).order, str(i)]
                        )
                    )
                while gw.counters.hellos_throttled < 50_000:  # the flood is on, the server reading it
                    await trio.sleep(0.01)
                gw.request_stop()
            assert all(f.poll() is None for f in floods)  # serve returned while the flood was on
    finally:
        for flood in floods:
            flood.kill()
            with trio.move_on_after(10):
                await flood.wait()


def test_abuse_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "abuse.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "abuse.py"), "--smoke", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(out.read_text())
    for line in ("phase", "idle", "hellos", "garbage+good", "SIGINT", "server RSS", "log:"):
        assert line in r.stdout, line
    idle = rep["idle"]["good_orders"]
    assert idle["sent"] == rep["plan"]["idle_orders"] and idle["p99_ms"] is not None
    assert [f["flood"] for f in rep["floods"]] == ["hellos", "garbage", "garbage+good", "all"]
    for f in rep["floods"]:
        o = f["good_orders"]
        assert o["sent"] == o["ok"] + o["stale"] + o["rejected"] + o["lost"] > 0, f
        for k in ("p50_ms", "p99_ms", "max_ms"):
            assert k in o, (f["flood"], k)
        assert f["status"]["asked"] >= 1 and "median_ms" in f["status"] and "rc" in f["status"]["cli"]
        assert set(f["rss_mb"]) == {"before", "after"} and f["log_lines"] >= 0
        assert f["sent"] and all(v["frames"] > 0 for v in f["sent"].values()), f
    assert rep["sigint"]["rc"] is not None and rep["sigint"]["exit_s"] is not None
    assert set(rep["rss_mb"]) == {"start", "end", "peak"} and rep["log_lines_total"] > 0
    assert len(rep["loadavg_start"]) == 3 and len(rep["loadavg_end"]) == 3
