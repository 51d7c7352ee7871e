"""The line that says why a supervised strategy's last run ended, read from its log (pure rules)."""

from __future__ import annotations

from seqtrade.server.exitline import MAX_LEN, fatal_line

START = "--- 2026-01-01T00:00:00+0000 seqtrade supervisor: starting s1 (start {n}): python -m seqtrade.cli run s.py"
EXIT = "--- 2026-01-01T00:00:01+0000 seqtrade supervisor: s1 exited with code 1 after 0.2 s"


def test_the_final_exception_line_of_the_last_traceback_of_the_last_run() -> None:
    log = "\n".join([
        START.format(n=1),
        "Traceback (most recent call last):",
        '  File "s.py", line 3, in <module>',
        "KeyError: 'old run'",
        EXIT,
        START.format(n=2),
        "2026-01-01 00:00:02,000 INFO seqtrade.client: joining as s1",
        "Traceback (most recent call last):",
        '  File "s.py", line 5, in on_start',
        "    raise ValueError('bad size')",
        "ValueError: bad size",
        "",
        "Exception ignored in: something later",
        EXIT,
    ])  # fmt: skip
    assert fatal_line(log) == "ValueError: bad size"


def test_without_a_traceback_an_error_line_then_the_last_line() -> None:
    assert fatal_line(f"{START.format(n=1)}\nerror: strategy file not found: /x/nope.py\n{EXIT}\n") == (
        "error: strategy file not found: /x/nope.py"
    )
    logged = "12:00:00,1 ERROR seqtrade.client: not joined: id in use\n12:00:01,0 INFO seqtrade.client: bye\n"
    assert (
        fatal_line(START.format(n=1) + "\n" + logged)
        == "12:00:00,1 ERROR seqtrade.client: not joined: id in use"
    )
    assert fatal_line("plain words\nKilled\n") == "Killed"


def test_a_run_that_printed_nothing_says_nothing_and_long_lines_are_cut() -> None:
    assert fatal_line(f"error: from the run before\n{EXIT}\n{START.format(n=2)}\n{EXIT}\n") is None
    assert fatal_line("") is None
    line = fatal_line("RuntimeError: " + "x" * 500)
    assert line is not None and len(line) == MAX_LEN and line.endswith("...")
