"""Answering `/judge/trace/1` requests from a TraceSource (PROTOCOL.md §2-§4).

The stream handler is the only code that touches bytes from an untrusted peer on this
protocol; it never raises: every failure becomes an error frame or a stream reset, and the
node keeps serving others. Source reads and hashing run in worker threads so one large
tensor does not stall gossip.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import trio

from repops.commit import CHUNK_BYTES, chunk_leaves, trace_leaf

from .errors import ProtocolError
from .framing import FrameError, FrameTooLarge, read_frame, write_frame
from .messages import (
    BUSY,
    INTERNAL,
    MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES,
    OUT_OF_RANGE,
    TOO_LARGE,
    UNKNOWN_JOB,
    OpRootsRequest,
    Request,
    TensorChunksRequest,
    TensorNodeRequest,
    TraceNodeRequest,
    encode_error,
    encode_ok,
    parse_request,
)
from .source import TensorBlob, TraceRecords, TraceSource
from .verify import depth_of, range_proof, real_nodes_at, tree_levels

log = logging.getLogger(__name__)

Levels = list[list[bytes]]


class _LRU:
    """Bounded cache of Merkle levels keyed by (job[, op]); values are (source object, levels).

    The source object is kept so a replaced trace/tensor is re-hashed, not served stale;
    sources that build a fresh but equal object per call (a database) still hit the cache.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Any, tuple[object, Levels]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, obj: object, build: Callable[[], Levels]) -> Levels:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and (hit[0] is obj or hit[0] == obj):
                self._items.move_to_end(key)
                return hit[1]
        levels = build()
        with self._lock:
            self._items[key] = (obj, levels)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return levels


def _blob_bytes_ok(blob: TensorBlob) -> bool:
    n = np.dtype(blob.dtype).itemsize
    for d in blob.shape:
        n *= d
    return n == len(blob.data)


class TraceServer:
    """Serves one TraceSource; `handle_stream` is registered as the libp2p stream handler."""

    def __init__(
        self,
        source: TraceSource,
        *,
        timeout: float = 10.0,
        max_concurrent: int = 32,
        cache_size: int = 64,
    ) -> None:
        self.source = source
        self.timeout = timeout
        self._slots = trio.Semaphore(max_concurrent)
        self._trace_cache = _LRU(cache_size)
        self._tensor_cache = _LRU(cache_size)
        self.stats: Counter[str] = Counter()

    # -- stream handling (trio) ----------------------------------------------------------------

    async def handle_stream(self, stream: Any) -> None:
        """PROTOCOL.md §1: one request frame in, one response frame out, then close."""
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            self.stats["busy"] += 1
            await self._reply_and_close(stream, encode_error(BUSY, "too many concurrent requests"))
            return
        try:
            with trio.move_on_after(self.timeout) as scope:
                await self._serve_one(stream)
            if scope.cancelled_caught:
                self.stats["timeout"] += 1
                await _reset(stream)
        except Exception as exc:  # a broken stream must never take the node down
            self.stats["stream_error"] += 1
            log.debug("trace stream failed: %r", exc)
            await _reset(stream)
        finally:
            self._slots.release()

    async def _serve_one(self, stream: Any) -> None:
        try:
            raw = await read_frame(stream, MAX_REQUEST_BYTES)
        except FrameTooLarge as exc:
            self.stats[TOO_LARGE] += 1
            await self._reply_and_close(stream, encode_error(TOO_LARGE, str(exc)))
            return
        except FrameError:
            self.stats["bad_frame"] += 1
            await _reset(stream)
            return
        try:
            request = parse_request(raw)
            self.stats[request.kind] += 1
            payload = await trio.to_thread.run_sync(self.answer, request, abandon_on_cancel=True)
        except ProtocolError as exc:
            self.stats[exc.code] += 1
            payload = encode_error(exc.code, exc.message)
        except Exception as exc:
            self.stats[INTERNAL] += 1
            log.exception("trace request failed")
            payload = encode_error(INTERNAL, f"server error: {type(exc).__name__}")
        if len(payload) > MAX_RESPONSE_BYTES:
            payload = encode_error(INTERNAL, "response over the size limit")
        await self._reply_and_close(stream, payload)

    async def _reply_and_close(self, stream: Any, payload: bytes) -> None:
        try:
            await write_frame(stream, payload, MAX_RESPONSE_BYTES)
            await stream.close()
        except Exception:
            await _reset(stream)

    # -- answering (worker thread) -------------------------------------------------------------

    def answer(self, request: Request) -> bytes:
        """Encode the reply to a validated request; raises ProtocolError for refusals."""
        if isinstance(request, OpRootsRequest | TraceNodeRequest):
            return self._answer_trace(request)
        return self._answer_tensor(request)

    def _trace(self, job: int) -> TraceRecords:
        records = self.source.trace(job)
        if records is None:
            raise ProtocolError(UNKNOWN_JOB, f"no trace for job {job}")
        if len(records.op_hashes) != len(records.output_roots) or not records.op_hashes:
            raise ProtocolError(INTERNAL, f"trace of job {job} is inconsistent")
        return records

    def _answer_trace(self, req: OpRootsRequest | TraceNodeRequest) -> bytes:
        records = self._trace(req.job)
        n = len(records.op_hashes)

        def build() -> Levels:
            pairs = zip(records.op_hashes, records.output_roots, strict=True)
            leaves = [trace_leaf(i, h, r) for i, (h, r) in enumerate(pairs)]
            return tree_levels(leaves)

        level = 0 if isinstance(req, OpRootsRequest) else req.level
        if level > depth_of(n):
            raise ProtocolError(OUT_OF_RANGE, f"level {level} above the root of {n} ops")
        available = real_nodes_at(n, level)
        if req.start >= available:
            raise ProtocolError(OUT_OF_RANGE, f"index {req.start} >= {available}")
        hi = min(req.start + req.count, available)
        levels = self._trace_cache.get(req.job, records, build)
        proof = range_proof(levels, level, req.start, hi)
        if isinstance(req, OpRootsRequest):
            return encode_ok(
                req.kind,
                {
                    "length": n,
                    "from": req.start,
                    "op_hashes": [bytes(h) for h in records.op_hashes[req.start : hi]],
                    "output_roots": [bytes(r) for r in records.output_roots[req.start : hi]],
                    "proof": proof,
                },
            )
        nodes = levels[level][req.start : hi]
        return encode_ok(
            req.kind,
            {"length": n, "level": level, "from": req.start, "nodes": nodes, "proof": proof},
        )

    def _answer_tensor(self, req: TensorChunksRequest | TensorNodeRequest) -> bytes:
        blob = self.source.tensor(req.job, req.op)
        if blob is None:
            self._trace(req.job)  # unknown job -> UNKNOWN_JOB, else the op is out of range
            raise ProtocolError(OUT_OF_RANGE, f"no output tensor for op {req.op}")
        if not _blob_bytes_ok(blob):
            raise ProtocolError(INTERNAL, f"tensor of op {req.op} has inconsistent bytes")
        data = blob.data
        n_chunks = max(1, -(-len(data) // CHUNK_BYTES))
        levels = self._tensor_cache.get(
            (req.job, req.op), blob, lambda: tree_levels(chunk_leaves(data))
        )
        level = 0 if isinstance(req, TensorChunksRequest) else req.level
        if level > depth_of(n_chunks):
            raise ProtocolError(OUT_OF_RANGE, f"level {level} above the root of {n_chunks} chunks")
        available = real_nodes_at(n_chunks, level)
        if req.start >= available:
            raise ProtocolError(OUT_OF_RANGE, f"index {req.start} >= {available}")
        hi = min(req.start + req.count, available)
        fields: dict[str, Any] = {
            "dtype": blob.dtype,
            "shape": list(blob.shape),
            "from": req.start,
            "proof": range_proof(levels, level, req.start, hi),
        }
        if isinstance(req, TensorChunksRequest):
            fields["chunks"] = [
                data[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES] for i in range(req.start, hi)
            ]
        else:
            fields["level"] = level
            fields["nodes"] = levels[level][req.start : hi]
        return encode_ok(req.kind, fields)


async def _reset(stream: Any) -> None:
    try:
        await stream.reset()
    except Exception:
        pass
