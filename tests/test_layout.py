"""Architecture rules kept by a test: pure modules, the client's imports, public surfaces, venue kinds."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

IO_LIBS = ("trio", "zmq", "httpx", "trio_websocket", "sqlite3")
PURE = ["seqtrade.models", "seqtrade.wire", "seqtrade.config", "seqtrade.venues.matching",
        "seqtrade.venues.okx.parse", "seqtrade.venues.okx.messages", "seqtrade.server.orders",
        "seqtrade.client.protocol", "seqtrade.client.strategy", "seqtrade.books", "seqtrade.client.book",
        "seqtrade.server.engine", "seqtrade.server.recovery", "seqtrade.server.risk",
        "seqtrade.server.accounts", "seqtrade.positions", "seqtrade.venues.okx.auth",
        "seqtrade.venues.okx.account", "seqtrade.venues.okx.tracking", "seqtrade.venues.okx.errors",
        "seqtrade.candles", "seqtrade.feedhealth", "seqtrade.venues.okx.candles", "seqtrade.tickerframes"]  # fmt: skip


def loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io(module):
    loaded = loaded_after_import(module)
    assert not [m for m in IO_LIBS if m in loaded], f"{module} pulls in I/O libraries"


def test_client_loads_neither_server_nor_venues_nor_trio():
    loaded = loaded_after_import("seqtrade.client, seqtrade.client.cli")  # cli: everything a strategy runs
    assert not any(m.startswith(("seqtrade.server", "seqtrade.venues")) for m in loaded)
    assert "trio" not in loaded


def test_client_public_surface():
    import seqtrade.client as c

    assert sorted(c.__all__) == sorted([
        "Strategy", "Position", "run", "run_strategy", "load_strategy", "Endpoints",
        "Ticker", "Book", "Trade", "VenueStatus", "OrderReport", "OrderStatus",
        "Candle", "FeedsStatus", "FeedStatus", "LocalBook", "BookStatus",
        "AccountEvent", "AccountEventKind", "MarkPrice", "FundingRate", "PriceLimit", "Instrument", "InstrumentKind",
    ])  # fmt: skip
    for name in c.__all__:
        assert hasattr(c, name)


VENUE_KINDS = ("paper", "okx")
# Where a venue kind may be named: the venues package, the config's section definitions, the
# benchmark's market feed (a paper venue by design: seqtrade.bench.feed) and its book scenario (OKX
# `books` messages through the OKX adapter's own decoders, by design: seqtrade.bench.books).
KIND_ALLOWED = ("venues/", "config.py", "bench/feed.py", "bench/books.py")


def kind_mentions(path: Path) -> list[str]:
    """Where a module's code (not its comments or docstrings) names a venue kind: a string equal to
    one, an attribute or a name that contains one, an import of a venue's module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        words: list[str] = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            words = [node.value] if node.value.lower() in VENUE_KINDS else []
        elif isinstance(node, ast.Attribute):
            words = [node.attr]
        elif isinstance(node, ast.Name):
            words = [node.id]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            words = [node.name]
        elif isinstance(node, ast.ImportFrom):
            words = [node.module or "", *(a.name for a in node.names)]
        elif isinstance(node, ast.Import):
            words = [a.name for a in node.names]
        for w in words:
            if any(k in w.lower() for k in VENUE_KINDS):
                found.append(f"{path}:{getattr(node, 'lineno', '?')}: {w}")
    return found


def test_no_module_outside_venues_names_a_venue_kind():
    src = Path(__file__).resolve().parents[1] / "src" / "seqtrade"
    offenders = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        if not rel.startswith(KIND_ALLOWED) and rel not in KIND_ALLOWED:
            offenders += kind_mentions(path)
    assert offenders == []


def test_the_kind_check_sees_a_branch_on_the_kind(tmp_path):
    """The check above is not vacuous: a branch on the kind, a venue's section or its module is seen."""
    module = tmp_path / "m.py"
    module.write_text('"""okx in a docstring is fine."""\nfrom seqtrade.venues.okx import OkxVenue  # okx\n'
                      'def f(c):\n    return c.venue.kind == "okx" or c.venue.okx.demo\n')  # fmt: skip
    assert [m.rsplit(": ", 1)[1] for m in kind_mentions(module)] == [
        "seqtrade.venues.okx",
        "OkxVenue",
        "okx",
        "okx",
    ]


ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared|/work/|okx-v5|PROTOCOL\.md|STYLE\.md|PERF-NOTES")


def repo_texts() -> list[Path]:
    files = [ROOT / "README.md"]
    for d in ("src", "tests", "docs", "bench", "examples", "scripts"):
        files += [p for p in (ROOT / d).rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".toml", "")]
    return [p for p in files if "egg-info" not in p.parts and "__pycache__" not in p.parts]


def test_the_repository_refers_to_no_document_outside_it():
    found = []
    for p in repo_texts():
        for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            where = f"{p.relative_to(ROOT)}:{n}"
            if OUTSIDE.search(line) and p.name != "test_layout.py":
                found.append(f"{where}: {line.strip()}")
    assert found == []


def test_every_cited_okx_section_exists():
    """The OKX modules, the fake and their tests cite docs/okx.md by section: each one must be there."""
    doc = (ROOT / "docs" / "okx.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^##+ (\d+(?:\.\d+)?)\.? ", doc, re.MULTILINE))
    part8 = doc[doc.index("\n## 8. ") : doc.index("\n## 9. ")]
    sections |= {f"8.{n}" for n in re.findall(r"^(\d+)\. ", part8, re.MULTILINE)}
    citing = [*(ROOT / "src/seqtrade/venues/okx").glob("*.py"), *(ROOT / "tests/fakeokx").glob("*"),
              *(ROOT / "tests").glob("test_*okx*.py")]  # fmt: skip
    cited = {
        (p.name, s) for p in citing if p.is_file() for s in re.findall(r"§(\d+(?:\.\d+)?)", p.read_text())
    }
    assert len(cited) > 50  # the check is not vacuous
    assert sorted((name, s) for name, s in cited if s not in sections) == []
