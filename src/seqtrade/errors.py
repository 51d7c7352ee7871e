"""The exception tree of seqtrade.

::

    SeqtradeError
    ├── ConfigError          a bad config file or value; the message names the key
    ├── WireError            a frame or message that breaks PROTOCOL.md; the message says what is wrong
    ├── RunDirLocked         another server owns the run directory
    ├── JournalError         the journal cannot be opened or written
    └── VenueError           the venue failed in a way the server cannot recover from
        └── VenueAuthError   the exchange refused our credentials (missing keys, bad signature)

Third-party exceptions (zmq, httpx, trio_websocket, sqlite3) are mapped to these at the one place
where they enter; business rejections from an exchange are never exceptions but ``rejected`` reports.
"""

from __future__ import annotations

__all__ = [
    "SeqtradeError",
    "ConfigError",
    "WireError",
    "RunDirLocked",
    "JournalError",
    "VenueError",
    "VenueAuthError",
]


class SeqtradeError(Exception):
    """Base of every seqtrade error."""


class ConfigError(SeqtradeError):
    """A config file or value is wrong; the message names the key."""


class WireError(SeqtradeError):
    """A frame or message breaks the wire protocol."""


class RunDirLocked(SeqtradeError):
    """Another server already owns this run directory."""


class JournalError(SeqtradeError):
    """The journal cannot be opened or written."""


class VenueError(SeqtradeError):
    """The venue failed in a way the server cannot recover from."""


class VenueAuthError(VenueError):
    """The exchange refused the credentials, or they are missing."""
