"""A faithful local fake of the OKX v5 API (REST + WebSocket) for seqtrade's tests.

Written from docs/okx.md only (see README.md for what it models, the knobs, and every
place where the sheet was silent or unverified).

    from tests.fakeokx import open_fake_okx, FakeOkx
    async with open_fake_okx() as fake:
        fake.set_market("BTC-USDT", bid=100.0, ask=100.2)
        ...
"""

from .auth import rest_prehash, sign, ws_login_prehash
from .exchange import CANCEL_SOURCE_REASONS, DEFAULT_MESSAGES, OkxError
from .instruments import DEFAULT_INSTRUMENTS
from .server import ClockRefusal, FakeOkx, RecordedRequest, Stall, open_fake_okx

__all__ = [
    "CANCEL_SOURCE_REASONS",
    "ClockRefusal",
    "DEFAULT_INSTRUMENTS",
    "DEFAULT_MESSAGES",
    "FakeOkx",
    "OkxError",
    "RecordedRequest",
    "Stall",
    "open_fake_okx",
    "rest_prehash",
    "sign",
    "ws_login_prehash",
]
