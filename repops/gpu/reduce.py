"""Row reductions on the GPU: fold-tree sum (RepOps spec §4.1), max/min (§4.2), argmax (§6.11).

Rows are made contiguous [R, n] (launch.rows_last). A row of P = next_pow2(n) <= MAX_FOLD
values is folded in registers; longer rows first run the top levels of the same tree through
memory (`_fold_level_kernel`, one launch per level), which is the identical sequence of adds.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from repops.gpu.launch import (
    FP_FLAGS,
    NEG_ZERO,
    check_f32_cuda,
    interpreting,
    next_pow2,
    norm_dim,
    rows_last,
)
from repops.gpu.primitives import canon_nan, fold_rows, key_to_float, order_key

MAX_FOLD = 4096  # widest row folded in registers by one program


def max_fold() -> int:
    """Register-fold width; small under the interpreter so CI walks the memory levels too."""
    return 16 if interpreting() else MAX_FOLD


def _rows_per_prog(p: int) -> int:
    return max(1, min(64, 2048 // p))


@triton.jit
def _fold_level_kernel(X, Y, R, n, s_x, H, NEG0, BLOCK: tl.constexpr):
    """One level of RepOps spec §4.1: y[r, i] = x[r, i] + x[r, i + H] (missing = -0.0), i < H."""
    row = tl.program_id(1).to(tl.int64)
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    lo = tl.where(i < n, tl.load(X + row * s_x + i, mask=i < n, other=0.0), NEG0)
    hi = tl.where(i + H < n, tl.load(X + row * s_x + i + H, mask=i + H < n, other=0.0), NEG0)
    tl.store(Y + row * H + i, lo + hi, mask=i < H)


@triton.jit
def _fold_rows_kernel(X, Y, R, n, s_x, NEG0, RB: tl.constexpr, P: tl.constexpr,
                      LOG_P: tl.constexpr):
    """RepOps spec §4.1 on RB rows of at most P values each."""
    rows = tl.program_id(0) * RB + tl.arange(0, RB)
    cols = tl.arange(0, P)
    m = (rows[:, None] < R) & (cols[None, :] < n)
    x = tl.where(m, tl.load(X + rows[:, None].to(tl.int64) * s_x + cols[None, :], mask=m,
                            other=0.0), NEG0)
    s = canon_nan(fold_rows(x, RB, P, LOG_P))
    tl.store(Y + rows, s, mask=rows < R)


def fold_sum_rows(x2: torch.Tensor) -> torch.Tensor:
    """RepOps spec §4.1 fold_sum of every row of a contiguous [R, n] float32 matrix -> [R]."""
    R, n = x2.shape
    out = torch.empty(R, dtype=torch.float32, device=x2.device)
    if R == 0:
        return out
    if n == 0:
        return out.fill_(-0.0)
    cur, width = x2, n
    mf = max_fold()
    while next_pow2(width) > mf:
        h = next_pow2(width) // 2
        nxt = torch.empty((R, h), dtype=torch.float32, device=x2.device)
        blk = min(1024, h)
        _fold_level_kernel[(triton.cdiv(h, blk), R)](cur, nxt, R, width, cur.stride(0), h,
                                                     NEG_ZERO, BLOCK=blk, **FP_FLAGS)
        cur, width = nxt, h
    p = next_pow2(width)
    rb = _rows_per_prog(p)
    _fold_rows_kernel[(triton.cdiv(R, rb),)](cur, out, R, width, cur.stride(0), NEG_ZERO, RB=rb,
                                             P=p, LOG_P=p.bit_length() - 1,
                                             num_warps=4 if p * rb <= 2048 else 8, **FP_FLAGS)
    return out


@triton.jit
def _minmax_kernel(X, Y, R, n, s_x, IS_MAX: tl.constexpr, RB: tl.constexpr, BN: tl.constexpr):
    """RepOps spec §4.2 row max/min: integer total-order keys, NaN propagates, empty = ∓inf."""
    rows = tl.program_id(0) * RB + tl.arange(0, RB)
    rmask = rows < R
    base = X + rows[:, None].to(tl.int64) * s_x
    if IS_MAX:
        best = tl.full((RB,), -2139095041, tl.int32)  # order_key(-inf)
    else:
        best = tl.full((RB,), 2139095040, tl.int32)  # order_key(+inf)
    any_nan = tl.zeros((RB,), tl.int32)
    for c0 in range(0, n, BN):
        cols = c0 + tl.arange(0, BN)
        m = rmask[:, None] & (cols[None, :] < n)
        x = tl.load(base + cols[None, :], mask=m, other=0.0)
        k = order_key(x)
        any_nan = tl.maximum(any_nan, tl.max(tl.where(m & (x != x), 1, 0), axis=1))
        if IS_MAX:
            best = tl.maximum(best, tl.max(tl.where(m, k, -2147483647 - 1), axis=1))
        else:
            best = tl.minimum(best, tl.min(tl.where(m, k, 2147483647), axis=1))
    res = tl.where(any_nan > 0, 0x7FC00000, key_to_float(best).to(tl.int32, bitcast=True))
    tl.store(Y + rows, res.to(tl.float32, bitcast=True), mask=rmask)


@triton.jit
def _argmax_kernel(X, Y, R, n, s_x, RB: tl.constexpr, BN: tl.constexpr):
    """RepOps spec §6.11: first NaN, else lowest index of the maximum (-0 and +0 tie).

    Keys: NaN above +inf, and -0 mapped to +0's key so the two tie as IEEE `>` says.
    """
    rows = tl.program_id(0) * RB + tl.arange(0, RB)
    rmask = rows < R
    base = X + rows[:, None].to(tl.int64) * s_x
    best = tl.full((RB,), -2147483647 - 1, tl.int32)
    best_i = tl.zeros((RB,), tl.int64)
    for c0 in range(0, n, BN):
        cols = c0 + tl.arange(0, BN)
        m = rmask[:, None] & (cols[None, :] < n)
        x = tl.load(base + cols[None, :], mask=m, other=0.0)
        k = order_key(x)
        k = tl.where(k == -1, 0, k)  # -0 ties with +0
        k = tl.where(m, k, -2147483647 - 1)
        cmax = tl.max(k, axis=1)
        cidx = tl.min(tl.where(k == cmax[:, None], cols[None, :], 2147483647), axis=1)
        take = cmax > best  # ties keep the earlier chunk's (lower) index
        best_i = tl.where(take, cidx.to(tl.int64), best_i)
        best = tl.where(take, cmax, best)
    tl.store(Y + rows, best_i, mask=rmask)


def _rows(op: str, x: torch.Tensor, dim: int) -> tuple[torch.Tensor, list[int], int]:
    check_f32_cuda(op, x)
    d = norm_dim(op, x, dim)
    x2, lead = rows_last(x, d) if x.dim() > 0 else (x.reshape(1, 1), [])
    return x2, lead, x2.shape[1]


def reduce_sum(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """RepOps spec §4.1 `sum(x, dim)`: fold_sum of every row along dim."""
    x2, lead, _ = _rows("sum", x, dim)
    out = fold_sum_rows(x2).reshape(lead)
    return out.unsqueeze(norm_dim("sum", x, dim)) if keepdim and x.dim() > 0 else out


def _minmax(op: str, x: torch.Tensor, dim: int, keepdim: bool, is_max: bool) -> torch.Tensor:
    x2, lead, n = _rows(op, x, dim)
    R = x2.shape[0]
    out = torch.empty(R, dtype=torch.float32, device=x.device)
    if R:
        bn = min(1024, next_pow2(n)) if not interpreting() else 8
        rb = max(1, min(32, 1024 // bn))
        _minmax_kernel[(triton.cdiv(R, rb),)](x2, out, R, n, x2.stride(0), IS_MAX=is_max, RB=rb,
                                              BN=bn, **FP_FLAGS)
    out = out.reshape(lead)
    return out.unsqueeze(norm_dim(op, x, dim)) if keepdim and x.dim() > 0 else out


def reduce_max(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """RepOps spec §4.2 row max (values only)."""
    return _minmax("max", x, dim, keepdim, True)


def reduce_min(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """RepOps spec §4.2 row min (values only)."""
    return _minmax("min", x, dim, keepdim, False)


def argmax(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """RepOps spec §6.11 argmax -> int64."""
    x2, lead, n = _rows("argmax", x, dim)
    if n == 0:
        raise ValueError(f"repops.argmax: empty row (shape {tuple(x.shape)}, dim {dim})")
    R = x2.shape[0]
    out = torch.empty(R, dtype=torch.int64, device=x.device)
    if R:
        bn = min(1024, next_pow2(n)) if not interpreting() else 8
        rb = max(1, min(32, 1024 // bn))
        _argmax_kernel[(triton.cdiv(R, rb),)](x2, out, R, n, x2.stride(0), RB=rb, BN=bn,
                                              **FP_FLAGS)
    out = out.reshape(lead)
    return out.unsqueeze(norm_dim("argmax", x, dim)) if keepdim and x.dim() > 0 else out
