"""Embedding gather on the GPU (RepOps spec §6.12): rows of the table copied bit for bit."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from repops.gpu.launch import check_cuda, check_f32_cuda, interpreting, next_pow2


@triton.jit
def _gather_kernel(IDS, T, Y, D, BD: tl.constexpr):
    """One output row per program; the bits move as int32 (no float op touches them)."""
    r = tl.program_id(0).to(tl.int64)
    idx = tl.load(IDS + r).to(tl.int64)
    for c0 in range(0, D, BD):
        c = c0 + tl.arange(0, BD)
        v = tl.load(T + idx * D + c, mask=c < D)
        tl.store(Y + r * D + c, v, mask=c < D)


def embedding(ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """RepOps spec §6.12: out[..., :] = table[ids[...], :]; an id outside [0, V) is an error."""
    check_cuda("embedding", ids, (torch.int32, torch.int64))
    check_f32_cuda("embedding", table)
    if table.dim() != 2:
        raise ValueError(f"repops.embedding: table must be [V, D], got {tuple(table.shape)}")
    v, d = table.shape
    flat = ids.contiguous().reshape(-1)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= v):
        raise ValueError(f"repops.embedding: ids outside [0, {v}) (ids shape {tuple(ids.shape)})")
    t32 = table.contiguous().view(torch.int32)
    out = torch.empty((flat.numel(), d), dtype=torch.int32, device=table.device)
    if flat.numel() and d:
        bd = 16 if interpreting() else min(1024, next_pow2(d))
        _gather_kernel[(flat.numel(),)](flat, t32, out, d, BD=bd)
    return out.view(torch.float32).reshape(*ids.shape, d)
