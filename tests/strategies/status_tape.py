"""The tape strategy (tests/strategies/tape.py) that also writes the venue's connection as it sees it
change (read by tests/test_backtest_window.py)."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("tape", Path(__file__).with_name("tape.py"))
assert _spec is not None and _spec.loader is not None
_tape = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tape)


class StatusTape(_tape.Tape):
    def on_start(self) -> None:
        super().on_start()
        self.connected = True

    def on_status(self, s) -> None:
        if s.connected != self.connected:
            self.connected = s.connected
            self.write(type="status", connected=s.connected)
