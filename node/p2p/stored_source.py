"""A TraceSource backed by the node store and the executor's tensor dumps (PROTOCOL.md §6).

The store keeps each job's op hashes and output roots (`Store.put_trace`); the tensors
themselves live in dump files whose format belongs to the runtime, so loading is delegated to
a callable. Before serving a tensor for the first time its root is checked against the
output root we committed: a corrupted dump is refused (`internal`) rather than served, since
serving it would look like equivocation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from repops.commit import tensor_root_from_bytes

from .source import TensorBlob, TraceRecords

log = logging.getLogger(__name__)

TensorLoader = Callable[[str | None, int], TensorBlob | None]


class CorruptDump(Exception):
    """A dumped tensor does not hash to the output root the node committed."""


class StoredTraceSource:
    def __init__(self, store: object, load_tensor: TensorLoader, *, check_roots: bool = True):
        """`store` is a node.store.Store; `load_tensor(dump_path, op)` reads one op output."""
        self._store = store
        self._load = load_tensor
        self._check = check_roots
        self._verified: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    def trace(self, job: int) -> TraceRecords | None:
        t = self._store.get_trace(job)  # type: ignore[attr-defined]
        return None if t is None else TraceRecords(t.op_hashes, t.output_roots)

    def tensor(self, job: int, op: int) -> TensorBlob | None:
        t = self._store.get_trace(job)  # type: ignore[attr-defined]
        if t is None or not 0 <= op < len(t.output_roots):
            return None
        blob = self._load(t.dump_path, op)
        if blob is None or not self._check:
            return blob
        with self._lock:
            if (job, op) in self._verified:
                return blob
        if tensor_root_from_bytes(blob.data, blob.dtype, blob.shape) != t.output_roots[op]:
            log.error("dump of job %s op %s does not match the committed output root", job, op)
            raise CorruptDump(f"tensor dump of op {op} does not match its committed root")
        with self._lock:
            self._verified.add((job, op))
        return blob
