"""Run the fake OKX standalone: ``python -m tests.fakeokx --port-rest 0 --port-ws 0``.

Prints one JSON line (URLs and the fake credentials) to stdout, then moves the market with a slow
random walk (``set_market`` every ``--interval`` seconds, plus a public trade print now and then) so
resting orders fill.  Used for the end-to-end ``seqtrade serve`` demo against the fake.  Ctrl-C stops.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any

import trio

from .server import open_fake_okx

__all__ = ["main", "parse_args", "run"]

START_PRICES = {"BTC-USDT": 100.0, "ETH-USDT": 10.0, "BTC-USDT-SWAP": 100.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fakeokx", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port-rest", type=int, default=0)
    parser.add_argument("--port-ws", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between market moves")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--idle-timeout", type=float, default=30.0)
    parser.add_argument("--api-key", default="fake-key")
    parser.add_argument("--secret-key", default="fake-secret")
    parser.add_argument("--passphrase", default="fake-pass")
    parser.add_argument("--live", action="store_true", help="behave as a live (non-demo) key")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        trio.run(run, args)
    except KeyboardInterrupt:
        pass
    return 0


async def run(args: argparse.Namespace, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the fake and walk the market until cancelled; ``task_status.started(fake)`` once up."""
    async with open_fake_okx(
        api_key=args.api_key,
        secret_key=args.secret_key,
        passphrase=args.passphrase,
        demo=not args.live,
        idle_timeout=args.idle_timeout,
        host=args.host,
        rest_port=args.port_rest,
        ws_port=args.port_ws,
    ) as fake:
        print(
            json.dumps(
                {
                    "rest_url": fake.rest_url,
                    "ws_public_url": fake.ws_public_url,
                    "ws_private_url": fake.ws_private_url,
                    "api_key": args.api_key,
                    "secret_key": args.secret_key,
                    "passphrase": args.passphrase,
                    "demo": not args.live,
                }
            ),
            flush=True,
        )
        task_status.started(fake)
        rng = random.Random(args.seed)
        mids = dict(START_PRICES)
        while True:
            for inst_id, mid in mids.items():
                tick = float(fake.exchange.instruments[inst_id].tick_sz)
                mid = max(tick * 10, mid + rng.gauss(0.0, mid * 0.001))
                mids[inst_id] = mid
                bid = round(mid / tick) * tick - tick
                fake.set_market(
                    inst_id, bid=round(bid, 8), ask=round(bid + 2 * tick, 8), bid_sz=1.0, ask_sz=1.0
                )
                if rng.random() < 0.3:
                    side = rng.choice(("buy", "sell"))
                    px = bid + 2 * tick if side == "buy" else bid
                    fake.print_trade(inst_id, px=round(px, 8), sz=round(rng.uniform(0.01, 0.5), 4), side=side)
            # keep the observation logs bounded in long demo runs
            logs = (
                fake.requests,
                fake.order_pushes,
                fake.dropped_pushes,
                fake.position_pushes,
                fake.bap_pushes,
            )
            for log in (*logs, fake.public_deriv_pushes):
                del log[:-10_000]
            await trio.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
