"""Host memory for step arenas (node/ree/step_plan.py), reused once nothing views it.

Why: a SmolLM2 decode step writes ~26 MB of outputs into a fresh arena, and with the trace
~3 arenas live at once (the recorder hashes a step or two behind the executor). malloc gave
freed arenas back to the kernel, or left holes one step too small (the KV caches grow every
step), so the plan wrote into new pages: ~1,000-2,000 page faults a token, 1-4 ms of a core
in the kernel beside the executor and the hashing (perf, docs/reports/notes-runtime-perf.md).
Past the 32 MB where malloc always maps fresh memory (~250 tokens of context), every step
faulted its whole arena: 6,000-16,000 faults a step, 36 ms a step at 400 tokens (13 ms now).

A buffer is a NumPy array that this pool holds; an arena is a torch tensor over it
(`torch.from_numpy`), and every view of that tensor keeps the array referenced. So the array's
reference count says whether anything still reads an arena: nothing but the pool holds it, it
is free. Reuse changes no value, only where the bytes of a step lie.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Future, wait

import numpy as np
import torch


def rounded(size: int) -> int:
    """`size` rounded up to a step of 1/8-1/16 of it (at least 64 KiB): an arena that grew a
    little since the last step still fits the buffer the last one of its size freed."""
    step = 1 << max(16, size.bit_length() - 4)
    return -(-size // step) * step


class ArenaPool:
    """Buffers of step arenas: every buffer in use, and up to `max_free` bytes of free ones.

    Why bound the free bytes, not all: a batch of 32 traced jobs has ~100 arenas in use at
    once (each job's recorder hashes a step or two behind); buffers beyond a cap on the
    total would be new memory every step again."""

    def __init__(self, max_free: int = 1 << 30) -> None:
        self.max_free = max_free
        self._bufs: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.allocated = 0  # buffers made (diagnostics: a steady decode makes none)

    def take(self, size: int) -> torch.Tensor:
        """A uint8 tensor of `size` bytes, uninitialised, on a free buffer if one fits."""
        want = rounded(size)
        with self._lock:
            bufs = self._bufs
            # the first free buffer of exactly this size is the one the scan below would
            # pick (the smallest that fits, the first of equals), found without checking
            # every buffer's count: a batch's arenas are mostly of one size (32 takes among
            # ~96 such buffers: 0.27 → 0.17 ms here, of a 32-job tail lay out's ~1.2 ms)
            for k in range(len(bufs)):
                if bufs[k].nbytes == want and sys.getrefcount(bufs[k]) == 2:
                    return torch.from_numpy(bufs[k])[:size]
            free = [k for k in range(len(bufs)) if sys.getrefcount(bufs[k]) == 2]
            fit = [k for k in free if want <= bufs[k].nbytes <= 2 * want]
            if fit:
                return torch.from_numpy(bufs[min(fit, key=lambda k: bufs[k].nbytes)])[:size]
            # a decode's arenas only grow (its KV caches), so a free buffer too small for this
            # one is not taken again: kept, they held ~1 GB at 400 tokens and the decode step
            # went from 9.5 to 22 ms (the kernel compacting memory for huge pages)
            drop = {k for k in free if bufs[k].nbytes < want}
            idle = sum(bufs[k].nbytes for k in free if k not in drop)
            for k in sorted(set(free) - drop, key=lambda k: -bufs[k].nbytes):
                if idle <= self.max_free:
                    break
                drop.add(k)
                idle -= bufs[k].nbytes
            buf = np.empty(want, dtype=np.uint8)  # NumPy asks for huge pages: 4 KiB ones
            self.allocated += 1                     # measured 5-10 % slower here
            self._bufs = [b for k, b in enumerate(bufs) if k not in drop] + [buf]
        return torch.from_numpy(buf)[:size]


class Readers:
    """Work still reading a host buffer in place, which the buffer's next writer waits for.

    Why: a batch's host tails read a CUDA stack's pinned logits rows where they lie
    (`StepPlan.prepare_jobs(in_place=True)`) instead of copying 6.3 MB into their arenas, and
    the rest of those tails runs on a worker beside the next steps; the stack queues the
    copy that rewrites the rows two steps later (`LaneStack.speculate`) only after this."""

    def __init__(self) -> None:
        self._pending: list[Future] = []
        self._lock = threading.Lock()

    def add(self, reader: Future) -> None:
        """`reader` reads the buffer until it is done."""
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()] + [reader]

    def wait(self) -> None:
        """Return once no reader added so far still runs (their errors are theirs to raise:
        each reader's own waiter reports it)."""
        with self._lock:
            pending, self._pending = self._pending, []
        wait(pending)
