"""An opt-in Prometheus endpoint: ``GET /metrics`` on a loopback address (``[metrics]``).

A tiny HTTP/1.0 responder on Trio, not a dependency: one request per connection, a bounded request
(8 KiB, 5 s), the text exposition format 0.0.4. It reads the counters the server keeps anyway, so a
scrape costs the server nothing between scrapes. Loopback only (the config refuses other hosts): it
has no authentication; scrape it from the same host, or through an SSH tunnel or a reverse proxy.

Exposed (all prefixed ``seqtrade_``): messages per channel, market-data drops, orders by outcome,
requests by kind, bad frames, replays, venue connected and reconnects (when the venue counts them),
journal commit time and lag, per-strategy heartbeat age and liveness, supervised strategies' state and
restarts, refused connections and requests by reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ..config import MetricsConfig
from ..feedhealth import FeedStatus

if TYPE_CHECKING:
    from .auth import AuthStats
    from .gateway import Gateway
    from .supervisor import Supervisor

__all__ = ["render_metrics", "metrics_task"]

log = logging.getLogger(__name__)

MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        full = f"seqtrade_{name}"
        self.lines.append(f"# HELP {full} {help_}")
        self.lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{full}{{{lab}}} {value:g}" if lab else f"{full} {value:g}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# Per market-data feed (channel and symbol), from seqtrade.feedhealth: name, type, help, value.
_FEED_METRICS: tuple[tuple[str, str, str, Callable[[FeedStatus], float]], ...] = (
    ("feed_messages_total", "counter", "Market-data messages per feed (channel and symbol).", lambda f: f.messages),
    ("feed_rate", "gauge", "Messages per second of each feed over the last second.", lambda f: f.rate),
    ("feed_age_seconds", "gauge", "Seconds since each feed's last message.", lambda f: f.age),
    ("feed_gaps_total", "counter", "Holes the venue found in each feed (sequence gaps, bad checksums).",
     lambda f: f.gaps),
    ("feed_resubscriptions_total", "counter", "Times the venue subscribed each feed again.", lambda f: f.resubscriptions),
    ("feed_delay_ms", "gauge", "Exchange-to-gateway delay of each feed's last message (ms).", lambda f: f.delay_ms),
    ("feed_stale", "gauge", "1 while a feed is stale (silent for feeds.stale_after).", lambda f: float(f.stale)),
)  # fmt: skip


def render_metrics(gw: Gateway, supervisor: Supervisor | None = None, auth: AuthStats | None = None) -> str:
    """The Prometheus text for the server's current counters and gauges."""
    c = gw.counters
    w = _Writer()
    requests = sum(c.by_kind.values()) + c.bad_frames
    w.metric("messages_total", "counter", "Messages per channel: market data and reports sent, requests received.",
             [({"channel": "md"}, c.md_out), ({"channel": "report"}, c.reports_out),
              ({"channel": "order"}, requests)])  # fmt: skip
    w.metric("md_dropped_total", "counter", "Market data dropped because the feed queue was full.",
             [({}, c.md_dropped)])  # fmt: skip
    w.metric("orders_total", "counter", "Order requests by outcome (received = sent + rejected + duplicates).",
             [({"outcome": "received"}, c.orders_in), ({"outcome": "sent"}, c.orders_sent),
              ({"outcome": "rejected"}, c.rejected)])  # fmt: skip
    w.metric("requests_total", "counter", "Requests by kind.",
             [({"kind": k}, v) for k, v in sorted(c.by_kind.items())])  # fmt: skip
    w.metric(
        "bad_frames_total",
        "counter",
        "Malformed or refused frames on the order channel.",
        [({}, c.bad_frames)],
    )
    w.metric("replays_total", "counter", "Hellos answered (report replays).", [({}, c.replays)])
    w.metric("open_orders", "gauge", "Orders open at the venue.", [({}, len(gw.open_records()))])
    venue = gw.venue.name
    w.metric("venue_connected", "gauge", "1 while the venue connection is up.",
             [({"venue": venue}, 1.0 if gw.venue_connected else 0.0)])  # fmt: skip
    reconnects = getattr(gw.venue, "reconnects", None)
    if isinstance(reconnects, int):
        w.metric("venue_reconnects_total", "counter", "Venue reconnects.", [({"venue": venue}, reconnects)])
    w.metric("journal_commit_seconds", "gauge", "Duration of the last journal commit of reports.",
             [({}, gw.journal_commit_s)])  # fmt: skip
    w.metric("journal_lag_seconds", "gauge",
             "Last committed batch: time from its oldest event's timestamp to the end of its commit.",
             [({}, gw.journal_lag_s)])  # fmt: skip
    now = trio.current_time()
    w.metric("strategy_heartbeat_age_seconds", "gauge", "Seconds since each strategy's last message.",
             [({"strategy": sid}, round(now - s.last_seen, 3)) for sid, s in sorted(gw.strategies.items())])  # fmt: skip
    w.metric("strategy_alive", "gauge", "1 while a strategy's heartbeats arrive in time.",
             [({"strategy": sid}, 1.0 if s.alive else 0.0) for sid, s in sorted(gw.strategies.items())])  # fmt: skip
    if supervisor is not None and supervisor.entries:
        w.metric("strategy_restarts_total", "counter", "Restarts of each supervised strategy.",
                 [({"strategy": e.id}, e.restarts) for e in supervisor.entries])  # fmt: skip
        w.metric("strategy_running", "gauge", "1 while a supervised strategy's process runs.",
                 [({"strategy": e.id}, 1.0 if e.pid is not None else 0.0) for e in supervisor.entries])  # fmt: skip
        w.metric("strategy_crash_loop", "gauge", "1 when a supervised strategy was stopped as a crash loop.",
                 [({"strategy": e.id}, 1.0 if e.state == "crash-loop" else 0.0) for e in supervisor.entries])  # fmt: skip
    feeds = gw.feed_health.snapshot(now)
    labels = [{"channel": f.channel, "symbol": f.symbol} for f in feeds]
    for name, kind, help_, value in _FEED_METRICS:
        if feeds:
            w.metric(name, kind, help_, [(lab, value(f)) for lab, f in zip(labels, feeds, strict=True)])
    if auth is not None:
        w.metric("auth_accepted_total", "counter", "CURVE handshakes accepted.", [({}, auth.accepted)])
        w.metric("auth_refused_total", "counter", "Connections, requests and subscriptions refused, by reason.",
                 [({"reason": r}, n) for r, n in sorted(auth.refused.items())])  # fmt: skip
    return w.text()


async def metrics_task(
    config: MetricsConfig, render: Callable[[], str], *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Own the metrics listener: answer ``GET /metrics`` with ``render()``; 404 for anything else.

    ``task_status.started(port)``. Cancelled with the server. Backpressure: one short task per
    connection; a slow or silent client is cut off after 5 s and 8 KiB.
    """
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    port: int = listeners[0].socket.getsockname()[1]
    log.info("metrics on http://%s:%d/metrics", config.host, port)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(REQUEST_TIMEOUT):
                data = b""
                while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < MAX_REQUEST:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    data += chunk
                parts = data.split(b"\n", 1)[0].split()
                path = parts[1].split(b"?", 1)[0] if len(parts) >= 2 else b""
                if len(parts) >= 2 and parts[0] in (b"GET", b"HEAD") and path == b"/metrics":
                    try:
                        body = render().encode()
                        status, ctype = b"200 OK", b"text/plain; version=0.0.4; charset=utf-8"
                    except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError):
                        log.exception("rendering the metrics failed")  # a bug here must not stop the server
                        body, status, ctype = b"internal error\n", b"500 Internal Server Error", b"text/plain"
                else:
                    body = b"not found: try /metrics\n"
                    status, ctype = b"404 Not Found", b"text/plain; charset=utf-8"
                head = (b"HTTP/1.0 " + status + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
                        + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")  # fmt: skip
                await stream.send_all(head + (b"" if parts[:1] == [b"HEAD"] else body))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the scraper went away
        finally:
            await trio.aclose_forcefully(stream)

    task_status.started(port)
    await trio.serve_listeners(handle, listeners)
