"""The exception tree of seqtrade.

::

    SeqtradeError
    ├── ConfigError          a bad config file or value; the message names the key
    ├── WireError            a frame or message that breaks docs/protocol.md; the message says what is wrong
    ├── RunDirError          the run directory cannot be created or locked
    │   └── RunDirLocked     another server owns the run directory
    ├── TransportError       a ZeroMQ socket cannot bind (an ipc path too long, an address in use)
    ├── JournalError         the journal cannot be opened or written
    └── VenueError           the venue failed in a way the server cannot recover from
        └── VenueAuthError   the exchange refused our credentials (missing keys, bad signature)

Third-party exceptions (zmq, httpx, trio_websocket, sqlite3, OSError) are mapped to these at the one
place where they enter (zmq and the run directory: ``bus.py``; sqlite3: ``server/journal.py`` and
``venues/paper_store.py``; httpx and trio_websocket: ``venues/okx``); business rejections from an
exchange are never exceptions but ``rejected`` reports. The ``seqtrade`` command ends with one
``seqtrade: error: ...`` line and exit code 2 for any of them.
"""

from __future__ import annotations

__all__ = [
    "SeqtradeError",
    "ConfigError",
    "WireError",
    "RunDirError",
    "RunDirLocked",
    "TransportError",
    "JournalError",
    "VenueError",
    "VenueAuthError",
]


class SeqtradeError(Exception):
    """Base of every seqtrade error."""


class ConfigError(SeqtradeError):
    """A config file or value is wrong; the message names the key."""


class WireError(SeqtradeError):
    """A frame or message breaks the wire protocol.

    When it comes from :func:`seqtrade.wire.parse_request` it carries what could be read of the request
    (None otherwise), so that the server can address a ``rejected`` report: ``strategy_id``,
    ``client_order_id`` and ``request_type`` (the topic's kind, e.g. ``"order_request"``). ``str(exc)``
    is the message alone.
    """

    def __init__(
        self,
        message: str,
        *,
        strategy_id: str | None = None,
        client_order_id: str | None = None,
        request_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.strategy_id = strategy_id
        self.client_order_id = client_order_id
        self.request_type = request_type

    @property
    def type(self) -> str | None:
        """The same as ``request_type`` (the name callers used before it was a field)."""
        return self.request_type


class RunDirError(SeqtradeError):
    """The run directory cannot be created, or its lock cannot be taken."""


class RunDirLocked(RunDirError):
    """Another server already owns this run directory."""


class TransportError(SeqtradeError):
    """A ZeroMQ socket cannot bind to its endpoint."""


class JournalError(SeqtradeError):
    """The journal cannot be opened or written."""


class VenueError(SeqtradeError):
    """The venue failed in a way the server cannot recover from."""


class VenueAuthError(VenueError):
    """The exchange refused the credentials, or they are missing."""
