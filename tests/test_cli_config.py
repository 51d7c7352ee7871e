"""`seqtrade check`, `seqtrade keygen` and config errors that name the key (issue 7's settings)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from seqtrade.cli import main
from seqtrade.security import keygen, read_public_key

SERVER, CLIENT = keygen(), keygen()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "momentum.py"


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return str(p)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


MULTI_HOST = f"""
[venue]
kind = "paper"

[bus]
order_endpoint = "tcp://0.0.0.0:5557"
report_endpoint = "tcp://0.0.0.0:5558"
md_endpoint = "tcp://0.0.0.0:5556"

[security]
server_public_key = "{SERVER.public.decode()}"

[[security.clients]]
name = "hostb"
public_key_file = "hostb.pub"
strategies = ["mom1", "mr1"]

[metrics]
enabled = true

[supervisor]
backoff_min = 2.0
crash_loop_count = 4

[[strategies]]
id = "local1"
path = "examples/momentum.py"
restart = "always"
params = {{ size = 0.01 }}
"""


def test_check_describes_supervision_tcp_and_metrics(tmp_path, capsys, monkeypatch):
    (tmp_path / "hostb.pub").write_text(CLIENT.public.decode() + "\n")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "momentum.py").write_text(EXAMPLE.read_text())  # check loads it
    path = write(tmp_path, MULTI_HOST)
    monkeypatch.setenv("SEQTRADE_SERVER_SECRET_KEY", SERVER.secret.decode())
    monkeypatch.delenv("SEQTRADE_CLIENT_SECRET_KEY", raising=False)
    monkeypatch.delenv("SEQTRADE_CLIENT_SECRET_KEY_FILE", raising=False)
    code, out, err = run(capsys, "check", "--config", path)
    assert code == 0, err
    assert "local1: examples/momentum.py restart=always" in out
    assert "restarts after 2 s" in out and "4 exits" in out and "/logs/<id>.log" in out
    assert "CurveZMQ required on md, order, report" in out and "client hostb: may trade as mom1, mr1" in out
    assert "metrics: http://127.0.0.1:9464/metrics" in out
    assert "server secret key: <set> in $SEQTRADE_SERVER_SECRET_KEY" in out
    assert "strategy host secret key: <not set>" in out
    assert SERVER.secret.decode() not in out + err  # masked everywhere


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[supervisor]\nbackof_min = 1",
            "supervisor.backof_min: unknown key (known keys here: backoff_max, backoff_min",
        ),
        ("[supervisor]\nbackoff_min = 'fast'", "supervisor.backoff_min: expected a number, got 'fast'"),
        ("[supervisor]\ncrash_loop_count = 1", "supervisor.crash_loop_count: must be >= 2"),
        (
            "[supervisor]\nbackoff_min = 5.0\nbackoff_max = 1.0",
            "supervisor.backoff_max: must be >= supervisor.backoff_min",
        ),
        ("supervisor = 1", "supervisor: expected a table"),
        ("[metrics]\nenabled = 'yes'", "metrics.enabled: expected a boolean"),
        ("[security]\nzap_domain = 3", "security.zap_domain: expected a string"),
        (
            "[security]\nserver_secret_key_env = 'MY KEY'",
            "security.server_secret_key_env: must name an environment",
        ),
        ("[security]\nserver_secret_key = 'x'", "security.server_secret_key: unknown key"),
        (
            "[bus]\norder_endpoint = 'tcp://127.0.0.1:5557'",
            "security.server_public_key: required because bus.order_endpoint is tcp://",
        ),
        ("[bus]\nmd_endpoint = 'udp://x'", "bus.md_endpoint: 'udp://x' must start with ipc:// or tcp://"),
        ("[security]\nserver_public_key = 'short'", "security.server_public_key: not a CurveZMQ public key"),
        ("[[security.clients]]\nname = 'h'\nstrategies = ['a']", "security.clients[0].public_key: missing"),
        (
            f"[[security.clients]]\nname = 'h'\npublic_key = '{CLIENT.public.decode()}'",
            "security.clients[0].strategies: list the strategy ids",
        ),
        ("[[security.clients]]\npublic_key = 'x'", "security.clients[0].name: missing required key"),
        (
            f"[[security.clients]]\nname = 'h'\npublic_key = '{CLIENT.public.decode()}'\nstrategies = ['a b']",
            "security.clients[0].strategies[0]",
        ),
        (
            "[[strategies]]\nid = 'x'\npath = 'x.py'\nrestart = 'sometimes'",
            "strategies[0].restart: expected one of",
        ),
        ("[[strategies]]\nid = 'x'\npath = 'x.py'\nparams = 3", "strategies[0].params: expected a table"),
        ("source_path = 'x'", "source_path: unknown key"),
    ],
)
def test_config_errors_name_the_key(tmp_path, capsys, text, message):
    code, out, err = run(capsys, "check", "--config", write(tmp_path, text))
    assert code == 2 and out == ""
    assert err.startswith("seqtrade: error: ") and message in err, err


def test_check_refuses_an_unreadable_key_file(tmp_path, capsys):
    path = write(tmp_path, MULTI_HOST)  # hostb.pub does not exist
    code, _, err = run(capsys, "check", "--config", path)
    assert code == 2 and "security.clients[0].public_key_file: cannot read" in err


def test_check_missing_config_file(tmp_path, capsys):
    code, _, err = run(capsys, "check", "--config", str(tmp_path / "nope.toml"))
    assert code == 2 and "cannot read config" in err


def test_keygen_writes_the_public_key_and_shows_the_secret_once(tmp_path, capsys):
    code, out, _ = run(capsys, "keygen", "--out", str(tmp_path / "hostb"))
    assert code == 0
    pub = read_public_key(tmp_path / "hostb.pub")
    assert f"public key (written to {tmp_path / 'hostb.pub'}): {pub.decode()}" in out
    secret = out.split("secret key: ", 1)[1].split()[0]
    assert len(secret) == 40 and secret not in (tmp_path / "hostb.pub").read_text()
    assert "export SEQTRADE_CLIENT_SECRET_KEY=" in out
    assert stat.S_IMODE(os.stat(tmp_path / "hostb.pub").st_mode) == 0o644


def test_strategies_command_without_a_server(tmp_path, capsys):
    code, _, err = run(capsys, "strategies", "--config", write(tmp_path, '[server]\nrun_dir = "r"\n'))
    assert code == 2 and "no answer from a server" in err
