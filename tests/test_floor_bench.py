"""``python bench/floor.py``: the floor ladder runs end to end, every rung measured with every order.

No assertion on speed (the figures depend on the machine and its load): a tiny run, checked for its
shape. The orders counted are the timed ones each rung's client saw answered ``accepted``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "floor.py"
RUNGS = ["a", "b", "c", "c2", "d", "e", "e2", "f", "g"]


def test_floor_ladder_runs_every_rung(tmp_path: Path) -> None:
    out = tmp_path / "floor.json"
    p = subprocess.run(
        [sys.executable, str(BENCH), "--count", "30", "--warmup", "5", "--repeat", "1", "-q", "--json", str(out)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert [s["rung"] for s in r["summary"]] == RUNGS
    assert [row["rung"] for row in r["runs"]] == RUNGS  # one run each, in ladder order
    for s in r["summary"]:
        assert s["runs"] == 1 and s["count"] == 30, s
        assert s["p50"] > 0 and s["p50"] <= s["p90"] <= s["p99"], s
    for rung in RUNGS:
        assert any(line.startswith(f"{rung} ") for line in p.stdout.splitlines()), (rung, p.stdout)


def test_floor_ladder_refuses_an_unknown_rung() -> None:
    p = subprocess.run(
        [sys.executable, str(BENCH), "--rungs", "a,z", "-q"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode != 0 and "no such rung 'z'" in p.stderr


def test_floor_parts_prices_every_piece(tmp_path: Path) -> None:
    out = tmp_path / "parts.json"
    p = subprocess.run(
        [sys.executable, str(BENCH), "parts", "--calls", "20", "--batches", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    costs = json.loads(out.read_text())["us_per_call"]
    prefixes = sorted({k.split(":")[0] for k in costs})
    assert prefixes == ["a", "b", "c", "e"], costs
    assert len(costs) == 9 and all(v > 0 for v in costs.values()), costs
