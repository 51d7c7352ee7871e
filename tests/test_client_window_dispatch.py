"""A backtest's window frame reaches the strategy exactly as the same messages in their own frames would:
the same callbacks in the same order, with equal models, and the same seq gaps counted at each of them
(the window's short path, ClientProtocol.window_events, and the positional rows of wire's window
decoder, against the per-frame path the live market data takes)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqtrade import wire
from seqtrade.client import Strategy
from seqtrade.client.protocol import ClientProtocol
from seqtrade.client.runner import Connection, Endpoints, _Shell
from seqtrade.models import Book, FundingRate, MarkPrice, Ticker, Trade, VenueStatus
from seqtrade.vclock import SyncAck, Window

T0 = 1_790_000_000_000_000_000
_PIPES = itertools.count()  # each example's inproc name: a closed socket's may not be free yet
SYMBOLS = ("BTC-USDT", "ETH-USDT")  # only BTC-USDT's books and trades are subscribed to


class _Pipe:
    """A socket to hand ``drain_md`` frames on: an inproc PAIR whose other end sends them all first."""

    def __init__(self, ctx: zmq.Context[Any], name: str) -> None:
        self.out, self.inp = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        self.out.bind(f"inproc://{name}")
        self.inp.connect(f"inproc://{name}")

    def fill(self, frames: list[bytes]) -> zmq.Socket[Any]:
        for f in frames:
            self.out.send(f)
        return self.inp

    def close(self) -> None:
        self.out.close(linger=0)
        self.inp.close(linger=0)


class _Seen(Strategy):
    """Writes down every market-data callback: its name, the message, and the gaps counted by then."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, Any, int]] = []

    def _note(self, name: str, msg: Any) -> None:
        assert self._protocol is not None
        self.seen.append((name, msg, self._protocol.md_gaps))

    def on_ticker(self, t: Ticker) -> None:
        self._note("ticker", t)

    def on_book(self, b: Book) -> None:
        self._note("book", b)

    def on_trade(self, t: Trade) -> None:
        self._note("trade", t)
        if t.trade_id == "boom":
            raise ValueError("a strategy's bug")

    def on_mark(self, m: MarkPrice) -> None:
        self._note("mark", m)

    def on_funding(self, f: FundingRate) -> None:
        self._note("funding", f)

    def on_status(self, s: VenueStatus) -> None:
        self._note("status", s)


def _shell(conn: Connection) -> tuple[_Seen, _Shell]:
    s = _Seen()
    proto = ClientProtocol("s1")
    s._conn, s._protocol = conn, proto
    return s, _Shell(s, conn, proto)


def _connection(d: Path, ctx: zmq.Context[Any]) -> Connection:
    conn = Connection(Endpoints(f"ipc://{d}/md.ipc", f"ipc://{d}/order.ipc", f"ipc://{d}/report.ipc"), "s1",
                      context=ctx)  # fmt: skip
    for sym in SYMBOLS:
        conn.subscribe("ticker", sym)
        conn.subscribe("mark", sym)
        conn.subscribe("funding", sym)
    conn.subscribe("book", "BTC-USDT")
    conn.subscribe("trade", "BTC-USDT")
    conn.subscribe_prefix(b"status/")
    return conn


def _message(kind: int, sym: str, seq: int, i: int) -> Any:
    ns = T0 + i
    if kind == 0:
        return Book(sym, i, [[100.0 + i, 1.0], [99.0, 2.5]], [[101.0, 0.5]] if i % 3 else [], seq, ns)
    if kind == 1:
        return Trade(
            sym, i, "boom" if i % 7 == 3 else f"t{i}", 100.5, 0.25, "buy" if i % 2 else "sell", seq, ns
        )
    if kind == 2:
        return Ticker(sym, i, 100.0, 99.5, 100.5, 1.0, 2.0, 10.0, seq, ns)
    if kind == 3:
        return MarkPrice(sym, i, 100.25, 100.0, seq, ns)
    if kind == 4:
        return FundingRate(sym, i, 0.0001, i + 1000, 28_800_000, seq, ns)
    return VenueStatus("paper", i % 4 != 1, list(SYMBOLS), i, seq, ns)


# (type, symbol, seq): seqs from a small range, so that runs go on, jump (gaps), repeat and go back
MESSAGES = st.lists(
    st.tuples(st.integers(0, 5), st.sampled_from(SYMBOLS), st.integers(1, 12)), min_size=0, max_size=60
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=MESSAGES, cuts=st.lists(st.integers(0, 60), max_size=4), framed=st.integers(0, 60))
def test_windows_give_what_the_same_messages_give_in_their_own_frames(
    spec: list[tuple[int, str, int]], cuts: list[int], framed: int, tmp_path: Path, zctx: zmq.Context[Any]
) -> None:
    msgs = [_message(kind, sym, seq, i) for i, (kind, sym, seq) in enumerate(spec)]
    conn = _connection(tmp_path, zctx)
    pipe = _Pipe(zctx, f"md-{next(_PIPES)}")
    try:
        # the reference: every message in its own frame, as live (the SUB socket passes only our topics)
        ref, ref_shell = _shell(conn)
        frames = [wire.encode_message(m) for m in msgs]
        ref_shell.drain_md(pipe.fill([f for f in frames if conn.wants(f)]), limit=len(frames) + 1)
        # the same: the first messages in their own frames (before a backtest's windows), the rest in
        # windows cut where the draw says (step 0: market data only, no sync due)
        got, shell = _shell(conn)
        framed = min(framed, len(msgs))
        shell.drain_md(pipe.fill([f for f in frames[:framed] if conn.wants(f)]), limit=framed + 1)
        bounds = [framed, *sorted(c for c in cuts if c > framed), len(msgs)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            w = Window("backtest", T0 + b, 0, {}, 1, 0, msgs[a:b])
            shell.window(wire.decode_message(wire.encode_message(w)))
        assert got.seen == ref.seen
        assert [type(m) for _, m, _ in got.seen] == [type(m) for _, m, _ in ref.seen]
        assert shell.proto.md_gaps == ref_shell.proto.md_gaps and shell.errors == ref_shell.errors
    finally:
        pipe.close()
        conn.close()


def test_a_windows_rows_are_read_by_position_only_while_their_keys_are_the_models_fields() -> None:
    book = Book("BTC-USDT", 1, [[100.0, 1.0]], [[100.5, 0.5]], 3, T0)
    trade = Trade("BTC-USDT", 1, "t-1", 100.5, 0.25, "buy", 4, T0 + 1)
    keys: dict[str, list[str]] = {}
    rows = [wire.window_row(m, keys) for m in (book, trade, book)]

    def decode(keys: dict[str, Any], rows: list[Any]) -> Window:
        frame = wire.encode_message(Window("backtest", T0, 1, {}, 1, 0, rows, keys))
        w = wire.decode_message(frame)
        assert isinstance(w, Window)
        return w

    assert decode(keys, rows).md == [book, trade, book]
    # the next window's keys differ (a newer server put a key first): its rows are read by name
    moved = {"book": keys["book"], "trade": ["extra", *keys["trade"]]}
    assert decode(moved, [rows[0], ["trade", "x", *rows[1][1:]]]).md == [book, trade]
    # and back: by position again, with the same result as by name
    assert decode(keys, rows).md == [book, trade, book] == wire._window_rows(rows, keys)


@given(t_ns=st.integers(0, 2**64 - 1), step=st.integers(0, 2**64 - 1))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_sync_ack_frame_built_ahead_is_the_codecs_frame(t_ns: int, step: int, tmp_path: Path,
                                                            zctx: zmq.Context[Any]) -> None:  # fmt: skip
    conn = _connection(tmp_path, zctx)
    try:
        _, shell = _shell(conn)
        want = wire.encode_message(SyncAck("s1", t_ns, step, shell.proto.session, True))
        assert shell._sync_ack(t_ns, step) == want
        shell.proto.session = "another-session"  # (a process's session does not change; if it did)
        assert shell._sync_ack(t_ns, step) == wire.encode_message(
            SyncAck("s1", t_ns, step, "another-session", True)
        )
    finally:
        conn.close()
