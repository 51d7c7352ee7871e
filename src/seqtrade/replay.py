"""``seqtrade replay``: a recording served on the bus again, for developing a strategy on real data.

The server runs as it always does (sockets, journal, joins, the supervisor's ``[[strategies]]``), with
:class:`ReplayVenue` in place of the exchange: it publishes the recording's market data in the order it
was recorded (by the server's receive time ``gw_ns``), at the recorded pace times ``speed`` or as fast as
possible, and rejects every order (``replay: market data only``). Nothing here names a message type:
each recorded map is decoded by the wire codec of its ``type`` (:mod:`seqtrade.wire`), so every type
the recorder wrote is replayed; recorded ``status`` messages replay the venue's connection (a recorded
disconnection is one here too).

What strategies see: the recorded fields as they were (``ts`` is the exchange's time of the data);
``seq`` and ``gw_ns`` are the replay server's own, as for any message it publishes.
"""

from __future__ import annotations

import dataclasses
import gc
import heapq
import itertools
import json
import logging
import math
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

from . import wire
from .errors import SeqtradeError
from .models import OrderStatus
from .recorder_rows import RESERVED, safe_key
from .venues.base import EventKind, Instrument, OrderEvent, Venue, VenueOrder, VenueSink

__all__ = ["ReplayVenue", "recorded_days", "read_rows", "read_messages", "to_message", "with_run_dir"]

log = logging.getLogger(__name__)

REJECT = "replay: market data only (orders are not traded)"
_STATUS = "status"
_BATCH = 512  # messages published between checkpoints at full speed
_READ_BATCH = 16_384  # rows read from a file at a time


def recorded_days(data: Path) -> list[str]:
    """The UTC days a recording holds, in order (any market-data table)."""
    if not data.is_dir():
        raise SeqtradeError(f"replay: {data} is not a directory (a recording: [recorder] dir)")
    days = {d.name for t in data.iterdir() if t.is_dir() and t.name not in RESERVED for d in t.iterdir()}
    return sorted(days)


def _chains(data: Path, symbols: list[str]) -> list[tuple[str, list[Path]]]:
    """(table, its files in time order) of each type and key the replay reads, in (table, key) order."""
    keys = {safe_key(s) for s in symbols}
    chains: dict[tuple[str, str], list[Path]] = {}
    for table in sorted(t for t in data.iterdir() if t.is_dir() and t.name not in RESERVED):
        for day in sorted(d for d in table.iterdir() if d.is_dir()):
            for key in sorted(k for k in day.iterdir() if k.is_dir()):
                if table.name == _STATUS or key.name in keys:
                    chains.setdefault((table.name, key.name), []).extend(sorted(key.glob("*.parquet")))
    return [(table, files) for (table, _), files in sorted(chains.items())]


def read_rows(data: Path, symbols: list[str]) -> Iterator[dict[str, Any]]:
    """Every market-data row of the recording for ``symbols`` (and every ``status``), in recorded
    order: by ``gw_ns``, then type and ``seq``. Streamed: each file is read a batch at a time, and the
    files of each type and key (in time order within themselves) are merged, so a recording of any
    size replays in bounded memory."""
    streams = [_file_rows(files) for _, files in _chains(data, symbols)]
    return heapq.merge(*streams, key=lambda r: (r.get("gw_ns") or 0, str(r.get("type")), r.get("seq") or 0))


def _file_rows(files: list[Path]) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=4096):
            yield from batch.to_pylist()


def read_messages(data: Path, symbols: list[str]) -> Iterator[tuple[int, Any]]:
    """(recorded ns, message) of every row :func:`read_rows` gives, in the same order: the message
    :func:`to_message` makes of it (rows it makes None of are skipped), or True/False for a recorded
    change of the venue's connection (``status`` rows that repeat the state are skipped).

    The fast reader of the replay and the backtest: a batch of a file is read a column at a time
    (no map per row), and rows of a type whose model takes its columns as they are (checked on the
    batch's first row against the type's codec) become models in one call per batch."""
    streams = [_file_messages(i, table, files) for i, (table, files) in enumerate(_chains(data, symbols))]
    connected = True
    for ns, _typ, _seq, _i, msg in heapq.merge(*streams):
        if msg.__class__ is dict:  # a status row
            now = bool(msg.get("connected", True))
            if now != connected:
                connected = now
                yield ns, now
        elif msg is not None:
            yield ns, msg


_Keyed = tuple[int, str, int, int, Any]  # (gw_ns, type, seq, stream, message): read_rows' order, no ties


def _file_messages(stream: int, table: str, files: list[Path]) -> Iterator[_Keyed]:
    # the rows of each batch go to the merge from C (its zip), not a Python frame resumed per row
    return itertools.chain.from_iterable(_file_batches(stream, table, files))


def _file_batches(stream: int, table: str, files: list[Path]) -> Iterator[Iterator[_Keyed]]:
    import pyarrow.parquet as pq

    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=_READ_BATCH):
            # A batch makes a few hundred thousand objects, none in a reference cycle: the cyclic
            # collector, run every 700 of them, would walk them (and all that lives) again and again.
            collecting = gc.isenabled()
            gc.disable()
            try:
                keyed = _keyed(stream, table, batch)
            finally:
                if collecting:
                    gc.enable()
            yield keyed
        # (a row of no known type is None here: dropped after the merge, where read_rows' order is kept)


def _keyed(stream: int, table: str, batch: Any) -> Iterator[_Keyed]:
    """The rows of one batch of a file, keyed for the merge (see :func:`_file_messages`)."""
    names = batch.schema.names
    cols = {name: _pylist(batch.column(i)) for i, name in enumerate(names)}
    n = batch.num_rows
    gws = [v or 0 for v in cols["gw_ns"]] if "gw_ns" in cols else [0] * n
    seqs = [v or 0 for v in cols["seq"]] if "seq" in cols else [0] * n
    typs = [str(v) for v in cols["type"]] if "type" in cols else ["None"] * n
    if table == _STATUS:
        rows: list[Any] = [dict(zip(names, r, strict=True)) for r in zip(*cols.values(), strict=True)]
    else:
        rows = _batch_messages(batch, names, cols, typs)
    return zip(gws, typs, seqs, itertools.repeat(stream, n), rows, strict=True)


def _pylist(col: Any) -> list[Any]:
    """``col.to_pylist()``; for a list of lists of numbers without nulls (books' levels), built from the
    flat values in C-level passes (pyarrow's own conversion costs a few µs a row there)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if not (pa.types.is_list(t) and pa.types.is_list(t.value_type)) or col.null_count or col.offset:
        return list(col.to_pylist())
    inner = col.values
    if inner.null_count or inner.values.null_count or inner.offset or not len(inner):
        return list(col.to_pylist())
    width = pc.min_max(pc.list_value_length(inner)).as_py()
    flat = inner.values.to_pylist()
    w = width["min"]
    if w != width["max"] or not w or len(flat) != w * len(inner):
        return list(col.to_pylist())
    levels = list(map(list, zip(*[iter(flat)] * w, strict=True)))  # [[price, size], ...] of every row
    count = pc.min_max(pc.list_value_length(col)).as_py()
    k = count["min"]
    if k == count["max"] and k and k * len(col) == len(levels):
        return list(map(list, zip(*[iter(levels)] * k, strict=True)))
    oo = col.offsets.to_pylist()
    return [levels[a:b] for a, b in itertools.pairwise(oo)]


def _batch_messages(batch: Any, names: list[str], cols: dict[str, list[Any]], typs: list[str]) -> list[Any]:
    """The message of each row of one batch (None where :func:`to_message` gives None)."""
    codec = wire.MARKET_DATA_TYPES.get(typs[0]) if typs else None
    fields = [f.name for f in dataclasses.fields(codec.model)] if codec is not None else []
    if (
        codec is not None
        and codec.key == "symbol"
        and typs.count(typs[0]) == len(typs)
        and [n for n in names if n != "type"] == fields
        and all(batch.column(i).null_count == 0 for i in range(len(names)))
    ):
        msgs = list(map(codec.model, *(cols[f] for f in fields)))
        first = dict(zip(names, (cols[n][0] for n in names), strict=True))
        if msgs[0] == codec.decode(first):  # the model takes the columns as they are: the codec agrees
            return msgs
    return [to_message(dict(zip(names, r, strict=True))) for r in zip(*cols.values(), strict=True)]


def to_message(row: dict[str, Any]) -> Any:
    """The protocol message a recorded row was (its ``type``'s codec); None for a type this version
    does not know (recorded by a newer server) and for what the server itself says about its venue
    (types keyed by venue, not symbol: the replay server says its own)."""
    codec = wire.MARKET_DATA_TYPES.get(str(row.get("type")))
    if codec is None or codec.key != "symbol":
        return None
    return codec.decode({k: v for k, v in row.items() if v is not None})


def with_run_dir(text: str, run_dir: str) -> str:
    """A config's TOML text with ``[server] run_dir`` set to ``run_dir``: the file the replay's
    supervised strategies read (they find the replay server's sockets through it)."""
    value = f"run_dir = {json.dumps(run_dir)}"
    if "run_dir" in tomllib.loads(text).get("server", {}):
        return re.sub(r"(?m)^[ \t]*run_dir[ \t]*=.*$", lambda _: value, text, count=1)
    if re.search(r"(?m)^\[server\][ \t]*(#.*)?$", text):
        return re.sub(r"(?m)^\[server\][ \t]*(#.*)?$", lambda m: m.group(0) + "\n" + value, text, count=1)
    return f"[server]\n{value}\n\n{text}"


class ReplayVenue(Venue):
    """A venue that plays a recording (see the module docstring).

    ``speed``: 1.0 is the recorded pace, 10.0 ten times faster, 0 (or ``inf``) as fast as possible.
    ``wait_for``: start once this many strategies have joined (then ``grace`` seconds more, for their
    market-data subscriptions to reach the server). ``linger``: seconds between the last message and
    the server's stop (``stop_at_end``), for strategies to read what is still on its way to them.
    """

    name = "replay"
    simulated = True

    def __init__(self, data: Path, symbols: list[str], *, speed: float = 1.0, wait_for: int = 0,
                 grace: float = 0.5, linger: float = 1.0, stop_at_end: bool = True) -> None:  # fmt: skip
        if speed < 0 or math.isnan(speed):
            raise SeqtradeError("replay: --speed must be >= 0 (0: as fast as possible)")
        self.data = data
        self.symbols = list(symbols)
        self.speed = speed
        self.wait_for = wait_for
        self.grace = grace
        self.linger = linger
        self.stop_at_end = stop_at_end
        self.days = recorded_days(data)
        self.published = 0
        self.finished = trio.Event()
        self._sink: VenueSink | None = None
        self._instruments = {s: Instrument(s, 1e-8, 1e-8, 1e-8) for s in self.symbols}

    @property
    def instruments(self) -> dict[str, Instrument]:
        return self._instruments

    async def run(self, sink: VenueSink, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._sink = sink
        sink.set_connected(True)
        task_status.started()
        await self._wait_for_strategies(sink)
        log.info("replay: %s, %s, at %s", self.data, ", ".join(self.days) or "no data",
                 "full speed" if self._full_speed else f"{self.speed:g}x the recorded pace")  # fmt: skip
        await self._play(sink, read_messages(self.data, self.symbols))
        log.info("replay finished: %d messages", self.published)
        self.finished.set()
        if self.stop_at_end:
            await trio.sleep(self.linger)
            stop = getattr(sink, "request_stop", None)
            if stop is not None:
                stop()
        await trio.sleep_forever()

    @property
    def _full_speed(self) -> bool:
        return self.speed == 0 or math.isinf(self.speed)

    async def _wait_for_strategies(self, sink: VenueSink) -> None:
        connected = getattr(sink, "connected_strategies", None)
        if not self.wait_for or connected is None:
            return
        log.info(
            "replay: waiting for %d strateg%s to join", self.wait_for, "y" if self.wait_for == 1 else "ies"
        )
        # The gateway notifies nobody of a join: polled, 20 times a second, before the replay starts.
        while len(connected()) < self.wait_for:  # noqa: ASYNC110
            await trio.sleep(0.05)
        await trio.sleep(self.grace)

    async def _play(self, sink: VenueSink, messages: Iterator[tuple[int, Any]]) -> None:
        full = self._full_speed
        start = trio.current_time()
        first: int | None = None
        for i, row in enumerate(messages):
            ns, msg = row
            if first is None:
                first = ns
            if full:
                if i % _BATCH == _BATCH - 1:
                    await trio.lowlevel.checkpoint()
            else:
                due = start + (ns - first) / 1e9 / self.speed
                if due > trio.current_time():
                    await trio.sleep_until(due)
            if msg is True or msg is False:
                sink.set_connected(msg)
            else:
                sink.publish_market(msg)
            self.published += 1

    # ------------------------------------------------------------------ orders: refused

    async def place_order(self, order: VenueOrder) -> None:
        await self._event(OrderEvent(order.venue_order_id, OrderStatus.REJECTED, error_msg=REJECT))

    async def cancel_order(self, venue_order_id: str, symbol: str) -> None:
        await self._event(
            OrderEvent(venue_order_id, OrderStatus.REJECTED, EventKind.CANCEL_FAILED, error_msg=REJECT)
        )

    async def amend_order(self, venue_order_id: str, symbol: str, price: float | None,
                          quantity: float | None) -> None:  # fmt: skip
        await self._event(
            OrderEvent(venue_order_id, OrderStatus.REJECTED, EventKind.AMEND_FAILED, error_msg=REJECT)
        )

    async def _event(self, event: OrderEvent) -> None:
        if self._sink is not None:
            await self._sink.order_event(event)

    async def query_order(self, venue_order_id: str, symbol: str) -> OrderEvent | None:
        return None

    async def open_orders(self) -> list[OrderEvent]:
        return []
