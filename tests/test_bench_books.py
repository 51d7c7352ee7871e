"""The ``seqtrade bench`` book scenario (seqtrade.bench.books): zero loss, books equal, a ratio.

No assertion on speed: the figures depend on the machine.
"""

from __future__ import annotations

from pathlib import Path

from seqtrade.bench.books import format_books, run_books


def test_book_scenario_loses_nothing_and_every_strategy_holds_the_servers_book(tmp_path: Path) -> None:
    r = run_books("smoke", tmp_path)
    assert r["strategies"] == 3
    assert r["ticker"]["lost"] == 0 and r["ticker"]["rate"] > 0 and r["ticker"]["updates"] == 2_000
    for name in ("checksum0", "crc32"):
        b = r[name]
        assert b["updates"] == 2_000 and b["frames"] >= b["updates"]  # a delta per update, depth frames too
        assert (b["lost"], b["gaps"], b["books_equal"]) == (0, 0, True)
        assert b["rate"] > 0 and b["ratio_to_ticker"] > 0
    lines = format_books(r)
    assert lines[0].startswith("Book fan-out to 3 strategies") and "x the ticker rate" in lines[-1]
