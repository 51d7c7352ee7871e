"""The server's collector settings (``seqtrade.server.gcpolicy``), in a process of their own (they
are process-wide): start-up's objects frozen, young collections rarer, cycles still freed."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_settle_freezes_start_up_and_cycles_made_later_are_still_freed() -> None:
    code = textwrap.dedent("""
        import gc, weakref
        from seqtrade.server.gcpolicy import YOUNG_THRESHOLD, settle
        assert gc.get_freeze_count() == 0
        settle()
        assert gc.isenabled() and gc.get_freeze_count() > 1000, gc.get_freeze_count()
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD > 700
        class Node:
            pass
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: reference counting alone never frees it
        alive = weakref.ref(a)
        del a, b
        kept = [{} for _ in range(YOUNG_THRESHOLD + 100)]  # enough allocations for a young collection
        assert alive() is None, "the cycle was not collected"
        print("freed", len(kept) > YOUNG_THRESHOLD)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "freed True"
