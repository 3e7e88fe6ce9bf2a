"""Many small device copies in one launch, from a table of (destination, source, words):
a stack's staged KV caches (step_plan_cuda `run_copies`).

Why: the first step of a CUDA stack after job-by-job prefills stages 32 jobs × 60 caches
into the lanes' arenas. Collected as a (destination view, source view) pair each for one
multi-tensor copy, the views alone were ~8 µs a cache of Python (scripts/
bench_stage_copies.py: 14-25 ms for 1,920 caches on this 2-core machine), most of that first
step (34.5 ms against ~9 ms steady on the H100, bench-runtime.md `cuda-h100-dec07b-b32`).
Here a cache costs two addresses and a length: the host fills three int64 columns and the
device copies every cache in one launch.

The copies are of 32-bit words, so the bits are the sources'. Sources must not lie where any
destination does (the caller clones those first: `run_copies`), since the programs run in
no set order.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

BLOCK = 1024  # words a program copies per pass


@triton.jit
def _copy_kernel(TABLE, NPAIRS, BLOCK: tl.constexpr):
    """Program (p, q): block q of pair p's words, then every num_programs(1)-th block after;
    TABLE is [3, NPAIRS]: destination address, source address, length in words."""
    p = tl.program_id(0)
    q = tl.program_id(1)
    dst = tl.load(TABLE + p).to(tl.pointer_type(tl.int32))
    src = tl.load(TABLE + NPAIRS + p).to(tl.pointer_type(tl.int32))
    n = tl.load(TABLE + 2 * NPAIRS + p)
    step = tl.num_programs(1) * BLOCK
    for start in range(q * BLOCK, n, step):
        i = start + tl.arange(0, BLOCK)
        m = i < n
        tl.store(dst + i, tl.load(src + i, mask=m), mask=m)


def copy_words(dst: np.ndarray, src: np.ndarray, words: np.ndarray,
               device: torch.device) -> None:
    """Copy words[p] 32-bit words from address src[p] to address dst[p], for every p, on
    `device`'s current stream; every address is a device address, 4-byte aligned."""
    n = len(dst)
    if not (len(src) == len(words) == n):
        raise ValueError("one source and one length per destination")
    if n == 0:
        return
    if ((dst | src) % 4).any() or (words < 0).any():
        raise ValueError("copy_words copies whole 32-bit words from aligned addresses")
    table = torch.from_numpy(np.stack([dst, src, words]).astype(np.int64)).to(device)
    per = int(words.max())
    grid = (n, max(1, min(8, -(-per // BLOCK))))
    _copy_kernel[grid](table, n, BLOCK=BLOCK)
