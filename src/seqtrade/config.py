"""TOML configuration loaded into frozen, typed objects.

Pure: parses text that the CLI read. Every section is a frozen dataclass; the loader walks the
dataclass fields, so an unknown key, a wrong type or a missing required key is a
:class:`~seqtrade.errors.ConfigError` that names the key (``venue.paper.seed: expected an integer``).
Secrets never live here: a venue's keys come from the environment variables its section names.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .candles import BARS
from .errors import ConfigError

__all__ = [
    "Config",
    "ServerConfig",
    "BusConfig",
    "VenueConfig",
    "VenueKind",
    "PaperConfig",
    "PaperContract",
    "OkxConfig",
    "DerivativesConfig",
    "InstrumentSetup",
    "JournalConfig",
    "OrdersConfig",
    "RiskLimits",
    "RiskConfig",
    "StrategyConfig",
    "SupervisorConfig",
    "SecurityConfig",
    "ClientKeyConfig",
    "MetricsConfig",
    "DashboardConfig",
    "CandlesConfig",
    "FeedsConfig",
    "RecorderConfig",
    "BacktestConfig",
    "backtest_settings",
    "load_config",
    "parse_config",
    "STRATEGY_ID_RE",
    "DEFAULT_PAPER_BALANCES",
    "missing_limits",
]

STRATEGY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")


@dataclass(frozen=True)
class ServerConfig:
    run_dir: str = "run"  # relative paths are relative to the config file
    status_interval: float = 5.0  # seconds between status lines; 0 turns them off
    log_level: str = "INFO"
    log_json: bool = False
    heartbeat_timeout: float = 5.0  # a strategy silent this long is taken for dead
    dead_strategy_policy: Literal["cancel", "leave"] = "cancel"
    shutdown_policy: Literal["cancel", "leave"] = "leave"
    allow_unknown_strategies: bool = True
    log_fills: bool = True  # one INFO line per fill in the server log
    closed_orders_in_memory: int = 5_000  # older closed orders are looked up in the journal
    key_filter_bytes: int = 4 << 20  # the filter of every order key (docs/operations.md, "Memory")
    bad_frame_rate: float = 20.0  # bad frames per second a strategy may send (answered) ...
    bad_frame_burst: float = 200.0  # ... after a burst of this many; beyond: dropped, logged once per 10 s
    snapshot_interval: float = 5.0  # seconds between account snapshots (0 = only at a clean stop) ...
    snapshot_reports: int = 20_000  # ... or sooner, after this many reports (checked once a second)
    # The venue's dead-man's switch, refreshed by the server every third of it (seconds; 0 = off).
    # Unset: the venue's default (Venue.default_cancel_all_after: 60 s on OKX, off on paper). The server
    # is its one owner; the old venue.okx.cancel_all_after is read as this key (docs/operations.md).
    cancel_all_after: float | None = None


@dataclass(frozen=True)
class BusConfig:
    md_endpoint: str = ""  # "" = ipc://<run_dir>/md.ipc
    order_endpoint: str = ""  # "" = ipc://<run_dir>/order.ipc
    report_endpoint: str = ""  # "" = ipc://<run_dir>/report.ipc
    md_sndhwm: int = 100_000
    report_sndhwm: int = 100_000
    order_rcvhwm: int = 1_000  # frames queued per connection: worst case x max_frame_bytes (64 MiB)
    linger_ms: int = 0
    max_frame_bytes: int = 65_536
    md_queue: int = 100_000  # venue -> feed task queue; market data beyond it is dropped and counted
    event_queue: int = 100_000  # venue -> report task queue; never dropped, the venue waits
    spin_us: int = 0  # busy-poll the order socket this long before sleeping (0 = off)


# The paper account's starting balances when [venue.paper] sets none (docs/risk.md "The paper account").
DEFAULT_PAPER_BALANCES: dict[str, float] = {"USDT": 100_000.0, "BTC": 1.0, "ETH": 10.0}


@dataclass(frozen=True)
class PaperContract:
    """``[venue.paper.contracts."<symbol>"]``: the facts of one paper swap (0 = the default)."""

    contract_value: float = 0.0  # base coins (linear) or USD (inverse) per contract
    lot_size: float = 0.0  # contracts
    min_size: float = 0.0  # contracts
    max_leverage: float = 100.0


@dataclass(frozen=True)
class PaperConfig:
    seed: int = 42
    tick_interval: float = 0.25  # seconds (of the venue's clock) between market updates of each symbol
    # The venue's clock runs this many times faster than the wall clock (1: wall time): 60 records an
    # hour of market in a minute. The server's stamps (ts, gw_ns, reports, the recorder) follow it;
    # its timers (heartbeats, dead-man's switches) do not (docs/backtesting.md, "A fast recording").
    time_scale: float = 1.0
    trade_probability: float = 0.5  # chance of a public trade per market update
    volatility: float = 0.0004  # relative std-dev of one random-walk step
    spread_ticks: int = 2
    tick_size: float = 0.1
    lot_size: float = 0.0001
    min_size: float = 0.0001
    level_size: float = 1.0  # typical size at each of the 5 book levels
    # The full-depth book (docs/books.md): levels a side, the walk's five on top, deeper ones larger; 0: none
    depth_levels: int = 200
    maker_fee: float = 0.0008  # fraction of notional
    taker_fee: float = 0.001
    start_prices: dict[str, float] = field(default_factory=dict)  # default 100.0 (BTC: 60000)
    # Not 0: the benchmark's market feed replaces the random walk (seqtrade.bench.feed): only tickers,
    # this many per second in total (bench mode); <0: as fast as possible.
    bench_rate: float = 0.0
    # bench mode at a set rate: "batch" wakes every millisecond and emits what is due (cheap; ticks
    # leave in bursts); "spin" busy-waits to each tick's own time (a core, like a paced publisher)
    bench_pacing: Literal["batch", "spin"] = "batch"
    # The paper account (orders, fills, positions) on disk, relative to run_dir, so that it survives a
    # server restart or kill -9 as a real exchange's would. "" keeps it in memory (lost on restart).
    state_path: str = "paper.sqlite"
    # Starting balances per currency of a new paper account (a persisted account keeps its own; `seqtrade
    # reset` starts over). A buy needs the quote currency, a sell the base coins. Replaces the default
    # as a whole: a currency not named starts at 0.
    balances: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PAPER_BALANCES))
    # Swaps (``BTC-USDT-SWAP`` linear, ``BTC-USD-SWAP`` inverse) on margin, net mode only (docs/risk.md
    # "Swaps on the paper account"). Margin mode and leverage per swap: [venue.derivatives.instruments];
    # a swap with leverage 0 there (or none) trades at ``leverage``.
    leverage: float = 10.0
    maintenance_margin_rate: float = 0.004  # of the position value at mark: below it, liquidation
    liquidation_fee_rate: float = 0.0005  # of the position value, charged on a liquidation
    liquidation_warning_ratio: float = 3.0  # a margin ratio (equity / maintenance) below it: warned once
    funding_interval: float = 28_800.0  # seconds between funding settlements (OKX: 8 h)
    funding_rate: float = 0.0001  # the rate settled each time (> 0: longs pay shorts) ...
    funding_rate_jitter: float = 0.0  # ... plus a seeded random part in [-jitter, jitter]
    price_limit_band: float = 0.05  # a swap's limit price within this fraction of its mark (0: no limit)
    # Contract facts per swap; defaults: BTC-USDT-SWAP 0.01 BTC, ETH-USDT-SWAP 0.1 ETH (lot 0.01),
    # BTC-USD-SWAP 100 USD, other inverse 10 USD (lot 1), other linear 1 coin (lot 0.01).
    contracts: dict[str, PaperContract] = field(default_factory=dict)


@dataclass(frozen=True)
class OkxConfig:
    demo: bool = True
    rest_url: str = "https://www.okx.com"
    ws_public_url: str = ""  # "" = the live or demo default
    ws_private_url: str = ""
    ws_business_url: str = ""  # candles ([candles] bars); "" = the live or demo default
    inst_type: str = "SPOT"
    td_mode: str = "cash"
    order_transport: Literal["ws", "rest"] = "ws"
    exp_time_ms: int = 5_000  # an order not at the exchange after this long is dropped there
    request_timeout: float = 5.0
    ping_interval: float = 20.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    # Deprecated: read as server.cancel_all_after (the server owns the switch); 0 = unset, else 10..120.
    cancel_all_after: float = 0.0
    # Full-depth books (docs/books.md): subscribe ``books`` (400 levels, verified) besides ``books5``;
    # a book with no push (heartbeats included: OKX sends one a minute on a quiet book) for
    # ``book_stale_after`` s is stale; a valid one is re-sent whole every ``book_snapshot_interval`` s.
    books: bool = True
    book_stale_after: float = 70.0
    book_snapshot_interval: float = 1.0
    # environment variable names: the keys themselves never appear in a file
    api_key_env: str = "OKX_API_KEY"
    secret_key_env: str = "OKX_SECRET_KEY"
    passphrase_env: str = "OKX_PASSPHRASE"


VenueKind = Literal["paper", "okx"]  # one case each in venues.venue_class


@dataclass(frozen=True)
class InstrumentSetup:
    """``[venue.derivatives.instruments."<symbol>"]``: how the account trades one swap or future."""

    margin_mode: Literal["cross", "isolated"] = "cross"
    leverage: float = 0.0  # set through the venue's API at start; 0 = leave the account's setting


@dataclass(frozen=True)
class DerivativesConfig:
    """``[venue.derivatives]``: the account set-up for swaps and futures (docs/derivatives.md)."""

    # The account's position mode, checked at start: the server refuses to start when the venue's
    # account is in the other mode (it never switches it: that needs a flat account).
    position_mode: Literal["net", "long_short"] = "net"
    # A reconciliation mismatch on an instrument: "log" it, or also move the strategies holding a
    # position in it to `reducing` (they may only reduce) until the operator resumes them.
    on_mismatch: Literal["log", "reducing"] = "log"
    # A liquidation warning: "log" it and tell the owning strategies (always), or also move them to
    # `reducing`.
    on_liquidation_warning: Literal["log", "reducing"] = "log"
    instruments: dict[str, InstrumentSetup] = field(default_factory=dict)

    def setup(self, symbol: str) -> InstrumentSetup:
        """The set-up of ``symbol`` (the defaults when it has no table)."""
        return self.instruments.get(symbol) or InstrumentSetup()


@dataclass(frozen=True)
class VenueConfig:
    kind: VenueKind = "paper"
    # Every instrument the server trades, of any kind: the kind follows from the symbol
    # (``BTC-USDT`` spot, ``BTC-USDT-SWAP`` swap, ``BTC-USD-261225`` futures).
    symbols: list[str] = field(default_factory=lambda: ["BTC-USDT"])
    paper: PaperConfig = field(default_factory=PaperConfig)
    okx: OkxConfig = field(default_factory=OkxConfig)
    derivatives: DerivativesConfig = field(default_factory=DerivativesConfig)


@dataclass(frozen=True)
class JournalConfig:
    path: str = "journal.sqlite"  # relative to run_dir
    synchronous: Literal["full", "normal", "off"] = "normal"
    snapshot_path: str = "snapshot.sqlite"  # relative to run_dir (docs/operations.md, "Restarts")
    archive_path: str = "archive.sqlite"  # relative to run_dir: closed orders moved out of the journal
    archive_after_days: float = 0.0  # closed orders older than this move to the archive (0 = never)


@dataclass(frozen=True)
class OrdersConfig:
    max_age_ms: int = 5_000  # an order request older than this when read is rejected as stale
    max_future_ms: int = 60_000  # ... and one this far in the future too (bad clock)


@dataclass(frozen=True)
class RiskLimits:
    """One layer of pre-trade limits (docs/risk.md). 0 = no limit at this layer.

    Layers do not override each other: an order must pass every layer that applies to it
    (``[risk]`` itself, ``[risk.strategies.<id>]``, ``[risk.symbols.<symbol>]``).
    """

    max_order_quantity: float = 0.0  # base units, the order's total quantity
    max_order_notional: float = 0.0  # quote units: price x quantity (a market order at the mid)
    max_position: float = 0.0  # |a strategy's position + its open orders on the order's side|, base units
    max_account_position: float = 0.0  # the same over all strategies (not in [risk.strategies.*])
    price_band_bps: float = 0.0  # a limit price at most this far from the mid (100 bps = 1 %)
    max_open_orders: int = 0  # per strategy (per strategy and symbol in [risk.symbols.*])
    max_orders_per_window: int = 0  # new orders and amends per strategy per rate_window
    max_cancels_per_window: int = 0  # cancel requests per strategy per rate_window (cancel_all is exempt)


@dataclass(frozen=True)
class RiskConfig(RiskLimits):
    rate_window: float = 1.0  # seconds
    reconcile_interval: float = 60.0  # seconds between account-vs-venue position checks; 0 = off
    reconcile_tolerance: float = 1e-9  # base units
    strategies: dict[str, RiskLimits] = field(default_factory=dict)
    symbols: dict[str, RiskLimits] = field(default_factory=dict)


@dataclass(frozen=True)
class StrategyConfig:
    id: str
    path: str = ""  # a .py file (relative to the config file) ...
    module: str = ""  # ... or an importable module
    params: dict[str, Any] = field(default_factory=dict)
    restart: Literal["always", "on-failure", "never"] = "on-failure"
    enabled: bool = True


@dataclass(frozen=True)
class SupervisorConfig:
    """How the server runs the ``[[strategies]]`` it starts itself (docs/operations.md)."""

    backoff_min: float = 1.0  # seconds before a restart; doubles with every exit inside crash_loop_window
    backoff_max: float = 60.0
    crash_loop_count: int = 5  # this many exits within crash_loop_window: a crash loop, no more restarts
    crash_loop_window: float = 120.0  # seconds
    stop_grace: float = 5.0  # on shutdown: SIGTERM to the process group, SIGKILL after this long
    log_dir: str = "logs"  # per-strategy log files <log_dir>/<id>.log, relative to run_dir


@dataclass(frozen=True)
class ClientKeyConfig:
    """One allowed CurveZMQ client key and the strategy ids it may trade as."""

    name: str
    public_key: str = ""  # Z85, 40 characters ...
    public_key_file: str = ""  # ... or a file written by `seqtrade keygen` (relative to the config file)
    strategies: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SecurityConfig:
    """CurveZMQ for tcp:// endpoints. Secret keys never live here: only the names of env variables."""

    zap_domain: str = "seqtrade"
    server_public_key: str = ""  # Z85; clients need it to connect ...
    server_public_key_file: str = ""  # ... or a file written by `seqtrade keygen`
    server_secret_key_env: str = "SEQTRADE_SERVER_SECRET_KEY"  # or <name>_FILE: a 0600 file holding it
    client_secret_key_env: str = "SEQTRADE_CLIENT_SECRET_KEY"  # on a strategy host (same _FILE rule)
    clients: list[ClientKeyConfig] = field(default_factory=list)


@dataclass(frozen=True)
class MetricsConfig:
    """An opt-in Prometheus text endpoint, loopback only (it has no authentication)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9464


@dataclass(frozen=True)
class DashboardConfig:
    """The read-only web dashboard (docs/dashboard.md). Off unless enabled; a bind to anything but a
    loopback address needs a token, read from the variable ``token_env`` names (never from a file)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8321  # 0: any free port (tests)
    token_env: str = "SEQTRADE_DASHBOARD_TOKEN"  # when set and non-empty, every request must carry it
    interval: float = 0.25  # seconds between two samples of the server's state (and live updates)
    reconcile_interval: float = 10.0  # seconds between two reads of the venue's positions (0: never)


@dataclass(frozen=True)
class CandlesConfig:
    """Candles the server serves (docs/candles.md): these bars of every symbol, live and as history."""

    bars: list[str] = field(default_factory=list)  # e.g. ["1m", "5m"]; [] serves no candles
    keep: int = 1440  # paper venue: closed bars kept in memory per symbol and bar (its history)


@dataclass(frozen=True)
class FeedsConfig:
    """Feed health (docs/candles.md): a feed silent this long is stale (logged once, and once more
    when it recovers; shown in status, metrics and the ``feed_status`` bus message)."""

    stale_after: float = 10.0


@dataclass(frozen=True)
class RecorderConfig:
    """The market recorder (docs/backtesting.md): every market-data message the server publishes and
    every order's send and acknowledgement times, in Parquet files by type, day and symbol."""

    enabled: bool = False
    dir: str = "recordings"  # relative to run_dir
    queue: int = 200_000  # messages waiting to be written; beyond it recording drops (counted, logged)
    flush_interval: float = 1.0  # seconds between batches handed to the writer thread
    roll_seconds: float = 300.0  # a file is closed (and readable) after this long; a crash loses at most this
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"


@dataclass(frozen=True)
class BacktestConfig:
    """``[backtest]``: the choices of ``seqtrade backtest`` (docs/backtesting.md, "Backtesting"), each
    with the command-line flag that overrides it (a flag given wins; one left out does not). Every
    other command checks the section and does not use it, as ``serve`` does ``[venue.okx]`` on paper."""

    fill_model: Literal["queue", "touch"] = "queue"  # behind the recorded size, or first at its level
    latency: Literal["constant", "lognormal", "recorded"] = "constant"  # of orders, cancels and amends
    latency_ms: float = 1.0  # the constant latency, or the log-normal's median
    latency_sigma: float = 0.5  # the log-normal's sigma (of the log)
    latency_seed: int = 0  # the seed of the draws (lognormal, recorded)
    lookahead_ms: float = 1.0  # the simulation's window: at most a constant latency
    maker_fee: float = 0.0008  # fractions of the notional (the paper exchange's)
    taker_fee: float = 0.001
    sharpe_period: float = 60.0  # seconds: the equity's sampling period for the Sharpe ratio
    plot: bool = True  # write equity.png (needs matplotlib)
    out: str = ""  # results.json and equity.png: relative to the config file; "" = ./backtest-results
    # A new choice (e.g. the replay pipeline's depth) is a key here, its rule in _check_backtest, its flag
    # in seqtrade.cli's BACKTEST_FLAGS and _BACKTEST_FLAG_ARGS, a row in docs/backtesting.md's table and
    # a line in the shipped backtest.toml (tests/test_backtest_config.py checks each of these).


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    venue: VenueConfig = field(default_factory=VenueConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    strategies: list[StrategyConfig] = field(default_factory=list)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    candles: CandlesConfig = field(default_factory=CandlesConfig)
    feeds: FeedsConfig = field(default_factory=FeedsConfig)
    recorder: RecorderConfig = field(default_factory=RecorderConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    base_dir: str = "."  # the config file's directory; set by the loader, not a TOML key
    source_path: str = ""  # the file it was loaded from (load_config sets it); not a TOML key
    deprecations: tuple[str, ...] = ()  # deprecated keys found and how they were read; not a TOML key
    sections: tuple[str, ...] = ()  # the top-level tables the file has (load_config sets it); not a TOML key

    @property
    def run_dir(self) -> Path:
        return Path(self.base_dir, os.path.expanduser(self.server.run_dir)).resolve()

    def endpoint(self, channel: Literal["md", "order", "report"]) -> str:
        given = getattr(self.bus, f"{channel}_endpoint")
        return given or f"ipc://{self.run_dir / (channel + '.ipc')}"

    @property
    def journal_path(self) -> Path:
        return Path(self.run_dir, self.journal.path)

    @property
    def snapshot_path(self) -> Path:
        return Path(self.run_dir, self.journal.snapshot_path)

    @property
    def archive_path(self) -> Path:
        return Path(self.run_dir, self.journal.archive_path)

    @property
    def recorder_path(self) -> Path:
        return Path(self.run_dir, os.path.expanduser(self.recorder.dir))


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror or exc}") from exc
    cfg = parse_config(text, base_dir=str(p.resolve().parent), source=str(p))
    sections = tuple(tomllib.loads(text))  # valid TOML: parse_config read it
    return dataclasses.replace(cfg, source_path=str(p.resolve()), sections=sections)


def parse_config(text: str, *, base_dir: str = ".", source: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    for key in _LOADER_KEYS:
        if key in data:
            raise ConfigError(f"{key}: unknown key")
    cfg: Config = _build(Config, data, "")
    cfg = dataclasses.replace(cfg, base_dir=base_dir)
    _check(cfg)
    cfg = _read_deprecated(cfg)
    _check_deployment(cfg)
    return cfg


def _read_deprecated(cfg: Config) -> Config:
    """Deprecated keys, read as their replacements; each one found is named in ``cfg.deprecations``."""
    okx_caa = cfg.venue.okx.cancel_all_after
    if not okx_caa:
        return cfg
    if cfg.venue.kind != "okx":  # as before: the key only ever applied to the OKX venue
        note = "venue.okx.cancel_all_after is deprecated and, with venue.kind = 'paper', ignored"
        return dataclasses.replace(cfg, deprecations=(*cfg.deprecations, note))
    if cfg.server.cancel_all_after is not None:
        raise ConfigError("server.cancel_all_after and venue.okx.cancel_all_after: set only one"
                          " (venue.okx.cancel_all_after is deprecated: keep server.cancel_all_after)")  # fmt: skip
    note = (
        "venue.okx.cancel_all_after is deprecated (the server keeps the venue's cancel-all-after armed):"
        f" read as server.cancel_all_after = {okx_caa:g}"
    )
    venue = dataclasses.replace(cfg.venue, okx=dataclasses.replace(cfg.venue.okx, cancel_all_after=0.0))
    server = dataclasses.replace(cfg.server, cancel_all_after=okx_caa)
    return dataclasses.replace(cfg, venue=venue, server=server, deprecations=(*cfg.deprecations, note))


def _check_market_data(cfg: Config) -> None:
    for i, bar in enumerate(cfg.candles.bars):
        if bar not in BARS:
            raise ConfigError(f"candles.bars[{i}]: {bar!r} is not a bar served (one of {', '.join(BARS)})")
    if len(set(cfg.candles.bars)) != len(cfg.candles.bars):
        raise ConfigError("candles.bars: a bar is named twice")
    if not 1 <= cfg.candles.keep <= 100_000:
        raise ConfigError("candles.keep: must be between 1 and 100000")
    if not cfg.feeds.stale_after > 0:
        raise ConfigError("feeds.stale_after: must be > 0 (seconds)")


def _check(cfg: Config) -> None:
    if not cfg.venue.symbols:
        raise ConfigError("venue.symbols: at least one symbol is required")
    for i, sym in enumerate(cfg.venue.symbols):
        if not sym or "/" in sym or len(sym) > 64 or not sym.isascii():
            raise ConfigError(f"venue.symbols[{i}]: {sym!r} is not a valid symbol (ASCII, no '/')")
    _check_market_data(cfg)
    for name in ("md_sndhwm", "report_sndhwm", "order_rcvhwm", "md_queue", "event_queue", "max_frame_bytes"):
        if getattr(cfg.bus, name) <= 0:
            raise ConfigError(f"bus.{name}: must be > 0")
    if cfg.bus.linger_ms < 0:
        raise ConfigError("bus.linger_ms: must be >= 0")
    p = cfg.venue.paper
    for name in ("tick_size", "lot_size", "min_size", "level_size", "tick_interval"):
        if not getattr(p, name) > 0:
            raise ConfigError(f"venue.paper.{name}: must be > 0")
    for ccy, amount in p.balances.items():
        if amount < 0:
            raise ConfigError(f"venue.paper.balances.{ccy}: must be >= 0")
    for name in ("maker_fee", "taker_fee"):
        if not -1 < getattr(p, name) < 1:
            raise ConfigError(
                f"venue.paper.{name}: must be a fraction of the notional (0.001 = 0.1 %), above -1 and below 1"
            )
    if not 0 <= p.trade_probability <= 1:
        raise ConfigError("venue.paper.trade_probability: must be between 0 and 1")
    if not 0 < p.time_scale <= 10_000:
        raise ConfigError("venue.paper.time_scale: must be above 0 and at most 10000 (1 = the wall clock)")
    if not 0 <= p.depth_levels <= 1000:
        raise ConfigError("venue.paper.depth_levels: must be between 0 (no full book) and 1000")
    for name in ("book_stale_after", "book_snapshot_interval"):
        if not getattr(cfg.venue.okx, name) > 0:
            raise ConfigError(f"venue.okx.{name}: must be > 0 (seconds)")
    _check_paper_derivatives(p)
    _check_derivatives(cfg)
    if cfg.venue.okx.cancel_all_after and not 10 <= cfg.venue.okx.cancel_all_after <= 120:
        raise ConfigError("venue.okx.cancel_all_after: must be 0 (off) or between 10 and 120 seconds")
    if cfg.server.closed_orders_in_memory < 0:
        raise ConfigError("server.closed_orders_in_memory: must be >= 0")
    if cfg.server.heartbeat_timeout <= 0:
        raise ConfigError("server.heartbeat_timeout: must be > 0")
    _check_risk(cfg)
    _check_recorder(cfg.recorder)
    _check_backtest(cfg.backtest)
    seen: set[str] = set()
    for i, s in enumerate(cfg.strategies):
        if not STRATEGY_ID_RE.match(s.id):
            raise ConfigError(f"strategies[{i}].id: {s.id!r} must match [A-Za-z0-9_-]{{1,32}}")
        if s.id in seen:
            raise ConfigError(f"strategies[{i}].id: {s.id!r} appears twice")
        seen.add(s.id)
        if bool(s.path) == bool(s.module):
            raise ConfigError(f"strategies[{i}]: give exactly one of 'path' or 'module'")


def _check_recorder(rec: RecorderConfig) -> None:
    if not rec.dir:
        raise ConfigError("recorder.dir: must not be empty")
    if rec.queue <= 0:
        raise ConfigError("recorder.queue: must be > 0")
    for name in ("flush_interval", "roll_seconds"):
        if not getattr(rec, name) > 0:
            raise ConfigError(f"recorder.{name}: must be > 0")


def backtest_settings(
    section: BacktestConfig, flags: Mapping[str, Any], flag_names: Mapping[str, str]
) -> BacktestConfig:
    """``section`` with the values of the flags given (``flags``: key -> value, only those given), checked
    by the rules the section's own values meet; an error names the flag (``flag_names``: key -> flag)
    for a value it set, the key (``backtest.<key>``) for one the file set."""
    for key in flags:
        if key not in flag_names:
            raise ConfigError(f"backtest.{key}: no flag sets it (flags: {', '.join(flag_names.values())})")
    hints = typing.get_type_hints(BacktestConfig)
    given = {k: _convert(hints[k], v, flag_names[k]) for k, v in flags.items()}
    merged = dataclasses.replace(section, **given)
    _check_backtest(merged, lambda k: flag_names[k] if k in given else f"backtest.{k}")
    return merged


def _check_backtest(bt: BacktestConfig, name: Callable[[str], str] = "backtest.{}".format) -> None:
    """The rules of ``[backtest]`` (and of the flags that override it); ``name(key)`` in the errors."""
    for key in ("latency_ms", "lookahead_ms", "sharpe_period"):
        if not getattr(bt, key) > 0:
            raise ConfigError(f"{name(key)}: must be > 0, got {getattr(bt, key):g}")
    if bt.latency_sigma < 0:
        raise ConfigError(f"{name('latency_sigma')}: must be >= 0 (0: every draw is the median)")
    for key in ("maker_fee", "taker_fee"):
        if not -1 < getattr(bt, key) < 1:
            raise ConfigError(f"{name(key)}: must be a fraction of the notional (0.001 = 0.1 %), above -1"
                              f" and below 1, got {getattr(bt, key):g}")  # fmt: skip
    if bt.latency == "constant" and bt.lookahead_ms > bt.latency_ms:
        raise ConfigError(
            f"{name('lookahead_ms')}: the lookahead ({bt.lookahead_ms:g} ms) exceeds the constant latency"
            f" ({name('latency_ms')} = {bt.latency_ms:g} ms): an order would take effect inside the window"
            " it was sent in"
        )


def _check_paper_derivatives(p: PaperConfig) -> None:
    if not 1 <= p.leverage <= 125:
        raise ConfigError("venue.paper.leverage: must be between 1 and 125")
    if not 0 < p.maintenance_margin_rate < 1:
        raise ConfigError("venue.paper.maintenance_margin_rate: must be a fraction (0.004 = 0.4 %) above 0")
    if not 0 <= p.liquidation_fee_rate < 1:
        raise ConfigError("venue.paper.liquidation_fee_rate: must be a fraction (0.0005 = 0.05 %), >= 0")
    if not 0 <= p.price_limit_band < 1:
        raise ConfigError("venue.paper.price_limit_band: must be a fraction (0.05 = 5 %), 0 for no limit")
    if p.liquidation_warning_ratio != 0 and not p.liquidation_warning_ratio > 1:
        raise ConfigError(
            "venue.paper.liquidation_warning_ratio: must be above 1 (3 = 300 %), or 0 for no warning"
        )
    if not p.funding_interval > 0:
        raise ConfigError("venue.paper.funding_interval: must be > 0 (seconds)")
    if abs(p.funding_rate) > 0.00375 or not 0 <= p.funding_rate_jitter <= 0.00375:
        raise ConfigError("venue.paper.funding_rate, funding_rate_jitter: at most 0.00375 (OKX's bound)")
    for sym, c in p.contracts.items():
        for name in ("contract_value", "lot_size", "min_size"):
            if getattr(c, name) < 0:
                raise ConfigError(f'venue.paper.contracts."{sym}".{name}: must be > 0 (0 = the default)')
        if not 1 <= c.max_leverage <= 125:
            raise ConfigError(f'venue.paper.contracts."{sym}".max_leverage: must be between 1 and 125')


def _check_derivatives(cfg: Config) -> None:
    from .instruments import is_derivative  # pure; imported here to keep config's imports minimal

    for sym, setup in cfg.venue.derivatives.instruments.items():
        key = f'venue.derivatives.instruments."{sym}"'
        if sym not in cfg.venue.symbols:
            raise ConfigError(f"{key}: {sym!r} is not in venue.symbols")
        if not is_derivative(sym):
            raise ConfigError(f"{key}: {sym!r} is spot; margin mode and leverage apply to swaps and futures")
        if setup.leverage != 0 and not 1 <= setup.leverage <= 125:
            raise ConfigError(f"{key}.leverage: must be 0 (leave as set) or between 1 and 125")


def _check_risk(cfg: Config) -> None:
    caa = cfg.server.cancel_all_after
    if caa is not None and caa < 0:
        raise ConfigError("server.cancel_all_after: must be >= 0 (0 = off)")
    if caa and cfg.venue.kind == "okx":
        if not 10 <= caa <= 120:
            raise ConfigError("server.cancel_all_after: OKX allows 0 (off) or 10 to 120 seconds")
    r = cfg.risk
    if not r.rate_window > 0:
        raise ConfigError("risk.rate_window: must be > 0")
    if r.reconcile_interval < 0 or r.reconcile_tolerance < 0:
        raise ConfigError("risk.reconcile_interval, risk.reconcile_tolerance: must be >= 0")
    layers = [("risk", r)] + [(f"risk.strategies.{k}", v) for k, v in r.strategies.items()]
    layers += [(f"risk.symbols.{k}", v) for k, v in r.symbols.items()]
    for name, lim in layers:
        for f in dataclasses.fields(RiskLimits):
            if getattr(lim, f.name) < 0:
                raise ConfigError(f"{name}.{f.name}: must be >= 0 (0 = no limit)")
    for sid, lim in r.strategies.items():
        if lim.max_account_position:
            raise ConfigError(
                f"risk.strategies.{sid}.max_account_position: an account limit cannot be set per strategy"
            )


def missing_limits(cfg: Config) -> list[str]:
    """The pre-trade limits (docs/risk.md) that leave some symbol's orders unbounded: set neither in
    ``[risk]`` nor in ``[risk.symbols.<symbol>]`` of every served symbol. A ``[risk.strategies.*]`` table
    does not count (a strategy it does not name escapes it). Each entry: the key, and the symbols it
    misses when only some are covered."""
    out = []
    for f in dataclasses.fields(RiskLimits):
        if getattr(cfg.risk, f.name):
            continue
        bare = [s for s in cfg.venue.symbols if not getattr(cfg.risk.symbols.get(s, RiskLimits()), f.name)]
        if len(bare) == len(cfg.venue.symbols):
            out.append(f.name)
        elif bare:
            out.append(f"{f.name} (not set for {', '.join(bare)})")
    return out


_LOADER_KEYS = (
    "base_dir",
    "source_path",
    "deprecations",
    "sections",
)  # Config fields the loader sets; refused in TOML
_Z85_RE = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}\Z")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _check_deployment(cfg: Config) -> None:
    """Supervision, CurveZMQ and metrics settings (issue 7); errors name the key."""
    sv = cfg.supervisor
    for name in ("backoff_min", "backoff_max", "crash_loop_window", "stop_grace"):
        if not getattr(sv, name) > 0:
            raise ConfigError(f"supervisor.{name}: must be > 0")
    if sv.backoff_max < sv.backoff_min:
        raise ConfigError("supervisor.backoff_max: must be >= supervisor.backoff_min")
    if sv.crash_loop_count < 2:
        raise ConfigError("supervisor.crash_loop_count: must be >= 2")
    if not sv.log_dir:
        raise ConfigError("supervisor.log_dir: must not be empty")
    tcp = []
    for channel in ("md", "order", "report"):
        ep = getattr(cfg.bus, f"{channel}_endpoint")
        if ep and not ep.startswith(("ipc://", "tcp://")):
            raise ConfigError(f"bus.{channel}_endpoint: {ep!r} must start with ipc:// or tcp://")
        if ep.startswith("tcp://"):
            tcp.append(f"bus.{channel}_endpoint")
    sec = cfg.security
    if not sec.zap_domain or not sec.zap_domain.isascii() or len(sec.zap_domain) > 254:
        raise ConfigError("security.zap_domain: must be a non-empty ASCII string")
    for name in ("server_secret_key_env", "client_secret_key_env"):
        if not _ENV_NAME_RE.match(getattr(sec, name)):
            raise ConfigError(
                f"security.{name}: must name an environment variable, like SEQTRADE_SERVER_SECRET_KEY"
            )
    _check_public_key(sec.server_public_key, sec.server_public_key_file, "security.server_public_key", False)
    if tcp and not (sec.server_public_key or sec.server_public_key_file):
        raise ConfigError(
            f"security.server_public_key: required because {tcp[0]} is tcp:// (CurveZMQ is mandatory over TCP;"
            " make a key pair with `seqtrade keygen`)"
        )
    names: set[str] = set()
    for i, c in enumerate(sec.clients):
        key = f"security.clients[{i}]"
        if not STRATEGY_ID_RE.match(c.name) or c.name in names:
            raise ConfigError(f"{key}.name: {c.name!r} must be unique and match [A-Za-z0-9_-]{{1,32}}")
        names.add(c.name)
        _check_public_key(c.public_key, c.public_key_file, f"{key}.public_key", True)
        if not c.strategies:
            raise ConfigError(f"{key}.strategies: list the strategy ids this key may trade as")
        for j, sid in enumerate(c.strategies):
            if not STRATEGY_ID_RE.match(sid):
                raise ConfigError(f"{key}.strategies[{j}]: {sid!r} must match [A-Za-z0-9_-]{{1,32}}")
    m = cfg.metrics
    if m.host not in _LOOPBACK:
        raise ConfigError(f"metrics.host: {m.host!r} is not a loopback address (the endpoint has no authentication;"
                          " use 127.0.0.1 and a reverse proxy or an SSH tunnel)")  # fmt: skip
    if not 1 <= m.port <= 65535:
        raise ConfigError("metrics.port: must be between 1 and 65535")
    d = cfg.dashboard
    if not 0 <= d.port <= 65535:
        raise ConfigError("dashboard.port: must be between 0 (any free port) and 65535")
    if not d.host:
        raise ConfigError("dashboard.host: must not be empty (127.0.0.1 by default)")
    if not _ENV_NAME_RE.match(d.token_env):
        raise ConfigError(
            "dashboard.token_env: must name an environment variable, like SEQTRADE_DASHBOARD_TOKEN"
        )
    if not d.interval > 0 or d.reconcile_interval < 0:
        raise ConfigError("dashboard.interval: must be > 0; dashboard.reconcile_interval: must be >= 0")


def _check_public_key(literal: str, path: str, key: str, required: bool) -> None:
    if literal and path:
        raise ConfigError(
            f"{key}: give either {key.rsplit('.', 1)[1]} or {key.rsplit('.', 1)[1]}_file, not both"
        )
    if literal and not _Z85_RE.match(literal):
        raise ConfigError(
            f"{key}: not a CurveZMQ public key (40 Z85 characters, as `seqtrade keygen` prints)"
        )
    if required and not (literal or path):
        raise ConfigError(f"{key}: missing (give {key.rsplit('.', 1)[1]} or {key.rsplit('.', 1)[1]}_file)")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "a boolean"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is list:
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a table"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return str(tp)


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _convert(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected a boolean, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        _, val_tp = typing.get_args(tp)
        return {k: _convert(val_tp, v, f"{key}.{k}") for k, v in value.items()}
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover - a bug in this module


def _build(cls: Any, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in fields or key in _LOADER_KEYS:
            known = ", ".join(sorted(k for k in fields if k not in _LOADER_KEYS))
            raise ConfigError(f"{full}: unknown key (known keys here: {known})")
        kwargs[key] = _convert(hints[key], value, full)
    for name, f in fields.items():
        if (
            name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            full = f"{prefix}.{name}" if prefix else name
            raise ConfigError(f"{full}: missing required key")
    return cls(**kwargs)
