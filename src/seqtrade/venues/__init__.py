"""Venues: the paper exchange (the embedded default) and OKX v5, behind one interface (base.py).

This package is the only place that names a venue kind: :func:`venue_class` is the one ``match`` on
``venue.kind``. Everything else asks the :class:`~seqtrade.venues.base.Venue` interface (secrets,
description, positions, the cancel-all-after default). A new venue is one folder here and one case.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping

from ..config import Config, VenueConfig, VenueKind
from .base import Venue

__all__ = ["venue_class", "venue_from_config", "secret_env_vars"]


def venue_class(kind: VenueKind) -> type[Venue]:
    """The class of the venue ``kind`` (imported on first use: OKX pulls in httpx)."""
    match kind:
        case "paper":
            from .paper import PaperVenue

            return PaperVenue
        case "okx":
            from .okx import OkxVenue

            return OkxVenue
    raise AssertionError(kind)  # pragma: no cover - config validation forbids it


def venue_from_config(config: Config, environ: Mapping[str, str]) -> Venue:
    """The venue the config names, ready to ``run``. Keys come from ``environ`` (never from files)."""
    v = config.venue
    match v.kind:
        case "paper":
            from .paper import PaperVenue

            state = config.run_dir / v.paper.state_path if v.paper.state_path else None
            if v.paper.bench_rate:  # the benchmark's market feed (seqtrade bench)
                from ..bench.feed import BenchPaperVenue

                return BenchPaperVenue(v.paper, list(v.symbols), state_path=state)
            return PaperVenue(v.paper, list(v.symbols), state_path=state, bars=config.candles.bars,
                              keep=config.candles.keep, derivatives=v.derivatives)  # fmt: skip
        case "okx":
            from .okx import OkxCredentials, OkxVenue

            return OkxVenue(
                v.okx,
                list(v.symbols),
                OkxCredentials.from_env(v.okx, environ),
                bars=config.candles.bars,
                derivatives=v.derivatives,
            )
    raise AssertionError(v.kind)  # pragma: no cover - config validation forbids it


def secret_env_vars(config: VenueConfig) -> set[str]:
    """Every environment variable that holds a venue secret in ``config``: the active venue's and those
    of the sections not in use (keys exported for another venue are secrets all the same)."""
    return {name for kind in typing.get_args(VenueKind) for name in venue_class(kind).secret_env_vars(config)}
