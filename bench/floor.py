"""The floor of the order round trip: a ladder of servers, each the one before plus one thing.

``python bench/floor.py`` measures, in one interleaved run, the round trip of one order (one in
flight) from the same raw client (``seqtrade.bench._raw``'s PUSH/SUB client, plain pyzmq + msgpack:
strategy PUSH -> server PULL -> server PUB -> strategy SUB) against a ladder of servers, each a
separate process:

- ``a raw``: the bench's raw echo (``python -m seqtrade.bench._raw echo``): unpack, pack one report.
- ``b codec``: + the wire codec: the order frame decoded by ``seqtrade.wire.parse_request`` (every
  check of the protocol), an ``accepted`` :class:`~seqtrade.models.OrderReport` encoded by
  ``seqtrade.wire.encode_message``. Blocking pyzmq loop.
- ``c pwritev``: + persist, then send, as bare system calls: the order's record packed and written (one
  ``pwritev`` of a length + CRC header and the payload, the journal's frame layout, to a real file in
  the temp dir) before "the venue" (which accepts at once), the report's body packed and written
  after, the report published from that body (``encode_stored_report``).
- ``c2 journal``: the same with the real :class:`~seqtrade.server.journal.Journal` doing the writes
  (``synchronous = "normal"``, as shipped): ``add_records`` (with its duplicate checks) before the
  venue, ``add_reports`` after; the SQLite index follows after the send when due, as in the server.
- ``d trio``: rung c2's loop on Trio: the PULL socket read with
  :meth:`seqtrade.bus.TrioSocket.recv_batch` (the FD waited on as the server does), the report sent with
  ``send_nowait``.
- ``e engine``: + the real :class:`~seqtrade.server.engine.Engine` with its
  :class:`~seqtrade.server.risk.RiskGate` and :class:`~seqtrade.server.accounts.Accounts`, built as
  ``seqtrade.server.app.build`` builds them from the bench's server config: ``on_request`` (idempotency,
  rounding, risk), the venue's ``accepted`` event through ``report_steps`` / ``number`` / ``committed``.
  Left out: the gateway's tasks and queues, the paper venue's matching engine (here "the venue"
  answers ``accepted`` at once), the fill.
- ``e2 fill``: + the fill a market order gets from the paper venue: the venue's ``filled`` event in the
  same report commit, a second report sent after the ``accepted`` one (the client times ``accepted``).
- ``f serve``: the real ``seqtrade serve`` (paper venue, the bench's server config), same raw client.
- ``g bench``: the bench's own seqtrade round trip (``seqtrade bench --only orders``: a
  ``seqtrade.client`` strategy against ``seqtrade serve``), for the link to the published figures.

Per rung: p50/p90/p99 of the accepted round trip (µs) and the server's CPU (all threads, from
``/proc/<pid>/task/*/schedstat``; rung g: the bench's own figure) per order, from when it listens to
when the client is done. The rungs run interleaved,
``--repeat`` times (a, b, ..., g, a, b, ...); the summary is the median of the repeats.

``--pythonpath DIR`` (repeatable) adds a variant: every server rung b-g runs again, right after its run
from the source, with DIR ahead of the source (e.g. a copy of the package with mypyc-compiled modules,
made by bench/floor_mypyc.sh: bench/README.md, "The floor: what 1.5x raw would take"); one table per
variant. ``--files-in DIR`` puts rungs b-e2's files there (e.g. tmpfs). ``--json FILE`` writes every
run. ``python bench/floor.py parts``: each piece of the servers alone, in-process, µs per call.
Internal roles: ``server --rung X ...`` and ``client ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import zmq

from seqtrade.bench import _raw
from seqtrade.bench import run as bench_run
from seqtrade.bench.hist import read_result, write_result
from seqtrade.bench.run import (
    load_per_core,
    round_trip_seqtrade,
    scenario,
    server_config,
    start_server,
)

RUNGS = ("a", "b", "c", "c2", "d", "e", "e2", "f", "g")
NAMES = {
    "a": "raw echo",
    "b": "+ wire codec",
    "c": "+ 2 pwritev (bare)",
    "c2": "+ the Journal class",
    "d": "+ Trio loop",
    "e": "+ engine checks",
    "e2": "+ the fill (2nd report)",
    "f": "seqtrade serve",
    "g": "bench's seqtrade round trip",
}
HERE = Path(__file__).resolve()


# ---------------------------------------------------------------------------- the ladder's servers


def _sockets(order: str, report: str) -> tuple[zmq.Context[Any], zmq.Socket[bytes], zmq.Socket[bytes]]:
    ctx: zmq.Context[Any] = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(order)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(report)
    return ctx, pull, pub


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


Loop = Callable[[zmq.Socket[bytes], zmq.Socket[bytes]], None]


def serve_codec(work: Path) -> Loop:
    """Rung b: decode with the protocol's parser, answer with an encoded ``accepted`` report."""
    from seqtrade import wire
    from seqtrade.models import OrderReport, OrderStatus

    parse, encode, accepted = wire.parse_request, wire.encode_message, OrderStatus.ACCEPTED

    def loop(pull: zmq.Socket[bytes], pub: zmq.Socket[bytes]) -> None:
        seq = 0
        while True:
            req: Any = parse(pull.recv())
            seq += 1
            r = OrderReport(
                seq, req.client_order_id, "", req.strategy_id, req.symbol, str(req.side),
                str(req.order_type), req.price or 0.0, req.quantity, accepted, timestamp=_now_ms(),
                gw_ns=time.time_ns(),
            )  # fmt: skip
            pub.send(encode(r))

    return loop


def serve_pwritev(work: Path) -> Loop:
    """Rung c: rung b plus the journal's two system calls and nothing of its bookkeeping: the order's
    record packed and written (one ``pwritev``: a length + CRC header and the payload, the journal's
    frame layout) before "the venue" accepts it, the report's body packed and written after, to a real
    file (``os.pwritev``, page cache, as ``synchronous = "normal"``); the report sent from that body."""
    import struct
    import zlib

    from seqtrade import wire
    from seqtrade.models import OrderStatus
    from seqtrade.server.orders import IdGenerator, OrderRecord, report_for

    fd = os.open(work / "log", os.O_WRONLY | os.O_CREAT, 0o600)
    # the records as the journal frames them: (0, order row ...) and (1, sid, seq, vid, body, open)
    pack = msgpack.Packer(use_bin_type=True).pack
    frame_head = struct.Struct("<II").pack
    parse, encode, to_body = wire.parse_request, wire.encode_stored_report, wire.stored_report_to_body
    ids, accepted = IdGenerator(), OrderStatus.ACCEPTED

    def loop(pull: zmq.Socket[bytes], pub: zmq.Socket[bytes]) -> None:
        offset = seq = 0
        while True:
            req: Any = parse(pull.recv())
            now = _now_ms()
            rec = OrderRecord(
                ids.next(), req.strategy_id, req.client_order_id, req.symbol, str(req.side),
                str(req.order_type), req.price, req.quantity, now,
            )  # fmt: skip
            payload = pack([(0, rec.venue_order_id, rec.strategy_id, rec.client_order_id, rec.symbol,
                             rec.side, rec.order_type, rec.price, rec.quantity, now, 1, 0)])  # fmt: skip
            offset += os.pwritev(fd, (frame_head(len(payload), zlib.crc32(payload)), payload), offset)
            rec.status = accepted
            r = report_for(rec, accepted, timestamp=now)
            seq += 1
            r.seq = seq
            body = to_body(r)
            payload = pack([(1, r.strategy_id, seq, rec.venue_order_id, pack(body), 1)])
            offset += os.pwritev(fd, (frame_head(len(payload), zlib.crc32(payload)), payload), offset)
            r.gw_ns = time.time_ns()
            pub.send(encode(r, body))

    return loop


class _Persisting:
    """Rungs c2 and d: the journal's two writes around an order that "the venue" accepts at once."""

    def __init__(self, work: Path) -> None:
        from seqtrade import wire
        from seqtrade.server.journal import Journal
        from seqtrade.server.orders import IdGenerator

        self.journal = Journal(work / "journal.sqlite", synchronous="normal")
        self.ids = IdGenerator()
        self.parse = wire.parse_request
        self.encode = wire.encode_stored_report
        self.encode_message = wire.encode_message
        self.seq = 0

    def handle(self, frame: bytes, send: Callable[[bytes], Any]) -> None:
        from seqtrade.errors import JournalError
        from seqtrade.models import OrderStatus
        from seqtrade.server.orders import OrderRecord, report_for

        req: Any = self.parse(frame)
        now = _now_ms()
        rec = OrderRecord(
            self.ids.next(), req.strategy_id, req.client_order_id, req.symbol, str(req.side),
            str(req.order_type), req.price, req.quantity, now,
        )  # fmt: skip
        journal = self.journal
        try:
            journal.add_records([(rec, True)])  # persist the order, then "the venue" accepts it
        except JournalError:  # (no engine here:) the client's join ping again, before it saw a reply
            send(self.encode_message(report_for(rec, OrderStatus.ACCEPTED, timestamp=now)))  # not journaled
            return
        rec.status = OrderStatus.ACCEPTED
        r = report_for(rec, OrderStatus.ACCEPTED, timestamp=now)
        self.seq += 1
        r.seq = self.seq
        bodies = journal.add_reports([(rec.venue_order_id, r, True)])  # persist the report, then send
        r.gw_ns = time.time_ns()
        send(self.encode(r, bodies[0]))
        if journal.due():
            journal.index()


def serve_journal(work: Path) -> Loop:
    """Rung c2: rung c with the real journal doing the writes (its checks, pending sets, filter, and
    the SQLite index it keeps after the sends)."""
    p = _Persisting(work)

    def loop(pull: zmq.Socket[bytes], pub: zmq.Socket[bytes]) -> None:
        while True:
            p.handle(pull.recv(), pub.send)

    return loop


def serve_trio(work: Path) -> Loop:
    """Rung d: rung c on Trio, the socket waited on as :mod:`seqtrade.bus` does."""
    import trio

    from seqtrade.bus import TrioSocket

    p = _Persisting(work)

    def loop(pull: zmq.Socket[bytes], pub: zmq.Socket[bytes]) -> None:
        async def main() -> None:
            tpull, tpub = TrioSocket(pull), TrioSocket(pub)
            while True:
                for frame in await tpull.recv_batch(256):
                    p.handle(frame, tpub.send_nowait)

        trio.run(main)

    return loop


def _engine(work: Path, find_order: Callable[[str, str], Any]) -> Any:
    """The engine, risk gate and accounts as ``seqtrade.server.app.build`` makes them for a fresh
    journal and the bench's server config (its instrument: the paper venue's)."""
    import trio

    from seqtrade.config import parse_config
    from seqtrade.server.accounts import Accounts
    from seqtrade.server.engine import Engine
    from seqtrade.server.orders import IdGenerator
    from seqtrade.server.risk import Quotes, RiskGate
    from seqtrade.venues.base import Instrument

    config = parse_config(server_config(rate=0), base_dir=str(work))
    paper = config.venue.paper
    instruments = {_raw.SYMBOL: Instrument(_raw.SYMBOL, paper.tick_size, paper.lot_size, paper.min_size)}
    accounts = Accounts()
    quotes = Quotes()
    gate = RiskGate(
        config.risk, positions=accounts, mid=lambda _s: 60_000.0, instrument=instruments.get,
        clock=trio.current_time,
    )  # fmt: skip
    engine = Engine(
        config, instruments=lambda: instruments, risk=gate, accounts=accounts,
        find_order=find_order, ids=IdGenerator(),
    )  # fmt: skip
    engine.quotes = quotes
    return engine


def serve_engine(work: Path, *, fill: bool) -> Loop:
    """Rungs e and e2: rung d with the engine deciding and numbering, as the gateway performs it."""
    import trio

    from seqtrade import wire
    from seqtrade.bus import TrioSocket
    from seqtrade.models import OrderStatus
    from seqtrade.server.engine import Commit, Place, Reply
    from seqtrade.server.journal import Journal
    from seqtrade.venues.base import OrderEvent

    journal = Journal(work / "journal.sqlite", synchronous="normal")
    engine = _engine(work, journal.find_order)  # old orders are read from this journal, as in build()
    parse, encode = wire.parse_request, wire.encode_stored_report
    accepted, filled = OrderStatus.ACCEPTED, OrderStatus.FILLED
    trade = 0

    async def main(pull: zmq.Socket[bytes], pub: zmq.Socket[bytes]) -> None:
        nonlocal trade
        tpull, tpub = TrioSocket(pull), TrioSocket(pub)
        send = tpub.send_nowait
        while True:
            for frame in await tpull.recv_batch(256):
                req = parse(frame)
                now = _now_ms()
                out = engine.on_request(req, now)
                if out.journal:
                    journal.add_records(out.journal)  # persist, then send to the venue
                items: list[Any] = list(out.replies)
                for cmd in out.venue:
                    assert isinstance(cmd, Place)
                    o = cmd.order
                    vid = o.venue_order_id
                    items.append(OrderEvent(vid, accepted, exchange_order_id="x" + vid, ts=now))
                    if fill:
                        trade += 1
                        items.append(OrderEvent(
                            vid, filled, exchange_order_id="x" + vid, quantity=o.quantity,
                            filled_quantity=o.quantity, avg_price=60_000.0, last_fill_quantity=o.quantity,
                            last_fill_price=60_000.0, fee=0.0, trade_id=f"t{trade}", ts=now,
                        ))  # fmt: skip
                for step in engine.report_steps(items):
                    if isinstance(step, Commit):
                        bodies = journal.add_reports(step.rows, step.fills)
                        for (_, r, _), body in zip(step.pending, bodies, strict=True):
                            r.gw_ns = time.time_ns()
                            send(encode(r, body))
                        engine.committed(step)
                    elif isinstance(step, Reply) and step.report is not None:  # a re-sent report
                        step.report.gw_ns = time.time_ns()
                        send(wire.encode_message(step.report))
                if journal.due():
                    journal.index()

    def loop(pull: zmq.Socket[bytes], pub: zmq.Socket[bytes]) -> None:
        trio.run(main, pull, pub)

    return loop


def run_server(args: argparse.Namespace) -> int:
    """A server rung: everything imported and built first, then the sockets bound (the bench counts the
    server's CPU from then on), then its loop until SIGTERM ends the process."""
    work = Path(args.work)
    rung = args.rung
    if rung == "b":
        loop = serve_codec(work)
    elif rung == "c":
        loop = serve_pwritev(work)
    elif rung == "c2":
        loop = serve_journal(work)
    elif rung == "d":
        loop = serve_trio(work)
    elif rung in ("e", "e2"):
        loop = serve_engine(work, fill=rung == "e2")
    else:
        raise SystemExit(f"no such server rung: {rung}")
    _ctx, pull, pub = _sockets(args.order, args.report)
    loop(pull, pub)
    return 0


# ---------------------------------------------------------------------------- the parts, in-process


def run_parts(args: argparse.Namespace) -> int:
    """Each piece of the ladder's servers alone, in this process, without sockets: µs per call, the
    best of ``--batches`` batches of ``--calls`` calls (the least disturbed by other processes). Run
    it with ``PYTHONPATH=<compiled copy>`` to price the compiled modules the same way."""
    from seqtrade import wire
    from seqtrade.models import OrderStatus
    from seqtrade.server.engine import Commit, Place
    from seqtrade.server.journal import Journal
    from seqtrade.server.orders import IdGenerator, OrderRecord, report_for
    from seqtrade.venues.base import OrderEvent

    work = Path(tempfile.mkdtemp(prefix="stfl-parts-", dir="/tmp"))
    calls, batches = args.calls, args.batches
    client = _raw._Client.__new__(_raw._Client)  # only its request frame: no sockets
    client.sid, client.pack = "raw", msgpack.Packer(use_bin_type=True).pack
    client.order_topic = b"order_request/raw/"
    total = calls * batches + 10
    frames = [client.request(i) for i in range(1, total + 1)]
    n_topic = len(client.order_topic)
    packb, unpackb = msgpack.Packer(use_bin_type=True).pack, msgpack.unpackb
    ids = IdGenerator()
    parse, encode = wire.parse_request, wire.encode_message
    reqs: list[Any] = [parse(f) for f in frames]
    accepted = OrderStatus.ACCEPTED
    results: dict[str, float] = {}

    def best(name: str, body: Callable[[int], object]) -> None:
        times = []
        i = 0
        for _ in range(batches):
            t0 = time.perf_counter_ns()
            for _ in range(calls):
                body(i)
                i += 1
            times.append((time.perf_counter_ns() - t0) / calls / 1000)
        results[name] = round(min(times), 2)

    def raw_echo(i: int) -> None:  # rung a's work per order
        d = unpackb(memoryview(frames[i])[n_topic:])
        packb({"type": "order_report", "seq": d.get("n", 0), "client_order_id": d["client_order_id"],
               "strategy_id": d["strategy_id"], "symbol": d["symbol"], "side": d["side"],
               "order_type": d["order_type"], "quantity": d["quantity"], "status": "accepted",
               "gw_ns": time.time_ns()})  # fmt: skip

    recs = [
        OrderRecord(ids.next(), r.strategy_id, r.client_order_id, r.symbol, str(r.side), str(r.order_type),
                    r.price, r.quantity, 0)
        for r in reqs
    ]  # fmt: skip
    reports = [report_for(rec, accepted, timestamp=1) for rec in recs]
    best("a: msgpack unpack + pack (the raw echo)", raw_echo)
    best("b: wire.parse_request", lambda i: parse(frames[i]))
    best("b: wire.encode_message (accepted report)", lambda i: encode(reports[i]))
    fd = os.open(work / "pwritev", os.O_WRONLY | os.O_CREAT, 0o600)
    order_payload = packb([(0, recs[0].venue_order_id, "raw", "raw-1", "BTC-USDT", "buy", "market",
                            None, 0.001, 1, 1, 0)])  # fmt: skip
    head = b"\0" * 8
    off = [0]

    def pwritev(i: int) -> None:
        off[0] += os.pwritev(fd, (head, order_payload), off[0])

    best("c: os.pwritev of one order-sized frame (the syscall alone)", pwritev)
    journal = Journal(work / "journal.sqlite", synchronous="normal")
    best("c: Journal.add_records (one order)", lambda i: journal.add_records([(recs[i], True)]))
    for n, r in enumerate(reports, 1):
        r.seq = n
    best("c: Journal.add_reports (one report)", lambda i: journal.add_reports([(recs[i].venue_order_id,
                                                                              reports[i], True)]))  # fmt: skip
    t0 = time.perf_counter_ns()
    pending = journal.pending
    journal.index()
    results["c: Journal.index, per order and report indexed"] = round(
        (time.perf_counter_ns() - t0) / max(1, pending) / 1000 * 2, 2
    )
    journal.close()

    def engine_part() -> None:
        journal2 = Journal(work / "journal2.sqlite", synchronous="normal")
        engine = _engine(work, journal2.find_order)
        fresh = [parse(client.request(total + i)) for i in range(1, total + 1)]
        outs: list[Any] = []
        best("e: Engine.on_request (a new market order: every check)",
             lambda i: outs.append(engine.on_request(fresh[i], time.time_ns() // 1_000_000)))  # fmt: skip

        def report_stage(i: int) -> None:
            out = outs[i]
            cmd = out.venue[0]
            assert isinstance(cmd, Place)
            vid = cmd.order.venue_order_id
            for step in engine.report_steps([OrderEvent(vid, accepted, exchange_order_id="x" + vid, ts=1)]):
                assert isinstance(step, Commit)
                engine.committed(step)

        best("e: Engine report stage for 'accepted' (report_steps, number, committed)", report_stage)

    _in_trio(engine_part)
    os.close(fd)
    shutil.rmtree(work, ignore_errors=True)
    where = os.environ.get("PYTHONPATH", "") or "the source"
    print(f"in-process costs, µs per call (best of {batches} x {calls}), modules from {where}:")
    for k, v in results.items():
        print(f"  {v:8.2f}  {k}")
    if args.json:
        Path(args.json).write_text(json.dumps({"pythonpath": where, "us_per_call": results}, indent=1))
    return 0


def _in_trio(fn: Callable[[], None]) -> None:
    """Run ``fn`` inside ``trio.run`` (the risk gate's clock is Trio's)."""
    import trio

    async def main() -> None:
        fn()

    trio.run(main)


# ---------------------------------------------------------------------------- the client


def run_client(args: argparse.Namespace) -> int:
    """The raw bench client (``seqtrade.bench._raw``'s ``_Client``: its request frame, its join), one
    order in flight; an order's time runs from before its request is packed to when the ``accepted``
    report naming its client order id is unpacked (a server may send more reports per order)."""
    c = _raw._Client(args, "raw")
    if not c.join(args.timeout):
        return 2
    unpackb = msgpack.unpackb
    n_topic = len(c.topic)
    lat = array("q")
    perf = time.perf_counter_ns
    recv, send, request = c.sub.recv, c.push.send, c.request
    for i in range(1, args.warmup + args.count + 1):
        coid = f"raw-{i}"
        t0 = perf()
        send(request(i))
        while True:
            d = unpackb(memoryview(recv())[n_topic:])
            if d["client_order_id"] == coid and d["status"] == "accepted":
                break
        t1 = perf()
        if i > args.warmup:
            lat.append(t1 - t0)
    write_result(args.out, {"count": len(lat)}, {"round_trip": lat})
    c.close()
    return 0


# ---------------------------------------------------------------------------- one rung, measured


def cpu_ns(pid: int) -> int | None:
    """A live process's CPU time so far, ns, all its threads (libzmq's I/O threads too): the sum of
    ``/proc/<pid>/task/*/schedstat`` (nanoseconds; ``/proc/<pid>/stat`` counts 10 ms ticks). None
    where that is not available."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


def _wait_listening(path: Path, p: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start listening on {path}")
        time.sleep(0.02)


def measure(
    root: Path, rung: str, tag: str, count: int, warmup: int, pythonpath: str, files: Path | None = None
) -> dict[str, Any]:
    """One rung's round trip: its server, the raw client, the server's CPU per order. ``files``: where
    rungs b-e2 keep their log and journal (default: the run's directory under /tmp)."""
    env = {"PYTHONPATH": pythonpath} if pythonpath else None
    bench_run.SERVER_PATH = pythonpath  # seqtrade serve (rungs f, g) from there too; its strategy not
    if rung == "g":
        res, hists = round_trip_seqtrade(root, f"{rung}-{tag}", count, warmup, 0)
        h = hists["accepted"]
        return _row(rung, h, res.get("server_cpu_us_per_order"))
    with scenario(root, f"{rung}-{tag}") as (d, procs):
        if rung == "f":
            server = start_server(d, procs, rate=0)
            order, report = f"ipc://{d / 'run' / 'order.ipc'}", f"ipc://{d / 'run' / 'report.ipc'}"
            listening = d / "run" / "order.ipc"
        else:
            order, report = f"ipc://{d / 'order.ipc'}", f"ipc://{d / 'report.ipc'}"
            listening = d / "order.ipc"
            work = d if files is None else files / f"{rung}-{tag}"
            work.mkdir(exist_ok=True)
            if rung == "a":
                server = procs.start("server", ["-m", "seqtrade.bench._raw", "echo", "--order", order,
                                                "--report", report])  # fmt: skip
            else:
                server = procs.start("server", [str(HERE), "server", "--rung", rung, "--order", order,
                                                "--report", report, "--work", str(work)], env)  # fmt: skip
        _wait_listening(listening, server)
        cpu0 = cpu_ns(server.pid)
        out = d / "rt.json"
        client = procs.start("client", [str(HERE), "client", "--order", order, "--report", report,
                                        "--out", str(out), "--count", str(count), "--warmup", str(warmup)])  # fmt: skip
        procs.wait([("client", client)], 60 + count * 0.02)
        cpu1 = cpu_ns(server.pid)
        procs.stop("server", server)
        _, hists = read_result(out)
        n = count + warmup  # (and the join's few pings)
        cpu = round((cpu1 - cpu0) / n / 1000, 1) if cpu0 is not None and cpu1 is not None else None
        return _row(rung, hists["round_trip"], cpu)


def _row(rung: str, h: Any, cpu: float | None) -> dict[str, Any]:
    """One run's figures; ``count``: the timed orders in its histogram."""
    return {
        "rung": rung, "count": int(h.get_total_count()), "cpu_us_per_order": cpu,
        **{f"p{q}": h.get_value_at_percentile(q) / 1000 for q in (50, 90, 99)},
    }  # fmt: skip


# ---------------------------------------------------------------------------- the run


def summary(rows: list[dict[str, Any]], rungs: list[str], variant: str) -> list[dict[str, Any]]:
    """Per rung of one variant, the median over the repeats of each figure, its ratios to rung a's
    p50/p99 and its p50 step from the rung before (rung a, the raw echo, is shared by the variants)."""
    out: list[dict[str, Any]] = []
    for rung in rungs:
        mine = [r for r in rows if r["rung"] == rung and (rung == "a" or r["variant"] == variant)]
        if not mine:
            continue
        s: dict[str, Any] = {"variant": variant, "rung": rung, "name": NAMES[rung], "runs": len(mine),
                             "count": sum(r["count"] for r in mine)}  # fmt: skip
        for k in ("p50", "p90", "p99", "cpu_us_per_order"):
            vals = [r[k] for r in mine if r[k] is not None]
            s[k] = round(statistics.median(vals), 1) if vals else None
        out.append(s)
    base = next((s for s in out if s["rung"] == "a"), None)
    prev: dict[str, Any] | None = None
    for s in out:
        for k in ("p50", "p99"):
            s[f"{k}_x_raw"] = round(s[k] / base[k], 2) if base and base[k] and s[k] is not None else None
        s["p50_step"] = round(s["p50"] - prev["p50"], 1) if prev and s["p50"] is not None else None
        prev = s
    return out


def format_summary(summ: list[dict[str, Any]], loads: list[float], variant: str) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:,.1f}"

    label = f"server modules from {variant}" if variant else "the source"
    lines = [
        f"floor ladder ({label}): round trip of one order in flight (raw client), median of the repeats, µs",
        f"load per core (1-minute average) at each run's start: {min(loads):.2f}-{max(loads):.2f} "
        f"(median {statistics.median(loads):.2f})",
        f"{'rung':<34}{'runs':>5}{'orders':>8}{'p50':>9}{'p90':>9}{'p99':>9}{'p50 step':>10}"
        f"{'p50/raw':>9}{'p99/raw':>9}{'CPU/order':>11}",
    ]
    for s in summ:
        lines.append(
            f"{s['rung'] + ' ' + s['name']:<34}{s['runs']:>5}{s['count']:>8}{f(s['p50']):>9}{f(s['p90']):>9}"
            f"{f(s['p99']):>9}{f(s['p50_step']):>10}{f(s['p50_x_raw']) + 'x':>9}{f(s['p99_x_raw']) + 'x':>9}"
            f"{f(s['cpu_us_per_order']):>11}"
        )
    return "\n".join(lines)


def run_ladder(args: argparse.Namespace) -> int:
    rungs = args.rungs.split(",") if args.rungs else list(RUNGS)
    for r in rungs:
        if r not in RUNGS:
            raise SystemExit(f"no such rung {r!r} (rungs: {', '.join(RUNGS)})")
    variants = ["", *args.pythonpath]  # "": the source
    root = Path(tempfile.mkdtemp(prefix="stfl-", dir="/tmp"))  # short: ipc paths < 100 bytes
    files = Path(tempfile.mkdtemp(prefix="stfl-files-", dir=args.files_in)) if args.files_in else None
    rows: list[dict[str, Any]] = []
    loads: list[float] = []
    t0 = time.monotonic()
    try:
        for rep in range(args.repeat):
            for rung in rungs:
                for i, variant in enumerate(variants if rung != "a" else [""]):
                    load = load_per_core()
                    loads.append(load)
                    row = measure(root, rung, f"{rep}v{i}", args.count, args.warmup, variant, files)
                    row.update(variant=variant, rep=rep, load=round(load, 2))
                    rows.append(row)
                    if not args.quiet:
                        print(f"[{time.monotonic() - t0:6.1f} s] rep {rep + 1} {rung:<2} {variant or 'source'} "
                              f"load {load:.2f}: p50 {row['p50']:.1f} p99 {row['p99']:.1f} µs, CPU/order "
                              f"{row['cpu_us_per_order']}", file=sys.stderr)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if files is not None:
            shutil.rmtree(files, ignore_errors=True)
    summaries = [summary(rows, rungs, v) for v in variants]
    print("\n\n".join(format_summary(summ, loads, v) for summ, v in zip(summaries, variants, strict=True)))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "variants": variants, "count": args.count, "warmup": args.warmup, "repeat": args.repeat,
            "loads": loads, "runs": rows, "summary": [s for summ in summaries for s in summ],
            "cpus": os.cpu_count(), "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }, indent=1))  # fmt: skip
        print(f"results: {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/floor.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=3000, help="timed orders per run (default 3000)")
    p.add_argument("--warmup", type=int, default=500, help="orders before the timed ones (default 500)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repeats of the ladder (default 3)")
    p.add_argument("--rungs", default="", help=f"comma-separated subset of {','.join(RUNGS)}")
    p.add_argument("--pythonpath", action="append", default=[],
                   help="also run server rungs b-g with this ahead of the source (repeatable; interleaved)")  # fmt: skip
    p.add_argument("--json", default="", help="write every run and the summary here")
    p.add_argument("--files-in", default="", help="rungs b-e2 keep their log/journal under this directory "
                   "(e.g. /dev/shm; default: the run's directory in /tmp); seqtrade serve's stay in /tmp")  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    sub = p.add_subparsers(dest="role")
    s = sub.add_parser("server")
    s.add_argument("--rung", required=True)
    s.add_argument("--order", required=True)
    s.add_argument("--report", required=True)
    s.add_argument("--work", required=True)
    pp = sub.add_parser("parts", help="each piece alone, in-process: µs per call")
    pp.add_argument("--calls", type=int, default=2000)
    pp.add_argument("--batches", type=int, default=5)
    pp.add_argument("--json", default="")
    c = sub.add_parser("client")
    for opt in ("--order", "--report", "--out"):
        c.add_argument(opt, required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--warmup", type=int, required=True)
    c.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    if args.role == "server":
        return run_server(args)
    if args.role == "client":
        return run_client(args)
    if args.role == "parts":
        return run_parts(args)
    return run_ladder(args)


if __name__ == "__main__":
    sys.exit(main())
