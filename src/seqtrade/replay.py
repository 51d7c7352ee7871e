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

import bisect
import dataclasses
import gc
import heapq
import itertools
import json
import logging
import math
import operator
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
_RUN = 2_048  # rows made Python objects at a time (soon freed: fewer of them met by the cyclic collector)


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

    What the messages hold, whatever the Parquet column types are (a file written by another tool
    may hold integer or decimal columns): a field the model declares ``float`` is a Python float, one
    declared ``list[list[float]]`` (a book's ``bids`` and ``asks``) a fresh list (shared with no other
    message) of fresh lists of floats, ``[price, size]`` where the file's levels are pairs, and one
    declared ``str`` (a trade's ``side``) a str. The columns are cast in Arrow (float64, string), a
    batch at a time, not value by value.

    The fast reader of the replay and the backtest: a batch of a file is read a column at a time
    (no map per row), and rows of a type whose model takes its columns as they are (checked on the
    batch's first row against the type's codec) become models in one call per batch, 2,048 rows
    (a run) at a time. A run's (ns, message) pairs are built in C, and the runs of the file chains
    (one per type and key) are merged a run at a time (:func:`_merged`), in exactly the order
    :func:`heapq.merge` of their rows by (gw_ns, type, seq, chain) gives (ties and all, and chains out
    of order); the iterator returned hands out the merged runs' pairs from C."""
    return itertools.chain.from_iterable(_merged(data, symbols))


_Keyed = tuple[int, str, int, int, Any]  # (gw_ns, type, seq, stream, message): read_rows' order, no ties
_NS = operator.itemgetter(0)
_MSG = operator.itemgetter(1)


class _Run:
    """The rows of one batch of a file (or what is left of a chain's loaded batches): their keys as
    lists (``gws`` ns, ``typs``, ``seqs``), the (ns, message) pairs, and whether any message is a
    status row (a dict) or None (``dirty``: to be sorted out when the pairs are handed on)."""

    __slots__ = ("gws", "typs", "seqs", "items", "dirty", "rising")

    def __init__(self, gws: list[Any], typs: list[str], seqs: list[Any], items: list[tuple[Any, Any]],
                 dirty: bool, rising: bool = False) -> None:  # fmt: skip
        self.gws = gws
        self.typs = typs
        self.seqs = seqs
        self.items = items
        self.dirty = dirty
        self.rising = rising  # gws known to rise strictly (checked in Arrow)


class _Chain:
    """A file chain in the merge: its runs still to read, the loaded rows (``run``) from ``pos`` on,
    and the key of the last row loaded (each run must go on from it: see :func:`_ascending`)."""

    __slots__ = ("stream", "runs", "run", "pos", "done", "last", "pending")

    def __init__(self, stream: int, runs: Iterator[_Run]) -> None:
        self.stream = stream
        self.runs = runs
        self.run = _Run([], [], [], [], False)
        self.pos = 0
        self.done = False
        self.last: tuple[Any, str, Any] | None = None
        self.pending: _Run | None = None  # a run that is not in order: read by the fallback merge

    def load(self) -> bool:
        """The next run appended to what is left of this chain's rows; False (and nothing appended)
        when it does not go on in order (the merge falls back to :func:`heapq.merge`)."""
        new = next(self.runs, None)
        if new is None:
            self.done = True
            return True
        if not _ascending(new, self.last):
            self.pending = new
            return False
        run, p = self.run, self.pos
        if p < len(run.items):
            new = _Run(run.gws[p:] + new.gws, run.typs[p:] + new.typs, run.seqs[p:] + new.seqs,
                       run.items[p:] + new.items, run.dirty or new.dirty)  # fmt: skip
        self.run, self.pos = new, 0
        self.last = (new.gws[-1], new.typs[-1], new.seqs[-1])
        return True


def _ascending(run: _Run, last: tuple[Any, str, Any] | None) -> bool:
    """Whether the rows of ``run`` are in (gw_ns, type, seq) order and go on from ``last``."""
    gws = run.gws
    try:
        if last is not None and not last <= (gws[0], run.typs[0], run.seqs[0]):
            return False
        if run.rising or all(map(operator.lt, gws, itertools.islice(gws, 1, None))):
            return True
        keys = list(zip(gws, run.typs, run.seqs, strict=True))
        return all(map(operator.le, keys, itertools.islice(keys, 1, None)))
    except TypeError:  # keys that do not compare: the fallback merge meets them as it did before
        return False


def _merged(data: Path, symbols: list[str]) -> Iterator[list[tuple[int, Any]]]:
    """The (ns, message) pairs of :func:`read_messages`, a list at a time.

    :func:`heapq.merge` hands on, row by row, the least of the chains' next rows: over chains each in
    (gw_ns, type, seq) order, that is their rows sorted by (gw_ns, type, seq, chain), the rows of one
    chain with equal keys in their order (rows of two chains never tie). Here each chain is read a
    run (a batch) at a time; ``bound`` is the least of the last ``gw_ns`` loaded of the chains not
    at their end: every row before it is loaded (a chain's rows to come are at or after its last),
    so those rows of every chain are handed on at once, sorted (a stable sort by ``gw_ns`` alone when
    no two of them share one, else by the whole key), and the chains whose last loaded ``gw_ns`` is
    ``bound`` load their next run. A chain alone is handed on as it is (as heapq.merge does). A run
    that is not in order (a local clock that stepped back, keys that do not compare) ends this:
    heapq.merge takes over the chains' rows from where the runs stopped, which is the state it would
    have been in (every row handed on before came before every chain's next row)."""
    chains = [_file_runs(table, files) for table, files in _chains(data, symbols)]
    connected = [True]
    if len(chains) == 1:
        for run in chains[0]:
            yield _sorted_out(run.items, connected) if run.dirty else run.items
        return
    heads = [_Chain(i, runs) for i, runs in enumerate(chains)]
    for h in heads:
        if not h.load():
            yield from _fallback(heads, connected)
            return
    while True:
        live = [h for h in heads if not h.done]
        bound = min(h.run.gws[-1] for h in live) if live else None
        segments = []
        for h in heads:
            run = h.run
            if h.pos < len(run.items):
                cut = bisect.bisect_left(run.gws, bound, h.pos) if live else len(run.items)
                if cut > h.pos:
                    segments.append((h, cut))
        if segments:
            items = _merge_segments(segments)
            dirty = any(h.run.dirty for h, _ in segments)
            for h, cut in segments:
                h.pos = cut
            yield _sorted_out(items, connected) if dirty else items
        if not live:
            return
        for h in live:
            if h.run.gws[-1] == bound and not h.load():
                yield from _fallback(heads, connected)
                return


def _merge_segments(segments: list[tuple[_Chain, int]]) -> list[tuple[int, Any]]:
    """The pairs of each chain's rows ``pos:cut``, in (gw_ns, type, seq, chain) order (stable)."""
    if len(segments) == 1:
        h, cut = segments[0]
        items = h.run.items
        return items if h.pos == 0 and cut == len(items) else items[h.pos : cut]
    gws: list[Any] = []
    items = []
    for h, cut in segments:
        gws += h.run.gws[h.pos : cut]
        items += h.run.items[h.pos : cut]
    if len(set(gws)) == len(gws):  # no two rows at one gw_ns: their order is gw_ns' (ns of the pairs)
        items.sort(key=_NS)
        return items
    keys: list[tuple[Any, str, Any, int]] = []
    for h, cut in segments:
        r, p = h.run, h.pos
        keys += zip(
            r.gws[p:cut], r.typs[p:cut], r.seqs[p:cut], itertools.repeat(h.stream, cut - p), strict=True
        )
    return list(map(items.__getitem__, sorted(range(len(keys)), key=keys.__getitem__)))


def _fallback(heads: list[_Chain], connected: list[bool]) -> Iterator[list[tuple[int, Any]]]:
    """The chains' rows from where their runs stopped, merged row by row by :func:`heapq.merge`."""

    def keyed(h: _Chain) -> Iterator[_Keyed]:
        r, p = h.run, h.pos
        rest = zip(r.gws[p:], r.typs[p:], r.seqs[p:], itertools.repeat(h.stream), map(_MSG, r.items[p:]))
        later = itertools.chain([h.pending] if h.pending is not None else [], h.runs)
        return itertools.chain(rest, itertools.chain.from_iterable(
            zip(n.gws, n.typs, n.seqs, itertools.repeat(h.stream), map(_MSG, n.items)) for n in later))  # fmt: skip

    out: list[tuple[int, Any]] = []
    for ns, _typ, _seq, _i, msg in heapq.merge(*(keyed(h) for h in heads)):
        out.append((ns, msg))
        if len(out) == _BATCH:
            yield _sorted_out(out, connected)
            out = []
    if out:
        yield _sorted_out(out, connected)


def _sorted_out(items: list[tuple[int, Any]], connected: list[bool]) -> list[tuple[int, Any]]:
    """``items`` without the Nones, a status row (a dict) made True/False where the venue's connection
    changes (``connected[0]``: the state so far), dropped where it repeats it."""
    out = []
    state = connected[0]
    for item in items:
        msg = item[1]
        if msg.__class__ is dict:
            now = bool(msg.get("connected", True))
            if now != state:
                state = now
                out.append((item[0], now))
        elif msg is not None:
            out.append(item)
    connected[0] = state
    return out


def _file_runs(table: str, files: list[Path]) -> Iterator[_Run]:
    """The runs of a chain's files: each batch read, :data:`_RUN` rows at a time."""
    import pyarrow.parquet as pq

    for f in files:
        pf = pq.ParquetFile(f)
        one = _one_valued(pf)
        if one:  # read as dictionaries: no string per row decoded (the type, the symbol)
            pf = pq.ParquetFile(f, read_dictionary=one)
        for batch in pf.iter_batches(batch_size=_READ_BATCH):
            for start in range(0, batch.num_rows, _RUN):
                yield _run(table, batch.slice(start, _RUN))


def _one_valued(pf: Any) -> list[str]:
    """The string columns of a Parquet file whose statistics say they hold one value and no null."""
    import pyarrow as pa

    md = pf.metadata
    out = []
    for j in range(md.num_columns):
        name = md.schema.column(j).path
        field = pf.schema_arrow.field(name) if name in pf.schema_arrow.names else None
        if field is None or not _is_string(field.type, pa) or not md.num_row_groups:
            continue
        stats = [md.row_group(i).column(j).statistics for i in range(md.num_row_groups)]
        if all(
            s is not None
            and s.has_min_max
            and s.has_null_count
            and not s.null_count
            and s.min == s.max == stats[0].min
            for s in stats
        ):
            out.append(name)
    return out


def _keyed(stream: int, table: str, batch: Any) -> Iterator[_Keyed]:
    """The rows of one batch of a file, keyed for :func:`heapq.merge` (as read_messages' merge orders)."""
    r = _run(table, batch)
    return zip(r.gws, r.typs, r.seqs, itertools.repeat(stream), map(_MSG, r.items))


def _run(table: str, batch: Any) -> _Run:
    """One batch of a file as a run: its keys, and its messages (status rows as dicts)."""
    # A batch makes a few hundred thousand objects, none in a reference cycle: the cyclic collector,
    # run every 700 of them, would walk them (and all that lives) again and again.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _run_of(table, batch)
    finally:
        if collecting:
            gc.enable()


def _run_of(table: str, batch: Any) -> _Run:
    import pyarrow as pa

    names = batch.schema.names
    n = batch.num_rows
    arrays = dict(zip(names, batch.columns, strict=True))
    typ = arrays.get("type")
    kinds: list[Any] = _pylist(typ) if typ is not None else []
    if typ is None:
        typs = ["None"] * n
    elif _is_text(typ.type, pa) and not typ.null_count:
        typs = kinds
    else:
        typs = [str(v) for v in kinds]
    if table == _STATUS:
        cols = {name: kinds if name == "type" else _pylist(a) for name, a in arrays.items()}
        gws, seqs = _keys(arrays, cols, "gw_ns", n, pa), _keys(arrays, cols, "seq", n, pa)
        rows: list[Any] = [dict(zip(names, r, strict=True)) for r in zip(*cols.values(), strict=True)]
        return _Run(gws, typs, seqs, list(zip(gws, rows, strict=True)), True)
    if typs.count(typs[0]) != n:
        return _mixed(table, batch, typs)
    codec = wire.MARKET_DATA_TYPES.get(typs[0])
    if codec is not None and codec.key == "symbol":
        arrays = _cast(arrays, codec)
    cols = {name: kinds if name == "type" else _pylist(a) for name, a in arrays.items()}
    gws, seqs = _keys(arrays, cols, "gw_ns", n, pa), _keys(arrays, cols, "seq", n, pa)
    msgs, dirty = _batch_messages(batch, names, cols, typs)
    return _Run(gws, typs, seqs, list(zip(gws, msgs, strict=True)), dirty, _rising(arrays.get("gw_ns"), pa))


def _rising(col: Any, pa: Any) -> bool:
    """Whether an integer column without nulls rises strictly (False: not known)."""
    import pyarrow.compute as pc

    if col is None or not pa.types.is_integer(col.type) or col.null_count:
        return False
    n = len(col)
    return n < 2 or bool(pc.all(pc.less(col.slice(0, n - 1), col.slice(1))).as_py())


def _mixed(table: str, batch: Any, typs: list[str]) -> _Run:
    """A batch whose rows are of several types (a file another tool wrote): each type's rows a run of
    their own (its columns cast as its model declares), then put back in the batch's order."""
    import pyarrow as pa

    runs: dict[str, tuple[list[int], _Run]] = {}
    for t in dict.fromkeys(typs):
        at = [i for i, x in enumerate(typs) if x == t]
        runs[t] = (at, _run_of(table, batch.take(pa.array(at, pa.int64()))))
    n = batch.num_rows
    gws: list[Any] = [0] * n
    seqs: list[Any] = [0] * n
    items: list[Any] = [None] * n
    for at, r in runs.values():
        for j, i in enumerate(at):
            gws[i], seqs[i], items[i] = r.gws[j], r.seqs[j], r.items[j]
    return _Run(gws, typs, seqs, items, any(r.dirty for _, r in runs.values()))


def _same(col: Any) -> str | None:
    """The one value of a string column without nulls whose values are all that string, else None:
    every value as long as the first, and the values' bytes the first's repeated (no per-value compare)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(col)
    if not _is_string(col.type, pa) or col.null_count or not n:
        return None
    first: str = col[0].as_py()
    size = pc.min_max(pc.binary_length(col)).as_py()
    b = first.encode()
    if size["min"] != size["max"] or size["min"] != len(b):
        return None
    if not b:
        return first
    _, offsets, data = col.buffers()
    start = memoryview(offsets).cast("q" if pa.types.is_large_string(col.type) else "i")[col.offset]
    return first if data[start : start + n * len(b)].to_pybytes() == b * n else None


def _keys(arrays: dict[str, Any], cols: dict[str, list[Any]], name: str, n: int, pa: Any) -> list[Any]:
    """A key column's values with None as 0 (``v or 0``, as read_rows' key), [0] * n without it."""
    values = cols.get(name)
    if values is None:
        return [0] * n
    if pa.types.is_integer(arrays[name].type) and not arrays[name].null_count:
        return values
    return [v or 0 for v in values]


def _cast(arrays: dict[str, Any], codec: Any) -> dict[str, Any]:
    """The columns of ``codec``'s fields cast in Arrow to what its model declares: ``float`` and
    ``list[list[float]]`` to float64 (from integer, decimal or another float), ``str`` to string
    (from an integer)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = dict(arrays)
    for f in dataclasses.fields(codec.model):
        a = arrays.get(f.name)
        if a is None:
            continue
        t = a.type
        if pa.types.is_dictionary(t) and not _is_text(t, pa):
            a = out[f.name] = a.dictionary_decode()
            t = a.type
        if f.type == "float" and _number(t, pa):
            out[f.name] = pc.cast(a, pa.float64(), safe=False)
        elif (
            f.type == "list[list[float]]"
            and _is_list(t, pa)
            and _is_list(t.value_type, pa)
            and _number(t.value_type.value_type, pa)
        ):
            out[f.name] = pc.cast(a, pa.list_(pa.list_(pa.float64())), safe=False)
        elif f.type == "str" and (pa.types.is_integer(t) or pa.types.is_large_string(t)):
            out[f.name] = pc.cast(a, pa.string())
    return out


def _number(t: Any, pa: Any) -> bool:
    """A numeric Arrow type that is not float64 already."""
    return (
        bool(pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_floating(t))
        and t != pa.float64()
    )


def _is_string(t: Any, pa: Any) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _is_text(t: Any, pa: Any) -> bool:
    """Strings, or a dictionary of strings (a column whose values are str)."""
    return _is_string(t, pa) or bool(pa.types.is_dictionary(t) and _is_string(t.value_type, pa))


def _is_list(t: Any, pa: Any) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t))


def _view(col: Any) -> memoryview:
    """The bytes of the values of a fixed-width column of 8-byte values without nulls (its slice)."""
    return memoryview(col.buffers()[1])[col.offset * 8 : (col.offset + len(col)) * 8]


def _pylist(col: Any) -> list[Any]:
    """``col.to_pylist()``; a string column of one value is that str n times; a list of lists of
    numbers without nulls (books' levels) is built from the flat values in C-level passes (pyarrow's own
    conversion costs a few µs a row there): float64 values straight from their buffer (a memoryview's
    ``tolist``), every level a fresh list."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_dictionary(t):
        if col.null_count:
            return list(col.dictionary_decode().to_pylist())
        values = col.dictionary.to_pylist()
        return (
            [values[0]] * len(col)
            if len(values) == 1
            else list(map(values.__getitem__, col.indices.to_pylist()))
        )
    if not (pa.types.is_list(t) and pa.types.is_list(t.value_type)) or col.null_count:
        one = _same(col) if _is_string(t, pa) else None
        return [one] * len(col) if one is not None else list(col.to_pylist())
    inner = col.flatten()  # the rows' levels (a slice of the child array)
    if inner.null_count or not len(inner):
        return list(col.to_pylist())
    flat = inner.flatten()
    width = pc.min_max(pc.list_value_length(inner)).as_py()
    w = width["min"]
    if flat.null_count or w != width["max"] or not w or len(flat) != w * len(inner):
        return list(col.to_pylist())
    count = pc.min_max(pc.list_value_length(col)).as_py()
    k = count["min"]
    uniform = k == count["max"] and k and k * len(col) == len(inner)
    if flat.type == pa.float64():
        view = _view(flat)
        if uniform:
            rows: list[Any] = view.cast("d", (len(col), k, w)).tolist()
            return rows
        levels: list[Any] = view.cast("d", (len(inner), w)).tolist()
    else:
        values = flat.to_pylist()
        levels = list(map(list, zip(*[iter(values)] * w, strict=True)))  # [[price, size], ...] of every row
        if uniform:
            return list(map(list, zip(*[iter(levels)] * k, strict=True)))
    ends = itertools.accumulate(pc.list_value_length(col).to_pylist(), initial=0)
    return [levels[a:b] for a, b in itertools.pairwise(ends)]


def _batch_messages(batch: Any, names: list[str], cols: dict[str, list[Any]], typs: list[str]
                    ) -> tuple[list[Any], bool]:  # fmt: skip
    """The message of each row of one batch (None where :func:`to_message` gives None), and whether
    there may be a None among them."""
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
            return msgs, False
    return [to_message(dict(zip(names, r, strict=True))) for r in zip(*cols.values(), strict=True)], True


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
