"""What the server asks of every venue (venues/base.py): secrets, description, positions, balances and
the cancel-all-after default, asked of the paper venue and of OKX (against the fake OKX exchange)."""

from __future__ import annotations

import dataclasses

import pytest
import trio

from seqtrade.cli import describe
from seqtrade.config import parse_config
from seqtrade.errors import ConfigError
from seqtrade.models import OrderType, Side
from seqtrade.venues import secret_env_vars, venue_class
from seqtrade.venues.base import VenueOrder
from seqtrade.venues.okx import OkxVenue
from seqtrade.venues.okx.account import balances_from_okx
from seqtrade.venues.paper import PaperVenue

from .test_okx_venue import CREDS, SYMBOLS, config, needs_fake, open_fake_okx
from .test_okx_venue import Collector as OkxCollector
from .test_paper_venue import QUIET, SYM, running

OKX_CFG = (
    "[venue]\nkind = 'okx'\n[venue.okx]\napi_key_env = 'K1'\nsecret_key_env = 'S1'\npassphrase_env = 'P1'\n"
)


def test_venue_class_is_the_one_match_on_the_kind() -> None:
    assert venue_class("paper") is PaperVenue and venue_class("okx") is OkxVenue
    assert PaperVenue.default_cancel_all_after == 0.0 and OkxVenue.default_cancel_all_after == 60.0


def test_secret_names_come_from_every_venue_section() -> None:
    okx = parse_config(OKX_CFG)
    assert OkxVenue.secret_env_vars(okx.venue) == ("K1", "S1", "P1")
    assert PaperVenue.secret_env_vars(okx.venue) == ()
    # on the paper venue the OKX section's names are secrets all the same (keys exported for later)
    paper = dataclasses.replace(okx, venue=dataclasses.replace(okx.venue, kind="paper"))
    assert secret_env_vars(paper.venue) == secret_env_vars(okx.venue) == {"K1", "S1", "P1"}


def test_describe_comes_from_the_venue() -> None:
    okx = describe(parse_config(OKX_CFG + "demo = false\n")).splitlines()
    assert okx[0] == "venue: okx (LIVE trading)"
    assert okx[1].startswith("okx: rest https://www.okx.com, orders over ws, keys from $K1, $S1, $P1")
    assert describe(parse_config("")).splitlines()[0] == "venue: paper"


def test_the_deprecated_okx_cancel_all_after_is_read_as_the_servers() -> None:
    cfg = parse_config("[venue]\nkind = 'okx'\n[venue.okx]\ncancel_all_after = 30\n")
    assert cfg.server.cancel_all_after == 30.0 and cfg.venue.okx.cancel_all_after == 0.0
    assert cfg.deprecations and "read as server.cancel_all_after = 30" in cfg.deprecations[0]
    with pytest.raises(ConfigError, match="set only one"):
        parse_config(
            "[server]\ncancel_all_after = 20\n[venue]\nkind = 'okx'\n[venue.okx]\ncancel_all_after = 30\n"
        )
    paper = parse_config("[venue.okx]\ncancel_all_after = 30\n")  # as before: only OKX ever read it
    assert paper.server.cancel_all_after is None and "ignored" in paper.deprecations[0]
    assert parse_config("[venue]\nkind = 'okx'\n").deprecations == ()


async def test_paper_positions_and_balances() -> None:
    with trio.fail_after(10):
        async with running(QUIET) as (venue, _sink):
            assert await venue.positions() == {SYM: 0.0} and await venue.balances() == QUIET.balances
            await venue.set_market(SYM, 99.0, 101.0)
            await venue.place_order(VenueOrder("m1", SYM, Side.BUY, OrderType.MARKET, None, 1.0))
            assert await venue.positions() == {SYM: 1.0}
            balances = await venue.balances()
            assert (
                balances is not None and balances["USDT"] < QUIET.balances["USDT"] - 101.0
            )  # paid 101 and the fee


def test_okx_balances_from_a_recorded_detail() -> None:
    data = [{"details": [{"ccy": "USDT", "eq": "99.89", "cashBal": "94.42", "availBal": "94.42"},
                         {"ccy": "BTC", "eq": "0.5", "cashBal": ""}, {"ccy": "", "cashBal": "1"},
                         {"ccy": "ETH", "cashBal": "x", "eq": ""}, "junk"]}]  # fmt: skip
    assert balances_from_okx(data) == {"USDT": 94.42, "BTC": 0.5}
    assert balances_from_okx([]) == {}


@needs_fake
async def test_okx_balances_and_no_positions_against_the_fake() -> None:
    assert open_fake_okx is not None
    with trio.fail_after(10):
        async with open_fake_okx() as fake:
            venue = OkxVenue(config(fake), SYMBOLS, CREDS)
            async with trio.open_nursery() as nursery:
                await nursery.start(venue.run, OkxCollector())
                assert await venue.balances() == {"USDT": 100_000.0, "BTC": 1.0, "ETH": 10.0}
                assert await venue.positions() is None  # spot: reconciliation is skipped, as before
                nursery.cancel_scope.cancel()
            assert any(r.path == "/api/v5/account/balance" for r in fake.requests)


def test_check_warns_about_a_deprecated_key(tmp_path, capsys) -> None:
    from seqtrade.cli import main

    path = tmp_path / "config.toml"
    path.write_text("[venue]\nkind = 'okx'\n[venue.okx]\ncancel_all_after = 30\n")
    assert main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: venue.okx.cancel_all_after is deprecated" in out
    assert out.splitlines()[0] == "venue: okx (demo trading)"
