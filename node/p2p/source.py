"""Where a node's trace data comes from (PROTOCOL.md §6).

The executor implements `TraceSource` over its on-disk trace dumps; `InMemoryTraceSource` is a
complete implementation for tests and small jobs. Sources are called from a worker thread, so
they may block on disk.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from repops.commit import canonical_bytes, tensor_root_np


@dataclass(frozen=True)
class TraceRecords:
    """One job's trace: per executed op, its op hash and output tensor root (commitments C5)."""

    op_hashes: Sequence[bytes]
    output_roots: Sequence[bytes]


@dataclass(frozen=True)
class TensorBlob:
    """An op output tensor as committed: dtype name, shape, canonical bytes (commitments C1)."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    @classmethod
    def from_array(cls, array: np.ndarray) -> TensorBlob:
        return cls(array.dtype.name, tuple(int(d) for d in array.shape), canonical_bytes(array))


@runtime_checkable
class TraceSource(Protocol):
    def trace(self, job: int) -> TraceRecords | None:
        """The job's trace records, or None if this node has no trace for it."""
        ...

    def tensor(self, job: int, op: int) -> TensorBlob | None:
        """Op `op`'s output tensor, or None if unknown (job, op out of range, or not kept)."""
        ...


class InMemoryTraceSource:
    """A thread-safe dict-backed TraceSource."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._traces: dict[int, TraceRecords] = {}
        self._tensors: dict[tuple[int, int], TensorBlob] = {}

    def add_job(self, job: int, op_hashes: Sequence[bytes], outputs: Sequence[np.ndarray]) -> None:
        """Record a job from its op hashes and output tensors; roots are computed (C4)."""
        if len(op_hashes) != len(outputs):
            raise ValueError("one op hash per output tensor")
        roots = [tensor_root_np(a) for a in outputs]
        with self._lock:
            self._traces[job] = TraceRecords(list(op_hashes), roots)
            for i, array in enumerate(outputs):
                self._tensors[(job, i)] = TensorBlob.from_array(array)

    def put_trace(self, job: int, records: TraceRecords) -> None:
        with self._lock:
            self._traces[job] = records

    def put_tensor(self, job: int, op: int, blob: TensorBlob) -> None:
        with self._lock:
            self._tensors[(job, op)] = blob

    def trace(self, job: int) -> TraceRecords | None:
        with self._lock:
            return self._traces.get(job)

    def tensor(self, job: int, op: int) -> TensorBlob | None:
        with self._lock:
            return self._tensors.get((job, op))
