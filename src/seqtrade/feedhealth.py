"""Feed health: per symbol and channel, is the market data flowing, and how late is it. Pure: no I/O.

One :class:`FeedHealth` object per server. Whoever sees a feed event calls it:

- ``on_message(channel, symbol, exchange_ts_ms, recv_ts_ms, now)``: one message of a feed (the
  gateway, for everything it publishes): counts it, notes when (``now``: a monotonic clock in
  seconds) and the exchange-to-gateway delay (``recv_ts_ms - exchange_ts_ms``, both epoch ms);
- ``on_gap(channel, symbol)``: the venue found a hole in a feed (a sequence gap, a bad checksum);
- ``on_resubscribe(channel, symbol)``: the venue subscribed a feed again (after a gap, a reconnect).

``check(now)`` is called about once a second: it rolls the message rate over the last interval and
returns the feeds that went stale (no message for ``stale_after`` seconds) or recovered since the
last call, each transition once, so the caller logs each once. ``snapshot(now)`` is every feed's
:class:`FeedStatus` (for ``seqtrade status``, the metrics and the ``feed_status`` bus message).

A feed exists from its first message, gap or resubscription. Channels are the wire kinds
(``ticker``, ``book``, ``trade``) and ``candle:<bar>`` for candles. A candle feed may be quiet for a
whole bar (a bar without trades is only sent when it closes): it is stale after ``stale_after`` plus
its bar's length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .candles import BARS

__all__ = [
    "FeedHealth",
    "Feed",
    "FeedStatus",
    "FeedsStatus",
    "Transition",
    "DEFAULT_STALE_AFTER",
    "format_feeds",
]

DEFAULT_STALE_AFTER = 10.0


@dataclass(slots=True)
class FeedStatus:
    """The health of one feed (one channel of one symbol).

    Attributes:
        channel: ``ticker``, ``book``, ``trade`` or ``candle:<bar>``.
        symbol: The instrument.
        rate: Messages per second over the last interval (about a second).
        age: Seconds since the last message (-1.0: none yet).
        messages: Messages since the server started.
        gaps: Holes the venue found in this feed (sequence gaps, bad checksums).
        resubscriptions: Times the venue subscribed this feed again.
        delay_ms: Exchange-to-gateway delay of the last message: the server's receive time minus the
            exchange's timestamp (clocks of two hosts: compare it with itself over time). Always 0 for
            a candle feed, whose ``ts`` is the bar's open time, not the time of the message.
        max_delay_ms: The largest such delay over the last interval.
        stale: No message for ``stale_after`` seconds.
    """

    channel: str
    symbol: str
    rate: float = 0.0
    age: float = -1.0
    messages: int = 0
    gaps: int = 0
    resubscriptions: int = 0
    delay_ms: int = 0
    max_delay_ms: int = 0
    stale: bool = False

    def row(self) -> dict[str, object]:
        """The map this status is sent as (in ``feed_status`` and the ``status`` command)."""
        return {
            "channel": self.channel, "symbol": self.symbol, "rate": float(self.rate),
            "age": float(self.age), "messages": self.messages, "gaps": self.gaps,
            "resubscriptions": self.resubscriptions, "delay_ms": self.delay_ms,
            "max_delay_ms": self.max_delay_ms, "stale": self.stale,
        }  # fmt: skip


@dataclass(slots=True)
class FeedsStatus:
    """Every feed of the server, once a second and when one goes stale or recovers (``on_feed_status``).

    Attributes:
        venue: The venue's kind.
        ts: The server's time, in ms since the epoch.
        feeds: One [`FeedStatus`][seqtrade.client.FeedStatus] per channel and symbol.
        seq: Counts these messages.
        gw_ns: The server's ``time.time_ns()`` when it sent the message.
    """

    venue: str
    ts: int
    feeds: list[FeedStatus] = field(default_factory=list)
    seq: int = 0
    gw_ns: int = 0

    def feed(self, channel: str, symbol: str) -> FeedStatus | None:
        """The status of one feed, or None if the server has not seen it."""
        return next((f for f in self.feeds if f.channel == channel and f.symbol == symbol), None)


@dataclass(frozen=True, slots=True)
class Transition:
    """A feed went stale (``stale`` True) or recovered, with how long it had been silent."""

    channel: str
    symbol: str
    stale: bool
    silent_s: float


class Feed:
    """The counters of one feed; :meth:`seen` is the per-message path (a caller that publishes many
    messages holds the handle from :meth:`FeedHealth.feed`)."""

    __slots__ = ("count", "last", "delay", "max_delay", "gaps", "resubs", "stale", "rate",
                 "mark_count", "window_max", "timed")  # fmt: skip

    def __init__(self, timed: bool = True) -> None:
        self.timed = timed  # its messages' ts is when they happened (not a candle's open time)
        self.count = 0
        self.last = -1.0  # monotonic time of the last message
        self.delay = 0
        self.max_delay = 0
        self.window_max = 0
        self.gaps = 0
        self.resubs = 0
        self.stale = False
        self.rate = 0.0
        self.mark_count = 0

    def seen(self, exchange_ts_ms: int, recv_ts_ms: int, now: float) -> None:
        """One message: its exchange time and receive time (epoch ms), ``now`` (monotonic s)."""
        self.count += 1
        self.last = now
        if self.timed:
            d = recv_ts_ms - exchange_ts_ms
            self.delay = d
            if d > self.window_max:
                self.window_max = d

    def seen_many(self, n: int, min_ts_ms: int, last_ts_ms: int, recv_ts_ms: int, now: float) -> None:
        """``n`` messages at once (a batch the gateway published): the same counts as ``n`` calls of
        :meth:`seen`, with one receive time for all of them; ``min_ts_ms`` and ``last_ts_ms`` are the
        earliest and the last exchange time among them (the largest delay, and the last one)."""
        self.count += n
        self.last = now
        if self.timed:
            self.delay = recv_ts_ms - last_ts_ms
            d = recv_ts_ms - min_ts_ms
            if d > self.window_max:
                self.window_max = d


class FeedHealth:
    """The health of every feed; see the module docstring. ``stale_after`` in seconds (> 0)."""

    def __init__(self, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        if not stale_after > 0:
            raise ValueError(f"stale_after must be > 0, got {stale_after}")
        self.stale_after = stale_after
        self._feeds: dict[tuple[str, str], Feed] = {}
        self._mark: float | None = None  # when check() last rolled the rates
        self.changed = False  # a transition since the last snapshot was taken for the bus

    def feed(self, channel: str, symbol: str) -> Feed:
        """The handle of one feed (made on first use)."""
        return self._feed(channel, symbol)

    def _feed(self, channel: str, symbol: str) -> Feed:
        key = (channel, symbol)
        f = self._feeds.get(key)
        if f is None:
            f = self._feeds[key] = Feed(timed=not channel.startswith("candle:"))
        return f

    def on_message(self, channel: str, symbol: str, exchange_ts_ms: int, recv_ts_ms: int, now: float) -> None:
        (self._feeds.get((channel, symbol)) or self._feed(channel, symbol)).seen(
            exchange_ts_ms, recv_ts_ms, now
        )

    def on_gap(self, channel: str, symbol: str) -> None:
        self._feed(channel, symbol).gaps += 1

    def on_resubscribe(self, channel: str, symbol: str) -> None:
        self._feed(channel, symbol).resubs += 1

    def check(self, now: float) -> list[Transition]:
        """Roll the rates (per second since the last call) and return the stale/recovered changes."""
        dt = None if self._mark is None else now - self._mark
        self._mark = now
        out: list[Transition] = []
        for (channel, symbol), f in self._feeds.items():
            if dt is not None and dt > 0:
                f.rate = (f.count - f.mark_count) / dt
            f.mark_count = f.count
            f.max_delay, f.window_max = f.window_max, f.delay if f.last >= 0 else 0
            silent = now - f.last if f.last >= 0 else None
            stale = silent is not None and silent >= self.stale_after + _quiet(channel)
            if stale != f.stale and silent is not None:
                f.stale = stale
                self.changed = True
                out.append(Transition(channel, symbol, stale, silent))
        return out

    def snapshot(self, now: float) -> list[FeedStatus]:
        """Every feed's status, sorted by symbol and channel."""
        return [
            FeedStatus(
                channel,
                symbol,
                f.rate,
                now - f.last if f.last >= 0 else -1.0,
                f.count,
                f.gaps,
                f.resubs,
                f.delay,
                max(f.max_delay, f.window_max),
                f.stale,
            )  # fmt: skip
            for (channel, symbol), f in sorted(self._feeds.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        ]


def _quiet(channel: str) -> float:
    """Seconds a feed may be silent by nature: a candle feed, its bar's length."""
    if channel.startswith("candle:"):
        return BARS.get(channel[7:], 0) / 1000
    return 0.0


def format_feeds(rows: list[dict[str, object]]) -> list[str]:
    """The feed table of ``seqtrade status`` from the ``feeds`` rows of its answer (``FeedStatus.row``)."""
    if not rows:
        return []
    out = [
        f"{'feed':<14} {'symbol':<18} {'rate/s':>8} {'age':>8} {'gaps':>5} {'resub':>5} {'delay ms':>9}  state"
    ]
    for r in rows:
        age = float(r["age"])  # type: ignore[arg-type]
        out.append(
            f"{r['channel']!s:<14} {r['symbol']!s:<18} {float(r['rate']):>8.1f} "  # type: ignore[arg-type]
            f"{(f'{age:.1f}s' if age >= 0 else '-'):>8} {r['gaps']!s:>5} {r['resubscriptions']!s:>5} "
            f"{r['delay_ms']!s:>9}  {'STALE' if r['stale'] else 'ok'}"
        )
    return out
