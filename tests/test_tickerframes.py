"""The ticker template (seqtrade.tickerframes): the same frames as the codec, decoded the same way.

The encoder must give :func:`wire.encode_message`'s bytes for every ticker (the golden frames
included); the decoder must give :func:`wire.decode_message`'s ticker for every frame it takes, and
take every frame the live feed sends; any other frame (a byte changed, cut or added, keys in another
order) it must hand back (None), so the general decoder decides.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtrade import wire
from seqtrade.client.protocol import ClientProtocol
from seqtrade.errors import WireError
from seqtrade.models import Ticker
from seqtrade.tickerframes import MAX_TOPICS, TickerDecoder, TickerEncoder

FRAMES = json.loads((Path(__file__).parent / "fixtures" / "wire" / "frames.json").read_text())
LIVE_TS = 1_764_522_000_123  # epoch ms, as a venue stamps
LIVE_GW = 1_764_522_000_123_456_789  # epoch ns, as the server stamps

# Every width of seq's encoding, and its edges.
SEQS = [0, 1, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**64 - 1]


def ticker(
    symbol: str = "BTC-USDT", seq: int = 1, ts: int = LIVE_TS, gw: int = LIVE_GW, **kw: float
) -> Ticker:
    values = dict(last_price=60_000.0, bid_price=59_999.9, ask_price=60_000.1, bid_size=0.5123,
                  ask_size=0.8765, volume_24h=1234.5678) | kw  # fmt: skip
    return Ticker(symbol, ts, seq=seq, gw_ns=gw, **values)


def same(a: Ticker | None, b: Ticker | None) -> bool:
    """Equal tickers, NaN equal to NaN (compared through their frames)."""
    if a is None or b is None:
        return a is b
    return wire.encode_message(a) == wire.encode_message(b)


@pytest.mark.parametrize("seq", SEQS)
def test_every_seq_width_gives_the_codecs_bytes_and_decodes_back(seq: int) -> None:
    t = ticker(seq=seq)
    frame = TickerEncoder(t.symbol).encode(t)
    assert frame == wire.encode_message(t)
    assert TickerDecoder().decode(frame) == t == wire.decode_message(frame)


def test_one_encoder_follows_seq_across_every_width_both_ways() -> None:
    enc, dec = TickerEncoder("ETH-USDT"), TickerDecoder()
    for seq in [*SEQS, *reversed(SEQS)]:
        t = ticker("ETH-USDT", seq=seq)
        frame = enc.encode(t)
        assert frame == wire.encode_message(t)
        assert dec.decode(frame) == t


@pytest.mark.parametrize(("ts", "gw"), [(5, LIVE_GW), (LIVE_TS, 0), (2**32 - 1, LIVE_GW), (-1, LIVE_GW)])
def test_numbers_outside_the_template_still_encode_as_the_codec_does(ts: int, gw: int) -> None:
    """A small or negative ts (tests, replays of odd data), gw_ns not stamped yet or past 64 bits:
    the codec's own smallest-integer encoding, and the decoder hands the frame back."""
    t = ticker(ts=ts, gw=gw)
    frame = TickerEncoder(t.symbol).encode(t)
    assert frame == wire.encode_message(t)
    assert TickerDecoder().decode(frame) is None
    assert wire.decode_message(frame) == t


def test_a_number_past_64_bits_fails_as_in_the_codec() -> None:
    t = ticker(gw=2**64)
    with pytest.raises(OverflowError):
        wire.encode_message(t)
    with pytest.raises(OverflowError):
        TickerEncoder(t.symbol).encode(t)


def test_integer_prices_become_floats_as_in_the_codec() -> None:
    t = ticker(last_price=60_000, bid_size=1)  # type: ignore[arg-type]
    frame = TickerEncoder(t.symbol).encode(t)
    assert frame == wire.encode_message(t)
    decoded = TickerDecoder().decode(frame)
    assert decoded is not None and type(decoded.last_price) is float and decoded.last_price == 60_000.0


def test_a_price_that_is_no_number_fails_as_in_the_codec() -> None:
    t = ticker(last_price="x")  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)) as codec:
        wire.encode_message(t)
    with pytest.raises(codec.type):
        TickerEncoder(t.symbol).encode(t)


symbols = st.from_regex(r"[A-Z0-9]{1,12}(-[A-Z0-9]{1,12}){0,4}", fullmatch=True)
floats = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=300, deadline=None)
@given(
    sym=symbols,
    ts=st.one_of(st.integers(0, 2**64 - 1), st.just(LIVE_TS)),
    gw=st.one_of(st.integers(0, 2**64 - 1), st.just(LIVE_GW)),
    seq=st.one_of(st.integers(0, 2**64 - 1), st.sampled_from(SEQS)),
    values=st.tuples(floats, floats, floats, floats, floats, floats),
)
def test_any_ticker_same_bytes_and_same_decoding(sym, ts, gw, seq, values) -> None:
    t = Ticker(sym, ts, *values, seq=seq, gw_ns=gw)
    frame = TickerEncoder(sym).encode(t)
    assert frame == wire.encode_message(t)
    decoded = TickerDecoder().decode(frame)
    if ts > 2**32 - 1 and gw > 2**32 - 1:  # what a live feed sends: always the template's
        assert decoded is not None
    assert decoded is None or same(decoded, wire.decode_message(frame))


def test_a_long_symbol_uses_the_longer_string_encoding() -> None:
    sym = "A" * 40  # past msgpack's fixstr (31 bytes): str8
    t = ticker(sym, seq=300)
    frame = TickerEncoder(sym).encode(t)
    assert frame == wire.encode_message(t)
    assert TickerDecoder().decode(frame) == t


@pytest.mark.parametrize(
    "name", sorted(n for n, f in FRAMES.items() if bytes.fromhex(f).startswith(b"ticker/"))
)
def test_golden_ticker_frames(name: str) -> None:
    """The published frames: encoded byte for byte; decoded as the codec decodes them, or left to it."""
    frame = bytes.fromhex(FRAMES[name])
    t = wire.decode_message(frame)
    assert isinstance(t, Ticker)
    assert TickerEncoder(t.symbol).encode(t) == frame
    decoded = TickerDecoder().decode(frame)
    assert decoded is None or decoded == t


def mutations(frame: bytes) -> list[bytes]:
    """Every single byte of ``frame`` replaced (by its bits flipped and by a few chosen values), every
    cut, and a byte added at the end."""
    out = []
    for i in range(len(frame)):
        for b in {frame[i] ^ 0xFF, frame[i] ^ 0x01, 0x00, 0xCC, 0xCF, 0x7F, 0x8A, 0x8C}:
            if b != frame[i]:
                out.append(frame[:i] + bytes([b]) + frame[i + 1 :])
    out += [frame[:i] for i in range(len(frame))]
    out += [frame + b"\x00", frame + b"\xc0"]
    return out


@pytest.mark.parametrize("seq", [5, 200, 40_000, 100_000, 2**33])
def test_a_changed_byte_is_never_taken_for_another_ticker(seq: int) -> None:
    """Every mutation of a live frame: the decoder gives what the general decoder gives, or None."""
    frame = TickerEncoder("BTC-USDT").encode(ticker(seq=seq))
    dec = TickerDecoder()
    taken = 0
    for m in mutations(frame):
        got = dec.decode(m)
        if got is None:
            continue
        taken += 1
        assert same(got, wire.decode_message(m)), m.hex()
    assert taken  # changed values (a price's bits) are still the template's frames


def test_keys_in_another_order_are_left_to_the_codec() -> None:
    """Another encoder's map with bid and ask swapped (same length, same layout of widths)."""
    t = ticker(seq=1000)
    body = {"type": "ticker", "symbol": t.symbol, "ts": t.ts, "last_price": t.last_price, "ask_price": t.ask_price,
            "bid_price": t.bid_price, "bid_size": t.bid_size, "ask_size": t.ask_size, "volume_24h": t.volume_24h,
            "seq": t.seq, "gw_ns": t.gw_ns}  # fmt: skip
    frame = wire.topic("ticker", t.symbol) + msgpack.packb(body)
    assert len(frame) == len(wire.encode_message(t))
    assert TickerDecoder().decode(frame) is None
    p = ClientProtocol("s1")
    assert p.receive_md_frame(frame) == t  # the general decoder, same ticker


def test_frames_of_other_types_and_garbage_are_left_to_the_codec() -> None:
    dec = TickerDecoder()
    for frame in [b"", b"ticker/", b"ticker//x", b"book/BTC-USDT/\x80", b"\x00" * 300, b"ticker/\xff\xfe/\x8b",
                  *(bytes.fromhex(f) for f in FRAMES.values())]:  # fmt: skip
        got = dec.decode(frame)
        if got is not None:
            assert got == wire.decode_message(frame)


def test_many_topics_beyond_the_tables_still_decode() -> None:
    """A flood of ticker topics: past MAX_TOPICS the decoder keeps no table and the protocol still
    decodes every frame (the general way) with its gaps counted per symbol."""
    p = ClientProtocol("s1")
    n = MAX_TOPICS + 50
    for seq in (1, 2, 4):
        for i in range(n):
            t = ticker(f"S{i}", seq=seq)
            assert p.receive_md_frame(TickerEncoder(t.symbol).encode(t)) == t
    assert p.md_gaps == n  # seq 3 missing on every symbol


def test_the_protocol_counts_gaps_on_template_frames() -> None:
    p = ClientProtocol("s1")
    enc = TickerEncoder("BTC-USDT")
    got = [p.receive_md_frame(enc.encode(ticker(seq=s))) for s in (1, 2, 3, 7, 8, 200, 201)]
    assert [t.seq for t in got if isinstance(t, Ticker)] == [1, 2, 3, 7, 8, 200, 201]
    assert p.md_gaps == 3 + 191


def test_a_bad_frame_on_the_ticker_topic_is_dropped_with_the_codecs_reason(caplog) -> None:
    frame = TickerEncoder("BTC-USDT").encode(ticker(seq=9))
    bad = frame[:-3]
    with pytest.raises(WireError):
        wire.decode_message(bad)
    assert ClientProtocol("s1").receive_md_frame(bad) is None
    assert "dropped a bad market-data frame" in caplog.text


def test_nan_and_infinity_keep_their_bits() -> None:
    t = ticker(seq=77, last_price=math.nan, bid_size=math.inf, ask_size=-math.inf)
    frame = TickerEncoder(t.symbol).encode(t)
    assert frame == wire.encode_message(t)
    decoded = TickerDecoder().decode(frame)
    assert decoded is not None and math.isnan(decoded.last_price) and decoded.bid_size == math.inf
