"""The raw baselines: plain blocking pyzmq + msgpack, no seqtrade messaging code.

``python -m seqtrade.bench._raw <role> ...`` with role:

- ``pub``: PUB binds ``--endpoint`` and publishes ticker frames (``ticker/<symbol>/`` + MessagePack
  map, the same keys as seqtrade's) at ``--rate`` per second, paced like the paper venue's bench mode
  (wake every millisecond, send what is due), ``gw_ns = time.time_ns()`` stamped per message just
  before it is packed and sent, until SIGTERM; with ``--out``, then writes its CPU per message sent.
- ``sub``: SUB connects and receives with a blocking ``recv``; per message it unpacks the body and
  takes ``time.time_ns()`` (the message is in hand, decoded). Measures ``--duration`` seconds after
  ``--warmup`` seconds from the first message: latency ``now - gw_ns``, count, seq gaps, and its CPU
  per message in the window.
- ``echo``: PULL binds ``--order``, PUB binds ``--report``; every request is unpacked and answered with
  one packed report on topic ``report/<id>/``.
- ``rt``: PUSH connects to ``--order``, SUB to ``--report``; ping-pong ``--count`` requests, each timed
  from before packing the request to after unpacking its reply (``perf_counter_ns``).
- ``blast``: like ``rt`` as strategy ``--id``, but keeps ``--window`` requests in flight until
  ``--count`` are answered (order throughput; several share one ``echo``).
- ``venue`` / ``trader`` (tick-to-trade): the venue PUBs a ticker at ``--rate`` and PULLs orders;
  the trader SUBs and answers every ticker with one order on PUSH; the venue times each ticker from
  just before its send to the order that answers it arriving (``recv`` returned).

Each measuring role writes its result file (see :mod:`seqtrade.bench.hist`) and exits.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import zmq

from .hist import write_result

SYMBOL = "BTC-USDT"
TOPIC = b"ticker/" + SYMBOL.encode() + b"/"
WAKE = 0.001  # like the paper venue's bench mode


def _stop_on_term() -> list[bool]:
    flag = [False]

    def handler(signum: int, frame: Any) -> None:
        flag[0] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return flag


def run_pub(args: argparse.Namespace) -> int:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 100_000)  # seqtrade's default bus.md_sndhwm
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(args.endpoint)
    stop = _stop_on_term()
    send = pub.send
    packb = msgpack.Packer(use_bin_type=True).pack
    time_ns = time.time_ns
    rate = args.rate
    seq = 0
    dropped = 0
    sent = 0
    start = time.monotonic()
    deadline = start + args.max_seconds
    last, bid, ask = 60_000.0, 59_999.9, 60_000.1
    cpu0 = time.process_time()
    while not stop[0]:
        time.sleep(WAKE)
        now = time.monotonic()
        if now > deadline:
            break
        due = int((now - start) * rate) - sent
        ts = time_ns() // 1_000_000
        for _ in range(due):
            seq += 1
            body = {
                "type": "ticker", "symbol": SYMBOL, "ts": ts, "last_price": last, "bid_price": bid,
                "ask_price": ask, "bid_size": 0.5123, "ask_size": 0.8765, "volume_24h": 1234.5678,
                "seq": seq, "gw_ns": time_ns(),
            }  # fmt: skip
            try:
                send(TOPIC + packb(body), zmq.NOBLOCK)
            except zmq.Again:
                dropped += 1
        sent += due
    if args.out and sent:
        # CPU (user + system, all threads: libzmq's I/O thread too) per message, as the server's
        write_result(
            args.out,
            {"sent": sent, "cpu_us_per_msg": round((time.process_time() - cpu0) / sent * 1e6, 3)},
            {},
        )
    pub.close()
    ctx.term()
    return 0


def run_sub(args: argparse.Namespace) -> int:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 1_000_000)  # as seqtrade.client's Connection
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVTIMEO, int(args.timeout * 1000))
    sub.setsockopt(zmq.SUBSCRIBE, b"ticker/")
    sub.connect(args.endpoint)
    recv = sub.recv
    unpackb = msgpack.unpackb
    time_ns = time.time_ns
    n = len(TOPIC)
    lat = array("q")
    append = lat.append
    win_start = win_end = 0
    count = lost = 0
    last_seq = -1
    first_gw = 0
    cpu0 = 0.0
    try:
        while True:
            frame = recv()
            d = unpackb(memoryview(frame)[n:])
            t = time_ns()
            if t >= win_start and win_start:
                if t >= win_end:
                    break
                if not count:
                    cpu0 = time.process_time()
                append(t - d["gw_ns"])
                seq = d["seq"]
                if last_seq >= 0 and seq != last_seq + 1:
                    lost += seq - last_seq - 1
                last_seq = seq
                count += 1
            elif not win_start:
                first_gw = d["gw_ns"]
                win_start = t + int(args.warmup * 1e9)
                win_end = win_start + int(args.duration * 1e9)
    except zmq.Again:
        pass  # the publisher went quiet: report what was measured
    window = (min(time_ns(), win_end) - win_start) / 1e9 if win_start else 0.0
    cpu = time.process_time() - cpu0 if count else 0.0
    write_result(
        args.out,
        {"count": count, "lost": lost, "window_s": window, "first_gw_ns": first_gw,
         "achieved_rate": count / window if window > 0 else 0.0,
         "cpu_us_per_msg": round(cpu / count * 1e6, 3) if count else None},
        {"latency": lat},
    )  # fmt: skip
    sub.close()
    ctx.term()
    return 0


def run_echo(args: argparse.Namespace) -> int:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(args.order)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(args.report)
    stop = _stop_on_term()
    pull.setsockopt(zmq.RCVTIMEO, 200)
    packb = msgpack.Packer(use_bin_type=True).pack
    unpackb = msgpack.unpackb
    while not stop[0]:
        try:
            frame = pull.recv()
        except zmq.Again:
            continue
        first = frame.index(b"/")
        second = frame.index(b"/", first + 1)
        d = unpackb(memoryview(frame)[second + 1 :])
        sid = d["strategy_id"]
        report = {
            "type": "order_report", "seq": d.get("n", 0), "client_order_id": d["client_order_id"],
            "strategy_id": sid, "symbol": d["symbol"], "side": d["side"], "order_type": d["order_type"],
            "quantity": d["quantity"], "status": "accepted", "gw_ns": time.time_ns(),
        }  # fmt: skip
        pub.send(b"report/" + sid.encode() + b"/" + packb(report))
    pull.close()
    pub.close()
    ctx.term()
    return 0


class _Client:
    """A raw strategy: PUSH to ``--order``, SUB to its ``report/<id>/`` topic on ``--report``."""

    def __init__(self, args: argparse.Namespace, sid: str) -> None:
        self.ctx = zmq.Context()
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect(args.order)
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.topic = f"report/{sid}/".encode()
        self.sub.setsockopt(zmq.SUBSCRIBE, self.topic)
        self.sub.connect(args.report)
        self.sid = sid
        self.pack = msgpack.Packer(use_bin_type=True).pack
        self.order_topic = f"order_request/{sid}/".encode()

    def request(self, i: int) -> bytes:
        frame: bytes = self.order_topic + self.pack({
            "type": "order_request", "client_order_id": f"{self.sid}-{i}", "strategy_id": self.sid,
            "symbol": SYMBOL, "side": "buy" if i % 2 else "sell", "order_type": "market", "quantity": 0.001,
            "timestamp": time.time_ns() // 1_000_000, "n": i,
        })  # fmt: skip
        return frame

    def join(self, timeout: float) -> bool:
        """Ping until a reply proves the subscription is live (as seqtrade's hello does)."""
        deadline = time.monotonic() + timeout
        while True:
            self.push.send(self.request(0))
            if self.sub.poll(100):
                break
            if time.monotonic() > deadline:
                print("raw client: no answer from the echo server", file=sys.stderr)
                return False
        while self.sub.poll(50):
            self.sub.recv()
        return True

    def close(self) -> None:
        self.push.close()
        self.sub.close()
        self.ctx.term()


def run_rt(args: argparse.Namespace) -> int:
    c = _Client(args, "raw")
    if not c.join(args.timeout):
        return 2
    unpackb = msgpack.unpackb
    n_topic = len(c.topic)
    lat = array("q")
    perf = time.perf_counter_ns
    recv = c.sub.recv
    send = c.push.send
    request = c.request
    for i in range(1, args.warmup + args.count + 1):
        t0 = perf()
        send(request(i))
        while True:
            d = unpackb(memoryview(recv())[n_topic:])
            if d["seq"] == i:
                break
        t1 = perf()
        if i > args.warmup:
            lat.append(t1 - t0)
    write_result(args.out, {"count": len(lat)}, {"round_trip": lat})
    c.close()
    return 0


def run_blast(args: argparse.Namespace) -> int:
    c = _Client(args, args.id)
    if not c.join(args.timeout):
        return 2
    unpackb = msgpack.unpackb
    n_topic = len(c.topic)
    recv, send, request = c.sub.recv, c.push.send, c.request
    t0 = time.perf_counter_ns()
    sent = 0
    for _ in range(min(args.window, args.count)):
        sent += 1
        send(request(sent))
    done = 0
    while done < args.count:
        unpackb(memoryview(recv())[n_topic:])
        done += 1
        if sent < args.count:
            sent += 1
            send(request(sent))
    elapsed = (time.perf_counter_ns() - t0) / 1e9
    write_result(args.out, {"orders": done, "elapsed_s": elapsed, "errors": 0}, {})
    c.close()
    return 0


def _ticker_body(seq: int, ts: int) -> dict[str, Any]:
    return {
        "type": "ticker", "symbol": SYMBOL, "ts": ts, "last_price": 60_000.0, "bid_price": 59_999.9,
        "ask_price": 60_000.1, "bid_size": 0.5123, "ask_size": 0.8765, "volume_24h": 1234.5678,
        "seq": seq, "gw_ns": time.time_ns(),
    }  # fmt: skip


def run_venue(args: argparse.Namespace) -> int:
    """Tick-to-trade, the venue's end: PUB ticks at ``--rate``, PULL the orders that answer them."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(args.md)
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(args.order)
    packb = msgpack.Packer(use_bin_type=True).pack
    unpackb = msgpack.unpackb
    time_ns = time.time_ns
    sent_at: dict[int, int] = {}
    lat = array("q")
    seq = answered = 0
    interval = 1.0 / args.rate
    next_tick = time.monotonic()
    deadline = next_tick + args.timeout
    n_topic = len(b"order_request/raw/")
    while answered < args.warmup + args.count and time.monotonic() < deadline:
        wait_ms = max(0, int((next_tick - time.monotonic()) * 1000))
        if pull.poll(wait_ms):
            while True:
                try:
                    frame = pull.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                t = time_ns()
                d = unpackb(memoryview(frame)[n_topic:])
                t0 = sent_at.pop(d["n"], None)
                if t0 is not None:
                    answered += 1
                    if answered > args.warmup and len(lat) < args.count:  # a drain may read past the plan
                        lat.append(t - t0)
        if time.monotonic() >= next_tick:
            seq += 1
            t0 = time_ns()  # the venue hands the tick over
            pub.send(TOPIC + packb(_ticker_body(seq, t0 // 1_000_000)))
            sent_at[seq] = t0
            next_tick += interval
            if len(sent_at) > 10_000:
                sent_at.pop(next(iter(sent_at)))
    write_result(args.out, {"count": len(lat), "ticks": seq}, {"tick_to_trade": lat})
    pub.close()
    pull.close()
    ctx.term()
    return 0 if len(lat) else 2


def run_trader(args: argparse.Namespace) -> int:
    """Tick-to-trade, the strategy's end: SUB ticks, answer each with one order on PUSH."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"ticker/")
    sub.setsockopt(zmq.RCVTIMEO, 200)
    sub.connect(args.md)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(args.order)
    stop = _stop_on_term()
    packb = msgpack.Packer(use_bin_type=True).pack
    unpackb = msgpack.unpackb
    n = len(TOPIC)
    order_topic = b"order_request/raw/"
    i = 0
    while not stop[0]:
        try:
            frame = sub.recv()
        except zmq.Again:
            continue
        d = unpackb(memoryview(frame)[n:])
        i += 1
        push.send(order_topic + packb({
            "type": "order_request", "client_order_id": f"raw-{i}", "strategy_id": "raw", "symbol": SYMBOL,
            "side": "buy" if i % 2 else "sell", "order_type": "market", "quantity": 0.001,
            "timestamp": time.time_ns() // 1_000_000, "n": d["seq"],
        }))  # fmt: skip
    sub.close()
    push.close()
    ctx.term()
    return 0


_REQUIRED_TYPES: dict[str, type] = {"rate": float, "duration": float, "count": int}  # else str


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seqtrade.bench._raw")
    sub = p.add_subparsers(dest="role", required=True)

    def role(
        name: str, func: Callable[[argparse.Namespace], int], required: str, **optional: float | str
    ) -> None:
        """One role: its required options (names, space-separated), then its optional ones, each
        typed as its default."""
        r = sub.add_parser(name)
        for opt in required.split():
            r.add_argument(f"--{opt}", required=True, type=_REQUIRED_TYPES.get(opt, str))
        for opt, default in optional.items():
            r.add_argument(f"--{opt.replace('_', '-')}", type=type(default), default=default)
        r.set_defaults(func=func)

    role("pub", run_pub, "endpoint rate", max_seconds=120.0, out="")
    role("sub", run_sub, "endpoint duration out", warmup=0.5, timeout=10.0)
    role("echo", run_echo, "order report")
    role("rt", run_rt, "order report count out", warmup=200, timeout=10.0)
    role("blast", run_blast, "order report id count out", window=8, timeout=10.0)
    role("venue", run_venue, "md order rate count out", warmup=100, timeout=60.0)
    role("trader", run_trader, "md order")
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
