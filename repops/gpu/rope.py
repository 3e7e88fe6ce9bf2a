"""RoPE application on the GPU (RepOps spec §6.9): a' = a·c − b·s, b' = a·s + b·c, each mul
rounded, no fma (launched with FP_FLAGS), dims >= R copied unchanged."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from repops.gpu.launch import FP_FLAGS, check_cuda, check_f32_cuda, interpreting, next_pow2
from repops.gpu.primitives import canon_nan


@triton.jit
def rope_pair(a, b, c, s):
    """RepOps spec §6.9 on one pair: (a·c − b·s, a·s + b·c), each product rounded (the
    caller launches with FP_FLAGS: no fma), NaN canonical."""
    return canon_nan(a * c - b * s), canon_nan(a * s + b * c)


@triton.jit
def rope_rows(X, Y, base, i, h, t, COS, SIN, m, HALF_MODE: tl.constexpr):
    """RepOps spec §6.9 on the vectors at X + base (a column of offsets) into Y + base: pair
    i is (2i, 2i+1) (adjacent) or (i, i+h) (half), rotated by table entries COS/SIN + t."""
    if HALF_MODE:
        ia = i
        ib = i + h
    else:
        ia = 2 * i
        ib = 2 * i + 1
    a = tl.load(X + base + ia[None, :], mask=m, other=0.0)
    b = tl.load(X + base + ib[None, :], mask=m, other=0.0)
    a2, b2 = rope_pair(a, b, tl.load(COS + t, mask=m, other=0.0),
                       tl.load(SIN + t, mask=m, other=0.0))
    tl.store(Y + base + ia[None, :], a2, mask=m)
    tl.store(Y + base + ib[None, :], b2, mask=m)


@triton.jit
def _rope_kernel(X, Y, POS, COS, SIN, n_rows, D, R, s_tab,
                 HALF_MODE: tl.constexpr, RB: tl.constexpr, BH: tl.constexpr):
    """RepOps spec §6.9 on RB vectors, each at its own position (`rope_rows`)."""
    rows = tl.program_id(0) * RB + tl.arange(0, RB)
    i = tl.arange(0, BH)
    h = R // 2
    m = (rows[:, None] < n_rows) & (i[None, :] < h)
    pos = tl.load(POS + rows, mask=rows < n_rows, other=0).to(tl.int64)
    rope_rows(X, Y, rows[:, None].to(tl.int64) * D, i, h, pos[:, None] * s_tab + i[None, :],
              COS, SIN, m, HALF_MODE)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, pairing: str = "adjacent",
         positions: torch.Tensor | None = None) -> torch.Tensor:
    """RepOps spec §6.9 with R = 2 * cos.shape[-1] rotated dims.

    Without `positions` (the CPU reference's form) x is [..., T, D] and cos/sin are [T, R/2],
    row t for x[..., t, :]. With `positions` (int, broadcast to x.shape[:-1]) cos/sin are the
    full [P_max, R/2] tables, indexed per vector.
    """
    check_f32_cuda("rope", x, cos, sin)
    if pairing not in ("adjacent", "half"):
        raise ValueError(f"repops.rope: pairing must be 'adjacent' or 'half', got {pairing!r}")
    if x.dim() < 1 or cos.shape != sin.shape or cos.dim() != 2:
        raise ValueError(f"repops.rope: bad shapes x {tuple(x.shape)}, cos {tuple(cos.shape)}, "
                         f"sin {tuple(sin.shape)}")
    d = x.shape[-1]
    r = 2 * cos.shape[1]
    if r > d:
        raise ValueError(f"repops.rope: tables rotate {r} dims but x has D = {d} "
                         f"(x {tuple(x.shape)}, cos {tuple(cos.shape)})")
    if positions is None:
        if x.dim() < 2 or cos.shape[0] != x.shape[-2]:
            raise ValueError(f"repops.rope: cos/sin {tuple(cos.shape)} must have one row per "
                             f"position of x {tuple(x.shape)} (dim -2)")
        positions = torch.arange(x.shape[-2], device=x.device, dtype=torch.int64)[:, None]
        pos = positions.expand(*x.shape[:-2], x.shape[-2], 1).reshape(-1)
    else:
        check_cuda("rope", positions, (torch.int32, torch.int64))
        try:
            pos = positions.expand(x.shape[:-1]).contiguous().reshape(-1)
        except RuntimeError as e:
            raise ValueError(f"repops.rope: positions {tuple(positions.shape)} do not broadcast "
                             f"to {tuple(x.shape[:-1])}") from e
        if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= cos.shape[0]):
            raise ValueError(f"repops.rope: positions outside the table [0, {cos.shape[0]})")
    pos = pos.contiguous()
    x2 = x.contiguous().reshape(-1, d)
    y = x2.clone()  # dims >= R are bit copies
    n = x2.shape[0]
    if n and r:
        bh = next_pow2(r // 2)
        rb = 4 if interpreting() else max(1, min(64, 2048 // bh))
        _rope_kernel[(triton.cdiv(n, rb),)](x2, y, pos, cos.contiguous(), sin.contiguous(), n,
                                            d, r, cos.shape[1], HALF_MODE=pairing == "half",
                                            RB=rb, BH=bh, **FP_FLAGS)
    return y.reshape(x.shape)
