"""RMSNorm and LayerNorm on the GPU (RepOps spec §6.7, §6.8).

Rows with P = next_pow2(n) <= max_fold() run fused; longer rows are composed from the same
primitives kernel by kernel (identical rounded operations). eps and f32(n) travel as binary32
bit patterns so no host float conversion can touch them.
"""

from __future__ import annotations

import struct

import torch
import triton
import triton.language as tl

from repops.gpu import elementwise as ew
from repops.gpu import reduce as rd
from repops.gpu.launch import FP_FLAGS, NEG_ZERO, check_f32_cuda, next_pow2
from repops.gpu.primitives import canon_nan, fold_rows


def f32_bits(v: float) -> int:
    """RN(v) to binary32 (struct packs with round-to-nearest-even), as a signed int32."""
    return struct.unpack("<i", struct.pack("<f", v))[0]


def _f32_scalar(bits_: int, device: torch.device) -> torch.Tensor:
    return torch.tensor([bits_], dtype=torch.int32, device=device).view(torch.float32)


@triton.jit
def _rms_kernel(X, W, Y, R, n, s_x, eps_bits, n_bits, NEG0, HAS_W: tl.constexpr,
                RB: tl.constexpr, P: tl.constexpr, LOG_P: tl.constexpr):
    """RepOps spec §6.7 on RB rows."""
    rows = tl.program_id(0) * RB + tl.arange(0, RB)
    cols = tl.arange(0, P)
    valid = (rows[:, None] < R) & (cols[None, :] < n)
    ptrs = rows[:, None].to(tl.int64) * s_x + cols[None, :]
    x = tl.load(X + ptrs, mask=valid, other=0.0)
    q = tl.where(valid, x * x, NEG0)
    ss = fold_rows(q, RB, P, LOG_P)
    eps = eps_bits.to(tl.float32, bitcast=True)
    nf = n_bits.to(tl.float32, bitcast=True)
    ms = tl.math.div_rn(ss, tl.zeros_like(ss) + nf)
    r = tl.math.sqrt_rn(ms + eps)
    y = tl.math.div_rn(x, tl.broadcast_to(r[:, None], (RB, P)))
    if HAS_W:
        w = tl.load(W + cols, mask=cols < n, other=1.0)
        y = y * w[None, :]
    tl.store(Y + ptrs, canon_nan(y), mask=valid)


@triton.jit
def _ln_kernel(X, W, B, Y, R, n, s_x, eps_bits, n_bits, NEG0, HAS_W: tl.constexpr,
               HAS_B: tl.constexpr, RB: tl.constexpr, P: tl.constexpr, LOG_P: tl.constexpr):
    """RepOps spec §6.8 on RB rows."""
    rows = tl.program_id(0) * RB + tl.arange(0, RB)
    cols = tl.arange(0, P)
    valid = (rows[:, None] < R) & (cols[None, :] < n)
    ptrs = rows[:, None].to(tl.int64) * s_x + cols[None, :]
    x = tl.where(valid, tl.load(X + ptrs, mask=valid, other=0.0), NEG0)
    nf = n_bits.to(tl.float32, bitcast=True)
    eps = eps_bits.to(tl.float32, bitcast=True)
    mu = tl.math.div_rn(fold_rows(x, RB, P, LOG_P), tl.zeros((RB,), tl.float32) + nf)
    c = x - mu[:, None]
    q = tl.where(valid, c * c, NEG0)
    var = tl.math.div_rn(fold_rows(q, RB, P, LOG_P), tl.zeros((RB,), tl.float32) + nf)
    r = tl.math.sqrt_rn(var + eps)
    y = tl.math.div_rn(c, tl.broadcast_to(r[:, None], (RB, P)))
    if HAS_W:
        y = y * tl.load(W + cols, mask=cols < n, other=1.0)[None, :]
    if HAS_B:
        y = y + tl.load(B + cols, mask=cols < n, other=0.0)[None, :]
    tl.store(Y + ptrs, canon_nan(y), mask=valid)


def _prep(op: str, x: torch.Tensor, *params: torch.Tensor | None) -> torch.Tensor:
    check_f32_cuda(op, x, *[p for p in params if p is not None])
    if x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(f"repops.{op}: needs a non-empty last dim, got {tuple(x.shape)}")
    for p in params:
        if p is not None and tuple(p.shape) != (x.shape[-1],):
            raise ValueError(f"repops.{op}: parameter shape {tuple(p.shape)} does not match "
                             f"x {tuple(x.shape)} (expected ({x.shape[-1]},))")
    return x.contiguous().reshape(-1, x.shape[-1])


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """RepOps spec §6.7 RMSNorm over the last dim."""
    x2 = _prep("rms_norm", x, weight)
    R, n = x2.shape
    p = next_pow2(n)
    if p > rd.max_fold():
        dev = x.device
        q = ew.mul(x2, x2)
        ms = ew.div(rd.fold_sum_rows(q), _f32_scalar(f32_bits(float(n)), dev))
        r = ew.sqrt(ew.add(ms, _f32_scalar(f32_bits(eps), dev))).unsqueeze(1)
        y = ew.div(x2, r)
        if weight is not None:
            y = ew.mul(y, weight.contiguous())
        return y.reshape(x.shape)
    y = torch.empty_like(x2)
    w = weight.contiguous() if weight is not None else x2
    if R:
        rb = max(1, min(16, 1024 // p))
        _rms_kernel[(triton.cdiv(R, rb),)](x2, w, y, R, n, x2.stride(0), f32_bits(eps),
                                           f32_bits(float(n)), NEG_ZERO,
                                           HAS_W=weight is not None, RB=rb, P=p,
                                           LOG_P=p.bit_length() - 1, **FP_FLAGS)
    return y.reshape(x.shape)


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
               eps: float) -> torch.Tensor:
    """RepOps spec §6.8 LayerNorm over the last dim."""
    x2 = _prep("layer_norm", x, weight, bias)
    R, n = x2.shape
    p = next_pow2(n)
    if p > rd.max_fold():
        dev = x.device
        nf = _f32_scalar(f32_bits(float(n)), dev)
        mu = ew.div(rd.fold_sum_rows(x2), nf).unsqueeze(1)
        c = ew.sub(x2, mu)
        var = ew.div(rd.fold_sum_rows(ew.mul(c, c)), nf)
        r = ew.sqrt(ew.add(var, _f32_scalar(f32_bits(eps), dev))).unsqueeze(1)
        y = ew.div(c, r)
        if weight is not None:
            y = ew.mul(y, weight.contiguous())
        if bias is not None:
            y = ew.add(y, bias.contiguous())
        return y.reshape(x.shape)
    y = torch.empty_like(x2)
    if R:
        rb = max(1, min(16, 1024 // p))
        _ln_kernel[(triton.cdiv(R, rb),)](
            x2, weight.contiguous() if weight is not None else x2,
            bias.contiguous() if bias is not None else x2, y, R, n, x2.stride(0),
            f32_bits(eps), f32_bits(float(n)), NEG_ZERO, HAS_W=weight is not None,
            HAS_B=bias is not None, RB=rb, P=p, LOG_P=p.bit_length() - 1, **FP_FLAGS)
    return y.reshape(x.shape)
