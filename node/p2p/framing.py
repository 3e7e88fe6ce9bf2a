"""Length-prefixed frames on a libp2p stream (trace protocol wire format, node/p2p/PROTOCOL.md §1).

Every frame is a 4-byte big-endian length followed by that many bytes. The length is checked
against the caller's limit *before* anything is buffered, so a peer announcing a 4 GiB frame
costs us four bytes of reading, not four gigabytes of memory.
"""

from __future__ import annotations

from typing import Protocol

HEADER_BYTES = 4


class FrameError(Exception):
    """The peer broke framing: short read, EOF mid-frame, or a frame over the limit."""


class FrameTooLarge(FrameError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class ByteStream(Protocol):
    """What a libp2p INetStream offers and framing needs (kept narrow for tests)."""

    async def read(self, n: int | None = None) -> bytes: ...

    async def write(self, data: bytes) -> None: ...


async def read_exact(stream: ByteStream, n: int) -> bytes:
    """Read exactly n bytes; EOF before that is a FrameError (never a silent short frame)."""
    buf = bytearray()
    while len(buf) < n:
        try:
            part = await stream.read(n - len(buf))
        except EOFError as exc:  # libp2p's StreamEOF subclasses EOFError
            raise FrameError(f"stream ended after {len(buf)} of {n} bytes") from exc
        if not part:
            raise FrameError(f"stream ended after {len(buf)} of {n} bytes")
        buf.extend(part)
    return bytes(buf)


async def read_frame(stream: ByteStream, max_bytes: int) -> bytes:
    size = int.from_bytes(await read_exact(stream, HEADER_BYTES), "big")
    if size > max_bytes:
        raise FrameTooLarge(size, max_bytes)
    return await read_exact(stream, size) if size else b""


def encode_frame(payload: bytes, max_bytes: int) -> bytes:
    if len(payload) > max_bytes:
        raise FrameTooLarge(len(payload), max_bytes)
    return len(payload).to_bytes(HEADER_BYTES, "big") + payload


async def write_frame(stream: ByteStream, payload: bytes, max_bytes: int) -> None:
    await stream.write(encode_frame(payload, max_bytes))
