"""Pure signing and credential checks for the fake OKX (no I/O).

Everything here follows docs/okx.md §1 (REST) and §4.3 (WS login).  Functions take the clock as an
argument so they are deterministic and testable with the §1.4 vectors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "AuthError",
    "Credentials",
    "check_rest_auth",
    "check_ws_login",
    "parse_iso_ms",
    "rest_prehash",
    "sign",
    "ws_login_prehash",
]

# §1.2: "UTC ISO-8601 with exactly 3 ms digits and Z", e.g. 2020-12-08T09:08:57.715Z
_ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# §4.3: WS login timestamp = Unix epoch seconds as a string.  Whether fractional seconds are
# accepted is unverified (§9); ``allow_fraction`` decides.
_EPOCH_S = re.compile(r"^\d+$")
_EPOCH_S_FRAC = re.compile(r"^\d+(\.\d+)?$")

# §1.5: requests whose timestamp differs from server time by more than 30 s are rejected.
SKEW_LIMIT_MS = 30_000


@dataclass(frozen=True)
class Credentials:
    api_key: str
    secret_key: str
    passphrase: str
    demo: bool


class AuthError(Exception):
    """A credential check failed; ``code``/``msg`` are the OKX error code and message."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg


def sign(secret: str, prehash: str) -> str:
    """§1.2/§1.3: base64(HMAC-SHA256(key=secret as raw UTF-8, msg=prehash))."""
    digest = hmac.new(secret.encode("utf-8"), prehash.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def rest_prehash(timestamp: str, method: str, request_target: str, body: str) -> str:
    """§1.3: timestamp + METHOD + requestPath(with raw query) + body."""
    return timestamp + method.upper() + request_target + body


def ws_login_prehash(timestamp: str) -> str:
    """§4.3: timestamp + 'GET' + '/users/self/verify' (no body)."""
    return timestamp + "GET" + "/users/self/verify"


def parse_iso_ms(text: str) -> int | None:
    """Parse an OK-ACCESS-TIMESTAMP (§1.2) to epoch ms, or None if it is not in the exact format."""
    if not _ISO_MS.match(text):
        return None
    try:
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    whole_seconds = int(parsed.replace(microsecond=0).timestamp())
    return whole_seconds * 1000 + parsed.microsecond // 1000


def check_rest_auth(
    headers: dict[str, str],
    method: str,
    request_target: str,
    body: str,
    creds: Credentials,
    now_ms: int,
    messages: dict[str, str],
) -> None:
    """Raise AuthError unless the private REST request is properly signed (§1.2-§1.6, §8.5).

    ``headers`` keys are lower case.  ``request_target`` is the raw path + '?' + raw query exactly
    as received; ``body`` the raw body text.  The order of the checks is a choice (the sheet does
    not say which check the real gateway runs first): missing headers, timestamp format, clock
    window, key, passphrase, environment, signature.
    """

    def fail(code: str) -> AuthError:
        return AuthError(code, messages[code])

    key = headers.get("ok-access-key", "")
    passphrase = headers.get("ok-access-passphrase", "")
    signature = headers.get("ok-access-sign", "")
    timestamp = headers.get("ok-access-timestamp", "")
    if not key:
        raise fail("50103")
    if not passphrase:
        raise fail("50104")
    if not signature:
        raise fail("50106")
    if not timestamp:
        raise fail("50107")
    ts_ms = parse_iso_ms(timestamp)
    if ts_ms is None:
        raise fail("50112")
    if abs(ts_ms - now_ms) > SKEW_LIMIT_MS:
        raise fail("50102")
    if key != creds.api_key:
        raise fail("50111")
    if passphrase != creds.passphrase:
        raise fail("50105")
    # §1.1/§1.6: demo is selected by x-simulated-trading: 1; a demo key without it (or a live key
    # with it -- "inferred" in the sheet) -> 50101.
    simulated = headers.get("x-simulated-trading", "0") == "1"
    if simulated != creds.demo:
        raise fail("50101")
    expected = sign(creds.secret_key, rest_prehash(timestamp, method, request_target, body))
    if not hmac.compare_digest(expected, signature):
        raise fail("50113")


def check_ws_login(
    arg: object,
    creds: Credentials,
    now_ms: int,
    *,
    allow_fraction: bool,
) -> None:
    """Raise AuthError unless ``arg`` is a valid WS login argument (§4.3).

    Codes: 60004 invalid timestamp, 60005 invalid apiKey, 60006 timestamp expired (30 s),
    60007 invalid sign, 60024 wrong passphrase, 60009 generic "Login failed." for malformed args.
    """
    if not isinstance(arg, dict):
        raise AuthError("60009", "Login failed.")
    api_key = arg.get("apiKey")
    passphrase = arg.get("passphrase")
    timestamp = arg.get("timestamp")
    signature = arg.get("sign")
    if not all(isinstance(v, str) and v for v in (api_key, passphrase, timestamp, signature)):
        raise AuthError("60009", "Login failed.")
    assert isinstance(timestamp, str) and isinstance(signature, str)
    pattern = _EPOCH_S_FRAC if allow_fraction else _EPOCH_S
    if not pattern.match(timestamp):
        raise AuthError("60004", "Invalid timestamp")
    # §4.3: "Expires 30 s after timestamp".  A timestamp far in the future is treated the same way
    # (a milliseconds value sent by mistake lands here).
    ts_ms = float(timestamp) * 1000
    if abs(ts_ms - now_ms) > SKEW_LIMIT_MS:
        raise AuthError("60006", "Timestamp request expired")
    if api_key != creds.api_key:
        raise AuthError("60005", "Invalid apiKey")
    if passphrase != creds.passphrase:
        raise AuthError("60024", "Wrong passphrase")
    expected = sign(creds.secret_key, ws_login_prehash(timestamp))
    if not hmac.compare_digest(expected, signature):
        raise AuthError("60007", "Invalid sign")
