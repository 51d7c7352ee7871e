"""The reference for strategy authors (mkdocs.yml, docs/) documents every public name, and builds.

Public here: each name in ``seqtrade.client.__all__``; each public callback, order helper, property,
class attribute and attribute set in ``__init__`` of ``Strategy``; each field of the models a strategy
receives; each member of the enums it compares with. Each must have a docstring of its own or an
entry in its class's ``Attributes:`` section (Google style, as mkdocs.yml tells mkdocstrings), and
must be in the site that ``mkdocs build --strict`` generates from those docstrings. The code blocks
of the tutorial must define strategies that ``seqtrade run`` can load (its last strategy is
examples/tutorial.py, included from the file and run against a server by tests/test_tutorial.py).
"""

from __future__ import annotations

import dataclasses
import enum
import re
import subprocess
import sys
from pathlib import Path

import griffe
import pytest

import seqtrade.client
from seqtrade.client import (
    AccountEvent,
    AccountEventKind,
    Book,
    Candle,
    FeedsStatus,
    FeedStatus,
    FundingRate,
    Instrument,
    InstrumentKind,
    MarkPrice,
    OrderReport,
    OrderStatus,
    Position,
    PriceLimit,
    Strategy,
    Ticker,
    Trade,
    VenueStatus,
    load_strategy,
)
from seqtrade.models import OrderType, Side

ROOT = Path(__file__).resolve().parent.parent
# The models a strategy is handed or reads, and the page of the reference that shows each.
MODELS = {
    Ticker: "market-data",
    Book: "market-data",
    Trade: "market-data",
    VenueStatus: "market-data",
    Candle: "market-data",
    FeedsStatus: "market-data",
    FeedStatus: "market-data",
    OrderReport: "orders",
    Position: "strategy",
    Instrument: "derivatives",
    AccountEvent: "derivatives",
    MarkPrice: "derivatives",
    FundingRate: "derivatives",
    PriceLimit: "derivatives",
}
ENUMS = {
    OrderStatus: "orders",
    Side: "orders",
    OrderType: "orders",
    InstrumentKind: "derivatives",
    AccountEventKind: "derivatives",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documentation site, built as scripts/check builds it: strictly (any warning fails)."""
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def api() -> griffe.Module:
    """The package as mkdocstrings sees it (static analysis: attribute docstrings included)."""
    pkg = griffe.load("seqtrade", search_paths=[str(ROOT / "src")], docstring_parser="google")
    assert isinstance(pkg, griffe.Module)
    return pkg


def doc(obj: griffe.Object | griffe.Alias) -> str:
    return obj.docstring.value.strip() if obj.docstring else ""


def page(site: Path, name: str) -> str:
    return (site / "reference" / name / "index.html").read_text()


def anchors(html: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', html))


def listed_attributes(obj: griffe.Object | griffe.Alias) -> dict[str, str]:
    """name -> description of the entries of the ``Attributes:`` section of ``obj``'s docstring."""
    if obj.docstring is None:
        return {}
    out: dict[str, str] = {}
    for section in obj.docstring.parse("google"):
        if section.kind is griffe.DocstringSectionKind.attributes:
            out.update({a.name: a.description for a in section.value})
    return out


def test_every_name_the_client_exports_has_a_docstring_and_a_reference_entry(site: Path, api: griffe.Module):
    ids = set().union(
        *(anchors(page(site, p)) for p in ("strategy", "market-data", "orders", "running", "derivatives"))
    )
    missing_doc = [n for n in seqtrade.client.__all__ if not doc(api[f"client.{n}"])]
    assert not missing_doc, f"no docstring: {missing_doc}"
    missing_ref = [n for n in seqtrade.client.__all__ if f"seqtrade.client.{n}" not in ids]
    assert not missing_ref, f"not in docs/reference/*.md (add a ::: seqtrade.client.NAME): {missing_ref}"


def test_every_public_member_of_strategy_is_documented_in_the_reference(site: Path, api: griffe.Module):
    cls = api["client.Strategy"]
    listed = listed_attributes(cls)
    public = {n: m for n, m in cls.members.items() if not n.startswith("_")}
    # What griffe sees is what a strategy can use: every public name of a live Strategy is in it.
    runtime = {n for n in dir(Strategy()) if not n.startswith("_")}
    assert runtime <= set(public), f"not seen by the docs generator: {sorted(runtime - set(public))}"
    for name in (
        "on_start",
        "on_ticker",
        "on_order",
        "buy_limit",
        "amend_order",
        "set_timer",
        "params",
        "log",
    ):
        assert name in public  # the check below is not vacuous
    html = page(site, "strategy")
    ids = anchors(html)
    for name, member in public.items():
        if name in listed:
            assert listed[name].strip(), f"Strategy.{name}: empty entry in the Attributes section"
            assert f"<b><code>{name}</code></b>" in html, f"Strategy.{name} is not in the reference"
        else:
            assert doc(member), f"Strategy.{name} has no docstring"
            assert f"seqtrade.client.Strategy.{name}" in ids, f"Strategy.{name} is not in the reference"


@pytest.mark.parametrize("model", list(MODELS), ids=lambda m: m.__name__)
def test_every_field_of_the_models_a_strategy_reads_is_documented(
    site: Path, api: griffe.Module, model: type
):
    obj = api[f"client.{model.__name__}"]
    listed = listed_attributes(obj)
    html = page(site, MODELS[model])
    fields = [f.name for f in dataclasses.fields(model)]
    assert fields
    for name in fields:
        assert listed.get(name, "").strip(), (
            f"{model.__name__}.{name}: not in its docstring's Attributes section"
        )
        assert f"<b><code>{name}</code></b>" in html, f"{model.__name__}.{name} is not in the reference"
    assert not set(listed) - set(fields), f"{model.__name__}: Attributes section names no field"
    for name, member in obj.members.items():  # properties and methods (is_open, apply_fill)
        if not name.startswith("_") and name not in fields:
            assert doc(member), f"{model.__name__}.{name} has no docstring"
            assert f"seqtrade.client.{model.__name__}.{name}" in anchors(html)


@pytest.mark.parametrize("enum_cls", list(ENUMS), ids=lambda m: m.__name__)
def test_every_status_side_and_order_type_is_documented(
    site: Path, api: griffe.Module, enum_cls: type[enum.Enum]
):
    obj = api[f"{enum_cls.__module__.removeprefix('seqtrade.')}.{enum_cls.__name__}"]
    ids = anchors(page(site, ENUMS[enum_cls]))
    assert doc(obj)
    for member in enum_cls:
        assert doc(obj.members[member.name]), f"{enum_cls.__name__}.{member.name}"
        assert any(i.endswith(f".{enum_cls.__name__}.{member.name}") for i in ids), member


def test_the_tutorial_strategies_load_and_its_last_one_is_the_tested_example(site: Path, tmp_path: Path):
    text = (ROOT / "docs" / "tutorial.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text + (ROOT / "docs" / "index.md").read_text(), flags=re.S)
    strategies = [b for b in blocks if "(Strategy):" in b]
    assert len(strategies) >= 3  # first.py and second.py of the tutorial, the home page's example
    for i, code in enumerate(strategies):
        path = tmp_path / f"step{i}.py"
        path.write_text(code)
        cls = load_strategy(str(path))
        assert issubclass(cls, Strategy) and cls is not Strategy
    # the whole strategy is examples/tutorial.py itself, included when the site is built
    assert '--8<-- "examples/tutorial.py"' in text
    html = (site / "tutorial" / "index.html").read_text()
    assert '<span class="nc">Quoter</span>' in html
    assert "keep_orders" in html
