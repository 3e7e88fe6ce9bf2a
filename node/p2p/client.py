"""Asking a peer for trace data over `/judge/trace/1` (PROTOCOL.md §1-§4), trio side.

Every failure is mapped to one of the errors in `errors.py`, so the bridge and the daemons
handle "peer slow", "peer gone" and "peer talks garbage" without knowing libp2p internals.
"""

from __future__ import annotations

from typing import Any

import trio

from .errors import P2PError, PeerTimeout, TransportError
from .framing import FrameError, read_frame, write_frame
from .messages import (
    MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES,
    PROTOCOL_ID,
    Request,
    Response,
    encode_request,
    parse_response,
)


async def request_trace(host: Any, peer_id: Any, request: Request, timeout: float) -> Response:
    """One request, one validated response; the stream is closed (or reset) either way."""
    from libp2p.custom_types import TProtocol

    stream = None
    try:
        with trio.fail_after(timeout):
            stream = await host.new_stream(peer_id, [TProtocol(PROTOCOL_ID)])
            await write_frame(stream, encode_request(request), MAX_REQUEST_BYTES)
            raw = await read_frame(stream, MAX_RESPONSE_BYTES)
    except trio.TooSlowError:
        await _reset(stream)
        raise PeerTimeout(f"{request.kind} to {peer_id} timed out after {timeout}s") from None
    except FrameError as exc:
        await _reset(stream)
        raise TransportError(f"{request.kind} to {peer_id}: {exc}") from None
    except P2PError:
        await _reset(stream)
        raise
    except Exception as exc:  # dial failures, stream resets, muxer errors
        await _reset(stream)
        raise TransportError(f"{request.kind} to {peer_id} failed: {exc!r}") from None
    try:
        await stream.close()
    except Exception:
        pass
    return parse_response(raw, request)


async def _reset(stream: Any) -> None:
    if stream is None:
        return
    try:
        await stream.reset()
    except Exception:
        pass
