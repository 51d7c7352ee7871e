"""Small pure helpers for ids that must never repeat."""

from __future__ import annotations

import string

__all__ = ["base36"]

_B36 = string.digits + string.ascii_lowercase


def base36(n: int) -> str:
    """``n`` (>= 0) in base 36, lower case: short, alphanumeric, sortable by length then value."""
    out = []
    while True:
        n, r = divmod(n, 36)
        out.append(_B36[r])
        if not n:
            return "".join(reversed(out))
