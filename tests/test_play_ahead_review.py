"""A second reading of the backtest's "play ahead" and of the fill model's book copied at first use
(seqtrade.replay_backtest, seqtrade.fill_model): the claims pinned down on the pure parts.

- The smallest latency the venue counts on (``_latency_floor``) is never above a latency any model
  draws: constant, log-normal and recorded ones floored at the lookahead, nested floors; a model it
  cannot bound counts 0 (no window played ahead).
- The fill model meets a window's market data in the same state whether it plays it before or after
  the requests of the window before are handed to it, when none of them can arrive before that
  window's last message: the same events, in the same order, with the same cumulative state, the same
  funding and cash. Checked on seeded random sessions: two symbols, a swap counted in contracts with
  funding settled inside played-ahead windows, gaps, first orders on a symbol whose book was never
  copied, cancels and amends of orders the played-ahead window fills.
- The queue ahead after a book that removes the level, read from the recorded levels, is what the
  copy gave.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from seqtrade.fill_model import (
    AtLeast,
    ConstantLatency,
    Contract,
    EmpiricalLatency,
    Fees,
    Fill,
    FillModel,
    Latency,
    LogNormalLatency,
    SimOrder,
)
from seqtrade.models import Book, FundingRate, MarkPrice, OrderType, Side, Trade
from seqtrade.replay_backtest import _latency_floor
from seqtrade.replay_fills import SimExchange
from seqtrade.venues.base import VenueOrder

MS = 1_000_000
SWAP = "BTC-USDT-SWAP"
SPOT = "ETH-USDT"
LATE = "SOL-USDT"  # its first book comes late: orders on it first meet no book, then a never-copied one


def _models(lookahead: int) -> list[tuple[str, Latency]]:
    return [
        ("constant", ConstantLatency(lookahead)),
        ("constant, longer", ConstantLatency(3 * lookahead)),
        ("lognormal at least", AtLeast(LogNormalLatency(lookahead, 1.5, seed=3), lookahead)),
        ("lognormal under a floor", AtLeast(LogNormalLatency(lookahead // 10, 0.5, seed=4), lookahead)),
        (
            "recorded at least",
            AtLeast(EmpiricalLatency([1, lookahead // 2, 5 * lookahead], seed=5), lookahead),
        ),
        ("nested", AtLeast(AtLeast(ConstantLatency(2 * lookahead), lookahead // 2), lookahead)),
    ]


@pytest.mark.parametrize("name", [n for n, _ in _models(MS)])
def test_the_latency_floor_is_never_above_a_latency_drawn(name: str) -> None:
    latency = dict(_models(MS))[name]
    floor = _latency_floor(latency)
    assert floor >= MS  # every one is floored at the lookahead: windows can be played ahead
    assert min(latency.sample() for _ in range(5_000)) >= floor


def test_a_latency_the_venue_cannot_bound_counts_zero() -> None:
    assert _latency_floor(LogNormalLatency(10 * MS, 0.1)) == 0  # no floor: it can draw ~0
    assert _latency_floor(EmpiricalLatency([5 * MS, 6 * MS])) == 0  # conservative (its minimum would do)
    assert _latency_floor(AtLeast(LogNormalLatency(10 * MS, 0.1), 2 * MS)) == 2 * MS


# ---------------------------------------------------------------- the same fills, played ahead or not


def _session(rng: random.Random, lookahead: int, n_windows: int) -> list[list[tuple[int, Any]]]:
    """Windows of recorded market data, as the venue reads them: each starts at its first message and
    holds what comes before that plus the lookahead; some windows come after a gap."""
    msgs: list[tuple[int, Any]] = []
    t = 1_000 * MS
    mid = {SWAP: 100.0, SPOT: 2000.0, LATE: 20.0}
    funding_at = (t // MS) + 40  # ms: settled a few windows in
    for i in range(n_windows * 6):
        t += (
            rng.choice((50_000, 120_000, 200_000, 300_000)) if rng.random() > 0.02 else 30 * lookahead
        )  # gaps
        sym = rng.choice((SWAP, SWAP, SPOT, LATE) if i > n_windows else (SWAP, SPOT))
        tick = 0.5 if sym != LATE else 0.01
        mid[sym] += rng.choice((-tick, 0.0, tick))
        m = mid[sym]
        kind = rng.random()
        if kind < 0.5:
            depth = rng.randint(0, 3)  # sometimes an empty side: a level the queue was at is gone
            bids = [[m - tick * (k + 1), float(rng.randint(1, 4))] for k in range(depth)]
            asks = [[m + tick * (k + 1), float(rng.randint(1, 4))] for k in range(rng.randint(0, 3))]
            msgs.append((t, Book(sym, t // MS, bids, asks)))
        elif kind < 0.9:
            side = rng.choice(("buy", "sell"))
            price = m + rng.choice((-2, -1, 0, 1, 2)) * tick
            msgs.append((t, Trade(sym, t // MS, f"t{i}", price, float(rng.randint(1, 6)), side)))
        elif kind < 0.95:
            msgs.append((t, MarkPrice(SWAP, t // MS, mid[SWAP])))
        else:
            msgs.append((t, FundingRate(SWAP, t // MS, rng.choice((0.0001, -0.0002)), funding_at)))
            if t // MS >= funding_at:
                funding_at += 30
    windows: list[list[tuple[int, Any]]] = []
    i = 0
    while i < len(msgs):
        end = msgs[i][0] + lookahead
        w = []
        while i < len(msgs) and msgs[i][0] < end:
            w.append(msgs[i])
            i += 1
        windows.append(w)
    return windows


def _requests(rng: random.Random, k: int, known: list[str], mids: dict[str, float]) -> list[tuple[str, Any]]:
    """What the strategies send in answer to window ``k``: a function of what they saw (seeded), never of
    the fill model's state, as in both runs they saw the same."""
    out: list[tuple[str, Any]] = []
    for j in range(rng.randint(0, 3)):
        what = rng.random()
        if what < 0.5 or not known:
            sym = rng.choice((SWAP, SPOT, LATE))
            tick = 0.5 if sym != LATE else 0.01
            side = rng.choice((Side.BUY, Side.SELL))
            typ = rng.choice((OrderType.LIMIT, OrderType.LIMIT, OrderType.POST_ONLY, OrderType.MARKET,
                              OrderType.IOC))  # fmt: skip
            price = None if typ == OrderType.MARKET else mids[sym] + rng.choice((-2, -1, 0, 1, 2)) * tick
            vid = f"o{k}x{j}"
            known.append(vid)
            out.append(("new", VenueOrder(vid, sym, side, typ, price, float(rng.randint(1, 5)))))
        elif what < 0.8:
            out.append(("cancel", rng.choice(known)))
        else:
            vid = rng.choice(known)
            out.append(
                ("amend", (vid, rng.choice((None, 99.5, 100.0, 2000.5)), rng.choice((None, 1.0, 6.0))))
            )
    return out


def _hand(sim: SimExchange, what: str, arg: Any, end: int) -> list[Any]:
    if what == "new":
        return sim.submit(arg, end)
    if what == "amend":
        return sim.amend(*arg, end)
    return sim.cancel(arg, end)


def _run(windows: list[list[tuple[int, Any]]], latency: Latency, lookahead: int, seed: int,
         *, ahead: bool) -> tuple[list[Any], int, SimExchange]:  # fmt: skip
    """The venue's loop (replay_backtest.BacktestVenue._simulate) on a SimExchange: what reaches the
    server, in order (order events, account events)."""
    sim = SimExchange(Fees(0.0002, 0.0005), latency, contracts={SWAP: Contract(0.01, False, "USDT")})
    floor = _latency_floor(latency) if ahead else 0
    rng = random.Random(seed)
    known: list[str] = []
    mids = {SWAP: 100.0, SPOT: 2000.0, LATE: 20.0}
    delivered: list[Any] = []
    played: dict[int, list[tuple[list[Any], list[Any]]]] = {}
    left: list[Any] = []
    n_ahead = 0

    def deliver(events: list[Any]) -> None:
        delivered.extend(("order", repr(e)) for e in events)
        taken, sim.account_events = sim.account_events, []
        delivered.extend(("account", repr(a)) for a in taken)

    for k, w in enumerate(windows):
        end = w[0][0] + lookahead
        if k in played:
            sim.account_events = left + sim.account_events
            for events, taken in played.pop(k):
                delivered.extend(("order", repr(e)) for e in events)
                delivered.extend(("account", repr(a)) for a in taken)
        else:
            for ns, msg in w:
                events = sim.on_market(msg, ns)
                if events:
                    deliver(events)
        for _, msg in w:
            if isinstance(msg, Book) and msg.bids and msg.asks:
                mids[msg.symbol] = (msg.bids[0][0] + msg.asks[0][0]) / 2
        deliver(sim.advance(end))
        requests = _requests(rng, k, known, mids)
        nxt = windows[k + 1] if k + 1 < len(windows) else None
        if nxt is not None and nxt[-1][0] < end + floor:  # _play_ahead's condition
            n_ahead += 1
            got = []
            for ns, msg in nxt:
                events = sim.on_market(msg, ns)
                if events:  # as _play_ahead: with the funding settled so far, as _deliver does
                    taken, sim.account_events = sim.account_events, []
                    got.append((events, taken))
            played[k + 1] = got
            left, sim.account_events = sim.account_events, []
        for what, arg in requests:
            deliver(_hand(sim, what, arg, end))
    deliver(sim.advance(windows[-1][0][0] + 100 * lookahead + 10 * latency.max_ns))
    return delivered, n_ahead, sim


@pytest.mark.parametrize("name", [n for n, _ in _models(MS)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_fill_model_gives_the_same_events_played_ahead_or_after_the_answers(name: str, seed: int) -> None:
    windows = _session(random.Random(seed), MS, 300)
    after, none_ahead, sim_after = _run(windows, dict(_models(MS))[name], MS, seed, ahead=False)
    ahead, n_ahead, sim_ahead = _run(windows, dict(_models(MS))[name], MS, seed, ahead=True)
    assert none_ahead == 0 and n_ahead > len(windows) // 2  # most windows were played ahead
    assert ahead == after
    assert (sim_ahead.model.cash, sim_ahead.model.position) == (
        sim_after.model.cash,
        sim_after.model.position,
    )
    assert sim_ahead.funding == sim_after.funding and sim_ahead.fills == sim_after.fills
    # the session went through what the claims are about (else the comparison proves little)
    text = "\n".join(line for _, line in after)
    assert sim_after.funding, "no funding settled"
    assert "CANCEL_FAILED" in text and "AMEND_FAILED" in text  # requests for orders already filled
    assert any(f.symbol == LATE for f in sim_after.fills) and any(f.symbol == SWAP for f in sim_after.fills)


# ---------------------------------------------------------------- the book copied at first use


def test_the_queue_ahead_after_a_book_without_the_level_is_zero_and_the_next_trade_fills() -> None:
    m = FillModel(Fees(0.0, 0.0), ConstantLatency(0))
    m.on_book(SWAP, [[100.0, 5.0]], [[101.0, 4.0]], 1 * MS)
    o = SimOrder("b", SWAP, "buy", "limit", 100.0, 2.0)
    m.submit(o, 1 * MS)
    m.advance(2 * MS)
    assert o.ahead == 5.0
    m.on_book(SWAP, [[100.0, 3.0]], [[101.0, 4.0]], 3 * MS)  # cancels: 2 of the 5 were ahead of us
    assert o.ahead == 3.0
    m.on_book(SWAP, [[99.5, 7.0]], [[101.0, 4.0]], 4 * MS)  # the level is gone: nothing ahead
    assert o.ahead == 0.0
    events = m.on_trade(SWAP, 100.0, 1.5, "sell", 5 * MS)
    assert [(e.price, e.quantity) for e in events if isinstance(e, Fill)] == [(100.0, 1.5)]
    # a second order at the same price, on a book never copied since: behind the book's size and ours
    m.on_book(SWAP, [[100.0, 4.0]], [[101.0, 4.0]], 6 * MS)
    o2 = SimOrder("b2", SWAP, "buy", "limit", 100.0, 1.0)
    m.submit(o2, 6 * MS)
    m.advance(7 * MS)
    assert o2.ahead == 4.0 + 0.5 and o.ahead == 0.0
