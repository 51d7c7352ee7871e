"""OKX v5 venue: market data and order entry (see :mod:`.adapter` for how the parts fit)."""

from __future__ import annotations

from .adapter import OkxVenue
from .auth import OkxCredentials

__all__ = ["OkxVenue", "OkxCredentials"]
