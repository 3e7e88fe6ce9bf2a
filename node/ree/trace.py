"""The trace of a run: per executed trace op its output root, the leaves and the trace root
(commitments C5), and optionally every output tensor on disk so a node can serve any leaf's
data in a dispute (DESIGN §7).

On-disk format of a kept trace (one job = two files, written beside as `.partial` and renamed
in when the run ends, so a killed run leaves nothing that looks complete):

    <name>.bin   the canonical bytes (C1) of every leaf's output, in leaf order
    <name>.json  {"program_root", "n_ops", "job_tokens", "trace_root", "op_hashes": [hex…],
                  "roots": [hex…],
                  "leaves": [[offset, nbytes, dtype, shape], …]}
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from node.ree.step_plan import StepOutputs
from referee.compact import compact_ops
from referee.layout import TraceProgram
from repops.commit import (
    CHUNK_BYTES,
    TraceRootAccumulator,
    canonical_bytes,
    header,
    header_arrays,
    tensor_root_np,
    tensor_roots_at,
    tensor_roots_raw,
    trace_leaves,
)

NP_DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64, "uint8": np.uint8}


def to_numpy(t: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t
    return t.detach().to("cpu").contiguous().numpy()


_LITTLE = sys.byteorder == "little"
_BIG_STEP = 64 << 20  # bytes of leaves from which a host step is hashed in parts
_RAW_OK = {torch.float32: "float32", torch.int32: "int32", torch.int64: "int64",
           torch.uint8: "uint8"}


class _Leaf:
    """One distinct output tensor of a step, in host memory, ready to hash (C1 bytes = its
    memory: contiguous, little-endian)."""

    __slots__ = ("array", "ptr", "nbytes", "dtype", "shape", "ready")

    def __init__(self, array: np.ndarray | torch.Tensor, ptr: int, nbytes: int, dtype: str,
                 shape: tuple[int, ...], ready: torch.cuda.Event | None = None) -> None:
        self.array, self.ptr, self.nbytes = array, ptr, nbytes
        self.dtype, self.shape, self.ready = dtype, shape, ready  # ready: copy-done event


class TraceRecorder:
    """Collects output roots step by step; optionally writes every tensor to `keep` files.

    Why a worker thread: hashing is ~24 MB of keccak per SmolLM2 decode step (C4 roots of
    every leaf; one batched C call, ~15 ms on one AVX-512 core, a tenth of executing the
    step). `add_step` only takes the step's tensors (on CUDA: one device→host copy of all of
    them) and a worker thread hashes and writes them in step order while the executor runs
    the next step; the C keccak releases the GIL. Reading `roots`, `length`, `bytes_kept` or
    calling `root`/`close` waits for it.
    `background=False` hashes inside `add_step` (the old behaviour, for measurements).

    `compact=True` commits the compact trace (docs/trace-layout.md §L10, ADR 0013): only the
    ops `referee.compact.compact_ops` names are hashed (a third of a SmolLM2 step's bytes),
    and `roots`, `leaves`, `length` and `root` are the compact trace's. A kept trace still
    stores every op's tensor and root (the full trace is what a dispute bisects).
    """

    def __init__(self, program: TraceProgram, job_tokens: Sequence[int],
                 keep: str | Path | None = None, background: bool = True,
                 compact: bool = False) -> None:
        self.program = program
        self.job_tokens = list(job_tokens)
        self.op_hashes = program.op_hashes()
        self.cmap = compact_ops(program) if compact else None
        # the op hash of each leaf of a step (the compact trace's: the committed ops')
        self.leaf_op_hashes = self.op_hashes if self.cmap is None else \
            [self.op_hashes[i] for i in self.cmap]
        self._roots: list[bytes] = []
        self._raw_roots: list[bytes] = []  # steps' roots joined, split into `_roots` when read
        self._c5 = TraceRootAccumulator(self.leaf_op_hashes)  # fed as roots arrive
        # a kept compact trace: every op's roots too, and the full trace's root
        self._full_raw: list[bytes] = []
        self._c5_full = TraceRootAccumulator(self.op_hashes) \
            if compact and keep is not None else None
        self._bytes_kept = 0
        self._index: list[list[Any]] = []
        self._keep = Path(keep) if keep is not None else None
        self._f = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="trace-hash") if background \
            else None
        self._pending: list[tuple[Future, _PartsStep | None]] = []
        self._heads: dict[tuple[str, tuple[int, ...]], bytes] = {}
        self._theads: dict[tuple[torch.dtype, torch.Size], bytes] = {}  # `_finish_host`'s
        self.hash_seconds = 0.0  # worker time spent hashing and writing (diagnostics)
        # the last plan step's appended KV caches: op → (the address of its leaves, filled
        # when that step is hashed; its byte size; its address; what keeps that memory alive)
        self._appends: dict[int, tuple[np.ndarray, int, int, object]] = {}
        if self._keep is not None:
            self._keep.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self._partial(".bin"), "wb")  # noqa: SIM115 - closed in close()

    def _partial(self, ext: str) -> Path:
        return self._keep.with_name(self._keep.name + ext + ".partial")

    def add_step(self, outputs: Sequence[torch.Tensor | np.ndarray]) -> None:
        """Queue one step's outputs for their C4 roots (a tensor object seen twice is hashed
        once); the roots land in `roots` in leaf order."""
        if self._pool is None:
            self._finish(*self._host_leaves(outputs))
            return
        if (isinstance(outputs, StepOutputs) and self._f is None and _LITTLE
                and not outputs.replaced and (not len(outputs.nbytes)
                                              or int(outputs.nbytes.min()) > 0)):
            # a step plan's arena: addresses and headers come as arrays, hashed in parts
            # (`_PartsStep`) by the worker and, rather than waiting for it, by this thread
            self._queue_parts(_PartsStep.of_plan(self, outputs))
            return
        self._appends = {}  # the next plan step has no leaves of this one
        # holds the step's tensors until the worker has hashed them; a compact trace that
        # keeps nothing hashes only its committed ops
        outs = list(outputs) if self.cmap is None or self._f is not None else \
            [outputs[i] for i in self.cmap.tolist()]
        if (self._f is None and _LITTLE and len(outs) and isinstance(outs[-1], torch.Tensor)
                and outs[-1].is_cpu and sum(t.nbytes for t in outs) > _BIG_STEP):
            # a prefill (SmolLM2: ~580 MB of leaves, ~0.35 s of hashing): in parts, so the
            # executor's thread hashes beside the worker instead of waiting for it
            arrays = self._host_arrays(outs)
            if arrays is not None:
                self._queue_parts(_PartsStep.of_host(self, outs, *arrays))
                return
        if any(isinstance(t, torch.Tensor) and not t.is_cpu for t in outs):
            # the device→host copy is queued here, on the executor's stream, in step order
            job = self._pool.submit(self._finish, *self._host_leaves(outs))
        else:
            # host tensors are final once returned: even the per-leaf bookkeeping (~13 ms a
            # SmolLM2 step) moves to the worker, which gets the GIL while the executor's C
            # kernels run
            job = self._pool.submit(self._finish_host, outs)
        self._pending.append((job, None))
        if len(self._pending) > 2:  # bound the memory held by queued steps
            self._wait_oldest()

    def _host_leaves(self, outputs: Sequence[torch.Tensor | np.ndarray]
                     ) -> tuple[list[int], list[_Leaf]]:
        """Per output its distinct-tensor slot, and the distinct tensors in host memory."""
        slot_of: dict[int, int] = {}
        slots: list[int] = []
        uniq: list[torch.Tensor | np.ndarray] = []
        for t in outputs:
            i = slot_of.get(id(t))
            if i is None:
                i = slot_of[id(t)] = len(uniq)
                uniq.append(t)
            slots.append(i)
        cuda = [t for t in uniq if isinstance(t, torch.Tensor) and not t.is_cpu]
        staged = _stage_device(cuda) if cuda else {}
        leaves = []
        for t in uniq:
            if isinstance(t, torch.Tensor) and id(t) in staged:
                leaves.append(staged[id(t)])
            else:
                leaves.append(_host_leaf(t))
        return slots, leaves

    def _finish(self, slots: list[int], leaves: list[_Leaf]) -> None:
        t0 = time.perf_counter()
        _wait_copies(leaves)
        roots = self._leaf_roots(leaves)
        self._add_roots(b"".join(roots[i] for i in slots))
        if self._f is not None:
            for i in slots:
                a = _leaf_array(leaves[i])
                data = canonical_bytes(a)
                self._index.append([self._bytes_kept, len(data), a.dtype.name, list(a.shape)])
                self._f.write(data)
                self._bytes_kept += len(data)
        self.hash_seconds += time.perf_counter() - t0

    def _finish_host(self, outs: list[torch.Tensor | np.ndarray]) -> None:
        """`_finish` for a step of host tensors, in one pass over the outputs when every
        distinct one is a contiguous, non-empty tensor of a committed dtype and nothing is
        kept on disk (the usual case): no `_Leaf` per tensor. On two cores this loop holds
        the GIL the executor's dispatch needs, so its ~2 µs per leaf is the trace overhead
        that shows; anything else takes the general path."""
        arrays = self._host_arrays(outs) if self._f is None and _LITTLE else None
        if arrays is None:
            self._finish(*self._host_leaves(outs))
            return
        t0 = time.perf_counter()
        ptrs, sizes, hdrs, slots = arrays
        roots = tensor_roots_at(ptrs, sizes, hdrs, 1)  # one thread: see `_leaf_roots`
        self._add_roots(b"".join(roots[i] for i in slots))
        self.hash_seconds += time.perf_counter() - t0

    def _host_arrays(self, outs: Sequence[torch.Tensor | np.ndarray]
                     ) -> tuple[list[int], list[int], list[bytes], list[int]] | None:
        """(addresses, sizes, headers) of the distinct tensors and each output's slot, or
        None unless every one is a contiguous, non-empty CPU tensor of a committed dtype."""
        heads, raw_ok = self._theads, _RAW_OK
        slot_of: dict[int, int] = {}
        slots: list[int] = []
        ptrs: list[int] = []
        sizes: list[int] = []
        hdrs: list[bytes] = []
        for t in outs:
            i = slot_of.get(id(t))
            if i is None:
                if (not isinstance(t, torch.Tensor) or not t.is_cpu or not t.is_contiguous()
                        or not t.nbytes):
                    return None
                key = (t.dtype, t.shape)
                head = heads.get(key)
                if head is None:
                    if t.dtype not in raw_ok:
                        return None
                    head = heads[key] = header(raw_ok[t.dtype], tuple(t.shape))
                i = slot_of[id(t)] = len(ptrs)
                ptrs.append(t.data_ptr())
                sizes.append(t.nbytes)
                hdrs.append(head)
            slots.append(i)
        return ptrs, sizes, hdrs, slots

    def _finish_parts(self, step: _PartsStep | _DeviceStep) -> None:
        """The worker's side of a step hashed in parts: hash the parts nobody took yet, wait
        for the ones the executor's thread took, then append the step's roots in leaf
        order."""
        t0 = time.perf_counter()
        step.help()
        self._add_roots(step.roots_raw())
        self.hash_seconds += time.perf_counter() - t0

    def _add_roots(self, roots: bytes) -> None:
        """A step's roots, in leaf order, joined: kept, and their C5 leaves and complete
        subtrees hashed now, on the hashing thread, rather than all at `root()` after the last
        step. They stay joined until `roots` is read: a step's ~5,500 32-byte objects cost the
        hashing thread ~1 ms of the GIL on the H200's host. A compact trace given all of a
        step's roots (a kept trace, the inline path of `background=False`) takes its
        committed ops' of them; plan and device steps hash only those (`_committed`)."""
        if self.cmap is not None and len(roots) == 32 * self.program.n_ops \
                and len(self.cmap) != self.program.n_ops:
            if self._c5_full is not None:
                self._full_raw.append(roots)
                self._c5_full.extend(roots)
            roots = np.frombuffer(roots, dtype=np.uint8).reshape(-1, 32)[self.cmap].tobytes()
        self._raw_roots.append(roots)
        self._c5.extend(roots)

    def _split_raw(self) -> None:
        for raw in self._raw_roots:
            self._roots.extend(raw[i:i + 32] for i in range(0, len(raw), 32))
        self._raw_roots = []

    def _leaf_roots(self, leaves: list[_Leaf], threads: int | None = None) -> list[bytes]:
        """C4 roots of a step's distinct tensors. Those whose memory is their C1 bytes go in
        one `tensor_roots_at` call on that memory (the C side hashes chunks and tree nodes of
        all of them eight at a time; one call per tensor was ~5× slower); the rest
        (non-contiguous, empty, other dtypes, big-endian hosts) one by one."""
        heads = self._heads
        direct, ptrs, sizes, hdrs = [], [], [], []
        for i, lf in enumerate(leaves):
            if not (_LITTLE and lf.ptr):
                continue
            key = (lf.dtype, lf.shape)
            head = heads.get(key)
            if head is None:
                head = heads[key] = header(lf.dtype, lf.shape)
            direct.append(i)
            ptrs.append(lf.ptr)
            sizes.append(lf.nbytes)
            hdrs.append(head)
        # On the worker thread one hashing thread: the executor runs meanwhile, and a second
        # OpenMP thread sharing its cores stalled every parallel level (a CPU decode step took
        # ~60 ms longer than with one, measured on 2 cores); one thread hashes a step in a
        # tenth of its execution. Inline (background=False) the executor waits: all CPUs.
        if threads is None:
            threads = 1 if self._pool is not None else None
        roots: list[bytes] = [b""] * len(leaves)
        for i, r in zip(direct, tensor_roots_at(ptrs, sizes, hdrs, threads), strict=True):
            roots[i] = r
        if len(direct) < len(leaves):
            for i, lf in enumerate(leaves):
                if not roots[i]:
                    roots[i] = tensor_root_np(_leaf_array(lf))
        return roots

    def known_leaves(self, outs: StepOutputs, addr: np.ndarray, nbytes: np.ndarray,
                     keep: list) -> tuple[tuple[np.ndarray, ...] | None, list[tuple]]:
        """For `tensor_roots_raw(known=…)` over a plan step's ops: each appended KV cache
        (`StepPlan.appends`) gets a buffer for its leaves, and the previous plan step's leaves
        of it for the full chunks that step had, which hold the same bytes if the cache grew
        by appending. Returns the three arrays and the (op, address, last address, bytes,
        last entry) checks `_PartsStep` makes before trusting them; the buffers join `keep`
        (what the step's hashing holds), which the next step's entries hold in turn."""
        apps = outs.plan.appends
        prev, self._appends = self._appends, {}
        if not len(apps):
            return None, []
        n = len(addr)
        kp, kn, ko = np.zeros(n, np.uint64), np.zeros(n, np.int64), np.zeros(n, np.uint64)
        # one buffer for all the caches' leaves (a buffer and its address per cache were
        # ~0.15 ms a SmolLM2 step on the executor's thread)
        nbs = nbytes[apps].astype(np.int64)
        sizes = 32 * np.maximum(1, -(-nbs // CHUNK_BYTES))
        buf = np.empty(int(sizes.sum()), dtype=np.uint8)
        keep.append(buf)
        at = np.uint64(buf.ctypes.data) + (np.cumsum(sizes) - sizes).astype(np.uint64)
        ko[apps] = at
        checks = []
        for j, nb, lat in zip(apps.tolist(), nbs.tolist(), at.tolist(), strict=True):
            self._appends[j] = (lat, nb, int(addr[j]), keep)
            last = prev.get(j)
            full = last[1] // CHUNK_BYTES if last is not None and last[1] <= nb else 0
            if full:
                kp[j], kn[j] = last[0], full
                checks.append((j, int(addr[j]), last[2], full * CHUNK_BYTES, last))
        return (kp, kn, ko), checks

    def _queue_parts(self, step: _PartsStep | _DeviceStep) -> None:
        self._pending.append((self._pool.submit(self._finish_parts, step), step))
        while len(self._pending) > 2:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        """Wait for the oldest queued step, hashing its untaken parts here meanwhile."""
        job, step = self._pending.pop(0)
        if step is not None:
            step.help()
        job.result()

    def flush(self) -> None:
        """Wait until every queued step is hashed (and written)."""
        while self._pending:
            self._wait_oldest()

    @property
    def roots(self) -> list[bytes]:
        self.flush()
        self._split_raw()
        return self._roots

    @property
    def bytes_kept(self) -> int:
        self.flush()
        return self._bytes_kept

    @property
    def length(self) -> int:
        return len(self.roots)

    def leaves(self) -> list[bytes]:
        p, hashes = len(self.leaf_op_hashes), self.leaf_op_hashes
        roots = self.roots
        return trace_leaves([hashes[i % p] for i in range(len(roots))], roots)

    def root(self) -> bytes:
        """C5: Merkle root over the leaves (C3), from what `_add_roots` hashed as the steps
        came (repops.commit.TraceRootAccumulator)."""
        self.flush()
        return self._c5.root()

    def close(self, ok: bool = True) -> Path | None:
        """Finish the kept files (renamed in only when `ok`); returns the index path."""
        try:
            self.flush()
        except BaseException:
            if ok:
                raise
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        if self._f is None:
            return None
        self._f.close()
        self._f = None
        if not ok:
            self._partial(".bin").unlink(missing_ok=True)
            return None
        if self.cmap is None:
            full_root, full_roots = self.root(), self.roots
        else:  # the kept files are the full trace; the compact one is named beside it
            full_root = self._c5_full.root()
            full_roots = [r[i:i + 32] for r in self._full_raw for i in range(0, len(r), 32)]
        meta = {"program_root": self.program.root().hex(), "n_ops": self.program.n_ops,
                "job_tokens": self.job_tokens, "trace_root": full_root.hex(),
                "op_hashes": [h.hex() for h in self.op_hashes],
                "roots": [r.hex() for r in full_roots], "leaves": self._index}
        if self.cmap is not None:
            meta["compact"] = {"ops": self.cmap.tolist(), "trace_root": self.root().hex()}
        idx = self._partial(".json")
        idx.write_text(json.dumps(meta))
        os.replace(self._partial(".bin"), self._keep.with_name(self._keep.name + ".bin"))
        final = self._keep.with_name(self._keep.name + ".json")
        os.replace(idx, final)
        return final

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)


class _PartsStep:
    """One step's leaves to commit, in PARTS runs of about equal bytes (plus, for a step
    plan, the tail's tensors), each run one C call that releases the GIL. The worker thread
    takes parts in order; when the executor would wait for the worker
    (`TraceRecorder._wait_oldest`) it takes the untaken parts itself, so the two cores share
    the hashing instead of one idling (a SmolLM2 decode step hashes longer than it executes
    on this 2-core machine, and a prefill's ~0.35 s of hashing used to hold up the first
    decode steps). Which thread hashes a part changes no root."""

    PARTS = 8

    def __init__(self, rec: TraceRecorder, args: tuple[np.ndarray, ...], slot: np.ndarray,
                 keep: object, tail: list[torch.Tensor],
                 ready: torch.cuda.Event | None = None, threads: int = 1,
                 checks: Sequence[tuple] = ()) -> None:
        """args: addresses, sizes, header addresses, header lengths of the distinct leaves,
        then optionally `tensor_roots_raw`'s three known-leaves arrays; slot: per output its
        distinct leaf; keep: what holds that memory; tail: tensors hashed after them (their
        roots follow); ready: the device→host copy of that memory; threads: hashing threads
        per part; checks: (leaf, address, last address, bytes, _) whose known leaves hold
        only if those bytes are equal (`TraceRecorder.known_leaves`)."""
        self.rec, self._args, self._slot, self._keep, self._tailt = rec, args, slot, keep, tail
        self._checks = checks
        self._ready, self._threads = ready, threads
        # device tails are staged now, in stream order: a tail tensor may view the arena,
        # which a CUDA graph overwrites two steps later
        self._staged = rec._host_leaves(tail) if ready is not None and tail else None
        cum = np.cumsum(args[1])
        cuts = np.searchsorted(cum, cum[-1] * np.arange(1, self.PARTS) / self.PARTS) \
            if len(cum) else np.zeros(self.PARTS - 1, dtype=np.int64)
        self._edges = [0, *[int(c) for c in cuts], len(cum)]
        self._raw: list[bytes] = [b""] * self.PARTS
        self._tail = b""  # the tail tensors' roots, joined
        self._next = 0
        self._left = self.PARTS + 1
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()

    @classmethod
    def of_plan(cls, rec: TraceRecorder, outs: StepOutputs) -> _PartsStep | _DeviceStep:
        """A step plan's arena (node/ree/step_plan.py): the leaves' addresses and headers
        come as arrays; an op that repeats an earlier op's bits (same dtype and dims: a DOT
        segment past the live keys) takes that op's root instead of being hashed again."""
        host = outs.host_tail  # a CUDA step's SAMPLE tail, in a host plan's arena
        if outs.arena.device.type != "cpu":
            return _DeviceStep(rec, outs, host if host is not None else
                               list.__getitem__(outs, slice(outs.plan.tail, None)))
        tail = list.__getitem__(outs, slice(outs.plan.tail, None)) if host is None else \
            outs[outs.plan.tail:]
        uniq, slot, tail_ops = _committed(rec, outs)
        if tail_ops is not None:
            tail = [tail[i - outs.plan.tail] for i in tail_ops.tolist()]
        addr, nbytes, hdr, hlen = outs.leaf_arrays()
        hptr = _row_ptrs(hdr)
        keep = [outs, hdr]
        known, checks = rec.known_leaves(outs, addr, nbytes, keep)
        args = (addr[uniq].astype(np.uint64), nbytes[uniq], hptr[uniq], hlen[uniq])
        if known is not None:
            args += tuple(a[uniq] for a in known)
            at = np.searchsorted(uniq, [c[0] for c in checks])  # appended caches never alias
            checks = [(int(k), *c[1:]) for k, c in zip(at, checks, strict=True)]
        return cls(rec, args, slot, keep, tail, checks=checks)

    @classmethod
    def of_host(cls, rec: TraceRecorder, outs: list, ptrs: list[int], sizes: list[int],
                hdrs: list[bytes], slots: list[int]) -> _PartsStep:
        """Host tensors (`TraceRecorder._host_arrays`)."""
        hbuf, hptr, hlen = header_arrays(hdrs)
        return cls(rec, (np.array(ptrs, dtype=np.uint64), np.array(sizes, dtype=np.int64),
                         hptr, hlen), np.array(slots, dtype=np.int64), (outs, hbuf), [])

    def help(self) -> None:
        """Hash untaken parts until none is left (part PARTS: the tail's tensors)."""
        while True:
            with self._lock:
                k = self._next
                if k > self.PARTS:
                    return
                self._next += 1
            try:
                if k < self.PARTS:
                    a, b = self._edges[k], self._edges[k + 1]
                    if b > a:
                        if self._ready is not None:
                            self._ready.synchronize()
                        known = None
                        if len(self._args) > 4:
                            self._check(a, b)
                            known = tuple(x[a:b] for x in self._args[4:])
                        self._raw[k] = tensor_roots_raw(*(x[a:b] for x in self._args[:4]),
                                                        self._threads, known)
                elif self._tailt:
                    if self._staged is not None:
                        slots, leaves = self._staged
                        _wait_copies(leaves)
                    else:
                        slots, leaves = self.rec._host_leaves(self._tailt)
                    troots = self.rec._leaf_roots(leaves)
                    self._tail = b"".join(troots[i] for i in slots)
            except BaseException as e:  # re-raised by `roots` on the worker
                self._error = e
            finally:
                with self._lock:
                    self._left -= 1
                    if self._left == 0:
                        self._done.set()

    def _check(self, a: int, b: int) -> None:
        """Known leaves of distinct leaves [a, b) hold only where last step's bytes are the
        prefix of this step's (they are, for a correct executor: this guards the commitment
        against one that is not)."""
        for k, cur, last, n, _ in self._checks:
            # whole chunks (n is a multiple of 1 KiB): compared as words, 8x fewer elements
            if a <= k < b and not np.array_equal(_bytes_at(cur, n).view(np.uint64),
                                                 _bytes_at(last, n).view(np.uint64)):
                self._args[5][k] = 0

    def roots_raw(self) -> bytes:
        """The step's roots in leaf order, joined, once every part is hashed."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return _in_leaf_order(b"".join(self._raw), self._slot) + self._tail


class _DeviceStep:
    """One step of a device arena (node/ree/step_plan_cuda.py) whose C4 roots are computed on
    the device (repops/gpu/keccak.py), queued on the executor's stream right after the step:
    by the step's roots graph (`roots_graph`, a graph step: two launches replayed) or else
    by the same two kernels launched for this step's sizes. 32 bytes a tensor cross to
    the host instead of the ~23 MB of leaf bytes a SmolLM2 token, whose host hashing took
    longer than the step itself on an H200 (notes-runtime-perf.md). The host-side SAMPLE
    tail's tensors are hashed on the host by whichever thread calls `help` first."""

    def __init__(self, rec: TraceRecorder, outs: StepOutputs, tail: list | StepOutputs
                 ) -> None:
        """`tail`: the host-side tail's tensors, or the host plan's outputs (hashed from its
        arena's arrays: no tensor per leaf)."""
        rec._appends = {}  # no KV-cache leaf reuse here (`known_leaves`): not worth it
        outs.wait_ready()
        graph = getattr(outs, "roots_graph", None)
        # the roots of a batch lane, or of a job with ROOTS_BESIDE, run on a side stream
        # (`LaneStack.roots`, `_Graphs.roots`), copied from there: the next step's graph
        # need not wait for them
        side = getattr(outs, "roots_stream", None)
        no_alias = bool((outs.alias < 0).all())  # a graph step's: what its roots graph hashes
        uniq, slot, tail_ops = _committed(rec, outs)
        self._tail_ops = tail_ops
        if tail_ops is not None and not isinstance(tail, StepOutputs):
            tail = [tail[i - outs.plan.tail] for i in tail_ops.tolist()]
        roots_d = None
        if graph is not None and no_alias:
            # a compact trace's graph hashes only its committed ops (`_RootsGraphs`), in the
            # order of `uniq` (no op repeats another in a graph step)
            roots_d = graph(wait=side is None, compact=tail_ops is not None)
        if roots_d is None:  # an eager step: the same kernels, laid out for this step's sizes
            side = None
            from node.ree.step_plan_cuda import arena_rows
            from repops.gpu.keccak import device_roots

            roots_d = device_roots(outs.arena, arena_rows(outs.plan, uniq, outs.dims,
                                                          outs.nbytes, outs.offs))
        self._keep = (outs, roots_d)
        self._host = torch.empty(tuple(roots_d.shape), dtype=torch.uint8, pin_memory=True)
        with torch.cuda.stream(side):  # None: the current stream
            self._host.copy_(roots_d, non_blocking=True)
            self._ready = torch.cuda.Event()
            self._ready.record()
        self.rec, self._slot = rec, slot
        # staged now, in stream order: a tail tensor may view the arena, which a CUDA graph
        # overwrites two steps later
        self._tail_plan = tail if isinstance(tail, StepOutputs) else None
        self._staged = rec._host_leaves(tail) if tail and self._tail_plan is None else None
        self._threads = max(1, min(8, (os.cpu_count() or 2) - 2))
        self._tail = b""  # the tail's roots, joined
        self._error: BaseException | None = None
        self._taken = False
        self._lock = threading.Lock()
        self._done = threading.Event()

    def help(self) -> None:
        """Hash the tail and wait for the device's roots, unless another thread does."""
        with self._lock:
            if self._taken:
                return
            self._taken = True
        try:
            if self._staged is not None:
                slots, leaves = self._staged
                _wait_copies(leaves)
                troots = self.rec._leaf_roots(leaves, self._threads)
                self._tail = b"".join(troots[i] for i in slots)
            elif self._tail_plan is not None:
                self._keep[0].tail_ready()
                host = self._tail_plan
                addr, nbytes, hdr, hlen = host.leaf_arrays(host.plan.start)
                ptrs = _row_ptrs(hdr)
                if self._tail_ops is not None:  # compact: the committed tail ops only
                    sel = self._tail_ops - host.plan.start
                    addr, nbytes, ptrs, hlen = addr[sel], nbytes[sel], ptrs[sel], hlen[sel]
                self._tail = tensor_roots_raw(addr.astype(np.uint64), nbytes, ptrs, hlen,
                                              self._threads)
            self._ready.synchronize()
        except BaseException as e:  # re-raised by `roots` on the worker
            self._error = e
        finally:
            self._done.set()

    def roots_raw(self) -> bytes:
        """The step's roots in leaf order, joined."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return _in_leaf_order(self._host.numpy().tobytes(), self._slot) + self._tail


def _row_ptrs(hdr: np.ndarray) -> np.ndarray:
    """The address of each row of a C4 header matrix (`StepOutputs.leaf_arrays`); the caller
    keeps the matrix alive while they are read."""
    return np.uint64(hdr.ctypes.data) + np.arange(len(hdr), dtype=np.uint64) * np.uint64(
        hdr.shape[1])


def _in_leaf_order(raw: bytes, slot: np.ndarray) -> bytes:
    """Distinct leaves' roots (joined) as the ops' roots in leaf order (op i: slot[i])."""
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 32)[slot].tobytes()


def _committed(rec: TraceRecorder, outs: StepOutputs
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The distinct leaves a plan step must hash for `rec` (ascending), each committed body
    op's index among them, and the committed tail ops (None: every op, a full trace). A
    compact trace (§L10) hashes its committed ops and the earlier ops they repeat. (A kept
    trace, which needs every op's root, does not hash plan steps in parts.)"""
    if rec.cmap is None:
        uniq, slot = _distinct(outs.alias)
        return uniq, slot, None
    body = rec.cmap[:int(np.searchsorted(rec.cmap, outs.plan.tail))]
    rep = outs.alias[body]
    rep = np.where(rep < 0, body, rep)
    need = np.zeros(len(outs.alias), dtype=bool)
    need[rep] = True
    return np.flatnonzero(need), (np.cumsum(need) - 1)[rep], rec.cmap[len(body):]


def _distinct(alias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A plan step's distinct leaves (ops with no alias) and each op's index among them."""
    uniq = np.flatnonzero(alias < 0)
    slot = (np.cumsum(alias < 0) - 1)[np.where(alias < 0, np.arange(len(alias)), alias)]
    return uniq, slot


def _bytes_at(addr: int, n: int) -> np.ndarray:
    return np.frombuffer((ctypes.c_uint8 * n).from_address(addr), dtype=np.uint8)


def _wait_copies(leaves: list[_Leaf]) -> None:
    """Wait for the device→host copies of staged leaves (one event per staging call)."""
    for ev in {id(lf.ready): lf.ready for lf in leaves if lf.ready is not None}.values():
        ev.synchronize()


def _host_leaf(t: torch.Tensor | np.ndarray) -> _Leaf:
    if isinstance(t, torch.Tensor):
        if not t.is_cpu:
            t = t.detach().cpu()
        dtype = _RAW_OK.get(t.dtype)
        if dtype is None or not t.is_contiguous() or t.numel() == 0:
            return _Leaf(to_numpy(t), 0, 0, "", ())
        # the tensor itself holds the hashed memory; a NumPy view is made only where one is
        # read (`_leaf_array`): detach + numpy + ctypes per leaf were ~3/4 of a CPU step's
        # add_step (~45 ms of ~4,600 leaves, measured)
        return _Leaf(t, t.data_ptr(), t.nbytes, dtype, tuple(t.shape))
    a = t
    if a.dtype.name not in NP_DTYPES or not a.flags.c_contiguous or a.size == 0 \
            or a.dtype.byteorder == ">":
        return _Leaf(a, 0, 0, "", ())
    return _Leaf(a, a.ctypes.data, a.nbytes, a.dtype.name, tuple(a.shape))


def _stage_device(ts: list[torch.Tensor]) -> dict[int, _Leaf]:
    """All of a step's device tensors to host in one copy: their bytes are concatenated on
    the device, copied to pinned memory without blocking, and read after an event (the
    per-leaf `.cpu()` was one synchronising transfer per leaf, ~6,000 per step)."""
    ok = [t for t in ts if t.dtype in _RAW_OK and t.numel() > 0]
    out = {id(t): _host_leaf(t) for t in ts if t.dtype not in _RAW_OK or t.numel() == 0}
    if not ok:
        return out
    flat = torch.cat([t.detach().contiguous().reshape(-1).view(torch.uint8) for t in ok])
    host = torch.empty(flat.shape, dtype=torch.uint8, pin_memory=True)
    host.copy_(flat, non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    base, off = host.data_ptr(), 0
    arr = host.numpy()
    for t in ok:
        n = t.numel() * t.element_size()
        out[id(t)] = _Leaf(arr[off:off + n], base + off, n, _RAW_OK[t.dtype],
                           tuple(t.shape), done)
        off += n
    return out


def _leaf_array(lf: _Leaf) -> np.ndarray:
    """The leaf as a typed NumPy array (kept files, the pure-Python hashing path)."""
    a = lf.array
    if isinstance(a, torch.Tensor):
        return a.detach().numpy()
    if lf.ptr and a.dtype == np.uint8 and lf.dtype != "uint8":
        return a.view(NP_DTYPES[lf.dtype]).reshape(lf.shape)
    return a


class KeptTrace:
    """Read access to a kept trace: any leaf's tensor, its root, the trace records."""

    def __init__(self, base: str | Path) -> None:
        base = Path(base)
        if base.suffix in (".json", ".bin"):
            base = base.with_suffix("")
        self.base = base
        meta_path = base.with_name(base.name + ".json")
        if not meta_path.is_file():
            raise FileNotFoundError(f"no kept trace at {meta_path}")
        self.meta = json.loads(meta_path.read_text())
        self._data = np.memmap(base.with_name(base.name + ".bin"), dtype=np.uint8, mode="r") \
            if self.meta["leaves"] and self.meta["leaves"][-1][0] + self.meta["leaves"][-1][1] \
            else np.zeros(0, np.uint8)

    @property
    def length(self) -> int:
        return len(self.meta["leaves"])

    def root(self, leaf: int) -> bytes:
        return bytes.fromhex(self.meta["roots"][leaf])

    def tensor(self, leaf: int) -> np.ndarray:
        """Leaf `leaf`'s output tensor (C1 bytes read back)."""
        if not 0 <= leaf < self.length:
            raise IndexError(f"leaf {leaf} outside the trace of {self.length}")
        off, n, dtype, shape = self.meta["leaves"][leaf]
        raw = np.asarray(self._data[off:off + n]).tobytes()
        return np.frombuffer(raw, dtype=np.dtype(NP_DTYPES[dtype]).newbyteorder("<")) \
            .astype(NP_DTYPES[dtype]).reshape(shape)

    def check(self, leaf: int) -> bool:
        """The stored bytes still hash to the recorded root (C4)."""
        return tensor_root_np(self.tensor(leaf)) == self.root(leaf)

    def records(self):  # noqa: ANN201 - node.p2p.source.TraceRecords
        from node.p2p.source import TraceRecords

        p, hashes = self.meta["n_ops"], self.meta["op_hashes"]
        return TraceRecords([bytes.fromhex(hashes[i % p]) for i in range(self.length)],
                            [self.root(i) for i in range(self.length)])


class KeptTraceSource:
    """`node.p2p.source.TraceSource` over a directory of kept traces named `job-<id>`."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def _open(self, job: int) -> KeptTrace | None:
        try:
            return KeptTrace(self.dir / f"job-{job}")
        except FileNotFoundError:
            return None

    def trace(self, job: int):  # noqa: ANN201 - TraceRecords | None
        kt = self._open(job)
        return None if kt is None else kt.records()

    def tensor(self, job: int, op: int):  # noqa: ANN201 - TensorBlob | None
        from node.p2p.source import TensorBlob

        kt = self._open(job)
        if kt is None or not 0 <= op < kt.length:
            return None
        return TensorBlob.from_array(kt.tensor(op))
