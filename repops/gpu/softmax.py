"""softmax / log_softmax on the GPU (RepOps spec §6.5, §6.6), with the causal row lengths of
attention (§6.10).

Rows with P = next_pow2(n) <= max_fold() run fused in one kernel; longer rows are composed from
the same spec primitives (max, sub, exp, fold_sum, div/log), kernel by kernel, which computes
the identical sequence of rounded operations.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from repops.gpu import elementwise as ew
from repops.gpu import reduce as rd
from repops.gpu.crmath import exp_cr, log_cr
from repops.gpu.launch import FP_FLAGS, NEG_ZERO, check_f32_cuda, next_pow2, norm_dim, rows_last
from repops.gpu.primitives import canon_nan, fold_rows, key_to_float, order_key


@triton.jit
def _softmax_kernel(X, Y, R, n, s_x, t_q, k_base, NEG0,
                    LOG: tl.constexpr, CAUSAL: tl.constexpr,
                    RB: tl.constexpr, P: tl.constexpr, LOG_P: tl.constexpr):
    """RepOps spec §6.5/§6.6 on RB rows; CAUSAL row r sees n_r = k_base + (r mod t_q) + 1
    values, the rest are excluded (spec §6.10) and written as +0."""
    rows = tl.program_id(0) * RB + tl.arange(0, RB)
    cols = tl.arange(0, P)
    rmask = rows < R
    if CAUSAL:
        n_r = tl.minimum(k_base + (rows % t_q) + 1, n)
    else:
        n_r = tl.zeros((RB,), tl.int32) + n
    valid = rmask[:, None] & (cols[None, :] < n_r[:, None])
    ptrs = rows[:, None].to(tl.int64) * s_x + cols[None, :]
    x = tl.load(X + ptrs, mask=valid, other=float("-inf"))
    m = key_to_float(tl.max(order_key(x), axis=1))  # §4.2 row_max (NaN propagates)
    d = x - m[:, None]
    e = tl.where(valid, exp_cr(d), NEG0)  # excluded/padding: the fold's -0.0
    s = fold_rows(e, RB, P, LOG_P)  # §4.1
    if LOG:
        y = d - log_cr(s)[:, None]
    else:
        y = tl.math.div_rn(e, tl.broadcast_to(s[:, None], (RB, P)))
    y = tl.where(valid, canon_nan(y), 0.0)
    tl.store(Y + ptrs, y, mask=rmask[:, None] & (cols[None, :] < n))


def _composed(x2: torch.Tensor, log: bool, valid: torch.Tensor | None) -> torch.Tensor:
    """Spec §6.5/§6.6 as separate primitive kernels (rows too long for one program).

    Excluded entries are set to -inf first: they leave the row max unchanged (a visible entry
    always exists) and give e = +0, which the fold adds exactly like its -0.0 padding because
    every e is >= +0."""
    if valid is not None:
        ninf = torch.full_like(x2, float("-inf"))
        x2 = ew.where(valid, x2, ninf)
    m = rd.reduce_max(x2, dim=1, keepdim=True)
    d = ew.sub(x2, m)
    e = ew.exp(d)
    s = rd.fold_sum_rows(e).unsqueeze(1)
    y = ew.sub(d, ew.log(s)) if log else ew.div(e, s)
    if valid is not None:
        y = ew.where(valid, y, torch.zeros_like(y))
    return y


def softmax_rows(x2: torch.Tensor, log: bool = False, causal: tuple[int, int] | None = None
                 ) -> torch.Tensor:
    """softmax over each row of a contiguous [R, n] matrix; causal = (t_q, k_base)."""
    R, n = x2.shape
    if n == 0:
        raise ValueError(f"repops.{'log_softmax' if log else 'softmax'}: empty rows "
                         f"(shape {tuple(x2.shape)})")
    p = next_pow2(n)
    if p > rd.max_fold():
        valid = None
        if causal is not None:
            t_q, k_base = causal
            lim = k_base + torch.arange(R, device=x2.device) % t_q + 1
            valid = (torch.arange(n, device=x2.device)[None, :] < lim[:, None]).to(torch.uint8)
        return _composed(x2, log, valid)
    out = torch.empty_like(x2)
    if R:
        rb = max(1, min(16, 1024 // p))
        t_q, k_base = causal if causal is not None else (1, 0)
        _softmax_kernel[(triton.cdiv(R, rb),)](
            x2, out, R, n, x2.stride(0), t_q, k_base, NEG_ZERO, LOG=log, CAUSAL=causal is not None,
            RB=rb, P=p, LOG_P=p.bit_length() - 1, num_warps=4 if p * rb <= 2048 else 8,
            **FP_FLAGS)
    return out


def _softmax_dim(op: str, x: torch.Tensor, dim: int, log: bool) -> torch.Tensor:
    check_f32_cuda(op, x)
    if x.dim() == 0:
        x = x.reshape(1)
    d = norm_dim(op, x, dim)
    x2, lead = rows_last(x, d)
    y = softmax_rows(x2, log=log)
    return y.reshape(*lead, x2.shape[1]).movedim(-1, d).contiguous()


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """RepOps spec §6.5 softmax along dim."""
    return _softmax_dim("softmax", x, dim, False)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """RepOps spec §6.6 log_softmax along dim."""
    return _softmax_dim("log_softmax", x, dim, True)
