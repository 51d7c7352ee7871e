"""Supervision: the server starts [[strategies]], restarts a crashed one (which catches up through replay),
stops a crash loop, stops them all on shutdown."""

from __future__ import annotations

import json
import logging
import os
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
import trio

from seqtrade.config import Config, load_config
from seqtrade.errors import ConfigError
from seqtrade.server.app import serve
from seqtrade.server.control import request
from seqtrade.server.gateway import Gateway
from seqtrade.server.supervisor import Supervisor, strategy_command, toml_value
from seqtrade.venues.paper import PaperVenue

from .conftest import QUIET_MARKET

CRASH_ONCE = """
import json, os
from pathlib import Path
from seqtrade.client import Strategy

class CrashOnce(Strategy):
    symbols = ["BTC-USDT"]

    def on_start(self):
        here = Path(self.params["dir"])
        if not (here / "crashed").exists():
            self.buy_limit("BTC-USDT", 90.0, 0.01)
        else:  # the second life: what did the replay give us?
            state = {coid: str(r.status) for coid, r in self.orders.items()}
            (here / "state.tmp").write_text(json.dumps({"orders": state, "params": self.params}))
            os.replace(here / "state.tmp", here / "state.json")

    def on_order(self, r):
        here = Path(self.params["dir"])
        if r.status == "accepted" and not (here / "crashed").exists():
            (here / "crashed").write_text("1")
            os._exit(1)  # a crash right after the order was accepted
"""

CRASH_AT_ONCE = "raise SystemExit(3)\n"

SUPERVISOR = """
[supervisor]
backoff_min = 0.05
backoff_max = 0.2
crash_loop_count = 3
crash_loop_window = 60.0
stop_grace = 5.0
"""


def write_config(base_dir: Path, strategies: str) -> Config:
    path = base_dir / "config.toml"
    path.write_text(QUIET_MARKET + SUPERVISOR + strategies)
    return load_config(path)


async def start_server(nursery: trio.Nursery, config: Config) -> tuple[Gateway, trio.Event]:
    venue = PaperVenue(config.venue.paper, list(config.venue.symbols))
    done = trio.Event()

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await serve(config, venue, task_status=task_status)
        done.set()

    gw: Gateway = await nursery.start(run)
    return gw, done


async def control(config: Config, cmd: str, **kw: Any) -> Any:
    ep = f"ipc://{config.run_dir / 'control.ipc'}"
    return await trio.to_thread.run_sync(lambda: request(ep, cmd, **kw))


async def until_file(path: Path) -> None:
    while not path.exists():
        await trio.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_crashed_strategy_is_restarted_and_catches_up_through_replay(nursery, base_dir, caplog):
    with trio.fail_after(30):
        caplog.set_level(logging.INFO)
        (base_dir / "crash_once.py").write_text(CRASH_ONCE)
        config = write_config(base_dir, f"""
[[strategies]]
id = "c1"
path = "crash_once.py"
restart = "on-failure"
params = {{ dir = "{base_dir}", size = 0.01, tags = ["a", "b"] }}
""")  # fmt: skip
        gw, done = await start_server(nursery, config)
        await until_file(base_dir / "state.json")
        state = json.loads((base_dir / "state.json").read_text())
        # the restarted process got the report of the order its first life placed, by replay
        assert list(state["orders"].values()) == ["accepted"]
        assert state["params"] == {"dir": str(base_dir), "size": 0.01, "tags": ["a", "b"]}
        (row,) = await control(config, "strategies")
        assert row["id"] == "c1" and row["supervised"] and row["restarts"] >= 1 and row["exit_code"] == 1
        while row["heartbeat_age"] is None or row["state"] != "running":
            await trio.sleep(0.02)
            (row,) = await control(config, "strategies")
        pid = row["pid"]
        assert row["state"] == "running" and pid and not gone(pid)
        assert any(
            "c1 exited with code 1" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
        )
        log_text = (config.run_dir / "logs" / "c1.log").read_text()
        assert log_text.count("seqtrade supervisor: starting c1") == 2 and "joined as c1" in log_text
        # an orderly stop: SIGTERM to the group, the strategy stops cleanly, the server ends
        gw.request_stop()
        await done.wait()
        assert gone(pid)
        assert (
            "c1 stopped by the server (exited with code 0)"
            in (config.run_dir / "logs" / "c1.log").read_text()
        )


async def test_crash_loop_is_stopped_and_reported(nursery, base_dir, caplog):
    with trio.fail_after(30):
        caplog.set_level(logging.INFO)
        (base_dir / "bad.py").write_text(CRASH_AT_ONCE)
        (base_dir / "fine.py").write_text(
            "from seqtrade.client import Strategy\nclass Fine(Strategy):\n    pass\n"
        )
        config = write_config(base_dir, """
[[strategies]]
id = "fine"
path = "fine.py"

[[strategies]]
id = "bad"
path = "bad.py"
restart = "always"
""")  # fmt: skip
        gw, done = await start_server(nursery, config)
        while True:
            rows = {r["id"]: r for r in await control(config, "strategies")}
            if rows["bad"]["state"] == "crash-loop":
                break
            await trio.sleep(0.05)
        bad = rows["bad"]
        assert (bad["restarts"], bad["pid"], bad["exit_code"]) == (2, None, 3)  # 3 exits = crash loop
        (err,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "bad exited with code 3" in err.getMessage() and "crash loop" in err.getMessage()
        log_text = (config.run_dir / "logs" / "bad.log").read_text()
        assert log_text.count("seqtrade supervisor: starting bad") == 3
        assert rows["fine"]["state"] == "running"  # the others are not affected
        # metrics and the CLI table show it
        from seqtrade.cli import format_strategies

        table = format_strategies(list(rows.values()))
        assert "crash-loop" in table and "fine" in table
        # an operator can ask for another try
        assert await control(config, "restart_strategy", id="bad") == "starting"
        with pytest.raises(RuntimeError, match="not stopped"):
            await control(config, "restart_strategy", id="fine")
        gw.request_stop()
        await done.wait()


async def test_strategies_stop_in_reverse_order_and_externals_are_listed(nursery, base_dir, zctx):
    with trio.fail_after(30):
        (base_dir / "s.py").write_text(textwrap.dedent("""
            from pathlib import Path
            from seqtrade.client import Strategy

            class S(Strategy):
                def note(self, what):
                    with Path(self.params["out"]).open("a") as f:
                        f.write(f"{what}:{self.strategy_id}\\n")

                def on_start(self):
                    self.note("start")

                def on_stop(self):
                    self.note("stop")
        """))  # fmt: skip
        out = base_dir / "order.txt"
        config = write_config(base_dir, f"""
[[strategies]]
id = "first"
path = "s.py"
params = {{ out = "{out}" }}

[[strategies]]
id = "second"
path = "s.py"
params = {{ out = "{out}" }}
""")  # fmt: skip
        gw, done = await start_server(nursery, config)
        from seqtrade.client import Endpoints

        from .peer import Peer

        ext = Peer(zctx, Endpoints.from_config(config), "outsider")
        try:
            await ext.join()
            while True:
                rows = await control(config, "strategies")
                started = out.read_text().split() if out.exists() else []
                if len(rows) == 3 and all(r["heartbeat_age"] is not None for r in rows) and len(started) == 2:
                    break
                await trio.sleep(0.05)
            assert [(r["id"], r["supervised"]) for r in rows] == [
                ("first", True),
                ("second", True),
                ("outsider", False),
            ]
            assert rows[2]["state"] == "external"
        finally:
            ext.close()
        gw.request_stop()
        await done.wait()
        assert out.read_text().split()[2:] == ["stop:second", "stop:first"]


def test_params_round_trip_through_the_command_line(base_dir):
    params = {"a": 1, "b": 2.5, "c": "x \"q\" \\ \n é \x7f", "d": [1, "two", False], "e": {"k v": -1.0},
              "f": float("inf")}  # fmt: skip
    for value in params.values():
        assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value
    config = write_config(base_dir, '[[strategies]]\nid = "m"\nmodule = "pkg.mod:Cls"\nparams = { n = 3 }\n')
    cmd = strategy_command(config, config.strategies[0])
    assert cmd[1:] == ["-m", "seqtrade.cli", "run", "pkg.mod:Cls", "--id", "m", "--config", config.source_path,
                       "--param", "n=3"]  # fmt: skip


def test_children_do_not_inherit_the_servers_secrets(base_dir):
    config = write_config(base_dir, '[[strategies]]\nid = "m"\nmodule = "x"\n')
    env = {"PATH": "/bin", "OKX_API_KEY": "k", "OKX_SECRET_KEY": "s", "OKX_PASSPHRASE": "p",
           "SEQTRADE_SERVER_SECRET_KEY": "z", "SEQTRADE_SERVER_SECRET_KEY_FILE": "/f",
           "SEQTRADE_CLIENT_SECRET_KEY": "c"}  # fmt: skip
    child = Supervisor(config, None, env).child_env()
    assert child == {"PATH": "/bin", "SEQTRADE_CLIENT_SECRET_KEY": "c", "PYTHONUNBUFFERED": "1"}


def test_children_lose_every_venue_secret_and_secret_looking_names(base_dir):
    """The filter asks the venues for their secret names (not one exchange's), and strips any variable
    whose name says it is a secret; the strategy host's own CurveZMQ key stays."""
    config = write_config(base_dir, '[[strategies]]\nid = "m"\nmodule = "x"\n'
                                    "[venue.okx]\napi_key_env = 'EX_K'\nsecret_key_env = 'EX_S'\npassphrase_env = 'EX_P'\n")  # fmt: skip
    secret = {"EX_K": "k", "EX_S": "s", "EX_P_FILE": "/p", "DB_PASSWORD": "x", "GITHUB_TOKEN": "t",
              "AWS_SECRET_ACCESS_KEY": "a", "OKX_API_KEY": "k", "SEQTRADE_SERVER_SECRET_KEY": "z"}  # fmt: skip
    kept = {"PATH": "/bin", "HOME": "/root", "MONKEY": "1", "KEYBOARD_LAYOUT": "us", "TOKENIZERS_PARALLELISM": "1",
            "SEQTRADE_CLIENT_SECRET_KEY": "c", "SEQTRADE_CLIENT_SECRET_KEY_FILE": "/c"}  # fmt: skip
    child = Supervisor(config, None, secret | kept).child_env()
    assert child == kept | {"PYTHONUNBUFFERED": "1"}


def test_supervised_strategies_need_a_config_file(base_dir):
    from .conftest import make_config

    config = make_config(base_dir, '[[strategies]]\nid = "m"\nmodule = "x"\n')
    with pytest.raises(ConfigError, match="config file"):
        Supervisor(config)
