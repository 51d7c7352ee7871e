"""OKX v5 venue: market data and order entry (see :mod:`.adapter` for how the parts fit).

``OkxVenue`` is loaded on first use, so that importing the pure submodules (``parse``,
``messages``, ``errors``, ``tracking``, ``auth``, ``account``) does not pull in trio, httpx or
trio_websocket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .auth import OkxCredentials

if TYPE_CHECKING:
    from .adapter import OkxVenue

__all__ = ["OkxVenue", "OkxCredentials"]


def __getattr__(name: str) -> Any:
    if name == "OkxVenue":
        from .adapter import OkxVenue

        return OkxVenue
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
