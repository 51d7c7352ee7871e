"""CurveZMQ keys for tcp:// endpoints: ``seqtrade keygen``, key files, secret keys from the environment.

Used by both ends, so it imports zmq but never trio (a strategy process loads no Trio); the server's
ZAP handler and the order/report policing that builds on these keys live in ``server/auth.py``.

- **Public keys** may live in files (they are not secret). A key file is UTF-8 text; blank lines and
  lines starting with ``#`` are ignored; the first other line is the 40-character Z85 key. ``seqtrade
  keygen --out NAME`` writes ``NAME.pub`` in that format.
- **Secret keys** come only from the environment. The config names a variable (``security.
  server_secret_key_env``, ``security.client_secret_key_env``); the variable holds the 40-character
  Z85 secret. Where a variable cannot hold it (systemd credentials, Docker/Kubernetes secrets), set
  ``<NAME>_FILE`` to the path of a file holding it instead: the file must be owned by this user and
  not readable by group or others (0600 or stricter), or it is refused. A secret is never printed,
  logged or put in an error message: :func:`mask` shows that one is set and nothing of it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from zmq.utils import z85

from .config import Config
from .errors import ConfigError

__all__ = [
    "KeyPair",
    "ClientCurve",
    "keygen",
    "keypair_from_secret",
    "write_public_key",
    "read_public_key",
    "resolve_public_key",
    "secret_key_from_env",
    "server_keypair",
    "server_public_key",
    "client_curve",
    "apply_client_curve",
    "apply_server_curve",
    "is_tcp",
    "mask",
    "uses_tcp",
]

Z85_KEY_LEN = 40


@dataclass(frozen=True)
class KeyPair:
    """A CurveZMQ key pair, both halves Z85-encoded (40 ASCII bytes). ``repr`` never shows the secret."""

    public: bytes
    secret: bytes

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.decode()!r}, secret={mask(self.secret)})"


@dataclass(frozen=True)
class ClientCurve:
    """What a strategy needs to connect over TCP: the server's public key and its own key pair."""

    server_public: bytes
    keys: KeyPair


def is_tcp(endpoint: str) -> bool:
    return endpoint.startswith("tcp://")


def uses_tcp(config: Config) -> bool:
    """True if any of the three channels is tcp:// (then CurveZMQ is mandatory on it)."""
    return any(is_tcp(config.endpoint(c)) for c in ("md", "order", "report"))


def mask(secret: str | bytes | None) -> str:
    """How a secret is shown anywhere: whether it is set, never any of it."""
    return "<set>" if secret else "<not set>"


def keygen() -> KeyPair:
    """A fresh key pair (``zmq.curve_keypair``)."""
    public, secret = zmq.curve_keypair()
    return KeyPair(public, secret)


def _check_z85(key: bytes, what: str) -> bytes:
    if len(key) != Z85_KEY_LEN:
        raise ConfigError(
            f"{what}: not a CurveZMQ key (expected {Z85_KEY_LEN} Z85 characters, got {len(key)})"
        )
    try:
        z85.decode(key)
    except (ValueError, KeyError, IndexError, TypeError):
        raise ConfigError(f"{what}: not a CurveZMQ key (not Z85)") from None
    return key


def keypair_from_secret(secret: bytes, what: str = "secret key") -> KeyPair:
    """The key pair of a Z85 secret key (the public half is derived from it)."""
    _check_z85(secret, what)
    try:
        public = zmq.curve_public(secret)
    except zmq.ZMQError:
        raise ConfigError(f"{what}: not a valid CurveZMQ secret key") from None
    return KeyPair(public, secret)


def write_public_key(path: str | os.PathLike[str], public: bytes, comment: str = "") -> Path:
    """Write a public key file (mode 0644: a public key is not a secret). Returns the path."""
    p = Path(path)
    lines = ["# seqtrade CurveZMQ public key (Z85); the secret half is not in this file"]
    if comment:
        lines.append(f"# {comment}")
    lines.append(public.decode("ascii"))
    p.write_text("\n".join(lines) + "\n", encoding="ascii")
    os.chmod(p, 0o644)
    return p


def read_public_key(path: str | os.PathLike[str], what: str = "public key file") -> bytes:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {p}: {exc.strerror or exc}") from None
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return _check_z85(line.encode("ascii", "replace"), f"{what} {p}")
    raise ConfigError(f"{what}: {p} holds no key")


def resolve_public_key(literal: str, path: str, base_dir: str, what: str) -> bytes:
    """A public key given in the config either as Z85 text or as a key file (relative to the config)."""
    if literal:
        return _check_z85(literal.encode("ascii", "replace"), what)
    if path:
        return read_public_key(Path(base_dir, os.path.expanduser(path)), f"{what}_file")
    raise ConfigError(f"{what}: missing")


def secret_key_from_env(name: str, environ: Mapping[str, str], what: str) -> bytes:
    """The Z85 secret in ``$name``, or in the 0600 file that ``$name_FILE`` names.

    Errors name the variable and the config key (``what``), never the value.
    """
    value = environ.get(name)
    if value:
        return keypair_from_secret(value.strip().encode("ascii", "replace"), f"${name} ({what})").secret
    file_var = f"{name}_FILE"
    path = environ.get(file_var)
    if not path:
        raise ConfigError(
            f"{what}: ${name} is not set (put the secret key printed by `seqtrade keygen` in it, "
            f"or the path of a 0600 file holding it in ${file_var})"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot open ${file_var} ({path}): {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
            raise ConfigError(
                f"{what}: ${file_var} ({path}) must be owned by this user and not readable by others "
                f"(mode is {stat.S_IMODE(st.st_mode):04o}; chmod 600 it)"
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    text = data.decode("ascii", "replace").strip()
    return keypair_from_secret(text.encode("ascii", "replace"), f"${file_var} ({what})").secret


def server_public_key(config: Config) -> bytes:
    sec = config.security
    return resolve_public_key(sec.server_public_key, sec.server_public_key_file, config.base_dir,
                              "security.server_public_key")  # fmt: skip


def server_keypair(config: Config, environ: Mapping[str, str]) -> KeyPair | None:
    """The server's key pair when an endpoint is tcp:// (None otherwise), checked against the config.

    The secret comes from ``security.server_secret_key_env``; the public key in the config must be its
    public half, or the clients (who read it from their config) could never connect.
    """
    if not uses_tcp(config):
        return None
    sec = config.security
    keys = keypair_from_secret(
        secret_key_from_env(sec.server_secret_key_env, environ, "security.server_secret_key_env"),
        f"${sec.server_secret_key_env}",
    )
    if keys.public != server_public_key(config):
        raise ConfigError(
            f"security.server_public_key: does not belong to the secret key in ${sec.server_secret_key_env} "
            f"(its public key is {keys.public.decode()})"
        )
    return keys


def client_curve(config: Config, environ: Mapping[str, str]) -> ClientCurve | None:
    """A strategy host's CURVE settings when an endpoint is tcp:// (None otherwise)."""
    if not uses_tcp(config):
        return None
    sec = config.security
    secret = secret_key_from_env(sec.client_secret_key_env, environ, "security.client_secret_key_env")
    return ClientCurve(
        server_public_key(config), keypair_from_secret(secret, f"${sec.client_secret_key_env}")
    )


def apply_client_curve(sock: zmq.Socket[Any], endpoint: str, curve: ClientCurve | None) -> None:
    """Before ``connect``: CURVE client options if the endpoint is tcp:// (refused without keys)."""
    if not is_tcp(endpoint):
        return
    if curve is None:
        raise ConfigError(f"{endpoint} is tcp://: CurveZMQ keys are required (see docs/operations.md)")
    sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, curve.keys.secret)


def apply_server_curve(sock: zmq.Socket[Any], keys: KeyPair, zap_domain: str) -> None:
    """Before ``bind``: CURVE server with our key pair; every handshake goes to ZAP in ``zap_domain``."""
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.ZAP_DOMAIN, zap_domain.encode("ascii"))
