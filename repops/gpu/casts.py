"""Casts on the GPU (RepOps spec §6.14): int -> f32 by RN; f32 -> int64 by truncation toward
zero, NaN -> 0, saturating (Rust `as`); bool/uint8 -> 0.0 / 1.0. Written with explicit
selects so no hardware conversion corner decides a result."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from repops.gpu.launch import check_cuda, check_f32_cuda, interpreting


@triton.jit
def _i2f_kernel(X, Y, n, BOOL: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(X + offs, mask=m, other=0)
    if BOOL:
        y = tl.where(x != 0, 1.0, 0.0)
    else:
        y = x.to(tl.int64).to(tl.float32)  # cvt.rn (RNE)
    tl.store(Y + offs, y, mask=m)


@triton.jit
def _f2i_kernel(X, Y, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(X + offs, mask=m, other=0.0)
    big = x >= 9223372036854775808.0  # 2^63, exact in binary32
    small = x < -9223372036854775808.0
    safe = tl.where(big | small | (x != x), 0.0, x)
    y = safe.to(tl.int64)  # in range: truncation toward zero
    y = tl.where(big, 9223372036854775807, y)
    y = tl.where(small, -9223372036854775807 - 1, y)
    tl.store(Y + offs, y, mask=m)


def _blk() -> int:
    return 64 if interpreting() else 1024


def int_to_float(x: torch.Tensor) -> torch.Tensor:
    """RepOps spec §6.14 int32/int64 -> f32 (RN); bool/uint8 -> +0.0 / 1.0."""
    check_cuda("int_to_float", x, (torch.int32, torch.int64, torch.uint8, torch.bool))
    is_bool = x.dtype in (torch.uint8, torch.bool)
    xc = (x.to(torch.uint8) if x.dtype == torch.bool else x).contiguous()
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    n = xc.numel()
    if n:
        _i2f_kernel[(triton.cdiv(n, _blk()),)](xc, out, n, BOOL=is_bool, BLOCK=_blk())
    return out


def float_to_int(x: torch.Tensor) -> torch.Tensor:
    """RepOps spec §6.14 f32 -> int64: truncation, NaN -> 0, saturating."""
    check_f32_cuda("float_to_int", x)
    xc = x.contiguous()
    out = torch.empty(x.shape, dtype=torch.int64, device=x.device)
    n = xc.numel()
    if n:
        _f2i_kernel[(triton.cdiv(n, _blk()),)](xc, out, n, BLOCK=_blk())
    return out
