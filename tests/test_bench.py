"""``seqtrade bench``: the smallest real run has every section, sane percentiles and no loss.

No assertion on speed: the figures depend on the machine. ``--smoke`` exists for this test only
(a few seconds per scenario); ``--quick`` and the full run are for people.
"""

from __future__ import annotations

import json

import pytest

from seqtrade import wire
from seqtrade.cli import main
from seqtrade.models import Book, Ticker

PCTS = ("p50_us", "p90_us", "p99_us", "p99_9_us", "max_us")


def assert_ordered(stats: dict) -> None:
    assert stats["count"] > 0
    values = [stats[k] for k in PCTS]
    assert all(v is not None and v > 0 for v in values), stats
    assert values == sorted(values), stats


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    assert main(["bench", "--smoke", "--json", str(out), "--no-progress"]) == 0
    return json.loads(out.read_text())


def test_machine_info(smoke: dict) -> None:
    m = smoke["machine"]
    for key in ("cpu", "cores", "python", "pyzmq", "libzmq"):
        assert m[key], key


def test_tick_latency_sections_and_no_loss(smoke: dict) -> None:
    rows = smoke["tick_latency"]
    assert [r["rate"] for r in rows] == smoke["plan"]["rates"]
    for row in rows:
        for name in ("seqtrade", "raw"):
            assert_ordered(row[name])
            assert row[name]["lost"] == 0, (row["rate"], name)
        assert row["seqtrade"]["server_dropped"] == 0
        assert all(
            row["ratio"][k] is not None and row["ratio"][k] > 0 for k in ("p50", "p90", "p99", "p99_9", "max")
        )
        # CPU per message at both ends, seqtrade's and raw's, measured in the same run
        for name in ("seqtrade", "raw"):
            for end in ("server", "client"):
                assert row[name][f"{end}_cpu_us_per_msg"] > 0, (row["rate"], name, end)


def test_cpu_lines_compare_both_ends_with_raw(smoke: dict) -> None:
    from seqtrade.bench.run import format_table

    table = format_table(smoke)
    assert "subscriber CPU per message, seqtrade vs raw: 1k/s " in table
    # the server busy-waits each tick at these rates: no publisher line for them
    assert "publisher CPU per message" not in table
    fast = dict(smoke, tick_latency=[dict(r, rate=100_000) for r in smoke["tick_latency"][:1]])
    assert "publisher CPU per message, seqtrade vs raw: 100k/s " in format_table(fast)


def test_order_round_trip(smoke: dict) -> None:
    rt = smoke["order_round_trip"]
    assert_ordered(rt["raw"])
    assert rt["seqtrade"]
    for run in rt["seqtrade"]:
        assert run["accepted"]["count"] == run["filled"]["count"] == smoke["plan"]["rt_count"]
        assert_ordered(run["accepted"])
        assert_ordered(run["filled"])
        assert run["ratio_accepted"]["p50"] > 0 and run["ratio_filled"]["p50"] > 0
        assert run["server_cpu_us_per_order"] is None or run["server_cpu_us_per_order"] >= 0


def test_tick_to_trade(smoke: dict) -> None:
    t2t = smoke["tick_to_trade"]
    assert t2t["rate"] == smoke["plan"]["t2t_rate"]
    for name in ("seqtrade", "raw"):
        assert_ordered(t2t[name])
        # every measured order answered a ticker; a few at the end may not reach the venue in time
        assert t2t[name]["count"] <= smoke["plan"]["t2t_count"]
    assert all(t2t["ratio"][k] is not None and t2t["ratio"][k] > 0 for k in ("p50", "p99"))
    assert {t["target"] for t in smoke["targets"]} >= {
        "tick-to-trade p50 <= 1.5x raw",
        "tick-to-trade p99 <= 2.0x raw",
    }


def test_stage_breakdown(smoke: dict) -> None:
    stages = smoke["stages"]["stages"]
    assert len(stages) >= 12
    for label, stats in stages.items():
        # every order passed every stage (a mark missing would leave a stage short)
        assert stats["count"] == smoke["plan"]["rt_count"], label
    total = stages["total: call -> on_order(accepted) returned"]
    assert total["p50_us"] >= max(s["p50_us"] for s in stages.values())


def test_load_is_reported(smoke: dict) -> None:
    ld = smoke["load"]
    assert ld["cores"] and ld["before_per_core"] >= 0 and ld["during_max_per_core"] >= 0
    assert ld["busy"] == (ld["before_per_core"] > 0.5)
    assert bool(ld["warning"]) == ld["busy"]


def test_fanout(smoke: dict) -> None:
    for n in ("1", "3"):
        f = smoke["fanout"][n]
        for kind in ("seqtrade", "raw"):
            assert f[kind]["probes"], (n, kind)
            assert f[kind]["max_zero_loss_rate"] > 0, (n, kind, f[kind]["probes"])
            for probe in f[kind]["probes"]:
                if probe["pass"]:
                    assert probe["lost"] == 0
        assert f["ratio"] is not None


def test_order_throughput_with_its_raw_baseline(smoke: dict) -> None:
    tp = smoke["order_throughput"]
    plan = smoke["plan"]
    assert (tp["strategies"], tp["orders_each"], tp["window"]) == (3, plan["tp_count"], plan["tp_window"])
    for kind in ("seqtrade", "raw"):
        assert tp[kind]["orders"] == 3 * plan["tp_count"] and tp[kind]["orders_per_s"] > 0, tp
    assert tp["ratio"] is not None and tp["ratio"] > 0
    assert tp["seqtrade"]["server_cpu_us_per_order"] is None or tp["seqtrade"]["server_cpu_us_per_order"] > 0


def test_every_scenario_has_its_load_and_a_place_in_the_plot(smoke: dict) -> None:
    """Each scenario that ran has its own load figures; each latency histogram falls in a plot panel
    with its raw pair, and the rates (fan-out, throughput, books, replay) are the plot's bar panels."""
    from seqtrade.bench.run import PLOT_PANELS, SCENARIOS, _bar_rows

    assert set(smoke["load"]["scenarios"]) == set(SCENARIOS)
    names = list(smoke["histograms"])
    for name in names:
        prefix = next((p for p, _ in PLOT_PANELS if name.startswith(p)), None)
        assert prefix is not None, name
        assert any(" raw" in n for n in names if n.startswith(prefix)), name  # its baseline is drawn too
    bars = {title.split(":")[0] for title, _, _ in _bar_rows(smoke)}
    assert bars == {"fan-out", "order throughput", "books", "replay"}


def test_codec_and_targets(smoke: dict) -> None:
    c = smoke["codec"]
    assert c["msgpack_us"] > 0 and c["json_us"] > 0 and c["json_over_msgpack"] > 0
    assert smoke["targets"] and all("met" in t and "value" in t for t in smoke["targets"])
    assert smoke["histograms"]


def test_plot_without_matplotlib_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kw: object) -> object:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["bench", "--smoke", "--plot", "x.png"]) == 2
    assert "seqtrade[plot]" in capsys.readouterr().err


# ------------------------------------------------------------------ the fast ticker codec it measures


def sample_ticker(seq: int = 7) -> Ticker:
    return Ticker("BTC-USDT", 1_700_000_000_123, 60_000.1, 60_000.0, 60_000.2, 0.5, 0.75, 1234.5, seq, 99)


def test_encode_ticker_is_encode_message() -> None:
    t = sample_ticker()
    assert wire.encode_ticker(wire.topic("ticker", t.symbol), t) == wire.encode_message(t)


def test_decode_ticker_frame_is_decode_message() -> None:
    t = sample_ticker()
    frame = wire.encode_message(t)
    assert wire.decode_ticker_frame(frame) == wire.decode_message(frame) == t


@pytest.mark.parametrize(
    "frame",
    [
        wire.encode_message(Book("BTC-USDT", 1, [[1.0, 2.0]], [[1.1, 2.0]], 1, 2)),
        b"ticker/BTC-USDT/\xc1",  # not MessagePack
        b"ticker/BTC-USDT/" + bytes([0x91, 0x01]),  # not a map
        b"ticker//\x80",
        wire.encode(wire.topic("ticker", "X"), {"type": "ticker", "symbol": "X"}),  # keys missing
    ],
)
def test_decode_ticker_frame_leaves_the_rest_to_decode_message(frame: bytes) -> None:
    assert wire.decode_ticker_frame(frame) is None
