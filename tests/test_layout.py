"""Architecture rules from STYLE.md, kept by a test."""

from __future__ import annotations

import subprocess
import sys

import pytest

IO_LIBS = ("trio", "zmq", "httpx", "trio_websocket", "sqlite3")
PURE = ["seqtrade.models", "seqtrade.wire", "seqtrade.config", "seqtrade.venues.matching",
        "seqtrade.venues.okx.parse", "seqtrade.venues.okx.messages", "seqtrade.server.orders",
        "seqtrade.server.engine", "seqtrade.server.recovery", "seqtrade.server.risk",
        "seqtrade.server.accounts", "seqtrade.positions"]  # fmt: skip


def loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io(module):
    loaded = loaded_after_import(module)
    assert not [m for m in IO_LIBS if m in loaded], f"{module} pulls in I/O libraries"


def test_client_loads_neither_server_nor_venues_nor_trio():
    loaded = loaded_after_import("seqtrade.client")
    assert not any(m.startswith(("seqtrade.server", "seqtrade.venues")) for m in loaded)
    assert "trio" not in loaded


def test_client_public_surface():
    import seqtrade.client as c

    assert sorted(c.__all__) == sorted([
        "Strategy", "Position", "run", "run_strategy", "load_strategy", "Endpoints",
        "Ticker", "Book", "Trade", "VenueStatus", "OrderReport", "OrderStatus",
    ])  # fmt: skip
    for name in c.__all__:
        assert hasattr(c, name)
