"""Trace protocol `/judge/trace/1` messages: schema, limits and validation (PROTOCOL.md §2-§3).

Everything that arrives from a peer goes through `parse_request` / `parse_response` before any
other code sees it, so handlers and verifiers only ever deal with well-typed, bounded values.
Malformed input raises `ProtocolError` carrying a stable error code that is sent back to the
peer (or raised to the local caller) instead of crashing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from repops.commit import CHUNK_BYTES, DTYPE_CODES

from .errors import ProtocolError, RemoteError

PROTOCOL_ID = "/judge/trace/1"

# PROTOCOL.md §3: limits. A response is bounded by the per-request item caps below.
MAX_REQUEST_BYTES = 4 * 1024
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_OP_ROOTS = 2048  # 2 * 32 B each + a range proof: ~130 KiB
MAX_CHUNKS = 1024  # 1 MiB of tensor data
MAX_NODES = 4096
MAX_INDEX = 2**32 - 1  # trace indices and chunk indices are uint32 in commitments C4/C5
MAX_JOB_ID = 2**64 - 1  # msgpack's integer range
MAX_LEVEL = 32
MAX_NDIM = 255
MAX_PROOF = 2 * 64

# PROTOCOL.md §4: error codes sent back to the peer.
BAD_REQUEST = "bad_request"
TOO_LARGE = "too_large"
UNKNOWN_JOB = "unknown_job"
OUT_OF_RANGE = "out_of_range"
BUSY = "busy"
INTERNAL = "internal"
ERROR_CODES = frozenset({BAD_REQUEST, TOO_LARGE, UNKNOWN_JOB, OUT_OF_RANGE, BUSY, INTERNAL})


@dataclass(frozen=True)
class OpRootsRequest:
    """Trace leaves `start .. start+count-1`: (op_hash, output_root) each (commitments C5)."""

    job: int
    start: int
    count: int
    kind: str = "op_roots"


@dataclass(frozen=True)
class TensorChunksRequest:
    """Chunks `start .. start+count-1` of op `op`'s output tensor (commitments C2)."""

    job: int
    op: int
    start: int
    count: int
    kind: str = "tensor_chunks"


@dataclass(frozen=True)
class TensorNodeRequest:
    """Nodes of op `op`'s chunk tree at `level` (0 = chunk leaves; commitments C3)."""

    job: int
    op: int
    level: int
    start: int
    count: int
    kind: str = "tensor_node"


@dataclass(frozen=True)
class TraceNodeRequest:
    """Nodes of the job's trace tree at `level` (0 = trace leaves; commitments C3/C5)."""

    job: int
    level: int
    start: int
    count: int
    kind: str = "trace_node"


Request = OpRootsRequest | TensorChunksRequest | TensorNodeRequest | TraceNodeRequest

_FIELDS: dict[str, tuple[type, tuple[str, ...], int]] = {
    "op_roots": (OpRootsRequest, ("job", "start", "count"), MAX_OP_ROOTS),
    "tensor_chunks": (TensorChunksRequest, ("job", "op", "start", "count"), MAX_CHUNKS),
    "tensor_node": (TensorNodeRequest, ("job", "op", "level", "start", "count"), MAX_NODES),
    "trace_node": (TraceNodeRequest, ("job", "level", "start", "count"), MAX_NODES),
}
# Wire names: "from" reads better on the wire but is a Python keyword.
_WIRE = {"start": "from"}


def _unpack(raw: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise ProtocolError(BAD_REQUEST, f"{what} is not valid msgpack ({exc})") from None


def _int(value: Any, name: str, hi: int, code: str = BAD_REQUEST) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
        raise ProtocolError(code, f"field {name!r} must be an integer in [0, {hi}]")
    return value


def encode_request(req: Request) -> bytes:
    body: dict[str, Any] = {"kind": req.kind}
    for name in _FIELDS[req.kind][1]:
        body[_WIRE.get(name, name)] = getattr(req, name)
    return msgpack.packb(body, use_bin_type=True)


def parse_request(raw: bytes) -> Request:
    """PROTOCOL.md §2: decode and validate a request; unknown fields are refused."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise ProtocolError(TOO_LARGE, f"request of {len(raw)} bytes > {MAX_REQUEST_BYTES}")
    body = _unpack(raw, "request")
    if not isinstance(body, dict):
        raise ProtocolError(BAD_REQUEST, "request must be a msgpack map")
    kind = body.get("kind")
    if kind not in _FIELDS:
        raise ProtocolError(BAD_REQUEST, f"unknown request kind {kind!r}")
    cls, names, cap = _FIELDS[kind]
    wire_names = {_WIRE.get(n, n) for n in names}
    extra = set(body) - wire_names - {"kind"}
    if extra:
        raise ProtocolError(BAD_REQUEST, f"unexpected fields {sorted(map(str, extra))}")
    values: dict[str, int] = {}
    for name in names:
        wire = _WIRE.get(name, name)
        if wire not in body:
            raise ProtocolError(BAD_REQUEST, f"missing field {wire!r}")
        hi = {"job": MAX_JOB_ID, "level": MAX_LEVEL}.get(name, MAX_INDEX)
        values[name] = _int(body[wire], wire, hi)
    if values["count"] == 0:
        raise ProtocolError(BAD_REQUEST, "count must be at least 1")
    if values["count"] > cap:
        raise ProtocolError(TOO_LARGE, f"count {values['count']} > {cap} for {kind}")
    return cls(**values)


def encode_error(code: str, message: str) -> bytes:
    return msgpack.packb({"ok": False, "error": code, "message": message[:500]})


def encode_ok(kind: str, fields: dict[str, Any]) -> bytes:
    return msgpack.packb({"ok": True, "kind": kind, **fields}, use_bin_type=True)


# ---------------------------------------------------------------------------------------------
# Responses (PROTOCOL.md §2). Parsed into plain dataclasses so verifiers get typed values.


@dataclass(frozen=True)
class OpRootsResponse:
    length: int  # trace length the server claims; the verifier compares with the chain's
    start: int
    op_hashes: tuple[bytes, ...]
    output_roots: tuple[bytes, ...]
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class TensorChunksResponse:
    dtype: str
    shape: tuple[int, ...]
    start: int
    chunks: tuple[bytes, ...]
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class TensorNodeResponse:
    dtype: str
    shape: tuple[int, ...]
    level: int
    start: int
    nodes: tuple[bytes, ...]
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class TraceNodeResponse:
    length: int
    level: int
    start: int
    nodes: tuple[bytes, ...]
    proof: tuple[bytes, ...]


Response = OpRootsResponse | TensorChunksResponse | TensorNodeResponse | TraceNodeResponse


def _bad(msg: str) -> ProtocolError:
    return ProtocolError(BAD_REQUEST, f"malformed response: {msg}")


def _hashes(value: Any, name: str, cap: int) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > cap:
        raise _bad(f"{name} must be a list of at most {cap} hashes")
    if not all(isinstance(h, bytes) and len(h) == 32 for h in value):
        raise _bad(f"{name} must hold 32-byte hashes")
    return tuple(value)


def _shape(body: dict) -> tuple[str, tuple[int, ...]]:
    dtype, shape = body.get("dtype"), body.get("shape")
    if dtype not in DTYPE_CODES:
        raise _bad(f"unknown dtype {dtype!r}")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise _bad("shape must be a list of at most 255 dimensions")
    return dtype, tuple(_int(d, "shape", 2**32 - 1) for d in shape)


def parse_response(raw: bytes, request: Request) -> Response:
    """Validate a response against the request it answers; errors raise RemoteError."""
    body = _unpack(raw, "response")
    if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
        raise _bad("not a map with a boolean 'ok'")
    if not body["ok"]:
        code, message = body.get("error"), body.get("message")
        if code not in ERROR_CODES or not isinstance(message, str):
            raise _bad("error response without a known code and a message")
        raise RemoteError(code, message)
    if body.get("kind") != request.kind:
        raise _bad(f"answers {body.get('kind')!r}, asked {request.kind!r}")
    try:
        start = _int(body.get("from"), "from", MAX_INDEX)
        proof = _hashes(body.get("proof"), "proof", MAX_PROOF)
        if start != request.start:
            raise _bad(f"starts at {start}, asked {request.start}")
        if isinstance(request, OpRootsRequest):
            hashes = _hashes(body.get("op_hashes"), "op_hashes", request.count)
            roots = _hashes(body.get("output_roots"), "output_roots", request.count)
            if len(hashes) != len(roots) or not hashes:
                raise _bad("op_hashes and output_roots differ in length or are empty")
            return OpRootsResponse(
                _int(body.get("length"), "length", MAX_INDEX + 1), start, hashes, roots, proof
            )
        if isinstance(request, TensorChunksRequest):
            dtype, shape = _shape(body)
            chunks = body.get("chunks")
            if not isinstance(chunks, list) or not 0 < len(chunks) <= request.count:
                raise _bad("chunks must be a non-empty list no longer than asked")
            if not all(isinstance(c, bytes) and len(c) <= CHUNK_BYTES for c in chunks):
                raise _bad(f"chunks must be byte strings of at most {CHUNK_BYTES} bytes")
            return TensorChunksResponse(dtype, shape, start, tuple(chunks), proof)
        level = _int(body.get("level"), "level", MAX_LEVEL)
        if level != request.level:
            raise _bad(f"level {level}, asked {request.level}")
        nodes = _hashes(body.get("nodes"), "nodes", request.count)
        if not nodes:
            raise _bad("no nodes")
        if isinstance(request, TensorNodeRequest):
            dtype, shape = _shape(body)
            return TensorNodeResponse(dtype, shape, level, start, nodes, proof)
        return TraceNodeResponse(
            _int(body.get("length"), "length", MAX_INDEX + 1), level, start, nodes, proof
        )
    except ProtocolError as exc:
        if exc.message.startswith("malformed response"):
            raise
        raise _bad(exc.message) from None
