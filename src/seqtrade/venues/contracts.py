"""Swap contracts for a backtest's funding, without a venue running: the terms the paper venue gives
each swap of the config (``[venue.paper.contracts]`` overrides them; the defaults are OKX's contract
values: 0.01 BTC and 0.1 ETH a linear contract, 100 USD a BTC inverse one, 10 USD others)."""

from __future__ import annotations

from ..config import VenueConfig
from ..fill_model import Contract
from ..instruments import InstrumentKind, kind_of
from .paper import paper_instrument

__all__ = ["swap_contracts"]


def swap_contracts(config: VenueConfig) -> dict[str, Contract]:
    """Each swap among ``config.symbols``: its contract value, linear or inverse, settlement currency."""
    out = {}
    for sym in config.symbols:
        if kind_of(sym) is InstrumentKind.SWAP:
            _inst, spec = paper_instrument(sym, config.paper, config.derivatives)
            if spec is not None:
                out[sym] = Contract(spec.contract_value, spec.inverse, spec.settle_currency)
    return out
