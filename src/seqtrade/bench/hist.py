"""Latency samples -> HdrHistogram, and what the benchmark reports of one (stdlib + hdrh only).

Subprocesses keep their samples in an ``array('q')`` of nanoseconds while they measure (an append
costs ~50 ns, ``record_value`` ~1.7 µs) and build the histogram once the window is over.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = ["new_hist", "hist_from_samples", "summary", "write_result", "read_result", "PERCENTILES"]

LOWEST_NS = 1
HIGHEST_NS = 60_000_000_000  # one minute
SIGNIFICANT = 3
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))


def new_hist() -> HdrHistogram:
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT)


def hist_from_samples(samples: Iterable[int]) -> HdrHistogram:
    h = new_hist()
    record = h.record_value
    for v in samples:
        record(min(max(v, LOWEST_NS), HIGHEST_NS))
    return h


def summary(h: HdrHistogram) -> dict[str, Any]:
    """count, percentiles, max and mean in µs (3 significant digits, as HdrHistogram holds them)."""
    out: dict[str, Any] = {"count": h.get_total_count()}
    if not out["count"]:
        for name, _ in PERCENTILES:
            out[f"{name}_us"] = None
        out["max_us"] = out["mean_us"] = None
        return out
    for name, pct in PERCENTILES:
        out[f"{name}_us"] = h.get_value_at_percentile(pct) / 1000
    out["max_us"] = h.get_max_value() / 1000
    out["mean_us"] = round(h.get_mean_value() / 1000, 3)
    return out


def write_result(
    path: str | Path, result: dict[str, Any], hists: dict[str, array[int] | HdrHistogram]
) -> None:
    """A subprocess's result file: JSON with each histogram HdrHistogram-encoded (base64 text)."""
    encoded = {}
    for name, samples in hists.items():
        h = samples if isinstance(samples, HdrHistogram) else hist_from_samples(samples)
        encoded[name] = h.encode().decode("ascii")
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps({**result, "hists": encoded}))
    tmp.replace(path)  # the parent never reads a half-written file


def read_result(path: str | Path) -> tuple[dict[str, Any], dict[str, HdrHistogram]]:
    data = json.loads(Path(path).read_text())
    hists = {name: HdrHistogram.decode(text.encode("ascii")) for name, text in data.pop("hists").items()}
    return data, hists
