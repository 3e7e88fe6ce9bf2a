"""Errors of the p2p layer, one base class so callers can catch them all (PROTOCOL.md §4)."""

from __future__ import annotations


class P2PError(Exception):
    """Anything that went wrong talking to a peer; never a bug in the caller's data."""


class ProtocolError(P2PError):
    """A message that does not follow PROTOCOL.md; `code` is one of messages.ERROR_CODES."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RemoteError(P2PError):
    """The peer answered with a well-formed error (PROTOCOL.md §4)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"peer answered {code}: {message}")
        self.code = code
        self.message = message


class PeerTimeout(P2PError):
    """The peer did not answer within the deadline."""


class TransportError(P2PError):
    """The connection or stream failed (peer gone, dial refused, stream reset, bad framing)."""


class NodeClosed(P2PError):
    """The node was closed (or never started) when the call was made."""
