"""Venues: the paper exchange (the embedded default) and OKX v5, behind one interface (base.py)."""

from __future__ import annotations

from collections.abc import Mapping

from ..config import Config
from .base import Venue

__all__ = ["make_venue"]


def make_venue(config: Config, environ: Mapping[str, str]) -> Venue:
    """The venue the config names. OKX keys come from ``environ`` (never from files)."""
    match config.venue.kind:
        case "paper":
            from .paper import PaperVenue

            paper = config.venue.paper
            state = config.run_dir / paper.state_path if paper.state_path else None
            return PaperVenue(paper, list(config.venue.symbols), state_path=state)
        case "okx":
            from .okx import OkxCredentials, OkxVenue

            creds = OkxCredentials.from_env(config.venue.okx, environ)
            return OkxVenue(config.venue.okx, list(config.venue.symbols), creds)
    raise AssertionError(config.venue.kind)  # pragma: no cover - config validation forbids it
