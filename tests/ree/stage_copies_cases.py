"""Cases for stage_copies_cuda.copy_words and run_copies' launch, shared by the interpreter
run (a child process: TRITON_INTERPRET=1 must be set before triton is imported) and the GPU
test (test_stage_copies_cuda.py)."""

from __future__ import annotations

import sys

import numpy as np
import torch

from node.ree.stage_copies_cuda import BLOCK, copy_words


def check(device: torch.device) -> list[str]:
    """Copies of lengths around the block size (one word, a partial block, several blocks
    past the grid's eight programs a copy) into one arena, each landing where its address
    says and nothing else written; then `run_copies` with a source inside the arena that
    another copy overwrites (read before any write)."""
    from node.ree.step_plan_cuda import run_copies

    bad = []
    gen = torch.Generator().manual_seed(11)
    lengths = [1, 5, BLOCK - 1, BLOCK, BLOCK + 1, 9 * BLOCK + 17]
    srcs = [torch.randn(n, generator=gen).to(device) for n in lengths]
    arena = torch.full((sum(lengths) + 64 * len(lengths),), -7.0, device=device)
    want = arena.clone()
    at, offs = 3, []
    for t in srcs:
        offs.append(at)
        want[at:at + t.numel()] = t
        at += t.numel() + 64
    copy_words(np.array([arena.data_ptr() + 4 * o for o in offs], dtype=np.int64),
               np.array([t.data_ptr() for t in srcs], dtype=np.int64),
               np.array(lengths, dtype=np.int64), device)
    if not torch.equal(arena.view(torch.int32), want.view(torch.int32)):
        bad.append("copy_words: the arena differs from the copies' bytes")
    copy_words(*(np.zeros(0, dtype=np.int64) for _ in range(3)), device)  # nothing to copy
    try:
        copy_words(np.array([arena.data_ptr()]), np.array([srcs[0].data_ptr()]),
                   np.array([-1]), device)
        bad.append("copy_words took a negative length")
    except ValueError:
        pass
    a = torch.arange(64, dtype=torch.float32, device=device)
    before = a[16:24].clone()
    outside = torch.arange(100, 108, dtype=torch.float32, device=device)
    b8 = a.view(torch.uint8)
    run_copies([(b8, 32 * 4, a[16:24]), (b8, 16 * 4, outside)])
    if not (torch.equal(a[32:40], before) and torch.equal(a[16:24], outside)):
        bad.append("run_copies: a source inside the arena was read after a write")
    return bad


if __name__ == "__main__":
    failures = check(torch.device("cpu"))
    print("\n".join(failures) or "all equal")
    sys.exit(1 if failures else 0)
