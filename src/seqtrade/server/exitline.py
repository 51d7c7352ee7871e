"""The one line that says why a supervised strategy stopped, read from the tail of its log (pure).

The supervisor writes each strategy's output to ``<run_dir>/logs/<id>.log`` and marks every start and
exit there with its own ``--- <time> seqtrade supervisor: ...`` lines. After an exit it hands the tail
of that file to :func:`fatal_line`, and ``seqtrade strategies`` and the serve console show the answer:
what a person would look for first in the log, without opening it.
"""

from __future__ import annotations

__all__ = ["fatal_line", "SUPERVISOR_MARK", "MAX_LEN"]

SUPERVISOR_MARK = "seqtrade supervisor: "  # inside the supervisor's own lines in a strategy's log
MAX_LEN = 200  # characters kept of the line


def _clip(line: str) -> str:
    line = line.strip()
    return line if len(line) <= MAX_LEN else line[: MAX_LEN - 3] + "..."


def fatal_line(log_tail: str) -> str | None:
    """The line that says why the last run in ``log_tail`` ended, or None when it says nothing.

    Only the output after the supervisor's last ``starting`` line counts (the last run). In order of
    preference: the final exception line of the last traceback (``ValueError: bad``, the first line
    after the traceback's indented frames), the last line starting with ``error:`` or holding an
    ``ERROR`` log level, the last line of output at all.
    """
    lines = log_tail.splitlines()
    start = 0
    for i, line in enumerate(lines):
        if line.startswith("--- ") and SUPERVISOR_MARK + "starting " in line:
            start = i + 1
    run = [ln for ln in lines[start:] if ln.strip() and not (ln.startswith("--- ") and SUPERVISOR_MARK in ln)]
    if not run:
        return None
    last_tb = max(
        (i for i, ln in enumerate(run) if ln.startswith("Traceback (most recent call last)")), default=None
    )
    if last_tb is not None:
        for ln in run[last_tb + 1 :]:
            if not ln[:1].isspace():
                return _clip(ln)
    for ln in reversed(run):
        if ln.lstrip().lower().startswith("error:") or " ERROR " in ln:
            return _clip(ln)
    return _clip(run[-1])
