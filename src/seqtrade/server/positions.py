"""Derivative position rules judged against the ACCOUNT: reduce-only, long/short legs, attribution.

Pure: numbers in, decisions out (no trio, no I/O). Every strategy on one exchange account shares the
account's position in an instrument, so:

- **Reduce-only** (:func:`position_effect`, net mode): an order flagged ``reduce_only`` is sent (as
  reduce-only) only when it reduces the **account's** net position, counting the account's other open
  reduce-only orders on that side; else it is refused with the numbers. One strategy's own position
  never decides: in net mode a strategy's "close" may increase the account's exposure when another
  strategy holds the other side. The venue never sees a reduce-only order it would refuse (OKX 51169,
  51170, 51148), and never a ``posSide`` it would refuse (51000).
- **Long/short mode** (:func:`position_effect`): each order opens or closes one leg. A buy closes the
  short leg when the strategy holds a short (all of the order must fit in it: an order may not close
  and open at once), else it opens the long leg; a sell likewise. A ``reduce_only`` order must close.
- **Attribution** (:func:`attribute`): an event on the account's position (funding, liquidation,
  ADL, delivery) is split between the holders (the strategies and the ``external`` account) pro rata
  to their signed share of the position it touched, so that each holder's quantity and money add up
  to the venue's exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["EXTERNAL", "PositionEffect", "position_effect", "attribute", "FLAT"]

EXTERNAL = "external"  # the account of positions seqtrade did not open (a reserved strategy id)
FLAT = 1e-9


@dataclass(frozen=True, slots=True)
class PositionEffect:
    """What an order does to the account's position: the ``pos_side`` and ``reduce_only`` to send, or
    why it is refused (``refusal`` non-empty)."""

    pos_side: str = ""
    reduce_only: bool = False
    refusal: str = ""


def position_effect(
    *,
    mode: str,
    symbol: str,
    side: str,
    quantity: float,
    reduce_only: bool,
    strategy_position: float,
    account_position: float,
    pending_reduce: float,
) -> PositionEffect:
    """The effect of a new derivative order of ``quantity`` contracts on ``side``.

    ``mode``: ``"net"`` or ``"long_short"``. ``strategy_position``: the sending strategy's net position;
    ``account_position``: the account's (every strategy plus ``external``); ``pending_reduce``: the
    remaining quantity of the account's open reduce-only orders on the same side (net mode) or of the
    strategy's open closing orders of that leg (long/short mode).
    """
    buy = side == "buy"
    if mode == "long_short":
        own_leg = -strategy_position if buy else strategy_position  # the leg this order would close
        closing_leg = "short" if buy else "long"
        if own_leg > FLAT:
            room = own_leg - pending_reduce
            if quantity <= room + FLAT:
                return PositionEffect(pos_side=closing_leg)
            return PositionEffect(
                refusal=(
                    f"long/short mode: a {side} of {quantity:g} on {symbol} would close more than this strategy's "
                    f"{closing_leg} of {own_leg:g} (open closing {side}s {pending_reduce:g}): an order may not close "
                    f"and open at once; close {max(room, 0.0):g} first"
                )
            )
        if reduce_only:
            return PositionEffect(
                refusal=f"reduce_only {side} on {symbol}: this strategy holds no {closing_leg} position to reduce"
            )
        return PositionEffect(pos_side="long" if buy else "short")
    if not reduce_only:
        return PositionEffect()
    reducible = -account_position if buy else account_position  # what this side may take off
    if reducible <= FLAT:
        direction = "long" if account_position > 0 else "short" if account_position < 0 else "flat"
        return PositionEffect(
            refusal=(
                f"reduce_only {side} of {quantity:g} on {symbol} would not reduce the account's position: "
                f"the account is {direction} ({account_position:+g}, all strategies and external)"
            )
        )
    if quantity + pending_reduce > reducible + FLAT:
        return PositionEffect(
            refusal=(
                f"reduce_only {side} of {quantity:g} on {symbol} exceeds the account's position {account_position:+g} "
                f"with the account's open reduce-only {side}s of {pending_reduce:g}"
            )
        )
    return PositionEffect(reduce_only=True)


def attribute(
    holders: Mapping[str, float], quantity: float, amount: float, pos_side: str = ""
) -> dict[str, tuple[float, float]]:
    """Split an event's position change ``quantity`` and money ``amount`` between the ``holders``
    (holder -> signed position in the instrument, ``external`` included) pro rata to their share of
    the position the event touched: the whole net in net mode (``pos_side`` ""), the long or the short
    holders for a ``"long"``/``"short"`` leg. Returns holder -> (quantity, amount); with no holder
    (nobody holds the position), everything goes to ``external``. The parts add up to the whole."""
    if pos_side == "long":
        held = {h: p for h, p in holders.items() if p > FLAT}
    elif pos_side == "short":
        held = {h: p for h, p in holders.items() if p < -FLAT}
    else:
        held = {h: p for h, p in holders.items() if abs(p) > FLAT}
    total = sum(held.values())
    if not held or abs(total) <= FLAT:
        return {EXTERNAL: (quantity, amount)}
    out: dict[str, tuple[float, float]] = {}
    q_left, a_left = quantity, amount
    names = sorted(held)
    for h in names[:-1]:
        share = held[h] / total
        q, a = quantity * share, amount * share
        out[h] = (q, a)
        q_left -= q
        a_left -= a
    out[names[-1]] = (q_left, a_left)  # the last takes the rest: the parts add up exactly
    return out
