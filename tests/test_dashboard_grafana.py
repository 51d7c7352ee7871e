"""The Grafana board (grafana/seqtrade.json): valid against Grafana's dashboard schema (the structural
rules of its Dashboard kind, vendored as grafana/dashboard.schema.json), laid out on Grafana's grid, and
every metric it names is in a real server's /metrics."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trio

from seqtrade.client import Endpoints
from seqtrade.config import load_config

from .conftest import QUIET_MARKET
from .peer import Peer
from .test_dashboard import DASHBOARD, S, http, start_server, trade
from .test_metrics import free_port

ROOT = Path(__file__).resolve().parents[1]
BOARD = ROOT / "grafana" / "seqtrade.json"
SCHEMA = ROOT / "grafana" / "dashboard.schema.json"
METRIC_RE = re.compile(r"\bseqtrade_[a-z_]+")


def board() -> dict[str, Any]:
    return json.loads(BOARD.read_text())  # type: ignore[no-any-return]


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def panels(b: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in b["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def test_the_board_is_valid_against_grafanas_dashboard_schema():
    errors = [f"{list(e.path)}: {e.message}" for e in validator().iter_errors(board())]
    assert errors == []


@pytest.mark.parametrize(
    ("break_it", "where"),
    [
        (lambda b: b["panels"][1]["gridPos"].update(w=25), "gridPos"),
        (lambda b: b["panels"][1].pop("fieldConfig"), "fieldConfig"),
        (lambda b: b.update(graphTooltip=3), "graphTooltip"),
        (lambda b: b.update(unknownKey=1), "unknownKey"),
        (lambda b: b["panels"][1].update(type=""), "type"),
        (lambda b: b["templating"]["list"][0].update(type="nonsense"), "type"),
        (lambda b: b.pop("schemaVersion"), "schemaVersion"),
    ],
)
def test_the_schema_check_is_not_vacuous(break_it, where):
    b = copy.deepcopy(board())
    break_it(b)
    errors = list(validator().iter_errors(b))
    said = [f"{list(e.path)} {e.message}" for err in errors for e in (err, *(err.context or []))]
    assert errors and any(where in line for line in said), said


def test_the_board_is_laid_out_on_grafanas_grid_and_importable():
    b = board()
    seen: set[tuple[int, int]] = set()
    ids = [p["id"] for p in panels(b)]
    assert len(ids) == len(set(ids))
    for p in panels(b):
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & seen, f"{p['title']} overlaps another panel"
        seen |= cells
        if p["type"] == "row":
            continue
        assert p["datasource"] == {
            "type": "prometheus",
            "uid": "${datasource}",
        }  # the import picks the source
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(METRIC_RE.search(t["expr"]) for t in p["targets"])
    (ds,) = [v for v in b["templating"]["list"] if v["type"] == "datasource"]
    assert ds["name"] == "datasource" and ds["query"] == "prometheus"
    assert b["uid"] == "seqtrade-gateway" and b.get("id") is None


def families(text: str) -> dict[str, tuple[str, int]]:
    """Each metric family in a Prometheus exposition: its type and how many samples it has."""
    out: dict[str, tuple[str, int]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            out[name] = (kind, 0)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            fam = re.sub(r"_(bucket|sum|count)$", "", name) if name not in out else name
            if fam in out:
                kind, n = out[fam]
                out[fam] = (kind, n + 1)
    return out


async def test_every_metric_the_board_names_is_exported_by_a_running_server(nursery, base_dir, zctx):
    """A server with the metrics endpoint, the dashboard (its histograms and rejections) and one
    supervised strategy (its restarts): every name the board's queries use has samples in /metrics."""
    with trio.fail_after(60):
        port = free_port()
        echo = ROOT / "tests" / "strategies" / "echo.py"
        text = (QUIET_MARKET + DASHBOARD + f"\n[metrics]\nenabled = true\nport = {port}\n"
                + f'\n[risk]\nmax_order_quantity = 1.0\n\n[[strategies]]\nid = "echo1"\npath = "{echo}"\nrestart = "never"\n')  # fmt: skip
        (base_dir / "config.toml").write_text(text)
        config = load_config(base_dir / "config.toml")
        gw, venue = await start_server(nursery, config)
        a = Peer(zctx, Endpoints.from_config(config), "a")
        try:
            await a.join()
            await venue.set_market(S, 100.0, 100.2)
            await trade(a, S, "buy", 0.5)
            await a.order(S, "buy", "limit", 99.0, 5.0)  # refused by max_order_quantity: a rejection by rule
            await a.report()
        finally:
            a.close()
        names = sorted(
            {m for p in panels(board()) for t in p.get("targets", []) for m in METRIC_RE.findall(t["expr"])}
        )
        assert len(names) >= 20
        # the dashboard's collector reads the journal a sample later: wait for its rejection to show
        while True:
            ans = await http(f"http://127.0.0.1:{port}", "/metrics")
            fams = families(ans.body.decode())
            if (
                fams.get("seqtrade_risk_rejections_total", ("", 0))[1]
                and fams.get("seqtrade_order_ack_latency_seconds", ("", 0))[1]
            ):
                break
            await trio.sleep(0.05)
        missing = []
        for name in names:
            fam = name if name in fams else re.sub(r"_(bucket|sum|count)$", "", name)
            if fam not in fams or fams[fam][1] == 0:
                missing.append(name)
            elif fam != name:
                assert fams[fam][0] == "histogram", name
        assert missing == []
        gw.request_stop()
