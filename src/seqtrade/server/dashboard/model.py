"""The dashboard's rules, pure: what the page shows, computed from plain data (no I/O, no clock).

- :func:`rule_of`: the risk rule that refused an order, from its ``error_msg`` (risk rejections by rule);
- :class:`Histogram`: fixed, logarithmic millisecond buckets for order latency and tick delay;
- :class:`Series`: a bounded time series that halves its resolution instead of growing (equity curves,
  prices, the reconciliation difference);
- :func:`reconciliation`: the venue's positions against the strategies' sum, and what is external;
- :class:`Query` / :func:`parse_query`: the journal pages' filters (strategy, symbol, time) and paging;
- :func:`token_ok`, :func:`bind_refusal`: who may look.

The panels of the live state are a registry (:data:`PANELS` in :mod:`.collector`): a new one (margin
and liquidation prices, account events, feed and book health) is a function that returns JSON-able
data under a new name, and the page shows a panel it has no renderer for as a table.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...config import Config
from ...errors import ConfigError

__all__ = [
    "RULES",
    "Histogram",
    "Query",
    "QueryError",
    "Series",
    "backtest_doc",
    "bind_refusal",
    "dashboard_token",
    "is_loopback",
    "parse_query",
    "reconciliation",
    "rule_of",
    "token_ok",
]

# The risk gate's rules, as its refusals name them first (docs/risk.md), and the trading states.
RULES = (
    "max_order_quantity",
    "max_order_notional",
    "price_band_bps",
    "max_position",
    "max_account_position",
    "max_open_orders",
    "max_orders_per_window",
    "max_cancels_per_window",
)
_RULE_RE = re.compile(r"(?:risk: )?([a-z_]+) \(")


def rule_of(error_msg: str) -> str:
    """The rule a rejection names: one of :data:`RULES`, ``halted`` or ``reducing`` (a trading state),
    ``venue`` (the venue refused it) or ``other`` (validation: symbol, size, duplicate id...)."""
    if error_msg.startswith("trading is halted"):
        return "halted"
    if error_msg.startswith("trading is reducing"):
        return "reducing"
    m = _RULE_RE.match(error_msg)
    if m is not None and m.group(1) in RULES:
        return m.group(1)
    if "(code " in error_msg or "by the venue" in error_msg:
        return "venue"
    return "other"


# Bucket upper bounds in milliseconds: 0.25 ms to 10 s, then +Inf (the last bucket).
BOUNDS_MS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)


@dataclass(slots=True)
class Histogram:
    """Counts per bucket of :data:`BOUNDS_MS` (the last bucket: above 10 s), a sum and a count."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_MS) + 1))
    total: float = 0.0
    n: int = 0

    def add(self, value_ms: float) -> None:
        if not math.isfinite(value_ms):
            return
        value_ms = max(value_ms, 0.0)
        i = 0
        while i < len(BOUNDS_MS) and value_ms > BOUNDS_MS[i]:
            i += 1
        self.counts[i] += 1
        self.total += value_ms
        self.n += 1

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile (None when empty; inf above 10 s)."""
        if not self.n:
            return None
        rank = q * self.n
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank and c:
                return BOUNDS_MS[i] if i < len(BOUNDS_MS) else math.inf
        return math.inf

    def to_json(self) -> dict[str, Any]:
        p50, p99 = self.quantile(0.5), self.quantile(0.99)
        return {
            "bounds_ms": list(BOUNDS_MS),
            "counts": list(self.counts),
            "count": self.n,
            "mean_ms": self.total / self.n if self.n else None,
            "p50_ms": None if p50 is None or math.isinf(p50) else p50,
            "p99_ms": None if p99 is None or math.isinf(p99) else p99,
        }

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (le in seconds, cumulative count), ending with +Inf."""
        out = []
        acc = 0
        for bound, c in zip((*BOUNDS_MS, math.inf), self.counts, strict=True):
            acc += c
            out.append(("+Inf" if math.isinf(bound) else f"{bound / 1000:g}", acc))
        return out


@dataclass(slots=True)
class Series:
    """A bounded time series: at ``limit`` points it keeps every other one (older points thin out,
    the newest are kept), so a weeks-long curve costs a fixed amount of memory.

    It also keeps the points added since the last :meth:`take_new` (at most ``limit``): what a page
    that holds the series already needs to append, instead of the whole series again.
    """

    limit: int = 2000
    t: list[float] = field(default_factory=list)  # seconds since the epoch
    v: list[float] = field(default_factory=list)
    marks: list[int] = field(default_factory=list)  # per point: +1 a buy fill, -1 a sell, 0 none
    new: list[tuple[float, float, int]] = field(default_factory=list)  # added since take_new
    overflow: bool = False  # more were added than ``new`` keeps: take_new says so (None)

    def add(self, t: float, value: float, mark: int = 0) -> None:
        if self.t and t < self.t[-1]:
            t = self.t[-1]  # a clock step back never makes the curve go backwards in time
        self.t.append(t)
        self.v.append(value)
        self.marks.append(mark)
        if len(self.new) < self.limit:
            self.new.append((t, value, mark))
        else:
            self.overflow = True
        if len(self.t) > self.limit:
            keep = [i for i in range(len(self.t)) if i % 2 == 0 or self.marks[i] or i == len(self.t) - 1]
            if len(keep) > self.limit:  # fills everywhere: thin them too
                keep = [i for i in range(len(self.t)) if i % 2 == 0 or i == len(self.t) - 1]
            self.t = [self.t[i] for i in keep]
            self.v = [self.v[i] for i in keep]
            self.marks = [self.marks[i] for i in keep]

    def to_json(self) -> dict[str, list[float] | list[int]]:
        return {"t": list(self.t), "v": list(self.v), "marks": list(self.marks)}

    def take_new(self) -> dict[str, list[float] | list[int]] | None:
        """The points added since the last call, and forget them; None if some were not kept (the
        reader must take the whole series again)."""
        new, lost = self.new, self.overflow
        self.new, self.overflow = [], False
        if lost:
            return None
        return {"t": [p[0] for p in new], "v": [p[1] for p in new], "marks": [p[2] for p in new]}


def reconciliation(
    venue: Mapping[str, float] | None, strategies: Mapping[str, float], tolerance: float = 1e-9
) -> list[dict[str, Any]]:
    """Per symbol: the venue's position, the strategies' sum, and the difference (held outside the
    strategies: a starting balance, another program, a mistake). ``venue`` None: the venue cannot
    tell its positions (the rows then hold the strategies' side only)."""
    rows = []
    for sym in sorted(set(strategies) | set(venue or {})):
        ours = strategies.get(sym, 0.0)
        theirs = None if venue is None else venue.get(sym, 0.0)
        diff = None if theirs is None else theirs - ours
        rows.append({"symbol": sym, "venue": theirs, "strategies": ours, "external": diff,
                     "differs": diff is not None and abs(diff) > tolerance})  # fmt: skip
    return rows


class QueryError(ValueError):
    """A filter or page parameter that cannot be read (the answer is a 400 naming it)."""


@dataclass(frozen=True, slots=True)
class Query:
    """A journal page: orders or fills, newest first."""

    strategy: str | None = None
    symbol: str | None = None
    since_ms: int | None = None  # inclusive, ms since the epoch
    until_ms: int | None = None  # exclusive
    page: int = 1
    per_page: int = 50

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


MAX_PER_PAGE = 500
_NAME_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,64}\Z")


def _int(params: Mapping[str, str], key: str, lo: int, hi: int) -> int | None:
    raw = params.get(key, "")
    if raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{key}: {raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise QueryError(f"{key}: must be between {lo} and {hi}")
    return value


def _name(params: Mapping[str, str], key: str) -> str | None:
    raw = params.get(key, "")
    if raw == "":
        return None
    if not _NAME_RE.match(raw):
        raise QueryError(f"{key}: {raw!r} is not a valid name")
    return raw


def parse_query(params: Mapping[str, str]) -> Query:
    """``strategy``, ``symbol``, ``since`` and ``until`` (ms since the epoch), ``page`` (1, 2, ...),
    ``per_page`` (at most 500). Raises :class:`QueryError` naming the bad parameter."""
    since = _int(params, "since", 0, 2**53)
    until = _int(params, "until", 0, 2**53)
    if since is not None and until is not None and until <= since:
        raise QueryError("until: must be after since")
    return Query(
        strategy=_name(params, "strategy"),
        symbol=_name(params, "symbol"),
        since_ms=since,
        until_ms=until,
        page=_int(params, "page", 1, 1_000_000) or 1,
        per_page=_int(params, "per_page", 1, MAX_PER_PAGE) or 50,
    )


def token_ok(given: str | None, expected: str) -> bool:
    """Constant-time comparison; an empty expected token lets everyone in (loopback only)."""
    if not expected:
        return True
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, token: str, token_env: str) -> str | None:
    """Why the dashboard must not start: a non-loopback bind without a token (None: it may)."""
    if is_loopback(host) or token:
        return None
    return (
        f"dashboard.host: {host!r} is not a loopback address and {token_env} is not set: the dashboard"
        f" shows every position and order, so any other address needs a token (export {token_env}=<a long"
        " random string>, then open http://<host>:<port>/?token=<it>), or bind 127.0.0.1"
    )


def dashboard_token(config: Config, environ: Mapping[str, str]) -> str:
    """The token from the environment ('' if unset); raises :class:`ConfigError` for a bind that
    needs one and has none (checked before the server binds anything)."""
    d = config.dashboard
    token = environ.get(d.token_env, "").strip()
    why = bind_refusal(d.host, token, d.token_env)
    if why is not None:
        raise ConfigError(why)
    return token


def backtest_doc(done: int, total: int, finished: bool, results_json: str) -> dict[str, Any]:
    """``/api/backtest``: the run's progress (``done`` of ``total`` recorded rows, ``total`` 0 before they
    are counted; ``pct`` 100 once it finished) and its results, ``results_json`` being what the backtest writes to results.json
    (:func:`seqtrade.backtest_results.to_json`): the results so far while it runs, the final ones after."""
    total = max(total, done) if total else 0  # 0 while the rows are not counted yet
    pct = 100.0 if finished else round(100.0 * done / total, 1) if total else 0.0
    return {"state": "finished" if finished else "running", "done": done, "total": total, "pct": pct,
            "results": json.loads(results_json)}  # fmt: skip
