"""Security: CurveZMQ over TCP (allowed, unknown and absent keys, key-to-strategy bindings), ZAP, local
permissions under umask 000, secret keys from the environment."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import zmq

from seqtrade import wire
from seqtrade.client import Endpoints
from seqtrade.config import Config
from seqtrade.errors import ConfigError
from seqtrade.models import Hello, OrderStatus, Welcome
from seqtrade.security import (
    ClientCurve,
    KeyPair,
    keygen,
    keypair_from_secret,
    mask,
    secret_key_from_env,
    server_keypair,
    write_public_key,
)
from seqtrade.server.app import serve
from seqtrade.server.auth import AllowList, zap_reply
from seqtrade.server.control import request
from seqtrade.server.gateway import Gateway
from seqtrade.venues.paper import PaperVenue

from .conftest import make_config
from .peer import Peer

S = "BTC-USDT"
SERVER, HOST_A, HOST_B, STRANGER = keygen(), keygen(), keygen(), keygen()


def reserve_port(held: list[socket.socket]) -> int:
    """A loopback port kept bound by a socket added to ``held`` (close them when the test ends).

    Bound with SO_REUSEADDR and never listening: no other bind or connect on the machine can take
    the port while it is held, yet the server's bind of it succeeds (libzmq binds with SO_REUSEADDR
    too, and no socket listens on it). Finding a free port and closing it before the server binds it
    left a window in which another process (tests run beside other test runs) could take it: the
    server then failed to start (TransportError: address in use), seen once under load."""
    s = socket.socket()
    held.append(s)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return int(s.getsockname()[1])


def tcp_config(base_dir: Path, held: list[socket.socket], extra: str = "") -> Config:
    write_public_key(base_dir / "hostb.pub", HOST_B.public)
    eps = {c: f"tcp://127.0.0.1:{reserve_port(held)}" for c in ("md", "order", "report")}
    return make_config(base_dir, f"""
[bus]
md_endpoint = "{eps['md']}"
order_endpoint = "{eps['order']}"
report_endpoint = "{eps['report']}"

[security]
server_public_key = "{SERVER.public.decode()}"

[[security.clients]]
name = "hosta"
public_key = "{HOST_A.public.decode()}"
strategies = ["A"]

[[security.clients]]
name = "hostb"
public_key_file = "hostb.pub"
strategies = ["B"]
""" + extra)  # fmt: skip


@pytest.fixture
def tcp_cfg(base_dir: Path) -> Iterator[Config]:
    held: list[socket.socket] = []
    try:
        yield tcp_config(base_dir, held)
    finally:
        for s in held:
            s.close()


@pytest.fixture
async def tcp_server(nursery: trio.Nursery, tcp_cfg: Config) -> Gateway:
    venue = PaperVenue(tcp_cfg.venue.paper, list(tcp_cfg.venue.symbols))
    gw: Gateway = await nursery.start(functools.partial(serve, tcp_cfg, venue, curve_keys=SERVER))
    await venue.set_market(S, 100.0, 100.2)
    return gw


def endpoints(config: Config, keys: KeyPair | None, server_public: bytes = SERVER.public) -> Endpoints:
    curve = ClientCurve(server_public, keys) if keys is not None else None
    return Endpoints(config.endpoint("md"), config.endpoint("order"), config.endpoint("report"), curve)


@pytest.fixture
def make_peer(zctx: zmq.Context):
    made: list[Peer] = []

    def make(config: Config, keys: KeyPair | None, sid: str) -> Peer:
        p = Peer(zctx, endpoints(config, keys), sid)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> logging.LogRecord:
    while True:
        for rec in caplog.records:
            if text in rec.getMessage():
                return rec
        await trio.sleep(0.01)


async def keep_sending(p: Peer, coid: str) -> None:
    """What a hostile or misconfigured client does: hello and an order, again and again."""
    while True:
        await p.order(S, "buy", "limit", 99.0, 0.01, coid=coid)
        await p.send(Hello(p.sid, 0, "n0"))
        await trio.sleep(0.05)


def nothing_received(p: Peer) -> bool:
    return not (p.sub.sock.poll(0) or p.mdsub.sock.poll(0)) and not p.pending and not p.md_pending


# --------------------------------------------------------------------------------------- TCP


async def test_allowed_key_trades_over_tcp(tcp_server, tcp_cfg, make_peer, caplog):
    with trio.fail_after(15):
        caplog.set_level(logging.INFO)
        a = make_peer(tcp_cfg, HOST_A, "A")
        a.mdsub.sock.setsockopt(zmq.SUBSCRIBE, b"status/")
        w = await a.join()
        assert isinstance(w, Welcome) and w.strategy_id == "A"
        coid = await a.order(S, "buy", "market", None, 0.5)
        r1, r2 = await a.report(), await a.report()
        assert (r1.client_order_id, r1.status, r2.status) == (coid, OrderStatus.ACCEPTED, OrderStatus.FILLED)
        assert (await a.next_md()).venue == "paper"  # market data flows over CURVE too
        # the key file of host B works the same way
        b = make_peer(tcp_cfg, HOST_B, "B")
        await b.join()
        await b.order(S, "buy", "limit", 99.0, 0.01)
        assert (await b.report()).strategy_id == "B"
        assert any("CURVE client hosta connected" in r.getMessage() for r in caplog.records)


async def test_unknown_key_gets_nothing_and_is_logged(tcp_server, tcp_cfg, make_peer, caplog):
    with trio.fail_after(15):
        caplog.set_level(logging.WARNING)
        evil = make_peer(tcp_cfg, STRANGER, "A")  # claims to be A, with a key nobody allowed
        evil.mdsub.sock.setsockopt(zmq.SUBSCRIBE, b"")
        async with trio.open_nursery() as n:
            n.start_soon(keep_sending, evil, "evil-1")
            rec = await wait_for_log(caplog, "unknown key")
            assert STRANGER.public.decode() in rec.getMessage() and rec.levelno == logging.WARNING
            # the real A trades; nothing of the stranger ever reached the gateway
            a = make_peer(tcp_cfg, HOST_A, "A")
            await a.join()
            await a.order(S, "buy", "limit", 99.0, 0.01, coid="real-1")
            assert (await a.report()).client_order_id == "real-1"
            n.cancel_scope.cancel()
        assert tcp_server.journal.find_order("A", "evil-1") is None
        assert tcp_server.counters.orders_in == 1
        assert nothing_received(evil)


async def test_client_without_curve_gets_nothing_and_is_logged(tcp_server, tcp_cfg, make_peer, caplog):
    with trio.fail_after(15):
        caplog.set_level(logging.WARNING)
        plain = make_peer(tcp_cfg, None, "A")  # tcp:// without any CURVE
        plain.mdsub.sock.setsockopt(zmq.SUBSCRIBE, b"")
        async with trio.open_nursery() as n:
            n.start_soon(keep_sending, plain, "plain-1")
            # libzmq reports a mechanism mismatch, or no detail when the client hung up first
            await wait_for_log(caplog, "refused a connection on the order channel")
            a = make_peer(tcp_cfg, HOST_A, "A")
            await a.join()
            await a.order(S, "buy", "limit", 99.0, 0.01, coid="real-1")
            assert (await a.report()).client_order_id == "real-1"
            n.cancel_scope.cancel()
        assert tcp_server.journal.find_order("A", "plain-1") is None
        assert tcp_server.counters.orders_in == 1
        assert nothing_received(plain)


async def test_wrong_server_key_gets_nothing(tcp_server, tcp_cfg, zctx, caplog):
    with trio.fail_after(15):
        caplog.set_level(logging.WARNING)
        p = Peer(zctx, endpoints(tcp_cfg, HOST_A, server_public=keygen().public), "A")
        try:
            async with trio.open_nursery() as n:
                n.start_soon(keep_sending, p, "x-1")
                await wait_for_log(caplog, "refused a connection on the order channel")
                n.cancel_scope.cancel()
            assert tcp_server.counters.orders_in == 0 and nothing_received(p)
        finally:
            p.close()


async def test_key_bound_to_a_cannot_trade_or_listen_as_b(tcp_server, tcp_cfg, make_peer, caplog):
    with trio.fail_after(15):
        caplog.set_level(logging.WARNING)
        # host A's key, trying to be B: its requests as B and its subscription to B's reports are refused
        spy = make_peer(tcp_cfg, HOST_A, "B")
        spy.sub.sock.setsockopt(zmq.SUBSCRIBE, wire.topic("report", "A"))
        spy.sub.sock.setsockopt(zmq.SUBSCRIBE, b"")  # everything: refused as well
        async with trio.open_nursery() as n:
            n.start_soon(keep_sending, spy, "spy-1")
            await wait_for_log(caplog, "not bound to its key")
            n.cancel_scope.cancel()
        # The real B joins. Subscriptions are policed before each send on the report socket, so B's
        # hellos (each answered with a welcome) get the spy's subscriptions handled.
        b = make_peer(tcp_cfg, HOST_B, "B")
        await b.join()
        while not any("a subscription to b'report/B/'" in r.getMessage() for r in caplog.records):
            await b.send(Hello("B", b.last_seq, "poke"))
            await trio.sleep(0.02)
        assert any("a subscription to b''" in r.getMessage() for r in caplog.records)
        await b.order(S, "buy", "limit", 98.0, 0.01, coid="b-1")
        assert (await b.report()).client_order_id == "b-1"
        # Now the spy's connection, which may listen to A, trades as A. B's report went out before A's
        # welcome on that same connection: had the spy's subscription to B been live, it would be here.
        spy.sid, spy.last_seq, spy.reports = "A", 0, []
        await spy.join()
        await spy.order(S, "buy", "limit", 97.0, 0.01, coid="a-1")
        assert (await spy.report()).client_order_id == "a-1"
        assert all(getattr(m, "strategy_id", "A") == "A" for m in [*spy.reports, *spy.pending])
        assert tcp_server.journal.find_order("B", "spy-1") is None
        assert [r.client_order_id for r in b.reports] == ["b-1"]


async def test_allowlist_and_zap_decisions(tcp_cfg):
    allow = AllowList.from_config(tcp_cfg)
    assert allow.strategies == {"hosta": frozenset({"A"}), "hostb": frozenset({"B"})}
    raw = zmq.utils.z85.decode(HOST_B.public)

    def req(domain: bytes = b"seqtrade", mech: bytes = b"CURVE", key: bytes = raw) -> list[bytes]:
        return [b"1.0", b"7", domain, b"10.0.0.2", b"", mech, key]

    reply, reason, who = zap_reply(req(), allow, "seqtrade")
    assert reply[2] == b"200" and reply[4] == b"hostb" and reason == "" and reply[1] == b"7"
    assert zap_reply(req(domain=b"other"), allow, "seqtrade")[0][2] == b"400"
    assert zap_reply(req(domain=b""), allow, "seqtrade")[1] == "domain"
    assert zap_reply(req(mech=b"NULL")[:6], allow, "seqtrade")[1] == "mechanism"
    reply, reason, who = zap_reply(req(key=zmq.utils.z85.decode(STRANGER.public)), allow, "seqtrade")
    assert (reply[2], reason, who) == (b"400", "unknown_key", STRANGER.public.decode())
    assert zap_reply([b"1.0"], allow, "seqtrade")[0][2] == b"500"


async def test_tcp_server_refuses_to_start_without_its_secret(nursery, tcp_cfg):
    venue = PaperVenue(tcp_cfg.venue.paper, list(tcp_cfg.venue.symbols))
    with pytest.raises(ConfigError, match="SEQTRADE_SERVER_SECRET_KEY"):
        await serve(tcp_cfg, venue)


# --------------------------------------------------------------------------------------- IPC


async def test_unexpected_strategy_refused_by_config(nursery, base_dir, zctx, caplog):
    with trio.fail_after(10):
        caplog.set_level(logging.WARNING)
        cfg = make_config(base_dir, """
[[strategies]]
id = "known"
module = "not_started"
enabled = false
""")  # fmt: skip
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, allow_unknown_strategies=False))
        gw = await nursery.start(serve, cfg, PaperVenue(cfg.venue.paper, list(cfg.venue.symbols)))
        eps = Endpoints.from_config(cfg)
        stranger, known = Peer(zctx, eps, "stranger"), Peer(zctx, eps, "known")
        try:
            await stranger.order(S, "buy", "limit", 99.0, 0.01, coid="s-1")
            await wait_for_log(caplog, "unknown strategy stranger")
            await known.join()
            assert "stranger" not in gw.strategies and gw.journal.find_order("stranger", "s-1") is None
        finally:
            stranger.close()
            known.close()
        gw.request_stop()


def test_socket_and_run_dir_modes_under_umask_000(base_dir):
    """The real `seqtrade serve` in a process whose umask is 000: still 0700 and 0600."""
    (base_dir / "s.py").write_text(textwrap.dedent("""
        from seqtrade.client import Strategy
        class Idle(Strategy):
            symbols = ["BTC-USDT"]
    """))  # fmt: skip
    cfg = base_dir / "config.toml"
    cfg.write_text('[server]\nrun_dir = "run"\nstatus_interval = 0\n[venue]\n[metrics]\nenabled = false\n'
                   '[[strategies]]\nid = "idle"\npath = "s.py"\n')  # fmt: skip
    code = "import os, sys; os.umask(0); from seqtrade.cli import main; sys.exit(main(sys.argv[1:]))"
    err = base_dir / "server.err"
    with open(err, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=out)  # fmt: skip
    run = base_dir / "run"
    try:
        t0 = time.monotonic()
        while True:  # until the server answers on its control socket and the strategy has connected
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() - t0 < 20, "server did not come up"
            try:
                st = request(f"ipc://{run / 'control.ipc'}", "strategies", timeout=1.0)
                if st and st[0]["heartbeat_age"] is not None:
                    break
            except ConnectionError:
                pass
            time.sleep(0.05)
        assert stat.S_IMODE(os.stat(run).st_mode) == 0o700
        for name in ("md.ipc", "order.ipc", "report.ipc", "control.ipc", "server.lock"):
            assert stat.S_IMODE(os.stat(run / name).st_mode) == 0o600, name
        assert stat.S_IMODE(os.stat(run / "logs").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(run / "logs" / "idle.log").st_mode) == 0o600
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


# --------------------------------------------------------------------------------------- keys


def test_secret_keys_from_environment_only_and_masked(tmp_path):
    k = keygen()
    assert secret_key_from_env("K", {"K": k.secret.decode()}, "security.x") == k.secret
    assert k.secret.decode() not in repr(k) and mask(k.secret) == "<set>" and mask("") == "<not set>"
    with pytest.raises(ConfigError, match=r"security.x: \$K is not set") as err:
        secret_key_from_env("K", {}, "security.x")
    assert "K_FILE" in str(err.value)
    f = tmp_path / "secret"
    f.write_text(k.secret.decode() + "\n")
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError, match="not readable by others") as err:
        secret_key_from_env("K", {"K_FILE": str(f)}, "security.x")
    assert k.secret.decode() not in str(err.value)
    os.chmod(f, 0o600)
    assert secret_key_from_env("K", {"K_FILE": str(f)}, "security.x") == k.secret
    with pytest.raises(ConfigError, match=r"\$K") as err:
        secret_key_from_env("K", {"K": "too-short"}, "security.x")
    assert "too-short" not in str(err.value)
    assert keypair_from_secret(k.secret) == k


def test_server_key_must_match_the_configured_public_key(tcp_cfg):
    assert server_keypair(tcp_cfg, {"SEQTRADE_SERVER_SECRET_KEY": SERVER.secret.decode()}) == SERVER
    with pytest.raises(ConfigError, match="security.server_public_key: does not belong") as err:
        server_keypair(tcp_cfg, {"SEQTRADE_SERVER_SECRET_KEY": HOST_A.secret.decode()})
    assert HOST_A.secret.decode() not in str(err.value)
